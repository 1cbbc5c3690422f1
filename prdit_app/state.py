"""The viewer's document: the current volume, the cursor (LPS mm), window/level and display convention.

Views never own state (DESIGN.md section 3): they subscribe to these signals and render. The
cursor is one point in patient space shared by the three slice views and the 3D view, so linking
is automatic — a click in one view sets the cursor and every view follows.

:meth:`ViewerState.set_volume` is on the hot path of generation: the Generate panel calls it once
per sampling step with a new volume of the same geometry. With ``keep_view=True`` and unchanged
geometry it does no array work at all (the canonical view is a numpy view, levels are the user's),
keeps cursor, zoom and window/level, and emits ``volumeChanged(False)`` so views only re-slice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from prdit.data.labels import LabelMap
from prdit.editing import EditRegion
from prdit.volume import Volume
from prdit_app.orientation import CanonicalGrid

RADIOLOGICAL = "radiological"
NEUROLOGICAL = "neurological"

# Window/level used when a volume carries no hint: mediastinum for CT (HU) data.
DEFAULT_CT_WINDOW = (350.0, 50.0)


def _subsample(array: np.ndarray, target: int = 2_000_000) -> np.ndarray:
    """A strided subsample of at most ~``target`` voxels (cheap even at 512^3)."""
    step = max(1, int(round((array.size / target) ** (1 / 3))))
    return np.asarray(array[::step, ::step, ::step], dtype=np.float64).ravel()


def looks_like_ct(volume: Volume) -> bool:
    """Whether to show ``volume`` with CT (HU) windows.

    The modality decides when the file states one (DICOM ``Modality``; phantoms and generated
    volumes say CT). Otherwise the values: CT in HU has air, so at least 0.5 % of the voxels lie
    near -1000 (padding down to -3024 outside the scan field counts too), and almost nothing above
    the densest bone and metal (~4000). An MR volume such as nibabel's ``anatomical.nii``
    (-610..30393, 0.5th percentile 751) is not CT; neither is an RT dose grid (Gy or cGy).
    """
    modality = str(volume.metadata.get("modality", "") or "").strip().upper()
    if modality:
        return modality == "CT"
    sample = _subsample(volume.array)
    if sample.size == 0:
        return False
    low, high = np.percentile(sample, [0.5, 99.5])
    return bool(-3100 <= low <= -800 and -200 <= high <= 4000)


def auto_window(array: np.ndarray) -> tuple[float, float]:
    """(width, level) from robust percentiles (1st-99th) of the data, as viewers' "Auto W/L".

    A single value that fills much of the volume at its minimum (scanner padding, the zero
    background of MR) is left out first, so it does not pull the window down. Always a usable
    window: a constant volume gets width 1 around its value.
    """
    sample = _subsample(array)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 1.0, 0.0
    floor = sample.min()
    inside = sample[sample > floor]
    if inside.size and (sample.size - inside.size) > 0.05 * sample.size:
        sample = inside
    lo, hi = np.percentile(sample, [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            return 1.0, float(lo)
    return float(hi - lo), float((hi + lo) / 2.0)


def _metadata_window(meta: dict[str, Any]) -> tuple[float, float] | None:
    """A (width, level) hint stored by a reader (DICOM WindowWidth/WindowCenter), if any."""
    for wk, lk in (("window_width", "window_center"), ("WindowWidth", "WindowCenter")):
        if wk in meta and lk in meta:
            try:
                w = float(np.ravel(meta[wk])[0])
                level = float(np.ravel(meta[lk])[0])
            except (TypeError, ValueError, IndexError):
                return None
            if w > 0 and np.isfinite(level):
                return w, level
    return None


class ViewerState(QObject):
    """Owns what is displayed; emits a signal for every change views must render."""

    #: a new volume; True when the geometry changed (views reset zoom, sliders, letters)
    volumeChanged = Signal(bool)
    #: the cursor moved; argument: LPS position (numpy array, mm)
    cursorChanged = Signal(object)
    #: window/level changed; arguments: width, level (HU)
    windowLevelChanged = Signal(float, float)
    #: "radiological" or "neurological"
    conventionChanged = Signal(str)
    #: the label map, its colours, visibility or opacity changed (or it went away)
    labelsChanged = Signal()
    #: the region to regenerate (``prdit.editing.EditRegion``, LPS mm) was drawn, moved or cleared
    editRegionChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.grid: CanonicalGrid | None = None
        self.canonical: np.ndarray | None = None  # can[x, y, z], a view of volume.array
        self.source: str = ""
        self.cursor_lps = np.zeros(3)
        self.window = DEFAULT_CT_WINDOW[0]
        self.level = DEFAULT_CT_WINDOW[1]
        self.convention = RADIOLOGICAL
        self.generation = 0  # bumps with every set_volume: lets throttled views skip stale work
        self._user_window = False  # the user chose W/L (preset, drag): keep it across new volumes
        self.is_ct = True  # the current volume is shown with CT (HU) windows (looks_like_ct)
        self.labels: LabelMap | None = None  # a segmentation on the volume's grid
        self.labels_canonical: np.ndarray | None = None  # its canonical view, like ``canonical``
        self.label_opacity = 0.4
        self.hidden_labels: set[int] = set()
        self.edit_region: EditRegion | None = None

    # ------------------------------------------------------------------ edit region
    def set_edit_region(self, region: EditRegion | None) -> None:
        """The region the Edit panel regenerates; every view outlines it (in patient mm)."""
        if region != self.edit_region:
            self.edit_region = region
            self.editRegionChanged.emit()

    def edit_region_mm(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The edit region's bounds in display millimetres (canonical axes x, y, z): where the
        slice and 3D views draw it. Exact for axis-aligned volumes; the enclosing box on an oblique
        grid. None without a region or a volume."""
        region, grid = self.edit_region, self.grid
        if region is None or grid is None:
            return None
        lo, hi = np.asarray(region.low_lps), np.asarray(region.high_lps)
        corners = np.array([[(lo, hi)[b][a] for a, b in enumerate(bits)] for bits in np.ndindex(2, 2, 2)])
        mm = grid.canonical_to_mm(grid.lps_to_canonical(corners))
        return mm.min(axis=0), mm.max(axis=0)

    # ------------------------------------------------------------------ volume
    @property
    def has_volume(self) -> bool:
        return self.volume is not None

    def set_volume(self, volume: Volume, *, keep_view: bool = False, source: str | None = None) -> None:
        """Show ``volume``. ``keep_view``: a new frame of the same scene (keep cursor, zoom, W/L).

        If the geometry differs from the current volume's, the view is reset even when
        ``keep_view`` is set (the old cursor may lie outside the new volume). The array is shown
        without copying: pass a new one per frame and never modify it in place afterwards.
        """
        if not isinstance(volume, Volume):
            raise TypeError(f"set_volume needs a prdit.volume.Volume, got {type(volume).__name__}")
        old_grid = self.grid
        if (
            keep_view
            and old_grid is not None
            and self.volume is not None
            and self.volume.same_geometry(volume)
        ):
            grid = old_grid
            geometry_changed = False
        else:
            grid = CanonicalGrid.of(volume)
            geometry_changed = not (keep_view and grid.same_as(old_grid))
        self.volume = volume
        self.grid = grid
        self.canonical = grid.view(volume.array)
        self.generation += 1
        if source is not None:
            self.source = source
        if geometry_changed:
            self.cursor_lps = np.asarray(volume.center_lps(), dtype=np.float64)
            if not keep_view:
                self._choose_window(volume)
            if self.labels is not None:  # a label map belongs to one grid
                self.labels = self.labels_canonical = None
                self.labelsChanged.emit()
        self.volumeChanged.emit(geometry_changed)
        if geometry_changed:
            self.cursorChanged.emit(self.cursor_lps.copy())

    def _choose_window(self, volume: Volume) -> None:
        hint = _metadata_window(volume.metadata)
        ct = looks_like_ct(volume)
        if hint is not None:
            w, level = hint
        elif ct:
            if self._user_window and self.is_ct:
                self.is_ct = True
                return  # CT after CT: keep the window the user picked
            w, level = DEFAULT_CT_WINDOW
        else:
            w, level = auto_window(volume.array)
        self.is_ct = ct
        self._user_window = False
        self._apply_window(w, level)

    @property
    def value_unit(self) -> str:
        """What the voxel values are in: HU for CT, else the file's own unit (PET BQML, dose GY),
        else "" (unitless: read-outs then say "value")."""
        if self.is_ct:
            return "HU"
        return str((self.volume.metadata.get("units") if self.volume is not None else "") or "")

    def apply_auto_window(self) -> tuple[float, float] | None:
        """The "Auto" entry: a window from the current volume's own values (:func:`auto_window`)."""
        if self.volume is None:
            return None
        w, level = auto_window(self.volume.array)
        self.set_window_level(w, level)
        return w, level

    def recommend_window(self, width: float, level: float) -> None:
        """A window suggested by what made the data (a model's recommendation): applied like a
        file's hint, so a preset the user picks afterwards still wins."""
        self._apply_window(width, level)

    # ------------------------------------------------------------------ window/level
    @property
    def levels(self) -> tuple[float, float]:
        """(low, high) HU mapped to black and white."""
        return (self.level - self.window / 2.0, self.level + self.window / 2.0)

    def set_window_level(self, width: float, level: float) -> None:
        """Set W/L in HU (width clamped to >= 1 HU)."""
        self._user_window = True
        self._apply_window(width, level)

    def _apply_window(self, width: float, level: float) -> None:
        width = max(1.0, float(width))
        level = float(level)
        if width == self.window and level == self.level:
            return
        self.window, self.level = width, level
        self.windowLevelChanged.emit(width, level)

    # ------------------------------------------------------------------ labels
    def set_labels(self, labels: LabelMap | None) -> None:
        """Overlay ``labels`` (already checked to fit the volume, :func:`prdit.data.labels.check_fits`)."""
        if labels is not None:
            if self.volume is None or self.grid is None:
                raise ValueError("open a volume before its label map")
            if labels.array.shape != self.volume.shape:
                raise ValueError(f"label map shape {labels.array.shape} != volume shape {self.volume.shape}")
        self.labels = labels
        self.labels_canonical = self.grid.view(labels.array) if labels is not None and self.grid else None
        self.hidden_labels = set()
        self.labelsChanged.emit()

    def set_label_opacity(self, opacity: float) -> None:
        self.label_opacity = float(np.clip(opacity, 0.0, 1.0))
        self.labelsChanged.emit()

    def set_label_visible(self, value: int, visible: bool) -> None:
        (self.hidden_labels.discard if visible else self.hidden_labels.add)(int(value))
        self.labelsChanged.emit()

    def set_label_colour(self, value: int, rgb: tuple[int, int, int]) -> None:
        if self.labels is not None:
            self.labels.colours[int(value)] = tuple(int(c) for c in rgb)  # type: ignore[assignment]
            self.labelsChanged.emit()

    def label_lut(self) -> np.ndarray:
        """RGBA lookup table (uint8, one row per label value): background and hidden labels clear."""
        if self.labels is None:
            return np.zeros((1, 4), np.uint8)
        n = int(self.labels.array.max()) + 1
        lut = np.zeros((max(n, 1), 4), np.uint8)
        alpha = int(round(255 * self.label_opacity))
        for value, rgb in self.labels.colours.items():
            if 0 < value < n and value not in self.hidden_labels:
                lut[value] = (*rgb, alpha)
        return lut

    # ------------------------------------------------------------------ convention
    def set_convention(self, convention: str) -> None:
        if convention not in (RADIOLOGICAL, NEUROLOGICAL):
            raise ValueError(
                f"display convention must be {RADIOLOGICAL!r} or {NEUROLOGICAL!r}, got {convention!r}"
            )
        if convention != self.convention:
            self.convention = convention
            self.conventionChanged.emit(convention)

    # ------------------------------------------------------------------ cursor
    def cursor_canonical(self) -> np.ndarray:
        """Continuous canonical index (x, y, z) of the cursor."""
        if self.grid is None:
            return np.zeros(3)
        return self.grid.lps_to_canonical(self.cursor_lps)

    def cursor_voxel(self) -> tuple[int, int, int]:
        """Canonical voxel (x, y, z) under the cursor (clipped)."""
        if self.grid is None:
            return (0, 0, 0)
        return self.grid.clamp_index(self.cursor_canonical())

    def slice_index(self, axis: int) -> int:
        """Index of the displayed slice along canonical axis 0=x (sagittal), 1=y (coronal), 2=z (axial)."""
        return self.cursor_voxel()[axis]

    def set_cursor_lps(self, lps: np.ndarray) -> None:
        """Move the cursor to an LPS point (clipped into the volume)."""
        if self.grid is None:
            return
        c = self.grid.lps_to_canonical(np.asarray(lps, dtype=np.float64))
        self.set_cursor_canonical(c)

    def set_cursor_canonical(self, c: np.ndarray) -> None:
        if self.grid is None:
            return
        c = np.clip(np.asarray(c, dtype=np.float64), 0, np.asarray(self.grid.size) - 1)
        lps = self.grid.canonical_to_lps(c)
        if np.allclose(lps, self.cursor_lps, atol=1e-9):
            return
        self.cursor_lps = lps
        self.cursorChanged.emit(lps.copy())

    def set_slice(self, axis: int, index: int) -> None:
        """Show slice ``index`` along canonical ``axis`` (moves the cursor along that axis only)."""
        if self.grid is None:
            return
        c = self.cursor_canonical()
        c[axis] = int(index)
        self.set_cursor_canonical(c)

    def step_slice(self, axis: int, step: int) -> None:
        if self.grid is not None:
            self.set_slice(axis, self.slice_index(axis) + int(step))

    # ------------------------------------------------------------------ readout
    def probe(self, c: np.ndarray) -> dict[str, Any] | None:
        """What lies at continuous canonical index ``c``: voxel ijk, LPS mm and HU; None outside."""
        if self.grid is None or self.volume is None:
            return None
        cv = np.rint(np.asarray(c, dtype=np.float64))
        if np.any(cv < 0) or np.any(cv > np.asarray(self.grid.size) - 1):
            return None
        ijk = tuple(int(v) for v in np.rint(self.grid.canonical_to_ijk(cv)))
        out = {
            "ijk": ijk,
            "lps": self.volume.index_to_lps(ijk),
            "value": self.volume.value_at_index(ijk),
        }
        if self.labels is not None:
            out["label"] = self.labels.name_at((ijk[2], ijk[1], ijk[0]))
        return out
