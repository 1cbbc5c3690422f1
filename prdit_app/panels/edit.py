"""The Edit panel: regenerate a region of the volume on screen with the model, or super-resolve it.

What a user expects from an in-painting tool in a medical viewer: draw a box or a sphere on any
slice (it shows in all three views and in 3D), press **Regenerate region**, watch the region form in
place while everything outside it stays exactly as it was, undo if it is not right, export. The
model is the one selected in the Generate panel (the bundled default when that is an in-memory
model); sampler, steps and seed are the panel's own. **Super-resolve 2x** treats the volume as a
measurement at twice the model's voxel size and samples a volume on the model's grid that agrees
with it when block-averaged. Both run the engine's guided samplers (:mod:`prdit.editing`, the same
jobs as ``prdit edit``) on the sampling worker, so they stream, cancel and report like Generate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prdit.editing import EditRegion
from prdit.paths import bundled_model
from prdit.volume import Volume
from prdit_app.app_model import AppModel
from prdit_app.dialogs import show_error
from prdit_app.edit_source import INFILL, SUPERRES, EditRun, source_label
from prdit_app.sampling_types import SampleRequest, SamplingResult, StepUpdate, fill_sampler_combo
from prdit_app.state import ViewerState
from prdit_app.worker import SamplingController

#: undo keeps this many earlier volumes (each a full copy: 32 MB at 200^3 float32)
UNDO_DEPTH = 8
_MAX_SEED = 2**31 - 1


class EditPanel(QWidget):
    """Region tool, model settings, Regenerate region / Super-resolve / Cancel / Undo.

    ``set_region_tool(kind or None)`` turns drawing on the slice views on and off (the main window
    owns the views). Signals: ``runningChanged(bool)``, ``editFinished(Volume)``.
    """

    runningChanged = Signal(bool)
    editFinished = Signal(object)

    def __init__(
        self,
        state: ViewerState,
        app: AppModel | None = None,
        set_region_tool: Callable[[str | None], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("editPanel")
        self.state = state
        self.app = app
        self.set_region_tool = set_region_tool
        self.controller = SamplingController(self)
        self.run: EditRun | None = None
        self.undo_stack: list[Volume] = []
        self.last_result: Volume | None = None
        self._build_ui()
        self.controller.stepReady.connect(self._on_step)
        self.controller.status.connect(self.status_label.setText)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.runningChanged.connect(self._set_running)
        state.editRegionChanged.connect(self._describe_region)
        state.volumeChanged.connect(lambda _g: self._update_enabled())
        if app is not None:
            app.checkpointSelected.connect(lambda _p: self._describe_model())
        self._describe_model()
        self._describe_region()
        self._set_running(False)
        qt_app = QCoreApplication.instance()
        if qt_app is not None:
            qt_app.aboutToQuit.connect(self.controller.shutdown)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.box_radio = QRadioButton("Box")
        self.sphere_radio = QRadioButton("Sphere")
        self.box_radio.setChecked(True)
        self.shape_group = QButtonGroup(self)
        self.shape_group.addButton(self.box_radio)
        self.shape_group.addButton(self.sphere_radio)
        self.draw_button = QPushButton("Draw on a slice")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip(
            "Left-drag on any slice view to draw the region (it reaches as deep as it is wide); "
            "Escape or this button stops drawing"
        )
        self.draw_button.toggled.connect(self._toggle_drawing)
        self.shape_group.buttonToggled.connect(lambda *_a: self._shape_changed())
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setRange(5.0, 500.0)
        self.size_spin.setValue(80.0)
        self.size_spin.setSuffix(" mm")
        self.size_spin.setToolTip("Edge (box) or diameter (sphere) of a region placed at the cursor")
        self.at_cursor_button = QPushButton("Place at cursor")
        self.at_cursor_button.clicked.connect(self.place_at_cursor)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.state.set_edit_region(None))
        self.region_label = QLabel()
        self.region_label.setWordWrap(True)
        self.region_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.sampler_combo = QComboBox()
        fill_sampler_combo(self.sampler_combo)
        self.sampler_combo.currentIndexChanged.connect(lambda _i: self._update_enabled())
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 16)
        self.k_spin.setValue(2)
        self.k_spin.setPrefix("k = ")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(2, 1000)
        self.steps_spin.setValue(50)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, _MAX_SEED)
        self.end_combo = QComboBox()
        self.end_combo.addItem("denoised (fewer seams, closer HU)", "denoised")
        self.end_combo.addItem("sample (the model's own texture)", "sample")
        self.end_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.end_combo.setMinimumContentsLength(16)
        self.end_combo.setToolTip(
            "The last volume: the sampler's final state, or the last denoised estimate with the known "
            "voxels enforced (docs/editing.md measures both)"
        )

        self.regenerate_button = QPushButton("Regenerate region")
        self.regenerate_button.setObjectName("regenerateButton")
        self.regenerate_button.clicked.connect(self.regenerate)
        self.superres_button = QPushButton("Super-resolve 2x")
        self.superres_button.setToolTip(
            "Treat the volume as a measurement at twice the model's voxel size and sample a finer "
            "volume on the model's grid that averages back to it"
        )
        self.superres_button.clicked.connect(self.super_resolve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Put back the volume as it was before the last edit (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.progress = QProgressBar()
        self.status_label = QLabel("Draw a region, or place one at the cursor.")
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        region_box = QGroupBox("Region")
        rlay = QVBoxLayout(region_box)
        row = QHBoxLayout()
        row.addWidget(self.box_radio)
        row.addWidget(self.sphere_radio)
        row.addStretch(1)
        row.addWidget(self.draw_button)
        rlay.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(self.size_spin)
        row2.addWidget(self.at_cursor_button)
        row2.addWidget(self.clear_button)
        rlay.addLayout(row2)
        rlay.addWidget(self.region_label)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow(self.model_label)
        sampler_row = QHBoxLayout()
        sampler_row.addWidget(self.sampler_combo, 1)
        sampler_row.addWidget(self.k_spin)
        form.addRow("Sampler", sampler_row)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Result", self.end_combo)

        buttons = QHBoxLayout()
        buttons.addWidget(self.regenerate_button)
        buttons.addWidget(self.superres_button)
        buttons2 = QHBoxLayout()
        buttons2.addWidget(self.cancel_button)
        buttons2.addWidget(self.undo_button)

        lay = QVBoxLayout(self)
        lay.addWidget(region_box)
        lay.addWidget(model_box)
        lay.addLayout(buttons)
        lay.addLayout(buttons2)
        lay.addWidget(self.progress)
        lay.addWidget(self.status_label)
        lay.addStretch(1)

    # ------------------------------------------------------------------ region
    @property
    def shape(self) -> str:
        return "sphere" if self.sphere_radio.isChecked() else "box"

    def _toggle_drawing(self, on: bool) -> None:
        if self.set_region_tool is not None:
            self.set_region_tool(self.shape if on else None)

    def _shape_changed(self) -> None:
        region = self.state.edit_region
        if region is not None and region.kind != self.shape:  # the same extent, the other shape
            self.state.set_edit_region(EditRegion(self.shape, region.low_lps, region.high_lps))
        if self.draw_button.isChecked() and self.set_region_tool is not None:
            self.set_region_tool(self.shape)

    def stop_drawing(self) -> None:
        """The window's Escape / another tool: the draw button follows."""
        self.draw_button.blockSignals(True)
        self.draw_button.setChecked(False)
        self.draw_button.blockSignals(False)

    def place_at_cursor(self) -> EditRegion | None:
        """A region of the chosen shape and size centred on the cursor."""
        if not self.state.has_volume:
            return None
        half = self.size_spin.value() / 2.0
        region = EditRegion.around(self.shape, self.state.cursor_lps, (half, half, half))
        self.state.set_edit_region(region)
        return region

    def region_mask(self) -> np.ndarray | None:
        region, volume = self.state.edit_region, self.state.volume
        if region is None or volume is None:
            return None
        return region.mask_on(volume)

    def _describe_region(self) -> None:
        region, volume = self.state.edit_region, self.state.volume
        if region is None or volume is None:
            self.region_label.setText("No region.")
        else:
            size = " × ".join(f"{v:.0f}" for v in region.size_mm)
            centre = ", ".join(f"{v:.0f}" for v in region.centre_lps)
            n = int(region.mask_on(volume).sum())
            self.region_label.setText(
                f"{region.kind.capitalize()} {size} mm at ({centre}) LPS mm: {n:,} voxels"
                + ("" if n else " (outside the volume)")
            )
        self._update_enabled()

    # ------------------------------------------------------------------ model
    def checkpoint(self) -> Path | None:
        """The Generate panel's selection, else the bundled default model."""
        selected = self.app.selected_checkpoint if self.app is not None else None
        return Path(selected) if selected is not None else bundled_model("default")

    def _describe_model(self) -> None:
        path = self.checkpoint()
        self.model_label.setText(
            f"Model: {path.name if path else 'none'} (choose another in Generate)"
            if path
            else "No model: open a checkpoint in Generate"
        )
        self._update_enabled()

    def request(self) -> SampleRequest:
        return SampleRequest(
            checkpoint=self.checkpoint(),
            sampler=str(self.sampler_combo.currentData()),
            steps=self.steps_spin.value(),
            k=self.k_spin.value(),
            seed=self.seed_spin.value(),
            num_samples=1,
        )

    # ------------------------------------------------------------------ running
    def regenerate(self) -> bool:
        """Regenerate the region of the volume on screen; False (with a message) when it cannot."""
        volume = self.state.volume
        mask = self.region_mask()
        if volume is None or mask is None or not mask.any():
            QMessageBox.warning(self, "Cannot regenerate", "Draw a region inside the volume first.")
            return False
        region = self.state.edit_region
        assert region is not None
        return self._start(
            EditRun(
                INFILL,
                volume,
                self.request(),
                region=mask,
                region_record=region.describe(),
                end=str(self.end_combo.currentData()),
                source_name=source_label(volume),
            )
        )

    def super_resolve(self) -> bool:
        volume = self.state.volume
        if volume is None:
            return False
        name = source_label(volume)
        run = EditRun(SUPERRES, volume, self.request(), factor=2, end="denoised", source_name=name)
        return self._start(run)

    def _start(self, run: EditRun) -> bool:
        if self.controller.running:
            return False
        try:
            run.request.validate()
        except ValueError as exc:
            QMessageBox.warning(self, "Cannot start", str(exc))
            return False
        self.run = run
        self.progress.setRange(0, run.request.steps)
        self.progress.setValue(0)
        self.status_label.setText("Starting…")
        self.controller.start(run.request, run.open_source)
        return True

    def cancel(self) -> None:
        self.controller.cancel()

    def undo(self) -> bool:
        """Put back the volume from before the last edit."""
        if not self.undo_stack or self.controller.running:
            return False
        previous = self.undo_stack.pop()
        self.state.set_volume(previous, keep_view=True, source="before the edit")
        self.status_label.setText(f"Undone ({len(self.undo_stack)} more edit(s) can be undone).")
        self._update_enabled()
        return True

    def _set_running(self, running: bool) -> None:
        self._update_enabled()
        self.runningChanged.emit(running)

    def _update_enabled(self) -> None:
        if not hasattr(self, "controller"):
            return
        running = self.controller.running
        has_volume = self.state.has_volume
        has_model = self.checkpoint() is not None
        self.regenerate_button.setEnabled(
            not running and has_volume and has_model and self.state.edit_region is not None
        )
        self.superres_button.setEnabled(not running and has_volume and has_model)
        self.cancel_button.setEnabled(running)
        self.undo_button.setEnabled(not running and bool(self.undo_stack))
        for w in (self.sampler_combo, self.k_spin, self.steps_spin, self.seed_spin, self.end_combo):
            w.setEnabled(not running)
        self.k_spin.setEnabled(not running and self.sampler_combo.currentData() == "hot")

    # ------------------------------------------------------------------ worker signals
    def _on_step(self, update: StepUpdate) -> None:
        run = self.run
        if run is None:
            return
        if update.index == 0 and (not self.undo_stack or self.undo_stack[-1] is not run.volume):
            self._push_undo(run.volume)
        self.progress.setRange(0, update.total)
        self.progress.setValue(update.index + 1)
        volume = run.frame(update)
        if volume is not None:
            self.state.set_volume(volume, keep_view=True, source="edited volume")

    def _push_undo(self, volume: Volume) -> None:
        self.undo_stack.append(volume)
        del self.undo_stack[:-UNDO_DEPTH]

    def _on_finished(self, result: SamplingResult) -> None:
        run = self.run
        worker = self.controller.worker
        precision = worker.precision if worker is not None else "fp32"
        volume = run.result_volume(result, precision) if run is not None else None
        if volume is None:  # cancelled: the volume as it was
            if run is not None and self.undo_stack and self.undo_stack[-1] is run.volume:
                self.state.set_volume(self.undo_stack.pop(), keep_view=True, source="edit cancelled")
            self.status_label.setText(f"Cancelled after {result.steps_done} steps; nothing changed.")
        else:
            self.state.set_volume(volume, keep_view=True, source="edited volume")
            self.last_result = volume
            what = "Regenerated the region" if run.kind == INFILL else "Super-resolved"
            self.status_label.setText(
                f"{what}: {result.steps_done} steps in {result.elapsed_s:.1f} s. Undo puts it back."
            )
            self.editFinished.emit(volume)
        self._update_enabled()

    def _on_failed(self, title: str, message: str) -> None:
        run = self.run
        if run is not None and self.undo_stack and self.undo_stack[-1] is run.volume:
            self.state.set_volume(self.undo_stack.pop(), keep_view=True, source="edit failed")
        self.status_label.setText(f"{title}.")
        show_error(self, title, message)
        self._update_enabled()

    @property
    def running(self) -> bool:
        return self.controller.running
