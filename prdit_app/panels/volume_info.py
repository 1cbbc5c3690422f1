"""The Volume tab: what is open (source, size, spacing, origin, orientation, value range, the file's
metadata under readable names) and the value histogram with the window as a draggable band."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QVBoxLayout,
    QWidget,
)

from prdit_app.orientation import orientation_code
from prdit_app.state import ViewerState

#: Metadata keys the readers and generators record, and the names shown for them (in this order).
METADATA_NAMES = {
    "modality": "Modality",
    "series_description": "Series description",
    "SeriesDescription": "Series description",
    "series_uid": "Series UID",
    "format": "File format",
    "single_slice": "Single slice",
    "window_width": "Window width (file)",
    "window_center": "Window centre (file)",
    "seed": "Seed",
    "model_name": "Model",
    "checkpoint": "Checkpoint",
    "sampler": "Sampler",
    "steps": "Sampling steps",
    "k": "Hot-sampler k",
    "precision": "Precision",
    "status": "Generation",
    "steps_done": "Steps done",
}


def _readable(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class InfoPanel(QWidget):
    """What is open: source, size, spacing, orientation, value range, metadata."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.label = QLabel(
            "No volume open.\n\nFile > Open, drop a file here, or run\nprdit-studio --phantom 0"
        )
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        from prdit_app.views.histogram import WindowHistogram

        self.histogram = WindowHistogram(state)
        self.histogram.setToolTip("Values of the volume (log counts); drag the band to move the window")
        layout = QVBoxLayout(self)
        layout.addWidget(self.histogram)
        layout.addWidget(self.label)
        layout.addStretch(1)
        state.volumeChanged.connect(self._on_volume)

    def _on_volume(self, geometry_changed: bool) -> None:
        if not geometry_changed:
            return  # streamed frames: same geometry, skip the (cheap but pointless) range pass
        v = self.state.volume
        if v is None:
            return
        lo, hi = float(np.min(v.array)), float(np.max(v.array))
        grid = self.state.grid
        rows = [
            ("Source", self.state.source or "(in memory)"),
            ("Size (i x j x k)", " x ".join(str(s) for s in v.size_ijk)),
            ("Spacing (mm)", ", ".join(f"{s:.4g}" for s in v.spacing)),
            ("Origin LPS (mm)", ", ".join(f"{o:.1f}" for o in v.origin)),
            (
                "Orientation (i, j, k)",
                orientation_code(v)
                + (" (oblique: shown on its voxel grid)" if grid is not None and grid.is_oblique(v) else ""),
            ),
            ("Voxel type", str(v.array.dtype)),
            ("Value range", f"{lo:.0f} .. {hi:.0f}"),
        ]
        for key, name in METADATA_NAMES.items():
            value = v.metadata.get(key)
            if value not in (None, ""):
                rows.append((name, _readable(value)))
        html = "".join(f"<tr><td style='color:#999'>{k}</td><td>&nbsp;{v_}</td></tr>" for k, v_ in rows)
        self.label.setText(f"<table>{html}</table>")
