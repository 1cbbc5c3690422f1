"""Denoisers with exact answers, for checking samplers: per-voxel Gaussian data and two-valued data.

A sampler is correct when, fed the exact posterior means of a known data distribution, its
outputs follow that distribution (spec section 6). For Gaussian data the probability-flow ODE is
also solvable in closed form (:func:`gaussian_flow`), so a deterministic solver's error against
it measures its order. Used by ``tests/engine`` and ``benchmarks/sampler_quality.py``.
"""

from __future__ import annotations

import math

import torch

from prdit.diffusion import IaNDiffusion


def _coefs(diffusion: IaNDiffusion, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    beta = diffusion.angle(t.double()).reshape(-1, *[1] * (ndim - 1))
    return torch.cos(beta), torch.sin(beta)


def gaussian_denoiser(mu: float, s: float, diffusion: IaNDiffusion | None = None):
    """``model(x, t) -> [n_hat, x0_hat]``: exact posterior means for per-voxel ``x0 ~ N(mu, s^2)``."""
    d = diffusion or IaNDiffusion()

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c, si = _coefs(d, t, x.ndim)
        var = c * c * s * s + (d.noise_scale * si) ** 2
        resid = x.double() - c * mu
        x0 = mu + c * s * s / var * resid
        n = si * d.noise_scale**2 / var * resid
        return torch.cat([n, x0], 1).to(x.dtype)

    return model


def gaussian_flow(
    x_start: torch.Tensor, t_start: int, mu: float, s: float, diffusion: IaNDiffusion | None = None
):
    """Where the probability-flow ODE takes ``x_start`` (at ``t_start``) at ``t = 0`` for Gaussian
    data: the standardised value is kept, ``x0 = mu + s z``."""
    d = diffusion or IaNDiffusion()
    beta = d.angle(float(t_start))
    a, sig = math.cos(beta), d.noise_scale * math.sin(beta)
    return mu + s * (x_start - a * mu) / math.sqrt(a * a * s * s + sig * sig)


def two_point_denoiser(a: float, b: float, p: float, diffusion: IaNDiffusion | None = None):
    """``x0 = a`` with probability ``p``, else ``b``: the posterior mean is a logistic mixture."""
    d = diffusion or IaNDiffusion()

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c, si = _coefs(d, t, x.ndim)
        xd = x.double()
        v = ((d.noise_scale * si) ** 2).clamp_min(1e-300)
        logit = math.log(p / (1 - p)) - ((xd - c * a) ** 2 - (xd - c * b) ** 2) / (2 * v)
        w = torch.sigmoid(logit)
        x0 = torch.where(si > 0, w * a + (1 - w) * b, xd)  # at t = 0 the state is the data
        n = torch.where(si > 0, (xd - c * x0) / si.clamp_min(1e-300), torch.zeros_like(xd))
        return torch.cat([n, x0], 1).to(x.dtype)

    return model
