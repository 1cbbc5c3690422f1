"""The Generate panel: pick a model and sampler settings, press Start, watch the volume form.

Each sampling step's x0_hat streams into the views through ``show_volume`` (normally
``ViewerState.set_volume(volume, keep_view=True)``), so the tri-planar and 3D views show the CT
condensing out of noise while the user can still scroll, zoom and change window/level. Sampling
runs in :mod:`prdit_app.worker`; this panel only turns its signals into widgets and never blocks.
After the run, :class:`~prdit_app.trajectory.TrajectoryWidget` replays the recorded steps.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from prdit.model_info import ModelInfo
from prdit.paths import bundled_models, resource
from prdit.sampler_defaults import DEFAULT_STEPS, SamplerDefaults
from prdit.volume import Volume
from prdit_app.app_model import AppModel
from prdit_app.dialogs import show_error
from prdit_app.sampling_types import SampleRequest, SamplingResult, StepUpdate, fill_sampler_combo
from prdit_app.step_source import StepSource, estimate_request, make_volume, sample_metadata
from prdit_app.trajectory import TrajectoryStore, TrajectoryWidget
from prdit_app.worker import SamplingController, preload_engine

CHECKPOINT_FILTER = "PRDiT checkpoints (*.safetensors *.pt *.pth);;All files (*)"
_MAX_SEED = 2**31 - 1
_SIZE_DESCRIPTION = {"XS": "192 wide, 6 heads", "S": "384 wide, 6 heads", "B": "768 wide, 12 heads",
                     "L": "1024 wide, 16 heads", "XL": "1152 wide, 16 heads"}  # fmt: skip


# --------------------------------------------------------------------------- model discovery
def peek_model_info(path: Path) -> ModelInfo | None:
    """What a checkpoint holds, read from its metadata only (no weights), or None if unknown.

    Cheap enough for the GUI thread: a safetensors header or a ``meta.json``. A reference ``.pt``
    carries no metadata; its variant is known only after loading.
    """
    path = Path(path)
    meta: dict[str, Any] | None = None
    try:
        if path.is_dir():
            from prdit.checkpoint import read_meta, resolve_checkpoint_dir

            meta = read_meta(resolve_checkpoint_dir(path))
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw = (f.metadata() or {}).get("prdit")
            meta = json.loads(raw) if raw else None
    except Exception:  # any unreadable file: the load on Start reports the real error in a dialog
        return None
    if not meta:
        return None
    try:
        return ModelInfo.from_meta(meta, path)
    except ValueError:
        return None


def recommended_sampler(info: ModelInfo) -> SamplerDefaults:
    """The file's sampler recommendation; a malformed one falls back to the paper's settings here
    (the load on Start names the problem in a dialog)."""
    try:
        return info.sampler_defaults
    except ValueError:
        return SamplerDefaults()


def recommended_window(info: ModelInfo):
    """The file's display window, or None (also when malformed: the load on Start says why)."""
    try:
        return info.display_window
    except ValueError:
        return None


def describe_model(info: ModelInfo | None, path: Path | None = None) -> str:
    """Two lines for the panel: variant and size, then resolution, spacing, training step."""
    if info is None:
        if path is not None and path.suffix in (".pt", ".pth"):
            return "reference-layout checkpoint: the variant is read when it loads"
        return "no metadata: the variant is read when it loads"
    size = info.size_label
    lines = [f"<b>{info.model_name}</b> — size {size} ({_SIZE_DESCRIPTION.get(size, 'custom width')})"]
    spacing = "×".join(f"{s:.3g}" for s in info.spacing)
    detail = f"{info.variant_label}; {info.input_size}³ voxels at {spacing} mm"
    if info.step is not None:
        detail += f"; trained {info.step:,} steps"
    lines.append(detail)
    lines.append(f"sampler: {recommended_sampler(info).describe()}")
    window = recommended_window(info)
    if window is not None:
        lines.append(f"display window: {window.describe()} (recommended by the model)")
    return "<br>".join(lines)


def estimate_summary(est: Any, precision: str) -> str:
    """One status line for an :class:`prdit.estimate.Estimate` of a Generate run."""
    from prdit.estimate import human_bytes, human_seconds

    device = est.device.upper()
    if not est.fits:
        return (
            f"Would not fit: ~{human_bytes(est.peak_bytes)} needed, {human_bytes(est.available_bytes or 0)} "
            f"free on {device}; {est.advice()}."
        )
    return (
        f"Estimate: ~{human_seconds(est.seconds)} per volume, peak ~{human_bytes(est.peak_bytes)} "
        f"(model {human_bytes(est.resident_bytes)}) on {device} in {precision}"
    )


def nfe_of(steps: int) -> int:
    """Network evaluations of a walk of ``steps`` events: the last, at t = 0, needs none."""
    return max(1, steps - 1)


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "ETA –"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


# --------------------------------------------------------------------------- the panel
class GeneratePanel(QWidget):
    """Model, sampler, steps, seed, samples, device; Start/Cancel; live progress; trajectory.

    ``show_volume(volume)`` receives every volume to display (streamed steps, scrubbed snapshots,
    the final result). Signals: ``volumeShown(Volume)``, ``runFinished(SamplingResult)``,
    ``runningChanged(bool)``.
    """

    volumeShown = Signal(object)
    runFinished = Signal(object)
    runningChanged = Signal(bool)
    estimateReady = Signal(str)
    #: the model recommends a display window (width, level HU); emitted when a run starts
    windowRecommended = Signal(float, float)  # from the estimate thread; delivered queued on the GUI thread

    def __init__(
        self,
        show_volume: Callable[[Volume], None] | None = None,
        parent: QWidget | None = None,
        app: AppModel | None = None,
        models_dir: Path | None = None,
        trajectory_capacity: int = 32,
        trajectory_bytes: int = 512 * 2**20,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("generatePanel")
        self.app = app  # what the panels share (prdit_app.app_model); None when used alone
        self.show_volume = show_volume
        self.missing_engine = preload_engine()  # imports on the GUI thread, before sampling starts
        self.controller = SamplingController(self)
        self.store = TrajectoryStore(trajectory_capacity, trajectory_bytes)
        #: tests and benchmarks replace the engine: ``source_factory(request) -> StepSource``
        self.source_factory: Callable[[SampleRequest], StepSource] | None = None
        self.result: SamplingResult | None = None
        self.last_update: StepUpdate | None = None
        self.steps_drawn = 0
        self.draw_ms_max = 0.0  # the longest GUI-thread handling of one step (views included)
        self._shown: Volume | None = None
        self._memory_models: dict[str, tuple[Any, ModelInfo]] = {}
        self._estimating = False
        self.last_estimate: str | None = None
        self._build_ui()
        self._connect()
        for path in bundled_models(models_dir):
            self.add_checkpoint(path, select=self.model_combo.count() == 0)
        self._refresh_model_info()
        self._set_running(False)
        if app is not None:  # what the other panels read: the selected checkpoint, the trajectory
            app.publish_trajectory(lambda: (self.store, self.trajectory.sample))
            self.volumeShown.connect(lambda _v: app.trajectoryChanged.emit())
            app.loadCheckpointRequested.connect(lambda path: self.add_checkpoint(Path(path), select=True))
            self._publish_selection()
        qt_app = QCoreApplication.instance()
        if qt_app is not None:  # never let the app exit with a sampling thread still running
            qt_app.aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("modelCombo")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        self.open_button = QToolButton()
        self.open_button.setText("Open…")
        self.open_button.setToolTip("Open a checkpoint file (.safetensors, .pt) or a training run folder")
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        menu = QMenu(self.open_button)
        menu.addAction("Open checkpoint file…", self.open_checkpoint_file)
        menu.addAction("Open checkpoint folder…", self.open_checkpoint_folder)
        self.open_button.setMenu(menu)
        self.open_button.clicked.connect(self.open_checkpoint_file)
        self.model_info_label = QLabel()
        self.model_info_label.setWordWrap(True)
        self.model_info_label.setTextFormat(Qt.TextFormat.RichText)
        self.model_info_label.setObjectName("modelInfo")

        self.sampler_combo = QComboBox()
        fill_sampler_combo(self.sampler_combo)
        self.sampler_combo.setToolTip(
            "hot: the paper's best sampler (stochastic corrector); cold: deterministic"
        )
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 16)
        self.k_spin.setValue(2)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("Predictor jump of the hot sampler (the paper's best: 2; 1 = cold)")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setValue(50)
        self.steps_spin.setToolTip(
            "Sampling steps (the model was trained with 1000); network evaluations = steps - 1, the "
            "last step lands at t = 0 without one. v2m / v2m-sde need far fewer (docs/sampling.md)"
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, _MAX_SEED)
        self.seed_spin.setValue(0)
        self.seed_spin.setToolTip("Sample i of a batch uses seed + i, like `prdit sample`")
        self.dice_button = QToolButton()
        self.dice_button.setText("⚄")
        self.dice_button.setToolTip("Random seed")
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, 64)
        self.samples_spin.setValue(1)
        self.device_combo = QComboBox()
        self.device_combo.addItem("Auto", "auto")
        self.device_combo.addItem("CPU", "cpu")
        if torch.cuda.is_available():
            self.device_combo.addItem(f"CUDA ({torch.cuda.get_device_name(0)})", "cuda")

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setObjectName("estimateButton")
        self.estimate_button.setToolTip(
            "Peak memory and time per volume for these settings, before starting "
            "(one traced sampler step and a few timed network evaluations)"
        )
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.step_label = QLabel("Step –")
        self.rate_label = QLabel("– steps/s")
        self.eta_label = QLabel("ETA –")
        self.status_label = QLabel("Idle")
        self.status_label.setWordWrap(True)
        self.model_info_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.trajectory = TrajectoryWidget(self.store)

        model_box = QGroupBox("Model")
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.open_button)
        mlay = QVBoxLayout(model_box)
        mlay.addLayout(model_row)
        mlay.addWidget(self.model_info_label)

        settings = QGroupBox("Sampling")
        form = QFormLayout(settings)
        sampler_row = QHBoxLayout()
        sampler_row.addWidget(self.sampler_combo, 1)
        sampler_row.addWidget(self.k_spin)
        form.addRow("Sampler", sampler_row)
        form.addRow("Steps", self.steps_spin)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.dice_button)
        form.addRow("Seed", seed_row)
        form.addRow("Samples", self.samples_spin)
        form.addRow("Device", self.device_combo)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.estimate_button)
        stats = QHBoxLayout()
        stats.addWidget(self.step_label)
        stats.addStretch(1)
        stats.addWidget(self.rate_label)
        stats.addStretch(1)
        stats.addWidget(self.eta_label)

        traj_box = QGroupBox("Formation")
        tlay = QVBoxLayout(traj_box)
        tlay.addWidget(self.trajectory)

        lay = QVBoxLayout(self)
        lay.addWidget(model_box)
        lay.addWidget(settings)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addLayout(stats)
        lay.addWidget(self.status_label)
        lay.addWidget(traj_box)
        lay.addStretch(1)

    def _connect(self) -> None:
        self.model_combo.currentIndexChanged.connect(self._refresh_model_info)
        self.sampler_combo.currentIndexChanged.connect(self._sampler_changed)
        self.dice_button.clicked.connect(self.roll_seed)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.estimate_button.clicked.connect(self.estimate)
        self.estimateReady.connect(self._show_estimate)
        self.controller.stepReady.connect(self._on_step)
        self.controller.status.connect(self.status_label.setText)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.trajectory.shown.connect(self._on_scrubbed)

    # ------------------------------------------------------------------ models
    def add_checkpoint(self, path: Path, select: bool = True) -> None:
        """List a checkpoint (file or folder) in the model selector."""
        path = Path(path)
        key = str(path)
        for i in range(self.model_combo.count()):
            if self.model_combo.itemData(i) == key:
                if select:
                    self.model_combo.setCurrentIndex(i)
                return
        label = path.stem if path.is_file() else path.name
        if path.parent == resource("models"):
            label += " (bundled)"
        self.model_combo.addItem(label, key)
        self.model_combo.setItemData(self.model_combo.count() - 1, key, Qt.ItemDataRole.ToolTipRole)
        if select:
            self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    def add_model(self, model: Any, info: ModelInfo, label: str | None = None) -> None:
        """List a model already in memory (tests, benchmarks, a model just trained)."""
        key = f"memory:{len(self._memory_models)}"
        self._memory_models[key] = (model, info)
        self.model_combo.addItem(label or f"{info.model_name} (in memory)", key)
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    def open_checkpoint_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open PRDiT checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.add_checkpoint(Path(path))

    def open_checkpoint_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a training run or checkpoint folder")
        if path:
            self.add_checkpoint(Path(path))

    def _selected_key(self) -> str | None:
        data = self.model_combo.currentData()
        return str(data) if data is not None else None

    def selected_model_info(self) -> ModelInfo | None:
        key = self._selected_key()
        if key is None:
            return None
        if key in self._memory_models:
            return self._memory_models[key][1]
        return peek_model_info(Path(key))

    def _publish_selection(self) -> None:
        if self.app is None:
            return
        key = self._selected_key()
        memory = key is None or key in self._memory_models
        self.app.set_selected_checkpoint(None if memory else Path(key))

    def _refresh_model_info(self) -> None:
        self._publish_selection()
        key = self._selected_key()
        if key is None:
            text = "No model: open a checkpoint (a bundled default was not found in resources/models)."
            if self.missing_engine:
                text += f"<br>Engine modules not available: {', '.join(self.missing_engine)}"
            self.model_info_label.setText(text)
        else:
            path = None if key in self._memory_models else Path(key)
            info = self.selected_model_info()
            self.model_info_label.setText(describe_model(info, path))
            if info is not None and not self.controller.running:
                self.apply_sampler_defaults(recommended_sampler(info))
        self._update_enabled()

    def apply_sampler_defaults(self, defaults: SamplerDefaults) -> None:
        """Start from the sampler settings the selected model was tuned for (the user can change them)."""
        self.sampler_combo.setCurrentIndex(max(0, self.sampler_combo.findData(defaults.sampler)))
        self.k_spin.setValue(defaults.k)
        self.steps_spin.setValue(defaults.steps if defaults.steps is not None else DEFAULT_STEPS)

    # ------------------------------------------------------------------ settings
    def _sampler_changed(self) -> None:
        self.k_spin.setEnabled(self.sampler_combo.currentData() == "hot" and not self.controller.running)

    def roll_seed(self) -> None:
        self.seed_spin.setValue(random.SystemRandom().randrange(_MAX_SEED))

    def request(self) -> SampleRequest:
        """The SampleRequest the current settings describe."""
        key = self._selected_key()
        model = info = None
        checkpoint = None
        if key is not None and key in self._memory_models:
            model, info = self._memory_models[key]
        elif key is not None:
            checkpoint = Path(key)
        return SampleRequest(
            checkpoint=checkpoint,
            sampler=str(self.sampler_combo.currentData()),
            steps=self.steps_spin.value(),
            k=self.k_spin.value(),
            seed=self.seed_spin.value(),
            num_samples=self.samples_spin.value(),
            device=str(self.device_combo.currentData()),
            model=model,
            model_info=info,
        )

    # ------------------------------------------------------------------ running
    def start(self) -> bool:
        """Start sampling with the current settings; False (with a dialog) when it cannot."""
        if self.controller.running:
            return False
        request = self.request()
        try:
            request.validate()
        except ValueError as exc:
            QMessageBox.warning(self, "Cannot start", str(exc))
            return False
        self.store.reset()
        self.trajectory.prepare(request.num_samples)
        self.result = None
        self.last_update = None
        self.steps_drawn = 0
        self.draw_ms_max = 0.0
        self.progress.setRange(0, request.steps)
        self.progress.setValue(0)
        self.step_label.setText(f"Step 0/{request.steps} · NFE {nfe_of(request.steps)}")
        self.rate_label.setText("– steps/s")
        self.eta_label.setText("ETA –")
        self.status_label.setText("Starting…")
        recommended = self.selected_model_info()
        window = recommended_window(recommended) if recommended is not None else None
        if window is not None:
            self.windowRecommended.emit(window.width, window.level)
        source = self.source_factory(request) if self.source_factory is not None else None
        self.controller.start(request, source, on_step=self.store.record)
        self._set_running(True)
        return True

    def estimate(self) -> bool:
        """Estimate the current settings on a background thread; the answer replaces the status
        text (:meth:`_show_estimate`). False when one is already being made or settings are bad."""
        if self._estimating or self.controller.running:
            return False
        request = self.request()
        try:
            request.validate()
        except ValueError as exc:
            QMessageBox.warning(self, "Cannot estimate", str(exc))
            return False
        self._estimating = True
        self.estimate_button.setEnabled(False)
        self.status_label.setText("Estimating memory and time…")

        def work() -> None:
            try:
                est, choice = estimate_request(request)
                text = estimate_summary(est, choice.precision)
            except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised on a thread
                text = f"Could not estimate: {exc.__class__.__name__}: {exc}"
            self.estimateReady.emit(text)  # queued to the GUI thread (the panel lives there)

        threading.Thread(target=work, name="prdit-estimate", daemon=True).start()
        return True

    def _show_estimate(self, text: str) -> None:
        self._estimating = False
        self.last_estimate = text
        self.status_label.setText(text)
        self._update_enabled()

    def cancel(self) -> None:
        if self.controller.running:
            self.status_label.setText("Cancelling after the current step…")
            self.cancel_button.setEnabled(False)
            self.controller.cancel()

    def shutdown(self) -> None:
        """Stop a run before the window closes (waits for the current step)."""
        self.controller.shutdown()

    @property
    def running(self) -> bool:
        return self.controller.running

    def _set_running(self, running: bool) -> None:
        self.trajectory.set_live(running)
        for w in (self.model_combo, self.open_button, self.sampler_combo, self.steps_spin, self.seed_spin,
                  self.dice_button, self.samples_spin, self.device_combo):  # fmt: skip
            w.setEnabled(not running)
        self._sampler_changed()
        self._update_enabled()
        self.runningChanged.emit(running)

    def _update_enabled(self) -> None:
        running = self.controller.running
        self.start_button.setEnabled(not running and self._selected_key() is not None)
        self.estimate_button.setEnabled(
            not running and not self._estimating and self._selected_key() is not None
        )
        self.cancel_button.setEnabled(running)

    # ------------------------------------------------------------------ worker signals
    def _on_step(self, update: StepUpdate) -> None:
        t0 = time.perf_counter()
        self._show_step(update)
        self.draw_ms_max = max(self.draw_ms_max, (time.perf_counter() - t0) * 1000.0)

    def _show_step(self, update: StepUpdate) -> None:
        self.last_update = update
        self.steps_drawn += 1
        done = update.index + 1
        self.progress.setRange(0, update.total)
        self.progress.setValue(done)
        self.step_label.setText(f"Step {done}/{update.total} · NFE {nfe_of(update.total)}")
        self.rate_label.setText(f"{update.steps_per_s:.2f} steps/s")
        self.eta_label.setText(format_eta(update.eta_s))
        b = min(self.trajectory.sample, update.x0_hu.shape[0] - 1)
        use_xt = self.trajectory.kind == "xt" and update.xt_hu is not None
        hu = update.xt_hu[b] if use_xt else update.x0_hu[b]
        worker = self.controller.worker
        info = worker.info if worker is not None else None
        if info is not None:
            label = f"{'x_t' if use_xt else 'x0_hat'} · step {done}/{update.total}"
            meta = sample_metadata(worker.request, info, b)
            self._display(make_volume(hu, info, **meta, generated=label, final=update.final and not use_xt))
        self.trajectory.show_live(update)

    def _on_finished(self, result: SamplingResult) -> None:
        self.result = result
        self._set_running(False)
        n = len(result.volumes)
        if result.status == "cancelled":
            self.status_label.setText(f"Cancelled after {result.steps_done} steps ({result.elapsed_s:.1f} s)")
        else:
            rate = result.steps_done / result.elapsed_s if result.elapsed_s > 0 else float("inf")
            self.status_label.setText(
                f"Done: {n} sample{'s' if n != 1 else ''}, {result.steps_done} steps in "
                f"{result.elapsed_s:.1f} s ({rate:.2f} steps/s)"
            )
            self.eta_label.setText("ETA 0:00")
        self.trajectory.reload(show_last=True)
        self.runFinished.emit(result)

    def _on_failed(self, title: str, message: str) -> None:
        self._set_running(False)
        self.status_label.setText(f"{title}.")
        show_error(self, title, message)

    def _on_scrubbed(self, hu: np.ndarray, label: str) -> None:
        result = self.result
        if result is None or not result.volumes:
            return
        sample = min(self.trajectory.sample, len(result.volumes) - 1)
        final = result.volumes[sample]
        at_end = self.trajectory.slider.value() >= self.trajectory.slider.maximum()
        if at_end and self.trajectory.kind == "x0":
            volume = final  # the exact float result, not its int16 snapshot
        else:
            volume = final.with_array(hu, generated=label, final=False)
        self._display(volume)

    def _display(self, volume: Volume) -> None:
        self._shown = volume
        if self.show_volume is not None:
            self.show_volume(volume)
        self.volumeShown.emit(volume)

    # ------------------------------------------------------------------ for export
    def shown_volume(self) -> Volume | None:
        """The volume on screen now (a streamed step, a scrubbed snapshot or the final sample)."""
        return self._shown

    def provenance_for(self, volume: Volume | None = None) -> dict[str, Any] | None:
        """A ``prdit sample``-style sidecar dict for the shown volume (None if not generated here)."""
        volume = volume if volume is not None else self._shown
        if volume is None or "model_name" not in volume.metadata:
            return None
        from prdit.sampling import SIDECAR_KEYS

        meta = volume.metadata
        return {key: meta.get(key) for key in SIDECAR_KEYS}
