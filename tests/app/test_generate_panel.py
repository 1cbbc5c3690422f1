"""The Generate panel end to end with a fake sampler: settings -> request, live streaming into the
views, cancel, errors as dialogs (the panel returns to idle), the scrubber after the run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fakes import CountingModel, fake_source  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from prdit.model_info import ModelInfo  # noqa: E402
from prdit.paths import bundled_model, bundled_models  # noqa: E402
from prdit_app.panels.generate import (  # noqa: E402
    GeneratePanel,
    describe_model,
    format_eta,
    peek_model_info,
)

INFO = ModelInfo(
    "PRDiT-XS/4/0", 8, spacing=(1.5, 1.5, 2.0), sha256="cd" * 32, source="/models/tiny.safetensors"
)


def _write_model_file(path: Path, name="PRDiT-XS/4/0", size=16, sampling=None) -> Path:
    from safetensors.torch import save_file

    meta = {"model_name": name, "input_size": size, "spacing": [2.0, 2.0, 2.0], "step": 1200}
    if sampling is not None:
        meta["sampling"] = sampling
    save_file({"w": torch.zeros(2)}, str(path), metadata={"prdit": json.dumps(meta)})
    return path


@pytest.fixture
def panel(qtbot, tmp_path):
    shown = []
    p = GeneratePanel(show_volume=shown.append, models_dir=tmp_path / "no-models")
    p.shown_log = shown
    qtbot.addWidget(p)
    return p


def _use_fake(panel, model: CountingModel):
    panel.add_model(model, INFO)
    panel.source_factory = lambda req: fake_source(model, req.steps, req.num_samples, INFO)


def _wait_idle(qtbot, panel, timeout=20000):
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)


def test_no_model_means_no_start(panel):
    assert panel.model_combo.count() == 0
    assert not panel.start_button.isEnabled()
    assert "No model" in panel.model_info_label.text()


def test_bundled_default_is_preselected_and_described(qtbot, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _write_model_file(models / "another.safetensors", "PRDiT-B/12/4", 128)
    _write_model_file(models / "default.safetensors")
    (models / "notes.txt").write_text("not a model", encoding="utf-8")
    assert [p.name for p in bundled_models(models)] == ["default.safetensors", "another.safetensors"]
    assert bundled_model("another", models) == models / "another.safetensors"
    assert bundled_model("missing", models) is None
    p = GeneratePanel(models_dir=models)
    qtbot.addWidget(p)
    assert p.model_combo.currentText().startswith("default")
    text = p.model_info_label.text()
    assert "PRDiT-XS/4/0" in text and "size XS" in text and "stage 1" in text and "16³" in text
    assert "1,200 steps" in text and p.start_button.isEnabled()
    p.model_combo.setCurrentIndex(1)
    assert "768 wide, 12 heads" in p.model_info_label.text() and "4 DiT blocks" in p.model_info_label.text()


def test_selecting_a_model_applies_its_recommended_sampler(qtbot, tmp_path):
    """A model tuned for k = 4 and 30 steps starts there; one without a recommendation gets k = 2."""
    models = tmp_path / "models"
    models.mkdir()
    _write_model_file(models / "default.safetensors", sampling={"sampler": "hot", "k": 4, "steps": 30})
    _write_model_file(models / "other.safetensors")
    _write_model_file(models / "broken.safetensors", sampling={"k": "four"})
    p = GeneratePanel(models_dir=models)
    qtbot.addWidget(p)
    assert (p.k_spin.value(), p.steps_spin.value(), p.request().k) == (4, 30, 4)
    assert "hot, k = 4, 30 steps (recommended by the model)" in p.model_info_label.text()
    p.model_combo.setCurrentIndex(p.model_combo.findText("other", Qt.MatchFlag.MatchStartsWith))
    assert p.k_spin.value() == 2 and p.steps_spin.value() == 21  # none recommended: the measured default
    assert "(paper default)" in p.model_info_label.text()
    p.model_combo.setCurrentIndex(0)
    p.k_spin.setValue(3)  # the user's own choice stands until they pick another model
    assert p.request().k == 3
    # an unreadable recommendation falls back to the paper's (the load on Start names the problem)
    p.model_combo.setCurrentIndex(p.model_combo.findText("broken", Qt.MatchFlag.MatchStartsWith))
    assert p.k_spin.value() == 2


def test_peek_handles_unreadable_and_reference_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert peek_model_info(bad) is None
    assert "reference-layout" in describe_model(None, tmp_path / "ref.pt")
    assert (
        format_eta(float("inf")) == "ETA –"
        and format_eta(75) == "ETA 1:15"
        and format_eta(3725) == "ETA 1:02:05"
    )


def test_settings_make_the_request(panel):
    panel.add_model(object(), INFO)
    panel.sampler_combo.setCurrentIndex(1)
    assert not panel.k_spin.isEnabled()
    panel.sampler_combo.setCurrentIndex(0)
    assert panel.k_spin.isEnabled() and panel.k_spin.value() == 2
    panel.steps_spin.setValue(37)
    panel.seed_spin.setValue(11)
    panel.samples_spin.setValue(3)
    panel.device_combo.setCurrentIndex(1)
    req = panel.request()
    assert (req.sampler, req.steps, req.k, req.seed, req.num_samples, req.device) == (
        "hot",
        37,
        2,
        11,
        3,
        "cpu",
    )
    assert req.seeds() == [11, 12, 13] and req.model_info is INFO
    devices = [panel.device_combo.itemData(i) for i in range(panel.device_combo.count())]
    assert devices[:2] == ["auto", "cpu"] and ("cuda" in devices) == torch.cuda.is_available()
    seeds = set()
    for _ in range(5):
        panel.dice_button.click()
        seeds.add(panel.seed_spin.value())
    assert len(seeds) > 1


def test_run_streams_into_the_views_then_scrubs(qtbot, panel):
    model = CountingModel(size=8)
    _use_fake(panel, model)
    panel.steps_spin.setValue(10)
    panel.samples_spin.setValue(2)
    finished = []
    panel.runFinished.connect(finished.append)
    assert panel.start()
    assert panel.cancel_button.isEnabled() and not panel.start_button.isEnabled()
    assert not panel.steps_spin.isEnabled()
    _wait_idle(qtbot, panel)
    result = finished[0]
    assert result.status == "done" and panel.controller.worker.steps_emitted == 10
    assert panel.progress.value() == 10 and panel.step_label.text() == "Step 10/10 · NFE 9"
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    streamed = [v for v in panel.shown_log if "generated" in v.metadata]
    assert 1 <= len(streamed) <= 10 + 1  # the views may skip steps
    last = panel.shown_log[-1]
    assert last is result.volumes[0]  # the final sample, exact float32, is what stays on screen
    assert panel.shown_volume() is last
    assert last.spacing == (1.5, 1.5, 2.0) and last.metadata["seed"] == 0
    # the scrubber: earliest snapshot, then the second sample, then x_t
    assert len(panel.store) == 10
    panel.trajectory.slider.setValue(0)
    first = panel.shown_log[-1]
    assert "step 1/10" in first.metadata["generated"] and not np.allclose(first.array, last.array, atol=2)
    panel.trajectory.slider.setValue(panel.trajectory.slider.maximum())
    panel.trajectory.sample_spin.setValue(2)
    assert panel.shown_log[-1] is result.volumes[1] and panel.shown_log[-1].metadata["seed"] == 1
    panel.trajectory.kind_combo.setCurrentIndex(1)
    assert panel.shown_log[-1].metadata["generated"].startswith("x_t")
    prov = panel.provenance_for()
    assert (
        prov["seed"] == 1
        and prov["checkpoint_sha256"] == "cd" * 32
        and prov["checkpoint"] == "tiny.safetensors"
    )


def test_cancel_button_stops_and_returns_to_idle(qtbot, panel):
    model = CountingModel(size=8, delay_s=0.03)
    _use_fake(panel, model)
    panel.steps_spin.setValue(500)
    panel.start()
    qtbot.waitUntil(lambda: panel.last_update is not None, timeout=10000)
    panel.cancel_button.click()
    calls = model.calls
    _wait_idle(qtbot, panel)
    assert model.calls - calls <= 1
    assert panel.result.status == "cancelled" and "Cancelled" in panel.status_label.text()
    assert panel.start_button.isEnabled() and panel.trajectory.slider.isEnabled()


def test_model_error_shows_a_dialog_and_panel_returns_to_idle(qtbot, panel, monkeypatch):
    dialogs = []
    monkeypatch.setattr(
        "prdit_app.panels.generate.QMessageBox.critical",
        lambda parent, title, text: dialogs.append((title, text)),
    )
    _use_fake(panel, CountingModel(size=8, fail_at=3))
    panel.steps_spin.setValue(10)
    panel.start()
    _wait_idle(qtbot, panel)
    assert dialogs and dialogs[0][0] == "Generation failed" and "exploded" in dialogs[0][1]
    assert (
        panel.start_button.isEnabled()
        and not panel.cancel_button.isEnabled()
        and panel.steps_spin.isEnabled()
    )


def test_bad_checkpoint_shows_a_dialog(qtbot, panel, monkeypatch, tmp_path):
    dialogs = []
    monkeypatch.setattr(
        "prdit_app.panels.generate.QMessageBox.critical",
        lambda parent, title, text: dialogs.append((title, text)),
    )
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    panel.add_checkpoint(bad)
    assert "no metadata" in panel.model_info_label.text()
    panel.steps_spin.setValue(2)
    panel.start()
    _wait_idle(qtbot, panel)
    assert dialogs[0][0] == "Cannot load the model" and "broken.safetensors" in dialogs[0][1]
    assert panel.start_button.isEnabled()


def test_in_the_studio_window_steps_stream_into_the_viewer_and_export_finds_them(
    qtbot, tmp_path, monkeypatch
):
    """The panels as prdit-studio installs them: the viewer state follows every drawn step."""
    monkeypatch.setenv("PRDIT_SETTINGS", str(tmp_path / "settings.ini"))
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow
    from prdit_app.panels.export import ExportPanel

    window = MainWindow(enable_3d=False)
    qtbot.addWidget(window)
    assert install_panels(window) == ["Generate", "Edit", "Export", "Train", "Evaluate"]
    window.show()
    panel = window.findChild(GeneratePanel)
    export = window.findChild(ExportPanel)
    seen = []
    window.state.volumeChanged.connect(lambda changed: seen.append(window.state.volume))
    model = CountingModel(size=8)
    _use_fake(panel, model)
    panel.steps_spin.setValue(6)
    panel.start()
    _wait_idle(qtbot, panel)
    assert seen and window.state.volume is panel.result.volumes[0]
    assert len(seen) >= 2  # streamed steps, then the final sample
    window.panel_tabs.setCurrentWidget(export)
    assert export.gif_button.isEnabled() and export.trajectory()[0] is panel.store
    assert "seed 0" in export.shown_label.text()


def test_scripted_generate_saves_a_screenshot_and_quits(tmp_path):
    """``prdit-studio --generate --steps N --seed S --screenshot out.png --quit`` (via its module)."""
    import subprocess

    from test_worker import _tiny_checkpoint

    ckpt = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    shot = tmp_path / "out.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PRDIT_SETTINGS": str(tmp_path / "s.ini")}
    cmd = [sys.executable, "-m", "prdit_app.scripted_generate", "--generate", "--checkpoint", str(ckpt)]
    cmd += ["--steps", "3", "--seed", "1", "--screenshot", str(shot), "--screenshot-during", "1", "--quit"]
    cmd += ["--no-3d", "--window-size", "1200x800"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "generated 1 sample(s), 3 steps" in res.stdout
    assert shot.stat().st_size > 10_000 and (tmp_path / "out-running.png").is_file()


def test_estimate_button_tells_memory_and_time_before_start(qtbot, tmp_path):
    p = GeneratePanel()  # the bundled models
    qtbot.addWidget(p)
    p.model_combo.setCurrentIndex(p.model_combo.findText("fast-32", Qt.MatchFlag.MatchStartsWith))
    p.samples_spin.setValue(2)
    assert p.estimate_button.isEnabled()
    with qtbot.waitSignal(p.estimateReady, timeout=60000):
        assert p.estimate()
    text = p.status_label.text()
    assert text.startswith("Estimate: ~") and "per volume" in text and "MiB" in text and "CPU" in text
    assert p.estimate_button.isEnabled() and not p.running  # nothing was started
    # a request that cannot fit anywhere is told so, with the largest that would
    p.samples_spin.setMaximum(10**7)
    p.samples_spin.setValue(3_000_000)
    with qtbot.waitSignal(p.estimateReady, timeout=60000):
        p.estimate()
    assert p.status_label.text().startswith("Would not fit") and "that fits is" in p.status_label.text()


def test_start_refuses_a_request_that_cannot_fit_before_sampling(qtbot, monkeypatch):
    dialogs = []
    monkeypatch.setattr(
        "prdit_app.panels.generate.QMessageBox.critical",
        lambda parent, title, text: dialogs.append((title, text)),
    )
    monkeypatch.setattr("prdit.estimate.available_memory", lambda device: 64 * 2**20)  # a 64 MiB machine
    p = GeneratePanel()
    qtbot.addWidget(p)
    assert p.model_combo.currentText().startswith("default")  # the 64^3 model
    p.samples_spin.setValue(16)  # 16 x 64^3 = 2 x 128^3 voxels: checked before it starts
    p.start()
    qtbot.waitUntil(lambda: not p.running, timeout=60000)
    assert dialogs and dialogs[0][0] == "Not enough memory", dialogs
    assert "largest number of volumes at once" in dialogs[0][1] and "Nothing was started" in dialogs[0][1]
    assert p.last_update is None  # not one sampling step ran


def test_the_models_display_window_is_applied_when_a_run_starts(qtbot, tmp_path):
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow

    os.environ["PRDIT_SETTINGS"] = str(tmp_path / "settings.ini")
    window = MainWindow(enable_3d=False)
    qtbot.addWidget(window)
    install_panels(window)
    panel = window.findChild(GeneratePanel)
    info = panel.selected_model_info()
    assert info.display_window is not None  # the bundled default recommends the lung window
    assert "display window: W 1500 / L -600" in panel.model_info_label.text()
    panel.steps_spin.setValue(2)
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert (window.state.window, window.state.level) == (1500.0, -600.0)
    window.apply_wl_preset("mediastinum")  # the user's choice still wins afterwards
    assert window.state.window == 350.0


def test_the_studio_and_the_cli_write_the_same_sidecar(qtbot, tmp_path):
    from prdit.cli import main as cli_main
    from prdit.sampling import SIDECAR_KEYS

    assert cli_main(["sample", "fast-32", "--count", "1", "--steps", "4", "--seed", "5", "--no-preview",
                     "--no-progress", "--out", str(tmp_path / "cli")]) == 0  # fmt: skip
    cli = json.loads((tmp_path / "cli" / "sample_00000.json").read_text(encoding="utf-8"))
    p = GeneratePanel()
    qtbot.addWidget(p)
    p.model_combo.setCurrentIndex(p.model_combo.findText("fast-32", Qt.MatchFlag.MatchStartsWith))
    p.steps_spin.setValue(4)
    p.seed_spin.setValue(5)
    p.start()
    _wait_idle(qtbot, p, timeout=60000)
    studio = p.provenance_for(p.result.volumes[0])
    for key in SIDECAR_KEYS:
        if key != "created":
            assert studio[key] == cli[key], key
    assert cli["checkpoint"] == "fast-32.safetensors"  # a file name: no user folders in shared files
    assert not any(
        os.sep in str(v) for v in cli.values() if isinstance(v, str) and v.endswith(".safetensors")
    )
