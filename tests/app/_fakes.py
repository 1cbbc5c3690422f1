"""Fakes for the studio's generation tests: a counting model and an IaN-style sampler generator.

They yield the engine's own ``Step`` events from a generator that a consumer may close, so that
worker tests do not depend on training anything.
"""

from __future__ import annotations

import math
import threading
import time

import torch

from prdit.model_info import ModelInfo
from prdit.steps import Step


class CountingModel:
    """x0_hat grows from 0 (t = 1000) to a fixed target (t = 0); counts calls; may sleep or raise."""

    def __init__(self, size: int = 8, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.size = size
        self.delay_s = delay_s
        self.fail_at = fail_at
        self.calls = 0
        self.lock = threading.Lock()
        g = torch.Generator().manual_seed(0)
        self.target = torch.rand((1, 1, size, size, size), generator=g) * 2 - 1

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.fail_at is not None and n >= self.fail_at:
            raise RuntimeError(f"model exploded at call {n}")
        if self.delay_s:
            time.sleep(self.delay_s)
        x0 = torch.cat([self.x0_at(int(ti)) for ti in t])
        return torch.cat([torch.zeros_like(x_t), x0], dim=1)

    def x0_at(self, t: int) -> torch.Tensor:
        return self.target * (1.0 - t / 1000.0)


def fake_sampler(model: CountingModel, batch: int, steps: int, gens=None):
    """A cold IaN walk with the fake model: one model call per step, like the engine's samplers."""
    size = model.size
    shape = (batch, 1, size, size, size)
    if gens is None:
        gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    x = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in gens]) * 0.5
    ts = [round(999 * (1 - i / steps)) for i in range(steps)]
    for i, t in enumerate(ts):
        out = model(x, torch.full((batch,), t))
        n_hat, x0_hat = out[:, :1], out[:, 1:]
        beta = math.pi / 2 * t / 1000
        beta_next = math.pi / 2 * (ts[i + 1] if i + 1 < steps else 0) / 1000
        g_t = math.sin(beta) * x0_hat - math.cos(beta) * n_hat
        x_next = x + (beta - beta_next) * g_t
        final = x0_hat if i == steps - 1 else None
        yield Step(i, steps, t, x0_hat, x, final)
        x = x_next


def fake_source(model: CountingModel, steps: int, batch: int = 1, info: ModelInfo | None = None):
    """A StepSource for SamplingWorker built on :func:`fake_sampler`."""
    info = info or ModelInfo("PRDiT-XS/4/0", model.size, spacing=(1.5, 1.5, 2.0), sha256="ab" * 32)

    def open_source(worker):
        return fake_sampler(model, batch, steps), info

    return open_source
