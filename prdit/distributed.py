"""One process or many: torchrun detection, process-group set-up and data sharding.

Why this exists: the reference code demands ``torchrun`` even on one GPU. Here a plain ``python``
run is a world of size 1 with no process group at all, and ``torchrun`` (one node or many) is
detected from the environment variables it sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). Backends: NCCL on CUDA, gloo on CPU.

Everything else in the engine asks :class:`DistInfo` who it is instead of reading globals, so the
same loop is used for both cases and rank-0-only work (logging, checkpoints) is explicit.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Who this process is. ``world_size == 1`` and ``enabled == False`` for a plain run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the torchrun/torch.distributed.launch environment variables are present."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")) and (
        "MASTER_ADDR" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ
    )


def env_world_size() -> int:
    """World size announced by torchrun (1 for a plain run); readable before any set-up."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    except ValueError:
        return 1


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else CPU; ``cuda`` -> ``cuda:local_rank``."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
        if spec == "cuda":
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return torch.device(spec)
    raise ValueError(f"unknown device {spec!r}; allowed: auto, cpu, cuda, cuda:N")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Set up this process. Without torchrun: no process group, world of one.

    Under torchrun the process group is created once (NCCL for CUDA devices, gloo for CPU) and
    each process is pinned to GPU ``LOCAL_RANK``. Calling it again returns the existing state.
    """
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev, backend=backend)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group (no-op for a plain run)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_sum(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity for a plain run); returns the tensor."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(info: DistInfo, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (used to stop all ranks together)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(info: DistInfo, obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s Python object on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """List of every rank's object, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Rank ``rank``'s share of ``items``: a strided slice, so shares differ by at most one item.

    Strided rather than contiguous so that, for sampling, the first samples finish first on
    every rank (a partial run still has samples 0..k, not one rank's block).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return list(items[rank::world_size])
