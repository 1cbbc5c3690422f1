"""Readers and writers with real third-party files (pydicom, nibabel test data) and round trips."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from prdit.data.io import (
    MultipleSeriesError,
    VolumeReadError,
    list_dicom_series,
    read_volume,
    write_nifti,
    write_npy,
    write_npz,
    write_volume,
)
from prdit.volume import Volume
from tests.helpers.data_files import nibabel_file, pydicom_file, write_sitk_dicom_series


def _oblique() -> np.ndarray:
    a, b = np.radians(15.0), np.radians(-8.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture
def hu_volume() -> Volume:
    rng = np.random.default_rng(7)
    arr = rng.integers(-1024, 2000, size=(7, 9, 11)).astype(np.int16)
    return Volume(arr, (0.7, 0.8, 2.5), (-120.0, 35.5, -60.25), _oblique())


# ------------------------------------------------------------------------------------- DICOM (pydicom)
def test_ct5n_series_sorted_by_position_not_file_name():
    folder = pydicom_file("dicomdirtests", "98892001", "CT5N")
    vol = read_volume(folder)
    assert vol.shape == (5, 16, 16)
    assert vol.spacing == pytest.approx((0.488281, 0.488281, 2.5))
    # file names ascend while z descends: the first slice must be the lowest position (z = -1.2375)
    assert vol.origin == pytest.approx((-72.199997, -143.0, -1.2375))
    assert np.allclose(vol.direction, np.eye(3))
    import pydicom

    lowest = pydicom.dcmread(folder / "3353")
    expected = lowest.pixel_array * int(lowest.RescaleSlope) + int(lowest.RescaleIntercept)
    assert np.array_equal(vol.array[0], expected)
    assert vol.metadata["modality"] == "CT"


def test_missing_slices_named():
    with pytest.raises(VolumeReadError, match=r"missing slice.*gap of 202\.50 mm"):
        read_volume(pydicom_file("dicomdirtests", "77654033", "CT2"))


def test_several_series_are_listed_and_selectable():
    folder = pydicom_file("dicomdirtests", "98892001")
    series = list_dicom_series(folder)
    assert {s.number_of_files for s in series} == {5, 2}
    with pytest.raises(MultipleSeriesError) as info:
        read_volume(folder)
    assert len(info.value.series) == 2 and "--series" in str(info.value)
    ct5 = next(s for s in series if s.number_of_files == 5)
    assert read_volume(folder, series_uid=ct5.uid).shape == (5, 16, 16)
    with pytest.raises(VolumeReadError, match="no series with UID"):
        read_volume(folder, series_uid="1.2.3")


def test_single_2d_dicom_and_non_dicom_folder(tmp_path):
    with pytest.raises(VolumeReadError, match="single 2D DICOM image"):
        read_volume(pydicom_file("CT_small.dcm"))
    (tmp_path / "notes.txt").write_text("not dicom", encoding="utf-8")
    with pytest.raises(VolumeReadError, match="no DICOM image files"):
        read_volume(tmp_path)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), one / "a.dcm")
    with pytest.raises(VolumeReadError, match="single 2D image"):
        read_volume(one)
    # the studio's reading: one slice deep, placed by its own tags, in HU
    for source in (pydicom_file("CT_small.dcm"), one):
        vol = read_volume(source, allow_2d=True)
        assert vol.shape == (1, 128, 128) and vol.metadata["single_slice"]
        assert vol.spacing[2] == 5.0  # SliceThickness
        np.testing.assert_allclose(vol.origin, [-158.135803, -179.035797, -75.699997])


def test_2d_nifti_and_arrays_open_one_slice_deep_when_allowed(tmp_path):
    flat = tmp_path / "flat.nii"
    data = np.arange(48, dtype=np.int16).reshape(8, 6)  # nibabel [i, j]
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.7, 1.0, 1.0])), flat)  # a 2D array: shape (8, 6)
    vol = read_volume(flat, allow_2d=True)
    assert vol.shape == (1, 6, 8) and vol.spacing[:2] == pytest.approx((0.5, 0.7))
    np.testing.assert_array_equal(vol.array[0], data.T)
    arr = tmp_path / "a.npy"
    np.save(arr, np.ones((5, 7), np.float32))
    assert read_volume(arr, allow_2d=True).shape == (1, 5, 7)
    with pytest.raises(VolumeReadError, match="2D image"):
        read_volume(arr)


def test_truncated_slice_in_series_is_named(tmp_path):
    src = pydicom_file("dicomdirtests", "98892001", "CT5N")
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    victim = tmp_path / "2693"
    data = victim.read_bytes()
    victim.write_bytes(data[:-200])  # cut into the pixel data
    with pytest.raises(VolumeReadError, match="2693"):
        read_volume(tmp_path)


def test_non_uniform_spacing_and_tilt(tmp_path, hu_volume):
    import pydicom

    vol = Volume(hu_volume.array, hu_volume.spacing, hu_volume.origin, np.eye(3))
    paths = write_sitk_dicom_series(vol, tmp_path / "uneven", shuffle_names=False)
    ds = pydicom.dcmread(paths[3])
    pos = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 0.9]  # step 3.4 then 1.6 mm
    ds.save_as(paths[3])
    with pytest.raises(VolumeReadError, match="non-uniform slice spacing"):
        read_volume(tmp_path / "uneven")

    paths = write_sitk_dicom_series(vol, tmp_path / "tilted", shuffle_names=False)
    for k, p in enumerate(paths):  # shear along y: a 15 degree gantry tilt
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + k * 2.5 * np.tan(np.radians(15.0)), z]
        ds.save_as(p)
    with pytest.raises(VolumeReadError, match=r"gantry tilt of 15\.0 degrees"):
        read_volume(tmp_path / "tilted")


def test_dicom_series_round_trip_oblique(tmp_path, hu_volume):
    write_sitk_dicom_series(hu_volume, tmp_path / "series")
    back = read_volume(tmp_path / "series")
    assert back.same_geometry(hu_volume, atol=1e-4)
    assert np.array_equal(back.array, hu_volume.array)


# ------------------------------------------------------------------------------------------- NIfTI
def test_nibabel_anatomical_reported_in_lps():
    path = nibabel_file("anatomical.nii")
    img = nib.load(path)
    vol = read_volume(path)
    assert vol.shape == tuple(reversed(img.shape)) and vol.array.dtype == np.int16
    # a voxel's RAS position from nibabel equals our LPS position with x, y negated
    ijk = np.array([3, 7, 11])
    ras = img.affine @ np.r_[ijk, 1]
    assert np.allclose(vol.index_to_lps(ijk), ras[:3] * [-1, -1, 1])
    assert vol.value_at_index(ijk) == float(np.asanyarray(img.dataobj)[tuple(ijk)])


def test_nifti_4d_and_corrupt_files(tmp_path):
    with pytest.raises(VolumeReadError, match="4D image with 2 volumes"):
        read_volume(nibabel_file("example4d.nii.gz"))
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(nibabel_file("standard.nii.gz").read_bytes()[:60])
    with pytest.raises(VolumeReadError, match="cut.nii.gz"):
        read_volume(truncated)
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 1), np.int16), np.eye(4)), flat)
    with pytest.raises(VolumeReadError, match="2D image"):
        read_volume(flat)


def test_nifti_round_trip_any_orientation(tmp_path, hu_volume):
    for name in ("a.nii.gz", "b.nii"):
        path = write_nifti(hu_volume, tmp_path / name)
        back = read_volume(path)
        assert back.same_geometry(hu_volume, atol=1e-4)
        assert back.array.dtype == np.int16 and np.array_equal(back.array, hu_volume.array)
        img = nib.load(path)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        assert np.allclose(img.get_qform(), hu_volume.affine_ras(), atol=1e-4)
    floats = hu_volume.with_array(hu_volume.array.astype(np.float32) + 0.25)
    back = read_volume(write_nifti(floats, tmp_path / "f.nii.gz"))
    assert back.array.dtype == np.float32 and np.allclose(back.array, floats.array)
    # nibabel's own file survives read -> write -> read
    std = read_volume(nibabel_file("standard.nii.gz"))
    again = read_volume(write_nifti(std, tmp_path / "std.nii.gz"))
    assert again.same_geometry(std) and np.array_equal(again.array, std.array)
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_nifti_to_dicom_series_to_nifti(tmp_path):
    """NIfTI <-> Volume <-> DICOM series (SimpleITK) keeps geometry and HU.

    anatomical.nii has a left-handed voxel frame (j runs anterior). A DICOM stack is always
    right-handed (k = row x column), so the series comes back with k reversed: the same voxels at
    the same patient positions, in another index order. Compared in the canonical orientation.
    """
    from prdit.data.preprocess import reorient_to_lps

    std = read_volume(nibabel_file("anatomical.nii"))
    assert np.linalg.det(std.direction) < 0
    write_sitk_dicom_series(std, tmp_path / "dcm")
    from_dicom = read_volume(tmp_path / "dcm")
    assert np.linalg.det(from_dicom.direction) > 0
    a, b = reorient_to_lps(std), reorient_to_lps(from_dicom)
    assert b.same_geometry(a, atol=1e-4) and np.array_equal(b.array, a.array)
    final = read_volume(write_nifti(from_dicom, tmp_path / "final.nii.gz"))
    assert final.same_geometry(from_dicom, atol=1e-4) and np.array_equal(final.array, from_dicom.array)


# ---------------------------------------------------------------------------------- numpy and SimpleITK
def test_npz_rad_layout_keys_and_errors(tmp_path, hu_volume):
    rad = tmp_path / "trn00001.npz"
    np.savez_compressed(rad, ct=hu_volume.array)  # RAD-ChestCT: key 'ct', no geometry
    vol = read_volume(rad)
    assert np.array_equal(vol.array, hu_volume.array) and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.metadata["spacing_known"] is False and vol.metadata["npz_key"] == "ct"
    assert read_volume(rad, spacing=0.8).spacing == (0.8, 0.8, 0.8)
    other = tmp_path / "two.npz"
    np.savez(other, volume=hu_volume.array, mask=hu_volume.array > 0)
    with pytest.raises(VolumeReadError, match=r"available: volume, mask"):
        read_volume(other)
    assert read_volume(other, key="volume").shape == hu_volume.shape
    with pytest.raises(VolumeReadError, match="no array 'ct'"):
        read_volume(other, key="ct")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(rad.read_bytes()[:100])
    with pytest.raises(VolumeReadError, match="broken.npz"):
        read_volume(broken)
    back = read_volume(write_npz(hu_volume, tmp_path / "geo.npz"))
    assert back.same_geometry(hu_volume) and np.array_equal(back.array, hu_volume.array)


def test_npy_with_and_without_sidecar(tmp_path, hu_volume):
    path = write_npy(hu_volume, tmp_path / "case.npy")
    sidecar = json.loads((tmp_path / "case.json").read_text(encoding="utf-8"))
    assert sidecar["spacing"] == list(hu_volume.spacing)
    back = read_volume(path)
    assert back.same_geometry(hu_volume) and np.array_equal(back.array, hu_volume.array)
    bare = tmp_path / "bare.npy"
    np.save(bare, hu_volume.array)
    assert read_volume(bare).spacing == (1.0, 1.0, 1.0)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(VolumeReadError, match="bad.npy"):
        read_volume(tmp_path / "bad.npy")
    np.save(tmp_path / "plane.npy", np.zeros((5, 5)))
    with pytest.raises(VolumeReadError, match="2D image"):
        read_volume(tmp_path / "plane.npy")


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".npy", ".nii.gz"])
def test_write_volume_round_trips(tmp_path, hu_volume, suffix):
    back = read_volume(write_volume(hu_volume, tmp_path / f"v{suffix}"))
    assert back.same_geometry(hu_volume, atol=1e-4) and np.array_equal(back.array, hu_volume.array)


def test_mha_via_simpleitk_and_missing_file(tmp_path, hu_volume):
    sitk.WriteImage(hu_volume.to_sitk(), str(tmp_path / "x.mha"))
    assert read_volume(tmp_path / "x.mha").same_geometry(hu_volume)
    with pytest.raises(VolumeReadError, match="no such file"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "junk.nrrd").write_text("NRRD0004\nnonsense", encoding="utf-8")
    with pytest.raises(VolumeReadError, match="junk.nrrd"):
        read_volume(tmp_path / "junk.nrrd")
    with pytest.raises(ValueError, match="unknown volume format"):
        write_volume(hu_volume, tmp_path / "x.png")


def test_an_rt_dose_grid_says_what_it_is():
    dose = read_volume(pydicom_file("rtdose.dcm"))
    assert dose.metadata["modality"] == "RTDOSE" and dose.metadata["units"] == "RELATIVE"  # its DoseUnits
    ct = read_volume(pydicom_file("dicomdirtests", "98892001", "CT5N"))
    assert ct.metadata["modality"] == "CT" and ct.metadata["units"] == "HU"
