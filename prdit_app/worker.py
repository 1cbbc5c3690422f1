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
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

from prdit.data.normalize import HUWindow
from prdit.model_info import ModelInfo  # the engine's model descriptor, re-exported for the app
from prdit.threads import ThreadGovernor, apply_threads, choose_threads
from prdit_app.latest import LatestSlot
from prdit_app.sampling_types import SampleRequest, SamplingResult, StepUpdate
from prdit_app.step_source import (
    StepSource,
    describe_error,
    engine_step_source,
    make_volume,
    sample_metadata,
)

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
                # every step but the last (t = 0: the state reached, no network call) is one evaluation
                evaluations_left = max(0, total - 1 - done) if total > 1 else 0
                eta = evaluations_left / rate if rate > 0 else math.inf
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
