"""The panels dock must not squeeze the four views: fresh settings at 1600x1000 leave every view at
least 480 px wide, every panel works in a ~400 px dock, and wide docks put forms beside results."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

MIN_VIEW_WIDTH = 480
NARROW_DOCK = 400


def _window(qtbot, size=(1600, 1000)):
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow

    window = MainWindow(enable_3d=False)  # the 3D pane has the same size policy (Expanding)
    qtbot.addWidget(window)
    assert install_panels(window) == ["Generate", "Edit", "Export", "Train", "Evaluate"]
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def fresh_settings(tmp_path, monkeypatch):
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("PRDIT_SETTINGS", str(path))
    return path


def test_fresh_settings_leave_the_views_wide(qtbot, fresh_settings):
    from prdit_app.mainwindow import DOCK_DEFAULT_WIDTH

    window = _window(qtbot)
    rects = window.view_rects()
    assert set(rects) == {"axial", "sagittal", "coronal", "3d"}
    for name, (_x, _y, w, h) in rects.items():
        assert w >= MIN_VIEW_WIDTH, f"{name} view is only {w} px wide (dock {window.dock.width()} px)"
        assert h >= 400, f"{name} view is only {h} px high"
    assert abs(window.dock.width() - DOCK_DEFAULT_WIDTH) <= 20


@pytest.mark.parametrize("tab", ["Generate", "Edit", "Export", "Train", "Evaluate"])
def test_every_panel_fits_a_narrow_dock(qtbot, fresh_settings, tab):
    window = _window(qtbot)
    index = [window.panel_tabs.tabText(i) for i in range(window.panel_tabs.count())].index(tab)
    panel = window.panel_tabs.widget(index)
    window.panel_tabs.setCurrentIndex(index)
    assert panel.minimumSizeHint().width() <= NARROW_DOCK - 10, tab
    # the dock really goes down to ~400 px, and nothing inside is cut off on the right
    window.resizeDocks([window.dock], [NARROW_DOCK], _horizontal())
    qtbot.waitUntil(lambda: window.dock.width() <= NARROW_DOCK + 5)
    assert panel.width() <= NARROW_DOCK
    layout = getattr(panel, "layout_switch", None)
    if layout is not None:
        assert not layout.is_wide  # form above the results, one vertical scroll bar
        assert layout.widget().width() <= layout.viewport().width()


def _horizontal():
    from PySide6.QtCore import Qt

    return Qt.Orientation.Horizontal


@pytest.mark.parametrize("tab", ["Train", "Evaluate"])
def test_wide_panel_puts_the_form_beside_the_results(qtbot, fresh_settings, tab):
    window = _window(qtbot)
    index = [window.panel_tabs.tabText(i) for i in range(window.panel_tabs.count())].index(tab)
    panel = window.panel_tabs.widget(index)
    window.panel_tabs.setCurrentIndex(index)
    layout = panel.layout_switch
    assert not layout.is_wide
    window.resizeDocks([window.dock], [1100], _horizontal())
    qtbot.waitUntil(lambda: layout.is_wide)
    controls, results = layout.controls.geometry(), layout.results.geometry()
    assert controls.right() < results.left()  # side by side
    assert all(s.orientation() == _horizontal() for s in layout.inner)
    window.resizeDocks([window.dock], [NARROW_DOCK], _horizontal())
    qtbot.waitUntil(lambda: not layout.is_wide)
    assert layout.controls.geometry().bottom() < layout.results.geometry().top()  # stacked again


def test_a_layout_saved_by_an_older_version_is_not_restored(qtbot, fresh_settings):
    """Layouts saved before the narrow default kept a dock that squeezed the views: ignore them."""
    from prdit_app.settings import Settings

    window = _window(qtbot)
    window.resizeDocks([window.dock], [1300], _horizontal())
    qtbot.waitUntil(lambda: window.dock.width() > 1000)
    geometry, old_state = window.saveGeometry(), window.saveState()  # version 0, as before
    window.close()  # (saves the current layout, which the old one then replaces)
    Settings().save_window(geometry, old_state)

    again = _window(qtbot)
    assert min(w for _x, _y, w, _h in again.view_rects().values()) >= MIN_VIEW_WIDTH


def test_the_users_dock_width_is_remembered(qtbot, fresh_settings):
    window = _window(qtbot)
    window.resizeDocks([window.dock], [600], _horizontal())
    qtbot.waitUntil(lambda: abs(window.dock.width() - 600) <= 5)
    window.close()
    again = _window(qtbot)
    qtbot.waitUntil(lambda: abs(again.dock.width() - 600) <= 5)
