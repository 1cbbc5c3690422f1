"""What the studio's panels share, handed to them when they are built (instead of panels searching
the widget tree for each other).

* ``state`` — the viewer's document (the open volume, cursor, window, labels);
* the checkpoint selected in the Generate panel (a file or folder; None for an in-memory model),
  which Evaluate's "generate now" samples;
* the generation's trajectory and the sample shown, which Export writes as a GIF or PNG frames;
* requests to put a checkpoint into the Generate panel (Train's "Load in Generate").

The Generate panel publishes into it; the other panels read from it and listen to its signals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from prdit_app.state import ViewerState


class AppModel(QObject):
    #: the Generate panel's selected checkpoint changed (Path or None)
    checkpointSelected = Signal(object)
    #: the generation's trajectory changed (a new step, a new run, another sample shown)
    trajectoryChanged = Signal()
    #: someone asks for this checkpoint (Path) to be loaded and selected in the Generate panel
    loadCheckpointRequested = Signal(object)

    def __init__(self, state: ViewerState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.selected_checkpoint: Path | None = None
        self._trajectory: Callable[[], tuple[Any, int] | None] | None = None

    def set_selected_checkpoint(self, path: Path | None) -> None:
        path = Path(path) if path is not None and Path(path).exists() else None
        if path != self.selected_checkpoint:
            self.selected_checkpoint = path
            self.checkpointSelected.emit(path)

    def publish_trajectory(self, source: Callable[[], tuple[Any, int] | None]) -> None:
        """The Generate panel's ``() -> (TrajectoryStore, sample)``."""
        self._trajectory = source
        self.trajectoryChanged.emit()

    def trajectory(self) -> tuple[Any, int] | None:
        return self._trajectory() if self._trajectory is not None else None
