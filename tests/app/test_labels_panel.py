# ruff: noqa: F811  (pytest fixtures imported from _viewer_support are re-bound as arguments)
"""Label maps in the studio: phantoms open with theirs, per-label colour and visibility, the label
under the mouse, and a misfitting map refused without losing what is shown."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from prdit.data.io import write_nifti
from prdit.data.phantom import Structure, generate_phantom
from tests.app._viewer_support import dialog_log, studio, thorax  # noqa: F401


def test_a_phantom_opens_with_its_labels_drawn_and_listed(studio):
    assert studio.open_phantom(3, 32)
    state, panel = studio.state, studio.labels_panel
    truth = generate_phantom(3, 32, return_labels=True).labels
    assert state.labels is not None and np.array_equal(state.labels.array, truth)
    assert panel.table.rowCount() == len(np.unique(truth)) - 1  # background is not a label
    names = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
    assert f"{int(Structure.LUNG)}  lung" in names
    view = studio.axial
    assert view.label_image.isVisible()
    shown = view.label_image.image
    np.testing.assert_array_equal(shown, view.plane.slice_of(state.labels_canonical, view.slice_index))
    lut = view.label_image.lut
    lung = int(Structure.LUNG)
    assert tuple(lut[lung][:3]) == state.labels.colours[lung] and lut[lung][3] > 0 and lut[0][3] == 0
    # hide the lung in the table: its colour goes clear in every view
    row = names.index(f"{lung}  lung")
    panel.table.item(row, 0).setCheckState(Qt.CheckState.Unchecked)
    assert lung in state.hidden_labels and studio.coronal.label_image.lut[lung][3] == 0
    panel.opacity.setValue(100)
    assert state.label_opacity == 1.0 and studio.sagittal.label_image.lut[int(Structure.HEART)][3] == 255


def test_the_status_bar_names_the_label_under_the_mouse(studio):
    studio.open_phantom(3, 32)
    truth = generate_phantom(3, 32, return_labels=True).labels
    k, j, i = (
        int(v) for v in np.argwhere(truth == Structure.HEART)[len(np.argwhere(truth == Structure.HEART)) // 2]
    )
    c = studio.state.grid.ijk_to_canonical(np.array([i, j, k], float))
    studio._show_probe(studio.state.probe(c))
    assert "label: heart" in studio.probe_label.text()


def test_a_label_map_that_does_not_fit_is_refused_and_the_view_is_kept(studio, dialog_log, tmp_path):
    studio.open_phantom(3, 32)
    before = studio.state.labels
    wrong = thorax()  # another grid
    write_nifti(wrong.with_array(np.ones(wrong.shape, np.int16)), tmp_path / "wrong.nii.gz")
    assert not studio.open_labels(tmp_path / "wrong.nii.gz")
    title, message = dialog_log.calls[-1]
    assert title == "Cannot open label map" and "wrong.nii.gz" in message and "size" in message
    assert studio.state.labels is before
    assert "Label map not opened" in studio.statusBar().currentMessage()
    # a new volume on another grid drops the old map (it described other voxels)
    studio.set_volume(thorax(), source="other")
    assert studio.state.labels is None and studio.labels_panel.table.rowCount() == 0
    assert not studio.axial.label_image.isVisible()
