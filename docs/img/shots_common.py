"""What the studio screenshot scripts in docs/img share: running the Qt event loop for a while."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtWidgets import QApplication


def pump(app: QApplication, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Process events for up to ``seconds``; with ``until``, stop as soon as it is true (and say
    whether it became true); without, run the whole time and return True."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None
