"""A training run's checkpoints: atomic ``step_*`` folders (weights, EMA, optimiser, RNG, meta),
reading them back for an exact resume, and the RNG states of every rank."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdit import __version__
from prdit.atomic import current_umask
from prdit.checkpoint.formats import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_safetensors,
    meta_to_str,
    plain_state,
    safe_torch_load,
)
from prdit.checkpoint_dirs import STEP_DIR_RE as STEP_DIR_RE  # re-exported: prdit.cli.info uses it
from prdit.checkpoint_dirs import list_checkpoints


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Every RNG the training process touches, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------------------------------------- saving
def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    meta: dict[str, Any],
    rng_states: list[dict[str, Any]] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write ``ckpt_root/step_XXXXXXX`` atomically and prune to the newest ``keep_last``.

    ``meta`` must be JSON-serialisable (model name, input size, HU window, spacing, config...).
    """
    from safetensors.torch import save_file

    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        step=int(step),
        software_version=__version__,
        torch_version=torch.__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        str_meta = meta_to_str({k: v for k, v in meta.items() if k != "format"})
        save_file(plain_state(model_state), str(tmp / "model.safetensors"), metadata=str_meta)
        if ema_state is not None:
            save_file(plain_state(ema_state), str(tmp / "ema.safetensors"), metadata=str_meta)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        if rng_states is not None:
            torch.save(rng_states, tmp / "rng.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        if final.exists():  # the same step saved again (e.g. a signal right after a periodic save)
            old = root / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        found = list_checkpoints(root)
        last = (
            f"the last good checkpoint, {found[-1][1]}, is intact"
            if found
            else "no earlier checkpoint exists"
        )
        free = shutil.disk_usage(root).free
        reason = "the disk is full" if free < 64 << 20 else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        raise CheckpointError(
            f"checkpoint {final} could not be written ({reason}; {free / 2**20:.1f} MiB free on that disk); "
            f"{last}. Free some space, then continue with --resume."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old_step, path in list_checkpoints(root)[:-keep_last]:
            if old_step != step:
                shutil.rmtree(path, ignore_errors=True)
    return final


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A run folder, its ``checkpoints`` folder or a ``step_*`` folder -> the step folder to load."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p}: no such file or folder")
    if p.is_dir() and (p / "meta.json").is_file():
        return p
    for root in (p / "checkpoints", p):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise CheckpointError(f"checkpoint {p}: a folder with no complete step_* checkpoint in it")


def read_meta(step_dir: str | Path) -> dict[str, Any]:
    path = Path(step_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a PRDiT checkpoint (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {meta.get('format_version')} is newer than this "
            f"software understands ({FORMAT_VERSION}); update prdit"
        )
    return meta


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly."""

    path: Path
    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any] | None
    rng: list[dict[str, Any]] | None

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def load_training_state(path: str | Path) -> TrainingState:
    """Load a checkpoint of ours for resuming (all on CPU; the trainer moves what it needs)."""
    step_dir = resolve_checkpoint_dir(path)
    meta = read_meta(step_dir)
    model = load_safetensors(step_dir / "model.safetensors")[0]
    ema_file = step_dir / "ema.safetensors"
    ema = load_safetensors(ema_file)[0] if ema_file.is_file() else None
    opt = safe_torch_load(step_dir / "optimizer.pt") if (step_dir / "optimizer.pt").is_file() else None
    rng = safe_torch_load(step_dir / "rng.pt") if (step_dir / "rng.pt").is_file() else None
    return TrainingState(step_dir, meta, model, ema, opt, rng)
