"""The one latest-wins mailbox shared by the sampling worker and the 3D render thread."""

from __future__ import annotations

import threading
import time

from prdit_app.latest import LatestSlot


def test_newest_item_wins_and_drops_are_counted():
    slot = LatestSlot()
    assert slot.put(1) is True and slot.put(2) is False and slot.put(3) is False
    assert slot.dropped == 2 and slot.take() == 3 and slot.take() is None and slot.empty


def test_wait_take_blocks_until_an_item_or_close():
    slot = LatestSlot()
    got = []
    busy = []

    def consumer():
        while (item := slot.wait_take(then=lambda: busy.append(True))) is not None:
            got.append(item)

    t = threading.Thread(target=consumer)
    t.start()
    slot.put("a")
    deadline = time.time() + 5
    while not got and time.time() < deadline:
        time.sleep(0.01)
    slot.close()
    t.join(5)
    assert got == ["a"] and busy == [True] and not t.is_alive()
