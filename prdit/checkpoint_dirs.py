"""Which ``step_*`` checkpoint folders of a run are complete — without importing torch.

Why a module of its own: the trainer (:mod:`prdit.checkpoint`) and the studio's Train panel, which
polls a running run's folder every few hundred milliseconds, must agree on one rule, and the panel
must not pull in torch to apply it. The rule: a ``step_<N>`` folder counts once its ``meta.json``
and ``model.safetensors`` exist (the trainer writes into a temporary folder and renames the complete
folder into place, so a half-written checkpoint never matches).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

STEP_DIR_RE = re.compile(r"^step_(\d+)$")


def list_checkpoints(ckpt_root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete step checkpoints under ``ckpt_root``, oldest first (temporary folders ignored)."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR_RE.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file() and (p / "model.safetensors").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)
