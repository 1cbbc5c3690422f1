"""The region to regenerate, on one slice view: its outline where the slice cuts it, and drawing it.

The region itself lives in the viewer's document (:attr:`prdit_app.state.ViewerState.edit_region`,
an LPS box or the ellipsoid inscribed in it), so the three slice views and the 3D view show the
same region and the Edit panel regenerates exactly that. A left-drag on a slice while the region
tool is on draws it: the drag sets the two in-plane sides, and the region reaches as far through
the plane as the mean of those two sides, centred on the slice drawn on (a box drawn on an axial
slice is therefore about as deep as it is wide, as in ITK-SNAP's 3D box). Drawing again replaces it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from prdit.editing import EditRegion

_PEN = pg.mkPen("#4ad0ff", width=2, style=Qt.PenStyle.DashLine)
_ELLIPSE_POINTS = 96


class RegionOverlay:
    """The edit region's section on one :class:`~prdit_app.views.slices.SliceView`."""

    def __init__(self, view) -> None:
        self.view = view
        self.curve = pg.PlotCurveItem(pen=_PEN)
        self.curve.setZValue(19)
        self.curve.setVisible(False)
        view.viewbox.addItem(self.curve, ignoreBounds=True)
        self.drawing_kind: str | None = None  # "box" or "sphere" while the region tool is on
        self._start: QPointF | None = None

    # ------------------------------------------------------------------ display
    def refresh(self) -> None:
        """Outline the region where the current slice cuts it (hidden where it does not)."""
        st = self.view.state
        bounds = st.edit_region_mm()
        index = self.view.slice_index
        if bounds is None or index < 0 or st.grid is None:
            self.curve.setVisible(False)
            return
        lo, hi = bounds
        p = self.view.plane
        w = index * st.grid.spacing[p.normal]
        if not lo[p.normal] <= w <= hi[p.normal]:
            self.curve.setVisible(False)
            return
        if st.edit_region.kind == "box":
            x = [lo[p.u], hi[p.u], hi[p.u], lo[p.u], lo[p.u]]
            y = [lo[p.v], lo[p.v], hi[p.v], hi[p.v], lo[p.v]]
        else:
            centre, radius = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1e-9)
            scale = np.sqrt(max(0.0, 1.0 - ((w - centre[p.normal]) / radius[p.normal]) ** 2))
            angle = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_POINTS)
            x = centre[p.u] + radius[p.u] * scale * np.cos(angle)
            y = centre[p.v] + radius[p.v] * scale * np.sin(angle)
        self.curve.setData(np.asarray(x, float), np.asarray(y, float))
        self.curve.setVisible(True)

    @property
    def visible(self) -> bool:
        return self.curve.isVisible()

    # ------------------------------------------------------------------ drawing
    def drag(self, pos: QPointF, start: bool, finish: bool) -> None:
        """A left-drag while the region tool is on: the region spans the drag (view mm)."""
        if start or self._start is None:
            self._start = QPointF(pos)
        self.draw(self.drawing_kind or "box", (self._start.x(), self._start.y()), (pos.x(), pos.y()))
        if finish:
            self._start = None

    def draw(self, kind: str, start: tuple[float, float], end: tuple[float, float]) -> EditRegion | None:
        """Set the region from two opposite in-plane corners (display mm) on the current slice."""
        st = self.view.state
        grid = st.grid
        if grid is None or self.view.slice_index < 0:
            return None
        p = self.view.plane
        u0, u1 = sorted((start[0], end[0]))
        v0, v1 = sorted((start[1], end[1]))
        depth = max(((u1 - u0) + (v1 - v0)) / 2.0, grid.spacing[p.normal])
        w = self.view.slice_index * grid.spacing[p.normal]
        lo, hi = np.zeros(3), np.zeros(3)
        lo[p.u], hi[p.u], lo[p.v], hi[p.v] = u0, u1, v0, v1
        lo[p.normal], hi[p.normal] = w - depth / 2.0, w + depth / 2.0
        corners = np.array([[(lo, hi)[b][a] for a, b in enumerate(bits)] for bits in np.ndindex(2, 2, 2)])
        lps = grid.canonical_to_lps(grid.mm_to_canonical(corners))
        region = EditRegion(kind, tuple(lps.min(axis=0)), tuple(lps.max(axis=0)))
        st.set_edit_region(region)
        return region
