"""DICOM series folders -> :class:`~prdit.volume.Volume`, with the checks real archives need.

Why not just ``SimpleITK.ImageSeriesReader`` on a folder: archives such as LIDC-IDRI hold several
series per study (CT plus radiographs), slices whose file names do not follow their position, and
now and then a missing slice, uneven spacing or a tilted gantry. Silently stacking those gives a
volume with wrong geometry. So headers are scanned with pydicom first (fast, no pixels), each
series is checked and sorted by position along the slice normal, and only then SimpleITK (GDCM,
which decodes compressed transfer syntaxes) reads the pixels of the sorted file list. Geometry is
set from the headers: origin = first slice position, direction columns = row cosine, column cosine,
slice normal; spacing = (column spacing, row spacing, slice step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prdit.data.errors import MultipleSeriesError
from prdit.volume import Volume

# Tolerances: positions are rounded to 0.01 mm in many archives
SPACING_RTOL = 0.02  # relative deviation of a slice step from the median allowed
SPACING_ATOL = 0.05  # mm
TILT_TOL_DEG = 0.5


class DicomError(ValueError):
    """Base class of the DICOM problems (the io module re-raises them as VolumeReadError)."""


class SingleImageSeriesError(DicomError):
    """A series of one 2D image; ``.path`` is that file (the studio shows it as one slice)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class SeriesInfo:
    """One series found in a folder (what ``prdit info`` lists and ``--series`` selects)."""

    uid: str
    description: str
    modality: str
    number_of_files: int
    size: tuple[int, int, int]  # (columns, rows, slices), i.e. (W, H, D)
    folder: str = ""
    files: list[str] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        w, h, d = self.size
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid} [{self.modality}]{desc}: {self.number_of_files} files, {w}x{h}x{d}"


@dataclass
class _Header:
    path: str
    series_uid: str
    modality: str
    description: str
    rows: int
    columns: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    instance: int
    frames: int
    tilt: float
    units: str = ""  # what the pixel values mean (dicom_units)


def dicom_units(ds) -> str:
    """The unit of the pixel values as the file states it: PET ``Units`` (BQML, CNTS, ...), RT
    dose ``DoseUnits`` (GY), ``RescaleType``; "HU" for CT, which is in Hounsfield units by
    definition; "" when the file does not say."""
    for tag in ("Units", "DoseUnits", "RescaleType"):
        value = str(ds.get(tag, "") or "").strip()
        if value and value.upper() != "US":  # US: "unspecified"
            return value
    return "HU" if str(ds.get("Modality", "")).upper() == "CT" else ""


def _is_dicom_file(path: str) -> bool:
    """Cheap test: the 'DICM' magic at offset 128 (files without a preamble are tried too)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: str) -> _Header | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not _is_dicom_file(path))
    except InvalidDicomError:
        return None
    except Exception:  # noqa: BLE001 - a probe: XML notes, thumbnails etc. sit beside DICOM files
        return None
    if "SeriesInstanceUID" not in ds or "Rows" not in ds:
        return None  # DICOMDIR, reports, presentation states: no image

    def floats(name, n):
        value = ds.get(name)
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return out if len(out) == n else None

    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    try:
        tilt = float(ds.get("GantryDetectorTilt", 0.0) or 0.0)
    except (TypeError, ValueError):
        tilt = 0.0
    try:
        instance = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        instance = 0
    return _Header(
        path=path,
        series_uid=str(ds.SeriesInstanceUID),
        modality=str(ds.get("Modality", "")),
        description=str(ds.get("SeriesDescription", "")),
        rows=int(ds.Rows),
        columns=int(ds.get("Columns", 0)),
        position=floats("ImagePositionPatient", 3),
        orientation=floats("ImageOrientationPatient", 6),
        pixel_spacing=floats("PixelSpacing", 2),
        instance=instance,
        frames=frames,
        tilt=tilt,
        units=dicom_units(ds),
    )


def _scan(folder: Path) -> dict[str, list[_Header]]:
    """All image headers under ``folder`` (recursively), grouped by SeriesInstanceUID."""
    import warnings

    groups: dict[str, list[_Header]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom complains loudly about harmless VR quirks
        _walk_into(folder, groups)
    return groups


def _walk_into(folder: Path, groups: dict[str, list[_Header]]) -> None:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.upper() == "DICOMDIR" or name.startswith("."):
                continue
            h = _read_header(os.path.join(root, name))
            if h is not None:
                groups.setdefault(h.series_uid, []).append(h)


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """The image series under ``folder`` (searched recursively), largest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"{folder}: not a folder")
    out = []
    for uid, headers in _scan(folder).items():
        h0 = headers[0]
        slices = sum(h.frames for h in headers)
        common = os.path.commonpath([h.path for h in headers])
        if not os.path.isdir(common):
            common = os.path.dirname(common)
        out.append(
            SeriesInfo(
                uid=uid,
                description=h0.description,
                modality=h0.modality,
                number_of_files=len(headers),
                size=(h0.columns, h0.rows, slices),
                folder=common,
                files=[h.path for h in headers],
            )
        )
    out.sort(key=lambda s: (-s.number_of_files, s.uid))
    return out


def _normal(orientation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def sort_and_check(headers: list[_Header], where: str) -> tuple[list[_Header], float, np.ndarray]:
    """Sort slices along the normal and check them; returns (sorted, slice step mm, direction).

    Raises :class:`DicomError` naming the folder/file and the problem for: a single 2D image,
    missing geometry tags, mixed sizes or orientations, duplicate positions, missing slices (a gap
    of about a whole number of steps), non-uniform spacing, and gantry tilt.
    """
    if len(headers) == 1 and headers[0].frames > 1:
        raise DicomError(
            f"{headers[0].path}: a multi-frame DICOM file; "
            "read it with read_volume(file) instead of its folder"
        )
    if len(headers) < 2:
        raise SingleImageSeriesError(
            f"{where}: the series holds a single 2D image ({headers[0].path}), not a 3D volume",
            headers[0].path,
        )
    for h in headers:
        if h.position is None or h.orientation is None or h.pixel_spacing is None:
            missing = [
                n
                for n, v in (
                    ("ImagePositionPatient", h.position),
                    ("ImageOrientationPatient", h.orientation),
                    ("PixelSpacing", h.pixel_spacing),
                )
                if v is None
            ]
            raise DicomError(f"{h.path}: missing {', '.join(missing)}; cannot place the slice in 3D")
    h0 = headers[0]
    for h in headers[1:]:
        if (h.rows, h.columns) != (h0.rows, h0.columns):
            raise DicomError(
                f"{h.path}: slice size {h.columns}x{h.rows} differs from {h0.columns}x{h0.rows} "
                f"({h0.path}) in the same series"
            )
        if not np.allclose(h.orientation, h0.orientation, atol=1e-3):
            raise DicomError(f"{h.path}: ImageOrientationPatient differs from other slices of the series")
        if not np.allclose(h.pixel_spacing, h0.pixel_spacing, rtol=1e-3):
            raise DicomError(f"{h.path}: PixelSpacing differs from other slices of the series")
    row, col, normal = _normal(h0.orientation)
    pos = np.array([h.position for h in headers], dtype=np.float64)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    headers = [headers[i] for i in order]
    pos, dist = pos[order], dist[order]
    steps = np.diff(dist)
    dup = np.flatnonzero(steps < SPACING_ATOL)
    if dup.size:
        i = int(dup[0])
        raise DicomError(
            f"{where}: two slices at the same position {dist[i]:.2f} mm along the normal "
            f"({headers[i].path}, {headers[i + 1].path}); duplicated or mixed acquisitions"
        )
    # gantry tilt: consecutive positions are not along the normal
    offsets = np.diff(pos, axis=0)
    cosines = (offsets @ normal) / np.linalg.norm(offsets, axis=1)
    tilt = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
    header_tilt = max(abs(h.tilt) for h in headers)
    if tilt > TILT_TOL_DEG or header_tilt > TILT_TOL_DEG:
        angle = max(tilt, header_tilt)
        raise DicomError(
            f"{where}: gantry tilt of {angle:.1f} degrees (slices are sheared, not stacked along their "
            "normal); resample it first, e.g. with dcm2niix (which corrects tilt)"
        )
    step = float(np.median(steps))
    deviation = np.abs(steps - step)
    bad = np.flatnonzero(deviation > max(SPACING_ATOL, SPACING_RTOL * step))
    if bad.size:
        i = int(bad[0])
        ratio = steps[i] / step
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            raise DicomError(
                f"{where}: about {round(ratio) - 1} missing slice(s): gap of {steps[i]:.2f} mm between "
                f"{headers[i].path} and {headers[i + 1].path} (slice step {step:.2f} mm)"
            )
        raise DicomError(
            f"{where}: non-uniform slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm "
            f"(median {step:.2f}); first irregular step between {headers[i].path} and {headers[i + 1].path}"
        )
    direction = np.stack([row, col, normal], axis=1)
    return headers, step, direction


def _find_bad_file(headers: list[_Header]) -> str | None:
    """After a pixel read failed: the first file whose pixel data is missing or short."""
    import pydicom

    for h in headers:
        try:
            ds = pydicom.dcmread(h.path)
            if "PixelData" not in ds:
                return f"{h.path}: no pixel data"
            if not ds.file_meta.TransferSyntaxUID.is_compressed:
                expected = ds.Rows * ds.Columns * (ds.BitsAllocated // 8) * int(ds.get("SamplesPerPixel", 1))
                if len(ds.PixelData) < expected * h.frames:
                    got = len(ds.PixelData)
                    return f"{h.path}: truncated pixel data ({got} of {expected * h.frames} bytes)"
        except Exception as exc:  # noqa: BLE001 - we are diagnosing an already failed read
            return f"{h.path}: unreadable ({exc})"
    return None


def read_dicom_series(folder: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read one series from a folder (searched recursively); see the module docstring."""
    import SimpleITK as sitk

    folder = Path(folder)
    groups = _scan(folder)
    if not groups:
        raise DicomError(f"{folder}: no DICOM image files found (searched recursively)")
    if series_uid is None:
        if len(groups) > 1:
            series = list_dicom_series(folder)
            listing = "\n  ".join(str(s) for s in series)
            raise MultipleSeriesError(
                f"{folder}: holds {len(series)} series; choose one with --series UID:\n  {listing}", series
            )
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        raise DicomError(f"{folder}: no series with UID {series_uid}; found: {', '.join(sorted(groups))}")
    headers, step, direction = sort_and_check(groups[series_uid], str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([h.path for h in headers])
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        problem = _find_bad_file(headers)
        detail = problem or str(exc).strip().splitlines()[-1]
        raise DicomError(f"{folder}: cannot read the pixel data of series {series_uid}: {detail}") from exc
    array = sitk.GetArrayFromImage(image)
    if array.ndim != 3 or array.shape[0] != len(headers):
        raise DicomError(
            f"{folder}: series {series_uid} decoded to shape {array.shape}, expected {len(headers)} slices "
            "(multi-component or multi-frame images are not CT volumes)"
        )
    h0 = headers[0]
    row_spacing, col_spacing = h0.pixel_spacing
    if np.issubdtype(array.dtype, np.integer) and array.min() >= -32768 and array.max() <= 32767:
        array = array.astype(np.int16, copy=False)
    else:
        array = array.astype(np.float32, copy=False)
    meta = {
        "source": str(folder),
        "series_uid": series_uid,
        "modality": h0.modality,
        "units": h0.units,
        "series_description": h0.description,
        "format": "dicom",
    }
    return Volume(array, (col_spacing, row_spacing, step), h0.position, direction, meta)
