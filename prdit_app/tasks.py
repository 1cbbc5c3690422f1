"""Short background jobs with progress and cancel (exports): a QObject worker run on a QThread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


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
