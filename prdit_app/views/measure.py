"""Measurements on the slice views: a ruler in millimetres and a region (ellipse or box) with HU
statistics, as in 3D Slicer's markups, ITK-SNAP's ruler and OHIF's length and ellipse tools.

Each measurement belongs to the slice it was drawn on (view plane + slice index) and shows only
there, as clinicians annotate a slice; it can be moved and reshaped with its handles and removed
from its context menu (right-click) or with *Clear measurements*. Geometry is in the views' display
millimetres, so a ruler across anisotropic voxels measures true distance. Region statistics use the
voxels whose centres lie inside the shape; the area is their count times the voxel's in-plane area.
Measurements are items in the view's scene, so screenshots include them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF

RULER, ELLIPSE, BOX = "ruler", "ellipse", "box"
TOOLS = (RULER, ELLIPSE, BOX)
_PEN = pg.mkPen("#ffd24a", width=2)
_HOVER = pg.mkPen("#ffffff", width=2)


@dataclass(frozen=True)
class RegionStats:
    count: int
    mean: float
    sd: float
    minimum: float
    maximum: float
    area_mm2: float

    def describe(self, unit: str) -> str:
        if not self.count:
            return "no voxel centre inside"
        return (
            f"mean {self.mean:.1f} {unit}, SD {self.sd:.1f}\n"
            f"min {self.minimum:.0f}, max {self.maximum:.0f}\n"
            f"area {self.area_mm2:.1f} mm² ({self.count} voxels)"
        )


def region_mask(
    shape: str, x0: float, y0: float, x1: float, y1: float, su: float, sv: float, nu: int, nv: int
) -> np.ndarray:
    """Voxels ``[u, v]`` of an ``nu x nv`` slice whose centres ``(u su, v sv)`` (mm) lie inside the box
    ``[x0, x1] x [y0, y1]`` or the ellipse inscribed in it."""
    u = np.arange(nu)[:, None] * su
    v = np.arange(nv)[None, :] * sv
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    if shape == BOX:
        return (u >= xa) & (u <= xb) & (v >= ya) & (v <= yb)
    cx, cy = (xa + xb) / 2, (ya + yb) / 2
    rx, ry = max((xb - xa) / 2, 1e-9), max((yb - ya) / 2, 1e-9)
    return ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1.0


def region_stats(values: np.ndarray, mask: np.ndarray, su: float, sv: float) -> RegionStats:
    inside = np.asarray(values, dtype=np.float64)[mask]
    if inside.size == 0:
        return RegionStats(0, float("nan"), float("nan"), float("nan"), float("nan"), 0.0)
    return RegionStats(
        int(inside.size),
        float(inside.mean()),
        float(inside.std(ddof=1)) if inside.size > 1 else 0.0,
        float(inside.min()),
        float(inside.max()),
        float(inside.size * su * sv),
    )


class Measurement:
    """One ruler or region on one slice of one view."""

    def __init__(self, tool: MeasureTool, kind: str, slice_index: int, start: QPointF) -> None:
        self.tool = tool
        self.kind = kind
        self.slice_index = slice_index
        view = tool.view
        if kind == RULER:
            self.roi = pg.LineSegmentROI([start, start], pen=_PEN, hoverPen=_HOVER, removable=True)
        else:
            cls = pg.EllipseROI if kind == ELLIPSE else pg.RectROI
            self.roi = cls(start, (0.01, 0.01), pen=_PEN, hoverPen=_HOVER, removable=True)
        self.roi.setZValue(20)
        self.label = pg.TextItem("", color="#ffe680", anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 170))
        self.label.setZValue(21)
        view.viewbox.addItem(self.roi)
        view.viewbox.addItem(self.label, ignoreBounds=True)
        self.roi.sigRegionChanged.connect(self.update)
        self.roi.sigRemoveRequested.connect(lambda _roi: tool.remove(self))

    # ------------------------------------------------------------------ geometry
    def set_end(self, end: QPointF) -> None:
        """While drawing: the ruler's second point, or the region's opposite corner."""
        if self.kind == RULER:
            self.roi.movePoint(self.roi.getHandles()[1], end, finish=False)
        else:
            start = self._start
            self.roi.setPos((min(start.x(), end.x()), min(start.y(), end.y())), finish=False)
            self.roi.setSize((max(abs(end.x() - start.x()), 0.01), max(abs(end.y() - start.y()), 0.01)))

    def begin(self, start: QPointF) -> None:
        self._start = QPointF(start)

    def endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """The ruler's two points in display mm."""
        handles = self.roi.getSceneHandlePositions()
        vb = self.tool.view.viewbox
        p = [vb.mapSceneToView(pos) for _name, pos in handles]
        return np.array([p[0].x(), p[0].y()]), np.array([p[1].x(), p[1].y()])

    def length_mm(self) -> float:
        a, b = self.endpoints()
        return float(np.linalg.norm(b - a))

    def box_mm(self) -> tuple[float, float, float, float]:
        pos, size = self.roi.pos(), self.roi.size()
        return pos.x(), pos.y(), pos.x() + size.x(), pos.y() + size.y()

    def stats(self) -> RegionStats | None:
        view = self.tool.view
        st = view.state
        if self.kind == RULER or st.canonical is None or st.grid is None:
            return None
        p = view.plane
        su, sv = st.grid.spacing[p.u], st.grid.spacing[p.v]
        values = p.slice_of(st.canonical, self.slice_index)
        mask = region_mask(self.kind, *self.box_mm(), su, sv, values.shape[0], values.shape[1])
        return region_stats(values, mask, su, sv)

    # ------------------------------------------------------------------ display
    def update(self) -> None:
        if self.kind == RULER:
            a, b = self.endpoints()
            self.label.setText(f"{self.length_mm():.1f} mm")
            self.label.setAnchor((0.5, 1.2))  # centred on the line's middle, so it stays inside the view
            anchor = (a + b) / 2
        else:
            stats = self.stats()
            self.label.setText(stats.describe(self.tool.view.state.value_unit) if stats else "")
            x0, y0, x1, y1 = self.box_mm()
            anchor = np.array([max(x0, x1), max(y0, y1)])
        self.label.setPos(float(anchor[0]), float(anchor[1]))

    def set_visible(self, visible: bool) -> None:
        self.roi.setVisible(visible)
        self.label.setVisible(visible)

    def remove_items(self) -> None:
        vb = self.tool.view.viewbox
        vb.removeItem(self.roi)
        vb.removeItem(self.label)


class MeasureTool:
    """The measurements of one slice view and the drawing mode (None, ruler, ellipse or box)."""

    def __init__(self, view) -> None:
        self.view = view
        self.mode: str | None = None
        self.items: list[Measurement] = []
        self._drawing: Measurement | None = None

    def set_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in TOOLS:
            raise ValueError(f"measurement tool must be one of {TOOLS} or None, got {mode!r}")
        self.mode = mode

    def drag(self, pos: QPointF, start: bool, finish: bool) -> None:
        """A left-drag in the view while a tool is active: draw one measurement."""
        if start or self._drawing is None:
            self._drawing = Measurement(self, self.mode or RULER, self.view.slice_index, pos)
            self._drawing.begin(pos)
            self.items.append(self._drawing)
        self._drawing.set_end(pos)
        self._drawing.update()
        if finish:
            self._drawing = None

    def add(self, kind: str, start: tuple[float, float], end: tuple[float, float]) -> Measurement:
        """Draw a measurement from ``start`` to ``end`` (display mm) on the current slice (scripts, tests)."""
        m = Measurement(self, kind, self.view.slice_index, QPointF(*start))
        m.begin(QPointF(*start))
        m.set_end(QPointF(*end))
        m.update()
        self.items.append(m)
        return m

    def remove(self, m: Measurement) -> None:
        if m in self.items:
            self.items.remove(m)
            m.remove_items()

    def clear(self) -> None:
        for m in list(self.items):
            self.remove(m)

    def on_slice(self, index: int) -> None:
        """Show only the measurements drawn on slice ``index``."""
        for m in self.items:
            m.set_visible(m.slice_index == index)

    def on_values(self) -> None:
        """New voxel values (same grid): region statistics follow."""
        for m in self.items:
            if m.kind != RULER:
                m.update()
