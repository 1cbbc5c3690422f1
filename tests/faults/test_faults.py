"""Bad inputs and faults, each as a user would cause it; see conftest.py for how outcomes count."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from prdit.paths import bundled_model
from tests.faults.conftest import run_prdit

TINY = [
    "--set",
    "model.input_size=16",
    "--set",
    "data.phantom_count=4",
    "--set",
    "data.phantom_val_count=1",
    "--set",
    "log.val_every=0",
    "--set",
    "log.preview_every=0",
    "--progress",
    "none",
]


def _clean(outcome, *needles: str) -> bool:
    return outcome.rc == 2 and not outcome.traceback and all(n in outcome.stderr for n in needles)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "FILE").write_text("a file where a folder is expected\n", encoding="utf-8")
    return tmp_path


OUTPUT_UNDER_A_FILE = {
    "train --out FILE/run": ["train", "phantom-tiny", "--out", "FILE/run", *TINY],
    "sample --out FILE/s": ["sample", "fast-32", "--count", "1", "--steps", "2", "--out", "FILE/s"],
    "phantom --out FILE/p": ["phantom", "--count", "1", "--size", "32", "--out", "FILE/p"],
    "eval --report FILE/r.json": ["eval", ".", ".", "--report", "FILE/r.json"],
    "eval --cache-dir FILE": ["eval", ".", ".", "--cache-dir", "FILE"],
    "export-model ... FILE/x.safetensors": ["export-model", "run", "FILE/x.safetensors"],
}


@pytest.mark.parametrize("case", list(OUTPUT_UNDER_A_FILE))
def test_an_output_path_under_a_file_is_a_clean_error(case, workdir, record):
    outcome = run_prdit(*OUTPUT_UNDER_A_FILE[case], cwd=workdir)
    ok = _clean(outcome, "error:", "FILE")
    record(case, "clean error" if ok else ("traceback" if outcome.traceback else "loss"))
    assert ok, outcome.stderr[-800:]
    assert sorted(p.name for p in workdir.iterdir()) == ["FILE"]  # nothing written


def _doctored_model(tmp_path: Path, name: str, meta_change=None, tensor_change=None) -> Path:
    """The bundled 32^3 model with its metadata or one weight changed."""
    with safe_open(str(bundled_model("fast-32")), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta_change:
        prdit_meta = json.loads(meta["prdit"])
        prdit_meta.update(meta_change)
        meta["prdit"] = json.dumps(prdit_meta)
    if tensor_change:
        tensor_change(tensors)
    out = tmp_path / name
    save_file(tensors, str(out), metadata=meta)
    return out


def _nan_weight(tensors: dict[str, torch.Tensor]) -> None:
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 10)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[3] = float("nan")


BAD_MODELS = {
    "metadata claims a 4096^3 input": ({"input_size": 4096}, None, "input_size 4096"),
    "metadata with zero spacing": ({"spacing": [0.0, 10.9, 10.9]}, None, "spacing"),
    "metadata with NaN spacing": ({"spacing": [float("nan")] * 3}, None, "spacing"),
    "a NaN weight": (None, _nan_weight, "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_model_that_lies_or_is_broken_is_refused_before_sampling(case, tmp_path, record):
    meta_change, tensor_change, needle = BAD_MODELS[case]
    model = _doctored_model(tmp_path, "bad.safetensors", meta_change, tensor_change)
    outcome = run_prdit("sample", str(model), "--count", "1", "--steps", "2", "--out", "s", cwd=tmp_path)
    ok = _clean(outcome, "bad.safetensors", needle)
    record(f"sample with {case}", "clean error" if ok else ("traceback" if outcome.traceback else "loss"))
    assert ok, outcome.stderr[-800:]
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


SETTINGS = {
    "--set train.batch_size=100000": (["--set", "train.batch_size=100000"], "train.batch_size 100000"),
    "--set diffusion.noise_scale=1e9": (["--set", "diffusion.noise_scale=1e9"], "diffusion.noise_scale"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_impossible_training_settings_are_refused_before_the_run(case, tmp_path, record):
    extra, needle = SETTINGS[case]
    outcome = run_prdit("train", "phantom-tiny", "--out", "run", *TINY, *extra, cwd=tmp_path)
    ok = _clean(outcome, needle)
    record(f"train {case}", "clean error" if ok else ("traceback" if outcome.traceback else "loss"))
    assert ok, outcome.stderr[-800:]
    assert not (tmp_path / "run").exists()


def _train_proc(cwd: Path, out: str, steps: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PRDIT_THREADS="1", PRDIT_PRECISION="fp32")
    argv = [
        sys.executable,
        "-m",
        "prdit",
        "train",
        "phantom-tiny",
        "--out",
        out,
        *TINY,
        "--max-steps",
        str(steps),
        "--set",
        "checkpoint.every=1",
        "--set",
        "checkpoint.keep_last=2",
        *extra,
    ]
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from prdit.checkpoint import list_checkpoints, load_safetensors

    return load_safetensors(list_checkpoints(run / "checkpoints")[-1][1] / "model.safetensors")[0]


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_weights(tmp_path, record):
    steps = 12
    straight = run_prdit(
        "train",
        "phantom-tiny",
        "--out",
        "straight",
        *TINY,
        "--max-steps",
        str(steps),
        "--set",
        "checkpoint.every=1",
        "--set",
        "checkpoint.keep_last=2",
        cwd=tmp_path,
    )
    assert straight.rc == 0, straight.stderr[-800:]
    rng = random.Random(7)
    kills = 0
    for _attempt in range(6):  # kill -9 at random moments (start-up, steps, checkpoint writes), resume
        proc = _train_proc(
            tmp_path, "killed", steps, *(["--resume"] if (tmp_path / "killed").exists() else [])
        )
        time.sleep(rng.uniform(2.0, 5.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        if proc.returncode == 0:
            break
    final = run_prdit(
        "train",
        "phantom-tiny",
        "--out",
        "killed",
        *TINY,
        "--max-steps",
        str(steps),
        "--resume",
        "--set",
        "checkpoint.every=1",
        "--set",
        "checkpoint.keep_last=2",
        cwd=tmp_path,
    )
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    same = final.rc == 0 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    record(f"prdit train killed -9 {kills} time(s), then --resume", "recovered" if same else "loss")
    assert same, final.stderr[-800:]


def test_a_second_training_on_the_same_folder_refuses(tmp_path, record):
    first = _train_proc(tmp_path, "run", 100000)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
            time.sleep(0.2)
        second = run_prdit("train", "phantom-tiny", "--out", "run", *TINY, cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    ok = _clean(second, "already holds a run")
    record("a second prdit train on a running run's folder", "clean error" if ok else "loss")
    assert ok, second.stderr[-800:]


def test_kill_9_during_sampling_leaves_no_half_volume(tmp_path, record):
    env = dict(os.environ, PRDIT_THREADS="1", PRDIT_PRECISION="fp32")
    argv = [
        sys.executable,
        "-m",
        "prdit",
        "sample",
        "fast-32",
        "--count",
        "40",
        "--steps",
        "8",
        "--out",
        "s",
        "--progress",
        "none",
    ]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((tmp_path / "s").glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    import nibabel as nib

    volumes = sorted((tmp_path / "s").glob("sample_*.nii.gz"))
    readable = all(nib.load(v).get_fdata().shape == (32, 32, 32) for v in volumes)
    # a volume without its sidecar is an unfinished sample (the sidecar is written last): --skip-existing
    # redoes it; no file is ever half written (temporary name, then rename)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("sample_*.json")}
    resumed = run_prdit(
        "sample",
        "fast-32",
        "--count",
        "40",
        "--steps",
        "8",
        "--out",
        "s",
        "--skip-existing",
        "--progress",
        "none",
        cwd=tmp_path,
    )
    kept = all((tmp_path / "s" / name).stat().st_mtime_ns == t for name, t in before.items())
    complete = len(list((tmp_path / "s").glob("sample_*.json"))) == 40
    ok = readable and resumed.rc == 0 and complete and kept  # finished samples were not redone
    record("prdit sample killed -9 mid-run, then --skip-existing", "recovered" if ok else "loss")
    assert ok, resumed.stderr[-800:]


def test_kill_9_during_dicom_export_leaves_no_half_series(tmp_path, record):
    assert run_prdit("phantom", "--count", "1", "--size", "128", "--out", "ph", cwd=tmp_path).rc == 0
    volume = next((tmp_path / "ph").glob("phantom_*.nii.gz"))
    env = dict(os.environ, PRDIT_THREADS="1")
    argv = [sys.executable, "-m", "prdit", "export-dicom", str(volume), "series"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.5)  # start-up, reading, and part of the slices
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    series = tmp_path / "series"
    whole = not series.exists() or len(list(series.glob("*.dcm"))) == 128
    again = run_prdit("export-dicom", str(volume), "series", "--overwrite", cwd=tmp_path)
    ok = whole and again.rc == 0 and len(list(series.glob("*.dcm"))) == 128
    record("prdit export-dicom killed -9 mid-series, then exported again", "recovered" if ok else "loss")
    assert ok, again.stderr[-800:]


def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_so(tmp_path, record):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:120]})")
    try:
        outcome = run_prdit(
            "train",
            "phantom-tiny",
            "--out",
            str(disk / "run"),
            *TINY,
            "--max-steps",
            "40",
            "--set",
            "checkpoint.every=1",
            "--set",
            "checkpoint.keep_last=3",
            cwd=tmp_path,
        )
        from prdit.checkpoint import list_checkpoints, load_training_state

        found = list_checkpoints(disk / "run" / "checkpoints")
        intact = bool(found) and load_training_state(found[-1][1]).step == found[-1][0]
        said = "the disk is full" in outcome.stderr or "No space left on device" in outcome.stderr
        ok = outcome.rc == 2 and said and "is intact" in outcome.stderr and not outcome.traceback and intact
        record("prdit train on a disk that fills up", "clean error" if ok else "loss")
        assert ok, outcome.stderr[-800:]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
