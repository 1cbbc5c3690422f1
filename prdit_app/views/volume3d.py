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
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from prdit_app.presets import VolumeRenderingPreset, volume_rendering_preset
from prdit_app.state import ViewerState

DEFAULT_VR_PRESET = "CT-Bone"
PLANE_COLORS = {2: (0.878, 0.267, 0.243), 1: (0.373, 0.710, 0.290), 0: (0.910, 0.773, 0.278)}


def offscreen_platform() -> bool:
    """True when Qt cannot host a native OpenGL VTK widget (offscreen/minimal platform or forced)."""
    if os.environ.get("PRDIT_VTK_OFFSCREEN", "") not in ("", "0"):
        return True
    name = (
        QGuiApplication.platformName()
        if QGuiApplication.instance()
        else os.environ.get("QT_QPA_PLATFORM", "")
    )
    return name in ("offscreen", "minimal", "vnc")


def _import_vtk():
    """Import the VTK modules we use (the OpenGL backend must be registered before any window)."""
    if offscreen_platform() and not os.environ.get("DISPLAY"):
        # No X server: skip VTK's failing X attempt and go straight to EGL (Mesa llvmpipe).
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import vtkmodules.vtkInteractionStyle  # noqa: F401  (registers interactor styles)
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL backend)
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (GPU/smart volume mappers)

    return True


def window_mip_preset(low: float, high: float) -> VolumeRenderingPreset:
    """A maximum-intensity projection, grey ramp from ``low`` (black) to ``high`` (white)."""
    high = max(high, low + 1e-6)
    return VolumeRenderingPreset(
        name="Window-MIP",
        description="maximum intensity through the slice views' window (non-CT data)",
        scalar_opacity=((low, 0.0), (high, 1.0)),
        gradient_opacity=((0.0, 1.0), (255.0, 1.0)),
        color=((low, 0.0, 0.0, 0.0), (high, 1.0, 1.0, 1.0)),
        shade=False,
        ambient=0.1,
        diffuse=0.9,
        specular=0.2,
        specular_power=10.0,
        blend_mode="maximum_intensity",
    )


def opacity_unit_distance(spacing: tuple[float, float, float]) -> float:
    """The length (mm) over which a preset's scalar opacity applies: one voxel, as in 3D Slicer.

    Why: Slicer's presets (CT-Bone, ...) are tuned in Slicer, whose default GPU ray caster renders
    the image in voxel coordinates (spacing 1, the IJK-to-RAS matrix on the actor), so VTK's
    default ``ScalarOpacityUnitDistance`` of 1 there means *one voxel*, not 1 mm (Slicer issue
    #3716: "GPU volume rendering seems to define sampling distance in voxel coordinate system").
    Our image carries its spacing in mm, so the unit must be the voxel size to look the same.
    With VTK's 1 mm, a 2.7 mm phantom accumulated 2.7x the optical depth: CT-Bone hid the ribs
    behind an opaque red body wall (median opacity in front of the first bone along frontal rays
    0.89, vs 0.56 per voxel). Slicer's unit is per voxel along each ray; for anisotropic voxels
    one number has to stand for all directions, and the geometric mean (the cube root of the
    voxel volume) is exact for isotropic data.
    """
    sx, sy, sz = (abs(float(s)) for s in spacing)
    return float((sx * sy * sz) ** (1.0 / 3.0)) if sx * sy * sz > 0 else 1.0


# ---------------------------------------------------------------------------- scene
class VolumeScene:
    """Pure-VTK scene: volume, transfer functions, slice-plane outlines, box, orientation cube."""

    def __init__(self) -> None:
        _import_vtk()
        from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPiecewiseFunction
        from vtkmodules.vtkFiltersSources import vtkOutlineSource, vtkPlaneSource
        from vtkmodules.vtkRenderingCore import (
            vtkActor,
            vtkColorTransferFunction,
            vtkPolyDataMapper,
            vtkRenderer,
            vtkVolume,
            vtkVolumeProperty,
        )
        from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.08, 0.08, 0.10)
        self.renderer.SetBackground2(0.22, 0.24, 0.30)
        self.renderer.GradientBackgroundOn()

        self.image = vtkImageData()
        self._buffer: np.ndarray | None = None
        self._vtk_array = None
        self.mapper = vtkSmartVolumeMapper()
        self.mapper.SetInputData(self.image)
        self.mapper.SetRequestedRenderModeToDefault()  # GPU ray cast where OpenGL allows, else CPU
        self.mapper.SetInteractiveUpdateRate(8.0)
        self.mapper.SetAutoAdjustSampleDistances(True)
        self.mapper.SetInteractiveAdjustSampleDistances(False)  # measured: slower still frames
        # A per-ray random start offset (jitter) turns the wood-grain stripes that coarse sampling
        # draws on thin, low-opacity structures into fine noise: right for the coarse frames of a
        # camera drag or a streamed generation, wrong for a still frame, which it stipples. Measured
        # on a 128^3 phantom (CT-Bone, 488x482, llvmpipe): the still frame's high-frequency energy
        # (Laplacian variance) halves without jitter, 414 -> 198, at the same 0.6 s. So jitter is on
        # only for fast frames (:meth:`set_fast`).
        self.mapper.SetUseJittering(False)
        self.property = vtkVolumeProperty()
        self.opacity = vtkPiecewiseFunction()
        self.gradient = vtkPiecewiseFunction()
        self.colors = vtkColorTransferFunction()
        self.property.SetScalarOpacity(self.opacity)
        self.property.SetGradientOpacity(self.gradient)
        self.property.SetColor(self.colors)
        self.volume = vtkVolume()
        self.volume.SetMapper(self.mapper)
        self.volume.SetProperty(self.property)
        self.volume.VisibilityOff()
        self.renderer.AddVolume(self.volume)

        self.outline = vtkOutlineSource()
        box = vtkActor()
        box_mapper = vtkPolyDataMapper()
        box_mapper.SetInputConnection(self.outline.GetOutputPort())
        box.SetMapper(box_mapper)
        box.GetProperty().SetColor(0.6, 0.6, 0.65)
        box.VisibilityOff()
        self.box_actor = box
        self.renderer.AddActor(box)

        self.planes: dict[int, object] = {}
        self.plane_actors: dict[int, object] = {}
        for axis, color in PLANE_COLORS.items():
            src = vtkPlaneSource()
            m = vtkPolyDataMapper()
            m.SetInputConnection(src.GetOutputPort())
            actor = vtkActor()
            actor.SetMapper(m)
            prop = actor.GetProperty()
            prop.SetRepresentationToWireframe()
            prop.SetColor(*color)
            prop.SetLineWidth(2.0)
            prop.LightingOff()
            actor.VisibilityOff()
            self.planes[axis] = src
            self.plane_actors[axis] = actor
            self.renderer.AddActor(actor)

        self.size: tuple[int, int, int] | None = None
        self.flat = False  # the data is one voxel thick along some axis: no volume rendering
        self.spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.preset: VolumeRenderingPreset | None = None
        self._full_sample_distance = -1.0
        self.set_preset(volume_rendering_preset(DEFAULT_VR_PRESET))

    # -------------------------------------------------------------- orientation cube
    @staticmethod
    def make_orientation_cube():
        """An annotated cube with patient directions (L/R, P/A, S/I) on the faces of +x/-x, ..."""
        from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

        cube = vtkAnnotatedCubeActor()
        cube.SetXPlusFaceText("L")
        cube.SetXMinusFaceText("R")
        cube.SetYPlusFaceText("P")
        cube.SetYMinusFaceText("A")
        cube.SetZPlusFaceText("S")
        cube.SetZMinusFaceText("I")
        cube.SetFaceTextScale(0.65)
        cube.GetCubeProperty().SetColor(0.25, 0.28, 0.35)
        cube.GetTextEdgesProperty().SetColor(0.9, 0.9, 0.9)
        cube.GetTextEdgesProperty().SetLineWidth(1)
        for prop, color in (
            (cube.GetXPlusFaceProperty(), (1.0, 0.85, 0.4)),
            (cube.GetXMinusFaceProperty(), (1.0, 0.85, 0.4)),
            (cube.GetYPlusFaceProperty(), (0.5, 0.9, 0.5)),
            (cube.GetYMinusFaceProperty(), (0.5, 0.9, 0.5)),
            (cube.GetZPlusFaceProperty(), (0.95, 0.5, 0.45)),
            (cube.GetZMinusFaceProperty(), (0.95, 0.5, 0.45)),
        ):
            prop.SetColor(*color)
            prop.SetInterpolationToFlat()
        return cube

    # -------------------------------------------------------------- data
    def set_data(self, canonical: np.ndarray, spacing: tuple[float, float, float]) -> bool:
        """Upload ``can[x, y, z]``; returns True when the geometry (and camera bounds) changed."""
        from vtkmodules.util.numpy_support import numpy_to_vtk

        size = tuple(int(s) for s in canonical.shape)
        # keep compact integer CT as it is (a 512^3 int16 volume would double as float32)
        compact = (np.int16, np.uint16, np.uint8, np.float32)
        dtype = canonical.dtype if canonical.dtype in compact else np.dtype(np.float32)
        geometry_changed = size != self.size or tuple(spacing) != self.spacing
        realloc = geometry_changed or self._buffer is None or self._buffer.dtype != dtype
        # VTK wants x fastest: a C-ordered [z, y, x] buffer.
        src = np.transpose(canonical, (2, 1, 0))
        if realloc:
            # always our own copy: the buffer is overwritten in place by later frames
            self._buffer = np.array(src, dtype=dtype, order="C", copy=True)
            self.image.SetDimensions(*size)
            self.image.SetSpacing(*spacing)
            self.image.SetOrigin(0.0, 0.0, 0.0)
            self._vtk_array = numpy_to_vtk(self._buffer.reshape(-1), deep=False)
            self._vtk_array.SetName("HU")
            self.image.GetPointData().SetScalars(self._vtk_array)
            self.size = size  # type: ignore[assignment]
            self.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
            # one sample per voxel: half that doubles the cost on llvmpipe for no visible gain at 128^3
            self._full_sample_distance = float(min(self.spacing))
            self.mapper.SetSampleDistance(self._full_sample_distance)
            self.property.SetScalarOpacityUnitDistance(opacity_unit_distance(self.spacing))
            half = 0.5 * np.asarray(self.spacing)
            ext = (np.asarray(size) - 0.5) * np.asarray(self.spacing)
            self.outline.SetBounds(-half[0], ext[0], -half[1], ext[1], -half[2], ext[2])
        else:
            np.copyto(self._buffer, src, casting="unsafe")  # same shape: reuse the buffer, no realloc
            self._vtk_array.Modified()
        self.image.Modified()
        # a single slice has no depth to cast rays through: outline and planes only (the view says so)
        self.flat = min(size) < 2
        self.volume.SetVisibility(not self.flat)
        self.box_actor.VisibilityOn()
        for actor in self.plane_actors.values():
            actor.VisibilityOn()
        return geometry_changed

    def set_fast(self, fast: bool) -> None:
        """Quality of the next frame: fast (coarse, jittered) while things move, else still (smooth)."""
        self.mapper.SetUseJittering(bool(fast))

    def set_streaming(self, streaming: bool) -> None:
        """Coarser rays while volumes stream in; full quality otherwise.

        The big saving comes from the render window's desired update rate (set by the view):
        with ``AutoAdjustSampleDistances`` the mapper then casts fewer rays (measured 5-7x faster
        at 128^3 on llvmpipe). The explicit sample distance applies where auto-adjust is off.
        """
        self.streaming = streaming
        if self._full_sample_distance > 0:
            self.mapper.SetSampleDistance(self._full_sample_distance * (2.0 if streaming else 1.0))

    def set_cursor_mm(self, mm: np.ndarray) -> None:
        """Place the three slice-plane outlines through the cursor (display mm)."""
        if self.size is None:
            return
        sp = np.asarray(self.spacing)
        lo = -0.5 * sp
        hi = (np.asarray(self.size) - 0.5) * sp
        for axis, src in self.planes.items():
            a, b = [k for k in range(3) if k != axis]
            o = lo.copy()
            o[axis] = mm[axis]
            p1 = o.copy()
            p1[a] = hi[a]
            p2 = o.copy()
            p2[b] = hi[b]
            src.SetOrigin(*o)
            src.SetPoint1(*p1)
            src.SetPoint2(*p2)
            src.Modified()

    def set_planes_visible(self, visible: bool) -> None:
        for actor in self.plane_actors.values():
            actor.SetVisibility(bool(visible) and self.size is not None)

    # -------------------------------------------------------------- presets
    def set_preset(self, preset: VolumeRenderingPreset) -> None:
        """Map a Slicer-style preset onto the VTK transfer functions and shading."""
        self.preset = preset
        self.opacity.RemoveAllPoints()
        for hu, a in preset.scalar_opacity:
            self.opacity.AddPoint(hu, a)
        self.gradient.RemoveAllPoints()
        for g, a in preset.gradient_opacity:
            self.gradient.AddPoint(g, a)
        # Slicer's presets mostly use a constant 1: skip the per-sample gradient cost then
        self.property.SetDisableGradientOpacity(all(a == 1.0 for _, a in preset.gradient_opacity))
        self.colors.RemoveAllPoints()
        for hu, r, g, b in preset.color:
            self.colors.AddRGBPoint(hu, r, g, b)
        p = self.property
        p.SetShade(1 if preset.shade else 0)
        p.SetAmbient(preset.ambient)
        p.SetDiffuse(preset.diffuse)
        p.SetSpecular(preset.specular)
        p.SetSpecularPower(preset.specular_power)
        if preset.interpolation == "linear":
            p.SetInterpolationTypeToLinear()
        else:
            p.SetInterpolationTypeToNearest()
        if preset.blend_mode == "maximum_intensity":
            self.mapper.SetBlendModeToMaximumIntensity()
        else:
            self.mapper.SetBlendModeToComposite()

    # -------------------------------------------------------------- camera
    def reset_camera(self) -> None:
        """Anterior view (patient Right on screen left, as in radiological coronal), tilted 15 deg."""
        if self.size is None:
            return
        cam = self.renderer.GetActiveCamera()
        center = (np.asarray(self.size) - 1) * np.asarray(self.spacing) / 2.0
        cam.SetFocalPoint(*center)
        cam.SetPosition(center[0], center[1] - 1000.0, center[2])
        cam.SetViewUp(0.0, 0.0, 1.0)
        cam.Elevation(15.0)
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCamera()
        cam.Zoom(1.15)
        self.renderer.ResetCameraClippingRange()


# ---------------------------------------------------------------------------- surfaces
class OffscreenTarget:
    """An offscreen render window for a scene, with the orientation cube, read back as RGB pixels.

    The cube sits in a corner viewport whose camera follows the main one
    (``vtkOrientationMarkerWidget`` needs an interactor, which offscreen windows lack).
    ``egl=True`` creates a ``vtkEGLRenderWindow`` directly: no X connection, so it can live in a
    worker thread next to Qt's own GL/X use on the GUI thread.
    """

    def __init__(self, scene: VolumeScene, *, egl: bool = False) -> None:
        from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter

        self.scene = scene
        if egl:
            from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow

            self.window = vtkEGLRenderWindow()
        else:
            self.window = vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.AddRenderer(scene.renderer)
        self.marker_renderer = vtkRenderer()
        self.marker_renderer.SetViewport(0.0, 0.0, 0.2, 0.2)
        self.marker_renderer.SetLayer(1)
        self.marker_renderer.InteractiveOff()
        self.marker_renderer.AddActor(VolumeScene.make_orientation_cube())
        self.window.SetNumberOfLayers(2)
        self.window.AddRenderer(self.marker_renderer)
        self._grabber = vtkWindowToImageFilter()
        self._grabber.SetInput(self.window)
        self._grabber.SetInputBufferTypeToRGB()
        self._grabber.ReadFrontBufferOff()

    def _sync_marker(self) -> None:
        main = self.scene.renderer.GetActiveCamera()
        cam = self.marker_renderer.GetActiveCamera()
        d = np.asarray(main.GetDirectionOfProjection())
        cam.SetFocalPoint(0.0, 0.0, 0.0)
        cam.SetPosition(*(-d * 5.0))
        cam.SetViewUp(*main.GetViewUp())
        self.marker_renderer.ResetCameraClippingRange()

    def render_image(self, width: int, height: int, fast: bool = False) -> QImage:
        """Render at ``width`` x ``height``; ``fast`` lets the mapper drop quality (~8 frames/s)."""
        from vtkmodules.util.numpy_support import vtk_to_numpy

        self.window.SetSize(max(int(width), 16), max(int(height), 16))
        self.window.SetDesiredUpdateRate(8.0 if fast else 0.0001)
        self.scene.set_fast(fast)
        self._sync_marker()
        self.window.Render()
        self._grabber.Modified()
        self._grabber.Update()
        out = self._grabber.GetOutput()
        dims = out.GetDimensions()
        rgb = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(dims[1], dims[0], 3)
        rgb = np.ascontiguousarray(rgb[::-1])  # VTK rows run bottom-up
        return QImage(rgb.data, dims[0], dims[1], 3 * dims[0], QImage.Format.Format_RGB888).copy()

    def finalize(self) -> None:
        self.window.Finalize()


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
                fast=fast,
                still=still,
            )
        )
        return True

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
