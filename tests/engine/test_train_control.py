"""Run control of ``prdit train``: one run per folder, the STOP file, signals during start-up, and the
normalisation check between stages (min-max datasets of different sizes)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prdit import checkpoint as ckpt
from prdit import stopping
from prdit.data.normalize import HUWindow
from prdit.training import Trainer, TrainingSetupError, check_normalisation, existing_run, train
from tests.helpers.training import ddp_train_script, wait_for_losses
from tests.helpers.training import tiny_cfg as _tiny_cfg

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(2)


def tiny_cfg(**sections):
    """The shared tiny run, 3 steps, a metrics line every step."""
    return _tiny_cfg({"train": {"max_steps": 3}, "log": {"every": 1}}, **sections)


# ------------------------------------------------------------------------------------ one run per folder
def test_a_new_run_refuses_a_folder_that_holds_a_run(tmp_path):
    run_dir = tmp_path / "run"
    assert existing_run(run_dir) is None  # no folder yet
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine", encoding="utf-8")
    assert existing_run(run_dir) is None  # other files do not make a run
    first = train(tiny_cfg(train={"max_steps": 2}), run_dir=run_dir, progress=False)
    assert first.step == 2 and first.steps_run == 2
    lines_before = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")

    with pytest.raises(TrainingSetupError) as err:
        train(tiny_cfg(train={"max_steps": 4}), run_dir=run_dir, progress=False)
    msg = str(err.value)
    assert str(run_dir) in msg and "checkpoint at step 2" in msg and "--resume" in msg and "--out" in msg
    assert (run_dir / "metrics.jsonl").read_text(encoding="utf-8") == lines_before  # nothing appended
    assert [s for s, _ in ckpt.list_checkpoints(run_dir / "checkpoints")] == [2]

    # --resume continues the same run
    resumed = train(tiny_cfg(train={"max_steps": 4}), run_dir=run_dir, resume=True, progress=False)
    assert resumed.step == 4 and resumed.steps_run == 2

    # a run killed before its first checkpoint still logged: refused too, with advice that fits
    other = tmp_path / "killed"
    other.mkdir()
    (other / "metrics.jsonl").write_text(json.dumps({"event": "start", "step": 0}) + "\n", encoding="utf-8")
    with pytest.raises(TrainingSetupError, match="saved no checkpoint"):
        train(tiny_cfg(), run_dir=other, progress=False)


def test_cli_refuses_an_existing_run_without_resume(tmp_path, capsys):
    from prdit.cli import CliError
    from prdit.cli import train as cli

    run_dir = tmp_path / "run"
    train(tiny_cfg(train={"max_steps": 1}), run_dir=run_dir, progress=False)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["phantom-tiny", "--out", str(run_dir), "--device", "cpu", "--no-progress", "--max-steps", "2",
         "--set", "model.input_size=16"]
    )  # fmt: skip
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(CliError) as err:
        cli.run(args)
    assert str(run_dir) in str(err.value) and "--resume" in str(err.value)
    assert signal.getsignal(signal.SIGTERM) == before  # the early handlers are put back
    assert stopping.process_started() is None


# ------------------------------------------------------------------------------------ stop requests
def test_a_stop_before_the_first_step_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny_cfg(), run_dir=run_dir, progress=False)
    stopping.request_stop(run_dir)  # made after the run began: a real request
    result = trainer.run()
    assert (result.stopped_by, result.step, result.steps_run) == ("STOP file", 0, 0)
    assert result.last_checkpoint is None
    assert not (run_dir / "STOP").exists()
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists()
    assert ckpt.list_checkpoints(run_dir / "checkpoints") == []
    assert existing_run(run_dir) is None  # a fresh start there is allowed


def test_a_stale_stop_file_is_removed_and_the_run_trains(tmp_path):
    run_dir = tmp_path / "run"
    old = stopping.request_stop(run_dir)
    past = time.time() - 3600
    os.utime(old, (past, past))  # left by a run that was killed an hour ago
    result = train(tiny_cfg(train={"max_steps": 2}), run_dir=run_dir, progress=False)
    assert result.stopped_by is None and result.step == 2
    assert not old.exists()


_CLI = (
    "import argparse, sys\n"
    "from prdit.cli import train as t\n"
    "p = argparse.ArgumentParser(); t.add_arguments(p)\n"
    "sys.exit(t.run(p.parse_args(sys.argv[1:])))\n"
)


def _start_cli(tmp_path: Path, run_dir: Path) -> subprocess.Popen:
    args = [
        "phantom-tiny", "--out", str(run_dir), "--no-progress", "--device", "cpu",
        "--set", "model.input_size=16", "--set", "train.max_steps=100000", "--set", "log.every=1",
        "--set", "log.val_every=0", "--set", "log.preview_every=0", "--set", "checkpoint.every=0",
        "--set", "data.phantom_count=2", "--set", "train.threads=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_stop_file_saves_a_checkpoint_and_exits_0(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start_cli(tmp_path, run_dir)
    wait_for_losses(proc, run_dir, 2, timeout=120)
    assert proc.poll() is None, proc.communicate()[0]
    stopping.request_stop(run_dir)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by STOP file" in out
    assert not (run_dir / "STOP").exists(), "the run removes the STOP file"
    state = ckpt.load_training_state(run_dir)
    assert 2 <= state.step < 100000
    last = json.loads((run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert (last["event"], last["reason"], last["step"]) == ("stopped", "STOP file", state.step)


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (Linux: SigCgt bit 14 in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_during_start_up_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start_cli(tmp_path, run_dir)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not _catches_sigterm(proc.pid):
        time.sleep(0.002)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)  # while torch is still importing, long before the first step
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by SIGTERM" in out and "before the first step" in out
    assert "Traceback" not in out
    # no step was done: no checkpoint, no half-written files, and the folder takes a new run
    assert ckpt.list_checkpoints(run_dir / "checkpoints") == []
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    assert existing_run(run_dir) is None


# ------------------------------------------------------------------------------------ normalisation
def test_normalisation_rule_window_exact_minmax_by_mode():
    logged: list[str] = []
    window = HUWindow(-1000, 1000)
    check_normalisation(None, window, "x")  # nothing recorded: nothing to check
    check_normalisation(window.to_dict(), window, "x")
    with pytest.raises(TrainingSetupError, match="HU window"):
        check_normalisation(HUWindow(-1000, 400).to_dict(), window, "model.init_from: a")
    mm128, mm256 = HUWindow(-1000, 413.3, "minmax"), HUWindow(-1000, 632.6, "minmax")
    check_normalisation(mm128.to_dict(), mm256, "model.init_from: a", logged.append)
    assert len(logged) == 1 and "413.3" in logged[0] and "632.6" in logged[0]
    with pytest.raises(TrainingSetupError, match="--norm minmax"):
        check_normalisation(mm128.to_dict(), window, "model.init_from: a")
    with pytest.raises(TrainingSetupError, match="--norm window"):
        check_normalisation(window.to_dict(), mm256, "model.init_from: a")


@pytest.fixture(scope="module")
def minmax_datasets(tmp_path_factory):
    """The same three phantoms preprocessed with --norm minmax at 16^3 and 32^3 (real folders)."""
    from prdit.data.io import write_nifti
    from prdit.data.phantom import generate_phantom
    from prdit.data.preprocess import Settings, run_preprocess

    root = tmp_path_factory.mktemp("minmax")
    for i in range(3):
        vol = generate_phantom(i, size=32)
        write_nifti(vol, root / "src" / f"case{i}.nii.gz")
    out = {}
    for size in (16, 32):
        settings = Settings(
            recipe="generic", size=size, norm="minmax", crop=32, spacing_mm=float(vol.spacing[0]),
            dtype="float32",
        )  # fmt: skip
        summary = run_preprocess(root / "src", root / f"d{size}", settings, progress=False, val_count=1)
        assert summary.ok
        out[size] = root / f"d{size}"
    return out


def test_stage3_accepts_a_minmax_base_trained_at_another_size(tmp_path, minmax_datasets):
    windows = {
        s: json.loads((d / "manifest.json").read_text(encoding="utf-8"))["hu_window"]
        for s, d in minmax_datasets.items()
    }
    assert windows[16]["mode"] == windows[32]["mode"] == "minmax"
    assert windows[16]["high"] != windows[32]["high"]  # the nominal windows differ, as on real data

    base = train(
        tiny_cfg(data={"source": "folder", "root": str(minmax_datasets[16])}, train={"max_steps": 1}),
        run_dir=tmp_path / "base",
        progress=False,
    )
    assert base.step == 1
    logs: list[dict] = []
    cfg = tiny_cfg(
        stage=3,
        model={"name": "PRDiT-XS/4/0", "base_size": 16, "input_size": 32, "highres_patch": 10,
               "init_from": str(tmp_path / "base")},
        data={"source": "folder", "root": str(minmax_datasets[32])},
        train={"max_steps": 1},
    )  # fmt: skip
    result = train(cfg, run_dir=tmp_path / "hr", progress=False, callback=logs.append)
    assert result.step == 1
    notes = [e["message"] for e in logs if e.get("event") == "log" and "min-max" in e.get("message", "")]
    assert notes, "the differing nominal windows are reported"
    meta = json.loads((result.last_checkpoint / "meta.json").read_text(encoding="utf-8"))
    assert meta["hu_window"] == HUWindow.from_dict(windows[32]).to_dict()  # this run's own data window

    # a fixed-window dataset is a different normalisation: refused, naming the fix
    cfg_window = tiny_cfg(
        stage=3,
        model={"name": "PRDiT-XS/4/0", "base_size": 16, "input_size": 32, "highres_patch": 10,
               "init_from": str(tmp_path / "base")},
        data={"phantom_count": 2},
    )  # fmt: skip
    with pytest.raises(TrainingSetupError, match="--norm minmax"):
        train(cfg_window, run_dir=tmp_path / "hr-window", progress=False)


_DDP_SCRIPT = ddp_train_script(
    {"max_steps": 100000}, "rank {dist.rank} stopped by {result.stopped_by} at step {result.step}"
)


def test_stop_file_stops_every_ddp_rank_together(tmp_path):
    """Rank 0 sees the file; all ranks agree, one checkpoint is saved, everyone exits 0."""
    from tests.helpers.torchrun import torchrun_cmd

    script = tmp_path / "ddp_stop.py"
    script.write_text(_DDP_SCRIPT, encoding="utf-8")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*torchrun_cmd(2), str(script), str(run_dir)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for_losses(proc, run_dir, 2, timeout=180)
    assert proc.poll() is None, proc.communicate()[0]
    stopping.request_stop(run_dir)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    state = ckpt.load_training_state(run_dir)
    assert state.meta["world_size"] == 2 and len(state.rng) == 2 and 2 <= state.step < 100000
    done = [(run_dir / f"done-rank{r}.txt").read_text(encoding="utf-8") for r in (0, 1)]
    assert done[0] == f"rank 0 stopped by STOP file at step {state.step}", out
    assert done[1] == f"rank 1 stopped by stop (another rank) at step {state.step}", out
    assert not (run_dir / "STOP").exists()
