# ruff: noqa: F811  (pytest fixtures imported from _viewer_support are re-bound as arguments)
"""The Edit panel: a region drawn on one slice shows in all three, Regenerate region changes only
the voxels inside it (streaming into the views) and Undo puts the volume back; Super-resolve makes
a volume on the model's grid that averages back to the input; bad requests are named."""

from __future__ import annotations

import numpy as np
import pytest

from prdit.data.phantom import generate_phantom
from prdit.editing import model_grid_like, resample_onto
from prdit.paths import bundled_model
from tests.app._viewer_support import dialog_log, studio  # noqa: F401


@pytest.fixture
def edit(studio):
    from prdit_app.viewer import install_panels

    install_panels(studio)
    studio.app_model.set_selected_checkpoint(bundled_model("fast-32"))  # the 32^3 model: fast
    panel = studio.edit_panel
    panel.steps_spin.setValue(6)
    return studio, panel


def _mm(view, c):
    sp = view.state.grid.spacing
    return (c[view.plane.u] * sp[view.plane.u], c[view.plane.v] * sp[view.plane.v])


def test_region_drawn_on_one_slice_shows_in_all_three_and_is_regenerated_in_place(qtbot, edit):
    studio, panel = edit
    phantom = generate_phantom(3, 32)
    studio.set_volume(phantom, source="phantom")
    original = phantom.array.copy()
    st = studio.state
    # draw a box on the axial slice through the cursor (the centre), 10 x 8 voxels
    panel.draw_button.setChecked(True)
    assert all(v.region.drawing_kind == "box" for v in (studio.axial, studio.coronal, studio.sagittal))
    c = st.cursor_canonical()
    start, end = c - np.array([5, 4, 0]), c + np.array([5, 4, 0])
    region = studio.axial.region.draw("box", _mm(studio.axial, start), _mm(studio.axial, end))
    assert st.edit_region == region
    for view in (studio.axial, studio.coronal, studio.sagittal):
        assert view.region.visible, view.plane.name  # the cursor's slices all cut the region
    mask = region.mask_on(phantom)
    depth = mask.any(axis=(1, 2)).sum()  # slices along z it reaches: about the drawn mean side
    assert 7 <= depth <= 11
    assert "voxels" in panel.region_label.text()
    # Escape (measuring off) stops the region tool too, and the panel's button follows
    studio.set_measure_tool(None)
    assert studio.axial.region.drawing_kind is None and not panel.draw_button.isChecked()

    frames = []
    st.volumeChanged.connect(lambda _g: frames.append(st.volume))
    assert panel.regenerate()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    edited = st.volume
    assert edited.metadata["edit"]["kind"] == "infill"
    assert edited.metadata["edit"]["synthetic_voxels"] == int(mask.sum())
    assert np.array_equal(edited.array[~mask], original[~mask])  # outside: the input, bit for bit
    assert np.abs(edited.array[mask] - original[mask]).mean() > 1.0  # inside: regenerated
    streamed = [f for f in frames if f is not None and f.metadata.get("generated", "").startswith("in-fill")]
    assert len(streamed) >= 2  # it formed in place, step by step
    assert all(np.array_equal(f.array[~mask], original[~mask]) for f in streamed)
    # the Export tab describes the series as partly synthetic, with the engine's wording
    from prdit_app.panels.export import default_series_description, provenance_dict

    assert default_series_description(edited).startswith("SYNTHETIC REGION")
    assert provenance_dict(edited)["edit"]["kind"] == "infill"
    # undo puts the volume back exactly; a second undo has nothing to undo
    assert panel.undo()
    assert np.array_equal(st.volume.array, original)
    assert not panel.undo()


def test_sphere_region_at_the_cursor_and_empty_regions_are_refused(qtbot, edit, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    studio, panel = edit
    studio.set_volume(generate_phantom(4, 32), source="phantom")
    panel.sphere_radio.setChecked(True)
    panel.size_spin.setValue(60.0)
    region = panel.place_at_cursor()
    assert region.kind == "sphere" and np.allclose(region.size_mm, 60.0)
    assert np.allclose(region.centre_lps, studio.state.cursor_lps)
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[1:3]))
    far = type(region).around("box", (5000.0, 5000.0, 5000.0), (10.0, 10.0, 10.0))
    studio.state.set_edit_region(far)
    assert "outside the volume" in panel.region_label.text()
    assert not panel.regenerate() and warnings and "region" in warnings[0][1]


def test_super_resolve_gives_a_finer_volume_that_averages_back(qtbot, edit):
    studio, panel = edit
    truth = generate_phantom(8, 32)
    from prdit.checkpoint import load_for_inference

    _model, info = load_for_inference(bundled_model("fast-32"))
    low_grid = model_grid_like(truth, 16, tuple(2 * s for s in info.spacing))
    low = low_grid.with_array(resample_onto(truth, low_grid), modality="CT")
    studio.set_volume(low, source="low")
    assert panel.super_resolve()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    out = studio.state.volume
    assert out.shape == (32, 32, 32) and out.metadata["edit"]["kind"] == "superres"
    blocks = out.array.reshape(16, 2, 16, 2, 16, 2)
    w = info.hu_window
    ok = ((blocks > w.low) & (blocks < w.high)).all(axis=(1, 3, 5))
    assert np.abs(blocks.mean(axis=(1, 3, 5)) - low.array)[ok].max() < 0.5
    assert panel.undo() and studio.state.volume.shape == (16, 16, 16)
