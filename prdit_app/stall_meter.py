"""How long the GUI thread ever stalls: a timer that should fire every few milliseconds and records
the gaps between its ticks (tests and benchmarks measure responsiveness with it)."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QObject


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
