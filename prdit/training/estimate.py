"""Memory and time one training process will need, before it starts (``prdit train --dry-run``,
the Train panel, and the check every run makes before its first step).

The run's own pieces are built exactly as :class:`prdit.training.Trainer` builds them (datasets for
the HU window, the stage's model, the batch plan, the precision), nothing is written, and
:func:`prdit.estimate.estimate_training` traces one step on fake tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prdit.config import Config
from prdit.estimate import Estimate, estimate_training


def cached_data_bytes(cfg: Config, train_set, val_set) -> int:
    """Bytes of volumes the data sets keep in memory: phantoms are cached once made, in every
    loader worker process (folders are read from disk per item)."""
    if cfg.data.source != "phantom" or not cfg.data.cache:
        return 0
    count = len(train_set) + (len(val_set) if val_set is not None else 0)
    return count * cfg.model.input_size**3 * 4 * max(1, cfg.data.num_workers)


def planned_amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast format before any probe: bf16 when set or on a GPU, else float32. The memory
    check runs with it *before* the precision probe, so an oversized batch is refused before
    anything of its size is allocated (float32 is the larger of the two on a CPU)."""
    p = cfg.train.precision
    if p == "bf16" or (p == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def estimate_for(
    cfg: Config,
    device: torch.device,
    model: nn.Module,
    trainable: list[nn.Parameter],
    diffusion,
    micro_batch: int,
    amp_dtype: torch.dtype | None,
    data_bytes: int,
    probe: bool,
    world_size: int = 1,
) -> Estimate:
    """One process's estimate; the "largest batch" advice is given as a ``train.batch_size``."""
    estimate = estimate_training(
        model,
        trainable,
        micro_batch=micro_batch,
        size=cfg.model.input_size,
        grad_accum=cfg.train.grad_accum,
        diffusion=diffusion,
        amp_dtype=amp_dtype,
        device=device,
        data_bytes=data_bytes,
        probe=probe,
    )
    per_micro = world_size * cfg.train.grad_accum
    if estimate.largest_batch:
        estimate.largest_batch *= per_micro
    estimate.batch_label = "train.batch_size" + (f" ({per_micro} x the micro-batch)" if per_micro > 1 else "")
    return estimate


def dry_run(
    cfg: Config, device: torch.device, world_size: int = 1, log: Callable[[str], None] = print
) -> Estimate:
    """Build the run's model and data description as training would and estimate one process."""
    from prdit.data.normalize import HUWindow
    from prdit.diffusion import IaNDiffusion
    from prdit.training.data_feed import BatchPlan, _window_dict, build_datasets
    from prdit.training.model_setup import build_training_model, choose_training_precision

    train_set, val_set = build_datasets(cfg)
    hu_window = HUWindow.from_dict(_window_dict(getattr(train_set, "hu_window", None)))
    plan = BatchPlan(cfg.train.batch_size, world_size, cfg.train.grad_accum)
    diffusion = IaNDiffusion(num_timesteps=cfg.diffusion.num_timesteps, noise_scale=cfg.diffusion.noise_scale)
    torch.manual_seed(cfg.train.seed)
    model = build_training_model(cfg, hu_window, log).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    data = cached_data_bytes(cfg, train_set, val_set)
    first = estimate_for(
        cfg,
        device,
        model,
        trainable,
        diffusion,
        plan.micro,
        planned_amp_dtype(cfg, device),
        data,
        False,
        world_size,
    )
    if not first.fits:  # nothing of the run's size is allocated: no probe
        return first
    choice = choose_training_precision(cfg, device, model, trainable, diffusion, plan.micro)
    log(f"computes in {choice.describe()}")
    return estimate_for(
        cfg, device, model, trainable, diffusion, plan.micro, choice.dtype, data, True, world_size
    )
