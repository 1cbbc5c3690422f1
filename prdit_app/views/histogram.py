"""The value histogram with the display window on it, draggable, like 3D Slicer's window/level
widget: drag the band to move the level, drag an edge to change the width.

The histogram is of a strided subsample (at most ~2 M voxels, the same as the auto window uses), in
log counts so that small structures (bone, contrast) stay visible beside air and soft tissue. It is
recomputed when a new volume opens and, throttled, while generated frames stream in.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

from prdit_app.state import ViewerState, _subsample

BINS = 256


def value_histogram(array: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, counts) of a subsample of ``array``; a constant volume gets one bin 1 wide."""
    sample = _subsample(array)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.array([0.0, 1.0]), np.array([0])
    lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(sample, bins=bins, range=(lo, hi))
    return edges, counts


class WindowHistogram(pg.PlotWidget):
    """Histogram of the open volume with the window as a draggable band."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background="#1e1f22")
        self.setObjectName("windowHistogram")
        self.state = state
        self.setMinimumHeight(120)
        self.setMaximumHeight(170)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.getPlotItem().hideAxis("left")
        self.getPlotItem().setLabel("bottom", "value")
        self.curve = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=(120, 140, 170, 140), pen="#8aa0c0"
        )
        self.addItem(self.curve)
        self.band = pg.LinearRegionItem(brush=(255, 210, 74, 50), pen=pg.mkPen("#ffd24a", width=2))
        self.band.setZValue(10)
        self.addItem(self.band)
        self.band.sigRegionChanged.connect(self._band_moved)
        self._syncing = False
        self.edges: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.recompute)
        state.volumeChanged.connect(self._on_volume)
        state.windowLevelChanged.connect(lambda _w, _l: self._sync_band())
        if state.has_volume:
            self.recompute()

    def _on_volume(self, geometry_changed: bool) -> None:
        if geometry_changed:
            self.recompute()
        elif not self._timer.isActive():
            self._timer.start()  # streamed frames: at most ~3 histograms a second

    def recompute(self) -> None:
        volume = self.state.volume
        if volume is None:
            return
        self.edges, self.counts = value_histogram(volume.array)
        self.curve.setData(self.edges, np.log10(self.counts + 1.0))
        self.getPlotItem().setLabel("bottom", self.state.value_unit or "value")
        self._sync_band()

    def _sync_band(self) -> None:
        lo, hi = self.state.levels
        self._syncing = True
        try:
            self.band.setRegion((lo, hi))
            if self.edges is not None:
                # show the data and the whole window, whichever is wider
                self.setXRange(min(self.edges[0], lo), max(self.edges[-1], hi), padding=0.02)
        finally:
            self._syncing = False

    def _band_moved(self) -> None:
        if self._syncing:
            return
        lo, hi = self.band.getRegion()
        self.state.set_window_level(hi - lo, (hi + lo) / 2.0)
