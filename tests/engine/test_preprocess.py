"""Preprocessing recipes, the dataset folder, resumability and bad-case handling."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import SimpleITK as sitk

from prdit.data.io import read_volume, write_npz
from prdit.data.phantom import generate_phantom
from prdit.data.preprocess import (
    Settings,
    center_crop_pad,
    discover_cases,
    downsample,
    preprocess_volume,
    run_preprocess,
    split_cases,
)
from prdit.volume import Volume
from tests.helpers.data_files import write_sitk_dicom_series


@pytest.fixture(scope="module")
def lidc_like(tmp_path_factory):
    """A phantom written as an LIDC-like CT series: 0.7 x 0.7 mm pixels, 2.5 mm slices."""
    phantom = generate_phantom(4, size=64, spacing=2.5)  # 160 mm cube through the chest centre
    image = phantom.to_sitk()
    size = [int(round(160 / 0.7)), int(round(160 / 0.7)), 64]
    fine = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        (0.7, 0.7, 2.5),
        image.GetDirection(),
        -1024.0,
        sitk.sitkFloat32,
    )
    vol = Volume.from_sitk(fine)
    root = tmp_path_factory.mktemp("lidc")
    write_sitk_dicom_series(vol, root / "LIDC-IDRI-0001" / "study" / "series")
    return root, phantom


def test_lidc_recipe_on_lidc_like_series(lidc_like, tmp_path):
    root, phantom = lidc_like
    out = tmp_path / "ds"
    summary = run_preprocess(root, out, Settings(recipe="lidc", size=32), progress=False)
    assert summary.ok and summary.done == ["LIDC-IDRI-0001__study__series"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    case = manifest["cases"][0]
    assert case["original_spacing"] == pytest.approx([0.7, 0.7, 2.5], abs=1e-4)
    assert case["original_shape"] == [64, 229, 229]
    assert case["shape"] == [32, 32, 32] and case["spacing"] == pytest.approx([8.0, 8.0, 8.0])
    assert manifest["hu_window"] == {"low": -1000.0, "high": 1000.0, "mode": "window"}
    assert manifest["hu_recoverable"] is True and manifest["recipe"]["name"] == "lidc"
    lo, hi = case["hu_clip"]
    assert lo == -1000.0 and 50.0 < hi < 1000.0  # the 0.999 quantile of a chest: soft tissue/bone
    arr = np.load(out / case["file"], mmap_mode="r")
    assert arr.shape == (32, 32, 32) and arr.dtype == np.float16
    assert -1.0 <= float(arr.min()) and float(arr.max()) <= 1.0
    assert float(arr[0, 0, 0]) == -1.0  # padding (the 160 mm scan sits inside a 256 mm crop)
    # values map back to the phantom's HU: sample the (block-smoothed) phantom at output voxel centres
    from scipy import ndimage

    hu = manifest_window_to_hu(arr, manifest)
    out_vol = Volume(hu, case["spacing"], case["origin"], case["direction"])
    k, j, i = np.mgrid[10:22, 10:22, 10:22]
    pts = out_vol.index_to_lps(np.stack([i, j, k], -1).reshape(-1, 3))
    src_idx = phantom.lps_to_index(pts)[:, ::-1].T  # (k, j, i) rows for map_coordinates
    smooth = ndimage.uniform_filter(np.clip(phantom.array, -1000, hi), size=3)  # ~8 mm boxes
    ref = ndimage.map_coordinates(smooth, src_idx, order=1)
    got = hu[10:22, 10:22, 10:22].reshape(-1)
    assert np.corrcoef(ref, got)[0, 1] > 0.9
    assert np.median(np.abs(ref - got)) < 60.0
    # geometry: the output is centred where the scan was
    assert np.allclose(out_vol.center_lps(), phantom.center_lps(), atol=2.0)
    assert (out / "train.txt").read_text(encoding="utf-8") == "LIDC-IDRI-0001__study__series\n"
    assert (out / "val.txt").read_text(encoding="utf-8") == ""


def manifest_window_to_hu(arr, manifest):
    from prdit.data.normalize import HUWindow

    return HUWindow.from_dict(manifest["hu_window"]).to_hu(np.asarray(arr, np.float32))


def _rad_folder(folder, n=4, bad=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(-1200, 1600, size=(20, 24, 24)).astype(np.int16)
        np.savez_compressed(folder / f"trn{i:05d}.npz", ct=arr)
    for name in bad:
        (folder / name).write_bytes(b"PK\x03\x04 broken")
    return folder


def test_rad_recipe_resume_and_bad_case(tmp_path):
    src = _rad_folder(tmp_path / "rad", n=4, bad=("trn_broken.npz",))
    out = tmp_path / "out"
    settings = Settings(recipe="rad", size=8, crop=32)
    first = run_preprocess(src, out, settings, progress=False, val_count=1)
    assert sorted(first.done) == [f"trn{i:05d}" for i in range(4)]
    assert len(first.failed) == 1 and "trn_broken" in first.failed[0]["source"]
    assert "not a readable .npz" in first.failed[0]["error"] and not first.ok
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["num_cases"] == 4 and manifest["failed"][0]["case_id"] == "trn_broken"
    case = manifest["cases"][0]
    assert case["hu_clip"] == [-1000.0, 1000.0] and case["shape"] == [8, 8, 8]
    assert "1 mm assumed" in case["note"]
    # values: clip to [-1000, 1000] then window -> [-1, 1]; the uniform noise averages near 0 HU
    arr = np.load(out / case["file"]).astype(np.float32)
    src_arr = read_volume(src / "trn00000.npz").array.astype(np.float32)
    expected = downsample(center_crop_pad(np.clip(src_arr, -1000, 1000), 32)[0].clip(-1000, 1000), 8) / 1000.0
    assert np.allclose(arr, expected, atol=2e-3)
    train = (out / "train.txt").read_text(encoding="utf-8").split()
    val = (out / "val.txt").read_text(encoding="utf-8").split()
    assert len(val) == 1 and len(train) == 3 and not set(train) & set(val)
    # resume: nothing is redone, the failure is reported again
    mtime = (out / case["file"]).stat().st_mtime_ns
    again = run_preprocess(src, out, settings, progress=False, val_count=1)
    assert again.done == [] and len(again.skipped) == 4 and len(again.failed) == 1
    assert (out / case["file"]).stat().st_mtime_ns == mtime
    assert (out / "val.txt").read_text(encoding="utf-8").split() == val  # the split is stable
    with pytest.raises(ValueError, match="other settings"):
        run_preprocess(src, out, Settings(recipe="rad", size=16, crop=32), progress=False)


def test_cli_exit_status_workers_and_minmax(tmp_path, capsys):
    from prdit.cli import preprocess as cli

    src = _rad_folder(tmp_path / "rad", n=3, bad=("zz_bad.npz",))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            str(src),
            str(tmp_path / "o"),
            "--recipe",
            "rad",
            "--size",
            "8",
            "--crop",
            "16",
            "--workers",
            "2",
            "--no-progress",
            "--norm",
            "minmax",
            "--dtype",
            "float32",
        ]
    )
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert "3 case(s) written" in err and "FAILED zz_bad" in err and "not HU-recoverable" in err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["hu_recoverable"] is False and manifest["hu_window"]["mode"] == "minmax"
    for case in manifest["cases"]:
        arr = np.load(tmp_path / "o" / case["file"])
        assert (
            arr.dtype == np.float32 and arr.min() == pytest.approx(-1.0) and arr.max() == pytest.approx(1.0)
        )
        assert len(case["minmax_hu"]) == 2
    src.joinpath("zz_bad.npz").unlink()
    assert cli.run(args) == 0  # resumed: only the good cases, all done already


def test_generic_recipe_reorients_nifti(tmp_path):
    """An RAS-stored NIfTI (i runs to the patient's right) comes out in the project orientation."""
    from prdit.data.io import write_nifti

    phantom = generate_phantom(1, size=32, spacing=4.0)
    flipped = Volume(
        phantom.array[:, :, ::-1].copy(),
        phantom.spacing,
        phantom.index_to_lps((31, 0, 0)),
        np.diag([-1.0, 1.0, 1.0]),
    )
    write_nifti(flipped, tmp_path / "in" / "case.nii.gz")
    arr, info = preprocess_volume(
        read_volume(tmp_path / "in" / "case.nii.gz"), Settings("generic", 16, crop=128)
    )
    ref, _ = preprocess_volume(phantom, Settings("generic", 16, crop=128))
    assert np.allclose(arr, ref, atol=0.01)
    assert info["direction"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_discovery_and_split_rules(tmp_path, lidc_like):
    root, _ = lidc_like
    assert [c.kind for c in discover_cases(root, "lidc")] == ["dicom"]
    (tmp_path / "a").mkdir()
    write_npz(generate_phantom(0, size=16), tmp_path / "a" / "x.npz")
    np.save(tmp_path / "a" / "y.npy", np.zeros((4, 4, 4)))
    assert [c.case_id for c in discover_cases(tmp_path, "generic")] == ["a__x", "a__y"]
    assert [c.case_id for c in discover_cases(tmp_path, "rad")] == ["a__x"]
    ids = [f"c{i:04d}" for i in range(3000)]
    train, val = split_cases(ids, None)
    assert len(val) == 200 and len(train) == 2800
    assert split_cases(ids, None) == (train, val)
    assert len(split_cases(ids[:20], None)[1]) == 2
    assert split_cases(["one"], None) == (["one"], [])
    with pytest.raises(ValueError, match="unknown recipe"):
        Settings(recipe="nope", size=64)
    with pytest.raises(FileNotFoundError):
        discover_cases(tmp_path / "missing", "rad")
