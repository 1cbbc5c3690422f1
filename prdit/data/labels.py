"""Label maps (segmentations) over a volume: reading them, naming and colouring labels, checking fit.

A label map is an integer array on the *same voxel grid* as the volume it describes. Viewers that
quietly resample a segmentation onto a scan hide real mistakes (a mask from another series, a
flipped export), so :func:`check_fits` refuses a map whose grid differs and says how: size,
spacing, origin or orientation, with both values.

Sources:

* NIfTI (and every format :func:`prdit.data.io.read_volume` reads): integer values are labels.
  Names come from a sidecar ``<stem>.json`` (``{"labels": {"1": "liver", ...}}``) or, for the
  phantom generator's ``phantom_NNNNN_labels.nii.gz``, from its folder's ``manifest.json``.
* DICOM SEG, read with highdicom (segments become labels 1..n, named by their SegmentLabel and
  coloured by their recommended display colour when the file has one).
* The phantom generator's own structure map (:func:`phantom_label_map`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prdit.volume import Volume

#: Colours for labels without their own: a 3D Slicer-like palette, cycled.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 174, 128),
    (241, 214, 145),
    (177, 122, 101),
    (111, 184, 210),
    (216, 101, 79),
    (221, 130, 101),
    (144, 238, 144),
    (192, 104, 88),
    (220, 245, 20),
    (78, 63, 0),
    (255, 250, 220),
    (230, 220, 70),
    (200, 200, 235),
    (250, 250, 210),
    (244, 214, 49),
    (0, 151, 206),
    (216, 101, 79),
    (183, 156, 220),
    (183, 214, 211),
    (152, 189, 207),
)

#: Anatomical colours for the phantom generator's structures (by name).
PHANTOM_COLOURS: dict[str, tuple[int, int, int]] = {
    "skin": (177, 122, 101),
    "fat": (230, 220, 70),
    "muscle": (192, 104, 88),
    "lung": (111, 184, 210),
    "vessel": (216, 101, 79),
    "airway": (182, 228, 255),
    "airway_wall": (200, 200, 215),
    "mediastinum": (241, 214, 145),
    "heart": (206, 110, 84),
    "aorta": (224, 97, 76),
    "great_vessel": (0, 151, 206),
    "esophagus": (211, 171, 143),
    "vertebra": (241, 241, 241),
    "cortical_bone": (255, 255, 255),
    "disc": (205, 205, 100),
    "spinal_canal": (244, 214, 49),
    "bone": (241, 213, 144),
    "rib": (253, 232, 158),
    "cartilage": (111, 184, 210),
    "sternum": (241, 220, 160),
    "liver": (221, 130, 101),
    "spleen": (157, 108, 162),
    "abdomen": (220, 245, 20),
    "bowel_gas": (200, 200, 235),
    "nodule": (255, 0, 0),
    "table": (120, 120, 120),
}


class LabelMapError(ValueError):
    """A label map that cannot be read or does not fit its volume; the message says which and why."""


@dataclass
class LabelMap:
    """Integer labels on a volume's grid, with a name and a colour per label (0 is background)."""

    array: np.ndarray  # (D, H, W) integers, the volume's voxel order
    names: dict[int, str] = field(default_factory=dict)
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.array.dtype.kind not in "iub":
            raise LabelMapError(f"{self.source or 'label map'}: voxel type {self.array.dtype} is not integer")
        for value in self.labels():
            self.names.setdefault(value, f"label {value}")
            self.colours.setdefault(value, PALETTE[(value - 1) % len(PALETTE)])

    def labels(self) -> list[int]:
        """The labels present (background 0 excluded), ascending."""
        return [int(v) for v in np.unique(self.array) if v != 0]

    def name_at(self, index_kji: tuple[int, int, int]) -> str | None:
        """Name of the label at voxel ``(k, j, i)``; None for background."""
        value = int(self.array[index_kji])
        return self.names.get(value, f"label {value}") if value else None

    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.array, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}


def check_fits(labels: Volume, volume: Volume, what: str = "label map") -> None:
    """Raise :class:`LabelMapError` unless ``labels`` covers exactly ``volume``'s voxels."""
    if labels.shape != volume.shape:
        raise LabelMapError(
            f"{what}: size {_ijk(labels.shape)} differs from the volume's {_ijk(volume.shape)} (i x j x k)"
        )
    if not np.allclose(labels.spacing, volume.spacing, rtol=1e-3, atol=1e-4):
        raise LabelMapError(
            f"{what}: voxel spacing {_mm(labels.spacing)} mm differs from the volume's "
            f"{_mm(volume.spacing)} mm"
        )
    if not np.allclose(labels.direction, volume.direction, atol=1e-3):
        raise LabelMapError(
            f"{what}: orientation differs from the volume's (direction cosines "
            f"{np.round(labels.direction, 3).tolist()} vs {np.round(volume.direction, 3).tolist()}); "
            "it was saved for another acquisition or flipped"
        )
    tolerance = 0.1 * float(min(volume.spacing))
    if not np.allclose(labels.origin, volume.origin, atol=tolerance):
        shift = np.asarray(labels.origin) - np.asarray(volume.origin)
        raise LabelMapError(
            f"{what}: origin {_mm(labels.origin)} mm is {np.linalg.norm(shift):.2f} mm from the volume's "
            f"{_mm(volume.origin)} mm; it belongs to another series or was cropped"
        )


def place_on(part: Volume, volume: Volume, what: str = "label map") -> Volume:
    """``part`` (labels on a sub-block of ``volume``'s grid, e.g. a DICOM SEG without its empty
    slices) pasted into a zero label volume on ``volume``'s grid. Same spacing and orientation
    (up to reversed axes: highdicom stacks a SEG's frames from the last slice) required, and
    ``part``'s voxels must fall on ``volume``'s voxels (within 0.1 voxel) inside it."""
    part = _align_axes(part, volume)
    if not np.allclose(part.spacing, volume.spacing, rtol=1e-3, atol=1e-4) or not np.allclose(
        part.direction, volume.direction, atol=1e-3
    ):
        check_fits(part, volume, what)  # raises with the spacing or orientation difference
    first = volume.lps_to_index(np.asarray(part.origin))
    offset = np.rint(first).astype(int)
    if np.abs(first - offset).max() > 0.1:
        raise LabelMapError(
            f"{what}: its voxels fall between the volume's (offset {np.round(first, 2).tolist()} voxels); "
            "it was made on another grid"
        )
    size = np.asarray(part.shape[::-1])  # (i, j, k)
    if np.any(offset < 0) or np.any(offset + size > np.asarray(volume.shape[::-1])):
        raise LabelMapError(
            f"{what}: it covers voxels {offset.tolist()} to {(offset + size - 1).tolist()} (i, j, k), "
            f"outside the volume's {_ijk(volume.shape)}; it belongs to another series"
        )
    full = np.zeros(volume.shape, dtype=part.array.dtype)
    i, j, k = offset
    full[k : k + size[2], j : j + size[1], i : i + size[0]] = part.array
    return volume.with_array(full, source=part.metadata.get("source", what))


def _align_axes(part: Volume, volume: Volume) -> Volume:
    """``part`` with every axis that runs opposite to ``volume``'s reversed (same voxels, same places)."""
    array = np.asarray(part.array)
    origin = np.asarray(part.origin, dtype=np.float64)
    direction = np.array(part.direction, dtype=np.float64)
    for axis in range(3):
        if float(direction[:, axis] @ np.asarray(volume.direction)[:, axis]) < -0.99:
            n = array.shape[2 - axis]  # (k, j, i) order
            origin = origin + direction[:, axis] * part.spacing[axis] * (n - 1)
            direction[:, axis] *= -1
            array = np.flip(array, axis=2 - axis)
    return Volume(np.ascontiguousarray(array), part.spacing, tuple(origin), direction, dict(part.metadata))


def _ijk(shape_kji) -> str:
    return " x ".join(str(n) for n in tuple(shape_kji)[::-1])


def _mm(values) -> str:
    return "(" + ", ".join(f"{float(v):.3g}" for v in values) + ")"


def read_label_map(path: str | os.PathLike, volume: Volume) -> LabelMap:
    """Read a label map for ``volume`` (NIfTI or any volume format, or DICOM SEG) and check it fits."""
    p = Path(path)
    if not p.exists():
        raise LabelMapError(f"{p}: no such file or folder")
    if _is_dicom_seg(p):
        grid, names, colours = _read_dicom_seg(p)
        grid = place_on(grid, volume, what=str(p))  # a SEG stores only the slices it segments
    else:
        from prdit.data.io import VolumeReadError, read_volume

        try:
            grid = read_volume(p, allow_2d=True)
        except VolumeReadError as exc:
            raise LabelMapError(str(exc)) from None
        arr = grid.array
        if arr.dtype.kind == "f":
            if not np.array_equal(arr, np.round(arr)):
                raise LabelMapError(f"{p}: values are not whole numbers, so it is an image, not a label map")
            grid = grid.with_array(arr.astype(np.int32))
        if grid.array.min() < 0:
            raise LabelMapError(
                f"{p}: negative values ({int(grid.array.min())}); labels are 0 (none) or positive"
            )
        names, colours = _sidecar_names(p)
    check_fits(grid, volume, what=str(p))
    return LabelMap(np.asarray(grid.array), names, colours, source=str(p))


def _sidecar_names(path: Path) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    """Names from ``<stem>.json`` (``{"labels": {"1": "name"}}``) or a phantom folder's manifest."""
    name = path.name
    stem = name[:-7] if name.lower().endswith(".nii.gz") else path.stem
    sidecar = path.with_name(stem + ".json")
    try:
        if sidecar.is_file():
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            entry = data.get("labels") if isinstance(data, dict) else None
            if isinstance(entry, dict):
                names = {int(k): str(v) for k, v in entry.items()}
                return names, {}
        manifest = path.with_name("manifest.json")
        if manifest.is_file():
            codes = json.loads(manifest.read_text(encoding="utf-8")).get("label_codes") or {}
            names = {int(v): str(k) for k, v in codes.items()}
            return names, {v: PHANTOM_COLOURS[n] for v, n in names.items() if n in PHANTOM_COLOURS}
    except (OSError, ValueError, AttributeError) as exc:
        raise LabelMapError(f"{sidecar}: unreadable label names ({exc})") from None
    return {}, {}


def _is_dicom_seg(path: Path) -> bool:
    if path.is_dir() or path.name.lower().endswith((".nii", ".nii.gz", ".npy", ".npz", ".mha", ".nrrd")):
        return False
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - not DICOM: another reader will say what it is
        return False
    return str(ds.get("Modality", "")) == "SEG"


def _read_dicom_seg(path: Path) -> tuple[Volume, dict[int, str], dict[int, tuple[int, int, int]]]:
    """A DICOM SEG as a label volume on its own grid (segments 1..n combined; overlaps refused)."""
    try:
        import highdicom as hd
    except ImportError:
        raise LabelMapError(
            f"{path}: reading DICOM SEG needs highdicom (pip install highdicom, part of prdit-studio[gui])"
        ) from None
    try:
        seg = hd.seg.segread(str(path))
        vol = seg.get_volume(combine_segments=True, relabel=True)
    except Exception as exc:  # noqa: BLE001 - highdicom raises many types for files it cannot read
        raise LabelMapError(f"{path}: cannot read the segmentation ({type(exc).__name__}: {exc})") from None
    affine = np.asarray(vol.affine, dtype=np.float64)[:, [2, 1, 0, 3]]  # (slice, row, column) -> (i, j, k)
    grid = Volume.from_affine_lps(
        np.asarray(vol.array).astype(np.int32), affine, source=str(path), format="seg"
    )
    names: dict[int, str] = {}
    colours: dict[int, tuple[int, int, int]] = {}
    for new, number in enumerate(seg.segment_numbers, start=1):
        desc = seg.get_segment_description(number)
        names[new] = str(desc.segment_label)
        lab = getattr(desc, "RecommendedDisplayCIELabValue", None)
        if lab is not None:
            colours[new] = _cielab_to_rgb(lab)
    return grid, names, colours


def _cielab_to_rgb(lab) -> tuple[int, int, int]:
    """DICOM's scaled CIELab (0..65535) to sRGB 0..255 (D65)."""
    l_, a, b = (float(v) for v in lab)
    L, A, B = l_ * 100 / 65535, a * 255 / 65535 - 128, b * 255 / 65535 - 128
    fy = (L + 16) / 116
    fx, fz = fy + A / 500, fy - B / 200

    def finv(t: float) -> float:
        return t**3 if t**3 > 0.008856 else (t - 16 / 116) / 7.787

    x, y, z = 0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)
    r = 3.2406 * x - 1.5372 * y - 0.4986 * z
    g = -0.9689 * x + 1.8758 * y + 0.0415 * z
    bb = 0.0557 * x - 0.2040 * y + 1.0570 * z

    def gamma(c: float) -> int:
        c = 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
        return int(round(255 * min(1.0, max(0.0, c))))

    return gamma(r), gamma(g), gamma(bb)


def phantom_label_map(labels: np.ndarray, source: str = "phantom") -> LabelMap:
    """The phantom generator's structure map, named and coloured by structure."""
    from prdit.data.phantom import Structure

    names = {int(s): s.name.lower() for s in Structure if s != Structure.AIR}
    colours = {v: PHANTOM_COLOURS[n] for v, n in names.items() if n in PHANTOM_COLOURS}
    return LabelMap(np.asarray(labels), names, colours, source=source)
