"""Run control shared by the panels that run a ``prdit`` command as a child process (Train,
Evaluate): start it with the command line shown in the log, move the progress bar from its
``--progress jsonl`` lines (:mod:`prdit.run_log`) and log everything else, and keep errors on
screen until the next action.

A mixin for a QWidget that has ``runner`` (:class:`~prdit_app.process_runner.ProcessRunner`),
``log_view``, ``progress`` (a QProgressBar), ``status_label`` and ``error_label``.
"""

from __future__ import annotations

import os

from prdit.run_log import Progress, parse_progress_line
from prdit_app.panels.status import NOT_STARTED, show_error
from prdit_app.process_runner import format_command


class ChildRunControl:
    @property
    def running(self) -> bool:
        return self.runner.running

    def start_child(self, argv: list[str], status: str, cwd: str | os.PathLike | None = None) -> bool:
        """Start ``argv``; False (with the reason on screen) when it cannot start."""
        self.log_view.append_message(f"$ {format_command(argv)}")
        try:
            self.runner.start(argv, cwd=cwd)
        except (RuntimeError, ValueError) as exc:
            self._show_error(str(exc))
            return False
        self.status_label.setText(status)
        return True

    def route_line(self, text: str, stream: str, redraw: bool) -> Progress | None:
        """A progress line moves the bar (and is returned); any other line goes to the log."""
        event = parse_progress_line(text)
        if event is None:
            self.log_view.append_line(text, stream, redraw)
            return None
        self.progress.setRange(0, max(event.total, 1))
        self.progress.setValue(event.done)
        return event

    def _show_error(self, text: str, status: str = NOT_STARTED) -> None:
        """Errors stay on screen (selectable) until the next action; the log keeps them too."""
        show_error(self.error_label, self.status_label, text, running=self.running, status=status)
