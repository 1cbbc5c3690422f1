"""Volume rendering on a worker thread: the GUI thread never waits for VTK.

While the Generate panel streams one volume per sampling step, a software ray cast (0.1-0.5 s per
frame on llvmpipe) on the GUI thread would hold up the slice views for a whole frame. This thread
owns a *second* VTK scene in its own EGL offscreen window (no X connection, so it cannot clash with
Qt's GL/X use on the GUI thread) and renders the latest request at streaming quality. VTK releases
the interpreter lock while it renders, so the GUI thread keeps running.

Latest wins: :meth:`BackgroundRenderer.submit` replaces any request not yet started (counted as
dropped), never queues. Requests carry everything the thread needs (the canonical array, spacing,
cursor, preset, camera, size) so the two scenes never share VTK objects.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from prdit_app.latest import LatestSlot
from prdit_app.presets import VolumeRenderingPreset


@dataclass
class RenderRequest:
    canonical: np.ndarray  # can[x, y, z]; the thread copies it into its own VTK buffer
    generation: int
    spacing: tuple[float, float, float]
    cursor_mm: np.ndarray
    preset: VolumeRenderingPreset
    camera: dict  # position, focal_point, view_up, view_angle, parallel_scale, clipping_range
    width: int
    height: int
    planes_visible: bool = True
    #: the edit region's outline: (kind, low_mm, high_mm) in display mm, or None
    region: tuple | None = None
    #: streaming quality (the mapper may drop samples to keep ~8 frames/s); False: full quality
    fast: bool = True
    #: a frame for the view's own surface (still scene, camera drag), not for the stream overlay
    still: bool = False


def camera_state(camera) -> dict:
    """A plain copy of a vtkCamera's parameters (safe to hand to another thread)."""
    return {
        "position": camera.GetPosition(),
        "focal_point": camera.GetFocalPoint(),
        "view_up": camera.GetViewUp(),
        "view_angle": camera.GetViewAngle(),
        "parallel_scale": camera.GetParallelScale(),
    }


def _lower_thread_priority(nice: int = 10) -> None:
    """Run this thread (and the llvmpipe threads it spawns, which inherit it) below the GUI thread.

    On a 2-core machine software ray casting would otherwise take CPU from the slice views; with
    a lower priority the GUI thread wins whenever both want a core. Linux only (per-thread nice).
    """
    if hasattr(os, "setpriority") and sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


def egl_available() -> bool:
    try:
        from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow  # noqa: F401
    except ImportError:
        return False
    return True


class BackgroundRenderer(QObject):
    """A daemon thread rendering :class:`RenderRequest`\\ s; results arrive on the GUI thread via signals."""

    #: image, seconds the render took, the request's generation, the request's ``still`` flag
    frameReady = Signal(QImage, float, int, bool)
    #: the thread could not set up OpenGL (message); callers fall back to GUI-thread rendering
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._slot = LatestSlot()  # the next request: a newer one replaces it, never queues
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False
        self.rendered = 0
        self.ok = True
        #: fraction of wall time the thread may spend rendering while frames keep coming
        self.duty = 0.5

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prdit-vtk-stream", daemon=True)
            self._thread.start()

    def submit(self, request: RenderRequest) -> None:
        """Render ``request`` next; a request still waiting is replaced (dropped), never queued."""
        self.start()
        self._slot.put(request)

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    def idle(self) -> bool:
        return self._slot.empty and not self.busy

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        from prdit_app.views.vtk_scene import OffscreenTarget, VolumeScene

        _lower_thread_priority()
        try:
            scene = VolumeScene()
            scene.set_streaming(True)
            target = OffscreenTarget(scene, egl=True)
        except Exception as exc:  # noqa: BLE001 - no EGL: report, the view renders on the GUI thread
            self.ok = False
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        generation = None
        try:
            while True:
                req = self._slot.wait_take(then=lambda: setattr(self, "busy", True))
                if req is None:  # stopped
                    break
                try:
                    t0 = time.perf_counter()
                    if req.generation != generation or scene.size != req.canonical.shape:
                        scene.set_data(req.canonical, req.spacing)
                        generation = req.generation
                    scene.set_streaming(req.fast)
                    if scene.preset is not req.preset:
                        scene.set_preset(req.preset)
                    scene.set_cursor_mm(req.cursor_mm)
                    scene.set_planes_visible(req.planes_visible)
                    scene.set_region_mm(req.region)
                    cam = scene.renderer.GetActiveCamera()
                    c = req.camera
                    cam.SetPosition(*c["position"])
                    cam.SetFocalPoint(*c["focal_point"])
                    cam.SetViewUp(*c["view_up"])
                    cam.SetViewAngle(c["view_angle"])
                    cam.SetParallelScale(c["parallel_scale"])
                    scene.renderer.ResetCameraClippingRange()
                    image = target.render_image(req.width, req.height, fast=req.fast)
                    self.rendered += 1
                    self.frameReady.emit(image, time.perf_counter() - t0, req.generation, req.still)
                    # duty cycle: rest as long as the frame took, so on a 2-core machine the
                    # software rasteriser leaves CPU for the GUI thread between frames
                    rest = (time.perf_counter() - t0) * (1.0 / self.duty - 1.0)
                    if rest > 0:
                        self._stopping.wait(rest)  # returns at once when stop() is called
                finally:
                    self.busy = False
        finally:
            target.finalize()
