# ruff: noqa: F811  (pytest fixtures imported from _viewer_support are re-bound as arguments)
"""The studio window offscreen (pyqtgraph views; VTK is tested in subprocesses): opening every format,
bad input, crosshair linking, window/level presets, HU readout, radiological orientation, screenshots."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from prdit.data.io import write_npy, write_npz
from prdit_app.state import NEUROLOGICAL
from tests.app._viewer_support import dialog_log, left_marker_volume, studio, thorax  # noqa: F401

NIB_DATA = Path(nibabel.__file__).parent / "tests" / "data"
DCM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


def _click(qtbot, view, c) -> None:
    """Left-click the voxel at canonical index ``c`` in a slice view."""
    scene_pos = view.canonical_to_scene(np.asarray(c, float))
    pos = view.graphics.mapFromScene(scene_pos)
    qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def _white_centroid_x(image: QImage) -> float:
    """Mean x (0..1 of the width) of pure-white pixels (the marker; overlays are coloured)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    arr = (
        np.frombuffer(image.constBits(), np.uint8)
        .reshape(h, image.bytesPerLine())[:, : 3 * w]
        .reshape(h, w, 3)
    )
    ys, xs = np.nonzero(np.all(arr > 230, axis=-1))
    assert xs.size > 20, "marker not visible"
    return float(xs.mean()) / w


# ----------------------------------------------------------------------------- opening formats
def test_open_nifti_from_nibabel(studio):
    path = NIB_DATA / "anatomical.nii"
    assert studio.open_path(path)
    assert studio.state.volume.shape == nibabel.load(path).shape[::-1]
    assert studio.axial.slice_index >= 0 and studio.axial.image.image is not None
    assert studio.settings.recent_files()[0] == str(path.resolve())
    assert "anatomical.nii" in studio.windowTitle()


def test_open_dicom_folder(studio):
    folder = DCM_DATA / "dicomdirtests" / "98892001" / "CT5N"
    assert studio.open_path(folder)
    assert studio.state.volume.shape == (5, 16, 16)


def test_dicom_folder_with_several_series_asks_which(studio, monkeypatch):
    from prdit_app import dialogs

    chosen = []

    def fake_exec(self):
        self.table.selectRow(1)
        chosen.append(self.selected_uid())
        return dialogs.SeriesChooserDialog.DialogCode.Accepted

    monkeypatch.setattr(dialogs.SeriesChooserDialog, "exec", fake_exec)
    assert studio.open_path(DCM_DATA / "dicomdirtests")
    assert chosen and chosen[0]
    assert studio.state.volume.metadata["series_uid"] == chosen[0]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mha", ".nrrd", ".nii.gz"])
def test_open_written_formats_keep_geometry(studio, tmp_path, suffix):
    vol = thorax(direction=np.diag([-1.0, -1.0, 1.0]), origin=(10.0, -20.0, 30.0))
    path = tmp_path / f"vol{suffix}"
    if suffix == ".npy":
        write_npy(vol, path)
    elif suffix == ".npz":
        write_npz(vol, path)
    elif suffix == ".nii.gz":
        from prdit.data.io import write_nifti

        write_nifti(vol, path)
    else:
        import SimpleITK as sitk

        sitk.WriteImage(vol.to_sitk(), str(path))
    assert studio.open_path(path)
    got = studio.state.volume
    assert got.shape == vol.shape
    np.testing.assert_allclose(got.affine_lps(), vol.affine_lps(), atol=1e-4)
    np.testing.assert_allclose(got.array, vol.array, atol=1e-3)


def test_drop_a_file_opens_it(studio, tmp_path):
    path = tmp_path / "dropped.npy"
    write_npy(thorax(), path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    studio.dropEvent(event)
    assert studio.state.source == str(path)


def test_recent_files_menu_reopens(studio, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    write_npy(thorax(), a)
    write_npy(thorax(shape=(10, 12, 14)), b)
    studio.open_path(a)
    studio.open_path(b)
    titles = [act.text() for act in studio.recent_menu.actions() if act.text()]
    assert titles[:2] == [str(b.resolve()), str(a.resolve())]
    studio.recent_menu.actions()[1].trigger()
    assert studio.state.volume.shape == (24, 32, 40)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make_bad, problem",
    [
        (lambda d: _write(d / "corrupt.nii.gz", os.urandom(2000)), "corrupt.nii.gz"),
        (lambda d: DCM_DATA / "SC_rgb_gdcm_KY.dcm", "colour image"),
        (lambda d: NIB_DATA / "example4d.nii.gz", "4D"),
        (lambda d: _mkdir(d / "no_dicom_here"), "no_dicom_here"),
        (lambda d: d / "missing.nii", "missing.nii"),
    ],
    ids=["corrupt", "colour", "4d", "empty-folder", "missing"],
)
def test_bad_input_shows_a_dialog_and_keeps_the_open_volume(studio, dialog_log, tmp_path, make_bad, problem):
    good = thorax()
    studio.set_volume(good, source="good")
    bad = make_bad(tmp_path)
    assert not studio.open_path(bad)
    assert len(dialog_log.calls) == 1
    title, message = dialog_log.calls[0]
    assert str(bad) in message and problem in message
    assert studio.state.volume is good
    assert studio.state.source == "good"
    status = studio.statusBar().currentMessage()  # the reason stays in the window, not only a dialog
    assert status.startswith(f"Could not open {bad.name}") and problem in status


def test_a_single_ct_slice_opens_as_a_one_slice_volume(studio, tmp_path):
    assert studio.open_path(DCM_DATA / "CT_small.dcm")
    vol = studio.state.volume
    assert vol.shape == (1, 128, 128) and vol.metadata["modality"] == "CT"
    assert studio.axial.slice_index == 0 and not studio.axial.slider.isEnabled()
    assert studio.coronal.slider.isEnabled() and studio.sagittal.slider.isEnabled()
    assert "a single slice" in studio.statusBar().currentMessage()
    ds = pydicom.dcmread(DCM_DATA / "CT_small.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[0], hu)  # HU, rows x columns as stored
    from prdit.data.io import read_volume
    from prdit.export.dicom import write_ct_series

    out = write_ct_series(vol, tmp_path / "one")  # and export copes with depth 1
    back = read_volume(out, allow_2d=True)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-5)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)


def test_scripted_open_of_several_series_names_them_instead_of_waiting(studio, dialog_log):
    from prdit_app import dialogs

    reported = []
    dialogs.set_error_sink(lambda title, message: reported.append(message))
    try:
        assert not studio.open_path(DCM_DATA / "dicomdirtests")  # returns at once: no chooser
    finally:
        dialogs.set_error_sink(None)
    assert reported and "choose one with --series UID" in reported[0]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("not an image", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- interaction
def test_click_in_axial_moves_coronal_and_sagittal(studio, qtbot):
    studio.set_volume(thorax())
    st = studio.state
    target = (7, 21, st.slice_index(2))
    _click(qtbot, studio.axial, target)
    assert st.cursor_voxel()[:2] == (7, 21)
    assert studio.sagittal.slice_index == 7
    assert studio.coronal.slice_index == 21
    assert studio.axial.slice_index == target[2]  # the clicked view keeps its slice
    # the crosshair lines in the other views follow too (display mm)
    assert studio.coronal.vline.value() == pytest.approx(7 * st.grid.spacing[0])
    assert studio.sagittal.vline.value() == pytest.approx(21 * st.grid.spacing[1])


def test_slider_and_wheel_scroll_slices(studio, qtbot):
    studio.set_volume(thorax())
    studio.coronal.slider.setValue(4)
    assert studio.state.slice_index(1) == 4
    before = studio.axial.slice_index
    studio.axial.scroll(+1)
    assert studio.axial.slice_index == before + 1
    studio.axial.scroll(-100)
    assert studio.axial.slice_index == 0  # clipped at the volume edge


def test_window_level_presets_change_the_image_levels(studio, qtbot):
    studio.set_volume(thorax())
    qtbot.keyClick(studio, Qt.Key.Key_1)
    for view in (studio.axial, studio.coronal, studio.sagittal):
        assert tuple(view.image.levels) == pytest.approx((-1350.0, 150.0))
    qtbot.keyClick(studio, Qt.Key.Key_4)
    assert tuple(studio.axial.image.levels) == pytest.approx((-700.0, 1300.0))
    studio.wl_actions[4].trigger()  # toolbar / menu: brain 80/40
    assert tuple(studio.sagittal.image.levels) == pytest.approx((0.0, 80.0))
    assert "W 80" in studio.axial.info_label.text()


def test_mr_opens_readable_and_the_auto_key_recomputes_the_window(studio, qtbot):
    assert studio.open_path(NIB_DATA / "anatomical.nii")  # an MR: -610..30393
    arr = studio.state.volume.array
    lo, hi = studio.axial.image.levels
    assert arr.min() < lo < hi < arr.max()  # not the CT window W 350 / L 50
    inside = np.mean((arr > lo) & (arr < hi))
    assert inside > 0.3  # most of the head is neither black nor white
    qtbot.keyClick(studio, Qt.Key.Key_1)  # lung window: useless on MR
    qtbot.keyClick(studio, Qt.Key.Key_A)
    assert tuple(studio.axial.image.levels) == pytest.approx((lo, hi))
    from PySide6.QtWidgets import QToolBar

    toolbar = studio.findChild(QToolBar, "main-toolbar")
    assert studio.act_auto_window in toolbar.actions()  # on the toolbar, beside the presets
    studio.apply_wl_preset("auto")  # what --preset auto does in scripted use
    assert tuple(studio.axial.image.levels) == pytest.approx((lo, hi))


def test_hu_readout_equals_the_voxel_value(studio):
    vol = thorax(direction=np.diag([-1.0, -1.0, 1.0]))
    studio.set_volume(vol)
    view = studio.coronal
    c = np.array([5.0, studio.state.slice_index(1), 9.0])
    scene_pos = view.canonical_to_scene(c)
    view.graphics.scene().sigMouseMoved.emit(scene_pos)
    text = studio.probe_label.text()
    ijk = tuple(int(v) for v in studio.state.grid.canonical_to_ijk(c))
    expected = vol.value_at_index(ijk)
    assert f"({ijk[0]}, {ijk[1]}, {ijk[2]})" in text
    assert f"= {expected:.5g}" in text
    lps = vol.index_to_lps(ijk)
    assert f"{lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}" in text


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0])], ids=["LPS", "RAS-order"])
def test_marker_on_patient_left_shows_on_screen_right(studio, direction):
    vol = left_marker_volume(direction)
    studio.set_volume(vol)
    studio.state.set_window_level(400, 0)
    studio.state.set_cursor_lps(vol.center_lps())
    for view in (studio.axial, studio.coronal):
        assert view.orientation_letters()["right"] == "L"
        assert _white_centroid_x(view.graphics.grab().toImage()) > 0.6, view.plane.name
    letters = studio.axial.orientation_letters()
    assert (letters["top"], letters["bottom"]) == ("A", "P")
    assert studio.sagittal.orientation_letters() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    studio.state.set_convention(NEUROLOGICAL)
    for view in (studio.axial, studio.coronal):
        assert view.orientation_letters()["right"] == "R"
        assert _white_centroid_x(view.graphics.grab().toImage()) < 0.4, view.plane.name


def test_anterior_is_up_in_axial(studio):
    vol = Volume_with_anterior_marker()
    studio.set_volume(vol)
    studio.state.set_window_level(400, 0)
    img = studio.axial.graphics.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3)
    ys, _ = np.nonzero(np.all(arr > 230, axis=-1))
    assert ys.size and ys.mean() / h < 0.4


def Volume_with_anterior_marker():  # noqa: N802 - reads like a constructor
    vol = thorax()
    arr = np.full(vol.shape, -1000.0, np.float32)
    arr[:, 2:6, 15:25] = 1000.0  # small j = anterior (LPS y increases posteriorly)
    return vol.with_array(arr)


def test_keep_view_streaming_keeps_zoom_and_cursor(studio):
    vol = thorax()
    studio.set_volume(vol)
    studio.axial.viewbox.scaleBy((0.5, 0.5))
    rng_before = studio.axial.viewbox.viewRange()
    studio.state.set_slice(2, 3)
    for n in range(5):
        studio.show_generated(vol.with_array(vol.array + n))
    assert studio.axial.viewbox.viewRange() == rng_before
    assert studio.state.slice_index(2) == 3
    assert float(studio.axial.image.image[0, 0]) == pytest.approx(float(vol.array[3, 0, 0] + 4))


def test_maximise_toggle(studio, qtbot):
    studio.set_volume(thorax())
    studio.active_view = "coronal"
    qtbot.keyClick(studio, Qt.Key.Key_F)
    assert studio.grid.maximised == "coronal"
    assert studio.coronal.isVisible() and not studio.axial.isVisible()
    qtbot.keyClick(studio, Qt.Key.Key_F)
    assert studio.grid.maximised == "" and studio.axial.isVisible()


def test_screenshots_of_views_and_window(studio, tmp_path):
    studio.set_volume(thorax())
    for target in ("axial", "sagittal", "window"):
        path = studio.save_screenshot(tmp_path / f"{target}.png", target)
        img = QImage(str(path))
        assert img.width() > 100
        gray = np.frombuffer(img.convertToFormat(QImage.Format.Format_Grayscale8).constBits(), np.uint8)
        assert gray.max() > 150
    assert not list(tmp_path.glob(".*tmp"))


def test_help_lists_the_shortcuts(studio):
    keys = dict(studio.shortcut_list())
    assert {"1", "5", "F", "R"} <= set(keys)
    assert "Lung" in keys["1"]


def test_settings_remember_convention_and_layout(studio, qtbot, monkeypatch, tmp_path):
    studio.act_neuro.setChecked(True)
    studio._toggle_convention()
    studio.close()
    from prdit_app.mainwindow import MainWindow

    again = MainWindow(enable_3d=False)
    qtbot.addWidget(again)
    assert again.state.convention == NEUROLOGICAL
    assert again.act_neuro.isChecked()


def test_add_panel_puts_a_tab_in_the_dock(studio):
    from PySide6.QtWidgets import QLabel

    index = studio.add_panel(QLabel("hello"), "Generate")
    assert studio.panel_tabs.tabText(index) == "Generate"


def test_about_box_lists_versions():
    from prdit_app.dialogs import about_text, versions

    names = dict(versions())
    assert {"Python", "PyTorch", "Qt", "VTK", "pyqtgraph", "PRDiT Studio / prdit"} <= set(names)
    assert names["Qt"] in about_text()


def test_shortcuts_dialog_lists_keys_and_mouse(studio):
    from prdit_app.dialogs import ShortcutsDialog

    dialog = ShortcutsDialog(studio.shortcut_list(), studio)
    texts = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    assert "1" in texts and "Left drag" in texts and dialog.table.rowCount() > 20
    dialog.close()


def test_cancelling_the_series_chooser_keeps_the_volume(studio, dialog_log, monkeypatch):
    from prdit_app import dialogs

    monkeypatch.setattr(
        dialogs.SeriesChooserDialog, "exec", lambda self: dialogs.SeriesChooserDialog.DialogCode.Rejected
    )
    good = thorax()
    studio.set_volume(good, source="good")
    assert not studio.open_path(DCM_DATA / "dicomdirtests")
    assert studio.state.volume is good and dialog_log.calls == []


def test_volume_tab_histogram_shows_and_sets_the_window(studio):
    studio.open_phantom(3, 32)
    hist = studio.info_panel.histogram
    vol = studio.state.volume
    assert hist.counts.sum() == vol.array.size  # a 32^3 volume is below the subsample limit: all voxels
    assert hist.edges[0] == vol.array.min() and hist.edges[-1] == vol.array.max()
    assert hist.band.getRegion() == pytest.approx(studio.state.levels)
    studio.apply_wl_preset("bone")
    assert hist.band.getRegion() == pytest.approx((-700.0, 1300.0))
    hist.band.setRegion((-200.0, 200.0))  # what dragging the band's edges does
    assert (studio.state.window, studio.state.level) == pytest.approx((400.0, 0.0))
    assert tuple(studio.axial.image.levels) == pytest.approx((-200.0, 200.0))
    text = studio.info_panel.label.text()
    assert "Modality" in text and "Seed" in text and "modality" not in text  # names, not raw keys


def test_an_rt_dose_grid_opens_as_dose_not_ct(studio):
    assert studio.open_path(DCM_DATA / "rtdose.dcm")
    state = studio.state
    assert not state.is_ct and state.value_unit == "RELATIVE"
    arr = state.volume.array
    lo, hi = studio.axial.image.levels
    assert arr.min() <= lo < hi <= arr.max() + 1  # its own automatic window, not W 350 / L 50
    c = state.cursor_canonical()
    studio._show_probe(state.probe(c))
    assert "RELATIVE =" in studio.probe_label.text() and "HU" not in studio.probe_label.text()
