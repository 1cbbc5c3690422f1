"""The Evaluate panel: judge a model by comparing generated volumes with real ones.

The numbers come from ``prdit eval`` run as a child process (see
:mod:`prdit_app.process_runner`): the same code, settings and JSON report as on a server, and a
crash or out-of-memory in feature extraction cannot take the viewer down. Optionally the panel
first runs ``prdit sample`` to generate N volumes with the current model, then evaluates them.

What is shown, and where it comes from:

* the results table: read from the JSON report ``prdit eval --report`` writes, with the rows of
  the terminal table (:func:`prdit.metrics.report.table_rows`: names, value formatting, notes), so
  the panel and the terminal show the same text;
* the HU histograms of both sets overlaid and the anatomy measures as per-volume distributions
  (box + strip plots), from the report's per-set data (``lo``/``bin_hu``/``real_counts``/
  ``fake_counts`` in ``metrics.histogram``, ``real_values``/``fake_values`` in
  ``metrics.anatomy``). Only for an older report without them (or one that ran only one of the
  two metrics) does a background thread read the two folders again with the evaluation's own
  loader and measures (:func:`prdit.metrics.folders.load_for_eval`,
  :class:`prdit.metrics.histogram.HUHistogram`, :func:`prdit.data.anatomy.measure_anatomy`).
* the report can be saved as JSON (the full report) or CSV (one row per metric and per anatomy
  measure, full precision).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from prdit.metrics.plots import (
    PlotData,
    box_stats,
    compute_plot_data,
    display_histogram,
    plot_data_from_report,
)
from prdit.metrics.report import (
    ANATOMY_LABELS,
    anatomy_summary,
    comparison_warnings,
    format_value,
    report_rows,
    save_report,
)
from prdit_app.panels.responsive import SettingsResultsLayout
from prdit_app.panels.run_control import ChildRunControl
from prdit_app.panels.status import make_status_labels
from prdit_app.process_runner import LogView, ProcessRunner, RunOutcome, prdit_command

#: metric key -> (check-box label, tooltip); the order of ``prdit eval``'s table.
METRICS: dict[str, tuple[str, str]] = {
    "fid": ("3D FID", "Fréchet distance of 3D ResNet-50 features (lower is better)"),
    "kid": ("3D KID", "Unbiased kernel distance of the same features: comparable across sample sizes"),
    "mmd": ("MMD", "Maximum mean discrepancy of the same features, RBF kernel (lower is better)"),
    "msssim": ("MS-SSIM", "Mean MS-SSIM of random pairs of generated volumes (lower = more diverse)"),
    "critic": ("Critic W1", "Wasserstein estimate of a WGAN-GP critic on held-out volumes (slow on CPU)"),
    "histogram": ("HU histogram W1", "Earth mover's distance between the pooled HU histograms, in HU"),
    "anatomy": ("Anatomy", "Body/lung/bone measures: fraction of generated volumes inside the real range"),
}
REAL_COLOUR, FAKE_COLOUR = "#4ea1ff", "#f5a524"
_DISPLAY_BIN_HU = 8


# =============================================================================== Qt-free helpers
@dataclass
class EvalRequest:
    """What the form describes; ``argv`` builds the ``prdit eval`` command line."""

    real: str
    fake: str
    report: str
    metrics: tuple[str, ...]
    features: str = "default"
    size: int | None = None
    device: str = "auto"
    critic_iterations: int | None = None
    msssim_pairs: int | None = None
    cache_dir: str | None = None
    extra: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        args = [self.real, self.fake, "--metrics", ",".join(self.metrics), "--report", self.report]
        args += ["--features", self.features, "--device", self.device]
        if self.size:
            args += ["--size", str(self.size)]
        if self.critic_iterations:
            args += ["--critic-iterations", str(self.critic_iterations)]
        if self.msssim_pairs:
            args += ["--msssim-pairs", str(self.msssim_pairs)]
        if self.cache_dir:
            args += ["--cache-dir", self.cache_dir]
        return prdit_command("eval", *args, "--progress", "jsonl", *self.extra)


def sample_argv(
    model: str, out: str, count: int, steps: int, *, seed: int = 0, device: str = "auto"
) -> list[str]:
    """``prdit sample`` for "generate N now": NIfTI + sidecars only (no previews, no DICOM)."""
    return prdit_command(
        "sample", model, "--count", str(count), "--steps", str(steps), "--seed", str(seed),
        "--out", out, "--device", device, "--no-preview", "--skip-existing", "--progress", "jsonl",
    )  # fmt: skip


# =============================================================================== background reading
class PlotDataThread(QThread):
    """Runs :func:`compute_plot_data` off the GUI thread; cancellable between volumes."""

    progressed = Signal(int, int)
    ready = Signal(object)  # PlotData
    failed = Signal(str)

    def __init__(self, real: str, fake: str, size: int | None, real_scale: str, fake_scale: str,
                 parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.args = (real, fake, size, real_scale, fake_scale)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        real, fake, size, rs, fs = self.args
        try:
            data = compute_plot_data(
                real, fake, size=size, real_scale=rs, fake_scale=fs,
                progress=self.progressed.emit, cancelled=self._cancel.is_set,
            )  # fmt: skip
        except Exception as exc:  # shown in the panel; the table is already filled
            self.failed.emit(f"could not read the volumes for the plots: {exc}")
            return
        if data is not None:
            self.ready.emit(data)


# =============================================================================== the panel
class EvaluatePanel(ChildRunControl, QWidget):
    """Real folder, generated folder (or generate N now), metrics; Run / Cancel / Save report;
    results table, overlaid HU histograms and anatomy distributions.

    ``current_model()`` (optional) returns the checkpoint the Generate panel has selected; it
    pre-fills the model for "generate N now".

    Signals: runningChanged(bool), reportReady(dict), runFinished(RunOutcome)
    """

    runningChanged = Signal(bool)
    reportReady = Signal(object)
    runFinished = Signal(object)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        current_model: Callable[[], str | os.PathLike | None] | None = None,
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self.current_model = current_model
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self.runner = ProcessRunner(self)
        self.report: dict[str, Any] | None = None
        self.comparison_notes: list[str] = []  # why the shown result is not comparable with the one before
        self.plot_data: PlotData | None = None
        self.last_outcome: RunOutcome | None = None
        self.cache_dir: str | None = None  # None: prdit eval's default cache
        self._phase = "idle"  # idle, sample, eval
        self._pending_eval: EvalRequest | None = None
        self._report_path: Path | None = None
        self._plot_thread: PlotDataThread | None = None
        self._build_ui()
        self._connect()
        self._update_enabled()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        import pyqtgraph as pg

        self.real_edit = QLineEdit()
        self.real_edit.setPlaceholderText("folder of real volumes (NIfTI, npz, npy, mha, nrrd)")
        self.real_browse = QToolButton()
        self.real_browse.setText("…")
        self.fake_radio = QRadioButton("Folder")
        self.gen_radio = QRadioButton("Generate now with the model")
        self.source_group = QButtonGroup(self)
        self.source_group.addButton(self.fake_radio)
        self.source_group.addButton(self.gen_radio)
        self.fake_radio.setChecked(True)
        self.fake_edit = QLineEdit()
        self.fake_edit.setPlaceholderText("folder of generated volumes")
        self.fake_browse = QToolButton()
        self.fake_browse.setText("…")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("checkpoint or run folder (the Generate panel's model)")
        self.model_browse = QToolButton()
        self.model_browse.setText("…")
        self.count_spin = QSpinBox()
        self.count_spin.setRange(2, 100000)
        self.count_spin.setValue(8)
        self.count_spin.setSuffix(" volumes")
        self.gen_steps_spin = QSpinBox()
        self.gen_steps_spin.setRange(1, 1000)
        self.gen_steps_spin.setValue(50)
        self.gen_steps_spin.setSuffix(" steps")
        self.gen_out_edit = QLineEdit()
        self.gen_out_edit.setPlaceholderText("where the generated volumes go (default: a new folder)")

        self.metric_boxes: dict[str, QCheckBox] = {}
        for key, (label, tip) in METRICS.items():
            box = QCheckBox(label)
            box.setToolTip(tip)
            box.setChecked(True)
            box.setObjectName(f"metric_{key}")
            self.metric_boxes[key] = box
        self.features_edit = QLineEdit("default")
        self.features_edit.setToolTip(
            "default (fixed-seed random ResNet-50: numbers only comparable between runs of prdit) or "
            "medicalnet:PATH to MedicalNet's resnet_50.pth (the paper's feature space)"
        )
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 1024)
        self.size_spin.setSpecialValueText("native")
        self.size_spin.setToolTip("Resample every volume to N³ (native: all volumes must share one shape)")
        self.device_combo = QComboBox()
        self.device_combo.setEditable(True)
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.critic_spin = QSpinBox()
        self.critic_spin.setRange(1, 100000)
        self.critic_spin.setValue(300)
        self.pairs_spin = QSpinBox()
        self.pairs_spin.setRange(1, 100000)
        self.pairs_spin.setValue(100)

        self.run_button = QPushButton("Evaluate")
        self.run_button.setObjectName("runButton")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save report…")
        self.save_button.setObjectName("saveButton")
        self.open_report_button = QPushButton("Open report…")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.stage_label = QLabel("")
        self.status_label, self.error_label = make_status_labels()

        self.table = QTableWidget(0, 3)
        self.table.setObjectName("resultsTable")
        self.table.setHorizontalHeaderLabels(["Metric", "Value", "Note"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.anatomy_table = QTableWidget(0, 4)
        self.anatomy_table.setObjectName("anatomyTable")
        self.anatomy_table.setHorizontalHeaderLabels(
            ["Anatomy", "Real\nmean ± sd", "Generated\nmean ± sd", "In range"]
        )
        self.anatomy_table.verticalHeader().setVisible(False)
        self.anatomy_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.anatomy_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.anatomy_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        self.info_label.setObjectName("reportInfo")

        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setObjectName("histogramPlot")
        self.hist_plot.setLabel("bottom", "HU")
        self.hist_plot.setLabel("left", "density (per HU)")
        self.hist_plot.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" on the axes
        self.hist_plot.showGrid(x=True, y=True, alpha=0.25)
        self.hist_plot.addLegend(offset=(-10, 10))
        self.hist_real = self.hist_plot.plot(
            [0, 1], [0], stepMode="center", name="real", pen=pg.mkPen(REAL_COLOUR, width=2),
            fillLevel=0, brush=pg.mkBrush(78, 161, 255, 60),
        )  # fmt: skip
        self.hist_fake = self.hist_plot.plot(
            [0, 1], [0], stepMode="center", name="generated", pen=pg.mkPen(FAKE_COLOUR, width=2)
        )
        self.hist_log = QCheckBox("log density")
        self.anat_plot = pg.PlotWidget()
        self.anat_plot.setObjectName("anatomyPlot")
        self.anat_plot.setLabel("left", "fraction")
        self.anat_plot.getAxis("left").enableAutoSIPrefix(False)
        self.anat_plot.showGrid(y=True, alpha=0.25)
        self.anat_plot.addLegend(offset=(-10, 10))
        self._anat_items: list[Any] = []
        self.plot_status = QLabel("")
        self.log_view = LogView(max_lines=3000)
        self.log_view.setObjectName("evalLog")
        # readable when stacked in the narrow dock (metrics: 6 rows, anatomy: 5 measures)
        self.table.setMinimumHeight(190)
        self.anatomy_table.setMinimumHeight(170)
        self.hist_plot.setMinimumHeight(220)
        self.anat_plot.setMinimumHeight(220)
        self.log_view.setMinimumHeight(110)

        # --- layout
        inputs = QGroupBox("Volumes")
        g = QGridLayout(inputs)
        g.addWidget(QLabel("Real"), 0, 0)
        g.addWidget(self.real_edit, 0, 1, 1, 2)
        g.addWidget(self.real_browse, 0, 3)
        g.addWidget(QLabel("Generated"), 1, 0)
        g.addWidget(self.fake_radio, 1, 1)
        g.addWidget(self.fake_edit, 1, 2)
        g.addWidget(self.fake_browse, 1, 3)
        g.addWidget(self.gen_radio, 2, 1, 1, 3)
        g.addWidget(QLabel("Model"), 3, 0)
        g.addWidget(self.model_edit, 3, 1, 1, 2)
        g.addWidget(self.model_browse, 3, 3)
        row = QHBoxLayout()
        row.addWidget(self.count_spin)
        row.addWidget(self.gen_steps_spin)
        g.addLayout(row, 4, 1, 1, 3)
        g.addWidget(QLabel("Into"), 5, 0)
        g.addWidget(self.gen_out_edit, 5, 1, 1, 3)

        metrics_box = QGroupBox("Metrics")
        mg = QGridLayout(metrics_box)
        for i, box in enumerate(self.metric_boxes.values()):
            mg.addWidget(box, i // 2, i % 2)
        opts = QGroupBox("Options")
        of = QFormLayout(opts)
        of.addRow("Features", self.features_edit)
        of.addRow("Resample to", self.size_spin)
        of.addRow("Device", self.device_combo)
        of.addRow("Critic steps", self.critic_spin)
        of.addRow("MS-SSIM pairs", self.pairs_spin)

        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button):
            buttons.addWidget(b)
        buttons2 = QHBoxLayout()
        for b in (self.save_button, self.open_report_button):
            buttons2.addWidget(b)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(inputs)
        ll.addWidget(metrics_box)
        ll.addWidget(opts)
        ll.addLayout(buttons)
        ll.addWidget(self.stage_label)
        ll.addWidget(self.progress)
        ll.addWidget(self.status_label)
        ll.addWidget(self.error_label)
        ll.addLayout(buttons2)
        ll.addStretch(1)

        results = QGroupBox("Results")
        rl = QVBoxLayout(results)
        rl.addWidget(self.info_label)
        rl.addWidget(self.table, 6)
        rl.addWidget(self.anatomy_table, 5)
        hist_box = QGroupBox("HU histograms")
        hl = QVBoxLayout(hist_box)
        hl.addWidget(self.hist_plot, 1)
        hl.addWidget(self.hist_log)
        anat_box = QGroupBox("Anatomy measures per volume")
        al = QVBoxLayout(anat_box)
        al.addWidget(self.anat_plot, 1)
        al.addWidget(self.plot_status)
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(hist_box)
        plots.addWidget(anat_box)
        log_box = QGroupBox("Output")
        lg = QVBoxLayout(log_box)
        lg.addWidget(self.log_view)
        right = QSplitter(Qt.Orientation.Vertical)
        right.setChildrenCollapsible(False)
        right.addWidget(results)
        right.addWidget(plots)
        right.addWidget(log_box)
        right.setStretchFactor(0, 5)
        right.setStretchFactor(1, 5)
        right.setStretchFactor(2, 1)
        right.setSizes([440, 400, 110])
        # narrow dock: the form, then results and plots below it (one scroll bar); wide: side by side
        self.layout_switch = SettingsResultsLayout(
            left, right, inner=[plots], controls_width=370, narrow_results_height=1100
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.layout_switch)
        self.main_split = self.layout_switch.split

    def _connect(self) -> None:
        self.real_browse.clicked.connect(lambda: self._browse_dir(self.real_edit, "Folder of real volumes"))
        self.fake_browse.clicked.connect(
            lambda: self._browse_dir(self.fake_edit, "Folder of generated volumes")
        )
        self.model_browse.clicked.connect(self._browse_model)
        self.fake_edit.textEdited.connect(lambda _t: self.fake_radio.setChecked(True))
        self.source_group.buttonToggled.connect(lambda *_: self._source_changed())
        for box in self.metric_boxes.values():
            box.toggled.connect(lambda *_: self._update_enabled())
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self.save_dialog)
        self.open_report_button.clicked.connect(self.open_report_dialog)
        self.hist_log.toggled.connect(lambda _on: self._draw_histograms())
        self.runner.line.connect(self._on_line)
        self.runner.finished.connect(self._on_finished)

    def _source_changed(self) -> None:
        """Choosing "generate now" proposes the Generate panel's model (when the field is empty)."""
        if self.gen_radio.isChecked() and not self.model_edit.text().strip() and self.current_model:
            model = self.current_model()
            if model:
                self.model_edit.setText(str(model))
        self._update_enabled()

    def _browse_dir(self, edit: QLineEdit, title: str) -> None:
        path = QFileDialog.getExistingDirectory(self, title, edit.text() or str(Path.cwd()))
        if path:
            edit.setText(path)
            if edit is self.fake_edit:
                self.fake_radio.setChecked(True)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model", "", "PRDiT checkpoints (*.safetensors *.pt *.pth meta.json);;All files (*)"
        )
        if path:
            p = Path(path)
            self.model_edit.setText(str(p.parent if p.name == "meta.json" else p))
            self.gen_radio.setChecked(True)

    # ------------------------------------------------------------------ settings
    def selected_metrics(self) -> tuple[str, ...]:
        return tuple(k for k, box in self.metric_boxes.items() if box.isChecked())

    def set_metrics(self, keys: list[str] | tuple[str, ...]) -> None:
        for k, box in self.metric_boxes.items():
            box.setChecked(k in keys)

    def work_dir(self) -> Path:
        """Where reports (and generated volumes, by default) go: a folder this panel made."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="prdit-eval-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    def _request(self, fake: str) -> EvalRequest:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return EvalRequest(
            real=str(Path(self.real_edit.text().strip()).expanduser().resolve()),
            fake=fake,
            report=str(self.work_dir() / f"eval-{stamp}.json"),
            metrics=self.selected_metrics(),
            features=self.features_edit.text().strip() or "default",
            size=self.size_spin.value() or None,
            device=self.device_combo.currentText().strip() or "auto",
            critic_iterations=self.critic_spin.value(),
            msssim_pairs=self.pairs_spin.value(),
            cache_dir=self.cache_dir,
        )

    def _check_form(self) -> str | None:
        real = self.real_edit.text().strip()
        if not real:
            return "Real: choose the folder of real volumes"
        if not Path(real).expanduser().is_dir():
            return f"Real: {real} is not a folder"
        if not self.selected_metrics():
            return "Metrics: tick at least one"
        if self.fake_radio.isChecked():
            fake = self.fake_edit.text().strip()
            if not fake:
                return "Generated: choose the folder of generated volumes, or generate them now"
            if not Path(fake).expanduser().is_dir():
                return f"Generated: {fake} is not a folder"
        else:
            if not self.model_edit.text().strip():
                return "Model: choose the checkpoint to generate with"
        return None

    # ------------------------------------------------------------------ run control
    def start(self) -> bool:
        """Evaluate (after generating the volumes first when "generate now" is chosen)."""
        if self.running:
            return False
        if self.gen_radio.isChecked() and not self.model_edit.text().strip() and self.current_model:
            model = self.current_model()
            if model:
                self.model_edit.setText(str(model))
        problem = self._check_form()
        if problem:
            self._show_error(problem)
            return False
        self.error_label.hide()
        self.last_outcome = None
        self._cancel_plot_thread()
        if self.gen_radio.isChecked():
            out = self.gen_out_edit.text().strip()
            if not out:
                out = str(self.work_dir() / f"generated-{time.strftime('%Y%m%d-%H%M%S')}")
                self.gen_out_edit.setText(out)
            out = str(Path(out).expanduser().resolve())
            self._pending_eval = self._request(out)
            argv = sample_argv(
                str(Path(self.model_edit.text().strip()).expanduser()), out, self.count_spin.value(),
                self.gen_steps_spin.value(), device=self.device_combo.currentText().strip() or "auto",
            )  # fmt: skip
            return self._launch(argv, "sample", f"Generating {self.count_spin.value()} volumes…")
        fake = str(Path(self.fake_edit.text().strip()).expanduser().resolve())
        return self._launch_eval(self._request(fake))

    def _launch_eval(self, request: EvalRequest) -> bool:
        self._report_path = Path(request.report)
        return self._launch(request.argv(), "eval", "Evaluating…")

    def _launch(self, argv: list[str], phase: str, status: str) -> bool:
        if not self.start_child(argv, status):
            return False
        self._phase = phase
        self.stage_label.setText("starting…")
        self.progress.setRange(0, 0)  # busy until the first progress line
        self._update_enabled()
        self.runningChanged.emit(True)
        return True

    def cancel(self) -> None:
        self._pending_eval = None
        if self.running:
            self.runner.terminate()
            self.status_label.setText("Cancelling…")
        self._cancel_plot_thread()

    def shutdown(self) -> None:
        self.cancel()
        self.runner.wait(10000)
        if self._plot_thread is not None:
            self._plot_thread.wait(10000)

    def _on_line(self, text: str, stream: str, redraw: bool) -> None:
        event = self.route_line(text, stream, redraw)
        if event is not None:
            self.stage_label.setText(event.what)

    def _on_finished(self, outcome: RunOutcome) -> None:
        self.last_outcome = outcome
        phase, self._phase = self._phase, "idle"
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if outcome.ok else 0)
        self.stage_label.setText("")
        if outcome.ok and phase == "sample" and self._pending_eval is not None:
            request, self._pending_eval = self._pending_eval, None
            self.fake_edit.setText(request.fake)
            self.log_view.append_message(f"Generated volumes in {request.fake}")
            if self._launch_eval(request):
                return
        elif outcome.ok and phase == "eval":
            try:
                report = json.loads(Path(self._report_path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self._fail(f"prdit eval finished but its report {self._report_path} cannot be read: {exc}")
            else:
                self.show_report(report, read_volumes=True)
                self.status_label.setText(f"Done: {len(report_rows(report))} metrics")
        elif outcome.stopped:
            self.status_label.setText("Cancelled")
        else:
            self._fail(outcome.error)
        self._pending_eval = None
        self._update_enabled()
        self.runningChanged.emit(False)
        self.runFinished.emit(outcome)

    def _fail(self, message: str) -> None:
        self.log_view.append_message(message)
        self._show_error(message, status="Failed")

    # ------------------------------------------------------------------ results
    def show_report(self, report: dict[str, Any], read_volumes: bool = False) -> None:
        """Fill the tables from a report; plots from the report's data or (optionally) the volumes.
        Under the result it says when the previous one was made differently (N, network,
        protocol, size), so two numbers are not compared that cannot be."""
        previous, self.report = self.report, report
        rows = report_rows(report)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate((row.name, row.text, row.note)):
                item = QTableWidgetItem(text)
                if j == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    item.setData(Qt.ItemDataRole.UserRole, row.value)
                item.setToolTip(METRICS.get(row.key, ("", ""))[1] if j == 0 else text)
                self.table.setItem(i, j, item)
        measures = anatomy_summary(report)
        self.anatomy_table.setRowCount(len(measures))
        for i, (key, m) in enumerate(measures.items()):
            frac = m.get("fake_in_real_range")
            cells = (
                ANATOMY_LABELS.get(key, key),
                f"{format_value(m.get('real_mean'))} ± {format_value(m.get('real_std'))}",
                f"{format_value(m.get('fake_mean'))} ± {format_value(m.get('fake_std'))}",
                "n/a" if frac is None else f"{100 * frac:.0f}%",
            )
            for j, text in enumerate(cells):
                self.anatomy_table.setItem(i, j, QTableWidgetItem(text))
        real, fake = report.get("real") or {}, report.get("fake") or {}
        info = [
            f"real: {real.get('folder', '?')} ({real.get('count', '?')} volumes)",
            f"generated: {fake.get('folder', '?')} ({fake.get('count', '?')} volumes)",
        ]
        if real.get("shape"):
            info.append("shape: " + "×".join(map(str, real["shape"])))
        info += [f"NOTE: {n}" for n in report.get("notes", [])]
        self.comparison_notes = comparison_warnings(previous, report)
        info += [f"NOT COMPARABLE: {n}" for n in self.comparison_notes]
        self.info_label.setText("\n".join(info))
        self.plot_data = None
        self._clear_plots()
        data = plot_data_from_report(report)
        if data is not None:
            self.set_plot_data(data)
        elif read_volumes and real.get("folder") and fake.get("folder"):
            self._start_plot_thread(report)
        self.reportReady.emit(report)
        self._update_enabled()

    def _start_plot_thread(self, report: dict[str, Any]) -> None:
        settings = report.get("settings") or {}
        size = settings.get("size")
        t = PlotDataThread(
            report["real"]["folder"], report["fake"]["folder"], int(size) if size else None,
            str(settings.get("real_scale", "auto")), str(settings.get("fake_scale", "auto")), self,
        )  # fmt: skip
        t.progressed.connect(lambda d, n: self.plot_status.setText(f"Reading volumes for the plots: {d}/{n}"))
        t.ready.connect(self.set_plot_data)
        t.failed.connect(self.plot_status.setText)
        t.finished.connect(self._plot_thread_done)
        self._plot_thread = t
        self.plot_status.setText("Reading volumes for the plots…")
        t.start()

    def _plot_thread_done(self) -> None:
        t = self.sender()
        if t is self._plot_thread:
            self._plot_thread = None
        if isinstance(t, QThread):
            t.deleteLater()

    def _cancel_plot_thread(self) -> None:
        if self._plot_thread is not None:
            self._plot_thread.cancel()

    @property
    def plots_pending(self) -> bool:
        return self._plot_thread is not None

    def set_plot_data(self, data: PlotData) -> None:
        self.plot_data = data
        n_real = len(next(iter(data.real_values.values()), []))
        n_fake = len(next(iter(data.fake_values.values()), []))
        self.plot_status.setText(
            f"{n_real} real, {n_fake} generated volumes"
            + (" (per-volume data from the report)" if data.source == "report" else "")
        )
        self._draw_histograms()
        self._draw_anatomy()

    def _clear_plots(self) -> None:
        self.hist_real.setData([0, 1], [0])
        self.hist_fake.setData([0, 1], [0])
        for item in self._anat_items:
            self.anat_plot.removeItem(item)
        self._anat_items = []
        self.plot_status.setText("")

    def _draw_histograms(self) -> None:
        d = self.plot_data
        if d is None:
            return
        curves = []
        for counts in (d.real_counts, d.fake_counts):
            edges, dens = display_histogram(counts, d.lo)
            curves.append((edges, dens))
        # Show the HU range that holds the voxels (1st..99.9th percentile of both sets, padded).
        lo_hu, hi_hu = [], []
        for counts in (d.real_counts, d.fake_counts):
            cdf = np.cumsum(counts) / max(int(np.sum(counts)), 1)
            lo_hu.append(d.lo + int(np.searchsorted(cdf, 0.001)))
            hi_hu.append(d.lo + int(np.searchsorted(cdf, 0.999)))
        log = self.hist_log.isChecked()
        for item, (edges, dens) in zip((self.hist_real, self.hist_fake), curves, strict=True):
            y = np.log10(np.maximum(dens, 1e-9)) if log else dens
            if item is self.hist_real:  # the real set is filled, the generated one drawn on top
                item.setFillLevel(-9 if log else 0)
            item.setData(edges, y)
        self.hist_plot.setLabel("left", "log10 density" if log else "density (per HU)")
        self.hist_plot.setXRange(min(lo_hu) - 50, max(hi_hu) + 50, padding=0)
        self.hist_plot.enableAutoRange(axis="y")

    def _draw_anatomy(self) -> None:
        import pyqtgraph as pg

        d = self.plot_data
        if d is None:
            return
        for item in self._anat_items:
            self.anat_plot.removeItem(item)
        self._anat_items = []
        rng = np.random.default_rng(0)  # fixed jitter: the same plot for the same data
        ticks = []
        for i, key in enumerate(d.anatomy_keys):
            ticks.append((i, ANATOMY_LABELS.get(key, key)))
            for offset, values, colour, name in (
                (-0.2, d.real_values.get(key, []), REAL_COLOUR, "real"),
                (0.2, d.fake_values.get(key, []), FAKE_COLOUR, "generated"),
            ):
                stats = box_stats(values)
                if stats is None:
                    continue
                vmin, q1, med, q3, vmax = stats
                x = i + offset
                box = pg.BarGraphItem(
                    x=[x], y0=[q1], height=[max(q3 - q1, 1e-6)], width=0.3,
                    pen=pg.mkPen(colour, width=1.5), brush=pg.mkBrush(colour + "30"),
                )  # fmt: skip
                whisk = pg.PlotDataItem(  # NaN breaks the line (None in the data crashes pyqtgraph)
                    np.array([x, x, np.nan, x, x]),
                    np.array([vmin, q1, np.nan, q3, vmax]),
                    connect="finite",
                    pen=pg.mkPen(colour, width=1),
                )
                median = pg.PlotDataItem([x - 0.15, x + 0.15], [med, med], pen=pg.mkPen(colour, width=3))
                xs = x + rng.uniform(-0.09, 0.09, len(values))
                pts = pg.ScatterPlotItem(
                    xs, values, size=6, brush=pg.mkBrush(colour), pen=pg.mkPen("#101010"),
                    name=name if i == 0 else None,
                )  # fmt: skip
                for item in (box, whisk, median, pts):
                    self.anat_plot.addItem(item)
                    self._anat_items.append(item)
        self.anat_plot.getAxis("bottom").setTicks([ticks])
        self.anat_plot.setXRange(-0.6, len(d.anatomy_keys) - 0.4, padding=0)
        legend = self.anat_plot.plotItem.legend
        if legend is not None:
            legend.clear()
            for colour, name in ((REAL_COLOUR, "real"), (FAKE_COLOUR, "generated")):
                legend.addItem(pg.ScatterPlotItem(size=8, brush=pg.mkBrush(colour)), name)

    # ------------------------------------------------------------------ save / open
    def save_report(self, path: str | os.PathLike) -> Path:
        """Write the shown report as JSON or CSV (by extension), atomically."""
        if self.report is None:
            raise ValueError("no report to save yet: run an evaluation first")
        return save_report(self.report, path)

    def save_dialog(self) -> None:
        if self.report is None:
            return
        path, chosen = QFileDialog.getSaveFileName(
            self, "Save evaluation report", str(Path.cwd() / "eval-report.json"), "JSON (*.json);;CSV (*.csv)"
        )
        if not path:
            return
        if not Path(path).suffix:
            path += ".csv" if "CSV" in chosen else ".json"
        try:
            saved = self.save_report(path)
        except (OSError, ValueError) as exc:
            self._show_error(f"Save report: {exc}", status=self.status_label.text())
            return
        self.status_label.setText(f"Saved {saved}")

    def open_report_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open evaluation report", "", "JSON (*.json)")
        if path:
            self.open_report(path)

    def open_report(self, path: str | os.PathLike) -> None:
        """Show a report written earlier (by this panel or ``prdit eval --report``)."""
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(report, dict) or "metrics" not in report:
                raise ValueError("not a prdit eval report (no 'metrics')")
        except (OSError, ValueError) as exc:
            self._show_error(f"Open report {path}: {exc}", status=self.status_label.text())
            return
        self.error_label.hide()
        self.show_report(report, read_volumes=True)
        self.status_label.setText(f"Opened {Path(path).name}")

    # ------------------------------------------------------------------ enabling
    def _update_enabled(self) -> None:
        running = self.running
        gen = self.gen_radio.isChecked()
        always = (self.real_edit, self.real_browse, self.fake_radio, self.gen_radio, self.features_edit,
                  self.size_spin, self.device_combo, self.open_report_button)  # fmt: skip
        for w in (*always, *self.metric_boxes.values()):
            w.setEnabled(not running)
        self.fake_edit.setEnabled(not running and not gen)
        self.fake_browse.setEnabled(not running and not gen)
        for w in (
            self.model_edit,
            self.model_browse,
            self.count_spin,
            self.gen_steps_spin,
            self.gen_out_edit,
        ):
            w.setEnabled(not running and gen)
        self.critic_spin.setEnabled(not running and self.metric_boxes["critic"].isChecked())
        self.pairs_spin.setEnabled(not running and self.metric_boxes["msssim"].isChecked())
        self.run_button.setEnabled(not running and bool(self.selected_metrics()))
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(self.report is not None and not running)
