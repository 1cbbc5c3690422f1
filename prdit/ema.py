"""Exponential moving average of a model's weights (the weights PRDiT samples with).

``ema = decay * ema + (1 - decay) * w`` after each optimiser step, written as ``lerp`` so that a
weight that never changes (a frozen stage-1 coarse path in stage 2, the frozen 128^3 backbone in
stage 3) stays *bit-identical* in the EMA too: ``a.lerp(a, w) == a`` exactly, while
``0.9999 * a + 0.0001 * a`` is not always ``a`` in floating point.

The EMA holds a full state dict (parameters and buffers) with the model's own names, so the EMA
weights load straight into a fresh model with ``load_state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class EMA:
    """Shadow copy of ``model``'s state; ``update`` after each optimiser step."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        model = unwrap(model)
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._trainable = [n for n, p in model.named_parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        model = unwrap(model)
        params = dict(model.named_parameters())
        names = [n for n in self._trainable if n in params]
        if names:
            shadow = [self.shadow[n] for n in names]
            current = [params[n].detach().to(self.shadow[n].dtype) for n in names]
            torch._foreach_lerp_(shadow, current, 1.0 - self.decay)
        for name, buf in model.named_buffers():
            if name in self.shadow:
                self.shadow[name].copy_(buf)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        for k, v in state.items():
            if v.shape != self.shadow[k].shape:
                raise ValueError(
                    f"EMA tensor {k}: shape {tuple(v.shape)} != model {tuple(self.shadow[k].shape)}"
                )
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the EMA weights into ``model`` (e.g. a separate evaluation copy)."""
        unwrap(model).load_state_dict(self.shadow)
