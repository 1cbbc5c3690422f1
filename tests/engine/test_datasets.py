"""Training datasets: preprocessed folder (memory-mapped) and on-the-fly phantoms, with flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prdit.data.datasets import PhantomDataset, VolumeFolderDataset
from prdit.data.normalize import HUWindow
from prdit.data.phantom import generate_phantom
from prdit.data.preprocess import Settings, run_preprocess


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(3)
    for i in range(5):
        np.savez_compressed(
            src / f"c{i}.npz", ct=rng.integers(-1000, 1000, size=(16, 16, 16)).astype(np.int16)
        )
    out = tmp_path_factory.mktemp("ds")
    summary = run_preprocess(
        src, out, Settings("rad", 8, crop=16, window_low=-500, window_high=500), progress=False, val_count=2
    )
    assert summary.ok
    return out


def test_folder_dataset_items_splits_and_attributes(folder):
    train = VolumeFolderDataset(folder, "train")
    val = VolumeFolderDataset(folder, "val")
    every = VolumeFolderDataset(folder, None)
    assert (len(train), len(val), len(every)) == (3, 2, 5)
    assert not set(train.case_ids) & set(val.case_ids)
    x = train[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (1, 8, 8, 8)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert train.hu_window == HUWindow(-500.0, 500.0)
    assert train.spacing == (2.0, 2.0, 2.0) and train.size == 8
    stored = np.load(folder / "volumes" / f"{train.case_ids[0]}.npy")
    assert np.array_equal(x[0].numpy(), stored.astype(np.float32))
    loader = torch.utils.data.DataLoader(train, batch_size=2)
    assert next(iter(loader)).shape == (2, 1, 8, 8, 8)
    with pytest.raises(IndexError):
        train[3]


def test_flips_deterministic_per_seed_epoch_index(folder):
    a = VolumeFolderDataset(folder, None, flip=True, flip_axes=(0, 1, 2), flip_seed=7)
    b = VolumeFolderDataset(folder, None, flip=True, flip_axes=(0, 1, 2), flip_seed=7)
    plain = VolumeFolderDataset(folder, None)
    patterns = set()
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            assert torch.equal(a[i], b[i])  # same (seed, epoch, index) -> same item (resumable)
            axes = a.flips_for(i)
            patterns.add(axes)
            expected = np.flip(plain[i][0].numpy(), axis=axes) if axes else plain[i][0].numpy()
            assert np.array_equal(a[i][0].numpy(), expected)
    assert len(patterns) > 3  # flips actually vary across epochs/indices
    assert VolumeFolderDataset(folder, None).flips_for(0) == ()
    with pytest.raises(ValueError, match="flip_axes"):
        VolumeFolderDataset(folder, None, flip=True, flip_axes=(3,))


def test_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        VolumeFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="split"):
        VolumeFolderDataset(folder, "test")


def test_phantom_dataset_matches_generator_and_caches():
    ds = PhantomDataset(size=32, length=3, seed_offset=10, hu_window=HUWindow(-1000, 500), cache=True)
    assert len(ds) == 3 and ds.spacing == pytest.approx((350 / 32,) * 3)
    x = ds[1]
    assert x.shape == (1, 32, 32, 32) and x.dtype == torch.float32
    expected = HUWindow(-1000, 500).to_unit(generate_phantom(11, size=32).array)
    assert np.allclose(x[0].numpy(), expected)
    assert torch.equal(ds[1], x) and 1 in ds._cache
    uncached = PhantomDataset(size=32, length=3, seed_offset=10, hu_window=HUWindow(-1000, 500), cache=False)
    assert torch.equal(uncached[1], x) and not uncached._cache
    flipped = PhantomDataset(size=32, length=3, seed_offset=10, hu_window=HUWindow(-1000, 500), flip=True)
    flipped.set_epoch(2)
    axes = flipped.flips_for(1)
    assert axes in ((), (2,))
    assert np.array_equal(flipped[1][0].numpy(), np.flip(x[0].numpy(), axis=axes) if axes else x[0].numpy())
    assert ds.hu_window.to_hu(x).min() >= -1000.0
    with pytest.raises(ValueError):
        PhantomDataset(size=32, length=0)
