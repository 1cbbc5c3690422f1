"""The multistep solvers (prdit.solvers) against analytic denoisers with known answers, and their
Step contract (the one every sampler keeps)."""

from __future__ import annotations

import pytest
import torch

from prdit.analytic import gaussian_denoiser, gaussian_flow, two_point_denoiser
from prdit.diffusion import SAMPLERS, IaNDiffusion, run_to_end, sample
from prdit.solvers import SOLVERS, solver_timesteps

D = IaNDiffusion()
MU, S = 0.3, 0.2
SHAPE = (2, 1, 16, 16, 16)


def _flow_error(name: str, nfe: int, schedule: str = "uniform") -> float:
    """Max error of a deterministic sampler against the exact probability-flow map (float64)."""
    x_start = D.noise_scale * torch.randn(
        SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    g = torch.Generator().manual_seed(0)
    model = gaussian_denoiser(MU, S, D)
    if name in SOLVERS:
        walk = D.sample_solver(
            model, SHAPE, nfe + 1, name, schedule=schedule, generator=g, dtype=torch.float64
        )
    else:
        walk = sample(model, SHAPE, name, nfe + 1, generator=g, dtype=torch.float64)
    return float((run_to_end(walk) - gaussian_flow(x_start, D.num_timesteps - 1, MU, S, D)).abs().max())


def test_v2m_at_20_evaluations_beats_the_cold_sampler_at_100():
    assert _flow_error("v2m", 20) < _flow_error("cold", 100)


def test_v2m_error_falls_at_second_order_as_evaluations_double():
    # on the log-SNR grid (which ends at t = 1, so the endpoint adds nothing) the error falls ~4x
    # per doubling; the cold sampler (Euler) ~2x
    errs = [_flow_error("v2m", n, "logsnr") for n in (40, 80, 160)]
    assert errs[0] / errs[1] > 3.0 and errs[1] / errs[2] > 3.0
    cold = [_flow_error("cold", n) for n in (40, 80)]
    assert 1.6 < cold[0] / cold[1] < 2.5


@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_turn_noise_into_the_data_distribution(name):
    shape = (4, 1, 24, 24, 24)
    g = torch.Generator().manual_seed(3)
    x = run_to_end(sample(gaussian_denoiser(MU, S, D), shape, name, 21, generator=g, dtype=torch.float64))
    assert abs(float(x.mean()) - MU) < 0.01 and abs(float(x.std()) - S) < 0.01
    g = torch.Generator().manual_seed(4)
    y = run_to_end(
        sample(two_point_denoiser(0.4, -0.6, 0.5, D), shape, name, 21, generator=g, dtype=torch.float64)
    )
    near = torch.minimum((y - 0.4).abs(), (y + 0.6).abs())
    assert float((near < 0.05).double().mean()) > 0.97  # on the two values, not between them
    assert abs(float((y > -0.1).double().mean()) - 0.5) < 0.03  # in the right proportion


@pytest.mark.parametrize("name", SOLVERS)
def test_step_contract_endpoints_seeds_and_cancel(name):
    calls = []
    base = gaussian_denoiser(MU, S, D)

    def model(x, t):
        calls.append(int(t[0]))
        return base(x, t)

    steps = list(sample(model, SHAPE, name, 8))
    assert len(steps) == 8 and len(calls) == 7  # one event per evaluation, the last at t = 0 is free
    assert [s.t for s in steps] == solver_timesteps(D, 8) and steps[-1].t == 0
    assert all(s.sample is None for s in steps[:-1]) and steps[-1].sample is not None
    assert torch.equal(steps[-1].sample, steps[-1].x0_hat)
    # one step: the single-shot estimate at t = T - 1; two: one evaluation, then the landing at t = 0
    one = list(sample(base, SHAPE, name, 1))
    assert len(one) == 1 and one[0].t == D.num_timesteps - 1 and one[0].sample is not None
    two = list(sample(base, SHAPE, name, 2))
    assert [s.t for s in two] == [D.num_timesteps - 1, 0]
    torch.testing.assert_close(two[1].sample, two[0].x0_hat)  # lands on the velocity's image
    # per-sample seeds: sample 1 of a batch is sample 0 of a batch of one with the same seed
    batch = run_to_end(
        sample(base, SHAPE, name, 6, generator=[torch.Generator().manual_seed(s) for s in (5, 6)])
    )
    alone = run_to_end(sample(base, (1, *SHAPE[1:]), name, 6, generator=[torch.Generator().manual_seed(6)]))
    torch.testing.assert_close(batch[1:], alone)
    # cancel: closing the generator stops the model calls
    calls.clear()
    walk = sample(model, SHAPE, name, 50)
    next(walk), next(walk)
    walk.close()
    assert len(calls) == 2


def test_bad_names_and_options_are_named():
    with pytest.raises(ValueError, match="hot, cold, v2m, v2m-sde"):
        sample(gaussian_denoiser(MU, S, D), SHAPE, "dpm++", 10)
    with pytest.raises(ValueError, match="schedule must be one of uniform, logsnr, karras"):
        D.sample_solver(gaussian_denoiser(MU, S, D), SHAPE, 10, "v2m", schedule="cosine")
    assert SAMPLERS == ("hot", "cold", "v2m", "v2m-sde")
    for schedule in ("uniform", "logsnr", "karras"):
        for n in (3, 10, 50, 250):
            ts = solver_timesteps(D, n, schedule)
            assert (
                len(ts) == n
                and ts[0] == 999
                and ts[-1] == 0
                and all(a > b for a, b in zip(ts[:-1], ts[1:], strict=True))
            )
