"""The Labels panel: the segmentation over the volume, label by label (colour, name, size, visibility).

What a user of 3D Slicer's Segment editor or ITK-SNAP's label list expects: every label with its
colour (double-click to change it), its name, its size in voxels and millilitres, a box to hide
it, and one opacity for the overlay. The panel only edits :class:`~prdit_app.state.ViewerState`;
the slice views draw from there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from prdit_app.state import ViewerState

COLUMNS = ("", "Label", "Voxels", "mL")


class LabelsPanel(QWidget):
    def __init__(
        self, state: ViewerState, open_labels: Callable[[], None] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("labelsPanel")
        self.state = state
        self._building = False
        self._shown: tuple[int, ...] = ()
        self.open_button = QPushButton("Open label map…")
        self.open_button.setToolTip("A segmentation of this volume: NIfTI (integer labels) or DICOM SEG")
        if open_labels is not None:
            self.open_button.clicked.connect(open_labels)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(round(state.label_opacity * 100)))
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(lambda v: state.set_label_opacity(v / 100.0))
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("labelTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col in (0, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self._item_changed)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)

        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(QLabel("Opacity"))
        top.addWidget(self.opacity, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.source_label)
        lay.addWidget(self.table, 1)
        state.labelsChanged.connect(self._sync)
        self._sync()

    # ------------------------------------------------------------------ state -> table
    def _sync(self) -> None:
        labels = self.state.labels
        if labels is None:
            self.table.setRowCount(0)
            self._shown = ()
            self.source_label.setText(
                "No label map. Phantoms open with theirs; File > Open label map… reads NIfTI or DICOM SEG."
            )
            return
        values = tuple(labels.labels())
        if values != self._shown:
            self._rebuild(values)
        self._building = True
        try:
            for row, value in enumerate(values):
                swatch = self.table.item(row, 0)
                swatch.setBackground(QColor(*labels.colours[value]))
                swatch.setCheckState(
                    Qt.CheckState.Unchecked if value in self.state.hidden_labels else Qt.CheckState.Checked
                )
        finally:
            self._building = False
        self.opacity.blockSignals(True)
        self.opacity.setValue(int(round(self.state.label_opacity * 100)))
        self.opacity.blockSignals(False)

    def _rebuild(self, values: tuple[int, ...]) -> None:
        labels = self.state.labels
        assert labels is not None and self.state.volume is not None
        voxel_ml = float(np.prod(self.state.volume.spacing)) / 1000.0
        counts = labels.counts()
        self._building = True
        try:
            self.table.setRowCount(len(values))
            for row, value in enumerate(values):
                swatch = QTableWidgetItem()
                swatch.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
                swatch.setData(Qt.ItemDataRole.UserRole, value)
                swatch.setToolTip("Show or hide; double-click to change the colour")
                self.table.setItem(row, 0, swatch)
                self.table.setItem(row, 1, QTableWidgetItem(f"{value}  {labels.names[value]}"))
                n = counts.get(value, 0)
                for col, text in ((2, f"{n:,}"), (3, f"{n * voxel_ml:.1f}")):
                    item = QTableWidgetItem(text)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, col, item)
        finally:
            self._building = False
        self._shown = values
        self.source_label.setText(f"{len(values)} labels from {labels.source}")

    # ------------------------------------------------------------------ table -> state
    def value_at(self, row: int) -> int:
        return int(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._building or item.column() != 0:
            return
        self.state.set_label_visible(self.value_at(item.row()), item.checkState() == Qt.CheckState.Checked)

    def _cell_double_clicked(self, row: int, column: int) -> None:
        if column != 0 or self.state.labels is None:
            return
        value = self.value_at(row)
        colour = QColorDialog.getColor(QColor(*self.state.labels.colours[value]), self, "Label colour")
        if colour.isValid():
            self.state.set_label_colour(value, (colour.red(), colour.green(), colour.blue()))
