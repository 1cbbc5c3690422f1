"""Screenshots of the Train and Evaluate panels in use (docs/img/train-panel.png, evaluate-panel.png).

Run from the repository root under Xvfb (takes a few minutes on 2 CPU cores)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/img/panels_screenshots.py [WORK_DIR]

It drives the real studio window: a phantom-tiny training run started from the Train panel
(grabbed mid-run, with curves, a preview and checkpoints), then "generate N now" with that run's
checkpoint and an evaluation against procedural phantoms in the Evaluate panel.
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
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="prdit-shots-"))
    os.environ.setdefault("PRDIT_SETTINGS", str(work / "settings.ini"))  # leave the user's settings alone
    app = QApplication([])
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow
    from prdit_app.panels.train_eval_install import install_train_eval_panels
    from prdit_app.theme import apply_dark_theme

    apply_dark_theme(app)
    win = MainWindow(enable_3d=False)
    install_panels(win)
    install_train_eval_panels(win)
    win.resize(1600, 1000)
    win.show()
    win.resizeDocks([win.dock], [1120], Qt.Orientation.Horizontal)
    win.open_phantom(3, size=96)
    tabs = win.panel_tabs
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    train = tabs.widget(titles.index("Train"))
    evaluate = tabs.widget(titles.index("Evaluate"))

    # ---- Train: phantom-tiny, logged often enough to draw curves within a couple of minutes.
    tabs.setCurrentWidget(train)
    train.set_config("phantom-tiny")
    train.out_edit.setText(str(work / "runs" / "phantom-tiny"))
    train.steps_spin.setValue(800)
    train.device_combo.setCurrentText("cpu")
    train.extra_edit.setPlainText(
        "log.every=5\nlog.val_every=40\nlog.preview_every=80\ncheckpoint.every=80\ntrain.threads=2\n"
    )
    assert train.start(), train.error_label.text()
    ok = pump(app, 900, lambda: train.curves.last_step >= 250 and len(train.checkpoints) >= 2)
    assert ok, "training did not reach step 250 in time:\n" + train.log_view.plain_text()[-2000:]
    pump(app, 1.0)
    out = ROOT / "docs" / "img"
    app.primaryScreen().grabWindow(win.winId()).save(str(out / "train-panel.png"))
    print("train-panel.png at step", train.curves.last_step)
    train.stop()
    pump(app, 120, lambda: not train.running)
    ckpt = train.checkpoints[-1][1]

    # ---- Evaluate: 8 real phantoms vs 8 volumes generated now with that checkpoint.
    from prdit.data.io import write_nifti
    from prdit.data.phantom import generate_phantom

    real = work / "real-phantoms"
    real.mkdir(parents=True, exist_ok=True)
    for s in range(1000, 1008):
        write_nifti(generate_phantom(s, size=32), real / f"phantom_{s:05d}.nii.gz")
    tabs.setCurrentWidget(evaluate)
    evaluate.real_edit.setText(str(real))
    evaluate.gen_radio.setChecked(True)
    evaluate.model_edit.setText(str(ckpt))
    evaluate.count_spin.setValue(8)
    evaluate.gen_steps_spin.setValue(50)
    evaluate.gen_out_edit.setText(str(work / "generated"))
    evaluate.device_combo.setCurrentText("cpu")
    evaluate.set_metrics(["fid", "mmd", "msssim", "histogram", "anatomy"])
    evaluate.pairs_spin.setValue(20)
    evaluate.cache_dir = str(work / "cache")
    assert evaluate.start(), evaluate.error_label.text()
    ok = pump(app, 900, lambda: not evaluate.running)
    assert ok and evaluate.last_outcome.ok, evaluate.log_view.plain_text()[-3000:]
    assert pump(app, 300, lambda: evaluate.plot_data is not None)
    pump(app, 1.0)
    app.primaryScreen().grabWindow(win.winId()).save(str(out / "evaluate-panel.png"))
    print("evaluate-panel.png:", evaluate.status_label.text())
    for p in (train, evaluate):
        p.shutdown()
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
