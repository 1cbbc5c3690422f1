# ruff: noqa: F811  (pytest fixtures imported from _viewer_support are re-bound as arguments)
"""Measurements on the slice views: ruler length in physical mm on anisotropic voxels, region
statistics equal to numpy's on the same voxels, per-slice display, removal, and screenshots."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from tests.app._viewer_support import dialog_log, studio, thorax  # noqa: F401


def _mm(view, c):
    """Display mm of canonical voxel centre ``c`` in ``view`` (u, v)."""
    sp = view.state.grid.spacing
    return (c[view.plane.u] * sp[view.plane.u], c[view.plane.v] * sp[view.plane.v])


def test_ruler_measures_physical_distance_on_anisotropic_voxels(studio):
    studio.set_volume(thorax(spacing=(0.7, 1.3, 2.5)), source="t")
    view = studio.coronal  # u = x (0.7 mm), v = z (2.5 mm)
    k = view.slice_index
    a, b = np.array([3.0, k, 2.0]), np.array([30.0, k, 17.0])
    ruler = view.measure.add("ruler", _mm(view, a), _mm(view, b))
    grid = studio.state.grid
    expected = np.linalg.norm(grid.canonical_to_lps(b) - grid.canonical_to_lps(a))
    assert ruler.length_mm() == pytest.approx(expected, rel=1e-6)
    assert ruler.label.textItem.toPlainText() == f"{expected:.1f} mm"
    assert expected != pytest.approx(np.linalg.norm(b - a))  # voxel counts would be wrong here


def test_region_statistics_equal_numpys_on_the_same_voxels(studio):
    studio.set_volume(thorax(spacing=(0.8, 1.1, 2.0)), source="t")
    view = studio.axial  # u = x, v = y
    st = studio.state
    su, sv = st.grid.spacing[0], st.grid.spacing[1]
    k = view.slice_index
    u0, u1, v0, v1 = 5, 20, 8, 19
    start = (u0 * su - 0.1, v0 * sv - 0.1)
    end = (u1 * su + 0.1, v1 * sv + 0.1)
    box = view.measure.add("box", start, end).stats()
    voxels = st.canonical[u0 : u1 + 1, v0 : v1 + 1, k].astype(np.float64)
    assert box.count == voxels.size
    assert box.mean == pytest.approx(voxels.mean()) and box.sd == pytest.approx(voxels.std(ddof=1))
    assert (box.minimum, box.maximum) == (voxels.min(), voxels.max())
    assert box.area_mm2 == pytest.approx(voxels.size * su * sv)
    ellipse = view.measure.add("ellipse", start, end).stats()
    cx, cy = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    rx, ry = (end[0] - start[0]) / 2, (end[1] - start[1]) / 2
    nu, nv = st.canonical.shape[:2]
    inside = [st.canonical[u, v, k] for u in range(nu) for v in range(nv)
              if ((u * su - cx) / rx) ** 2 + ((v * sv - cy) / ry) ** 2 <= 1]  # fmt: skip
    assert ellipse.count == len(inside) < box.count
    assert ellipse.mean == pytest.approx(np.mean(inside)) and ellipse.maximum == max(inside)
    assert "mean" in view.measure.items[-1].label.textItem.toPlainText()


def test_measurements_belong_to_their_slice_and_can_be_removed(studio, tmp_path):
    studio.set_volume(thorax(), source="t")
    view = studio.axial
    ruler = view.measure.add("ruler", (2.0, 2.0), (20.0, 25.0))
    assert ruler.roi.isVisible()
    # in the screenshot: the ruler's yellow is there
    saved = studio.save_screenshot(tmp_path / "axial.png", "axial")
    img = QImage(str(saved)).convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[
        :, : 3 * img.width()
    ]
    rgb = arr.reshape(img.height(), img.width(), 3).astype(int)
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 170) & (rgb[..., 2] < 120)
    assert yellow.sum() > 20
    view.scroll(1)
    assert not ruler.roi.isVisible()  # another slice: not shown
    view.scroll(-1)
    assert ruler.roi.isVisible()
    ruler.roi.sigRemoveRequested.emit(ruler.roi)  # right-click > Remove
    assert view.measure.items == [] and ruler.roi.scene() is None
    view.measure.add("box", (2.0, 2.0), (9.0, 9.0))
    studio.act_clear_measurements.trigger()
    assert view.measure.items == []


def test_tool_actions_switch_left_drag_between_measuring_and_window_level(studio):
    studio.set_volume(thorax(), source="t")
    studio.measure_actions["ruler"].trigger()
    assert all(v.measure.mode == "ruler" for v in (studio.axial, studio.coronal, studio.sagittal))
    view = studio.sagittal
    from PySide6.QtCore import QPointF

    view.measure.drag(QPointF(5.0, 5.0), start=True, finish=False)  # what a left-drag does
    view.measure.drag(QPointF(5.0, 45.0), start=False, finish=True)
    assert len(view.measure.items) == 1 and view.measure.items[0].length_mm() == pytest.approx(40.0)
    studio.measure_actions["ruler"].trigger()  # the active tool again: back to window / level
    assert studio.axial.measure.mode is None and not studio.measure_actions["ruler"].isChecked()
