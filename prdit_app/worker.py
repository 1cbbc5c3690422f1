"""Run the engine's sampler off the GUI thread and stream its x0_hat to the views.

Why it is built this way:

* The sampler is a generator of ``Step`` events (``prdit.diffusion``). A :class:`SamplingWorker`
  (a ``QObject`` moved to a ``QThread``) iterates it, so the GUI thread never runs a forward pass.
* Volumes are big (128^3 float32 = 8 MB per sample) and steps can outpace the views. The worker
  hands each step to a :class:`LatestSlot`: a lock-protected *single-item* mailbox. The queued
  signal it emits says only "new data"; the GUI takes whatever is newest. A slow view therefore
  skips frames instead of building a queue of stale volumes (memory stays flat, latency stays one
  frame). The signal is emitted only when the mailbox was empty, so at most one such event is
  ever pending in the GUI's event queue.
* Cancel sets a flag that the worker checks between steps; it then closes the generator
  (``gen.close()``), so the engine's ``finally`` blocks run and no further model call starts:
  a cancel takes effect within one step.
* The worker never touches widgets. It reports through signals (``failed`` carries a title and a
  message for a dialog) and the GUI decides what to show.
* Everything the worker thread would otherwise import lazily (the engine modules) is imported by
  :func:`preload_engine` on the GUI thread before the window shows: a first-time import of
  hundreds of modules holds the interpreter lock and would freeze the event loop for 100+ ms.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

from prdit.data.normalize import HUWindow
from prdit.estimate import sampling_needs_check
from prdit.model_info import ModelInfo  # the engine's model descriptor, re-exported for the app
from prdit.precision import choose_precision, with_precision
from prdit.sampling import diffusion_for, sample_sidecar, volume_from_hu
from prdit.threads import ThreadGovernor, apply_threads, choose_threads
from prdit.volume import Volume
from prdit_app.latest import LatestSlot

# --------------------------------------------------------------------------- threads
#: The automatic thread choice (prdit.threads: the free cores) is capped here: the studio's small
#: 3D models stop scaling at ~8 threads, and the GUI thread needs no core of its own because it
#: sleeps in the event loop almost all the time.
MAX_AUTO_THREADS = 8


_ENGINE_MODULES = ("prdit.models", "prdit.diffusion", "prdit.checkpoint", "prdit.sampling")


def preload_engine() -> list[str]:
    """Import the engine on the calling (GUI) thread; return the modules that are not available.

    Call it before the main window shows (see the module docstring for why).
    """
    missing = []
    for name in _ENGINE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` fails clearly when there is none."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but this torch build sees no CUDA GPU; choose CPU")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(name)


def _lower_thread_priority() -> None:
    """Give the calling (worker) thread a higher nice value, so the GUI thread wins the CPU.

    Linux applies nice per thread; torch's intra-op threads started from this thread inherit it.
    ``PRDIT_WORKER_NICE`` (default 0 = unchanged) sets the increment; no-op elsewhere.
    """
    try:
        inc = int(os.environ.get("PRDIT_WORKER_NICE", "0"))
    except ValueError:
        return
    if inc <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + inc)
    except OSError:
        pass


# --------------------------------------------------------------------------- mailbox
# --------------------------------------------------------------------------- data passed to the GUI
@dataclass(frozen=True)
class SampleRequest:
    """Everything one Generate run needs. Either ``checkpoint`` or ``model`` (+``model_info``)."""

    checkpoint: Path | None = None
    sampler: str = "hot"
    steps: int = 50
    k: int = 2
    seed: int = 0
    num_samples: int = 1
    device: str = "auto"
    record_xt: bool = True
    torch_threads: int | None = None
    precision: str | None = None  # prdit.precision (None: PRDIT_PRECISION, else auto: measured)
    model: Any = None  # an nn.Module already in memory (tests, the benchmark)
    model_info: ModelInfo | None = None

    def validate(self) -> None:
        if self.sampler not in ("hot", "cold"):
            raise ValueError(f"sampler must be 'hot' or 'cold', got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.sampler == "hot" and self.k < 1:
            raise ValueError(f"the hot sampler needs k >= 1, got {self.k}")
        if self.num_samples < 1:
            raise ValueError(f"number of samples must be at least 1, got {self.num_samples}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2^63), got {self.seed}")
        if self.model is None and self.checkpoint is None:
            raise ValueError("no model chosen: open a checkpoint first")
        if self.model is not None and self.model_info is None:
            raise ValueError("an in-memory model needs model_info")

    def seeds(self) -> list[int]:
        """One seed per sample (seed, seed+1, ...), as ``prdit sample`` numbers them."""
        return [self.seed + i for i in range(self.num_samples)]


@dataclass(frozen=True)
class StepUpdate:
    """One step, already in HU, as the GUI receives it."""

    index: int  # 0-based
    total: int
    t: int
    x0_hu: np.ndarray  # (B, D, H, W) float32 HU
    xt_hu: np.ndarray | None  # (B, D, H, W) float32, x_t mapped linearly to HU (not clipped)
    elapsed_s: float  # since the first model call
    steps_per_s: float
    eta_s: float
    final: bool


@dataclass
class SamplingResult:
    """A finished (or cancelled) run: one Volume per sample, plus what made it."""

    status: str  # "done" or "cancelled"
    volumes: list[Volume]
    info: ModelInfo
    request: SampleRequest
    steps_done: int
    elapsed_s: float


# --------------------------------------------------------------------------- the engine seam
StepSource = Callable[["SamplingWorker"], tuple[Iterator[Any], ModelInfo]]


def load_model(request: SampleRequest, device: torch.device) -> tuple[Any, ModelInfo]:
    """The model and its info for a request (loads the checkpoint on the worker thread)."""
    if request.model is not None:
        return request.model.to(device).eval(), request.model_info  # type: ignore[return-value]
    path = Path(request.checkpoint)  # type: ignore[arg-type]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from prdit.checkpoint import load_for_inference

    model, info = load_for_inference(path, device, use_ema=True)
    return model.eval(), info


def estimate_request(request: SampleRequest):
    """What ``request`` will need and the precision it would run in
    (:func:`prdit.estimate.estimate_sampling_run`): loads the model, traces one sampler step and
    times a few network evaluations. Runs off the GUI thread (the Generate panel's Estimate)."""
    from prdit.estimate import estimate_sampling_run

    request.validate()
    device = resolve_device(request.device)
    model, info = load_model(request, device)
    return estimate_sampling_run(
        model,
        info.input_size,
        request.num_samples,
        request.steps,
        sampler=request.sampler,
        k=request.k,
        diffusion=diffusion_for(info),
        device=device,
        precision=request.precision,
    )


def refuse_if_too_big(model: Any, info: ModelInfo, request: SampleRequest, device: torch.device) -> None:
    """Raise :class:`prdit.estimate.WouldNotFitError` before a run that would not fit starts."""
    from prdit.estimate import EstimateError, WouldNotFitError, estimate_sampling_run

    try:
        est, _ = estimate_sampling_run(
            model,
            info.input_size,
            request.num_samples,
            request.steps,
            sampler=request.sampler,
            k=request.k,
            diffusion=diffusion_for(info),
            device=device,
            precision=request.precision,
            probe=False,
        )
    except EstimateError:
        return  # an estimate that cannot be made must not stop sampling
    if not est.fits:
        raise WouldNotFitError(
            f"{request.num_samples} samples of {info.input_size}³ would not fit: {est.advice()}", est
        )


def engine_step_source(request: SampleRequest) -> StepSource:
    """The real source: load the model, then run ``prdit.diffusion.sample`` with per-sample seeds."""

    def open_source(worker: SamplingWorker) -> tuple[Iterator[Any], ModelInfo]:
        device = resolve_device(request.device)
        worker.status.emit(f"Loading model on {device.type.upper()}…")
        model, info = load_model(request, device)
        from prdit import diffusion  # preloaded on the GUI thread by preload_engine()

        size = info.input_size
        shape = (request.num_samples, 1, size, size, size)
        if sampling_needs_check(device, request.num_samples, size):
            worker.status.emit("Checking memory…")
            refuse_if_too_big(model, info, request, device)
        if device.type == "cpu" and request.precision in (None, "auto"):
            worker.status.emit("Measuring the fastest number format…")
        choice = choose_precision(request.precision, device, model, shape)
        worker.precision = choice.precision
        model = with_precision(model, choice)
        # Per-sample generators exactly as `prdit sample` makes them (on the sampling device, seed + i),
        # so the studio and the CLI give the same volume for the same seed, whatever the batch.
        gens = [torch.Generator(device=device).manual_seed(s) for s in request.seeds()]
        process = diffusion_for(info)
        gen = diffusion.sample(
            model,
            shape,
            sampler=request.sampler,
            steps=request.steps,
            k=request.k,
            generator=gens,
            device=device,
            return_xt=request.record_xt,
            diffusion=process,
        )
        return gen, info

    return open_source


def _to_numpy(x: Any) -> np.ndarray:
    """``[B, 1, D, H, W]`` (or ``[B, D, H, W]``) tensor/array -> float32 numpy ``(B, D, H, W)``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 5:
        if arr.shape[1] != 1:
            raise ValueError(f"expected one image channel, got shape {arr.shape}")
        arr = arr[:, 0]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected a [B, 1, D, H, W] volume batch, got shape {arr.shape}")
    return arr


def xt_to_hu(window: HUWindow, x: np.ndarray) -> np.ndarray:
    """Linear model-scale -> HU map *without* clipping, so the noise in x_t stays visible."""
    return ((x + 1.0) * 0.5 * (window.high - window.low) + window.low).astype(np.float32, copy=False)


def make_volume(hu: np.ndarray, info: ModelInfo, **metadata: Any) -> Volume:
    """A generated volume in patient space (:func:`prdit.sampling.volume_from_hu`)."""
    return volume_from_hu(hu, info, metadata)


def sample_metadata(
    request: SampleRequest, info: ModelInfo, sample: int, precision: str = "fp32"
) -> dict[str, Any]:
    """What made sample ``sample`` of a run: the same record ``prdit sample`` writes beside it
    (:func:`prdit.sampling.sample_sidecar`), so a studio export and a CLI sample say the same."""
    return sample_sidecar(
        info,
        seed=request.seed + sample,
        sampler=request.sampler,
        steps=request.steps,
        k=request.k,
        precision=precision,
    )


def describe_error(
    exc: BaseException, request: SampleRequest | None = None, phase: str = "sample"
) -> tuple[str, str]:
    """(title, message) for a dialog: name what failed and what the user can change."""
    text = str(exc) or exc.__class__.__name__
    estimate = getattr(exc, "estimate", None)
    if estimate is not None:  # refused before it started (prdit.estimate.WouldNotFitError)
        from prdit.estimate import human_bytes

        return (
            "Not enough memory",
            f"{text}.\n\nThe run would need ~{human_bytes(estimate.peak_bytes)}; "
            f"{human_bytes(estimate.available_bytes or 0)} is free on {estimate.device.upper()}. "
            "Nothing was started.",
        )
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        n = request.num_samples if request else "?"
        return (
            "Out of memory",
            f"Sampling ran out of memory ({text.splitlines()[0]}).\n\n"
            f"Try fewer samples (now {n}), a smaller model, or the other device.",
        )
    if phase == "load":
        where = request.checkpoint if request is not None and request.checkpoint is not None else "the model"
        return ("Cannot load the model", f"{where}:\n{exc.__class__.__name__}: {text}")
    if phase == "settings":
        return ("Invalid generation settings", text)
    return ("Generation failed", f"{exc.__class__.__name__}: {text}")


# --------------------------------------------------------------------------- the worker
class SamplingWorker(QObject):
    """Iterates a step source on its own thread; never touches widgets.

    Signals (all delivered queued to the GUI thread):
      * ``dataReady()`` — the :class:`LatestSlot` has a new :class:`StepUpdate`;
      * ``status(str)`` — a phase label ("Loading model…", "Sampling…");
      * ``finished(object)`` — a :class:`SamplingResult` (done or cancelled);
      * ``failed(str, str)`` — (title, message) for an error dialog.
    Exactly one of ``finished`` / ``failed`` is emitted per run.
    """

    dataReady = Signal()
    status = Signal(str)
    finished = Signal(object)
    failed = Signal(str, str)

    def __init__(
        self,
        request: SampleRequest,
        source: StepSource | None = None,
        slot: LatestSlot | None = None,
        on_step: Callable[[StepUpdate], None] | None = None,
    ) -> None:
        super().__init__()
        self.request = request
        self.source = source or engine_step_source(request)
        self.slot = slot if slot is not None else LatestSlot()
        self.on_step = on_step  # called on the worker thread (e.g. the trajectory recorder)
        self._cancel = threading.Event()
        self.steps_emitted = 0  # every Step converted and handed over (views may skip some)
        self.info: ModelInfo | None = None  # set on the worker thread once the model is loaded
        self.cancelled_at_step: int | None = None
        self.threads: ThreadGovernor | None = None
        self.precision = "fp32"  # what the network computed in (set by the step source)

    def cancel(self) -> None:
        """Thread-safe: ask the loop to stop after the step in progress."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        request = self.request
        _lower_thread_priority()
        gen: Iterator[Any] | None = None
        phase = "settings"
        try:
            request.validate()
            choice = choose_threads(request.torch_threads, max_threads=MAX_AUTO_THREADS)
            self.threads = apply_threads(choice, max_threads=MAX_AUTO_THREADS)
            phase = "load"
            gen, info = self.source(self)
            self.info = info
            phase = "sample"
            self.status.emit("Sampling…" if self.precision == "fp32" else f"Sampling ({self.precision})…")
            result = self._loop(gen, info)
        except BaseException as exc:  # noqa: BLE001 - everything must reach the GUI as a dialog
            title, message = describe_error(exc, request, phase)
            self.failed.emit(title, message)
            return
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # pragma: no cover - a generator's cleanup failing is not fatal
                    pass
        self.finished.emit(result)

    def _loop(self, gen: Iterator[Any], info: ModelInfo) -> SamplingResult:
        window = info.hu_window
        start = time.perf_counter()
        last: StepUpdate | None = None
        final_sample: Any = None
        status = "done"
        with torch.inference_mode():  # thread-local: covers the model calls made inside next(gen)
            for step in gen:
                total = int(step.total)
                index = int(step.index)
                x0_hu = window.to_hu(_to_numpy(step.x0_hat)).astype(np.float32, copy=False)
                xt = getattr(step, "x_t", None)
                xt_hu = xt_to_hu(window, _to_numpy(xt)) if xt is not None else None
                sample = getattr(step, "sample", None)
                if sample is not None:
                    final_sample = sample
                elapsed = time.perf_counter() - start
                done = index + 1
                rate = done / elapsed if elapsed > 0 else 0.0
                eta = (total - done) / rate if rate > 0 else math.inf
                final = done >= total
                update = StepUpdate(index, total, int(step.t), x0_hu, xt_hu, elapsed, rate, eta, final)
                self.steps_emitted += 1
                if self.threads is not None:
                    self.threads.tick()  # follow the free cores while other programs come and go
                if self.on_step is not None:
                    self.on_step(update)
                if self.slot.put(update):
                    self.dataReady.emit()
                last = update
                if self._cancel.is_set() and done < total:
                    self.cancelled_at_step = index
                    status = "cancelled"
                    break
        elapsed = time.perf_counter() - start
        if last is None:
            return SamplingResult(status, [], info, self.request, 0, elapsed)
        if final_sample is not None and status == "done":
            final_hu = window.to_hu(_to_numpy(final_sample)).astype(np.float32, copy=False)
        else:
            final_hu = last.x0_hu
        volumes = [
            make_volume(
                final_hu[b],
                info,
                **sample_metadata(self.request, info, b, self.precision),
                status=status,
                steps_done=last.index + 1,
            )
            for b in range(final_hu.shape[0])
        ]
        return SamplingResult(status, volumes, info, self.request, last.index + 1, elapsed)


# --------------------------------------------------------------------------- GUI-side controller
class SamplingController(QObject):
    """Owns the thread of one run at a time; lives on the GUI thread.

    Signals: ``stepReady(StepUpdate)`` (only the newest; frames may be skipped), ``status(str)``,
    ``finished(SamplingResult)``, ``failed(str, str)``, ``runningChanged(bool)``.
    """

    stepReady = Signal(object)
    status = Signal(str)
    finished = Signal(object)
    failed = Signal(str, str)
    runningChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: SamplingWorker | None = None
        self._slot = LatestSlot()
        self.last_update: StepUpdate | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def worker(self) -> SamplingWorker | None:
        """The current (or last) worker, for counters such as ``steps_emitted``."""
        return self._worker

    def start(
        self,
        request: SampleRequest,
        source: StepSource | None = None,
        on_step: Callable[[StepUpdate], None] | None = None,
    ) -> SamplingWorker:
        if self._thread is not None:
            raise RuntimeError("a generation is already running; cancel it first")
        self._slot = LatestSlot()
        self.last_update = None
        worker = SamplingWorker(request, source, self._slot, on_step)
        thread = QThread()
        thread.setObjectName("prdit-sampling")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.dataReady.connect(self._on_data_ready)
        worker.status.connect(self.status)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._worker, self._thread = worker, thread
        thread.start()
        self.runningChanged.emit(True)
        return worker

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel and wait (window closing); the worker stops after its current step."""
        thread = self._thread
        if thread is None:
            return
        self.cancel()
        thread.quit()
        thread.wait(timeout_ms)

    # -- slots on the GUI thread
    @Slot()
    def _on_data_ready(self) -> None:
        update = self._slot.take()
        if update is not None:
            self.last_update = update
            self.stepReady.emit(update)

    def _end(self) -> None:
        self._on_data_ready()  # the newest step is always shown, even if its wake-up raced the end
        thread = self._thread
        self._thread = None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        self.runningChanged.emit(False)

    @Slot(object)
    def _on_finished(self, result: SamplingResult) -> None:
        self._end()
        self.finished.emit(result)

    @Slot(str, str)
    def _on_failed(self, title: str, message: str) -> None:
        self._end()
        self.failed.emit(title, message)


# --------------------------------------------------------------------------- responsiveness probe
class StallMeter(QObject):
    """Measures how long the GUI event loop goes without running a 10 ms timer.

    A responsive loop fires the timer every ~10 ms; ``worst_gap_ms`` is the longest interval seen
    (the worst "freeze" a user would feel). Used by the tests and benchmarks/bench_gui_stall.py.
    """

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None) -> None:
        from PySide6.QtCore import QTimer

        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.gaps_ms: list[float] = []

    def start(self) -> None:
        self._last = time.perf_counter()
        self.gaps_ms.clear()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def worst_gap_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.gaps_ms, q)) if self.gaps_ms else 0.0


# --------------------------------------------------------------------------- short background jobs
class TaskCancelled(Exception):
    """Raised inside a task's progress callback once the user cancelled."""


class TaskWorker(QObject):
    """Runs ``fn(progress)`` on a QThread (exports: DICOM, NIfTI, GIF); never touches widgets.

    ``progress(done, total)`` is thread-safe; it raises :class:`TaskCancelled` after ``cancel()``
    so the job stops at its next progress report. Signals: ``progress(int, int)``,
    ``finished(object)`` (the return value), ``failed(str)``, ``cancelled()``.
    """

    progress = Signal(int, int)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fn: Callable[[Callable[[int, int], None]], Any]) -> None:
        super().__init__()
        self.fn = fn
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def report(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise TaskCancelled()
        self.progress.emit(int(done), int(total))

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(self.report)
        except TaskCancelled:
            self.cancelled.emit()
            return
        except Exception as exc:  # noqa: BLE001 - shown to the user as a dialog
            if exc.__class__.__name__ == "ExportCancelled" or self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(str(exc) or exc.__class__.__name__)
            return
        self.finished.emit(result)
