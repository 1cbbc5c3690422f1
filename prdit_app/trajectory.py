"""The formation of a volume, kept compactly, and the widgets that replay it.

A diffusion run of 1000 steps at 128^3 would be 8 GB of float32 x0_hat per sample; we keep a
*fixed number* of snapshots instead. :class:`TrajectoryStore` records on the worker thread with a
doubling stride: it keeps every step while it has room, and whenever it overflows it drops every
other snapshot and doubles the stride — so what it holds is always spread evenly over the run so
far, whether the run finishes or is cancelled at step 37. The newest step is always kept as well
(the "tail"), so the scrubber ends on the final prediction. Snapshots are int16 HU (exact to
1 HU, half of float32); x_t is stored beside x0_hat, mapped linearly to HU without clipping so its
noise is visible.

:class:`TrajectoryWidget` is the scrubber (step slider, play, sample of the batch, x0_hat / x_t)
and :class:`ComparisonStrip` draws x_t and x0_hat side by side as two small tri-planar rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from prdit_app.sampling_types import StepUpdate

_I16 = np.iinfo(np.int16)


def to_int16_hu(hu: np.ndarray) -> np.ndarray:
    """Round HU to int16 (clipped to its range): the compact, lossless-enough snapshot format."""
    return np.clip(np.rint(hu), _I16.min, _I16.max).astype(np.int16)


@dataclass(frozen=True)
class Snapshot:
    """One recorded step: int16 HU ``(B, D, H, W)`` for x0_hat and optionally x_t."""

    index: int
    total: int
    t: int
    x0: np.ndarray
    xt: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return int(self.x0.nbytes + (self.xt.nbytes if self.xt is not None else 0))


class TrajectoryStore:
    """A memory-bounded record of x0_hat (and x_t) over a run; thread-safe.

    ``capacity`` snapshots at most (plus the newest step), and never more than ``byte_limit``
    bytes in all: when the limit allows fewer snapshots, the capacity shrinks; when it does not
    even allow x_t beside x0_hat, x_t is not recorded.
    """

    def __init__(self, capacity: int = 32, byte_limit: int = 512 * 2**20) -> None:
        if capacity < 2:
            raise ValueError(f"trajectory capacity must be at least 2 snapshots, got {capacity}")
        if byte_limit <= 0:
            raise ValueError(f"trajectory byte limit must be positive, got {byte_limit}")
        self.requested_capacity = capacity
        self.byte_limit = byte_limit
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._kept: dict[int, Snapshot] = {}
            self._tail: Snapshot | None = None
            self._stride = 1
            self.capacity = self.requested_capacity
            self.record_xt = True
            self.enabled = True
            self._planned_for: tuple[int, ...] | None = None

    # -- recording (worker thread)
    def _plan(self, shape: tuple[int, ...], has_xt: bool) -> None:
        """Fit capacity (and x_t) to the byte limit for volumes of ``shape`` (B, D, H, W)."""
        voxel_bytes = int(np.prod(shape)) * 2
        self.record_xt = has_xt
        per = voxel_bytes * (2 if has_xt else 1)
        # capacity snapshots + 1 tail must fit; below 2 snapshots first give up x_t
        cap = self.byte_limit // per - 1
        if cap < 2 and has_xt:
            self.record_xt = False
            per = voxel_bytes
            cap = self.byte_limit // per - 1
        self.capacity = int(min(self.requested_capacity, cap))
        self.enabled = self.capacity >= 1
        self._planned_for = tuple(shape)

    def record(self, update: StepUpdate) -> bool:
        """Offer one step; returns True when it was kept (beyond the transient tail)."""
        shape = tuple(update.x0_hu.shape)
        with self._lock:
            if self._planned_for != shape:
                if self._kept or self._tail is not None:
                    raise ValueError(
                        f"trajectory shape changed from {self._planned_for} to {shape}; reset() between runs"
                    )
                self._plan(shape, update.xt_hu is not None)
            if not self.enabled:
                return False
        # convert outside the lock: the GUI may read meanwhile
        x0 = to_int16_hu(update.x0_hu)
        xt = to_int16_hu(update.xt_hu) if (self.record_xt and update.xt_hu is not None) else None
        snap = Snapshot(update.index, update.total, update.t, x0, xt)
        with self._lock:
            self._tail = snap
            kept = update.index % self._stride == 0
            if kept:
                self._kept[update.index] = snap
                while len(self._kept) > self.capacity:
                    self._stride *= 2
                    self._kept = {i: s for i, s in self._kept.items() if i % self._stride == 0}
                kept = update.index in self._kept
            return kept

    # -- reading (GUI thread)
    def snapshots(self) -> list[Snapshot]:
        """Recorded steps in order, the newest step last."""
        with self._lock:
            snaps = [self._kept[i] for i in sorted(self._kept)]
            if self._tail is not None and self._tail.index not in self._kept:
                snaps.append(self._tail)
            return snaps

    def __len__(self) -> int:
        return len(self.snapshots())

    @property
    def nbytes(self) -> int:
        """Bytes held by the voxel data (shared tail counted once)."""
        with self._lock:
            total = sum(s.nbytes for s in self._kept.values())
            if self._tail is not None and self._tail.index not in self._kept:
                total += self._tail.nbytes
            return total

    @property
    def num_samples(self) -> int:
        snaps = self.snapshots()
        return int(snaps[0].x0.shape[0]) if snaps else 0

    @property
    def has_xt(self) -> bool:
        snaps = self.snapshots()
        return bool(snaps) and snaps[-1].xt is not None

    def volume(self, position: int, sample: int = 0, kind: str = "x0") -> np.ndarray:
        """float32 HU ``(D, H, W)`` of snapshot ``position`` (0 = earliest kept) for one sample."""
        snaps = self.snapshots()
        if not snaps:
            raise IndexError("the trajectory is empty")
        snap = snaps[position]
        if kind == "x0":
            data = snap.x0
        elif kind == "xt":
            if snap.xt is None:
                raise ValueError("x_t was not recorded for this run")
            data = snap.xt
        else:
            raise ValueError(f"kind must be 'x0' or 'xt', got {kind!r}")
        if not 0 <= sample < data.shape[0]:
            raise IndexError(f"sample {sample} out of range: the run has {data.shape[0]} samples")
        return data[sample].astype(np.float32)


# --------------------------------------------------------------------------- rendering helpers
def window_to_uint8(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """HU -> uint8 grey with a display window."""
    scaled = (np.asarray(hu, dtype=np.float32) - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def tri_planar_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Centre axial, coronal and sagittal slices of a ``(D, H, W)`` LPS volume, display-oriented.

    Radiological convention: axial with patient right on screen left and anterior up; coronal and
    sagittal with superior up (k grows towards superior, so those are flipped vertically).
    """
    d, h, w = volume.shape
    axial = volume[d // 2]
    coronal = volume[:, h // 2, :][::-1]
    sagittal = volume[:, :, w // 2][::-1]
    return [axial, coronal, sagittal]


def gray_qimage(gray: np.ndarray) -> QImage:
    """A deep-copied QImage of a 2D uint8 array (safe after the array is gone)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    h, w = gray.shape
    return QImage(gray.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


class ComparisonStrip(QWidget):
    """x_t (top row) and x0_hat (bottom row), each as three small centre slices."""

    def __init__(self, parent: QWidget | None = None, thumb: int = 96) -> None:
        super().__init__(parent)
        self.thumb = thumb
        self.window = (-1000.0, 1000.0)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        self._labels: dict[str, list[QLabel]] = {}
        for row, (key, title) in enumerate((("xt", "x_t"), ("x0", "x0_hat"))):
            name = QLabel(title)
            name.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(name, row, 0)
            labels = []
            for col in range(3):
                lab = QLabel()
                lab.setFixedSize(thumb, thumb)
                lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
                lab.setStyleSheet("background: black;")
                grid.addWidget(lab, row, col + 1)
                labels.append(lab)
            self._labels[key] = labels

    def set_volumes(self, xt: np.ndarray | None, x0: np.ndarray | None) -> None:
        for key, vol in (("xt", xt), ("x0", x0)):
            labels = self._labels[key]
            if vol is None:
                for lab in labels:
                    lab.clear()
                continue
            for lab, sl in zip(labels, tri_planar_slices(vol), strict=True):
                img = gray_qimage(window_to_uint8(sl, *self.window))
                lab.setPixmap(
                    QPixmap.fromImage(img).scaled(
                        self.thumb,
                        self.thumb,
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                )


class TrajectoryWidget(QWidget):
    """Scrubber over a :class:`TrajectoryStore`: step slider, play, sample, x0_hat / x_t.

    Emits ``shown(np.ndarray, str)`` with the float32 HU volume to display and a label such as
    "x0_hat · step 12/50 · sample 2"; the owner puts it in the views.
    """

    shown = Signal(object, str)

    def __init__(self, store: TrajectoryStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store if store is not None else TrajectoryStore()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("trajectorySlider")
        self.slider.setToolTip("Replay the prediction x0_hat at the recorded steps")
        self.play_button = QToolButton()
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play the formation")
        self.play_button.setCheckable(True)
        self.step_label = QLabel("no run yet")
        self.step_label.setObjectName("trajectoryStepLabel")
        # its own row, at least as wide as the longest text it shows ("step 1000/1000 · t=999"), so it
        # is never clipped; the longer label with the sample goes to the tooltip and the views
        widest = self.step_label.fontMetrics().horizontalAdvance("step 1000/1000 · t=999")
        self.step_label.setMinimumWidth(widest + 4)
        self.step_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.sample_spin = QSpinBox()
        self.sample_spin.setPrefix("sample ")
        self.sample_spin.setMinimum(1)
        self.sample_spin.setToolTip("Which sample of the batch to show")
        self.kind_combo = QComboBox()
        self.kind_combo.addItem("x0_hat (prediction)", "x0")
        self.kind_combo.addItem("x_t (noisy state)", "xt")
        self.kind_combo.setToolTip("Show the model's prediction of the clean volume, or the noisy state")
        self.side_by_side = QCheckBox("x_t | x0_hat side by side")
        self.strip = ComparisonStrip()
        self.strip.setVisible(False)

        top = QHBoxLayout()
        top.addWidget(self.play_button)
        top.addWidget(self.slider, 1)
        top.addWidget(self.step_label)
        row2 = QHBoxLayout()
        row2.addStretch(1)
        row2.addWidget(self.sample_spin)
        row2.addWidget(self.kind_combo)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(row2)
        lay.addWidget(self.side_by_side)
        lay.addWidget(self.strip)

        self._timer = QTimer(self)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self._advance)
        self.slider.valueChanged.connect(self._emit_current)
        self.sample_spin.valueChanged.connect(self._emit_current)
        self.kind_combo.currentIndexChanged.connect(self._emit_current)
        self.side_by_side.toggled.connect(self._on_side_by_side)
        self.play_button.toggled.connect(self._on_play)
        self.set_live(False)

    # -- states
    def set_live(self, live: bool) -> None:
        """While sampling the views follow the newest step; the scrubber waits for the end."""
        self._live = live
        for w in (self.slider, self.play_button, self.kind_combo):
            w.setEnabled(not live and len(self.store) > 0)
        if live:
            self.play_button.setChecked(False)

    def reload(self, show_last: bool = True) -> None:
        """Refresh after a run: slider range, samples, x_t availability."""
        n = len(self.store)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(n - 1, 0))
        if show_last:
            self.slider.setValue(max(n - 1, 0))
        self.slider.blockSignals(False)
        self.sample_spin.blockSignals(True)
        self.sample_spin.setMaximum(max(self.store.num_samples, 1))
        self.sample_spin.setSuffix(f" of {max(self.store.num_samples, 1)}")
        self.sample_spin.blockSignals(False)
        xt_item = self.kind_combo.model().item(1)
        if xt_item is not None:
            xt_item.setEnabled(self.store.has_xt)
        if not self.store.has_xt:
            self.kind_combo.setCurrentIndex(0)
        self.side_by_side.setEnabled(self.store.has_xt)
        self.set_live(self._live)
        if n:
            self._emit_current()

    def prepare(self, num_samples: int) -> None:
        """Before a run: the sample chooser covers the batch, so it works live as well."""
        self.sample_spin.blockSignals(True)
        self.sample_spin.setMaximum(max(num_samples, 1))
        self.sample_spin.setSuffix(f" of {max(num_samples, 1)}")
        self.sample_spin.blockSignals(False)
        self.step_label.setText("starting…")

    @property
    def sample(self) -> int:
        """0-based sample index the user chose."""
        return self.sample_spin.value() - 1

    @property
    def kind(self) -> str:
        return str(self.kind_combo.currentData())

    def show_live(self, update: StepUpdate) -> None:
        """While running: keep the label and the side-by-side strip on the newest step."""
        b = min(self.sample, update.x0_hu.shape[0] - 1)
        self.step_label.setText(f"step {update.index + 1}/{update.total} · t={update.t}")
        if self.strip.isVisible():
            xt = update.xt_hu[b] if update.xt_hu is not None else None
            self.strip.set_volumes(xt, update.x0_hu[b])

    # -- slots
    def _emit_current(self) -> None:
        if self._live:
            return
        snaps = self.store.snapshots()
        if not snaps:
            return
        pos = min(self.slider.value(), len(snaps) - 1)
        snap = snaps[pos]
        sample = min(self.sample, snap.x0.shape[0] - 1)
        kind = self.kind if self.store.has_xt else "x0"
        vol = self.store.volume(pos, sample, kind)
        name = "x0_hat" if kind == "x0" else "x_t"
        label = f"{name} · step {snap.index + 1}/{snap.total} · t={snap.t}"
        if snap.x0.shape[0] > 1:
            label += f" · sample {sample + 1}"
        # the panel's own line leaves out what the kind combo and the sample box beside it show,
        # so it fits a narrow dock; the views and the tooltip get the whole label
        self.step_label.setText(f"step {snap.index + 1}/{snap.total} · t={snap.t}")
        self.step_label.setToolTip(label)
        if self.strip.isVisible():
            xt = self.store.volume(pos, sample, "xt") if self.store.has_xt else None
            self.strip.set_volumes(xt, self.store.volume(pos, sample, "x0"))
        self.shown.emit(vol, label)

    def _on_side_by_side(self, on: bool) -> None:
        self.strip.setVisible(on)
        if on:
            self._emit_current()

    def _on_play(self, on: bool) -> None:
        self.play_button.setText("⏸" if on else "▶")
        if on:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self._timer.start()
        else:
            self._timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)
