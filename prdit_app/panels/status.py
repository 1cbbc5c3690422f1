"""The status line and error label shared by the panels that run a ``prdit`` process (Train, Evaluate).

Why one place: both panels must report a refused start or a failed run the same way — the error stays
on screen, red and selectable (so it can be copied into a bug report), until the next action hides
it, while the one-line status says what state the panel is in. Keeping the widgets' set-up and the
show logic here stops the two panels from drifting apart (and keeps the object names the tests and
style sheets look for in one spot).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

#: the status shown when a start was refused before anything ran
NOT_STARTED = "Not started — see the error below"


def make_status_labels() -> tuple[QLabel, QLabel]:
    """``(status_label, error_label)``: the word-wrapped "Idle" status and the hidden error label."""
    status_label = QLabel("Idle")
    status_label.setObjectName("statusLabel")
    status_label.setWordWrap(True)
    error_label = QLabel()
    error_label.setObjectName("errorLabel")
    error_label.setWordWrap(True)
    error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    error_label.setStyleSheet("color: #ff7b7b;")
    error_label.hide()
    return status_label, error_label


def show_error(
    error_label: QLabel, status_label: QLabel, text: str, *, running: bool, status: str = NOT_STARTED
) -> None:
    """Show ``text`` in the error label; set ``status`` too unless a run is still going (its status wins)."""
    error_label.setText(text)
    error_label.show()
    if not running:
        status_label.setText(status)
