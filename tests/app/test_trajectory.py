"""The trajectory store stays within its memory budget and keeps snapshots spread over the run."""

from __future__ import annotations

import numpy as np
import pytest

from prdit_app.sampling_types import StepUpdate
from prdit_app.trajectory import TrajectoryStore, TrajectoryWidget, to_int16_hu, tri_planar_slices


def _update(index: int, total: int, batch: int = 2, size: int = 16, xt: bool = True) -> StepUpdate:
    x0 = np.full((batch, size, size, size), float(index), dtype=np.float32)
    x0[:, 0, 0, 0] = -1000.4  # rounds to -1000
    xt_hu = (x0 + 5000.0) if xt else None  # beyond the HU window on purpose: x_t is noisy
    return StepUpdate(index, total, 999 - index, x0, xt_hu, 0.1 * index, 10.0, 0.0, index == total - 1)


def test_memory_stays_bounded_after_200_steps():
    size, batch = 16, 2
    per = batch * size**3 * 2 * 2  # int16, x0 + x_t
    limit = 10 * per
    store = TrajectoryStore(capacity=32, byte_limit=limit)
    for i in range(200):
        store.record(_update(i, 200, batch, size))
        assert store.nbytes <= limit
    snaps = store.snapshots()
    # the byte limit wins over the requested 32: 9 snapshots + the newest step
    assert store.capacity == 9
    assert len(snaps) <= store.capacity + 1
    assert snaps[-1].index == 199 and snaps[0].index == 0
    gaps = np.diff([s.index for s in snaps[:-1]])
    assert len(set(gaps.tolist())) == 1, f"snapshots not evenly spread: {[s.index for s in snaps]}"
    assert snaps[0].x0.dtype == np.int16


def test_capacity_bound_and_even_spread_with_room():
    store = TrajectoryStore(capacity=32, byte_limit=1 << 30)
    for i in range(1000):
        store.record(_update(i, 1000, 1, 4))
    idx = [s.index for s in store.snapshots()]
    assert len(idx) <= 33
    assert idx[:3] == [0, 32, 64] and idx[-1] == 999


def test_short_run_keeps_every_step_and_values_roundtrip():
    store = TrajectoryStore(capacity=32)
    for i in range(20):
        store.record(_update(i, 20))
    assert [s.index for s in store.snapshots()] == list(range(20))
    vol = store.volume(7, sample=1, kind="x0")
    assert vol.dtype == np.float32 and vol[1, 1, 1] == 7.0 and vol[0, 0, 0] == -1000.0
    assert store.volume(7, sample=0, kind="xt")[1, 1, 1] == 5007.0  # x_t not clipped to the window
    with pytest.raises(IndexError, match="sample 2 out of range"):
        store.volume(0, sample=2)
    with pytest.raises(ValueError, match="kind"):
        store.volume(0, kind="noise")


def test_xt_dropped_when_only_x0_fits():
    size = 8
    per_x0 = size**3 * 2
    store = TrajectoryStore(capacity=32, byte_limit=4 * per_x0)  # x0+x_t would allow only 1
    for i in range(50):
        store.record(_update(i, 50, 1, size))
    assert not store.has_xt and store.nbytes <= 4 * per_x0 and len(store) >= 2


def test_cancelled_run_is_still_spread_evenly():
    store = TrajectoryStore(capacity=8)
    for i in range(37):  # a 1000-step run stopped at step 37
        store.record(_update(i, 1000, 1, 4))
    idx = [s.index for s in store.snapshots()]
    assert idx == [0, 8, 16, 24, 32, 36]


def test_shape_change_without_reset_is_an_error():
    store = TrajectoryStore()
    store.record(_update(0, 2, 1, 4))
    with pytest.raises(ValueError, match="reset"):
        store.record(_update(1, 2, 2, 4))
    store.reset()
    store.record(_update(0, 2, 2, 4))
    assert store.num_samples == 2


def test_int16_conversion_clips():
    out = to_int16_hu(np.array([-1e9, -1000.6, 0.4, 1e9]))
    assert out.tolist() == [-32768, -1001, 0, 32767]


def test_tri_planar_orientation():
    vol = np.zeros((4, 5, 6), dtype=np.float32)
    vol[3] = 1.0  # the most superior axial slice
    axial, coronal, sagittal = tri_planar_slices(vol)
    assert axial.shape == (5, 6) and coronal.shape == (4, 6) and sagittal.shape == (4, 5)
    assert coronal[0].all() and sagittal[0].all()  # superior is drawn at the top


def test_widget_scrubs_samples_and_xt(qtbot):
    store = TrajectoryStore(capacity=4)
    for i in range(10):
        store.record(_update(i, 10, batch=2, size=8))
    widget = TrajectoryWidget(store)
    qtbot.addWidget(widget)
    shown = []
    widget.shown.connect(lambda vol, label: shown.append((vol, label)))
    widget.reload()
    assert widget.slider.maximum() == len(store) - 1 and widget.slider.isEnabled()
    assert "step 10/10" in shown[-1][1]
    widget.slider.setValue(1)
    assert shown[-1][0][1, 1, 1] == float(store.snapshots()[1].index)
    widget.sample_spin.setValue(2)
    assert "sample 2" in shown[-1][1]
    widget.kind_combo.setCurrentIndex(1)
    assert shown[-1][1].startswith("x_t") and shown[-1][0][1, 1, 1] > 4000
    # the panel line stays short enough for a narrow dock; the whole label is in the views and tooltip
    assert widget.step_label.text().startswith("step ") and "sample" not in widget.step_label.text()
    assert widget.step_label.toolTip() == shown[-1][1]
    widget.side_by_side.setChecked(True)
    assert widget.strip.isVisibleTo(widget)
    assert widget.strip._labels["xt"][0].pixmap() is not None
    # play runs to the end and stops
    widget.slider.setValue(0)
    widget._timer.setInterval(1)
    widget.play_button.setChecked(True)
    qtbot.waitUntil(lambda: not widget.play_button.isChecked(), timeout=3000)
    assert widget.slider.value() == widget.slider.maximum()
