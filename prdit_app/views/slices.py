"""Tri-planar slice views: pyqtgraph ``ImageItem`` in a bare ``ViewBox`` (no ImageView: too slow).

Geometry. Each view draws a slice of the state's canonical array ``can[x, y, z]`` (x -> patient
Left, y -> Posterior, z -> Superior; see :mod:`prdit_app.orientation`) in *display millimetres*:
voxel ``(u, v)`` is centred at ``(u * su, v * sv)``. The aspect is locked at 1 in mm, so anisotropic
voxels keep their true shape.

Conventions (radiological, the default):

* axial: patient Right on screen left, Anterior up (we look from the feet);
* coronal: patient Right on screen left, Superior up (we face the patient);
* sagittal: Anterior on screen left, Superior up — the customary sagittal layout (the patient
  faces left); it does not change with the convention.

Neurological convention mirrors axial and coronal (patient Right on screen right).

Mouse: wheel scrolls slices, Ctrl+wheel zooms, left-drag window/level, right-drag zoom,
middle-drag pan, click or Shift+left-drag moves the crosshair, double-click maximises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

from prdit_app.state import NEUROLOGICAL, ViewerState
from prdit_app.views.edit_region import RegionOverlay
from prdit_app.views.measure import MeasureTool
from prdit_app.views.overlay_text import OverlayLabel

# 3D Slicer's colours: axial red, coronal green, sagittal yellow.
VIEW_COLORS = {"axial": "#e0443e", "coronal": "#5fb54a", "sagittal": "#e8c547"}
_LOW_HIGH = {0: ("R", "L"), 1: ("A", "P"), 2: ("I", "S")}  # letter at low / high canonical index


@dataclass(frozen=True)
class PlaneSpec:
    """Which canonical axes a view shows: ``normal`` is fixed, ``u`` runs across, ``v`` up/down."""

    name: str
    normal: int
    u: int
    v: int
    v_down: bool  # v increases downwards on screen (axial: posterior at the bottom)
    mirrors: bool  # flips left/right in neurological convention

    def slice_of(self, can: np.ndarray, index: int) -> np.ndarray:
        """The 2D ``[u, v]`` image of slice ``index`` (a numpy view, no copy)."""
        if self.normal == 2:
            return can[:, :, index]
        if self.normal == 1:
            return can[:, index, :]
        return can[index, :, :]


PLANES = {
    "axial": PlaneSpec("axial", normal=2, u=0, v=1, v_down=True, mirrors=True),
    "coronal": PlaneSpec("coronal", normal=1, u=0, v=2, v_down=False, mirrors=True),
    "sagittal": PlaneSpec("sagittal", normal=0, u=1, v=2, v_down=False, mirrors=False),
}


class SliceViewBox(pg.ViewBox):
    """A ViewBox with radiology mouse bindings; it reports intent to its :class:`SliceView`."""

    def __init__(self, view: SliceView) -> None:
        super().__init__(lockAspect=True, enableMenu=False, invertY=False)
        self._view = view
        self._wl_start: tuple[float, float] | None = None

    # wheel: slices; Ctrl+wheel: zoom
    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        delta = ev.delta()
        if delta:
            self._view.scroll(1 if delta > 0 else -1)
        ev.accept()

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if ev.double():
                self._view.maximiseRequested.emit(self._view.plane.name)
            self._view.move_cursor_to(self.mapSceneToView(ev.scenePos()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        button = ev.button()
        ev.accept()
        if button == Qt.MouseButton.LeftButton:
            if ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._view.move_cursor_to(self.mapSceneToView(ev.scenePos()))
                return
            if self._view.measure.mode is not None:  # a measurement tool is active: draw with it
                self._view.measure.drag(self.mapSceneToView(ev.scenePos()), ev.isStart(), ev.isFinish())
                return
            if self._view.region.drawing_kind is not None:  # the edit-region tool: draw the region
                self._view.region.drag(self.mapSceneToView(ev.scenePos()), ev.isStart(), ev.isFinish())
                return
            state = self._view.state
            if ev.isStart() or self._wl_start is None:
                self._wl_start = (state.window, state.level)
            w0, l0 = self._wl_start
            d = ev.screenPos() - ev.buttonDownScreenPos()
            rate = max(w0, 20.0) / 250.0  # HU per pixel scales with the window: fine at 80, fast at 2000
            state.set_window_level(w0 + d.x() * rate, l0 - d.y() * rate)
            if ev.isFinish():
                self._wl_start = None
        elif button == Qt.MouseButton.RightButton:
            dy = (ev.screenPos() - ev.lastScreenPos()).y()
            s = float(np.exp(dy * 0.01))
            center = self.mapSceneToView(ev.buttonDownScenePos())
            self.scaleBy((s, s), center=center)
        elif button == Qt.MouseButton.MiddleButton:
            p1 = self.mapSceneToView(ev.lastScenePos())
            p2 = self.mapSceneToView(ev.scenePos())
            d = p1 - p2
            self.translateBy(x=d.x(), y=d.y())
        else:
            ev.ignore()


class SliceView(QWidget):
    """One slice plane: image, crosshair, orientation letters, info overlay and a slice slider."""

    #: the mouse is over the image: dict(ijk, lps, value) or None when it leaves the volume
    hovered = Signal(object)
    #: double-click: this view wants to fill the layout
    maximiseRequested = Signal(str)

    def __init__(self, state: ViewerState, plane: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if plane not in PLANES:
            raise ValueError(f"unknown plane {plane!r}; choose axial, coronal or sagittal")
        self.state = state
        self.plane = PLANES[plane]
        self._index = -1
        self._image_rect: QRectF | None = None
        color = QColor(VIEW_COLORS[plane])

        self.graphics = pg.GraphicsView(background="k")
        self.graphics.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.graphics.setStyleSheet(f"border: 2px solid {color.name()};")
        self.viewbox = SliceViewBox(self)
        self.graphics.setCentralItem(self.viewbox)
        self.image = pg.ImageItem(axisOrder="col-major")
        self.viewbox.addItem(self.image)
        # the label map over the image: integer labels through an RGBA lookup table (clear = none)
        self.label_image = pg.ImageItem(axisOrder="col-major")
        self.label_image.setZValue(5)
        self.label_image.setVisible(False)
        self.viewbox.addItem(self.label_image)
        self._label_index = -1
        self.measure = MeasureTool(self)
        self.region = RegionOverlay(self)
        other = {0: "sagittal", 1: "coronal", 2: "axial"}
        pen_u = pg.mkPen(VIEW_COLORS[other[self.plane.u]], width=1)
        pen_v = pg.mkPen(VIEW_COLORS[other[self.plane.v]], width=1)
        # vertical line = the plane whose normal is u; horizontal line = plane with normal v
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen_u)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen_v)
        for line in (self.vline, self.hline):
            line.setZValue(10)
            self.viewbox.addItem(line, ignoreBounds=True)

        self.letters = {
            side: self._overlay_label("#f0a040", bold=True) for side in ("left", "right", "top", "bottom")
        }
        self.title_label = self._overlay_label(color.name(), bold=True)
        self.info_label = self._overlay_label("#d0d0d0")

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip(f"{plane} slice")
        self.slider.valueChanged.connect(self._slider_moved)
        self.slider_label = QLabel("-")
        self.slider_label.setMinimumWidth(70)
        self.slider_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(4, 0, 4, 0)
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.slider_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(bottom)

        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        state.volumeChanged.connect(self._on_volume)
        state.cursorChanged.connect(self._on_cursor)
        state.windowLevelChanged.connect(self._on_window_level)
        state.conventionChanged.connect(self._on_convention)
        state.labelsChanged.connect(self._on_labels)
        state.editRegionChanged.connect(self.region.refresh)
        self._apply_convention()
        self._update_info()
        if state.has_volume:
            self._on_volume(True)

    # ------------------------------------------------------------------ overlays
    def _overlay_label(self, color: str, bold: bool = False) -> OverlayLabel:
        """Outlined text (legible over bone in a bone window as over air)."""
        return OverlayLabel(self.graphics, color, bold=bold, point_size=10 if bold else 9)

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._place_overlays()

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self._place_overlays()

    def _place_overlays(self) -> None:
        w, h = self.graphics.width(), self.graphics.height()
        m = 6
        for label in (*self.letters.values(), self.title_label, self.info_label):
            label.adjustSize()
        self.letters["left"].move(m, (h - self.letters["left"].height()) // 2)
        self.letters["right"].move(
            w - self.letters["right"].width() - m, (h - self.letters["right"].height()) // 2
        )
        self.letters["top"].move((w - self.letters["top"].width()) // 2, m)
        self.letters["bottom"].move(
            (w - self.letters["bottom"].width()) // 2, h - self.letters["bottom"].height() - m
        )
        self.title_label.move(m, m)
        self.info_label.move(m, h - self.info_label.height() - m)

    def orientation_letters(self) -> dict[str, str]:
        """Patient direction at each screen edge, e.g. axial radiological: left R, right L, top A."""
        p = self.plane
        u_low, u_high = _LOW_HIGH[p.u]
        v_low, v_high = _LOW_HIGH[p.v]
        mirrored = self.viewbox.xInverted()
        return {
            "left": u_high if mirrored else u_low,
            "right": u_low if mirrored else u_high,
            "top": v_low if p.v_down else v_high,
            "bottom": v_high if p.v_down else v_low,
        }

    def _apply_convention(self) -> None:
        mirrored = self.plane.mirrors and self.state.convention == NEUROLOGICAL
        self.viewbox.invertX(mirrored)
        self.viewbox.invertY(self.plane.v_down)
        for side, letter in self.orientation_letters().items():
            self.letters[side].setText(letter)
        self._place_overlays()

    def _update_info(self) -> None:
        st = self.state
        n = st.grid.size[self.plane.normal] if st.grid is not None else 0
        idx = self._index if st.grid is not None else -1
        self.title_label.setText(
            f"{self.plane.name.capitalize()}  {idx + 1}/{n}" if n else self.plane.name.capitalize()
        )
        self.info_label.setText(f"W {st.window:.0f}  L {st.level:.0f}")
        self.slider_label.setText(f"{idx + 1} / {n}" if n else "-")
        self._place_overlays()

    # ------------------------------------------------------------------ state -> view
    def _on_volume(self, geometry_changed: bool) -> None:
        st = self.state
        if st.grid is None:
            return
        if geometry_changed:
            p = self.plane
            su, sv = st.grid.spacing[p.u], st.grid.spacing[p.v]
            nu, nv = st.grid.size[p.u], st.grid.size[p.v]
            self._image_rect = QRectF(-0.5 * su, -0.5 * sv, nu * su, nv * sv)
            n = st.grid.size[p.normal]
            self.slider.blockSignals(True)
            self.slider.setRange(0, n - 1)
            self.slider.setEnabled(n > 1)
            self.slider.blockSignals(False)
        self._index = -1  # force a re-slice: the voxels changed
        if geometry_changed:
            self.measure.clear()  # they measured another volume
        self._refresh_slice()
        self.measure.on_values()
        self.region.refresh()
        if geometry_changed:
            self.image.setRect(self._image_rect)
            self.reset_view()
        self._on_cursor(st.cursor_lps)

    def _refresh_slice(self) -> None:
        st = self.state
        if st.canonical is None:
            return
        index = st.slice_index(self.plane.normal)
        if index == self._index:
            return
        self._index = index
        img = self.plane.slice_of(st.canonical, index)
        self.image.setImage(img, autoLevels=False, levels=st.levels)
        if self._image_rect is not None:
            self.image.setRect(self._image_rect)
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self._refresh_labels()
        self.measure.on_slice(index)
        self.region.refresh()
        self._update_info()

    # ------------------------------------------------------------------ label map
    def _on_labels(self) -> None:
        self._label_index = -1
        self._refresh_labels()

    def _refresh_labels(self) -> None:
        st = self.state
        if st.labels_canonical is None:
            self.label_image.setVisible(False)
            return
        lut = st.label_lut()
        if self._label_index != self._index:
            self._label_index = self._index
            self.label_image.setImage(
                self.plane.slice_of(st.labels_canonical, self._index), autoLevels=False, levels=(0, len(lut))
            )
            if self._image_rect is not None:
                self.label_image.setRect(self._image_rect)
        self.label_image.setLookupTable(lut)
        self.label_image.setLevels((0, len(lut)))
        self.label_image.setVisible(True)

    def _on_cursor(self, _lps=None) -> None:
        st = self.state
        if st.grid is None:
            return
        self._refresh_slice()
        c = st.cursor_canonical()
        mm = st.grid.canonical_to_mm(c)
        self.vline.setValue(mm[self.plane.u])
        self.hline.setValue(mm[self.plane.v])

    def _on_window_level(self, _w: float, _l: float) -> None:
        self.image.setLevels(self.state.levels)
        self._update_info()

    def _on_convention(self, _c: str) -> None:
        self._apply_convention()

    # ------------------------------------------------------------------ view -> state
    def reset_view(self) -> None:
        """Fit the whole slice in the view (zoom and pan reset)."""
        if self._image_rect is not None:
            self.viewbox.setRange(rect=self._image_rect, padding=0.02)

    def scroll(self, step: int) -> None:
        self.state.step_slice(self.plane.normal, step)

    def _slider_moved(self, value: int) -> None:
        self.state.set_slice(self.plane.normal, value)

    def view_to_canonical(self, pos: QPointF) -> np.ndarray | None:
        """Continuous canonical index of a point given in view (display mm) coordinates."""
        st = self.state
        if st.grid is None:
            return None
        c = st.cursor_canonical()
        c[self.plane.normal] = self._index if self._index >= 0 else c[self.plane.normal]
        c[self.plane.u] = pos.x() / st.grid.spacing[self.plane.u]
        c[self.plane.v] = pos.y() / st.grid.spacing[self.plane.v]
        return c

    def move_cursor_to(self, pos: QPointF) -> None:
        """Put the crosshair on the centre of the voxel under ``pos`` (so it marks exactly one voxel)."""
        c = self.view_to_canonical(pos)
        if c is not None:
            self.state.set_cursor_canonical(np.rint(c))

    def canonical_to_scene(self, c: np.ndarray) -> QPointF:
        """Scene position of canonical index ``c`` (tests and tools use it to aim the mouse)."""
        st = self.state
        assert st.grid is not None
        mm = st.grid.canonical_to_mm(c)
        return self.viewbox.mapViewToScene(QPointF(mm[self.plane.u], mm[self.plane.v]))

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        if self.state.grid is None:
            return
        pos = self.viewbox.mapSceneToView(scene_pos)
        c = self.view_to_canonical(pos)
        self.hovered.emit(self.state.probe(c) if c is not None else None)

    @property
    def slice_index(self) -> int:
        return self._index
