"""Synthetic CT DICOM export, checked the way a PACS or viewer would read it.

Round trips through pydicom, SimpleITK's series reader, dcm2niix and dciodvfy (the last two are
skipped with a reason when the Debian tools are missing). Volumes are tiny so the file stays fast.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from prdit.export.dicom import (
    HU_MAX,
    HU_MIN,
    ExportCancelled,
    StudyContext,
    hu_to_int16,
    slice_geometry,
    synthetic_series_description,
    write_ct_series,
    write_ct_series_batch,
)
from prdit.export.provenance import Provenance
from prdit.export.uids import new_uid, normalize_uid_root
from prdit.volume import Volume

SHA = "0123456789abcdef" * 4
PROV = Provenance(
    model_name="PRDiT-B/12/4",
    checkpoint_sha256=SHA,
    seed=1234,
    sampler="hot",
    steps=50,
    k=2,
    software_version="0.1.0",
    checkpoint="/home/someone/runs/ema_final.safetensors",
)


# ---------------------------------------------------------------------------- fixtures / helpers
def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def rotation_x(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def coronal_ish() -> np.ndarray:
    """Rows along patient left, columns towards the feet, slices posterior; tilted 10 degrees."""
    coronal = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # columns i, j, k
    return rotation_x(10.0) @ coronal


def make_volume(direction: np.ndarray | None = None, seed: int = 0, shape=(12, 20, 24)) -> Volume:
    """Anisotropic stack (0.7 x 0.8 x 2.5 mm, W x H x D = 24 x 20 x 12) with non-integer HU, and
    values beyond the int16 clip range so clipping is exercised."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(0.0, 600.0, size=shape).astype(np.float32)
    flat = hu.reshape(-1)  # a view: the special values land wherever the shape allows
    flat[:4] = (-3000.0, 5000.0, 12.5, -7.5)  # clipped to -1024 / 3071; rint: 12 (half to even), -8
    return Volume(
        hu,
        spacing=(0.7, 0.8, 2.5),
        origin=(-12.3, 45.6, -78.9),
        direction=np.eye(3) if direction is None else direction,
    )


def expected_int16(volume: Volume) -> np.ndarray:
    return np.clip(np.rint(volume.array.astype(np.float64)), HU_MIN, HU_MAX).astype(np.int16)


def read_series(folder: Path) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


def assert_same_in_world(
    array_a: np.ndarray, affine_a: np.ndarray, array_b: np.ndarray, affine_b: np.ndarray, atol_mm: float
) -> None:
    """Arrays in (i, j, k) order with index->world affines describe the same voxels in space.

    Readers may flip or permute axes (dcm2niix, or any reader for a left-handed direction), so the
    comparison goes through patient space: inv(A) @ B must be a signed permutation with an integer
    shift, the affines must agree after that re-indexing, and the voxel values must match exactly.
    """
    mapping = np.linalg.inv(affine_a) @ affine_b  # index in b -> index in a
    rounded = np.round(mapping)
    assert np.allclose(mapping, rounded, atol=1e-3), f"not an axis permutation/flip:\n{mapping}"
    perm = rounded[:3, :3]
    assert np.all(np.abs(perm).sum(axis=0) == 1) and np.all(np.abs(perm).sum(axis=1) == 1)
    assert np.abs(affine_b - affine_a @ rounded).max() < atol_mm
    idx_b = np.stack(np.meshgrid(*[np.arange(n) for n in array_b.shape], indexing="ij"), axis=-1).reshape(
        -1, 3
    )
    idx_a = (idx_b @ perm.T + rounded[:3, 3]).astype(int)
    assert array_a.shape == tuple(int(n) for n in np.abs(perm) @ np.array(array_b.shape))
    assert np.array_equal(array_a[tuple(idx_a.T)], array_b[tuple(idx_b.T)])


# ---------------------------------------------------------------------------- tags
def test_required_tags_and_synthetic_marking(tmp_path):
    volume = make_volume()
    out = write_ct_series(volume, tmp_path / "series", provenance=PROV, series_number=7)
    datasets = read_series(out)
    assert len(datasets) == volume.shape[0]
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, 13))
    for ds in datasets:
        # File Meta present and consistent
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.preamble is not None
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.Modality == "CT"
        # pixel format
        assert (ds.Rows, ds.Columns) == (20, 24)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
        assert float(ds.RescaleIntercept) == 0.0 and float(ds.RescaleSlope) == 1.0
        assert ds.RescaleType == "HU"
        # synthetic marking
        assert ds.SyntheticData == "YES"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.BurnedInAnnotation == "NO"
        assert str(ds.PatientName) == "SYNTHETIC^PRDIT"
        assert ds.PatientID.startswith("SYNTHETIC-")
        assert "PatientBirthDate" in ds and ds.PatientBirthDate == ""
        assert ds.SeriesDescription.startswith("SYNTHETIC")
        assert int(ds.SeriesNumber) == 7
        # provenance
        for text in (ds.DerivationDescription, ds.ContributingEquipmentSequence[0].ContributionDescription):
            for needle in ("PRDiT-B/12/4", SHA, "seed=1234", "sampler=hot", "steps=50", "k=2", "0.1.0"):
                assert needle in text
            assert "/home/someone" not in text  # only the checkpoint's file name
            assert "ema_final.safetensors" in text
        equipment = ds.ContributingEquipmentSequence[0]
        assert equipment.Manufacturer == "PRDiT Studio"
        assert equipment.SoftwareVersions == "prdit 0.1.0"
        purpose = equipment.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("109100", "DCM")
        assert ds.Manufacturer == "PRDiT Studio" and ds.ManufacturerModelName == "PRDiT-B/12/4"
        # window presets: several, explained
        centers, widths = list(ds.WindowCenter), list(ds.WindowWidth)
        assert len(centers) == len(widths) == len(ds.WindowCenterWidthExplanation) >= 3
        assert (float(centers[1]), float(widths[1])) == (-600.0, 1500.0)
        assert "LUNG" in list(ds.WindowCenterWidthExplanation)
        # geometry tags
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.8, 0.7])
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(2.5)
        assert [float(v) for v in ds.ImageOrientationPatient] == pytest.approx([1, 0, 0, 0, 1, 0])
    # one study/series/frame of reference, identical on every slice
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "StudyID"):
        assert len({str(ds[key].value) for ds in datasets}) == 1, key


def test_uids_unique_and_valid(tmp_path):
    volume = make_volume(shape=(5, 6, 7))
    first = read_series(write_ct_series(volume, tmp_path / "a"))
    second = read_series(write_ct_series(volume, tmp_path / "b"))
    sop = [ds.SOPInstanceUID for ds in first + second]
    assert len(set(sop)) == len(sop) == 10
    shared = []
    for series in (first, second):
        ds = series[0]
        shared += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID]
    assert len(set(shared)) == 6, "every export gets its own study, series and frame of reference"
    for uid in sop + shared:
        assert UID(uid).is_valid and len(uid) <= 64
        assert uid.startswith("2.25.")
    assert len(set(sop + shared)) == len(sop) + len(shared)


def test_uid_root_option(tmp_path):
    root = "1.2.826.0.1.3680043.10.999"
    datasets = read_series(write_ct_series(make_volume(shape=(3, 4, 5)), tmp_path / "s", uid_root=root))
    for ds in datasets:
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID):
            assert uid.startswith(root + ".") and UID(uid).is_valid and len(uid) <= 64
    assert normalize_uid_root(root + ".") == root + "."
    for bad in ("1.02.3", "1..2", "abc", "1.2." + "3" * 50):
        with pytest.raises(ValueError, match="UID root"):
            new_uid(bad)


def test_int16_clipping_and_rounding():
    values = np.array([[[-3000.0, -1024.4, -7.5, 12.5, 0.49, 3071.6, 9000.0]]])
    assert hu_to_int16(values).tolist() == [[[-1024, -1024, -8, 12, 0, 3071, 3071]]]
    assert hu_to_int16(np.array([[[-2000, 40, 4000]]], dtype=np.int32)).tolist() == [[[-1024, 40, 3071]]]
    with pytest.raises(ValueError, match="NaN or infinite"):
        hu_to_int16(np.array([[[0.0, np.nan, 5.0]]]), source="sample_00003.nii.gz")
    with pytest.raises(ValueError, match=r"\[-1, 1\] range"):
        hu_to_int16(np.linspace(-1, 1, 8).reshape(2, 2, 2))


def test_series_description_and_patient_options(tmp_path):
    assert synthetic_series_description("lung sample") == "SYNTHETIC lung sample"
    assert synthetic_series_description("Synthetic chest") == "Synthetic chest"
    assert synthetic_series_description("x" * 70) == "SYNTHETIC " + "x" * 54  # LO: 64 characters
    with pytest.raises(ValueError, match="backslash"):
        synthetic_series_description("a\\b")
    out = write_ct_series(
        make_volume(shape=(2, 4, 4)),
        tmp_path / "s",
        series_description="Hot sampler, 50 steps",
        patient_name="FAKE^PERSON",
        patient_id="NOT-A-PATIENT-001",
    )
    ds = read_series(out)[0]
    assert ds.SeriesDescription == "SYNTHETIC Hot sampler, 50 steps"
    assert (str(ds.PatientName), ds.PatientID) == ("FAKE^PERSON", "NOT-A-PATIENT-001")
    with pytest.raises(ValueError, match="backslash"):
        write_ct_series(make_volume(shape=(2, 4, 4)), tmp_path / "t", patient_id="A\\B")
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------- geometry round trips
@pytest.mark.parametrize(
    "direction",
    [np.eye(3), rotation_z(20.0), coronal_ish()],
    ids=["axial", "rotated20z", "coronal-ish"],
)
def test_pydicom_and_simpleitk_read_back_identical(tmp_path, direction):
    sitk = pytest.importorskip("SimpleITK")
    volume = make_volume(direction)
    out = write_ct_series(volume, tmp_path / "series", provenance=PROV)
    expected = expected_int16(volume)

    # pydicom: per-slice geometry and HU
    datasets = read_series(out)
    hu = np.stack(
        [
            ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            for ds in datasets
        ]
    )
    assert np.array_equal(hu, expected)
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    assert np.allclose(iop, np.concatenate([direction[:, 0], direction[:, 1]]), atol=1e-9)
    for k, ds in enumerate(datasets):
        assert np.allclose(
            [float(v) for v in ds.ImagePositionPatient], volume.index_to_lps((0, 0, k)), atol=1e-6
        )

    # SimpleITK series reader (GDCM sorts by position along the normal)
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(out))
    assert len(files) == volume.shape[0]
    reader.SetFileNames(files)
    back = Volume.from_sitk(reader.Execute())
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, expected)
    assert np.allclose(back.spacing, volume.spacing, atol=1e-6)
    assert np.allclose(back.origin, volume.origin, atol=1e-6)
    assert np.allclose(back.direction, volume.direction, atol=1e-6)


def test_left_handed_direction_keeps_world_geometry(tmp_path):
    """A NIfTI-style flipped axis (k against row x column): same voxels in space after reading."""
    sitk = pytest.importorskip("SimpleITK")
    direction = np.diag([1.0, -1.0, 1.0]) @ rotation_z(15.0)  # det = -1
    volume = make_volume(direction)
    geometry = slice_geometry(volume)
    assert geometry.left_handed
    out = write_ct_series(volume, tmp_path / "series")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    back = Volume.from_sitk(reader.Execute())
    assert np.linalg.det(back.direction) == pytest.approx(1.0)
    assert_same_in_world(
        expected_int16(volume).transpose(2, 1, 0),
        volume.affine_lps(),
        back.array.transpose(2, 1, 0),
        back.affine_lps(),
        atol_mm=1e-4,
    )
    # InstanceNumber still follows the input's k order
    datasets = read_series(out)
    assert np.allclose([float(v) for v in datasets[-1].ImagePositionPatient], volume.index_to_lps((0, 0, 11)))


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), rotation_z(20.0), coronal_ish(), np.diag([1.0, -1.0, 1.0])],
    ids=["axial", "rotated20z", "coronal-ish", "left-handed"],
)
def test_dcm2niix_round_trip(tmp_path, direction):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix)")
    nib = pytest.importorskip("nibabel")
    volume = make_volume(direction)
    out = write_ct_series(volume, tmp_path / "series")
    nifti_dir = tmp_path / "nifti"
    nifti_dir.mkdir()
    result = subprocess.run(
        ["dcm2niix", "-z", "y", "-f", "back", "-o", str(nifti_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = list(nifti_dir.glob("*.nii.gz"))
    assert len(files) == 1, result.stdout
    image = nib.load(files[0])
    data = np.asanyarray(image.dataobj)
    assert data.ndim == 3
    assert_same_in_world(
        expected_int16(volume).transpose(2, 1, 0), volume.affine_ras(), data, image.affine, atol_mm=1e-3
    )


def test_third_party_nifti_round_trip(tmp_path):
    """nibabel's anatomical.nii: big-endian int16, values above 3071, a left-handed (LAS) affine."""
    nib = pytest.importorskip("nibabel")
    sitk = pytest.importorskip("SimpleITK")
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    if not path.is_file():
        pytest.skip(f"{path} is not shipped with this nibabel")
    image = nib.load(path)
    volume = Volume.from_affine_ras(np.asanyarray(image.dataobj).transpose(2, 1, 0), image.affine)
    assert slice_geometry(volume).left_handed and volume.array.max() > HU_MAX
    out = write_ct_series(volume, tmp_path / "series")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    back = Volume.from_sitk(reader.Execute())
    assert_same_in_world(
        expected_int16(volume).transpose(2, 1, 0),
        volume.affine_lps(),
        back.array.transpose(2, 1, 0),
        back.affine_lps(),
        atol_mm=1e-4,
    )
    if shutil.which("dcm2niix") is not None:
        result = subprocess.run(
            ["dcm2niix", "-z", "y", "-f", "back", "-o", str(tmp_path), str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        again = nib.load(tmp_path / "back.nii.gz")
        assert_same_in_world(
            expected_int16(volume).transpose(2, 1, 0),
            volume.affine_ras(),
            np.asanyarray(again.dataobj),
            again.affine,
            atol_mm=1e-3,
        )


# ---------------------------------------------------------------------------- conformance (dciodvfy)
def test_dciodvfy_reports_no_errors(tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (Debian package dicom3tools)")
    out = write_ct_series(
        make_volume(rotation_z(20.0), shape=(4, 8, 6)), tmp_path / "series", provenance=PROV
    )
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 4
    for path in files:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = (result.stdout + result.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        # Its 2022 dictionary predates Synthetic Data (0008,001C): that one line is expected.
        unexpected = [line for line in errors if "(0x0008,0x001c)" not in line]
        assert not unexpected, f"{path.name}:\n" + "\n".join(lines)
        warnings = [line for line in lines if line.startswith("Warning") and "(0x0008,0x001c)" not in line]
        # the only other warning is the consequence: "Standard Extended SOP Class"
        assert all("Standard Extended SOP Class" in line for line in warnings), "\n".join(warnings)
        assert "CTImage" in lines


def test_dcentvfy_entities_consistent_across_files(tmp_path):
    """dcentvfy checks that patient/study/series attributes agree across all files (as a PACS merges)."""
    if shutil.which("dcentvfy") is None:
        pytest.skip("dcentvfy is not installed (Debian package dicom3tools)")
    volumes = [make_volume(shape=(3, 6, 5), seed=s) for s in range(2)]
    outs = write_ct_series_batch(volumes, [tmp_path / "a", tmp_path / "b"], same_study=True)
    files = [str(p) for out in outs for p in sorted(out.glob("*.dcm"))]
    result = subprocess.run(["dcentvfy", *files], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert not [line for line in lines if line.startswith("Error")], "\n".join(lines)


# ---------------------------------------------------------------------------- atomic writes
def test_failure_midway_leaves_nothing(tmp_path):
    def fail_on_third(done: int, total: int) -> None:
        if done == 3:
            raise ExportCancelled("user pressed cancel")

    with pytest.raises(ExportCancelled):
        write_ct_series(make_volume(), tmp_path / "series", progress=fail_on_third)
    assert list(tmp_path.iterdir()) == [], "no series and no temporary folder may remain"


def test_progress_reports_every_slice(tmp_path):
    calls = []
    write_ct_series(make_volume(shape=(5, 4, 4)), tmp_path / "s", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_refuses_non_empty_folder_and_overwrites_only_when_complete(tmp_path):
    target = tmp_path / "series"
    write_ct_series(make_volume(shape=(4, 6, 6), seed=1), target)
    old_files = sorted(p.name for p in target.iterdir())
    old_uid = read_series(target)[0].SeriesInstanceUID
    with pytest.raises(FileExistsError, match="not empty"):
        write_ct_series(make_volume(shape=(3, 6, 6)), target)

    # overwrite=True but the new export fails: the old series must still be there, untouched
    def fail(done: int, total: int) -> None:
        if done == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_ct_series(make_volume(shape=(3, 6, 6)), target, overwrite=True, progress=fail)
    assert sorted(p.name for p in target.iterdir()) == old_files
    assert read_series(target)[0].SeriesInstanceUID == old_uid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]

    # overwrite=True and it succeeds: only the new series remains
    write_ct_series(make_volume(shape=(3, 6, 6)), target, overwrite=True)
    new = read_series(target)
    assert len(new) == 3 and new[0].SeriesInstanceUID != old_uid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_overwrite_never_replaces_a_foreign_folder(tmp_path):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "thesis.docx").write_text("precious", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a DICOM file"):
        write_ct_series(make_volume(shape=(2, 4, 4)), target, overwrite=True)
    assert (target / "thesis.docx").read_text(encoding="utf-8") == "precious"


def test_empty_existing_folder_is_used(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    write_ct_series(make_volume(shape=(2, 4, 4)), target)
    assert len(list(target.glob("*.dcm"))) == 2


# ---------------------------------------------------------------------------- several samples
def test_batch_shared_study_and_study_each(tmp_path):
    volumes = [make_volume(shape=(3, 5, 6), seed=s) for s in range(3)]
    provenances = [Provenance(model_name="PRDiT-S/8/2", seed=s, sampler="cold", steps=10) for s in range(3)]
    progress = []
    shared = write_ct_series_batch(
        volumes,
        [tmp_path / "shared" / f"s{i}" for i in range(3)],
        provenances=provenances,
        same_study=True,
        series_number=10,
        progress=lambda d, t: progress.append((d, t)),
    )
    firsts = [read_series(p)[0] for p in shared]
    assert len({ds.StudyInstanceUID for ds in firsts}) == 1
    assert len({ds.PatientID for ds in firsts}) == 1
    assert len({ds.SeriesInstanceUID for ds in firsts}) == 3
    assert len({ds.FrameOfReferenceUID for ds in firsts}) == 3
    assert [int(ds.SeriesNumber) for ds in firsts] == [10, 11, 12]
    assert [f"seed={s}" in ds.DerivationDescription for s, ds in enumerate(firsts)] == [True] * 3
    assert progress[-1] == (9, 9) and len(progress) == 9

    separate = write_ct_series_batch(
        volumes, [tmp_path / "sep" / f"s{i}" for i in range(3)], same_study=False
    )
    firsts = [read_series(p)[0] for p in separate]
    assert len({ds.StudyInstanceUID for ds in firsts}) == 3
    assert len({ds.SeriesInstanceUID for ds in firsts}) == 3


def test_batch_checks_every_target_before_writing(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "IM00001.dcm").write_bytes(b"old")
    volumes = [make_volume(shape=(2, 4, 4), seed=s) for s in range(2)]
    with pytest.raises(FileExistsError, match="s1"):
        write_ct_series_batch(volumes, [tmp_path / "s0", tmp_path / "s1"])
    assert not (tmp_path / "s0").exists()


def test_study_context_shared_by_calls(tmp_path):
    study = StudyContext.new(patient_name="DEMO^SYNTHETIC", patient_id="DEMO-1", accession_number="A1")
    a = read_series(
        write_ct_series(make_volume(shape=(2, 4, 4)), tmp_path / "a", study=study, series_number=1)
    )[0]
    b = read_series(
        write_ct_series(make_volume(shape=(2, 4, 4)), tmp_path / "b", study=study, series_number=2)
    )[0]
    assert a.StudyInstanceUID == b.StudyInstanceUID == study.study_instance_uid
    assert a.AccessionNumber == "A1" and a.StudyID == b.StudyID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    with pytest.raises(ValueError, match="one patient"):
        write_ct_series(make_volume(shape=(2, 4, 4)), tmp_path / "c", study=study, patient_id="OTHER")


# ---------------------------------------------------------------------------- provenance
def test_provenance_from_sample_sidecar():
    sidecar = {
        "seed": 7,
        "sampler": "hot",
        "steps": 50,
        "k": 2,
        "checkpoint": "runs/x/ema.safetensors",
        "checkpoint_sha256": SHA.upper(),
        "model_name": "PRDiT-B/12/4",
        "input_size": 64,
        "hu_window": {"low": -1000, "high": 1000, "mode": "window"},
        "software_version": "0.1.0",
        "created": "2026-01-01T00:00:00",
    }
    prov = Provenance.from_sidecar(sidecar)
    assert prov == Provenance("PRDiT-B/12/4", SHA, 7, "hot", 50, 2, "0.1.0", "ema.safetensors")
    assert Provenance.is_sample_sidecar(sidecar)
    assert not Provenance.is_sample_sidecar({"spacing": [1, 1, 1]})
    assert Provenance().summary() == "provenance unknown"
    with pytest.raises(ValueError, match="sample_00001.json: 'seed' must be an integer"):
        Provenance.from_sidecar({"seed": "abc"}, source="sample_00001.json")
    with pytest.raises(ValueError, match="'steps' must be an integer"):
        Provenance.from_sidecar({"steps": 2.5})
    with pytest.raises(ValueError, match="64 hex digits"):
        Provenance.from_sidecar({"checkpoint_sha256": "abc"})


def test_provenance_taken_from_volume_metadata(tmp_path):
    volume = make_volume(shape=(2, 4, 4))
    volume.metadata["provenance"] = PROV
    ds = read_series(write_ct_series(volume, tmp_path / "s"))[0]
    assert "seed=1234" in ds.DerivationDescription


def test_unknown_provenance_is_still_marked_synthetic(tmp_path):
    ds = read_series(write_ct_series(make_volume(shape=(2, 4, 4)), tmp_path / "s"))[0]
    assert ds.SyntheticData == "YES"
    assert "provenance unknown" in ds.DerivationDescription
