"""Tiny training runs shared by the training, control and DDP tests."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from prdit.config import config_from_dict

_TINY = {
    "stage": 1,
    "name": "tiny",
    "model": {"name": "PRDiT-XS/4/0", "input_size": 16},
    "data": {"source": "phantom", "phantom_count": 4, "phantom_val_count": 1},
    "train": {"seed": 3, "max_steps": 20, "batch_size": 2, "lr": 2e-3, "ema_decay": 0.9, "device": "cpu"},
    "log": {"every": 5, "val_every": 0, "preview_every": 0, "progress": False, "tensorboard": False},
    "checkpoint": {"every": 0, "keep_last": 0},
}


def tiny_cfg(*layers: dict, **sections):
    """PRDiT-XS/4/0 at 16^3 on a handful of phantoms (~10 ms of compute per step).

    ``layers`` (dicts of sections) and then ``sections`` are merged over the defaults, section by
    section, so a test file can set its own defaults and each test its own changes.
    """
    data = json.loads(json.dumps(_TINY))
    for layer in (*layers, sections):
        for key, value in layer.items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
    return config_from_dict(data)


def ddp_train_script(train: dict, report: str) -> str:
    """A script for ``torchrun``: a tiny DDP run in ``sys.argv[1]``; each rank then writes
    ``done-rank<r>.txt`` with ``report`` (an f-string body over ``dist`` and ``result``), because two
    processes printing to one pipe interleave their characters."""
    train = {"seed": 5, "batch_size": 4, "lr": 2e-3, "device": "cpu", **train}
    return f'''
import sys, torch
from pathlib import Path
torch.set_num_threads(1)
from prdit.config import config_from_dict
from prdit.distributed import env_world_size, init_distributed, cleanup
from prdit.training import train
data = {{
    "name": "ddp", "model": {{"name": "PRDiT-XS/4/0", "input_size": 16}},
    "data": {{"phantom_count": 4, "phantom_val_count": 1}},
    "train": {train!r},
    "log": {{"every": 1, "val_every": 0, "preview_every": 0, "progress": False, "tensorboard": False}},
    "checkpoint": {{"every": 0}},
}}
cfg = config_from_dict(data, world_size=env_world_size())
dist = init_distributed("cpu")
try:
    result = train(cfg, run_dir=sys.argv[1], dist=dist, progress=False)
finally:
    cleanup(dist)
Path(sys.argv[1], f"done-rank{{dist.rank}}.txt").write_text(f"{report}", encoding="utf-8")
'''


def wait_for_losses(proc: subprocess.Popen, run_dir: Path, count: int, timeout: float) -> None:
    """Wait until the run has logged ``count`` loss lines (or ended, or ``timeout`` passed)."""
    metrics = Path(run_dir) / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (
            metrics.exists()
            and sum('"loss"' in ln for ln in metrics.read_text(encoding="utf-8").splitlines()) >= count
        ):
            return
        time.sleep(0.1)
