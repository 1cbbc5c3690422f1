"""The network a run trains: built for its stage (stage 2 and 3 start from a checkpoint, partly
frozen), the normalisation checks between stages, activation checkpointing, the precision the run
computes in, and loading a resumed run's weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prdit import checkpoint as ckpt
from prdit.config import Config
from prdit.data.normalize import HUWindow
from prdit.ema import unwrap
from prdit.training.errors import TrainingSetupError

_MASK64 = (1 << 63) - 1


# ---------------------------------------------------------------------------------------------- model
def build_training_model(cfg: Config, hu_window: HUWindow, log: Callable[[str], None]) -> nn.Module:
    """The network for ``cfg.stage``, initialised (and partly frozen) as the stage requires."""
    from prdit.models import build_highres_model, build_model

    attention = None if cfg.model.attention == "auto" else cfg.model.attention
    if cfg.stage == 1:
        return build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
    if cfg.model.from_scratch:  # validated: stage 2 without init_from
        log(f"stage 2 from scratch: {cfg.model.name}, all parameters trained jointly from random weights")
        return build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
    state, meta, source, kind = ckpt.read_weights(cfg.model.init_from, use_ema=cfg.model.init_use_ema)
    check_normalisation(meta.get("hu_window"), hu_window, f"model.init_from: {source}", log)
    if cfg.stage == 2:
        model = build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
        try:
            model.load_stage1_state_dict(state, freeze=True)
        except ValueError as exc:
            raise TrainingSetupError(f"model.init_from: {source}: {exc}") from None
        log(f"stage 2: coarse path loaded from {source} ({kind} weights) and frozen")
        return model
    base_size = int(cfg.model.base_size)  # validated: stage 3 has base_size
    if meta.get("model_name") and meta["model_name"] != cfg.model.name:
        raise TrainingSetupError(
            f"model.init_from: {source} holds {meta['model_name']}, but model.name is {cfg.model.name}"
        )
    if meta.get("input_size") and int(meta["input_size"]) != base_size:
        raise TrainingSetupError(
            f"model.base_size: {base_size}, but {source} was trained at {meta['input_size']}^3"
        )
    if meta.get("format") == "reference":
        base = build_model(cfg.model.name, input_size=base_size, attention=attention)
    else:  # ours: a PRDiT, or a stage-3 model for a cascade (64^3 -> 128^3 reusing 32^3 -> 64^3)
        base = ckpt.build_model_from_meta(meta, attention=attention)
    from prdit.models import load_weights

    try:
        load_weights(base, state)
    except ValueError as exc:
        raise TrainingSetupError(f"model.init_from: {source}: {exc}") from None
    model = build_highres_model(
        base,
        input_size=cfg.model.input_size,
        patch=cfg.model.highres_patch,
        width=cfg.model.highres_width,
        alignment=cfg.model.highres_alignment,
        noise=cfg.model.highres_noise,
        noise_image_var=cfg.model.highres_noise_image_var,
        noise_scale=cfg.diffusion.noise_scale,
        num_timesteps=cfg.diffusion.num_timesteps,
    )
    log(f"stage 3: {cfg.model.name} at {base_size}^3 loaded from {source} ({kind} weights) and frozen")
    return model


def check_normalisation(
    recorded: dict[str, Any] | None,
    window: HUWindow,
    where: str,
    log: Callable[[str], None] | None = None,
) -> None:
    """Refuse to continue from weights trained on differently normalised data.

    ``recorded`` is the checkpoint's ``hu_window`` (None: nothing recorded, nothing to check) and
    ``window`` the one this run's data use. Fixed windows (``mode="window"``) must match exactly:
    the same HU must map to the same model value in every stage. Min-max data (``mode="minmax"``)
    are different: every volume was scaled by its own minimum and maximum, and the dataset's
    window is only a nominal median of those, which differs between datasets of the same scans
    at another size or with more cases (a 128^3 and a 256^3 LIDC folder). The model never saw
    those numbers, so for min-max only the mode must match; a differing nominal window is logged.
    """
    if not recorded:
        return
    theirs = HUWindow.from_dict(recorded)
    if theirs.mode != window.mode:
        raise TrainingSetupError(
            f"{where} was trained on {theirs.mode!r}-normalised data ({theirs.to_dict()}), but this run's "
            f"data are {window.mode!r}-normalised ({window.to_dict()}); the stages must share one "
            f"normalisation: prepare the data with prdit preprocess --norm {theirs.mode}"
        )
    if theirs == window:
        return
    if window.mode == "minmax":
        if log is not None:
            log(
                f"{where}: min-max data; its nominal window {theirs.low:g}..{theirs.high:g} HU differs from "
                f"this dataset's {window.low:g}..{window.high:g} HU. Only the mode must match (min-max "
                f"values carry no HU scale); this run records {window.low:g}..{window.high:g}."
            )
        return
    raise TrainingSetupError(
        f"{where} was trained with HU window {theirs.to_dict()}, but this run's data use "
        f"{window.to_dict()}; the stages must share one normalisation"
    )


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute activations of the heavy trainable blocks in backward (less memory, ~30% slower).

    Wraps each DiT block, the local denoiser and the stage-3 residual branch from outside by
    replacing the instance's ``forward``; parameter names (and so checkpoints) do not change.
    Returns the number of wrapped modules.
    """
    from torch.utils.checkpoint import checkpoint

    targets: list[nn.Module] = []
    m = unwrap(model)
    fine = getattr(m, "fine", None)
    if fine is not None:
        targets.extend(fine.blocks)
    for name in ("coarse", "residual"):
        sub = getattr(m, name, None)
        if isinstance(sub, nn.Module) and any(p.requires_grad for p in sub.parameters()):
            targets.append(sub)
    for mod in targets:
        inner = mod.forward

        def wrapped(*args, _inner=inner, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        mod.forward = wrapped  # type: ignore[method-assign]
    return len(targets)


# ---------------------------------------------------------------------------------------------- the loop
def choose_training_precision(
    cfg: Config,
    device: torch.device,
    model: nn.Module,
    trainable: list[nn.Parameter],
    diffusion: Any,
    micro_batch: int,
    resume_state: ckpt.TrainingState | None = None,
):
    """The run's autocast format (:mod:`prdit.precision`), chosen once, before the first step.

    A resumed run keeps the format its checkpoint recorded, so resuming stays exact whatever the
    machine measures today; ``auto`` on a CPU with native bf16 times one training step (forward
    and backward of this run's micro-batch) in each format.
    """
    from prdit.precision import PrecisionChoice, PrecisionSettingError, choose_precision, probe_formats

    recorded = resume_state.meta.get("precision") if resume_state is not None else None
    if recorded in ("fp32", "bf16") and cfg.train.precision == "auto":
        return PrecisionChoice(recorded, "--resume", f"{resume_state.path.name} recorded it")

    def probe():  # on up to 2 volumes: a ratio of speeds, not a full step
        shape = (min(max(1, micro_batch), 2), 1) + (cfg.model.input_size,) * 3
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.rand(shape, generator=gen).mul(2).sub(1).to(device)
        t = torch.full((shape[0],), cfg.diffusion.num_timesteps // 2, device=device)
        noise = torch.randn(shape, generator=gen).to(device)

        def step() -> torch.Tensor:
            losses = diffusion.training_losses(model, x, t=t, noise=noise)
            losses["loss"].backward()
            return losses["x0_hat"]

        try:
            return probe_formats(step, device, rounds=2)
        finally:
            for p in trainable:
                p.grad = None

    # "auto" in the config is the default: PRDIT_PRECISION may still choose
    requested = None if cfg.train.precision == "auto" else cfg.train.precision
    try:
        return choose_precision(requested, device, probe=probe, what="train.precision")
    except PrecisionSettingError as exc:
        raise TrainingSetupError(str(exc)) from None


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    from prdit.models import load_weights

    try:
        load_weights(model, state)
    except ValueError as exc:
        raise TrainingSetupError(f"--resume: {source}: {exc}") from None
