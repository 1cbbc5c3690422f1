"""The Train panel drives a real ``prdit train`` child process on a tiny phantom run.

The run is the phantom-tiny preset shrunk to seconds on 2 CPU cores (16^3 volumes, 2 phantoms,
batch 2): started from the panel it must produce curve points read from metrics.jsonl, a preview
and a checkpoint; Stop (SIGTERM) must leave a checkpoint that Resume continues from; a run that
fails must show its error output and bring the panel back to idle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prdit.run_log import CurveData, JsonlTail, latest_preview, list_run_checkpoints
from prdit_app.panels.train import TrainPanel
from prdit_app.panels.train_command import TrainSettings, parse_overrides, resume_argv

pytestmark = pytest.mark.gui

# Seconds on 2 cores: tiny volumes, few phantoms, every step logged.
TINY = """\
data.phantom_count=2
data.phantom_val_count=1
data.cache=true
log.every=1
log.val_every=2
log.preview_every=2
checkpoint.every=2
checkpoint.keep_last=2
train.warmup_steps=1
train.threads=2
"""


def _tiny_form(panel: TrainPanel, out: Path, steps: int) -> None:
    panel.set_config("phantom-tiny")
    panel.phantom_radio.setChecked(True)
    panel.out_edit.setText(str(out))
    panel.model_combo.setCurrentText("PRDiT-XS/4/0")
    panel.size_spin.setValue(16)
    panel.steps_spin.setValue(steps)
    panel.batch_spin.setValue(2)
    panel.lr_edit.setText("1e-3")
    panel.device_combo.setCurrentText("cpu")
    panel.extra_edit.setPlainText(TINY)


@pytest.fixture
def panel(qtbot, tmp_path):
    p = TrainPanel(runs_root=tmp_path / "runs", poll_ms=100)
    qtbot.addWidget(p)
    yield p
    p.shutdown(timeout_ms=20000)


# ------------------------------------------------------------------ helpers without a process
def test_jsonl_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo', encoding="utf-8")
    assert tail.read_new() == [{"step": 1, "loss": 0.5}]
    with open(path, "a", encoding="utf-8") as f:
        f.write('ss": 0.4}\nnot json\n[1, 2]\n')
    assert tail.read_new() == [{"step": 2, "loss": 0.4}]
    assert tail.bad_lines == 2
    assert tail.read_new() == []
    path.write_text(
        '{"step": 1, "loss": 0.9}\n', encoding="utf-8"
    )  # a new run in the same folder: shorter file
    assert tail.read_new() == [{"step": 1, "loss": 0.9}]
    assert tail.reset


def test_curve_data_collects_losses_and_events():
    c = CurveData()
    c.add({"event": "start", "step": 0})
    c.add({"step": 20, "loss": 0.8, "loss_x0": 0.5, "loss_noise": 0.3, "steps_per_s": 2.0, "eta_s": 10})
    c.add({"step": 20, "val_loss": 0.7, "val_loss_ema": float("nan"), "preview": "p.png"})
    c.add({"step": 40, "checkpoint": "ck", "event": "stopped", "reason": "SIGTERM"})
    c.add({"no": "step"})
    assert c.points["loss"] == ([20.0], [0.8])
    assert c.points["val_loss"] == ([20.0], [0.7])
    assert "val_loss_ema" not in c.points  # NaN is not drawn
    assert (c.last_step, c.event, c.reason) == (40, "stopped", "SIGTERM")
    assert (c.steps_per_s, c.eta_s, c.last_checkpoint, c.last_preview) == (2.0, 10.0, "ck", "p.png")


def test_settings_become_a_prdit_train_command(tmp_path):
    s = TrainSettings(
        config="phantom-tiny", out_dir=str(tmp_path / "r"), data_dir=None, model_name="PRDiT-XS/4/0",
        input_size=16, stage=1, max_steps=7, batch_size=2, lr=2e-4, device="cpu", extra=["log.every=1"],
    )  # fmt: skip
    argv = s.argv()
    assert argv[1:4] == ["-m", "prdit", "train"]
    joined = " ".join(argv)
    for part in (
        "phantom-tiny --out", "data.source=phantom", "model.input_size=16", "train.batch_size=2",
        "train.lr=0.0002", "--max-steps 7", "--device cpu", "--set log.every=1", "model.init_from=null",
    ):  # fmt: skip
        assert part in joined
    s.data_dir, s.stage, s.init_from, s.model_name = "/data/x", 2, "/runs/s1", "PRDiT-XS/4/1"
    joined = " ".join(s.argv())
    assert "--data /data/x" in joined and "--init-from /runs/s1" in joined and "stage=2" in joined
    r = resume_argv(tmp_path / "r", 20, "cpu")
    assert r[4:] == [str(tmp_path / "r" / "config.yaml"), "--out", str(tmp_path / "r"), "--resume",
                     "--progress", "jsonl", "--max-steps", "20", "--device", "cpu"]  # fmt: skip
    assert "--progress jsonl" in " ".join(s.argv())  # machine-readable progress, no bar scraping


def test_parse_overrides_names_the_bad_line():
    assert parse_overrides("a.b=1\n\n# comment\nc=[1, 2]  # tail\n") == ["a.b=1", "c=[1, 2]"]
    with pytest.raises(ValueError, match="line 2.*KEY=VALUE"):
        parse_overrides("a=1\nnot an override\n")


def test_form_is_filled_from_presets_and_validated(panel, tmp_path):
    assert panel.config_combo.findText("phantom-tiny") >= 0
    panel.set_config("phantom-tiny")
    assert panel.model_combo.currentText() == "PRDiT-XS/4/0"
    assert panel.size_spin.value() == 32 and panel.batch_spin.value() == 4
    assert panel.phantom_radio.isChecked()
    assert Path(panel.out_edit.text()).name == "phantom-tiny"
    panel.set_config("lidc-stage2")
    assert panel.stage_combo.currentData() == 2 and panel.folder_radio.isChecked()
    assert panel.init_edit.isEnabled()
    # A folder source without a folder: a clear message, nothing started.
    panel.data_edit.setText("")
    assert not panel.start()
    assert "Data:" in panel.error_label.text() and not panel.running
    panel.set_config("phantom-tiny")
    panel.lr_edit.setText("2")
    assert not panel.start()
    assert "Learning rate" in panel.error_label.text()


# ------------------------------------------------------------------ real runs
def test_run_from_panel_gives_curves_and_checkpoints_and_stop_resume_continues(qtbot, panel, tmp_path):
    """One child process trains until Stop, a second resumes it to the end (two process start-ups
    are most of this test's time, so both requirements share them)."""
    loaded = []
    panel.loadCheckpointRequested.connect(loaded.append)
    out = tmp_path / "runs" / "tiny"
    _tiny_form(panel, out, steps=100000)
    assert panel.start(), panel.error_label.text()
    assert panel.running and not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    assert not panel.resume_button.isEnabled()

    # Phase 1: live curve points, a preview and a periodic checkpoint appear while it runs.
    qtbot.waitUntil(lambda: panel.curves.count("loss") >= 3 and bool(panel.checkpoints), timeout=90000)
    assert panel.running
    # periodic checkpoints every 2 steps, the last 2 kept: on a fast machine step 2 may already be gone,
    # and a listing taken between a save and its pruning of the oldest sees one more (the new one is
    # published before the old one goes, so a crash in between never leaves fewer)
    steps = [step for step, _ in panel.checkpoints]
    assert steps and all(st % 2 == 0 and st >= 2 for st in steps) and len(steps) <= 3, steps
    qtbot.waitUntil(lambda: panel.preview_caption.text().startswith("step "), timeout=10000)
    assert not panel.preview_label.pixmap().isNull()

    # Phase 2: Stop = STOP file + SIGTERM -> the run saves a checkpoint at the step it reached, exits 0
    # and removes the file (either request may be the one the run sees first).
    panel.stop_button.click()
    assert panel.stop_button.text() == "Kill"
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert panel.last_outcome.ok and panel.last_outcome.stopped, panel.log_view.plain_text()
    assert panel.curves.event == "stopped" and panel.curves.reason in ("SIGTERM", "STOP file")
    assert not (out / "STOP").exists()
    stopped_at = panel.curves.last_step
    assert list_run_checkpoints(out)[-1][0] == stopped_at
    assert "Resume continues" in panel.status_label.text()
    assert panel.resume_button.isEnabled() and panel.stop_button.text() == "Stop"
    # Start on the same folder is refused (it would mix two runs); Resume is the way on.
    assert not panel.start()
    assert "Resume" in panel.error_label.text()

    # Phase 3: Resume continues from that checkpoint to the new step budget.
    panel.steps_spin.setValue(stopped_at + 2)
    assert panel.resume(), panel.error_label.text()
    qtbot.waitUntil(lambda: not panel.running, timeout=90000)
    assert panel.last_outcome.ok, panel.log_view.plain_text()
    log = panel.log_view.plain_text()
    assert f"resumed from {out / 'checkpoints' / f'step_{stopped_at:07d}'}" in log
    assert "prdit train" in log  # the command line is shown with the run's output
    assert panel.status_label.text().startswith(f"Finished at step {stopped_at + 2}")
    assert panel.curves.event == "finished"

    # The curves hold exactly the JSONL's numbers, one point per logged step, across both runs.
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [(float(r["step"]), r["loss"]) for r in records if "loss" in r]
    assert [s for s, _ in losses] == [float(s) for s in range(1, stopped_at + 3)]
    xs, ys = panel.curves.points["loss"]
    assert list(zip(xs, ys, strict=True)) == losses
    drawn_x, _ = panel.plot_items["loss"].getData()
    assert len(drawn_x) == len(losses)
    assert panel.curves.count("val_loss") >= 1

    # Checkpoints listed newest first; "Load in Generate" hands the folder over.
    assert panel.checkpoints[-1][0] == stopped_at + 2
    assert panel.ckpt_list.item(0).text().startswith(f"step {stopped_at + 2}")
    panel.ckpt_list.setCurrentRow(0)
    panel.load_gen_button.click()
    assert loaded == [out / "checkpoints" / f"step_{stopped_at + 2:07d}"]
    # previews come every log.preview_every = 2 steps: the newest is the last even step reached
    newest_preview = (stopped_at + 2) // 2 * 2
    assert panel.preview_caption.text().startswith(f"step {newest_preview} "), panel.preview_caption.text()


def test_failing_run_shows_the_error_and_returns_to_idle(qtbot, panel, tmp_path):
    out = tmp_path / "runs" / "bad"
    _tiny_form(panel, out, steps=3)
    panel.extra_edit.setPlainText("train.ema_decay=5\n")  # the config check refuses it
    out.mkdir(parents=True)
    (out / "STOP").write_text("left by a run that was killed\n", encoding="utf-8")
    assert panel.start()
    assert not (out / "STOP").exists()  # it would have stopped the new run at once
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    outcome = panel.last_outcome
    assert not outcome.ok and outcome.exit_code == 2
    assert "train.ema_decay" in outcome.error
    assert panel.error_label.isVisible() or not panel.isVisible()
    assert "train.ema_decay" in panel.error_label.text()
    assert "train.ema_decay" in panel.log_view.plain_text()
    assert panel.status_label.text().startswith("Failed")
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


def test_open_run_shows_curves_and_checkpoints(qtbot, panel, tmp_path):
    run = tmp_path / "runs" / "old"
    (run / "checkpoints" / "step_0000010").mkdir(parents=True)
    for name in ("meta.json", "model.safetensors"):
        (run / "checkpoints" / "step_0000010" / name).write_text("{}", encoding="utf-8")
    (run / "checkpoints" / "step_0000020").mkdir()  # incomplete: not listed
    (run / "previews").mkdir()
    from PySide6.QtGui import QImage

    img = QImage(30, 10, QImage.Format.Format_RGB32)
    img.fill(0x808080)
    img.save(str(run / "previews" / "step_0000010.png"))
    img.save(str(run / "previews" / "step_0000005.png"))
    lines = [{"event": "start", "step": 0}] + [{"step": s, "loss": 1.0 / s} for s in range(1, 11)]
    lines.append({"step": 10, "checkpoint": "x", "event": "stopped", "reason": "SIGTERM"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    (run / "config.yaml").write_text(
        "name: old\nstage: 1\nmodel: {name: PRDiT-XS/4/0, input_size: 24}\n", encoding="utf-8"
    )
    assert latest_preview(run)[0] == 10
    panel.open_run(run)
    assert panel.curves.count("loss") == 10
    assert panel.size_spin.value() == 24
    assert panel.out_edit.text() == str(run.resolve())
    assert [s for s, _ in panel.checkpoints] == [10]
    assert panel.preview_caption.text().startswith("step 10")
    assert "Opened old: step 10, 1 checkpoint, stopped" == panel.status_label.text()
    assert panel.resume_button.isEnabled()
    # Lines appended later (a run going on elsewhere) appear on the next poll.
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 11, "loss": 0.05}) + "\n")
    panel.poll()
    assert panel.curves.count("loss") == 11
    # Not a run folder: refused with the reason.
    panel.open_run(tmp_path)
    assert "is it a run folder" in panel.error_label.text()


def test_installed_in_the_studio_window_load_in_generate_reaches_the_generate_panel(
    qtbot, tmp_path, monkeypatch
):
    """The hook the main window calls: two tabs, and the Train -> Generate -> Evaluate hand-overs."""
    monkeypatch.setenv("PRDIT_SETTINGS", str(tmp_path / "settings.ini"))
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow
    from prdit_app.panels.evaluate import EvaluatePanel
    from prdit_app.panels.generate import GeneratePanel

    window = MainWindow(enable_3d=False)
    qtbot.addWidget(window)
    assert install_panels(window) == ["Generate", "Edit", "Export", "Train", "Evaluate"]
    train, evaluate = window.findChild(TrainPanel), window.findChild(EvaluatePanel)
    generate = window.findChild(GeneratePanel)
    step = tmp_path / "run" / "checkpoints" / "step_0000010"
    step.mkdir(parents=True)
    (step / "meta.json").write_text(
        json.dumps({"model_name": "PRDiT-XS/4/0", "input_size": 16, "step": 10}), encoding="utf-8"
    )
    train.loadCheckpointRequested.emit(step)
    assert generate.model_combo.currentData() == str(step)
    assert window.panel_tabs.currentWidget() is generate
    # "Generate now" in the Evaluate panel uses the model selected in the Generate panel.
    assert Path(evaluate.current_model()) == step
    evaluate.gen_radio.setChecked(True)
    assert evaluate.model_edit.text() == str(step)


class _RecordingRunner:
    """Stands in for the ProcessRunner of a running run: records what Stop does, in order."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.running = True
        self.calls: list[tuple[str, bool]] = []

    def terminate(self) -> None:
        self.calls.append(("terminate", (self.run_dir / "STOP").exists()))

    def kill(self) -> None:
        self.calls.append(("kill", (self.run_dir / "STOP").exists()))
        self.running = False

    def wait(self, msecs: int = 30000) -> bool:
        return True


def test_stop_creates_the_stop_file_before_sigterm(panel, tmp_path):
    """Stop must work where SIGTERM does nothing (Windows): the STOP file comes first."""
    run_dir = tmp_path / "runs" / "live"
    run_dir.mkdir(parents=True)
    runner = _RecordingRunner(run_dir)
    panel.runner = runner
    panel.run_dir = run_dir
    panel._mode = "running"
    panel.stop()
    assert runner.calls == [("terminate", True)]
    assert (run_dir / "STOP").is_file()
    assert panel.stop_button.text() == "Kill"
    panel.stop()  # second press: kill, nothing else
    assert runner.calls == [("terminate", True), ("kill", True)]


def test_start_refuses_a_folder_with_the_log_of_a_run_without_checkpoint(panel, tmp_path):
    """The same rule as `prdit train`: a non-empty metrics.jsonl is a run; no process is started."""
    out = tmp_path / "runs" / "killed"
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n', encoding="utf-8")
    _tiny_form(panel, out, steps=3)
    assert not panel.start()
    assert not panel.running
    assert "saved no checkpoint" in panel.error_label.text() and str(out) in panel.error_label.text()


def test_estimate_runs_a_dry_run_and_tells_memory_and_time_without_writing(qtbot, panel, tmp_path):
    out = tmp_path / "runs" / "est"
    _tiny_form(panel, out, steps=3)
    assert panel.estimate()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    text = panel.status_label.text()
    assert text.startswith("Estimate: peak memory ~") and "per optimiser step" in text, text
    assert "--dry-run" in panel.log_view.plain_text() and "AdamW moments" in panel.log_view.plain_text()
    assert not out.exists() and panel.last_outcome is None  # nothing written, no run recorded
    assert panel.start_button.isEnabled()
    # a batch no machine holds: told before anything starts, with the largest that fits
    panel.batch_spin.setMaximum(10**8)
    panel.batch_spin.setValue(20_000_000)
    assert panel.estimate()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert panel.status_label.text().startswith("Would not fit")
    assert "largest train.batch_size that fits" in panel.error_label.text()
