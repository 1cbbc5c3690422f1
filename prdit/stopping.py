"""Asking a training run to stop: signals caught from the first moment, and a portable STOP file.

Why a module of its own, without torch: ``prdit train`` spends its first seconds importing torch.
Until a handler is installed, SIGTERM (a scheduler's pre-emption, the studio's Stop) kills the
process outright. :func:`install_early_handlers` is called first thing by ``prdit train``; the
handler only records the request, and the training loop, once it runs, reads it
(:func:`pending_signal`) and stops cleanly before or after its current step.

The STOP file (``<run_dir>/STOP``) is the same request for platforms without useful signals
(``QProcess.terminate`` on Windows posts a window message a console program never reads) and for
people on a shared cluster who may not signal another user's job: create the file and the run
saves a checkpoint and exits with status 0; it removes the file when it ends. A STOP file older
than the run is left over from a run that was killed, and is removed (with a message) instead of
stopping the new run at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

STOP_FILE_NAME = "STOP"

_lock = threading.Lock()
_state: dict[str, Any] = {"reason": None, "old": {}, "since": None}


def _handle(signum: int, frame: Any) -> None:  # noqa: ARG001
    if _state["reason"] is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C during start-up: leave at once
    _state["reason"] = signal.Signals(signum).name


def install_early_handlers() -> bool:
    """Record SIGINT/SIGTERM from now on instead of dying; False when not on the main thread.

    Idempotent. The training loop's own handler (``prdit.training``) replaces these while it runs
    and first takes over any request recorded here.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if _state["since"] is None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                _state["old"][sig] = signal.signal(sig, _handle)
            _state["since"] = time.time()
    return True


def pending_signal() -> str | None:
    """ "SIGTERM"/"SIGINT" if one arrived since :func:`install_early_handlers`, else None."""
    return _state["reason"]


def process_started() -> float | None:
    """``time.time()`` when the early handlers were installed (None if they never were)."""
    return _state["since"]


def restore_handlers() -> None:
    """Put back the handlers that were in place before :func:`install_early_handlers`."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for sig, old in _state["old"].items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        _state.update(reason=None, old={}, since=None)


def stop_file(run_dir: str | os.PathLike) -> Path:
    """The file whose appearance asks the run in ``run_dir`` to save and stop."""
    return Path(run_dir) / STOP_FILE_NAME


def request_stop(run_dir: str | os.PathLike) -> Path:
    """Create ``<run_dir>/STOP`` (what the studio's Stop does first; ``touch`` does the same)."""
    path = stop_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stop requested\n", encoding="utf-8")
    return path


def remove_stop_file(run_dir: str | os.PathLike) -> bool:
    """Delete ``<run_dir>/STOP`` if present; True when one was removed."""
    try:
        stop_file(run_dir).unlink()
    except FileNotFoundError:
        return False
    return True


def stale_stop_file(run_dir: str | os.PathLike, started: float, slack_s: float = 2.0) -> bool:
    """True when a STOP file exists and was written before ``started`` (minus ``slack_s``).

    Such a file was meant for an earlier run (one killed before it could remove it). The slack
    allows for coarse file-system timestamps; a request made while this run starts is newer.
    """
    try:
        mtime = stop_file(run_dir).stat().st_mtime
    except FileNotFoundError:
        return False
    return mtime < started - slack_s


class StopFlag:
    """SIGINT/SIGTERM (main thread only), an optional threading.Event and the STOP file -> one flag.

    A signal that arrived before the loop (recorded by :mod:`prdit.stopping`'s early handlers
    while torch was importing) is taken over on entry.
    """

    def __init__(self, event: threading.Event | None, stop_path: Path | None = None) -> None:
        self.event = event
        self.stop_path = stop_path
        self.signal_name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        self.signal_name = pending_signal()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def reason(self) -> str | None:
        if self.signal_name:
            return self.signal_name
        if self.event is not None and self.event.is_set():
            return "stop"
        if self.stop_path is not None and self.stop_path.exists():
            return "STOP file"
        return None
