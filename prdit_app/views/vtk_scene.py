"""The VTK side of the 3D view, without any Qt widget: the scene (renderer, ray-cast mapper,
Slicer-style transfer functions, slice planes, box, orientation cube) and an offscreen render
target that turns it into a QImage.

Both the GUI's 3D view (:mod:`prdit_app.views.volume3d`) and its render thread
(:mod:`prdit_app.views.render_thread`) build on these, so neither imports the other's module.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtGui import QGuiApplication, QImage

from prdit_app.presets import VolumeRenderingPreset, volume_rendering_preset

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

        # the edit region: a box outline, or a wire ellipsoid (a unit sphere scaled by the actor)
        from vtkmodules.vtkFiltersSources import vtkSphereSource

        self.region_box = vtkOutlineSource()
        self.region_actors: dict[str, object] = {}
        sphere = vtkSphereSource()
        sphere.SetRadius(1.0)
        sphere.SetThetaResolution(24)
        sphere.SetPhiResolution(12)
        for kind, source in (("box", self.region_box), ("sphere", sphere)):
            self.region_actors[kind] = self._add_wire_actor(source, (0.29, 0.82, 1.0))

        self.planes: dict[int, object] = {}
        self.plane_actors: dict[int, object] = {}
        for axis, color in PLANE_COLORS.items():
            src = vtkPlaneSource()
            self.planes[axis] = src
            self.plane_actors[axis] = self._add_wire_actor(src, color)

        self.size: tuple[int, int, int] | None = None
        self.flat = False  # the data is one voxel thick along some axis: no volume rendering
        self.spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.preset: VolumeRenderingPreset | None = None
        self._full_sample_distance = -1.0
        self.set_preset(volume_rendering_preset(DEFAULT_VR_PRESET))

    def _add_wire_actor(self, source, color: tuple[float, float, float]):
        """A hidden, unlit 2 px wireframe of ``source`` in ``color``, added to the renderer (the
        slice-plane outlines and the edit region's box and ellipsoid)."""
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort())
        actor = vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetRepresentationToWireframe()
        prop.SetColor(*color)
        prop.SetLineWidth(2.0)
        prop.LightingOff()
        actor.VisibilityOff()
        self.renderer.AddActor(actor)
        return actor

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

    def set_region_mm(self, region: tuple | None) -> None:
        """Outline the edit region ``(kind, low_mm, high_mm)`` (display mm), or hide it (None)."""
        for actor in self.region_actors.values():
            actor.VisibilityOff()
        if region is None or self.size is None:
            return
        kind, lo, hi = region
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        actor = self.region_actors[kind]
        if kind == "box":
            self.region_box.SetBounds(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
            self.region_box.Modified()
        else:
            centre, radius = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1e-6)
            actor.SetPosition(*centre)
            actor.SetScale(*radius)
        actor.VisibilityOn()

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
