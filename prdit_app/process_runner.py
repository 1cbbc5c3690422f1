"""Run a ``prdit`` subcommand in a child process and stream its output into the studio.

Why a separate process (and not a thread) for training and evaluation: a CUDA out-of-memory, a
segfault in a native library or a runaway allocation must never take the viewer down with it, and
the only robust way to stop a training run cleanly is a signal the run already handles
(``SIGTERM`` -> save a checkpoint and exit, see :mod:`prdit.training`).

:class:`ProcessRunner` is a thin QProcess wrapper shared by the Train and Evaluate panels:

* ``start(argv)`` with ``PYTHONUNBUFFERED=1`` so ``print`` reaches the panel as it happens;
* stdout and stderr are read separately and split into lines on ``\\n`` *and* ``\\r`` (tqdm redraws
  its bar with carriage returns); each line is emitted with its stream and whether it was a
  carriage-return redraw, so a log view can replace the bar in place instead of scrolling;
* the end of a run is one ``finished(RunOutcome)`` signal: exit code, whether it crashed or was
  stopped, and an error text (the last stderr lines) for any failure, so a panel can show what
  went wrong and return to idle in one place;
* ``terminate()`` sends SIGTERM (asks to save and exit), ``kill()`` SIGKILL (last resort).

:class:`LogView` is the read-only, size-bounded text view the panels show the output in.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal
from PySide6.QtGui import QFont, QFontDatabase, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

STDOUT, STDERR = "stdout", "stderr"
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ERROR_TAIL_LINES = 25


def prdit_command(subcommand: str, *args: str) -> list[str]:
    """``[python, -m, prdit, subcommand, ...]`` with this interpreter.

    ``sys.executable -m prdit`` works whether or not the ``prdit`` console script is on PATH (a
    source checkout, a frozen bundle's venv) and always runs the same code the studio imports.
    """
    return [sys.executable, "-m", "prdit", subcommand, *args]


def format_command(argv: Sequence[str]) -> str:
    """A shell-quoted command line the user can copy into a terminal to reproduce a run.

    ``python -m prdit train ...`` from a Python install; ``prdit train ...`` in a frozen
    (PyInstaller) bundle, where ``sys.executable`` is the studio binary and the ``prdit`` command
    sits beside it (packaging/pyinstaller/launcher.py) — no ``python`` to type there.
    """
    shown = list(argv)
    if shown and shown[0] == sys.executable:
        if getattr(sys, "frozen", False) and shown[1:3] == ["-m", "prdit"]:
            shown = ["prdit", *shown[3:]]
        else:
            shown[0] = "python"
    return shlex.join(shown)


@dataclass
class RunOutcome:
    """How a child process ended.

    ``ok`` is true only for exit code 0 without a crash. ``stopped`` marks a run ended on request
    (``terminate``/``kill`` from the panel), which is not a failure when it exits cleanly.
    ``error`` is empty for a success, else a readable explanation ending with the last stderr
    lines (the traceback or the ``prdit ...: error: ...`` message).
    """

    exit_code: int | None
    crashed: bool
    stopped: bool
    error: str = ""
    argv: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.crashed and self.exit_code == 0


class ProcessRunner(QObject):
    """One child process at a time; see the module docstring.

    Signals:
        started(): the process is running.
        line(str text, str stream, bool redraw): one output line; ``redraw`` when it ended with a
            carriage return (a progress bar drawing over itself).
        finished(RunOutcome): the process ended (or failed to start); emitted exactly once per start.
        runningChanged(bool)
    """

    started = Signal()
    line = Signal(str, str, bool)
    finished = Signal(object)
    runningChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, *, keep_lines: int = 400) -> None:
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._old_proc: QProcess | None = None
        self._argv: list[str] = []
        self._buffers = {STDOUT: "", STDERR: ""}
        self._stderr_tail: deque[str] = deque(maxlen=keep_lines)
        self._stdout_tail: deque[str] = deque(maxlen=keep_lines)
        self._stop_requested = False
        self._start_error: str | None = None
        self._done = True

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._proc is not None and not self._done

    @property
    def argv(self) -> list[str]:
        return list(self._argv)

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def stderr_tail(self, n: int = ERROR_TAIL_LINES) -> list[str]:
        return list(self._stderr_tail)[-n:]

    def stdout_tail(self, n: int = ERROR_TAIL_LINES) -> list[str]:
        return list(self._stdout_tail)[-n:]

    def pid(self) -> int | None:
        return int(self._proc.processId()) if self.running and self._proc is not None else None

    # ------------------------------------------------------------------ control
    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``argv`` (program first). Raises RuntimeError if a process is already running."""
        if self.running:
            raise RuntimeError("a process is already running; stop it first")
        if not argv:
            raise ValueError("empty command")
        self._argv = [str(a) for a in argv]
        self._buffers = {STDOUT: "", STDERR: ""}
        self._stderr_tail.clear()
        self._stdout_tail.clear()
        self._stop_requested = False
        self._start_error = None
        self._done = False

        if self._old_proc is not None:
            self._old_proc.deleteLater()
            self._old_proc = None
        proc = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
        # The child must import this very source tree even when the studio runs from a checkout.
        root = str(Path(__file__).resolve().parent.parent)
        old = environment.value("PYTHONPATH", "")
        if root not in old.split(os.pathsep):
            environment.insert("PYTHONPATH", root + (os.pathsep + old if old else ""))
        for k, v in (env or {}).items():
            environment.insert(str(k), str(v))
        proc.setProcessEnvironment(environment)
        if cwd is not None:
            proc.setWorkingDirectory(str(cwd))
        proc.readyReadStandardOutput.connect(lambda: self._read(STDOUT))
        proc.readyReadStandardError.connect(lambda: self._read(STDERR))
        proc.errorOccurred.connect(self._on_error)
        proc.finished.connect(self._on_finished)
        proc.started.connect(self.started)
        self._proc = proc
        self.runningChanged.emit(True)
        proc.start(self._argv[0], self._argv[1:])

    def terminate(self) -> None:
        """Ask the process to end (SIGTERM on POSIX): ``prdit train`` saves a checkpoint first."""
        if self.running and self._proc is not None:
            self._stop_requested = True
            self._proc.terminate()

    def kill(self) -> None:
        """End the process now (SIGKILL); nothing is saved."""
        if self.running and self._proc is not None:
            self._stop_requested = True
            self._proc.kill()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the process ends (tests, application shutdown). True when it ended."""
        if self._proc is None or self._done:
            return True
        return bool(self._proc.waitForFinished(msecs))

    # ------------------------------------------------------------------ internals
    def _read(self, stream: str) -> None:
        proc = self._proc
        if proc is None:
            return
        data = proc.readAllStandardOutput() if stream == STDOUT else proc.readAllStandardError()
        self._feed(stream, bytes(data.data()).decode("utf-8", errors="replace"))

    def _feed(self, stream: str, text: str) -> None:
        buf = self._buffers[stream] + text
        start = 0
        for i, ch in enumerate(buf):
            if ch not in "\r\n":
                continue
            # "\r\n" is one Windows line end, not a redraw followed by an empty line.
            if ch == "\r" and i + 1 < len(buf) and buf[i + 1] == "\n":
                continue
            piece = buf[start:i].rstrip("\r")
            start = i + 1
            if piece or ch == "\n":
                self._emit_line(piece, stream, redraw=ch == "\r")
        self._buffers[stream] = buf[start:]

    def _emit_line(self, text: str, stream: str, redraw: bool) -> None:
        text = ANSI_RE.sub("", text)  # tqdm moves the cursor between stacked bars
        tail = self._stderr_tail if stream == STDERR else self._stdout_tail
        if not redraw and text.strip():
            tail.append(text)
        self.line.emit(text, stream, redraw)

    def _flush_buffers(self) -> None:
        for stream in (STDOUT, STDERR):
            rest = self._buffers[stream]
            self._buffers[stream] = ""
            if rest.strip():
                self._emit_line(rest.rstrip("\r"), stream, redraw=False)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            program = self._argv[0] if self._argv else "?"
            detail = self._proc.errorString() if self._proc is not None else ""
            self._start_error = f"could not start {program}: {detail}"
            self._finish(None, crashed=True)

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        if self._proc is not None:
            self._read(STDOUT)
            self._read(STDERR)
        self._finish(exit_code, crashed=status == QProcess.ExitStatus.CrashExit)

    def _finish(self, exit_code: int | None, crashed: bool) -> None:
        if self._done:
            return
        self._done = True
        self._flush_buffers()
        outcome = RunOutcome(exit_code, crashed, self._stop_requested, argv=list(self._argv))
        if not outcome.ok:
            outcome.error = self._describe_failure(outcome)
        # Keep the finished QProcess (a child of this runner) until the next start: deleting it
        # here, inside its own signal, or deleteLater with a parent that may die first, crashes.
        self._old_proc, self._proc = self._proc, None
        self.runningChanged.emit(False)
        self.finished.emit(outcome)

    def _describe_failure(self, outcome: RunOutcome) -> str:
        name = " ".join(self._argv[2:4]) if self._argv[1:3] == ["-m", "prdit"] else Path(self._argv[0]).name
        if self._start_error:
            head = self._start_error
        elif outcome.crashed and outcome.stopped:
            head = f"{name} was stopped"
        elif outcome.crashed:
            head = f"{name} crashed (killed by a signal: out of memory or a native error?)"
        else:
            head = f"{name} failed with exit code {outcome.exit_code}"
        tail = self.stderr_tail() or self.stdout_tail()
        return head + (":\n" + "\n".join(tail) if tail else "")


class LogView(QPlainTextEdit):
    """Read-only monospace output view with a bounded number of lines.

    A line flagged ``redraw`` (a tqdm bar) replaces the previous redraw line instead of adding a
    new one, so a long run shows one live progress line, not thousands.
    """

    def __init__(self, parent=None, *, max_lines: int = 5000) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self._last_was_redraw = False

    def append_line(self, text: str, stream: str = STDOUT, redraw: bool = False) -> None:
        del stream  # one view for both streams: the order of events matters more than the source
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        if self._last_was_redraw:
            cursor = self.textCursor()
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.select(QTextCursor.SelectionType.BlockUnderCursor)
            cursor.removeSelectedText()
        self.appendPlainText(text)
        self._last_was_redraw = redraw
        if at_end:
            bar.setValue(bar.maximum())

    def append_message(self, text: str) -> None:
        """A message from the panel itself (command line, result), never replaced by a redraw."""
        for piece in text.splitlines() or [""]:
            self.append_line(piece)

    def plain_text(self) -> str:
        return self.toPlainText()
