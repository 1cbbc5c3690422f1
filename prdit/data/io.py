"""Read and write CT volumes in the formats users bring: NIfTI, DICOM series, .npz, .npy, MHA/NRRD.

Every reader returns a :class:`~prdit.volume.Volume` (HU, geometry in LPS) and every writer takes
one, so geometry survives any round trip. Bad input raises :class:`VolumeReadError` naming the file
and the problem (never a bare traceback from deep inside a library).

Formats
-------
* NIfTI (``.nii``, ``.nii.gz``) via nibabel: any orientation; the affine (sform, else qform) is
  converted from RAS to LPS, the voxel order is kept (see ``direction``); scaling applied.
  3D, or 4D with a single volume; 4D series are refused.
* DICOM: a folder (one series, searched recursively; ``series_uid`` picks one of several) or a
  single file (a multi-frame volume). See :mod:`prdit.data.dicom_series` for the checks.
* RAD-ChestCT ``.npz``: the public volumes are ``.npz`` archives whose key ``ct`` holds the HU array
  ``(slices, rows, columns)``; there is no geometry inside, so spacing defaults to 1 mm and
  ``metadata["spacing_known"]`` is False (pass ``spacing=`` if you know it). Other keys can be chosen
  with ``key=``; a single-array archive needs no key; optional ``spacing``/``origin``/``direction``
  arrays in the archive are used (that is what :func:`write_npz` writes).
* ``.npy``: a ``(D, H, W)`` HU array, with an optional sidecar ``<stem>.json`` holding
  ``spacing``, ``origin`` (ITK ``(i, j, k)`` order) and ``direction`` (3x3 rows or 9 numbers,
  row-major like ``SimpleITK.Image.GetDirection()``). Without a sidecar spacing is 1 mm.
* ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr`` (and anything else SimpleITK reads) via SimpleITK.

Writers are atomic: data goes to a temporary file in the destination folder, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from prdit.atomic import atomic_path
from prdit.data.dicom_series import (
    DicomError,
    SeriesInfo,
    SingleImageSeriesError,
    dicom_units,
    read_dicom_series,
)
from prdit.data.dicom_series import list_dicom_series as _list_dicom_series
from prdit.data.errors import MultipleSeriesError, VolumeReadError  # noqa: F401 - public here
from prdit.volume import Volume

__all__ = [
    "VolumeReadError",
    "MultipleSeriesError",
    "SeriesInfo",
    "read_volume",
    "list_dicom_series",
    "write_nifti",
    "write_npy",
    "write_npz",
    "write_volume",
    "volume_format",
    "VOLUME_SUFFIXES",
]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy", ".npz", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")
DEFAULT_NPZ_KEY = "ct"


def volume_format(path: str | os.PathLike) -> str:
    """'dicom', 'nifti', 'npy', 'npz', 'sitk' (MHA/NRRD/...) from the path (a folder is DICOM)."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".dcm"):
        return "dicom-file"
    return "sitk"


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Image series under a folder (recursive), largest first."""
    try:
        return _list_dicom_series(folder)
    except DicomError as exc:
        raise VolumeReadError(str(exc)) from exc


def read_volume(
    path: str | os.PathLike,
    series_uid: str | None = None,
    *,
    key: str | None = None,
    spacing: tuple[float, float, float] | float | None = None,
    allow_2d: bool = False,
) -> Volume:
    """Read a CT volume in HU (int16 when stored as integers, else float32) with its geometry.

    ``series_uid`` selects a series in a DICOM folder; ``key`` the array in an ``.npz``;
    ``spacing`` (mm, ``(i, j, k)`` order or one number) overrides the spacing of formats that do
    not store it (``.npz`` and ``.npy`` without sidecar). ``allow_2d`` (the studio) reads a single
    image (one DICOM slice, a 2D NIfTI or array) as a volume one slice deep; training, evaluation
    and export keep refusing it with a message that says so.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeReadError(f"{p}: no such file or folder")
    fmt = volume_format(p)
    try:
        if fmt == "dicom":
            try:
                volume = read_dicom_series(p, series_uid)
            except SingleImageSeriesError as exc:
                if not allow_2d:
                    raise
                volume = _read_dicom_file(Path(exc.path), allow_2d=True)
        elif fmt == "nifti":
            volume = _read_nifti(p, allow_2d)
        elif fmt == "npy":
            volume = _read_npy(p, allow_2d)
        elif fmt == "npz":
            volume = _read_npz(p, key, allow_2d)
        elif fmt == "dicom-file":
            volume = _read_dicom_file(p, allow_2d)
        else:
            volume = _read_sitk(p, allow_2d)
    except MultipleSeriesError:
        raise
    except VolumeReadError:
        raise
    except DicomError as exc:
        raise VolumeReadError(str(exc)) from exc
    except (OSError, EOFError, ValueError, RuntimeError, KeyError) as exc:
        raise VolumeReadError(f"{p}: cannot read it as {fmt}: {exc}") from exc
    if spacing is not None and not volume.metadata.get("spacing_known", True):
        volume = Volume(volume.array, spacing, volume.origin, volume.direction, dict(volume.metadata))
        volume.metadata["spacing_known"] = True
    _check_values(volume, p)
    return volume


def _check_values(volume: Volume, path: Path) -> None:
    arr = volume.array
    if arr.dtype.kind not in "iuf":
        raise VolumeReadError(f"{path}: voxel type {arr.dtype} is not numeric")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise VolumeReadError(f"{path}: contains NaN or infinite values")


def _fix_dtype(array: np.ndarray) -> np.ndarray:
    """int16 for integral HU that fits, float32 otherwise (native byte order)."""
    if array.dtype.kind in "iub":
        if array.size and (array.min() < -32768 or array.max() > 32767):
            return array.astype(np.float32)
        return array.astype(np.int16, copy=False)
    return array.astype(np.float32, copy=False)


def _need_3d(array: np.ndarray, path: Path, allow_2d: bool = False) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if allow_2d and array.ndim == 2:
        return array[None]  # one slice deep: (1, H, W)
    if allow_2d and array.ndim == 3 and min(array.shape) == 1:
        return array
    if array.ndim == 2 or (array.ndim == 3 and min(array.shape) == 1):
        raise VolumeReadError(f"{path}: a 2D image (shape {array.shape}), not a 3D volume")
    if array.ndim == 4:
        raise VolumeReadError(
            f"{path}: a 4D image with {array.shape[-1]} volumes (shape {array.shape}); "
            "extract one 3D volume first"
        )
    if array.ndim != 3:
        raise VolumeReadError(f"{path}: expected a 3D volume, got {array.ndim}D with shape {array.shape}")
    return array


# ---------------------------------------------------------------------------------------------- NIfTI
def _read_nifti(path: Path, allow_2d: bool = False) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) == 4 and shape[3] > 1:
            raise VolumeReadError(
                f"{path}: a 4D image with {shape[3]} volumes (shape {shape}); extract one 3D volume first"
            )
        flat = len(shape) == 2 or (len(shape) >= 3 and shape[2] == 1)
        if flat and not allow_2d:
            raise VolumeReadError(f"{path}: a 2D image (shape {shape}), not a 3D volume")
        slope, inter = img.dataobj.slope, img.dataobj.inter
        raw = np.asanyarray(img.dataobj)
        if flat:  # one slice deep: [i, j, 1]
            raw = raw.reshape(shape[0], shape[1], 1)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt/truncated files
        raise VolumeReadError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    data = _need_3d(np.asarray(raw), path, allow_2d)
    unscaled = slope in (None, 1) and inter in (None, 0)
    scaled = not unscaled or np.issubdtype(img.get_data_dtype(), np.floating)
    data = data.astype(np.float32) if scaled and data.dtype.kind != "f" else data
    data = _fix_dtype(data)
    affine = np.array(img.affine, dtype=np.float64)
    if data.shape[2] == 1 and np.linalg.norm(affine[:3, 2]) <= 0:  # a 2D file: no third axis, 1 mm
        n = np.cross(affine[:3, 0], affine[:3, 1])
        affine[:3, 2] = n / (np.linalg.norm(n) or 1.0)
    rot = affine[:3, :3]
    norms = np.linalg.norm(rot, axis=0)
    if np.any(norms <= 0):
        raise VolumeReadError(f"{path}: the affine has a zero-length axis:\n{affine}")
    direction = rot / norms
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise VolumeReadError(f"{path}: the affine has shear; only rotations/flips are supported:\n{affine}")
    # nibabel arrays are [i, j, k]; the Volume stores [k, j, i]
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return Volume.from_affine_ras(array, affine, source=str(path), format="nifti")


def _atomic_write(path: Path):
    """Atomic write that keeps the full suffix (e.g. '.nii.gz') so writers pick the right format."""
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    return atomic_path(path, suffix=suffix)


def _storage_array(volume: Volume) -> np.ndarray:
    """int16 when every value is an integer in range (HU usually are), else float32."""
    arr = volume.array
    if arr.dtype.kind in "iu" and arr.size and arr.min() >= -32768 and arr.max() <= 32767:
        return arr.astype(np.int16, copy=False)
    if arr.dtype.kind == "f" and arr.size:
        finite = np.isfinite(arr).all()
        if finite and arr.min() >= -32768 and arr.max() <= 32767 and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int16)
    return arr.astype(np.float32, copy=False)


def write_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write NIfTI-1 (``.nii`` or ``.nii.gz``) with qform and sform = ``volume.affine_ras()``."""
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    data = np.transpose(_storage_array(volume), (2, 1, 0))
    affine = volume.affine_ras()
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # scanner anatomical
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    img.header["descrip"] = b"prdit"
    with _atomic_write(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _sidecar_path(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".npy", ".npz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _geometry_dict(volume: Volume) -> dict[str, Any]:
    return {
        "spacing": [float(v) for v in volume.spacing],
        "origin": [float(v) for v in volume.origin],
        "direction": [[float(v) for v in row] for row in volume.direction],
        "shape": list(volume.shape),
        "units": "HU",
        "axes": "array[k, j, i]; spacing/origin/direction in ITK (i, j, k) order, LPS",
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with _atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_npy(volume: Volume, path: str | os.PathLike, dtype: Any = None) -> Path:
    """Write ``<stem>.npy`` (memory-mappable) plus the geometry sidecar ``<stem>.json``."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: a .npy file name must end in .npy")
    array = volume.array if dtype is None else volume.array.astype(dtype)
    with _atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))
    meta = _geometry_dict(volume)
    _write_json(_sidecar_path(path), meta)
    return path


def write_npz(volume: Volume, path: str | os.PathLike, key: str = DEFAULT_NPZ_KEY) -> Path:
    """Write a RAD-ChestCT-style ``.npz``: the HU array under ``key`` plus geometry arrays."""
    path = Path(path)
    with _atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                **{key: volume.array},
                spacing=np.asarray(volume.spacing),
                origin=np.asarray(volume.origin),
                direction=np.asarray(volume.direction),
            )
    return path


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write by extension: .nii/.nii.gz, .npy (+ .json), .npz, .mha/.nrrd (SimpleITK)."""
    import SimpleITK as sitk

    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return write_nifti(volume, path)
    if name.endswith(".npy"):
        return write_npy(volume, path)
    if name.endswith(".npz"):
        return write_npz(volume, path)
    if name.endswith((".mha", ".nrrd")):
        image = volume.with_array(_storage_array(volume)).to_sitk()
        with _atomic_write(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        return path
    raise ValueError(f"{path}: unknown volume format; use .nii, .nii.gz, .npy, .npz, .mha or .nrrd")


# -------------------------------------------------------------------------------------- numpy formats
def _geometry_from(meta: dict[str, Any], source: Path) -> tuple[Any, Any, Any]:
    try:
        spacing = meta.get("spacing", (1.0, 1.0, 1.0))
        origin = meta.get("origin", (0.0, 0.0, 0.0))
        direction = np.asarray(meta.get("direction", np.eye(3)), dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError) as exc:
        raise VolumeReadError(
            f"{source}: bad geometry ({exc}); expected spacing[3], origin[3], direction[3x3]"
        ) from exc
    return spacing, origin, direction


def _make_volume(array, spacing, origin, direction, source: Path, **meta) -> Volume:
    try:
        return Volume(array, spacing, origin, direction, {"source": str(source), **meta})
    except ValueError as exc:
        raise VolumeReadError(f"{source}: {exc}") from exc


def _read_npy(path: Path, allow_2d: bool = False) -> Volume:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise VolumeReadError(f"{path}: not a readable .npy array ({exc})") from exc
    array = _fix_dtype(_need_3d(np.asarray(array), path, allow_2d))
    sidecar = _sidecar_path(path)
    meta: dict[str, Any] = {}
    known = False
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise VolumeReadError(f"{sidecar}: not valid JSON ({exc})") from exc
        if not isinstance(meta, dict):
            raise VolumeReadError(f"{sidecar}: expected a JSON object with spacing/origin/direction")
        known = "spacing" in meta
    spacing, origin, direction = _geometry_from(meta, sidecar if sidecar.exists() else path)
    return _make_volume(array, spacing, origin, direction, path, format="npy", spacing_known=known)


def _read_npz(path: Path, key: str | None, allow_2d: bool = False) -> Volume:
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise VolumeReadError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive:
        keys = list(archive.files)
        geometry_keys = {"spacing", "origin", "direction"}
        arrays = [k for k in keys if k not in geometry_keys]
        if key is None:
            if DEFAULT_NPZ_KEY in keys:
                key = DEFAULT_NPZ_KEY
            elif len(arrays) == 1:
                key = arrays[0]
            else:
                raise VolumeReadError(
                    f"{path}: no '{DEFAULT_NPZ_KEY}' array; choose one with --key "
                    f"(available: {', '.join(keys)})"
                )
        if key not in keys:
            raise VolumeReadError(f"{path}: no array '{key}' in the archive (available: {', '.join(keys)})")
        try:
            array = archive[key]
            meta = {k: archive[k] for k in geometry_keys & set(keys)}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise VolumeReadError(f"{path}: array '{key}' is corrupt or truncated ({exc})") from exc
    array = _fix_dtype(_need_3d(array, path, allow_2d))
    spacing, origin, direction = _geometry_from(meta, path)
    return _make_volume(
        array, spacing, origin, direction, path, format="npz", npz_key=key, spacing_known="spacing" in meta
    )


# ----------------------------------------------------------------------------------- SimpleITK formats
def _read_sitk(path: Path, allow_2d: bool = False) -> Volume:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise VolumeReadError(f"{path}: not a readable image ({last})") from exc
    return _from_sitk_checked(image, path, "sitk", allow_2d)


def _from_sitk_checked(image, path: Path, fmt: str, allow_2d: bool = False) -> Volume:
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeReadError(
            f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel (colour/vector), not CT"
        )
    dim = image.GetDimension()
    if allow_2d and dim == 2:
        image = sitk.JoinSeries(image)  # one slice deep, 1 mm
        dim = 3
    if dim == 2 or (dim == 3 and image.GetSize()[2] == 1 and not allow_2d):
        raise VolumeReadError(f"{path}: a 2D image (size {image.GetSize()}), not a 3D volume")
    if dim != 3:
        raise VolumeReadError(f"{path}: a {dim}D image (size {image.GetSize()}); expected 3D")
    array = _fix_dtype(sitk.GetArrayFromImage(image))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return _make_volume(array, image.GetSpacing(), image.GetOrigin(), direction, path, format=fmt)


def _read_dicom_file(path: Path, allow_2d: bool = False) -> Volume:
    """A single DICOM file: a multi-frame volume, or (``allow_2d``) one slice; else a clear message."""
    import pydicom
    import SimpleITK as sitk

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
        raise VolumeReadError(f"{path}: not a readable DICOM file ({exc})") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames <= 1 and allow_2d:
        return _read_dicom_slice(path, ds)
    if frames <= 1:
        raise VolumeReadError(
            f"{path}: a single 2D DICOM image ({ds.get('Rows')}x{ds.get('Columns')}), not a 3D volume; "
            "pass the folder that holds the whole series"
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise VolumeReadError(f"{path}: cannot decode the multi-frame pixel data ({exc})") from exc
    volume = _from_sitk_checked(image, path, "dicom")
    # what the values are: an RT dose grid (GY) or a PET volume must not be shown as CT in HU
    volume.metadata.update(modality=str(ds.get("Modality", "")), units=dicom_units(ds))
    return volume


def _read_dicom_slice(path: Path, ds) -> Volume:
    """One DICOM image as a volume one slice deep, placed in 3D by its own geometry tags.

    Pixels are decoded by SimpleITK (GDCM handles the compressed transfer syntaxes) with the
    rescale slope and intercept applied, so CT comes out in HU; the slice's thickness (else 1 mm)
    is its depth. The modality and the file's display window travel in the metadata, so the studio
    shows an RT dose or an MR slice with its own window, not a CT one.
    """
    import SimpleITK as sitk

    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise VolumeReadError(f"{path}: a colour image ({ds.get('PhotometricInterpretation')}), not CT")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise VolumeReadError(f"{path}: cannot decode the pixel data ({exc})") from exc
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    array = array.reshape(1, int(ds.Rows), int(ds.Columns))
    orientation = [float(v) for v in ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.5:
        raise VolumeReadError(f"{path}: ImageOrientationPatient {orientation} is not two unit vectors")
    pixel = [float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])]
    thickness = float(ds.get("SliceThickness", 0) or 0) or 1.0
    origin = [float(v) for v in ds.get("ImagePositionPatient", [0.0, 0.0, 0.0])]
    meta: dict[str, Any] = {
        "format": "dicom",
        "modality": str(ds.get("Modality", "")),
        "units": dicom_units(ds),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "single_slice": True,
        "spacing_known": "PixelSpacing" in ds,
    }
    for tag, key in (("WindowWidth", "window_width"), ("WindowCenter", "window_center")):
        if tag in ds and ds[tag].value not in (None, ""):
            element = ds[tag]
            meta[key] = float(element.value[0] if element.VM > 1 else element.value)  # the first of several
    direction = np.stack([row, col, normal], axis=1)
    return _make_volume(_fix_dtype(array), (pixel[1], pixel[0], thickness), origin, direction, path, **meta)
