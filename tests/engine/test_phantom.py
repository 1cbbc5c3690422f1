"""The chest phantom: determinism, variation, HU per structure, anatomy bounds, orientation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from prdit.data.anatomy import ANATOMY_KEYS, check_plausibility, measure_anatomy, phantom_reference_ranges
from prdit.data.phantom import PhantomResult, Structure, generate_phantom
from prdit.volume import Volume

# Expected per-seed bounds of the anatomy measures at 32^3 (phantoms span roughly
# body 0.35-0.51, lung 0.14-0.32, soft 0.66-0.83, bone 0.015-0.045, balance 0.42-0.51).
BOUNDS_32 = {
    "body_fraction": (0.28, 0.62),
    "lung_fraction": (0.10, 0.38),
    "soft_tissue_fraction": (0.58, 0.88),
    "bone_fraction": (0.008, 0.07),
    "lung_lr_balance": (0.38, 0.54),
}


@pytest.fixture(scope="module")
def measures_100():
    return [measure_anatomy(generate_phantom(seed, size=32)) for seed in range(100)]


@pytest.fixture(scope="module")
def labelled_64():
    return [generate_phantom(seed, size=64, return_labels=True) for seed in (3, 11)]


def test_geometry_and_determinism():
    a = generate_phantom(5, size=32)
    b = generate_phantom(5, size=32)
    assert isinstance(a, Volume) and a.array.dtype == np.float32 and a.shape == (32, 32, 32)
    assert np.array_equal(a.array, b.array)
    assert a.spacing == pytest.approx((350 / 32,) * 3)
    assert np.allclose(a.direction, np.eye(3)) and np.allclose(a.center_lps(), 0.0)
    c = generate_phantom(5, size=48, spacing=2.0)
    assert c.shape == (48, 48, 48) and c.spacing == (2.0, 2.0, 2.0)
    assert a.metadata["seed"] == 5


def test_variation_across_seeds(measures_100):
    vols = [generate_phantom(s, size=32, noise=False).array for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.mean(np.abs(vols[i] - vols[j])) > 20.0  # HU: different bodies, not just noise
    for key in ANATOMY_KEYS:
        values = np.array([m[key] for m in measures_100])
        assert values.std() > 0.002, key


def test_every_structure_present_with_plausible_hu(labelled_64):
    expected = {  # median HU inside the eroded structure (noise and partial volume included)
        Structure.LUNG: (-900, -760),
        Structure.FAT: (-135, -30),
        Structure.MUSCLE: (25, 80),
        Structure.MEDIASTINUM: (-125, -50),
        Structure.HEART: (25, 60),
        Structure.AORTA: (20, 65),
        Structure.LIVER: (40, 80),
        Structure.VERTEBRA: (140, 450),
        Structure.BONE: (250, 700),
    }
    for result in labelled_64:
        assert isinstance(result, PhantomResult)
        labels, hu = result.labels, result.volume.array
        assert labels.shape == hu.shape and labels.dtype == np.uint8
        present = set(np.unique(labels).tolist())
        required = set(Structure) - {Structure.NODULE, Structure.TABLE, Structure.BOWEL_GAS}
        assert required <= present, sorted(Structure(s).name for s in required - present)
        for struct, (lo, hi) in expected.items():
            mask = labels == struct
            assert mask.sum() > 10, struct.name
            core = ndimage.binary_erosion(mask)
            core = core if core.sum() > 10 else mask  # thin layers (fat): no core at 5.5 mm voxels
            median = float(np.median(hu[core]))
            assert lo <= median <= hi, f"{struct.name}: median {median:.0f} HU outside [{lo}, {hi}]"
        assert hu[labels == Structure.AIR].mean() < -950
        assert hu[labels == Structure.AIRWAY].min() < -850  # air inside the trachea
        assert hu[labels == Structure.RIB].max() > 250
        assert -1024 <= hu.min() and hu.max() <= 3071


def test_left_right_orientation(tmp_path, labelled_64):
    """Patient left = higher i = +x (LPS); heart and descending aorta left, liver right."""
    from prdit.data.io import read_volume, write_nifti

    for result in labelled_64:
        vol, labels = result.volume, result.labels

        def centroid_lps(struct, vol=vol, labels=labels):
            k, j, i = np.nonzero(labels == struct)
            return vol.index_to_lps(np.c_[i, j, k].mean(0))

        assert centroid_lps(Structure.HEART)[0] > 0
        assert centroid_lps(Structure.LIVER)[0] < 0
        assert centroid_lps(Structure.SPINAL_CANAL)[1] > centroid_lps(Structure.HEART)[1]  # spine posterior
        lab, n = ndimage.label(labels == Structure.LUNG)
        sizes = np.bincount(lab.ravel())[1:]
        two = np.argsort(sizes)[-2:] + 1
        xs = sorted(vol.index_to_lps(np.stack(np.nonzero(lab == c)[::-1], 1).mean(0))[0] for c in two)
        assert xs[0] < -40 and xs[1] > 40  # one lung on each side
    # through NIfTI: the heart lies at negative RAS x (patient left)
    path = write_nifti(labelled_64[0].volume, tmp_path / "p.nii.gz")
    back = read_volume(path)
    k, j, i = np.nonzero(labelled_64[0].labels == Structure.HEART)
    ras = back.affine_ras() @ np.r_[np.c_[i, j, k].mean(0), 1.0]
    assert ras[0] < 0


def test_anatomy_within_bounds_for_100_seeds(measures_100):
    # the heart takes room on the left: on average the left lung is the smaller one
    assert np.mean([m["lung_lr_balance"] for m in measures_100]) < 0.49
    for seed, m in enumerate(measures_100):
        assert math.isclose(m["lung_fraction"] + m["soft_tissue_fraction"] + m["bone_fraction"], 1.0)
        for key, (lo, hi) in BOUNDS_32.items():
            assert lo <= m[key] <= hi, f"seed {seed}: {key} = {m[key]:.3f} outside [{lo}, {hi}]"


def test_noise_is_correlated_ct_texture():
    clean = generate_phantom(2, size=64, noise=False).array
    noisy = generate_phantom(2, size=64).array
    n = (noisy - clean)[8:-8, 8:-8, 8:-8]
    assert 5.0 < n.std() < 30.0
    lag_in_plane = np.corrcoef(n[:, :, :-1].ravel(), n[:, :, 1:].ravel())[0, 1]
    lag_far = np.corrcoef(n[:, :, :-4].ravel(), n[:, :, 4:].ravel())[0, 1]
    assert lag_in_plane > 0.2  # not white noise
    assert abs(lag_far) < 0.15  # but short-range, like a reconstruction kernel
    assert abs(float(n.mean())) < 2.0


def test_reference_ranges_and_plausibility_check():
    ranges = phantom_reference_ranges(seeds=range(4), size=32)
    assert set(ranges) == set(ANATOMY_KEYS)
    assert check_plausibility(measure_anatomy(generate_phantom(1, size=32)), ranges) == []
    noise = np.random.default_rng(0).normal(-300, 400, size=(32, 32, 32)).astype(np.float32)
    problems = check_plausibility(measure_anatomy(noise), ranges)
    assert problems and any("fraction" in p for p in problems)


def test_measure_anatomy_on_known_geometry():
    hu = np.full((20, 40, 40), -1000.0, np.float32)
    hu[2:18, 5:35, 5:35] = 40.0  # body 16 x 30 x 30
    hu[4:16, 10:30, 22:32] = -850.0  # left lung (high i)
    hu[4:16, 10:30, 8:16] = -850.0  # right lung
    hu[2:18, 28:32, 18:22] = 700.0  # spine
    m = measure_anatomy(hu)
    body = 16 * 30 * 30
    assert m["body_fraction"] == pytest.approx(body / hu.size, rel=0.02)
    assert m["lung_fraction"] == pytest.approx((12 * 20 * 18) / body, rel=0.05)
    assert m["bone_fraction"] == pytest.approx(16 * 16 / body, rel=0.1)
    assert m["lung_lr_balance"] == pytest.approx(10 / 18, abs=0.02)
    # the same array with i running to the patient's right: balance flips
    flipped = Volume(hu, direction=np.diag([-1.0, 1.0, 1.0]))
    assert measure_anatomy(flipped)["lung_lr_balance"] == pytest.approx(8 / 18, abs=0.02)
    empty = measure_anatomy(np.full((8, 8, 8), -1000.0))
    assert empty["body_fraction"] == 0.0 and math.isnan(empty["lung_lr_balance"])


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"seed": 1.5}, {"seed": 0, "size": 4}, {"seed": 0, "spacing": 0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate_phantom(**kwargs)


def test_phantom_and_info_cli(tmp_path, capsys):
    import argparse
    import json

    from prdit.cli import info, phantom
    from prdit.data.io import read_volume

    parser = argparse.ArgumentParser()
    phantom.add_arguments(parser)
    args = parser.parse_args(
        [
            "--count",
            "2",
            "--size",
            "32",
            "--out",
            str(tmp_path),
            "--seed-offset",
            "5",
            "--labels",
            "--no-progress",
        ]
    )
    assert phantom.run(args) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert [c["seed"] for c in manifest["cases"]] == [5, 6]
    case = manifest["cases"][0]
    assert case["file"] == "phantom_00005.nii.gz" and set(case["anatomy"]) == set(ANATOMY_KEYS)
    vol = read_volume(tmp_path / case["file"])
    assert vol.array.dtype == np.int16 and vol.shape == (32, 32, 32)
    assert np.abs(vol.array - generate_phantom(5, size=32).array).max() <= 0.5
    assert read_volume(tmp_path / case["labels"]).array.max() <= max(Structure)
    parser = argparse.ArgumentParser()
    info.add_arguments(parser)
    assert info.run(parser.parse_args([str(tmp_path / case["file"]), "--anatomy"])) == 0
    out = capsys.readouterr().out
    assert "LPS" in out and "350.0 x 350.0 x 350.0 mm" in out and "lung_fraction" in out
