"""Shared helpers for the viewer tests: small synthetic volumes, an isolated main window, dialog capture."""

from __future__ import annotations

import numpy as np
import pytest

from prdit.volume import Volume


def thorax(shape=(24, 32, 40), spacing=(1.0, 1.2, 2.0), direction=None, origin=(0.0, 0.0, 0.0)) -> Volume:
    """A small CT-like volume (air, body, lungs) with distinct values everywhere (for readout checks)."""
    d, h, w = shape
    k, j, i = np.mgrid[:d, :h, :w]
    body = ((i - w / 2) / (w * 0.42)) ** 2 + ((j - h / 2) / (h * 0.38)) ** 2 < 1
    arr = np.where(body, 40.0, -1000.0)
    lungs = (
        body
        & (np.abs(i - w / 2) > w * 0.08)
        & (((np.abs(i - w / 2) - w * 0.2) / (w * 0.12)) ** 2 + ((j - h / 2) / (h * 0.25)) ** 2 < 1)
    )
    arr = np.where(lungs, -800.0, arr)
    arr = arr + 0.01 * (i + 100 * j + 10000 * k)  # every voxel distinct: a wrong index reads a wrong value
    return Volume(arr.astype(np.float32), spacing, origin, np.eye(3) if direction is None else direction)


def left_marker_volume(direction=None, shape=(20, 24, 28), spacing=(1.0, 1.0, 1.0)) -> Volume:
    """Dark volume with a bright block on the patient's LEFT (+x in LPS), whatever the voxel order."""
    vol = Volume(
        np.full(shape, -1000.0, np.float32), spacing, (0, 0, 0), np.eye(3) if direction is None else direction
    )
    d, h, w = shape
    k, j, i = np.mgrid[:d, :h, :w]
    lps = vol.index_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(d, h, w, 3)
    center = vol.center_lps()
    x_rel = lps[..., 0] - center[0]
    half_x = np.abs(x_rel).max()
    marker = (
        (x_rel > 0.5 * half_x) & (np.abs(lps[..., 1] - center[1]) < 4) & (np.abs(lps[..., 2] - center[2]) < 4)
    )
    arr = vol.array.copy()
    arr[marker] = 1000.0
    return vol.with_array(arr)


class DialogLog:
    """Records QMessageBox.critical calls instead of blocking on a modal box."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, parent, title, message, *args, **kwargs):
        self.calls.append((str(title), str(message)))
        return 0


@pytest.fixture
def dialog_log(monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    log = DialogLog()
    monkeypatch.setattr(QMessageBox, "critical", log)
    return log


@pytest.fixture
def studio(qtbot, tmp_path, monkeypatch, dialog_log):
    """A MainWindow without VTK (the 3D view is tested in subprocesses), with throwaway settings."""
    monkeypatch.setenv("PRDIT_SETTINGS", str(tmp_path / "settings.ini"))
    from prdit_app.mainwindow import MainWindow

    window = MainWindow(enable_3d=False)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    return window
