"""Write a synthetic CT volume as a classic DICOM CT series that viewers and PACS accept.

Why classic single-frame CT Image Storage: it is the one CT object every viewer, converter and
PACS reads (Enhanced/multi-frame CT is still not). One file per k-slice, int16 HU with
RescaleSlope 1 / RescaleIntercept 0, explicit VR little endian, File Meta header.

Why the synthetic marking: a generated volume must never be mistaken for a real patient. Every
file carries Synthetic Data (0008,001C) = YES, ImageType DERIVED\\SECONDARY\\AXIAL, an obviously
fake patient, a SeriesDescription starting with "SYNTHETIC", and the provenance (model,
checkpoint SHA-256, seed, sampler, steps, software) in Derivation Description and in the
Contributing Equipment Sequence (purpose: DCM 109100 "Synthesizing Equipment").

Geometry (see :mod:`prdit.volume`): slice k is ``array[k]``; ImagePositionPatient is
``volume.index_to_lps((0, 0, k))``; ImageOrientationPatient is direction columns 0 (row
direction, the i axis) and 1 (column direction, the j axis); PixelSpacing is
``(spacing_j, spacing_i)`` = (row spacing, column spacing). When the k axis points against
row x column (a left-handed direction, common for NIfTI files with a flipped axis), DICOM has
no way to say so: the positions still lie along the true k axis, InstanceNumber still follows
k, and readers that sort by position (SimpleITK, dcm2niix, every viewer) rebuild the same
voxels in patient space with the k axis reversed.

Writes are atomic: files go to ``.<name>.tmp-<uuid>`` next to ``out_dir`` and the folder is
renamed into place only when every slice is written, so an interrupted export leaves no half
series (only, after a hard kill, a hidden temporary folder).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from prdit import __version__
from prdit.export.provenance import Provenance
from prdit.export.uids import new_uid, normalize_uid_root
from prdit.volume import Volume

HU_MIN = -1024
HU_MAX = 3071
MANUFACTURER = "PRDiT Studio"
DEFAULT_PATIENT_NAME = "SYNTHETIC^PRDIT"
DEFAULT_SERIES_DESCRIPTION = "SYNTHETIC CT (PRDiT)"
DEFAULT_STUDY_DESCRIPTION = "SYNTHETIC CT (PRDiT)"
SYNTHETIC_PREFIX = "SYNTHETIC"
# DICOM CID 7005 "Contributing Equipment Purposes of Reference": the equipment made the data.
SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")

ProgressCallback = Callable[[int, int], object]


class ExportCancelled(Exception):
    """Raise from a ``progress`` callback to stop an export; nothing is left behind."""


def _check_text(what: str, value: str, max_len: int) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{what} {value!r} is {len(value)} characters; DICOM allows at most {max_len}")
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise ValueError(f"{what} {value!r} must not contain a backslash or control characters")


@dataclass(frozen=True)
class WindowPreset:
    """One VOI window stored in WindowCenter/WindowWidth; the first one is the viewer's default."""

    name: str
    center: float
    width: float

    def __post_init__(self) -> None:
        if not self.width >= 1:
            raise ValueError(f"window preset {self.name!r}: width must be >= 1 HU, got {self.width}")
        _check_text("window preset name", self.name, 64)


# Chest CT presets (width/level as in the studio's viewer); mediastinum first = viewer default.
DEFAULT_WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("MEDIASTINUM", 50, 350),
    WindowPreset("LUNG", -600, 1500),
    WindowPreset("BONE", 300, 2000),
    WindowPreset("SOFT TISSUE", 40, 400),
)


# ---------------------------------------------------------------------------- study
@dataclass(frozen=True)
class StudyContext:
    """The study (and its one synthetic patient) that one or more exported series belong to.

    Create it once with :meth:`new` and pass it as ``study=`` to several :func:`write_ct_series`
    calls to put several samples into one study, one series each.
    """

    study_instance_uid: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    study_id: str
    accession_number: str = ""
    study_description: str = DEFAULT_STUDY_DESCRIPTION
    patient_name: str = DEFAULT_PATIENT_NAME
    patient_id: str = "SYNTHETIC"
    uid_root: str | None = None

    @classmethod
    def new(
        cls,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        study_description: str | None = None,
        accession_number: str = "",
        uid_root: str | None = None,
        now: datetime | None = None,
    ) -> StudyContext:
        """A fresh study: new Study Instance UID, today's date, a fake patient unless one is given."""
        now = now or datetime.now()
        token = uuid.uuid4().hex[:10].upper()
        return cls(
            study_instance_uid=str(new_uid(uid_root)),
            study_date=now.strftime("%Y%m%d"),
            study_time=now.strftime("%H%M%S"),
            study_id=f"SYN{token[:8]}",
            accession_number=accession_number,
            study_description=study_description or DEFAULT_STUDY_DESCRIPTION,
            patient_name=patient_name or DEFAULT_PATIENT_NAME,
            patient_id=patient_id or f"SYNTHETIC-{token}",
            uid_root=uid_root,
        )

    def __post_init__(self) -> None:
        _check_text("patient name", self.patient_name, 64)
        _check_text("patient ID", self.patient_id, 64)
        _check_text("study description", self.study_description, 64)
        _check_text("accession number", self.accession_number, 16)
        _check_text("study ID", self.study_id, 16)
        if not re.fullmatch(r"\d{8}", self.study_date) or not re.fullmatch(r"\d{6}", self.study_time):
            raise ValueError(
                f"study date/time must be YYYYMMDD/HHMMSS, got {self.study_date}/{self.study_time}"
            )
        normalize_uid_root(self.uid_root)


# ---------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class SliceGeometry:
    """Per-slice DICOM geometry derived from a :class:`Volume`."""

    orientation: tuple[float, ...]  # ImageOrientationPatient: row cosines (i axis), column cosines (j axis)
    positions: np.ndarray  # (D, 3) ImagePositionPatient of each slice, LPS mm
    normal: np.ndarray  # row x column, the slice normal DICOM assumes
    pixel_spacing: tuple[float, float]  # (row spacing = spacing_j, column spacing = spacing_i)
    slice_spacing: float  # spacing_k
    left_handed: bool  # k axis points against the normal (positions still follow k)

    @property
    def slice_locations(self) -> np.ndarray:
        return self.positions @ self.normal


def slice_geometry(volume: Volume) -> SliceGeometry:
    """ImagePositionPatient/ImageOrientationPatient/PixelSpacing for each k-slice of ``volume``."""
    direction = volume.direction
    row, col = direction[:, 0], direction[:, 1]
    normal = np.cross(row, col)
    depth = volume.shape[0]
    ijk = np.zeros((depth, 3))
    ijk[:, 2] = np.arange(depth)
    positions = volume.index_to_lps(ijk)
    spacing_i, spacing_j, spacing_k = volume.spacing
    return SliceGeometry(
        orientation=tuple(float(v) for v in np.concatenate([row, col])),
        positions=positions,
        normal=normal,
        pixel_spacing=(spacing_j, spacing_i),
        slice_spacing=spacing_k,
        left_handed=bool(np.dot(normal, direction[:, 2]) < 0),
    )


def hu_to_int16(array: np.ndarray, *, source: str = "volume") -> np.ndarray:
    """HU -> int16 clipped to [-1024, 3071] and rounded half to even (``np.rint``).

    Raises ``ValueError`` for NaN/inf and for arrays that look like the model's [-1, 1] range
    (a forgotten ``HUWindow.to_hu`` would otherwise export a uniform grey block).
    """
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"{source}: voxel values must be real numbers (HU), got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.integer):
        return np.clip(values, HU_MIN, HU_MAX).astype(np.int16)
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{source}: {int((~finite).sum())} voxels are NaN or infinite; cannot export as HU")
    low, high = float(values.min()), float(values.max())
    if high > low and low >= -1.5 and high <= 1.5:
        raise ValueError(
            f"{source}: values span [{low:.3g}, {high:.3g}], which looks like the model's [-1, 1] range, "
            "not HU; convert with HUWindow.to_hu before exporting"
        )
    return np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)


# ---------------------------------------------------------------------------- helpers
def _lo(text: str) -> str:
    """Free text (a model name, a version) made safe for a single LO value: no backslash, 64 chars."""
    cleaned = "".join(" " if ord(c) < 32 else c for c in str(text)).replace("\\", "/")
    return cleaned[:64].strip()


def _ds(value: float) -> str:
    """A DS string of at most 16 characters; tiny rounding noise (1e-17) is written as 0."""
    value = float(value)
    if abs(value) < 1e-10:
        value = 0.0
    return format_number_as_ds(value)


def synthetic_series_description(text: str | None) -> str:
    """Make sure the description starts with "SYNTHETIC" (prefixing it when needed).

    Cut to DICOM's 64 characters (LO) rather than refused: descriptions are often made from a
    model name and seed after minutes of sampling, and a shortened label beats a failed export.
    """
    text = (text or "").strip() or DEFAULT_SERIES_DESCRIPTION
    if not text.upper().startswith(SYNTHETIC_PREFIX):
        text = f"{SYNTHETIC_PREFIX} {text}"
    text = text[:64].rstrip()
    _check_text("series description", text, 64)
    return text


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _is_replaceable_series(folder: Path) -> tuple[bool, str]:
    """Only a folder of ``.dcm`` files (a previous export) may be replaced: never a user's folder."""
    for entry in folder.iterdir():
        if entry.is_dir() or entry.suffix.lower() != ".dcm":
            return False, entry.name
    return True, ""


def check_output_folder(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Raise unless ``out_dir`` can take a new series (absent, empty, or a replaceable old series)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} is not empty; refusing to overwrite it (pass overwrite / --overwrite)"
            )
        ok, offender = _is_replaceable_series(out_dir)
        if not ok:
            raise FileExistsError(
                f"{out_dir} holds {offender!r}, which is not a DICOM file; refusing to replace a folder "
                "that is not a previous DICOM export"
            )
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temporary folder to ``out_dir``; an old series is removed only afterwards."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex}"
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- the writer
@dataclass
class _SeriesHeader:
    """Everything shared by the slices of one series (built once, copied into each slice)."""

    study: StudyContext
    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    provenance: Provenance
    created: datetime
    body_part: str
    window_presets: tuple[WindowPreset, ...]
    model_name: str = field(init=False)
    software_versions: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_name = _lo(self.provenance.model_name or "unknown model")
        self.software_versions = _lo(f"prdit {self.provenance.software_version or __version__}")

    @property
    def derivation_description(self) -> str:
        return f"Synthetic CT generated by {MANUFACTURER}: {self.provenance.summary()}"[:1024]

    def contributing_equipment(self) -> DicomSequence:
        item = Dataset()
        item.Manufacturer = MANUFACTURER
        item.ManufacturerModelName = self.model_name
        item.SoftwareVersions = self.software_versions
        item.ContributionDateTime = self.created.strftime("%Y%m%d%H%M%S")
        item.ContributionDescription = (
            f"Synthesized this image (not acquired from a patient): {self.provenance.summary()}"
        )[:1024]
        item.PurposeOfReferenceCodeSequence = DicomSequence([_code_item(*SYNTHESIZING_EQUIPMENT)])
        return DicomSequence([item])


def _series_template(header: _SeriesHeader, geometry: SliceGeometry, rows: int, columns: int) -> Dataset:
    """Every attribute that is the same on all slices (built once: pydicom's validation is slow)."""
    study, created = header.study, header.created
    date, time = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds = Dataset()
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.SyntheticData = "YES"
    ds.ContributingEquipmentSequence = header.contributing_equipment()
    # Patient: obviously fake, no birth date (type 2: present and empty)
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientComments = "Synthetic data generated by a model; not a real patient."
    # General Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    # General Series
    ds.Modality = "CT"
    ds.SeriesInstanceUID = header.series_uid
    ds.SeriesNumber = header.series_number
    ds.SeriesDate = date
    ds.SeriesTime = time
    ds.SeriesDescription = header.series_description
    ds.BodyPartExamined = header.body_part
    ds.PatientPosition = "HFS"
    # Frame of Reference
    ds.FrameOfReferenceUID = header.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = header.model_name
    ds.SoftwareVersions = header.software_versions
    # General Image
    ds.ContentDate = date
    ds.ContentTime = time
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = header.derivation_description
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = "SYNTHETIC IMAGE - NOT A REAL PATIENT"
    # Image Plane
    ds.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    ds.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
    ds.SliceThickness = _ds(geometry.slice_spacing)
    ds.SpacingBetweenSlices = _ds(geometry.slice_spacing)
    # CT Image (acquisition parameters unknown for a synthetic image: type 2, empty)
    ds.KVP = ""
    ds.AcquisitionNumber = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    # VOI LUT
    ds.WindowCenter = [_ds(p.center) for p in header.window_presets]
    ds.WindowWidth = [_ds(p.width) for p in header.window_presets]
    ds.WindowCenterWidthExplanation = [p.name for p in header.window_presets]
    return ds


def _slice_dataset(
    template: Dataset, geometry: SliceGeometry, pixels: np.ndarray, index: int, uid_root: str | None
) -> Dataset:
    """One slice: the shared template plus its own UID, InstanceNumber, position and pixels."""
    sop_uid = new_uid(uid_root)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PRDIT_{__version__}"[:16]

    ds = Dataset()
    ds.update(template)  # shares the (read-only) data elements
    ds.file_meta = meta
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[index]]
    ds.SliceLocation = _ds(geometry.slice_locations[index])
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def write_ct_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    provenance: Provenance | None = None,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
    series_number: int = 1,
    patient_name: str | None = None,
    patient_id: str | None = None,
    study: StudyContext | None = None,
    study_description: str | None = None,
    uid_root: str | None = None,
    body_part: str = "CHEST",
    window_presets: Sequence[WindowPreset] = DEFAULT_WINDOW_PRESETS,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write ``volume`` (HU) as a synthetic CT series of ``D`` files in ``out_dir``; return ``out_dir``.

    ``study``: share one study between several calls (see :class:`StudyContext`); without it a new
    study (and fake patient) is made, using ``patient_name``/``patient_id``/``study_description``.
    A new Series and Frame of Reference UID is made on every call, a new SOP Instance UID per slice.
    ``provenance`` defaults to ``volume.metadata["provenance"]`` when that is a :class:`Provenance`.
    ``progress(done, total)`` is called after each slice; raising from it (e.g.
    :class:`ExportCancelled`) aborts the export and removes everything written so far.
    ``overwrite``: replace a previous export in ``out_dir`` (only once the new one is complete).
    """
    if not isinstance(volume, Volume):
        raise TypeError(f"write_ct_series needs a prdit.volume.Volume, got {type(volume).__name__}")
    if isinstance(series_number, bool) or not isinstance(series_number, (int, np.integer)):
        raise ValueError(f"series number must be an integer, got {series_number!r}")
    if not 0 <= int(series_number) <= 2**31 - 1:
        raise ValueError(f"series number must be between 0 and 2147483647, got {series_number}")
    _check_text("body part", body_part, 16)
    presets = tuple(window_presets)
    if not presets:
        raise ValueError("at least one window preset is needed for WindowCenter/WindowWidth")
    description = synthetic_series_description(series_description)
    uid_root = normalize_uid_root(uid_root)
    if study is None:
        study = StudyContext.new(
            patient_name=patient_name,
            patient_id=patient_id,
            study_description=study_description,
            uid_root=uid_root,
        )
    else:
        for what, given, have in (
            ("patient name", patient_name, study.patient_name),
            ("patient ID", patient_id, study.patient_id),
        ):
            if given is not None and given != have:
                raise ValueError(
                    f"{what} {given!r} differs from the shared study's {have!r}: "
                    "a study belongs to one patient"
                )
        if uid_root is not None and study.uid_root != uid_root:
            study = replace(study, uid_root=uid_root)
    if provenance is None:
        meta_prov = volume.metadata.get("provenance") if isinstance(volume.metadata, dict) else None
        provenance = meta_prov if isinstance(meta_prov, Provenance) else Provenance()

    pixels = hu_to_int16(volume.array, source=str(volume.metadata.get("source", "volume")))
    geometry = slice_geometry(volume)
    header = _SeriesHeader(
        study=study,
        series_uid=str(new_uid(study.uid_root)),
        frame_of_reference_uid=str(new_uid(study.uid_root)),
        series_number=int(series_number),
        series_description=description,
        provenance=provenance,
        created=datetime.now(),
        body_part=body_part.upper(),
        window_presets=presets,
    )

    out_dir = check_output_folder(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    total = pixels.shape[0]
    digits = max(5, len(str(total)))
    template = _series_template(header, geometry, rows=int(pixels.shape[1]), columns=int(pixels.shape[2]))
    try:
        for k in range(total):
            ds = _slice_dataset(template, geometry, pixels[k], k, study.uid_root)
            ds.save_as(tmp / f"IM{k + 1:0{digits}d}.dcm", enforce_file_format=True)
            if progress is not None:
                progress(k + 1, total)
        check_output_folder(out_dir, overwrite=overwrite)  # may have changed while we wrote
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_ct_series_batch(
    volumes: Sequence[Volume],
    out_dirs: Sequence[str | Path],
    *,
    provenances: Sequence[Provenance | None] | None = None,
    same_study: bool = True,
    series_number: int = 1,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
    patient_name: str | None = None,
    patient_id: str | None = None,
    study_description: str | None = None,
    uid_root: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Export several volumes, one series each: all in one study (``same_study``) or a study each.

    In a shared study the series are numbered ``series_number, series_number + 1, ...``. Every
    output folder is checked before anything is written, so a bad target fails fast; each series
    is written atomically. ``progress(done, total)`` counts slices over the whole batch.
    """
    if len(volumes) != len(out_dirs):
        raise ValueError(f"{len(volumes)} volumes but {len(out_dirs)} output folders")
    if provenances is not None and len(provenances) != len(volumes):
        raise ValueError(f"{len(volumes)} volumes but {len(provenances)} provenance records")
    resolved = [Path(p).resolve() for p in out_dirs]
    if len(set(resolved)) != len(resolved):
        raise ValueError("two volumes would be written to the same output folder")
    for path in out_dirs:
        check_output_folder(path, overwrite=overwrite)
    shared = (
        StudyContext.new(
            patient_name=patient_name,
            patient_id=patient_id,
            study_description=study_description,
            uid_root=uid_root,
        )
        if same_study
        else None
    )
    total = sum(v.shape[0] for v in volumes)
    done = 0
    written: list[Path] = []
    for index, (volume, out_dir) in enumerate(zip(volumes, out_dirs, strict=True)):
        offset = done

        def step(k: int, _n: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + k, total)

        written.append(
            write_ct_series(
                volume,
                out_dir,
                provenance=provenances[index] if provenances is not None else None,
                series_description=series_description,
                series_number=series_number + index if same_study else series_number,
                patient_name=None if same_study else patient_name,
                patient_id=None if same_study else patient_id,
                study=shared,
                study_description=study_description,
                uid_root=uid_root,
                overwrite=overwrite,
                progress=step,
            )
        )
        done += volume.shape[0]
    return written
