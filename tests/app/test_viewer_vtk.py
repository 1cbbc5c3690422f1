"""The 3D view and the scripted screenshot, each in a subprocess (VTK may segfault without OpenGL).

* offscreen VTK (EGL/llvmpipe) under Qt's offscreen platform: presets -> transfer functions, the
  rendered image, anatomical orientation of the default camera, the streaming throttle;
* ``prdit-studio --phantom ... --screenshot ... --quit`` under Xvfb with the native Qt VTK widget:
  all four views rendered (not black, not uniform).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_GL = 77  # exit code of the child when VTK cannot open any OpenGL context

OFFSCREEN_SCRIPT = textwrap.dedent(
    r"""
    import os, sys, json
    import numpy as np
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from prdit.volume import Volume
    from prdit_app.state import ViewerState
    from prdit_app.views import volume3d
    from prdit_app.presets import volume_rendering_presets

    try:
        view_state = ViewerState()
        view = volume3d.Volume3DView(view_state, offscreen=True)
    except Exception as exc:
        print("no GL:", exc); sys.exit(77)
    view.resize(260, 260); view.show(); app.processEvents()
    out = {}
    # 1. presets map onto VTK transfer functions exactly
    for name, p in volume_rendering_presets().items():
        view.set_preset(name)
        s = view.scene
        out[name] = {
            "opacity": [s.opacity.GetValue(hu) for hu, _ in p.scalar_opacity],
            "expected_opacity": [a for _, a in p.scalar_opacity],
            "color": [list(s.colors.GetColor(hu)) for hu, *_ in p.color],
            "expected_color": [list(c) for _, *c in p.color],
            "blend": s.mapper.GetBlendMode(),
            "shade": s.property.GetShade(),
        }
    # 2. a bright block on the patient's LEFT, seen from the front, lands on the screen right
    d = h = w = 40
    arr = np.full((d, h, w), -1000, np.float32)
    arr[14:26, 14:26, 28:36] = 1200   # i large = +x = patient Left (LPS identity)
    vol = Volume(arr, (2.0, 2.0, 2.0))
    view.set_preset("CT-MIP")
    view_state.set_volume(vol)
    view.render_now()
    img = view.surface.pixmap().toImage()
    from PySide6.QtGui import QImage
    img = img.convertToFormat(QImage.Format.Format_Grayscale8)
    g = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width()]
    ys, xs = np.nonzero(g > 200)
    out["marker_x"] = float(xs.mean() / img.width()) if xs.size else -1.0
    out["bright_pixels"] = int(xs.size)
    # still frames are smooth (no jitter), fast ones (camera drag, streaming) jittered
    out["still_jitter"] = view.scene.mapper.GetUseJittering()
    view.surface.target.render_image(120, 120, fast=True)
    out["fast_jitter"] = view.scene.mapper.GetUseJittering()
    view.surface.target.render_image(120, 120, fast=False)
    out["still_again_jitter"] = view.scene.mapper.GetUseJittering()
    # a single slice: no volume rendering, and the view says why
    view_state.set_volume(Volume(arr[20:21], (2.0, 2.0, 2.0)))
    view.render_now(); app.processEvents()
    out["flat"] = [bool(view.scene.flat), bool(view.scene.volume.GetVisibility()), view.notice.isVisible(),
                   view.notice.text()]
    view_state.set_volume(vol)
    view.render_now(); app.processEvents()
    out["unflat"] = [bool(view.scene.flat), bool(view.scene.volume.GetVisibility()), view.notice.isVisible()]
    # non-CT data (an MR's values): a MIP through the slice window instead of an HU preset
    mr = np.random.default_rng(0).uniform(500, 20000, (20, 20, 20)).astype(np.float32)
    mr = Volume(mr, (2.0, 2.0, 2.0))
    view.set_preset("CT-Lung")
    view_state.set_volume(mr)
    lo, hi = view_state.levels
    out["mr"] = [view.preset_name, view.scene.mapper.GetBlendMode(), view.scene.opacity.GetValue(hi), lo, hi]
    view_state.set_window_level(1000, 9000)
    out["mr_follow"] = view.scene.opacity.GetValue(9500)
    view_state.set_volume(vol)
    out["ct_again"] = view.preset_name
    # 3. streaming: 25 frames in a burst -> far fewer renders (latest wins), the newest data shown last
    import time
    def wait(seconds):
        t_end = time.time() + seconds
        while time.time() < t_end:
            app.processEvents()
            time.sleep(0.01)
    view.close_vtk()
    for threaded in (True, False):
        st = ViewerState()
        v = volume3d.Volume3DView(st, offscreen=True, threaded=threaded)
        v.resize(200, 200); v.show()
        st.set_volume(vol)
        v.render_now()
        gui0 = v.render_count
        for n in range(25):
            st.set_volume(vol.with_array(arr + n), keep_view=True)
            app.processEvents()
            time.sleep(0.02)
        t_end = time.time() + 30
        while time.time() < t_end and (v._streaming or (v._bg is not None and not v._bg.idle())):
            wait(0.05)
        wait(max(0.3, 3 * v.last_render_s))
        t_end = time.time() + 30  # the threaded view's still frame: throttle interval + one render
        while v.threaded and v.thread_stills == 0 and time.time() < t_end:
            wait(0.05)
        key = "thread" if threaded else "gui"
        out[key] = {
            "threaded": v.threaded,
            "stream_frames": v.stream_frames,
            "thread_renders": v._bg.rendered if v._bg is not None else 0,
            "gui_renders": v.render_count - gui0,
            "thread_stills": v.thread_stills,
            "surface_back": v._stack.currentWidget() is v.surface,
            "latest_uploaded": bool(v._data_generation == st.generation),
            "buffer_max": float(v.scene._buffer.max()),
        }
        v.close_vtk()
    out["source_max"] = float(arr.max())  # views must never write into the volume they show
    print("RESULT " + json.dumps(out))
    """
)


def _run(cmd, env, timeout=240):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _result(proc) -> dict:
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@pytest.mark.vtk
def test_offscreen_vtk_presets_orientation_and_throttle(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PRDIT_SETTINGS=str(tmp_path / "s.ini"))
    env.pop("DISPLAY", None)
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    proc = _run([sys.executable, "-c", OFFSCREEN_SCRIPT], env)
    if proc.returncode == NO_GL or proc.returncode < 0 and "RESULT" not in proc.stdout:
        pytest.skip(f"VTK cannot render offscreen here (rc {proc.returncode}): {proc.stderr[-300:]}")
    out = _result(proc)
    for name in ("CT-Bone", "CT-Lung", "CT-Soft-Tissue", "CT-MIP"):
        np.testing.assert_allclose(out[name]["opacity"], out[name]["expected_opacity"], atol=1e-6)
        np.testing.assert_allclose(out[name]["color"], out[name]["expected_color"], atol=1e-6)
    assert out["CT-MIP"]["blend"] == 1 and out["CT-Bone"]["blend"] == 0  # VTK: 0 composite, 1 MIP
    assert out["CT-Bone"]["shade"] == 1 and out["CT-Soft-Tissue"]["shade"] == 0
    # jittered ray starts only where frames are coarse anyway; a still frame is not stippled
    assert (out["still_jitter"], out["fast_jitter"], out["still_again_jitter"]) == (0, 1, 0)
    flat, visible, notice, text = out["flat"]
    assert flat and not visible and notice and "single slice" in text
    assert out["unflat"] == [False, True, False]
    name, blend, top, lo, hi = out["mr"]
    assert name == "Window-MIP" and blend == 1 and top == pytest.approx(1.0) and 500 < lo < hi < 20000
    assert out["mr_follow"] == pytest.approx(1.0)  # the window moved to 8500..9500: the MIP follows
    assert out["ct_again"] == "CT-Lung"  # back on CT, the user's CT preset returns
    assert out["bright_pixels"] > 50
    assert out["marker_x"] > 0.55, "patient-left marker should be on the screen right in the anterior view"
    # streamed frames render on the worker thread (EGL), the surface returns with the newest volume
    t = out["thread"]
    if t["threaded"]:
        assert 1 <= t["thread_renders"] < 25 and 1 <= t["stream_frames"] <= t["thread_renders"]
        # the full-quality frame after the stream comes from the thread too: no GUI-thread ray cast
        assert t["gui_renders"] == 0 and t["thread_stills"] >= 1, t
    for key in ("thread", "gui"):
        r = out[key]
        assert r["surface_back"] and r["latest_uploaded"], (key, r)
        assert r["buffer_max"] == pytest.approx(1200 + 24)
    assert out["source_max"] == 1200.0
    assert out["gui"]["stream_frames"] == 0 and 1 <= out["gui"]["gui_renders"] < 25


def _region_stats(rgb: np.ndarray, rect) -> tuple[float, float]:
    x, y, w, h = rect
    inner = rgb[y + 4 : y + h - 24, x + 4 : x + w - 4]  # skip borders and the slider row
    gray = inner.mean(axis=-1)
    return float(gray.mean()), float(gray.std())


@pytest.mark.vtk
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed (apt install xvfb)")
def test_scripted_screenshot_under_xvfb_shows_four_rendered_views(tmp_path):
    from PIL import Image

    out = tmp_path / "studio.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", PRDIT_SETTINGS=str(tmp_path / "s.ini"))
    env.pop("VTK_DEFAULT_OPENGL_WINDOW", None)
    cmd = [
        "xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
        sys.executable, "-m", "prdit_app.main", "--phantom", "0", "--size", "48", "--no-panels",
        "--preset", "lung", "--window-size", "1200x760", "--screenshot", str(out), "--quit",
    ]  # fmt: skip
    proc = _run(cmd, env, timeout=300)
    if proc.returncode != 0 and "could not connect to display" in proc.stderr + proc.stdout:
        pytest.skip("Xvfb could not start here")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rects = None
    for line in proc.stdout.splitlines():
        if line.startswith("prdit-studio: views "):
            rects = json.loads(line.split("views ", 1)[1])
    assert rects and set(rects) == {"axial", "sagittal", "coronal", "3d"}
    rgb = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    assert rgb.shape[0] >= 700 and rgb.shape[1] >= 1100
    for name in ("axial", "sagittal", "coronal"):
        mean, std = _region_stats(rgb, rects[name])
        assert mean > 15 and std > 20, f"{name} view looks empty: mean {mean:.1f}, std {std:.1f}"
    x, y, w, h = rects["3d"]
    region = rgb[y + 4 : y + h - 4, x + 4 : x + w - 4]
    # CT-Bone colours tissue warm (red > blue); the gradient background is bluish-grey
    warm = (region[..., 0] > 90) & (region[..., 0] > region[..., 2] + 25)
    assert warm.mean() > 0.02, f"3D view shows no rendered volume ({warm.mean():.4f} warm pixels)"
    assert region.std() > 10
