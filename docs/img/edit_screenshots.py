"""Screenshots of the Edit panel (docs/img/studio-edit-running.png, studio-edit-done.png).

Run from the repository root under Xvfb (about half a minute on 2 CPU cores)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/img/edit_screenshots.py

It drives the real studio window with the 3D view: a held-out 64^3 phantom (the bundled default
model's grid), a box placed on the right lung at the cursor, **Regenerate region** with the
default model (grabbed while the region forms, then when done).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shots_common import pump  # noqa: E402  (docs/img, this script's folder)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="prdit-edit-shots-"))
    os.environ.setdefault("PRDIT_SETTINGS", str(work / "settings.ini"))
    app = QApplication([])
    import numpy as np

    from prdit.data.phantom import Structure, generate_phantom
    from prdit_app.mainwindow import MainWindow
    from prdit_app.theme import apply_dark_theme
    from prdit_app.viewer import install_panels

    apply_dark_theme(app)
    win = MainWindow()
    install_panels(win)
    win.resize(1600, 1000)
    win.show()
    win.resizeDocks([win.dock], [420], Qt.Orientation.Horizontal)
    ph = generate_phantom(5, 64, return_labels=True)
    win.set_volume(ph.volume.with_array(ph.volume.array, modality="CT"), source="phantom seed 5 (64^3)")
    win.apply_wl_preset("lung")
    k, j, i = np.nonzero(ph.labels == Structure.LUNG)
    right = i < np.median(i)
    centre = np.array([i[right].mean(), j[right].mean(), k[right].mean()])
    win.state.set_cursor_lps(ph.volume.index_to_lps(np.rint(centre)))
    panel = win.edit_panel
    win.panel_tabs.setCurrentWidget(panel)
    panel.size_spin.setValue(90.0)
    panel.place_at_cursor()
    panel.steps_spin.setValue(50)
    pump(app, 1.0)
    panel.regenerate()
    pump(app, 120, until=lambda: panel.progress.value() >= 22)
    win.save_screenshot(ROOT / "docs/img/studio-edit-running.png")
    pump(app, 120, until=lambda: not panel.running)
    pump(app, 1.5)
    win.save_screenshot(ROOT / "docs/img/studio-edit-done.png")
    print(panel.status_label.text())
    win.close()  # stops the 3D render thread before the interpreter exits
    pump(app, 0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
