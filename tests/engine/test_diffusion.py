"""The IaN process and its samplers, checked against analytic denoisers with known answers."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch

from prdit.analytic import gaussian_denoiser as _gaussian_denoiser
from prdit.analytic import two_point_denoiser as _two_point_denoiser
from prdit.diffusion import IaNDiffusion, Step, run_to_end, sample, sample_cold, sample_hot
from prdit.models import build_model

D = IaNDiffusion()
SHAPE = (4, 1, 16, 16, 16)


def gaussian_denoiser(mu: float, s: float):
    return _gaussian_denoiser(mu, s, D)


def two_point_denoiser(a: float, b: float, p: float):
    return _two_point_denoiser(a, b, p, D)


# ---------------------------------------------------------------------- forward process and loss
def test_forward_process_and_schedule():
    assert D.num_timesteps == 1000 and D.noise_scale == 0.5
    assert D.angle(0) == 0 and D.angle(500) == pytest.approx(math.pi / 4)
    x0 = torch.full((3, 1, 4, 4, 4), 0.8)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999])
    xt = D.q_sample(x0, t, eps)
    assert torch.equal(xt[0], x0[0])
    c = math.cos(math.pi / 4)
    torch.testing.assert_close(xt[1], c * x0[1] + c * 0.5 * eps[1])
    b = math.pi / 2 * 0.999
    torch.testing.assert_close(xt[2], math.cos(b) * x0[2] + math.sin(b) * 0.5 * eps[2])
    # noise scale 0.5: at the end the state has std ~0.5
    big = D.q_sample(torch.zeros(1, 1, 64, 64, 64), torch.tensor([999]), torch.randn(1, 1, 64, 64, 64))
    assert big.std().item() == pytest.approx(0.5, rel=0.01)


def test_respacing():
    assert D.respace(1000) == list(range(999, -1, -1))
    ts = D.respace(250)
    assert (
        len(ts) == 250
        and ts[0] == 999
        and ts[-1] == 0
        and all(a > b for a, b in zip(ts, ts[1:], strict=False))
    )
    gaps = [a - b for a, b in zip(ts, ts[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert D.respace(2) == [999, 0] and D.respace(1) == [999]
    for bad in (0, 1001, 2.5, -3):
        with pytest.raises(ValueError, match="sampling steps must be an integer in 1..1000"):
            D.respace(bad)


def test_step_sign_follows_the_forward_process():
    """With the true (n, x0), one step from beta_t to beta_j must land on the forward process at
    beta_j up to O(delta^2); the published minus sign would move away by O(delta)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 1, 8, 8, 8, generator=g) * 2 - 1
    n = 0.5 * torch.randn(x0.shape, generator=g)
    t, j = 600, 590
    bt, bj = D.angle(t), D.angle(j)
    xt = math.cos(bt) * x0 + math.sin(bt) * n
    target = math.cos(bj) * x0 + math.sin(bj) * n
    tangent = D.tangent(t, n, x0)
    err_plus = (xt + (bt - bj) * tangent - target).abs().max().item()
    err_minus = (xt - (bt - bj) * tangent - target).abs().max().item()
    assert err_plus < (bt - bj) ** 2  # second-order error only
    assert err_minus > 50 * err_plus


def test_training_losses():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 1, 8, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([100, 700])

    def oracle(x_t, tt):
        assert torch.equal(tt, t)
        return torch.cat([0.5 * eps, x0], 1)

    out = D.training_losses(oracle, x0, t=t, noise=eps)
    assert set(out) >= {"loss", "loss_x0", "loss_noise", "x0_hat"}
    assert out["loss"].item() == 0.0
    zero = D.training_losses(lambda x_t, tt: torch.zeros(2, 2, 8, 8, 8), x0, t=t, noise=eps)
    assert zero["loss_x0"].item() == pytest.approx(float((x0**2).mean()), rel=1e-6)
    assert zero["loss_noise"].item() == pytest.approx(float(((0.5 * eps) ** 2).mean()), rel=1e-6)
    assert zero["loss"].item() == pytest.approx(zero["loss_x0"].item() + zero["loss_noise"].item())
    # a real model gets gradients; t and eps drawn from the generator are reproducible
    model = build_model("PRDiT-XS/4/1", input_size=8)
    a = D.training_losses(model, x0, generator=torch.Generator().manual_seed(5))
    b = D.training_losses(model, x0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["t"], b["t"]) and a["loss"].item() == b["loss"].item()
    a["loss"].backward()
    assert model.coarse.mlp_denoise.linear_final.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"must return \[B, 2C, \.\.\.\] = \[2, 2, 8, 8, 8\]"):
        D.training_losses(lambda x_t, tt: torch.zeros(2, 1, 8, 8, 8), x0)


# ---------------------------------------------------------------------- samplers vs analytic answers
@pytest.mark.parametrize("sampler,k", [("cold", 1), ("hot", 2), ("hot", 3)])
def test_gaussian_data_is_reproduced(sampler, k):
    mu, s = 0.5, 0.3
    out = run_to_end(
        sample(gaussian_denoiser(mu, s), SHAPE, sampler, 250, k=k, generator=torch.Generator().manual_seed(1))
    )
    assert out.shape == SHAPE
    assert abs(out.mean().item() - mu) < 0.03 * mu
    assert abs(out.std().item() - s) < 0.03 * s


@pytest.mark.parametrize("sampler", ["cold", "hot"])
def test_two_valued_data_lands_on_both_values_in_proportion(sampler):
    a, b, p = -0.6, 0.5, 0.3
    out = run_to_end(
        sample(two_point_denoiser(a, b, p), SHAPE, sampler, 250, generator=torch.Generator().manual_seed(2))
    )
    near = torch.minimum((out - a).abs(), (out - b).abs())
    assert (near < 0.02).float().mean() > 0.99  # samples are the data values, not blurry means
    frac_a = (out < (a + b) / 2).float().mean().item()
    assert abs(frac_a - p) < 0.02  # 16384 voxels: binomial std 0.0036


def test_hot_with_k1_is_the_cold_sampler_and_hot_differs():
    model = gaussian_denoiser(0.0, 0.4)
    cold = run_to_end(sample_cold(model, (1, 1, 4, 4, 4), 50, generator=torch.Generator().manual_seed(3)))
    hot1 = run_to_end(sample_hot(model, (1, 1, 4, 4, 4), 50, k=1, generator=torch.Generator().manual_seed(3)))
    hot2 = run_to_end(sample_hot(model, (1, 1, 4, 4, 4), 50, k=2, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(cold, hot1) and not torch.allclose(cold, hot2)


# ---------------------------------------------------------------------- the generator contract
def test_steps_stream_x0_hat_and_end_with_the_sample():
    model = gaussian_denoiser(0.1, 0.2)
    events = list(
        sample(model, (2, 1, 4, 4, 4), "hot", 20, generator=torch.Generator().manual_seed(0), return_xt=True)
    )
    assert [e.index for e in events] == list(range(20)) and all(e.total == 20 for e in events)
    assert [e.t for e in events] == D.respace(20)
    assert all(isinstance(e, Step) and e.x0_hat.shape == (2, 1, 4, 4, 4) for e in events)
    assert all(e.x_t is not None for e in events)
    assert [e.sample is not None for e in events] == [False] * 19 + [True]
    assert events[-1].done and events[-1].fraction == 1.0
    assert torch.equal(events[-1].sample, events[-1].x0_hat)
    # the first state is sigma_n * eps; x0_hat sharpens towards the end
    assert events[0].x_t.std().item() == pytest.approx(0.5, rel=0.3)
    assert events[0].x0_hat.std() < events[-1].x0_hat.std()
    # without return_xt no state is handed out
    assert all(e.x_t is None for e in sample(model, (1, 1, 4, 4, 4), "cold", 5))


def test_the_sample_is_the_state_at_t0_not_a_second_pass_through_the_model():
    """At t = 0 the forward process is the identity: the walk's state is the sample.

    A denoiser that is exact except at t = 0, where it halves contrast (what an under-trained
    network does to thin bone), must not degrade the result, and it is not even called there.
    """
    exact = two_point_denoiser(-0.8, 0.6, 0.3)
    calls = []

    def lossy_at_t0(x, t):
        calls.append(int(t[0]))
        out = exact(x, t)
        if int(t[0]) == 0:
            out[:, 1:] = out[:, 1:] * 0.5
        return out

    for sampler in ("cold", "hot"):
        calls.clear()
        g = torch.Generator().manual_seed(2)
        events = list(sample(lossy_at_t0, (1, 1, 12, 12, 12), sampler, 40, generator=g, return_xt=True))
        assert 0 not in calls and len(calls) == 39
        final = events[-1]
        assert final.t == 0 and torch.equal(final.sample, final.x_t)
        assert torch.equal(final.x0_hat, final.sample)
        values = final.sample.flatten()
        # both data values are reached at full contrast (halved, 0.6 would land near 0.3)
        assert (values - 0.6).abs().min() < 0.05 and (values + 0.8).abs().min() < 0.05
    # one step: the single-shot posterior mean from pure noise, which needs the model
    calls.clear()
    one = list(sample(lossy_at_t0, (1, 1, 4, 4, 4), "hot", 1, generator=torch.Generator().manual_seed(0)))
    assert calls == [999] and torch.equal(one[0].sample, one[0].x0_hat)


def test_same_seed_same_volume_and_per_sample_generators():
    model = two_point_denoiser(-0.5, 0.5, 0.5)
    shape = (3, 1, 6, 6, 6)
    for sampler in ("cold", "hot"):
        a = run_to_end(sample(model, shape, sampler, 30, generator=torch.Generator().manual_seed(7)))
        b = run_to_end(sample(model, shape, sampler, 30, generator=torch.Generator().manual_seed(7)))
        c = run_to_end(sample(model, shape, sampler, 30, generator=torch.Generator().manual_seed(8)))
        assert torch.equal(a, b) and not torch.equal(a, c)
        seeds = [11, 12, 13]
        batch = run_to_end(
            sample(model, shape, sampler, 30, generator=[torch.Generator().manual_seed(s) for s in seeds])
        )
        for i, seed in enumerate(seeds):
            alone = run_to_end(
                sample(model, (1, *shape[1:]), sampler, 30, generator=[torch.Generator().manual_seed(seed)])
            )
            assert torch.equal(alone[0], batch[i]), (sampler, i)


def test_breaking_out_cancels_and_nothing_is_kept():
    calls = []
    inner = gaussian_denoiser(0.0, 0.3)

    def model(x, t):
        calls.append(int(t[0]))
        return inner(x, t)

    refs = []
    grad_modes = []
    for step in sample(model, (1, 1, 8, 8, 8), "hot", 100):
        grad_modes.append(torch.is_grad_enabled())
        refs.append(weakref.ref(step.x0_hat))
        if step.index == 9:
            break
    assert len(calls) == 10  # no model call after the break
    assert all(grad_modes)  # the sampler's no_grad never leaks into the loop body
    del step
    gc.collect()
    assert sum(r() is not None for r in refs) == 0  # the sampler held no trajectory


def test_real_network_through_the_sampler():
    model = build_model("PRDiT-XS/4/1", input_size=8)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = model.coarse.mlp_denoise.linear_final.weight
        weight.copy_(0.01 * torch.randn(weight.shape, generator=g))
    out = run_to_end(sample(model, (2, 1, 8, 8, 8), "hot", 4, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 1, 8, 8, 8) and torch.isfinite(out).all() and out.abs().sum() > 0


def test_bad_sampler_arguments():
    model = gaussian_denoiser(0.0, 0.3)
    with pytest.raises(ValueError, match="unknown sampler 'warm'"):
        sample(model, SHAPE, "warm", 10)
    with pytest.raises(ValueError, match="a list of 4"):
        next(sample(model, SHAPE, "cold", 10, generator=[torch.Generator()]))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        next(sample(model, SHAPE, "hot", 10, k=0))
    with pytest.raises(ValueError, match=r"must return \[B, 2C, \.\.\.\] = \[4, 2, 16, 16, 16\]"):
        next(sample(lambda x, t: x, SHAPE, "cold", 10))
    with pytest.raises(ValueError, match=r"shape must be \(B, C, D, H, W\)"):
        next(sample(model, (4, 16), "cold", 10))
