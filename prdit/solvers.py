"""Multistep solvers built for PRDiT's two heads: fewer network evaluations per volume.

Why not the textbook solvers: DDIM and DPM-Solver++ step with the network's clean-image estimate,
and PRDiT's x0 head is lossy at low noise (it halves bone contrast at t = 0, docs/engine.md),
while the image implied by its noise head explodes at high noise (issue 20's table: FID 8-21 at
10-20 NFE). The paper's samplers instead follow the tangent ``g = sin(b) x0_hat - cos(b) n_hat``,
the velocity of ``x_b = cos(b) x0 + sin(b) n`` (``n = sigma_n eps``; the "TrigFlow"
parametrisation) with the sign that lowers the noise.

The image the velocity implies is ``D = cos(b) x + sin(b) g``: with ``v = dx/db`` one has
``x0 = cos(b) x - sin(b) v`` exactly. It equals ``x0_hat`` plus ``cos(b)`` times the heads'
disagreement, so ``D`` is the x0 head at high noise and the noise head (``x - tan(b) n_hat``) at
low noise: it trusts each head where that head is good. These solvers are DPM-Solver++ (Lu et al.
2022) written for this process and fed ``D``:

* the exact integrator of the probability-flow ODE for a data estimate held constant over a step,
  in ``lambda = log(cos b / (sigma_n sin b))``: ``x' = (sin b'/sin b) x + cos b' (1 - e^-h) D``,
  ``h = lambda' - lambda``. First order it is the rotation ``x' = cos(d) x + sin(d) g``
  (``d = b - b'``): the cold sampler's Euler step ``x + d g`` made exact on the circle;
* ``v2m``: second order by two steps' ``D`` (the 2M multistep: ``D + (D - D_prev) / (2r)``,
  ``r = h_prev / h``), one network evaluation per step, deterministic;
* ``v2m-sde``: the stochastic variant (the SDE form of DPM-Solver++(2M)): each step contracts the
  state by ``e^-h`` and adds fresh noise so the marginal stays exact, the same idea as the hot
  sampler's re-noising corrector;
* the last step, to ``t = 0``, is first order and lands on ``D`` (``sin b' = 0``): the sample is
  the velocity's image at the last noise level, never the x0 head's guess at ``t = 0``;
* time discretisation: ``uniform`` in ``t`` (as the paper's samplers), ``logsnr`` (uniform in
  ``lambda``) or ``karras`` (uniform in ``s^(1/7)``, ``s = sigma_n tan b``: EDM's), the last two
  between ``t = T - 1`` and ``t = 1``, then ``t = 0``: they end at a noise level where the
  posterior mean is the data to 1e-6, so landing on ``D`` costs nothing.

Every solver is a generator of :class:`prdit.diffusion.Step` with the samplers' contract: one
event per network evaluation plus the final state at ``t = 0`` (``steps`` events, ``steps - 1``
evaluations), ``x0_hat`` = ``D`` streamed, cancel by closing, per-sample seeds, one state and one
previous estimate in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from prdit.sampler_names import SOLVERS  # noqa: F401 (re-exported: the solvers' names)
from prdit.steps import Step, _randn

SCHEDULES = ("uniform", "logsnr", "karras")


def log_snr(diffusion, t: float) -> float:
    """``lambda(t) = log(cos b / (sigma_n sin b))``, increasing as the noise falls (inf at t = 0)."""
    beta = diffusion.angle(float(t))
    return math.log(math.cos(beta) / (diffusion.noise_scale * math.sin(beta)))


def solver_timesteps(diffusion, steps: int, schedule: str = "uniform") -> list[int]:
    """``steps`` distinct integer timesteps from ``T - 1`` down to ``0``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "uniform" or steps <= 2:
        return diffusion.respace(steps)
    n, last = int(steps), diffusion.num_timesteps - 1
    if n - 1 > last:
        raise ValueError(f"the {schedule} schedule allows at most {last + 1} steps, got {steps}")
    # in the noise-to-signal ratio s = sigma_n tan(b) (the "sigma" of variance-exploding solvers)
    s_hi = diffusion.noise_scale * math.tan(diffusion.angle(float(last)))
    s_lo = diffusion.noise_scale * math.tan(diffusion.angle(1.0))
    ts: list[int] = []
    for i in range(n - 1):  # from t = T-1 to t = 1
        u = i / (n - 2)
        if schedule == "logsnr":  # uniform in lambda = -log s
            s_i = math.exp(math.log(s_hi) + u * (math.log(s_lo) - math.log(s_hi)))
        else:  # Karras et al. 2022: uniform in s^(1/7), denser at low noise
            s_i = (s_hi ** (1 / 7) + u * (s_lo ** (1 / 7) - s_hi ** (1 / 7))) ** 7
        beta = math.atan(s_i / diffusion.noise_scale)
        ts.append(round(beta * diffusion.num_timesteps / (math.pi / 2)))
    ts[0] = last
    for i in range(1, n - 1):  # strictly decreasing integers, room left for the ones after
        ts[i] = max(min(ts[i], ts[i - 1] - 1), n - 1 - i)
    return [*ts, 0]


def multistep(
    diffusion,
    model,
    shape: Sequence[int],
    ts: list[int],
    stochastic: bool,
    gens,
    device: torch.device,
    dtype: torch.dtype,
    return_xt: bool,
    constraint=None,
) -> Iterator:
    """The ``v2m`` / ``v2m-sde`` walk over ``ts`` (see the module docstring)."""
    total = len(ts)
    b, c = shape[:2]
    sigma_n = diffusion.noise_scale
    x = sigma_n * _randn(tuple(shape), gens, device, dtype)
    if constraint is not None:
        x = constraint(x, ts[0], gens)
    prev_d: torch.Tensor | None = None
    prev_h: float | None = None
    for i, t in enumerate(ts):
        if i == total - 1 and t == 0 and total > 1:
            # the previous step landed on D at t = 0: that state is the sample (no evaluation)
            yield Step(i, total, t, x, x if return_xt else None, sample=x)
            return
        t_vec = torch.full((b,), t, dtype=torch.long, device=device)
        with torch.no_grad():
            out = model(x, t_vec)
            n_hat, x0_hat = diffusion.split_prediction(out, c, tuple(shape))
            n_hat, x0_hat = n_hat.to(dtype), x0_hat.to(dtype)
        del out
        beta = diffusion.angle(float(t))
        g = diffusion.tangent(t, n_hat, x0_hat)
        d = math.cos(beta) * x + math.sin(beta) * g  # the image the velocity implies
        del n_hat, x0_hat, g
        shown = constraint(d, 0, gens) if constraint is not None else d
        if i == total - 1:  # one step: the single-shot estimate
            yield Step(i, total, t, shown, x if return_xt else None, sample=shown)
            return
        yield Step(i, total, t, shown, x if return_xt else None)
        t_next = ts[i + 1]
        if t_next == 0:
            x = d  # sin(b') = 0: the exact step lands on the data estimate (first order at the end)
        else:
            beta_next = diffusion.angle(float(t_next))
            h = log_snr(diffusion, t_next) - log_snr(diffusion, t)
            ratio = math.sin(beta_next) / math.sin(beta)
            if stochastic:
                coeff = math.cos(beta_next) * -math.expm1(-2.0 * h)
                eps = _randn(tuple(shape), gens, device, dtype)
                noise = sigma_n * math.sin(beta_next) * math.sqrt(-math.expm1(-2.0 * h))
                x = ratio * math.exp(-h) * x + coeff * d + noise * eps
                del eps
            else:
                coeff = math.cos(beta_next) * -math.expm1(-h)
                x = ratio * x + coeff * d
            if prev_d is not None and prev_h is not None:
                r = prev_h / h
                x = x + (coeff / (2.0 * r)) * (d - prev_d)
            prev_d, prev_h = d, h
        del d
        if constraint is not None:
            x = constraint(x, t_next, gens)
