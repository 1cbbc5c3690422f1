"""The Train panel's form as a ``prdit train`` command line, without Qt: the settings, the
overrides text, the presets and config files it starts from, resuming a run, and small formatting.

The panel runs training as a child process (``python -m prdit train ...``), so what it shows in
its log is exactly the command a user could run in a terminal; keeping the command's construction
here lets tests check it without a window.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prdit.run_log import list_run_checkpoints
from prdit_app.process_runner import prdit_command


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw YAML mapping of a config file (validation is the trainer's job: it names the key)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config {p}: cannot read it ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config {p}: the top level must be a mapping of sections")
    return data


def preset_configs() -> dict[str, Path]:
    """Built-in presets (``resources/configs/*.yaml``) by name."""
    from prdit.paths import resource

    folder = resource("configs")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def _get(data: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node if node is not None else default


@dataclass
class TrainSettings:
    """What the form describes; :meth:`argv` turns it into a ``prdit train`` command line.

    The main settings are always passed as ``--set`` overrides (even when equal to the config's
    values), so the command shown in the log states exactly what this run uses.
    """

    config: str  # preset name or YAML path
    out_dir: str
    data_dir: str | None = None  # None: phantoms generated on the fly
    model_name: str = "PRDiT-XS/4/0"
    input_size: int = 32
    stage: int = 1
    init_from: str | None = None
    max_steps: int = 600
    batch_size: int = 4
    lr: float = 1e-3
    device: str = "auto"
    extra: list[str] = field(default_factory=list)  # further KEY=VALUE overrides

    def argv(self) -> list[str]:
        args = [self.config, "--out", self.out_dir, "--progress", "jsonl"]  # per-step progress lines
        if self.data_dir:
            args += ["--data", self.data_dir]
        else:
            args += ["--set", "data.source=phantom"]
        args += [
            "--set", f"stage={self.stage}",
            "--set", f"model.name={self.model_name}",
            "--set", f"model.input_size={self.input_size}",
            "--set", f"train.batch_size={self.batch_size}",
            "--set", f"train.lr={self.lr:g}",
            "--max-steps", str(self.max_steps),
            "--device", self.device,
        ]  # fmt: skip
        if self.stage in (2, 3) and self.init_from:
            args += ["--init-from", self.init_from]
        elif self.stage == 1:
            args += ["--set", "model.init_from=null"]
        for item in self.extra:
            args += ["--set", item]
        return prdit_command("train", *args)


def resume_argv(
    run_dir: str | os.PathLike, max_steps: int | None = None, device: str | None = None
) -> list[str]:
    """``prdit train <run>/config.yaml --out <run> --resume``: the stored config, continued exactly.

    Only the step budget and the device may change on resume; everything that shapes the model
    or the data order comes from the run's own ``config.yaml``.
    """
    run = Path(run_dir)
    args = [str(run / "config.yaml"), "--out", str(run), "--resume", "--progress", "jsonl"]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if device:
        args += ["--device", device]
    return prdit_command("train", *args)


def parse_overrides(text: str) -> list[str]:
    """``KEY=VALUE`` lines (blank lines and ``#`` comments ignored) -> list; raises ValueError."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key = line.split("=", 1)[0].strip()
        if "=" not in line or not key or not all(p.isidentifier() for p in key.split(".")):
            raise ValueError(f"extra overrides, line {n}: {line!r} is not KEY=VALUE (e.g. log.every=10)")
        out.append(line)
    return out


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _unique_run_dir(base: Path) -> Path:
    if not list_run_checkpoints(base) and not (base / "metrics.jsonl").exists():
        return base
    for i in range(2, 1000):
        cand = base.with_name(f"{base.name}-{i}")
        if not cand.exists():
            return cand
    return base.with_name(f"{base.name}-{int(time.time())}")
