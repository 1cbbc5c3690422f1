"""3D presets accumulate opacity per voxel, as in 3D Slicer's GPU ray caster (not per millimetre).

Run in a subprocess like the other VTK tests (VTK may crash without OpenGL); nothing is rendered,
so no GL context is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prdit_app.views.vtk_scene import opacity_unit_distance

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    r"""
    import json
    import numpy as np
    from prdit_app.views.vtk_scene import VolumeScene
    from prdit_app.presets import volume_rendering_preset
    scene = VolumeScene()
    out = {}
    scene.set_data(np.zeros((8, 10, 12), np.float32), (0.7, 0.7, 2.5))
    out["aniso"] = scene.property.GetScalarOpacityUnitDistance()
    scene.set_preset(volume_rendering_preset("CT-Lung"))  # a preset change keeps the unit
    out["after_preset"] = scene.property.GetScalarOpacityUnitDistance()
    scene.set_data(np.zeros((8, 8, 8), np.float32), (2.734375,) * 3)
    out["iso"] = scene.property.GetScalarOpacityUnitDistance()
    scene.set_data(np.ones((8, 8, 8), np.float32), (2.734375,) * 3)  # a streamed frame: same geometry
    out["streamed"] = scene.property.GetScalarOpacityUnitDistance()
    print("RESULT " + json.dumps(out))
    """
)


def test_unit_distance_is_the_voxel_size():
    assert opacity_unit_distance((2.0, 2.0, 2.0)) == pytest.approx(2.0)
    assert opacity_unit_distance((0.5, 0.5, 4.0)) == pytest.approx(1.0)  # cube root of the voxel volume
    assert opacity_unit_distance((1.0, -1.0, 1.0)) == pytest.approx(1.0)  # flipped axes
    assert opacity_unit_distance((0.0, 1.0, 1.0)) == 1.0  # degenerate: VTK's default


@pytest.mark.vtk
def test_scene_applies_the_voxel_unit_distance(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    out = json.loads(lines[0][7:])
    assert out["aniso"] == pytest.approx((0.7 * 0.7 * 2.5) ** (1 / 3))
    assert out["after_preset"] == pytest.approx(out["aniso"])
    assert out["iso"] == pytest.approx(2.734375)
    assert out["streamed"] == pytest.approx(2.734375)
