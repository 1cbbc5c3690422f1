"""What each process trains on and when: the seeded data order, the batch plan over ranks
and accumulation steps, per-sample noise and flips (so a resumed or re-sharded run sees the
same samples), and the datasets a config describes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdit.config import Config
from prdit.data.normalize import HUWindow
from prdit.training.errors import TrainingSetupError

_MASK64 = (1 << 63) - 1

VAL_STREAM = 1 << 40  # offset that keeps validation seeds apart from training positions


# ---------------------------------------------------------------------------------------------- randomness
def sample_seed(seed: int, position: int, stream: int = 0) -> int:
    """A 63-bit seed for one sample from (run seed, its position in the data stream, stream id).

    SplitMix64-style mixing, so neighbouring positions get unrelated generator states.
    """
    z = (seed * 0x9E3779B97F4A7C15 + position * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK64


class DataOrder:
    """Stateless shuffled order: position ``p`` -> dataset index ``perm(p // N)[p % N]``.

    Each epoch is a fresh permutation seeded by (seed, epoch); nothing to save on checkpoint
    except the step, and every rank computes the same order without communication.
    """

    def __init__(self, length: int, seed: int) -> None:
        if length < 1:
            raise TrainingSetupError("the training dataset is empty")
        self.length = length
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        perm = self._perms.get(epoch)
        if perm is None:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, stream=7))
            perm = torch.randperm(self.length, generator=g).tolist()
            self._perms = {epoch: perm}  # keep one epoch: memory stays O(N)
        return perm

    def index(self, position: int) -> int:
        return self._perm(position // self.length)[position % self.length]


class BatchPlan:
    """Who trains on which positions: global batch ``B`` = world x grad_accum x micro."""

    def __init__(self, batch_size: int, world: int, grad_accum: int) -> None:
        self.batch_size = batch_size
        self.world = world
        self.grad_accum = grad_accum
        self.micro = batch_size // (world * grad_accum)

    def positions(self, step: int, accum_index: int, rank: int) -> list[int]:
        start = step * self.batch_size + (accum_index * self.world + rank) * self.micro
        return list(range(start, start + self.micro))


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches (lists of dataset indices) from ``start_step`` on."""

    def __init__(self, order: DataOrder, plan: BatchPlan, rank: int, start_step: int, max_steps: int) -> None:
        self.order, self.plan, self.rank = order, plan, rank
        self.start_step, self.max_steps = start_step, max_steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            for a in range(self.plan.grad_accum):
                yield [self.order.index(p) for p in self.plan.positions(step, a, self.rank)]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.plan.grad_accum


def per_sample_noise(
    positions: list[int],
    seed: int,
    shape: tuple[int, ...],
    num_timesteps: int,
    device: torch.device,
    stream: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t ``[B]`` long, eps ``[B, *shape]`` float32, flip ``[B]`` bool), each row from its own seed."""
    ts, eps, flips = [], [], []
    for p in positions:
        g = torch.Generator(device=device).manual_seed(sample_seed(seed, p, stream))
        ts.append(torch.randint(0, num_timesteps, (1,), generator=g, device=device))
        flips.append(torch.rand((1,), generator=g, device=device) < 0.5)
        eps.append(torch.randn((1, *shape), generator=g, device=device))
    return torch.cat(ts), torch.cat(eps), torch.cat(flips)


def apply_flips(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Left-right flip (last axis, patient x) of the rows where ``flips`` is true."""
    if not bool(flips.any()):
        return x
    flipped = torch.flip(x, dims=[-1])
    mask = flips.view(-1, *([1] * (x.ndim - 1)))
    return torch.where(mask, flipped, x)


# ---------------------------------------------------------------------------------------------- data
def build_datasets(cfg: Config) -> tuple[Any, Any]:
    """(train, val) datasets yielding ``[1, S, S, S]`` float32 in [-1, 1] with ``hu_window``/``spacing``.

    Flips are applied by the loop (seeded per sample), so datasets are built with ``flip=False``.
    """
    from prdit.data import datasets

    size = cfg.model.input_size
    if cfg.data.source == "phantom":
        window = HUWindow(**vars(cfg.data.hu_window)) if cfg.data.hu_window else HUWindow()
        common = dict(size=size, hu_window=window, flip=False, cache=cfg.data.cache)
        train = datasets.PhantomDataset(
            length=cfg.data.phantom_count, seed_offset=cfg.data.phantom_seed_offset, **common
        )
        val = datasets.PhantomDataset(
            length=cfg.data.phantom_val_count,
            seed_offset=cfg.data.phantom_seed_offset + 1_000_000,  # never a training phantom
            **common,
        )
        return train, val
    root = Path(cfg.data.root or "")
    if not root.is_dir():
        raise TrainingSetupError(f"data.root: {root} is not a folder")
    train = datasets.VolumeFolderDataset(root, split=cfg.data.train_split, flip=False)
    try:
        val = datasets.VolumeFolderDataset(root, split=cfg.data.val_split, flip=False)
        if len(val) == 0:
            val = None
    except (FileNotFoundError, ValueError):
        val = None
    if cfg.data.hu_window is not None:
        want = HUWindow(**vars(cfg.data.hu_window))
        if HUWindow.from_dict(_window_dict(train.hu_window)) != want:
            raise TrainingSetupError(
                f"data.hu_window: the config says {want.to_dict()} but the dataset {root} was prepared "
                f"with {_window_dict(train.hu_window)}; remove data.hu_window or re-run prdit preprocess"
            )
    return train, val


def _window_dict(window: Any) -> dict[str, Any]:
    if isinstance(window, HUWindow):
        return window.to_dict()
    if isinstance(window, dict):
        return HUWindow.from_dict(window).to_dict()
    return HUWindow().to_dict()


def _spacing(dataset: Any) -> list[float]:
    sp = getattr(dataset, "spacing", None)
    if sp is None:
        return [1.0, 1.0, 1.0]
    arr = np.asarray(sp, dtype=float).reshape(-1)
    return [float(arr[0])] * 3 if arr.size == 1 else [float(v) for v in arr[:3]]


def _check_item(x: torch.Tensor, size: int, where: str) -> None:
    if x.ndim != 5 or tuple(x.shape[1:]) != (1, size, size, size):
        raise TrainingSetupError(
            f"{where}: expected volumes [1, {size}, {size}, {size}] (model.input_size), got batch "
            f"{tuple(x.shape)}; preprocess the data at this size or change model.input_size"
        )
