"""Put the Train and Evaluate panels into the studio window and wire them to the Generate panel.

One call from the window's panel registration (``prdit_app.viewer.install_panels``)::

    from prdit_app.panels.train_eval_install import install_train_eval_panels
    installed += install_train_eval_panels(window, window.app_model)

Wiring, all through plain signals/callables so each panel also works alone:

* Train's "Load in Generate" -> ``AppModel.loadCheckpointRequested`` (the Generate panel adds
  and selects it, and its tab comes to the front);
* Evaluate's "generate now" uses ``AppModel.selected_checkpoint`` (the checkpoint selected in the
  Generate panel when it is a file or folder, not a model held only in memory);
* on application quit a running training run is asked to save (SIGTERM) and waited for, and an
  evaluation is cancelled, so no orphan process keeps running.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QWidget


def install_train_eval_panels(window: Any, shared: Any) -> list[str]:
    """Add "Train" and "Evaluate" tabs with ``window.add_panel``; returns the titles added.

    A panel that fails to build is reported on stderr and in the status bar; the viewer keeps
    working without it.
    """
    installed: list[str] = []

    def load_in_generate(path: Path) -> None:
        shared.loadCheckpointRequested.emit(Path(path))  # the Generate panel adds, selects and shows it
        window.statusBar().showMessage(f"Checkpoint {path} loaded in the Generate panel", 6000)

    def train_panel() -> QWidget:
        from prdit_app.panels.train import TrainPanel

        return TrainPanel(load_in_generate=load_in_generate)

    def evaluate_panel() -> QWidget:
        from prdit_app.panels.evaluate import EvaluatePanel

        return EvaluatePanel(current_model=lambda: shared.selected_checkpoint)

    app = QApplication.instance()
    for title, factory in (("Train", train_panel), ("Evaluate", evaluate_panel)):
        try:
            panel = factory()
        except Exception as exc:  # noqa: BLE001 - one broken panel must not stop the viewer
            print(
                f"prdit-studio: the {title} panel is unavailable: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            window.statusBar().showMessage(f"{title} panel unavailable: {exc}", 8000)
            continue
        window.add_panel(panel, title)
        if app is not None:
            app.aboutToQuit.connect(panel.shutdown)
        installed.append(title)
    return installed
