"""The one "latest wins" hand-off between threads: a single-item mailbox.

Both places that feed a slower consumer from a faster producer use it: sampling steps to the GUI
(:mod:`prdit_app.worker`) and 3D frames to the render thread (:mod:`prdit_app.views.render_thread`).
A new item replaces one not yet taken (counted in ``dropped``), never queues behind it, so the
consumer always works on the newest state and memory stays at one item.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestSlot:
    """``put`` overwrites, ``take`` empties, ``wait_take`` blocks for an item (or ``close``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.dropped = 0  # items overwritten before anyone took them

    def put(self, item: Any) -> bool:
        """Store ``item``; True when the slot was empty (the consumer must be woken), False when
        a wake-up is pending already and will find the newer item."""
        with self._cond:
            was_empty = not self._full
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()
            return was_empty

    def take(self) -> Any:
        """The newest item, or None when there is none (never blocks)."""
        with self._cond:
            item, self._item, self._full = self._item, None, False
            return item

    def wait_take(self, then: Callable[[], None] | None = None) -> Any:
        """Block until an item arrives and take it (None once closed); ``then()`` runs under the
        slot's lock right after the take, so a consumer can mark itself busy with no gap."""
        with self._cond:
            while not self._full and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item, self._item, self._full = self._item, None, False
            if then is not None:
                then()
            return item

    @property
    def empty(self) -> bool:
        with self._cond:
            return not self._full

    def close(self) -> None:
        """Wake every waiter with None and drop what is pending (the consumer is stopping)."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()
