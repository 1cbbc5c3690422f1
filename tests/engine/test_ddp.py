"""Two gloo processes on CPU train the same weights as one process with the same global batch.

Launched with ``python -m torch.distributed.run`` (what ``torchrun`` runs), so the real torchrun
detection, process-group set-up, data sharding and rank-0-only saving are exercised. The match is
``allclose`` rather than bit-exact: DDP averages the two ranks' gradients (``(g0 + g1) / 2``)
while one process differentiates the mean over all four samples, so float summation order
differs (~1e-7 relative in the gradients; AdamW's normalisation can turn that into ~1e-6 in a weight
whose gradient is near zero, so weights are compared at atol 1e-5, half a percent of one step).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from prdit import checkpoint as ckpt
from tests.helpers.torchrun import torchrun_cmd
from tests.helpers.training import ddp_train_script

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = ddp_train_script(
    {"max_steps": 3, "ema_decay": 0.5}, "rank {dist.rank} of {dist.world_size} step {result.step}"
)


def _run(tmp_path: Path, run_dir: Path, nproc: int) -> str:
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(script), str(run_dir)]
    else:
        cmd = [
            *torchrun_cmd(nproc),
            str(script),
            str(run_dir),
        ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    return " | ".join(f.read_text(encoding="utf-8") for f in sorted(run_dir.glob("done-rank*.txt")))


def test_two_gloo_processes_match_one_process(tmp_path):
    single = _run(tmp_path, tmp_path / "single", 1)
    assert "rank 0 of 1 step 3" in single
    multi = _run(tmp_path, tmp_path / "ddp", 2)
    assert "rank 0 of 2 step 3" in multi and "rank 1 of 2 step 3" in multi

    a = ckpt.load_training_state(tmp_path / "single")
    b = ckpt.load_training_state(tmp_path / "ddp")
    assert b.meta["world_size"] == 2 and a.meta["world_size"] == 1
    assert len(b.rng) == 2  # every rank's RNG state is kept
    moved = 0
    for k, v in a.model.items():
        # atol 1e-5 = 0.5% of one AdamW step (lr 2e-3): Adam divides by sqrt(v), so a ~1e-7 gradient
        # difference on a near-zero gradient can move a weight by ~1e-6
        torch.testing.assert_close(b.model[k], v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.ema[k], a.ema[k], rtol=1e-5, atol=1e-5)
        moved += int(not torch.equal(v, torch.zeros_like(v)))
    assert moved > 0

    # rank 0 alone logs and saves: one metrics line per step, one checkpoint
    lines = [
        json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "ddp" / "checkpoints")] == [3]
    single_losses = [
        json.loads(x)["loss"]
        for x in (tmp_path / "single" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        if '"loss"' in x
    ]
    ddp_losses = [r["loss"] for r in lines if "loss" in r]
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)
