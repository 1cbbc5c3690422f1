"""The Train panel: start, watch, stop and resume a ``prdit train`` run without reading logs.

Why the run is a child process (``python -m prdit train ...`` through
:class:`~prdit_app.process_runner.ProcessRunner`) and not a thread: a CUDA out-of-memory or a crash
in a native library ends the run, never the viewer, and Stop can use the run's own stop handling
(save a checkpoint, then exit), which is what makes Resume exact. Stop creates ``<run>/STOP``
(portable: works on Windows, where ``QProcess.terminate`` cannot stop a console program) and
sends SIGTERM (which also stops a run still importing torch).

Everything the panel shows is read back from the run folder the trainer writes (see
:mod:`prdit.training` and :mod:`prdit.checkpoint`)::

    <run>/config.yaml                the resolved config (Resume restarts from it)
    <run>/metrics.jsonl              one JSON object per line: losses, val losses, previews, checkpoints
    <run>/previews/step_XXXXXXX.png  x_t / x0_hat / x0 slices of held-out volumes
    <run>/checkpoints/step_XXXXXXX/  complete checkpoints (written atomically)

so a run started from a terminal (or on another machine, synced over) can be opened and watched
the same way. The JSONL is read incrementally: each poll reads only the bytes appended since the
last one and keeps a partial last line for the next poll.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QDoubleValidator, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from prdit.run_log import (
    CurveData,
    JsonlTail,
    latest_preview,
    list_run_checkpoints,
)
from prdit.stopping import remove_stop_file, request_stop
from prdit_app.panels.responsive import SettingsResultsLayout
from prdit_app.panels.run_control import ChildRunControl
from prdit_app.panels.status import make_status_labels
from prdit_app.panels.train_command import (
    TrainSettings,
    _get,
    _unique_run_dir,
    format_duration,
    parse_overrides,
    preset_configs,
    read_config_file,
    resume_argv,
)
from prdit_app.process_runner import LogView, ProcessRunner, RunOutcome

#: curve name -> (label, colour); the training losses are drawn solid, validation dashed.
CURVES: dict[str, tuple[str, str]] = {
    "loss": ("loss", "#4ea1ff"),
    "loss_x0": ("loss x0", "#f5a524"),
    "loss_noise": ("loss noise", "#9b7be0"),
    "val_loss": ("val loss", "#3ecf8e"),
    "val_loss_ema": ("val loss (EMA)", "#e0596f"),
}
DEVICES = ("auto", "cpu", "cuda")


# =============================================================================== the panel
class TrainPanel(ChildRunControl, QWidget):
    """Config, data, output, main settings; Start / Stop / Resume / Open run; curves, previews,
    checkpoints and the run's output.

    Signals:
        loadCheckpointRequested(Path): "Load in Generate" on a checkpoint folder; the main window
            connects it to ``GeneratePanel.add_checkpoint``.
        runningChanged(bool)
        runFinished(RunOutcome)
    """

    loadCheckpointRequested = Signal(object)
    runningChanged = Signal(bool)
    runFinished = Signal(object)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        runs_root: str | os.PathLike | None = None,
        load_in_generate: Callable[[Path], None] | None = None,
        poll_ms: int = 400,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("trainPanel")
        self.runner = ProcessRunner(self)
        self.runs_root = Path(runs_root) if runs_root is not None else Path.cwd() / "runs"
        self.run_dir: Path | None = None
        self.curves = CurveData()
        self._tail: JsonlTail | None = None
        self._out_edited = False
        self._shown_preview: Path | None = None
        self._checkpoints: list[tuple[int, Path]] = []
        self._mode = "idle"  # idle, estimating, running, stopping
        self._estimate_lines: list[str] = []
        self.last_estimate: str | None = None
        self._target_steps: int | None = None
        self.last_outcome: RunOutcome | None = None
        if load_in_generate is not None:
            self.loadCheckpointRequested.connect(load_in_generate)
        self._build_ui()
        self._connect()
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(poll_ms)
        self.poll_timer.timeout.connect(self.poll)
        self._load_presets()
        self._update_enabled()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        # --- configuration
        self.config_combo = QComboBox()
        self.config_combo.setObjectName("configCombo")
        self.config_combo.setToolTip("A built-in preset from resources/configs or a YAML config file")
        self.config_browse = QToolButton()
        self.config_browse.setText("File…")
        self.config_browse.setToolTip("Use a YAML config file")
        self.config_info = QLabel()
        self.config_info.setWordWrap(True)
        self.config_info.setObjectName("configInfo")

        self.phantom_radio = QRadioButton("Phantoms generated on the fly")
        self.folder_radio = QRadioButton("Data folder")
        self.data_group = QButtonGroup(self)
        self.data_group.addButton(self.phantom_radio)
        self.data_group.addButton(self.folder_radio)
        self.phantom_radio.setChecked(True)
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("preprocessed dataset folder (prdit preprocess)")
        self.data_browse = QToolButton()
        self.data_browse.setText("…")
        self.out_edit = QLineEdit()
        self.out_edit.setObjectName("outEdit")
        self.out_browse = QToolButton()
        self.out_browse.setText("…")

        # --- main settings
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setToolTip("PRDiT-{size}/{patch}/{depth}; depth 0 = stage 1 (local denoiser only)")
        self.model_combo.addItems(self._model_names())
        self.size_spin = QSpinBox()
        self.size_spin.setRange(4, 1024)
        self.size_spin.setSuffix("³ voxels")
        self.stage_combo = QComboBox()
        for s, text in ((1, "1 — local denoiser"), (2, "2 — global refiner"), (3, "3 — high resolution")):
            self.stage_combo.addItem(text, s)
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("stage 2/3: checkpoint or run folder to start from")
        self.init_browse = QToolButton()
        self.init_browse.setText("…")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100_000_000)
        self.steps_spin.setGroupSeparatorShown(True)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 65536)
        self.lr_edit = QLineEdit()
        validator = QDoubleValidator(1e-12, 1.0, 12, self)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.lr_edit.setValidator(validator)
        self.device_combo = QComboBox()
        self.device_combo.setEditable(True)
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto, cpu, cuda or cuda:N")
        self.extra_edit = QPlainTextEdit()
        self.extra_edit.setPlaceholderText("more overrides, one KEY=VALUE a line, e.g.\nlog.every=10")
        self.extra_edit.setMaximumHeight(70)
        self.extra_edit.setObjectName("extraOverrides")

        # --- actions and status
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startButton")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip(
            "Save a checkpoint and end the run (STOP file + SIGTERM); press again to kill"
        )
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in the output folder from its latest checkpoint")
        self.open_button = QPushButton("Open run…")
        self.open_button.setToolTip("Look at the curves and checkpoints of an existing run folder")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setObjectName("estimateButton")
        self.estimate_button.setToolTip(
            "Peak memory and time per step for these settings, before starting "
            "(prdit train --dry-run: one traced step and a short timed probe; nothing is written)"
        )
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.rate_label = QLabel("– steps/s")
        self.eta_label = QLabel("ETA –")
        self.status_label, self.error_label = make_status_labels()

        # --- monitoring
        import pyqtgraph as pg

        self.plot = pg.PlotWidget()
        self.plot.setObjectName("lossPlot")
        self.plot.setMinimumHeight(180)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" on the axis
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.addLegend(offset=(-10, 10))
        self.plot_items: dict[str, Any] = {}
        for key, (label, colour) in CURVES.items():
            style = Qt.PenStyle.DashLine if key.startswith("val") else Qt.PenStyle.SolidLine
            symbol = "o" if key.startswith("val") else None
            self.plot_items[key] = self.plot.plot(
                [], [], name=label, pen=pg.mkPen(colour, width=2, style=style),
                symbol=symbol, symbolSize=5, symbolBrush=colour, symbolPen=None,
            )  # fmt: skip
        self.log_y = QCheckBox("log scale")
        self.log_y.setChecked(True)
        self.plot.setLogMode(y=True)

        self.preview_label = QLabel("No preview yet")
        self.preview_label.setObjectName("previewImage")
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setMinimumSize(160, 160)
        self.preview_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.preview_caption = QLabel()
        self.ckpt_list = QListWidget()
        self.ckpt_list.setObjectName("checkpointList")
        self.load_gen_button = QPushButton("Load in Generate")
        self.load_gen_button.setObjectName("loadInGenerate")
        self.open_ckpt_button = QPushButton("Show folder")
        self.ckpt_list.setMinimumHeight(90)
        self.log_view = LogView(max_lines=3000)
        self.log_view.setObjectName("trainLog")
        self.log_view.setMinimumHeight(130)

        # --- layout: settings column | monitor
        cfg_box = QGroupBox("Run")
        cf = QFormLayout(cfg_box)
        row = QHBoxLayout()
        row.addWidget(self.config_combo, 1)
        row.addWidget(self.config_browse)
        cf.addRow("Config", row)
        cf.addRow("", self.config_info)
        cf.addRow("Data", self.phantom_radio)
        drow = QHBoxLayout()
        drow.addWidget(self.folder_radio)
        drow.addWidget(self.data_edit, 1)
        drow.addWidget(self.data_browse)
        cf.addRow("", drow)
        orow = QHBoxLayout()
        orow.addWidget(self.out_edit, 1)
        orow.addWidget(self.out_browse)
        cf.addRow("Output", orow)

        set_box = QGroupBox("Settings")
        sf = QFormLayout(set_box)
        sf.addRow("Model", self.model_combo)
        sf.addRow("Size", self.size_spin)
        sf.addRow("Stage", self.stage_combo)
        irow = QHBoxLayout()
        irow.addWidget(self.init_edit, 1)
        irow.addWidget(self.init_browse)
        sf.addRow("Start from", irow)
        sf.addRow("Steps", self.steps_spin)
        sf.addRow("Batch", self.batch_spin)
        sf.addRow("Learning rate", self.lr_edit)
        sf.addRow("Device", self.device_combo)
        sf.addRow("Overrides", self.extra_edit)

        # two rows: five buttons side by side would not fit the ~400 px dock
        buttons = QGridLayout()
        for i, b in enumerate((self.start_button, self.stop_button, self.resume_button)):
            buttons.addWidget(b, 0, i)
        buttons.addWidget(self.estimate_button, 1, 0)
        buttons.addWidget(self.open_button, 1, 1, 1, 2)
        stats = QHBoxLayout()
        stats.addWidget(self.rate_label)
        stats.addStretch(1)
        stats.addWidget(self.eta_label)

        left = QWidget()
        left.setObjectName("trainControls")
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(cfg_box)
        ll.addWidget(set_box)
        ll.addLayout(buttons)
        ll.addWidget(self.progress)
        ll.addLayout(stats)
        ll.addWidget(self.status_label)
        ll.addWidget(self.error_label)
        ll.addStretch(1)

        curve_box = QGroupBox("Loss curves")
        cl = QVBoxLayout(curve_box)
        cl.addWidget(self.plot, 1)
        cl.addWidget(self.log_y)
        prev_box = QGroupBox("Newest preview (x_t | x0_hat EMA | x0)")
        pl = QVBoxLayout(prev_box)
        pl.addWidget(self.preview_label, 1)
        pl.addWidget(self.preview_caption)
        ck_box = QGroupBox("Checkpoints")
        kl = QVBoxLayout(ck_box)
        kl.addWidget(self.ckpt_list, 1)
        kb = QHBoxLayout()
        kb.addWidget(self.load_gen_button)
        kb.addWidget(self.open_ckpt_button)
        kl.addLayout(kb)
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(prev_box)
        middle.addWidget(ck_box)
        middle.setStretchFactor(0, 3)
        middle.setStretchFactor(1, 2)
        log_box = QGroupBox("Output")
        lg = QVBoxLayout(log_box)
        lg.addWidget(self.log_view)
        monitor = QSplitter(Qt.Orientation.Vertical)
        monitor.setChildrenCollapsible(False)
        monitor.addWidget(curve_box)
        monitor.addWidget(middle)
        monitor.addWidget(log_box)
        monitor.setStretchFactor(0, 3)
        monitor.setStretchFactor(1, 3)
        monitor.setStretchFactor(2, 2)

        # narrow dock: the form, then the monitor below it (one scroll bar); wide: side by side
        self.layout_switch = SettingsResultsLayout(
            left, monitor, inner=[middle], controls_width=370, narrow_results_height=820
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.layout_switch)
        self.main_split = self.layout_switch.split

    def _connect(self) -> None:
        self.config_combo.currentIndexChanged.connect(self._config_changed)
        self.config_browse.clicked.connect(self.browse_config)
        self.data_browse.clicked.connect(lambda: self._browse_dir(self.data_edit, "Dataset folder"))
        self.out_browse.clicked.connect(lambda: self._browse_dir(self.out_edit, "Run output folder"))
        self.init_browse.clicked.connect(lambda: self._browse_dir(self.init_edit, "Checkpoint to start from"))
        self.out_edit.textEdited.connect(self._out_was_edited)
        self.out_edit.editingFinished.connect(self._out_changed)
        self.data_edit.textEdited.connect(lambda _t: self.folder_radio.setChecked(True))
        self.data_group.buttonToggled.connect(lambda *_: self._update_enabled())
        self.stage_combo.currentIndexChanged.connect(lambda *_: self._update_enabled())
        self.start_button.clicked.connect(self.start)
        self.estimate_button.clicked.connect(self.estimate)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.open_button.clicked.connect(self.browse_run)
        self.log_y.toggled.connect(self._set_log_y)
        self.load_gen_button.clicked.connect(self.load_selected_in_generate)
        self.open_ckpt_button.clicked.connect(self._show_checkpoint_folder)
        self.ckpt_list.itemDoubleClicked.connect(lambda _i: self.load_selected_in_generate())
        self.ckpt_list.currentRowChanged.connect(lambda _r: self._update_enabled())
        self.runner.line.connect(self._on_line)
        self.runner.finished.connect(self._on_finished)

    @staticmethod
    def _model_names() -> list[str]:
        try:
            from prdit.models.registry import list_models

            return list_models()
        except Exception:  # the registry is the engine's; the field stays editable without it
            return ["PRDiT-XS/4/0", "PRDiT-B/12/4"]

    # ------------------------------------------------------------------ configuration
    def _load_presets(self) -> None:
        self.config_combo.blockSignals(True)
        for name, path in preset_configs().items():
            self.config_combo.addItem(name, str(path))
            self.config_combo.setItemData(
                self.config_combo.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole
            )
        self.config_combo.blockSignals(False)
        idx = self.config_combo.findText("phantom-tiny")
        self.config_combo.setCurrentIndex(max(idx, 0))
        self._config_changed()

    def set_config(self, name_or_path: str | os.PathLike) -> None:
        """Select a preset by name, or add and select a YAML file."""
        idx = self.config_combo.findText(str(name_or_path))
        if idx < 0:
            path = Path(name_or_path).resolve()
            idx = self.config_combo.findData(str(path))
            if idx < 0:
                self.config_combo.addItem(path.name, str(path))
                idx = self.config_combo.count() - 1
                self.config_combo.setItemData(idx, str(path), Qt.ItemDataRole.ToolTipRole)
        if idx == self.config_combo.currentIndex():
            self._config_changed()
        else:
            self.config_combo.setCurrentIndex(idx)

    def browse_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Training config", "", "YAML (*.yaml *.yml);;All files (*)"
        )
        if path:
            self.set_config(path)

    def config_argument(self) -> str:
        """What goes on the command line: the preset's name, or the file's path."""
        path = self.config_combo.currentData()
        if path and Path(path).parent == preset_configs().get(self.config_combo.currentText(), Path()).parent:
            return self.config_combo.currentText()
        return str(path or self.config_combo.currentText())

    def _config_changed(self) -> None:
        path = self.config_combo.currentData()
        if not path:
            return
        try:
            data = read_config_file(path)
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self._fill_from_config(data)
        self.error_label.hide()

    def _fill_from_config(self, data: dict[str, Any]) -> None:
        """Put a config's values into the form; missing keys show the schema's defaults."""
        from prdit.config import Config

        d = Config()
        name = str(_get(data, "model.name", d.model.name))
        if self.model_combo.findText(name) < 0:
            self.model_combo.addItem(name)
        self.model_combo.setCurrentText(name)
        self.size_spin.setValue(int(_get(data, "model.input_size", d.model.input_size)))
        stage_idx = self.stage_combo.findData(int(_get(data, "stage", d.stage)))
        self.stage_combo.setCurrentIndex(max(stage_idx, 0))
        self.init_edit.setText(str(_get(data, "model.init_from", "") or ""))
        self.steps_spin.setValue(int(float(_get(data, "train.max_steps", d.train.max_steps))))
        self.batch_spin.setValue(int(_get(data, "train.batch_size", d.train.batch_size)))
        self.lr_edit.setText(f"{float(_get(data, 'train.lr', d.train.lr)):g}")
        self.device_combo.setCurrentText(str(_get(data, "train.device", d.train.device)))
        source = _get(data, "data.source", d.data.source)
        root = _get(data, "data.root")
        self.data_edit.setText(str(root or ""))
        (self.folder_radio if source == "folder" else self.phantom_radio).setChecked(True)
        name = str(data.get("name") or "run")
        what = "phantoms on the fly" if source == "phantom" else "a preprocessed folder"
        self.config_info.setText(f"{name}: stage {_get(data, 'stage', 1)}, {what}")
        if not self._out_edited and self.run_dir is None:
            self.out_edit.setText(str(_unique_run_dir(self.runs_root / name)))
        self._update_enabled()

    def _out_was_edited(self, _text: str) -> None:
        self._out_edited = True

    def _out_changed(self) -> None:
        self._update_enabled()

    def _browse_dir(self, edit: QLineEdit, title: str) -> None:
        path = QFileDialog.getExistingDirectory(self, title, edit.text() or str(Path.cwd()))
        if path:
            edit.setText(path)
            if edit is self.out_edit:
                self._out_edited = True
            if edit is self.data_edit:
                self.folder_radio.setChecked(True)
            self._update_enabled()

    def settings(self) -> TrainSettings:
        """The form as a :class:`TrainSettings`; ValueError names the field that is wrong."""
        out = self.out_edit.text().strip()
        if not out:
            raise ValueError("Output: choose a folder for the run")
        data_dir = None
        if self.folder_radio.isChecked():
            data_dir = self.data_edit.text().strip()
            if not data_dir:
                raise ValueError("Data: choose a dataset folder, or train on phantoms generated on the fly")
        try:
            lr = float(self.lr_edit.text())
        except ValueError:
            raise ValueError(f"Learning rate: {self.lr_edit.text()!r} is not a number") from None
        if not 0 < lr < 1:
            raise ValueError(f"Learning rate: must be in (0, 1), got {lr:g}")
        stage = int(self.stage_combo.currentData())
        init = self.init_edit.text().strip() or None
        if stage in (2, 3) and not init:
            raise ValueError(f"Start from: stage {stage} needs the checkpoint of the previous stage")
        device = self.device_combo.currentText().strip() or "auto"
        return TrainSettings(
            config=self.config_argument(),
            out_dir=str(Path(out).expanduser().resolve()),
            data_dir=str(Path(data_dir).expanduser().resolve()) if data_dir else None,
            model_name=self.model_combo.currentText().strip(),
            input_size=self.size_spin.value(),
            stage=stage,
            init_from=init,
            max_steps=self.steps_spin.value(),
            batch_size=self.batch_spin.value(),
            lr=lr,
            device=device,
            extra=parse_overrides(self.extra_edit.toPlainText()),
        )

    # ------------------------------------------------------------------ run control
    def start(self) -> bool:
        """Start a new run in the output folder; refuses a folder that already holds a run."""
        if self.running:
            return False
        try:
            s = self.settings()
        except ValueError as exc:
            self._show_error(str(exc))
            return False
        out = Path(s.out_dir)
        found = list_run_checkpoints(out)
        if found:
            self._show_error(
                f"Output: {out} already holds a run (checkpoint at step {found[-1][0]}). "
                "Press Resume to continue it, or choose another output folder."
            )
            return False
        metrics = out / "metrics.jsonl"
        if metrics.is_file() and metrics.stat().st_size > 0:  # the rule of `prdit train` itself
            self._show_error(
                f"Output: {out} already holds a run that saved no checkpoint ({metrics.name} is not "
                "empty). Choose another output folder, or delete that one to start over in it."
            )
            return False
        return self._launch(s.argv(), out, s.max_steps, f"training {Path(s.out_dir).name}")

    def estimate(self) -> bool:
        """Run ``prdit train ... --dry-run`` for the current settings; its estimate goes to the log
        and, summarised, to the status line (:meth:`_estimate_finished`)."""
        if self.running:
            return False
        try:
            s = self.settings()
        except ValueError as exc:
            self._show_error(str(exc))
            return False
        argv = [*s.argv(), "--dry-run"]
        self.error_label.hide()
        self._estimate_lines = []
        if not self.start_child(argv, "Estimating memory and time per step…"):
            return False
        self._mode = "estimating"
        self._update_enabled()
        return True

    def _estimate_finished(self, outcome: RunOutcome) -> None:
        lines = [ln.strip() for ln in self._estimate_lines]
        peak = next((ln for ln in lines if ln.startswith("peak memory")), "")
        when = next((ln for ln in lines if ln.startswith("time")), "")
        misfit = next((ln for ln in lines if ln.startswith("DOES NOT FIT")), "")
        self._mode = "idle"
        if peak and (outcome.ok or misfit):
            summary = "Estimate: " + " ".join(peak.split()) + "; " + " ".join(when.split())
            if misfit:
                self._show_error(f"{summary}. {misfit}", status="Would not fit.")
            else:
                self.status_label.setText(summary)
        else:
            self._show_error(outcome.error or "the estimate failed", status="Could not estimate.")
        self.last_estimate = self.status_label.text()
        self._update_enabled()

    def resume(self) -> bool:
        """Continue the run in the output folder from its latest checkpoint with its stored config."""
        if self.running:
            return False
        out_text = self.out_edit.text().strip()
        if not out_text:
            self._show_error("Output: choose the run folder to resume")
            return False
        out = Path(out_text).expanduser().resolve()
        found = list_run_checkpoints(out)
        if not (out / "config.yaml").is_file() or not found:
            self._show_error(
                f"Resume: {out} holds no checkpoint of a run (no config.yaml or checkpoints/step_*)"
            )
            return False
        steps = self.steps_spin.value()
        if steps <= found[-1][0]:
            self._show_error(
                f"Resume: the run already reached step {found[-1][0]}; raise Steps above it to train further"
            )
            return False
        device = self.device_combo.currentText().strip() or None
        return self._launch(
            resume_argv(out, steps, device), out, steps, f"resuming {out.name} at step {found[-1][0]}"
        )

    def _launch(self, argv: list[str], run_dir: Path, max_steps: int, what: str) -> bool:
        self.error_label.hide()
        self.last_outcome = None
        if remove_stop_file(run_dir):  # left by a run that was killed: it would stop this one at once
            self.log_view.append_message(f"Removed {run_dir / 'STOP'} left by an earlier run")
        self._watch(run_dir, reload=True)
        self._target_steps = max_steps
        self.progress.setRange(0, max_steps)
        self.progress.setValue(self.curves.last_step)
        if not self.start_child(
            argv, f"Running: {what}…", cwd=run_dir.parent if run_dir.parent.is_dir() else None
        ):
            return False
        self._mode = "running"
        self.poll_timer.start()
        self._update_enabled()
        self.runningChanged.emit(True)
        return True

    def _request_stop(self) -> None:
        """Create ``<run>/STOP``, then send SIGTERM: the file works on every platform (on Windows
        ``QProcess.terminate`` only posts a window message a console program never reads), the
        signal stops a run that is still importing torch. Either makes the run save and exit 0."""
        if self.run_dir is not None:
            try:
                request_stop(self.run_dir)
            except OSError as exc:
                self.log_view.append_message(f"Could not create {self.run_dir / 'STOP'}: {exc}")
        self.runner.terminate()

    def stop(self) -> None:
        """First press: STOP file + SIGTERM (the run saves a checkpoint and exits). Second: kill it."""
        if not self.running:
            return
        if self._mode == "stopping":
            self.log_view.append_message("Killing the run (nothing more is saved).")
            self.runner.kill()
            return
        self._mode = "stopping"
        self._request_stop()
        self.status_label.setText("Stopping: saving a checkpoint…")
        self.stop_button.setText("Kill")
        self._update_enabled()

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Application exit: ask a running run to save and wait for it (then kill)."""
        if self.running:
            self._request_stop()
            if not self.runner.wait(timeout_ms):
                self.runner.kill()
                self.runner.wait(5000)

    def _on_line(self, text: str, stream: str, redraw: bool) -> None:
        if self.route_line(text, stream, redraw) is None and self._mode == "estimating":
            self._estimate_lines.append(text)

    def _on_finished(self, outcome: RunOutcome) -> None:
        if self._mode == "estimating":
            self._estimate_finished(outcome)
            return
        self.last_outcome = outcome
        self.poll()  # the last records and the final checkpoint
        self.poll_timer.setInterval(max(self.poll_timer.interval(), 1000))
        stopped = outcome.stopped
        last = self._checkpoints[-1] if self._checkpoints else None
        where = f"checkpoint at step {last[0]}" if last else "no checkpoint"
        if outcome.ok and stopped:
            self.status_label.setText(
                f"Stopped at step {self.curves.last_step}; {where} saved. Resume continues."
            )
        elif outcome.ok:
            self.status_label.setText(f"Finished at step {self.curves.last_step}; {where}.")
        elif stopped and outcome.crashed:
            self.status_label.setText(f"Killed before it could save; latest: {where}.")
        else:
            self._show_error(outcome.error, status=f"Failed; latest: {where}.")
            self.log_view.append_message(outcome.error)
        self._mode = "idle"
        self.stop_button.setText("Stop")
        self._update_enabled()
        self.runningChanged.emit(False)
        self.runFinished.emit(outcome)

    def browse_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a training run folder", str(self.runs_root))
        if path:
            self.open_run(path)

    def open_run(self, run_dir: str | os.PathLike) -> None:
        """Show an existing run: its config in the form, its curves, previews and checkpoints."""
        if self.running:
            self._show_error("Open run: stop the current run first")
            return
        run = Path(run_dir).expanduser().resolve()
        if not run.is_dir():
            self._show_error(f"Open run: {run} is not a folder")
            return
        if not (run / "metrics.jsonl").is_file() and not list_run_checkpoints(run):
            self._show_error(f"Open run: {run} has no metrics.jsonl and no checkpoints; is it a run folder?")
            return
        self.error_label.hide()
        if (run / "config.yaml").is_file():
            try:
                data = read_config_file(run / "config.yaml")
                self.run_dir = run  # keep the output field on this run
                self._fill_from_config(data)
                self.config_info.setText(self.config_info.text() + f" (from {run.name}/config.yaml)")
            except ValueError as exc:
                self._show_error(str(exc))
        self.out_edit.setText(str(run))
        self._out_edited = True
        self._watch(run, reload=True)
        self.poll()
        self.progress.setRange(0, max(self.steps_spin.value(), self.curves.last_step, 1))
        self.progress.setValue(self.curves.last_step)
        n = len(self._checkpoints)
        self.status_label.setText(
            f"Opened {run.name}: step {self.curves.last_step}, {n} checkpoint{'s' if n != 1 else ''}"
            + (f", {self.curves.event}" if self.curves.event and self.curves.event != "start" else "")
        )
        self.poll_timer.start()
        self._update_enabled()

    def _watch(self, run_dir: Path, reload: bool) -> None:
        if reload or self.run_dir != run_dir or self._tail is None:
            self.run_dir = run_dir
            self._tail = JsonlTail(run_dir / "metrics.jsonl")
            self.curves = CurveData()
            self._shown_preview = None
            self._checkpoints = []
            self.preview_label.setPixmap(QPixmap())
            self.preview_label.setText("No preview yet")
            self.preview_caption.setText("")
            self.ckpt_list.clear()
            self._redraw_curves()

    def poll(self) -> None:
        """Read new metrics lines, the newest preview and the checkpoint list (cheap; on a timer)."""
        if self.run_dir is None or self._tail is None:
            return
        records = self._tail.read_new()
        if self._tail.reset:
            self.curves = CurveData()
        for rec in records:
            self.curves.add(rec)
        if records or self._tail.reset:
            self._redraw_curves()
            self._update_stats()
        self._refresh_preview()
        self._refresh_checkpoints()

    def _redraw_curves(self) -> None:
        for key, item in self.plot_items.items():
            xs, ys = self.curves.points.get(key, ([], []))
            if self.log_y.isChecked():  # log axis: only positive values can be drawn
                pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
                xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            item.setData(xs, ys)

    def _set_log_y(self, on: bool) -> None:
        self.plot.setLogMode(y=on)
        self._redraw_curves()

    def _update_stats(self) -> None:
        c = self.curves
        top = max(self._target_steps or 0, c.last_step, 1)
        if self.progress.maximum() < top:
            self.progress.setRange(0, top)
        if self.running:
            self.progress.setValue(max(self.progress.value(), c.last_step))
        else:
            self.progress.setValue(min(c.last_step, self.progress.maximum()))
        self.rate_label.setText(f"{c.steps_per_s:.2f} steps/s" if c.steps_per_s else "– steps/s")
        self.eta_label.setText(f"ETA {format_duration(c.eta_s)}" if self.running else "ETA –")

    def _refresh_preview(self) -> None:
        found = latest_preview(self.run_dir) if self.run_dir else None
        if found is None or found[1] == self._shown_preview:
            return
        pix = QPixmap(str(found[1]))
        if pix.isNull():  # still being written: try again on the next poll
            return
        self._shown_preview = found[1]
        self._preview_pixmap = pix
        self._scale_preview()
        self.preview_caption.setText(f"step {found[0]:,} — {found[1].name}")

    def _scale_preview(self) -> None:
        pix = getattr(self, "_preview_pixmap", None)
        if pix is None or pix.isNull() or self._shown_preview is None:
            return
        size = self.preview_label.size()
        self.preview_label.setPixmap(
            pix.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        )

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._scale_preview()

    def _refresh_checkpoints(self) -> None:
        found = list_run_checkpoints(self.run_dir) if self.run_dir else []
        if found == self._checkpoints:
            return
        selected = self.selected_checkpoint()
        self._checkpoints = found
        self.ckpt_list.clear()
        for step, path in reversed(found):  # newest first
            try:
                created = json.loads((path / "meta.json").read_text(encoding="utf-8")).get("created", "")
            except (OSError, ValueError):
                created = ""
            item = QListWidgetItem(
                f"step {step:,}" + (f"  ·  {created[:19].replace('T', ' ')}" if created else "")
            )
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            self.ckpt_list.addItem(item)
        row = 0
        if selected is not None:
            for i in range(self.ckpt_list.count()):
                if self.ckpt_list.item(i).data(Qt.ItemDataRole.UserRole) == str(selected):
                    row = i
        self.ckpt_list.setCurrentRow(row)
        self._update_enabled()

    @property
    def checkpoints(self) -> list[tuple[int, Path]]:
        return list(self._checkpoints)

    def selected_checkpoint(self) -> Path | None:
        item = self.ckpt_list.currentItem()
        return Path(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def load_selected_in_generate(self) -> None:
        path = self.selected_checkpoint()
        if path is not None:
            self.loadCheckpointRequested.emit(path)
            self.status_label.setText(f"Sent {path.parent.parent.name}/{path.name} to the Generate panel")

    def _show_checkpoint_folder(self) -> None:
        path = self.selected_checkpoint() or self.run_dir
        if path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    # ------------------------------------------------------------------ enabling
    def _update_enabled(self) -> None:
        running = self.running
        for w in (
            self.config_combo, self.config_browse, self.phantom_radio, self.folder_radio, self.out_edit,
            self.out_browse, self.model_combo, self.size_spin, self.stage_combo, self.batch_spin,
            self.lr_edit, self.extra_edit, self.open_button, self.start_button, self.estimate_button,
        ):  # fmt: skip
            w.setEnabled(not running)
        folder = self.folder_radio.isChecked()
        self.data_edit.setEnabled(not running and folder)
        self.data_browse.setEnabled(not running and folder)
        staged = int(self.stage_combo.currentData() or 1) in (2, 3)
        self.init_edit.setEnabled(not running and staged)
        self.init_browse.setEnabled(not running and staged)
        self.steps_spin.setEnabled(not running)
        self.device_combo.setEnabled(not running)
        self.stop_button.setEnabled(running)
        out = self.out_edit.text().strip()
        can_resume = False
        if out and not running:
            p = Path(out).expanduser()
            can_resume = (p / "config.yaml").is_file() and bool(list_run_checkpoints(p))
        self.resume_button.setEnabled(can_resume)
        self.load_gen_button.setEnabled(self.ckpt_list.currentItem() is not None)
        self.open_ckpt_button.setEnabled(self.run_dir is not None)
