"""What a run writes into its folder besides checkpoints: the metrics log (JSONL, optional
TensorBoard), and the check that a folder does not already hold another run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from prdit import checkpoint as ckpt

_MASK64 = (1 << 63) - 1


# ---------------------------------------------------------------------------------------------- logging
class MetricsLog:
    """Append-only JSONL (one object per line, flushed) plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL only
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        if self._tb is not None and "step" in record:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def existing_run(run_dir: str | Path) -> str | None:
    """Why ``run_dir`` cannot take a new run (it already holds one), or None when it can.

    A run is there when the folder has a complete checkpoint or a non-empty ``metrics.jsonl`` (a
    run killed before its first checkpoint still logged there). Starting afresh in such a folder
    would restart at step 0 and append a second run to the same ``metrics.jsonl``. Empty folders
    and folders holding only other files are fine.
    """
    root = Path(run_dir)
    found = ckpt.list_checkpoints(root / "checkpoints")
    if found:
        return (
            f"{root} already holds a run (checkpoint at step {found[-1][0]}); starting a new one there "
            f"would restart at step 0 and mix two runs in its metrics.jsonl. Add --resume to continue "
            f"it, or choose a new --out folder"
        )
    metrics = root / "metrics.jsonl"
    try:
        logged = metrics.stat().st_size > 0
    except FileNotFoundError:
        logged = False
    if logged:
        return (
            f"{root} already holds a run that saved no checkpoint ({metrics} is not empty); a new run "
            f"there would mix two runs in one metrics.jsonl. Choose a new --out folder, or delete {root} "
            f"to start over in it"
        )
    return None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
