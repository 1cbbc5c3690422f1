"""The 3D view: VTK ray-cast volume rendering with Slicer-style presets, slice planes and a marker.

Three layers, so the rendering logic can be tested without a window:

* :class:`VolumeScene` — pure VTK (renderer, ``vtkSmartVolumeMapper``, transfer functions, the
  three slice-plane outlines, the bounding box, the orientation cube). Scene coordinates are the
  slice views' display millimetres (canonical index x spacing, x -> L, y -> P, z -> S), so the
  planes drawn here are exactly the slices shown in 2D.
* a render surface — ``QVTKRenderWindowInteractor`` under a real display (X11/Xvfb), or
  :class:`OffscreenVtkWidget` (offscreen ``vtkRenderWindow`` -> ``vtkWindowToImageFilter`` ->
  QImage in a QLabel) when Qt runs offscreen (``QVTKRenderWindowInteractor`` paints garbage there).
* :class:`Volume3DView` — subscribes to the :class:`ViewerState` and renders on its own throttle.

Throttle. Software ray casting (Mesa llvmpipe) costs 0.25-0.5 s per frame at 128^3 on an idle
2-core machine, while the Generate panel may stream several volumes per second. Two paths:

* streamed frames (new voxels, same geometry) go to a render thread with its own scene and EGL
  window (:mod:`prdit_app.views.render_thread`); VTK releases the interpreter lock while it
  renders, so the slice views never wait for it. Latest wins, frames in between are dropped,
  never queued; the thread renders at streaming quality and its images replace the surface until
  the stream stops (0.6 s without a new volume), then one full-quality frame is drawn;
* everything else (cursor, camera, presets, a new volume; or streaming without EGL) marks the
  scene dirty and a single-shot QTimer renders the *latest* state on the GUI thread once 2x the
  last render time has passed (at most a third of the GUI thread goes to VTK).

Interaction uses VTK's desired-update-rate mechanism (``SetInteractiveUpdateRate``,
``AutoAdjustSampleDistances``) to drop quality while the camera moves.
"""

from __future__ import annotations

import os
import time

import numpy as np
from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from prdit_app.presets import volume_rendering_preset
from prdit_app.state import ViewerState
from prdit_app.views.vtk_scene import (  # noqa: F401 - re-exported for the view's users
    DEFAULT_VR_PRESET,
    OffscreenTarget,
    VolumeScene,
    offscreen_platform,
    opacity_unit_distance,
    window_mip_preset,
)


class OffscreenVtkWidget(QLabel):
    """Shows an :class:`OffscreenTarget`'s pixels in a QLabel (works on any Qt platform, even offscreen).

    Left-drag rotates, right-drag or wheel zooms.
    """

    interactionStarted = Signal()
    interactionEnded = Signal()

    def __init__(self, scene: VolumeScene, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setStyleSheet("background: #141419;")
        self.target = OffscreenTarget(scene)
        self._last: tuple[int, int] | None = None
        self.interacting = False

    def render(self, fast: bool = False) -> None:  # noqa: A003 (VTK vocabulary)
        """Render and show; ``fast``: let the mapper drop quality to reach ~8 frames/s."""
        image = self.target.render_image(self.width(), self.height(), fast or self.interacting)
        self.setPixmap(QPixmap.fromImage(image))

    def mousePressEvent(self, ev):  # noqa: N802
        self._last = (ev.position().x(), ev.position().y())
        self.interacting = True
        self.interactionStarted.emit()

    def mouseMoveEvent(self, ev):  # noqa: N802
        if self._last is None:
            return
        x, y = ev.position().x(), ev.position().y()
        dx, dy = x - self._last[0], y - self._last[1]
        self._last = (x, y)
        cam = self.scene.renderer.GetActiveCamera()
        if ev.buttons() & Qt.MouseButton.LeftButton:
            cam.Azimuth(-dx * 0.5)
            cam.Elevation(dy * 0.5)
            cam.OrthogonalizeViewUp()
        elif ev.buttons() & Qt.MouseButton.RightButton:
            cam.Zoom(float(np.exp(-dy * 0.01)))
        self.scene.renderer.ResetCameraClippingRange()
        self.interactionStarted.emit()

    def mouseReleaseEvent(self, ev):  # noqa: N802
        self._last = None
        self.interacting = False
        self.interactionEnded.emit()

    def wheelEvent(self, ev):  # noqa: N802
        self.scene.renderer.GetActiveCamera().Zoom(1.1 if ev.angleDelta().y() > 0 else 1 / 1.1)
        self.interactionEnded.emit()

    def close_vtk(self) -> None:
        self.target.finalize()


def _make_qvtk_widget(scene: VolumeScene, parent: QWidget):
    """A QVTKRenderWindowInteractor showing ``scene`` with a trackball camera and marker widget."""
    import vtkmodules.qt

    vtkmodules.qt.PyQtImpl = "PySide6"
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
    from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget

    widget = QVTKRenderWindowInteractor(parent)
    window = widget.GetRenderWindow()
    window.AddRenderer(scene.renderer)
    interactor = window.GetInteractor()
    interactor.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
    interactor.SetDesiredUpdateRate(8.0)  # frames/s while dragging: mapper lowers sample density
    interactor.SetStillUpdateRate(0.0001)  # full quality when still
    marker = vtkOrientationMarkerWidget()
    marker.SetOrientationMarker(VolumeScene.make_orientation_cube())
    marker.SetInteractor(interactor)
    marker.SetViewport(0.0, 0.0, 0.2, 0.2)
    marker.SetEnabled(1)
    marker.InteractiveOff()
    widget._prdit_marker = marker  # keep a reference (VTK does not own it from Python)
    widget.Initialize()
    return widget


# ---------------------------------------------------------------------------- the view
class _StreamLabel(QLabel):
    """Shows the render thread's frames while volumes stream; drags still turn the camera."""

    def __init__(self, view: Volume3DView) -> None:
        super().__init__(view)
        self._view = view
        self._last: tuple[float, float] | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setStyleSheet("background: #141419;")

    def mousePressEvent(self, ev):  # noqa: N802
        self._last = (ev.position().x(), ev.position().y())

    def mouseMoveEvent(self, ev):  # noqa: N802
        if self._last is None:
            return
        x, y = ev.position().x(), ev.position().y()
        dx, dy = x - self._last[0], y - self._last[1]
        self._last = (x, y)
        cam = self._view.scene.renderer.GetActiveCamera()
        if ev.buttons() & Qt.MouseButton.LeftButton:
            cam.Azimuth(-dx * 0.5)
            cam.Elevation(dy * 0.5)
            cam.OrthogonalizeViewUp()
        elif ev.buttons() & Qt.MouseButton.RightButton:
            cam.Zoom(float(np.exp(-dy * 0.01)))
        self._view.refresh()

    def mouseReleaseEvent(self, ev):  # noqa: N802
        self._last = None


class Volume3DView(QWidget):
    """The 3D pane: VTK render surface + throttled updates from the :class:`ViewerState`.

    Streamed frames (new voxels, same geometry) go to a
    :class:`~prdit_app.views.render_thread.BackgroundRenderer` when EGL is available, shown in a
    label stacked over the surface; 0.6 s after the stream stops the surface comes back with one
    full-quality frame. Still scenes render on the GUI thread in the native widget; the offscreen
    label (offscreen/VNC platforms) gets its frames from the same thread, so no software ray cast
    blocks the GUI there (``render_now`` stays synchronous for screenshots). Without EGL everything
    renders on the GUI thread, throttled, streamed frames at reduced quality.
    """

    rendered = Signal(float)  # seconds the last (GUI-thread) render took

    #: never render more often than this, whatever the render cost (seconds)
    MIN_INTERVAL_S = 0.05
    #: and at most this fraction of wall time goes to GUI-thread 3D rendering
    BUDGET = 1.0 / 3.0
    #: streaming ends when no new volume arrived for this long (ms)
    SETTLE_MS = 600

    def __init__(
        self,
        state: ViewerState,
        parent: QWidget | None = None,
        *,
        offscreen: bool | None = None,
        threaded: bool | None = None,
    ) -> None:
        super().__init__(parent)
        from PySide6.QtWidgets import QStackedLayout

        from prdit_app.views.render_thread import BackgroundRenderer, egl_available

        self.state = state
        self.scene = VolumeScene()
        self.offscreen = offscreen_platform() if offscreen is None else bool(offscreen)
        if self.offscreen:
            self.surface = OffscreenVtkWidget(self.scene, self)
            self.surface.interactionStarted.connect(self._on_interaction)
            self.surface.interactionEnded.connect(self._on_interaction_end)
        else:
            self.surface = _make_qvtk_widget(self.scene, self)
        self.stream_label = _StreamLabel(self)
        self.setStyleSheet("border: 2px solid #7a7f8a;")
        self._stack = QStackedLayout(self)
        self._stack.setContentsMargins(0, 0, 0, 0)
        self._stack.addWidget(self.surface)
        self._stack.addWidget(self.stream_label)
        self.notice = QLabel(self)  # says plainly what the view does not show (a single slice)
        self.notice.setObjectName("notice3d")
        self.notice.setWordWrap(True)
        self.notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice.setStyleSheet(
            "color: #e0e0e0; background: rgba(0, 0, 0, 150); border: none; padding: 6px;"
        )
        self.notice.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.notice.hide()

        if threaded is None:
            threaded = os.environ.get("PRDIT_VTK_THREAD", "1") != "0" and egl_available()
        self._bg: BackgroundRenderer | None = None
        if threaded:
            self._bg = BackgroundRenderer(self)
            self._bg.frameReady.connect(self._on_stream_frame)
            self._bg.failed.connect(self._on_thread_failed)

        self.last_render_s = 0.0
        self._cost: dict[bool, float] = {}  # last render time at full (False) / streaming (True) quality
        self.render_count = 0  # GUI-thread renders
        self.stream_frames = 0  # render-thread frames shown
        self.thread_stills = 0  # render-thread frames shown on the offscreen surface
        self.dropped = 0  # state changes absorbed by the throttle (frames never drawn)
        self._data_generation = -1
        self._dirty = False
        self._streaming = False
        self._since_render = QElapsedTimer()
        self._since_render.start()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._render_now)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(self.SETTLE_MS)
        self._settle.timeout.connect(self._end_streaming)

        self._follow_window = False  # the 3D transfer follows the slice window (non-CT data)
        self._ct_preset = self.scene.preset.name if self.scene.preset else DEFAULT_VR_PRESET
        state.volumeChanged.connect(self._on_volume)
        state.windowLevelChanged.connect(self._on_window)
        state.cursorChanged.connect(lambda _p: self.refresh())
        state.editRegionChanged.connect(self.refresh)
        if state.has_volume:
            self._on_volume(True)

    # -------------------------------------------------------------- public
    def set_preset(self, name: str) -> None:
        self.scene.set_preset(volume_rendering_preset(name))
        self._follow_window = False  # the user's choice stays until the next non-CT volume
        self.refresh()

    def _apply_window_preset(self) -> None:
        """Non-CT data (MR, PET, unitless): the HU presets mean nothing there (a bone preset turns an
        MR into a solid block), so the 3D view shows a maximum-intensity projection through the
        slice views' current window, grey to white, and follows it while the window changes."""
        lo, hi = self.state.levels
        self.scene.set_preset(window_mip_preset(lo, hi))
        self.refresh()

    def _on_window(self, _w: float, _l: float) -> None:
        if self._follow_window:
            self._apply_window_preset()

    @property
    def preset_name(self) -> str:
        return self.scene.preset.name if self.scene.preset else ""

    @property
    def threaded(self) -> bool:
        return self._bg is not None and self._bg.ok

    def reset_camera(self) -> None:
        self.scene.reset_camera()
        self.refresh()

    def set_planes_visible(self, visible: bool) -> None:
        self.scene.set_planes_visible(visible)
        self.refresh()

    def render_now(self) -> None:
        """Render a full-quality still frame synchronously on the GUI thread (screenshots, scripted
        mode), even right after a stream of volumes (a screenshot must not catch a fast frame)."""
        self._timer.stop()
        if self._streaming:
            self._settle.stop()
            self._streaming = False
            self.scene.set_streaming(False)
        self._render_now(sync=True)

    def refresh(self) -> None:
        """Something changed (cursor, preset, camera): redraw through the right path."""
        if self._streaming and self.threaded:
            self._submit_stream()
        else:
            self.schedule()

    # -------------------------------------------------------------- streaming
    def _on_volume(self, geometry_changed: bool) -> None:
        if geometry_changed:
            if not self.state.is_ct:
                if not self._follow_window and self.scene.preset is not None:
                    self._ct_preset = self.scene.preset.name
                self._follow_window = True
                self._apply_window_preset()
            elif self._follow_window:  # back to CT: the last CT preset again
                self._follow_window = False
                self.scene.set_preset(volume_rendering_preset(self._ct_preset))
            self._stop_streaming_display()
            self._upload()
            self.scene.reset_camera()
            self.schedule()
            return
        # new voxels, same scene: a generation step or a trajectory scrub
        self._settle.start()
        if not self._streaming:
            self._streaming = True
            self.scene.set_streaming(True)
        self.refresh()

    def _submit_stream(self) -> None:
        self._submit(fast=True, still=False)

    def _submit(self, fast: bool, still: bool) -> bool:
        """Hand the current scene (data, preset, cursor, camera, size) to the render thread."""
        from prdit_app.views.render_thread import RenderRequest, camera_state

        st = self.state
        if st.canonical is None or st.grid is None or self._bg is None or self.scene.preset is None:
            return False
        self._bg.submit(
            RenderRequest(
                canonical=st.canonical,
                generation=st.generation,
                spacing=st.grid.spacing,
                cursor_mm=st.grid.canonical_to_mm(st.cursor_canonical()),
                preset=self.scene.preset,
                camera=camera_state(self.scene.renderer.GetActiveCamera()),
                width=max(self.width(), 16),
                height=max(self.height(), 16),
                planes_visible=bool(self.scene.plane_actors[0].GetVisibility()),
                region=self._region_mm(),
                fast=fast,
                still=still,
            )
        )
        return True

    def _region_mm(self) -> tuple | None:
        """The edit region for the scene: (kind, low_mm, high_mm) or None."""
        bounds = self.state.edit_region_mm()
        if bounds is None or self.state.edit_region is None:
            return None
        return (self.state.edit_region.kind, bounds[0], bounds[1])

    def _on_stream_frame(self, image: QImage, seconds: float, generation: int, still: bool) -> None:
        if still:
            # an offscreen surface frame rendered on the thread (see _render_now); a stream that
            # started meanwhile owns the display until it settles and asks for a new one
            if self._streaming or not self.offscreen:
                return
            self.surface.setPixmap(QPixmap.fromImage(image))
            self._cost[False] = seconds
            self.thread_stills += 1
            self._stop_streaming_display()
            return
        if not self._streaming:
            return  # a late frame after the stream ended: the surface is already back
        self.stream_label.setPixmap(QPixmap.fromImage(image))
        self._stack.setCurrentWidget(self.stream_label)
        self._cost[True] = seconds
        self.stream_frames += 1

    def _on_thread_failed(self, message: str) -> None:
        import sys

        print(
            f"prdit-studio: 3D render thread unavailable ({message}); rendering on the GUI thread",
            file=sys.stderr,
        )
        self._bg = None
        self._stop_streaming_display()
        self.schedule()

    def _stop_streaming_display(self) -> None:
        if self._stack.currentWidget() is not self.surface:
            self._stack.setCurrentWidget(self.surface)

    def _end_streaming(self) -> None:
        self._streaming = False
        self.scene.set_streaming(False)
        self.schedule()  # one full-quality frame on the surface, then show it

    # -------------------------------------------------------------- GUI-thread throttle
    def schedule(self) -> None:
        """Mark dirty; render once the throttle interval has passed (never queues frames)."""
        if self._dirty:
            self.dropped += 1
        self._dirty = True
        cost = self._cost.get(self._streaming)
        if cost is None:  # first streamed frame: assume the reduced quality is ~4x cheaper
            cost = self._cost.get(False, 0.0) / 4.0
        interval = max(self.MIN_INTERVAL_S, cost / self.BUDGET - cost)
        wait_ms = max(0, int((interval - self._since_render.elapsed() / 1000.0) * 1000))
        # a pending render keeps its slot unless the quality changed and it can now come sooner
        if not self._timer.isActive() or self._timer.remainingTime() > wait_ms:
            self._timer.start(wait_ms)

    def _upload(self) -> None:
        st = self.state
        if st.canonical is None or st.grid is None:
            return
        self.scene.set_data(st.canonical, st.grid.spacing)
        self._data_generation = st.generation
        if self.scene.flat:
            n = min(st.grid.size)
            self.notice.setText(
                f"A single slice ({n} voxel deep): nothing to render in 3D. The slice views show it; "
                "the 3D view shows its outline and position."
            )
            self._place_notice()
        self.notice.setVisible(self.scene.flat)

    def _place_notice(self) -> None:
        width = max(120, self.width() - 24)
        self.notice.setFixedWidth(width)
        self.notice.adjustSize()
        self.notice.move(12, max(0, (self.height() - self.notice.height()) // 2))
        self.notice.raise_()

    def _render_now(self, sync: bool = False) -> None:
        st = self.state
        if st.grid is None:
            self._dirty = False
            return
        if self._data_generation != st.generation:
            self._upload()  # the GUI scene stays current: drags, screenshots and render_now use it
        self.scene.set_cursor_mm(st.grid.canonical_to_mm(st.cursor_canonical()))
        self.scene.set_region_mm(self._region_mm())
        if not sync and self.offscreen and self.threaded and not self._streaming:
            # The offscreen surface is only a picture: a software ray cast of it (0.1-0.6 s) need
            # not block the GUI thread. The thread renders it (latest wins) and _on_stream_frame
            # puts it on the surface; a camera drag asks for the fast quality.
            if self._submit(fast=self.surface.interacting, still=True):
                self._dirty = False
                self._since_render.restart()
                return
        t0 = time.perf_counter()
        if self.offscreen:
            self.surface.render(fast=self._streaming)
        else:
            window = self.surface.GetRenderWindow()
            # streaming: the mapper's auto-adjust lowers image/sample density to reach the rate
            window.SetDesiredUpdateRate(8.0 if self._streaming else 0.0001)
            self.scene.set_fast(self._streaming)
            window.Render()
        self.last_render_s = time.perf_counter() - t0
        self._cost[self._streaming] = self.last_render_s
        self.render_count += 1
        self._dirty = False
        self._since_render.restart()
        if not self._streaming:
            self._stop_streaming_display()
        self.rendered.emit(self.last_render_s)

    def _on_interaction(self) -> None:
        self.scene.renderer.ResetCameraClippingRange()
        self.schedule()

    def _on_interaction_end(self) -> None:
        self.schedule()

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        if self.notice.isVisible():
            self._place_notice()
        if self.offscreen and self.state.has_volume:
            self.schedule()

    def close_vtk(self) -> None:
        """Stop the render thread and release OpenGL before Qt destroys the widget."""
        self._timer.stop()
        self._settle.stop()
        if self._bg is not None:
            self._bg.stop()
        if self.offscreen:
            self.surface.close_vtk()
        else:
            self.surface.GetRenderWindow().Finalize()
