"""Dialogs: error reports that name the file and the problem, the DICOM series chooser, About, shortcuts."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

_error_sink: Callable[[str, str], None] | None = None


def set_error_sink(sink: Callable[[str, str], None] | None) -> None:
    """Route errors to ``sink(title, message)`` instead of a modal box (scripted runs never block)."""
    global _error_sink
    _error_sink = sink


def scripted() -> bool:
    """Errors go to a sink (``--quit`` scripted use): no modal dialog may be shown."""
    return _error_sink is not None


def show_error(parent: QWidget | None, title: str, message: str) -> None:
    """A modal error box (or the scripted-mode sink). Tests patch ``QMessageBox.critical``."""
    if _error_sink is not None:
        _error_sink(title, message)
        return
    QMessageBox.critical(parent, title, message)


class SeriesChooserDialog(QDialog):
    """Pick one of several DICOM series found in a folder (largest first, as the reader lists them)."""

    def __init__(self, folder: str, series: Sequence, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a DICOM series")
        self.series = list(series)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{folder}</b> holds {len(self.series)} series. Open which one?"))
        self.table = QTableWidget(len(self.series), 5)
        self.table.setHorizontalHeaderLabels(
            ["Modality", "Description", "Size (W x H x D)", "Files", "Series UID"]
        )
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        for row, s in enumerate(self.series):
            w, h, d = getattr(s, "size", (0, 0, 0))
            cells = [
                getattr(s, "modality", ""),
                getattr(s, "description", ""),
                f"{w} x {h} x {d}",
                str(getattr(s, "number_of_files", "")),
                getattr(s, "uid", str(s)),
            ]
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(str(text)))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        if self.series:
            self.table.selectRow(0)
        self.table.doubleClicked.connect(self.accept)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(820, 360)

    def selected_uid(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return getattr(self.series[rows[0].row()], "uid", None)


def versions() -> list[tuple[str, str]]:
    """Versions of everything that matters for a bug report (imports are cheap: all loaded already)."""
    import numpy
    import pyqtgraph
    import PySide6
    from PySide6.QtCore import qVersion

    import prdit

    out = [("PRDiT Studio / prdit", prdit.__version__), ("Python", platform.python_version())]
    try:
        import torch

        out.append(("PyTorch", torch.__version__))
    except ImportError:  # pragma: no cover
        out.append(("PyTorch", "not installed"))
    out += [("Qt", qVersion()), ("PySide6", PySide6.__version__), ("pyqtgraph", pyqtgraph.__version__)]
    try:
        from vtkmodules.vtkCommonCore import vtkVersion

        out.append(("VTK", vtkVersion.GetVTKVersion()))
    except ImportError:  # pragma: no cover
        out.append(("VTK", "not installed"))
    out += [("NumPy", numpy.__version__), ("Platform", f"{platform.system()} {platform.machine()}")]
    return out


def about_text() -> str:
    rows = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in versions())
    return (
        "<h3>PRDiT Studio</h3>"
        "<p>Generate, inspect and export synthetic 3D chest CT with PRDiT, a pixel-level residual "
        "diffusion transformer. Volumes made here are synthetic: not for diagnosis.</p>"
        f"<table>{rows}</table><p style='color:#888'>Python executable: {sys.executable}</p>"
    )


def show_about(parent: QWidget | None) -> None:
    QMessageBox.about(parent, "About PRDiT Studio", about_text())


class ShortcutsDialog(QDialog):
    """Keyboard shortcuts (read from the window's actions, so the list cannot go stale) and mouse bindings."""

    MOUSE = [
        ("Wheel", "Next / previous slice"),
        ("Ctrl + wheel", "Zoom"),
        ("Left drag", "Window / level (horizontal: width, vertical: level)"),
        ("Right drag", "Zoom"),
        ("Middle drag", "Pan"),
        ("Click, Shift + left drag", "Move the crosshair (all views follow)"),
        ("Double-click", "Maximise / restore the view"),
        ("3D view: left / right / middle drag", "Rotate / zoom / pan the camera"),
    ]

    def __init__(self, shortcuts: Iterable[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [(k, t) for k, t in shortcuts if k] + self.MOUSE
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Keys / mouse", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, (k, t) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(k))
            table.setItem(r, 1, QTableWidgetItem(t))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        self.table = table
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, 520)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
