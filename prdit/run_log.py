"""What a run leaves in its folder and prints while it runs, read without Qt or torch.

``prdit train`` writes ``metrics.jsonl`` (one JSON object per logged step or event),
``checkpoints/step_*`` and ``previews/step_*.png``; ``prdit train``, ``prdit eval`` and
``prdit sample`` with ``--progress jsonl`` print one JSON progress object per line on stdout
instead of drawing terminal progress bars. The studio's Train and Evaluate panels (which run those
commands as child processes) and any other tool read them through this module, so no reader
scrapes a progress bar and both panels agree with the writers on one format.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from prdit.checkpoint_dirs import list_checkpoints

PREVIEW_RE = re.compile(r"^step_(\d+)\.png$")
PROGRESS_MODES = ("bar", "jsonl", "none")
#: the metrics a training run logs, in the order the Train panel draws them
CURVE_KEYS = ("loss", "loss_x0", "loss_noise", "val_loss", "val_loss_ema")


# ---------------------------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` units of the stage ``what``, plus details."""

    what: str
    done: int
    total: int
    extra: dict[str, Any] = field(default_factory=dict)


def progress_line(what: str, done: int, total: int, **extra: Any) -> str:
    """The JSON line ``--progress jsonl`` prints: ``{"event": "progress", "what", "done", "total", ...}``."""
    record = {"event": "progress", "what": what, "done": int(done), "total": int(total)}
    record.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(record, separators=(",", ":"))


def emit_progress(what: str, done: int, total: int, stream: TextIO | None = None, **extra: Any) -> None:
    stream = stream or sys.stdout
    stream.write(progress_line(what, done, total, **extra) + "\n")
    stream.flush()


def parse_progress_line(line: str) -> Progress | None:
    """The :class:`Progress` in one output line, or None for any other line."""
    text = line.strip()
    if not text.startswith("{") or '"progress"' not in text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("event") != "progress":
        return None
    try:
        done, total = int(record.pop("done")), int(record.pop("total"))
    except (KeyError, TypeError, ValueError):
        return None
    record.pop("event", None)
    return Progress(str(record.pop("what", "")), done, total, record)


# ---------------------------------------------------------------------------------------------- run folder
class JsonlTail:
    """Incremental reader of an append-only JSONL file (the run's ``metrics.jsonl``).

    :meth:`read_new` returns the records appended since the last call; a line without its newline
    yet (the writer is mid-line) waits for the next call. A file that shrank (a new run in the same
    folder) is read again from the start, and ``reset`` is set so the caller can clear its curves.
    Lines that are not JSON objects are skipped and counted in ``bad_lines``, never fatal.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0
        self.reset = False
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        self.reset = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial, self.reset = 0, b"", True
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        records = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                self.bad_lines += 1
        return records


@dataclass
class CurveData:
    """Points per curve name (step, value), plus the run's latest progress facts."""

    points: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    last_step: int = 0
    steps_per_s: float | None = None
    eta_s: float | None = None
    event: str | None = None  # "start", "finished", "stopped"
    reason: str | None = None
    last_checkpoint: str | None = None
    last_preview: str | None = None

    def add(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        if not isinstance(step, (int, float)):
            return
        self.last_step = max(self.last_step, int(step)) if record.get("event") != "start" else int(step)
        for key in CURVE_KEYS:
            v = record.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                xs, ys = self.points.setdefault(key, ([], []))
                xs.append(float(step))
                ys.append(float(v))
        if isinstance(record.get("steps_per_s"), (int, float)):
            self.steps_per_s = float(record["steps_per_s"])
        if isinstance(record.get("eta_s"), (int, float)):
            self.eta_s = float(record["eta_s"])
        if record.get("event"):
            self.event = str(record["event"])
            self.reason = record.get("reason")
        if record.get("checkpoint"):
            self.last_checkpoint = str(record["checkpoint"])
        if record.get("preview"):
            self.last_preview = str(record["preview"])

    def count(self, key: str = "loss") -> int:
        return len(self.points.get(key, ([], []))[0])


def list_run_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete ``checkpoints/step_*`` folders of a run, oldest first (the trainer's own rule, torch-free)."""
    return list_checkpoints(Path(run_dir) / "checkpoints")


def latest_preview(run_dir: str | os.PathLike) -> tuple[int, Path] | None:
    """The newest ``previews/step_*.png`` (by step), or None."""
    folder = Path(run_dir) / "previews"
    if not folder.is_dir():
        return None
    best = None
    for p in folder.iterdir():
        m = PREVIEW_RE.match(p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best
