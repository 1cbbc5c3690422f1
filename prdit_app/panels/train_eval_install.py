"""Put the Train and Evaluate panels into the studio window and wire them to the Generate panel.

One call from the window's panel registration (``prdit_app.main.install_panels``)::

    from prdit_app.panels.train_eval_install import install_train_eval_panels
    installed += install_train_eval_panels(window)

Wiring, all through plain signals/callables so each panel also works alone:

* Train's "Load in Generate" -> ``GeneratePanel.add_checkpoint(path, select=True)`` and the
  Generate tab comes to the front;
* Evaluate's "generate now" uses the checkpoint selected in the Generate panel (when it is a file
  or folder, not a model held only in memory);
* on application quit a running training run is asked to save (SIGTERM) and waited for, and an
  evaluation is cancelled, so no orphan process keeps running.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QWidget


def find_generate_panel(window: Any) -> QWidget | None:
    """The window's Generate panel (a tab of ``window.panel_tabs``), or None."""
    tabs = getattr(window, "panel_tabs", None)
    if tabs is None:
        return None
    for i in range(tabs.count()):
        w = tabs.widget(i)
        if w is not None and w.objectName() == "generatePanel":
            return w
    return None


def _selected_checkpoint(generate: Any) -> Path | None:
    key = generate.model_combo.currentData() if generate is not None else None
    if not key or str(key).startswith("memory:"):
        return None
    p = Path(str(key))
    return p if p.exists() else None


def install_train_eval_panels(window: Any) -> list[str]:
    """Add "Train" and "Evaluate" tabs with ``window.add_panel``; returns the titles added.

    A panel that fails to build is reported on stderr and in the status bar; the viewer keeps
    working without it.
    """
    installed: list[str] = []

    def load_in_generate(path: Path) -> None:
        gen = find_generate_panel(window)
        if gen is None:
            window.statusBar().showMessage("No Generate panel to load the checkpoint into", 6000)
            return
        gen.add_checkpoint(Path(path), select=True)
        window.panel_tabs.setCurrentWidget(gen)
        window.statusBar().showMessage(f"Checkpoint {path} loaded in the Generate panel", 6000)

    def train_panel() -> QWidget:
        from prdit_app.panels.train import TrainPanel

        return TrainPanel(load_in_generate=load_in_generate)

    def evaluate_panel() -> QWidget:
        from prdit_app.panels.evaluate import EvaluatePanel

        return EvaluatePanel(current_model=lambda: _selected_checkpoint(find_generate_panel(window)))

    # The Generate panel is looked up at each use: it may be added after these two.
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
