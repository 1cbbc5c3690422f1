"""What every sampler yields and how it draws noise: the :class:`Step` event and per-sample
seeded normal noise. Shared by the paper's samplers (:mod:`prdit.diffusion`) and the multistep
solvers (:mod:`prdit.solvers`), so neither imports the other's loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class Step:
    """One sampler event: the ``index``-th of ``total`` steps, at integer timestep ``t``.

    ``x0_hat`` is the model's clean-volume estimate at this step (what a viewer streams), ``x_t``
    the state the model saw (only with ``return_xt=True``), ``sample`` the finished volume (set on
    the final step only). The final step of a walk of two or more steps is at ``t = 0``, where the
    state is the clean volume: there ``x0_hat``, ``x_t`` and ``sample`` are that state. All in the
    model's [-1, 1] scale, shape ``[B, C, D, H, W]``.
    """

    index: int
    total: int
    t: int
    x0_hat: torch.Tensor
    x_t: torch.Tensor | None = None
    sample: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.sample is not None

    @property
    def fraction(self) -> float:
        """Progress in (0, 1]."""
        return (self.index + 1) / self.total


def _randn(
    shape: tuple[int, ...], gens: Generators, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal noise; with a per-sample list, sample ``i`` draws only from ``gens[i]``."""
    if gens is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(gens, torch.Generator):
        return torch.randn(shape, generator=gens, device=gens.device, dtype=dtype).to(device)
    return torch.stack(
        [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype).to(device) for g in gens]
    )
