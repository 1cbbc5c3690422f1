"""The IaN ("image and noise") diffusion process of PRDiT: forward noising, loss, respacing, samplers.

Spec section 6. With ``beta(t) = (pi/2) t / T`` and ``n = sigma_n * eps`` (``sigma_n = 0.5``)::

    x_t = cos(beta_t) * x0 + sin(beta_t) * n

The network predicts both ``n_hat`` and ``x0_hat``. Moving the angle down by ``delta > 0`` follows
the tangent of that circle-like path: ``d x_t / d beta = -sin(beta) x0 + cos(beta) n``, so

    x_{beta - delta} ~= x_beta + delta * g,    g = sin(beta) * x0_hat - cos(beta) * n_hat

(the published Algorithm 1 writes ``-delta``; that sign would move *away* from the data —
``tests/engine/test_diffusion.py`` checks the sign against the forward process).

Samplers are generators: each model evaluation yields a :class:`Step` carrying the model's
``x0_hat`` (and ``x_t`` on request); the last one also carries ``sample``. Breaking out of the
loop cancels (no further model calls). Only the current state is kept (O(1) volumes in memory).
Seeding: one ``torch.Generator`` for the batch, or a list with one per sample so that sample
``i`` is the same whatever batch it is generated in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch

from prdit.sampler_names import SAMPLERS, SOLVERS
from prdit.solvers import multistep, solver_timesteps
from prdit.steps import Generators, Step, _randn  # the event every sampler yields (re-exported)

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``constraint(x, t, generators) -> x``: guided sampling's correction of the state at step ``t``
Constraint = Callable[[torch.Tensor, int, "Generators"], torch.Tensor]

DEFAULT_TIMESTEPS = 1000
DEFAULT_NOISE_SCALE = 0.5


class IaNDiffusion:
    """The IaN process with ``num_timesteps`` discrete angles and Gaussian noise of std ``noise_scale``."""

    def __init__(
        self, num_timesteps: int = DEFAULT_TIMESTEPS, noise_scale: float = DEFAULT_NOISE_SCALE
    ) -> None:
        if int(num_timesteps) < 2:
            raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
        if not (noise_scale > 0 and math.isfinite(noise_scale)):
            raise ValueError(f"noise_scale must be a positive number, got {noise_scale}")
        self.num_timesteps = int(num_timesteps)
        self.noise_scale = float(noise_scale)

    def __repr__(self) -> str:
        return f"IaNDiffusion(num_timesteps={self.num_timesteps}, noise_scale={self.noise_scale})"

    # ------------------------------------------------------------------ schedule
    def angle(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """``beta(t) = (pi/2) * t / T`` (radians): 0 is clean data, pi/2 pure noise."""
        return (math.pi / 2) * t / self.num_timesteps

    def _coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos(beta_t), sin(beta_t)`` shaped ``[B, 1, 1, ...]`` to broadcast against ``like``."""
        beta = self.angle(t.to(device=like.device, dtype=torch.float64))
        shape = (-1,) + (1,) * (like.ndim - 1)
        return torch.cos(beta).to(like.dtype).reshape(shape), torch.sin(beta).to(like.dtype).reshape(shape)

    def respace(self, num_steps: int) -> list[int]:
        """``num_steps`` distinct integer timesteps, evenly spaced, descending from ``T-1`` to ``0``.

        The walk starts from pure noise evaluated at ``T-1`` and ends at ``t = 0``, where the state is
        the sample (no model evaluation there); one step: ``[T-1]``, the single-shot posterior mean.
        """
        n = int(num_steps)
        if n != num_steps or not 1 <= n <= self.num_timesteps:
            raise ValueError(
                f"number of sampling steps must be an integer in 1..{self.num_timesteps}, got {num_steps}"
            )
        if n == 1:
            return [self.num_timesteps - 1]
        last = self.num_timesteps - 1
        steps = [round(last - i * last / (n - 1)) for i in range(n)]
        assert len(set(steps)) == n and steps[0] == last and steps[-1] == 0
        return steps

    # ------------------------------------------------------------------ forward process and loss
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t = cos(beta_t) x0 + sin(beta_t) * noise_scale * noise``; ``noise`` is standard normal
        (``eps``; drawn when omitted), ``t`` integer timesteps ``[B]``."""
        if noise is None:
            noise = torch.randn_like(x0)
        if noise.shape != x0.shape:
            raise ValueError(
                f"q_sample: noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}"
            )
        t = _as_timesteps(t, x0.shape[0], x0.device)
        cos, sin = self._coefficients(t, x0)
        return cos * x0 + sin * (self.noise_scale * noise)

    def split_prediction(self, out: torch.Tensor, channels: int, batch_shape: Sequence[int]) -> tuple:
        """Model output ``[B, 2C, ...]`` -> ``(n_hat, x0_hat)`` (channel order [noise, image])."""
        expected = (batch_shape[0], 2 * channels, *batch_shape[2:])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the model must return [B, 2C, ...] = {list(expected)} (channels [noise, image]); got {got}"
            )
        return out[:, :channels], out[:, channels:]

    def training_losses(
        self,
        model: Model,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        check: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch: ``mean((x0_hat - x0)^2) + mean((n_hat - n)^2)`` with ``n = noise_scale * eps``.

        ``t`` defaults to uniform integers in ``[0, T)``, ``noise`` (``eps``) to standard normal,
        both drawn from ``generator`` when given. Returns ``loss``, ``loss_x0``, ``loss_noise`` (float32
        scalars, ``loss`` differentiable), ``x0_hat`` (detached) and the ``t`` used. ``check=False``
        skips the timestep range check, which reads values (the memory estimate traces this
        function on tensors without values, :mod:`prdit.estimate`).
        """
        if x0.ndim < 3:
            raise ValueError(f"training_losses expects x0 shaped [B, C, ...], got {tuple(x0.shape)}")
        b, c = x0.shape[:2]
        if t is None:
            gen_device = generator.device if generator is not None else x0.device
            t = torch.randint(0, self.num_timesteps, (b,), generator=generator, device=gen_device).to(
                x0.device
            )
        t = _as_timesteps(t, b, x0.device)
        if check and torch.any((t < 0) | (t >= self.num_timesteps)):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps}), got {t.tolist()}")
        if noise is None:
            noise = _randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        n = self.noise_scale * noise
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, t)
        n_hat, x0_hat = self.split_prediction(out, c, x0.shape)
        loss_x0 = torch.mean((x0_hat.float() - x0.float()) ** 2)
        loss_noise = torch.mean((n_hat.float() - n.float()) ** 2)
        return {
            "loss": loss_x0 + loss_noise,
            "loss_x0": loss_x0,
            "loss_noise": loss_noise,
            "x0_hat": x0_hat.detach(),
            "t": t,
        }

    # ------------------------------------------------------------------ sampling
    def tangent(self, t: int, n_hat: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        """``g_t = sin(beta_t) x0_hat - cos(beta_t) n_hat``: the direction of *decreasing* noise."""
        beta = self.angle(float(t))
        return math.sin(beta) * x0_hat - math.cos(beta) * n_hat

    def _walk(
        self,
        model: Model,
        shape: Sequence[int],
        steps: int,
        k: int,
        generator: Generators,
        device: torch.device | str | None,
        dtype: torch.dtype,
        return_xt: bool,
        constraint: Constraint | None = None,
    ) -> Iterator[Step]:
        # Validate eagerly (errors at the call, not at the first next()), then hand out the loop.
        shape = _check_shape(shape)
        if int(k) != k or k < 1:
            raise ValueError(f"hot-sampler multiplier k must be an integer >= 1, got {k}")
        device = torch.device(device) if device is not None else _model_device(model)
        gens = _check_generators(generator, shape[0])
        ts = self.respace(steps)
        return self._loop(model, shape, ts, int(k), gens, device, dtype, return_xt, constraint)

    def _loop(
        self,
        model: Model,
        shape: tuple[int, ...],
        ts: list[int],
        k: int,
        gens: Generators,
        device: torch.device,
        dtype: torch.dtype,
        return_xt: bool,
        constraint: Constraint | None = None,
    ) -> Iterator[Step]:
        total = len(ts)
        b, c = shape[:2]
        x = self.noise_scale * _randn(shape, gens, device, dtype)  # x_T = sigma_n * eps
        if constraint is not None:  # guided sampling: the state agrees with what is known
            x = constraint(x, ts[0], gens)
        for i, t in enumerate(ts):
            if i == total - 1 and t == 0 and total > 1 and constraint is not None:
                x = constraint(x, 0, gens)
            if i == total - 1 and t == 0 and total > 1:
                # At t = 0 the forward process is the identity (x_0 = x0), so the state the walk has
                # reached *is* the sample. Passing it through the model once more would only re-encode
                # it, lossily for a real denoiser: the bundled model's t = 0 estimate of a clean
                # phantom (no diffusion noise) keeps half its bone contrast. For an exact denoiser
                # the two agree. One model evaluation fewer.
                yield Step(i, total, t, x, x if return_xt else None, sample=x)
                return
            t_vec = torch.full((b,), t, dtype=torch.long, device=device)
            with torch.no_grad():  # not around the yield: grad mode must not leak into the consumer
                out = model(x, t_vec)
                n_hat, x0_hat = self.split_prediction(out, c, shape)
                n_hat, x0_hat = n_hat.to(dtype), x0_hat.to(dtype)
            del out
            shown = constraint(x0_hat, 0, gens) if constraint is not None else x0_hat
            if i == total - 1:  # steps == 1: the single-shot posterior mean from pure noise
                yield Step(i, total, t, shown, x if return_xt else None, sample=shown)
                return
            yield Step(i, total, t, shown, x if return_xt else None)
            beta_t = self.angle(float(t))
            g = self.tangent(t, n_hat, x0_hat)
            del n_hat
            if k > 1 and i + k <= total - 1:
                # Predictor: jump k respaced steps ahead along the tangent ...
                beta_ahead = self.angle(float(ts[i + k]))
                x_ahead = x + (beta_t - beta_ahead) * g
                # ... corrector: re-noise back to the next step; Gamma keeps the marginal variance exact:
                # Gamma^2 sin^2(b_ahead) + (1 - Gamma^2) = sin^2(b_next) (in units of sigma_n^2).
                gamma = math.cos(self.angle(float(ts[i + 1]))) / math.cos(beta_ahead)
                eps = _randn(shape, gens, device, dtype)
                x = gamma * x_ahead + math.sqrt(max(0.0, 1.0 - gamma * gamma)) * self.noise_scale * eps
                del x_ahead, eps
            else:
                # Cold (deterministic) step to the next respaced angle; also the hot sampler's fallback
                # where t - k would pass the end of the schedule.
                x = x + (beta_t - self.angle(float(ts[i + 1]))) * g
            del g
            if constraint is not None:
                x = constraint(x, ts[i + 1], gens)

    def sample_cold(
        self,
        model: Model,
        shape: Sequence[int],
        steps: int = 250,
        *,
        generator: Generators = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        return_xt: bool = False,
    ) -> Iterator[Step]:
        """Deterministic sampler (given the starting noise): ``x <- x + (beta_t - beta_next) g_t``."""
        return self._walk(model, shape, steps, 1, generator, device, dtype, return_xt)

    def sample_hot(
        self,
        model: Model,
        shape: Sequence[int],
        steps: int = 250,
        k: int = 2,
        *,
        generator: Generators = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        return_xt: bool = False,
    ) -> Iterator[Step]:
        """Predictor-corrector sampler with multiplier ``k`` (paper's best: 2; ``k = 1`` is cold)."""
        return self._walk(model, shape, steps, k, generator, device, dtype, return_xt)

    def sample_guided(
        self,
        model: Model,
        shape: Sequence[int],
        constraint: Constraint | None,
        sampler: str = "hot",
        steps: int = 250,
        k: int = 2,
        *,
        generator: Generators = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        return_xt: bool = False,
    ) -> Iterator[Step]:
        """Any sampler by name, with ``constraint(x, t, generators) -> x`` applied to the state
        after every update (and to each shown ``x0_hat`` at ``t = 0``): the seam guided samplers
        (in-fill, super-resolution: :mod:`prdit.editing`) use, same ``Step`` contract. With
        ``constraint=None`` it is plain sampling: the one place a sampler name is dispatched."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if sampler in SOLVERS:
            return self.sample_solver(
                model, shape, steps, sampler, generator=generator, device=device, dtype=dtype,
                return_xt=return_xt, constraint=constraint,
            )  # fmt: skip
        k = 1 if sampler == "cold" else k
        return self._walk(model, shape, steps, k, generator, device, dtype, return_xt, constraint)

    def sample_solver(
        self,
        model: Model,
        shape: Sequence[int],
        steps: int = 20,
        solver: str = "v2m",
        *,
        schedule: str = "uniform",
        generator: Generators = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        return_xt: bool = False,
        constraint: Constraint | None = None,
    ) -> Iterator[Step]:
        """A multistep solver of :mod:`prdit.solvers` (``v2m``, ``v2m-sde``): ``steps`` events,
        ``steps - 1`` network evaluations, the samplers' ``Step`` contract."""
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        shape = _check_shape(shape)
        device = torch.device(device) if device is not None else _model_device(model)
        gens = _check_generators(generator, shape[0])
        ts = solver_timesteps(self, steps, schedule)
        return multistep(
            self, model, shape, ts, solver == "v2m-sde", gens, device, dtype, return_xt, constraint
        )


_DEFAULT = IaNDiffusion()


def sample_cold(
    model: Model,
    shape: Sequence[int],
    steps: int = 250,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_xt: bool = False,
    diffusion: IaNDiffusion | None = None,
) -> Iterator[Step]:
    """Cold sampler of the standard process (T = 1000, sigma_n = 0.5) unless ``diffusion`` is given."""
    return (diffusion or _DEFAULT).sample_cold(
        model, shape, steps, generator=generator, device=device, dtype=dtype, return_xt=return_xt
    )


def sample_hot(
    model: Model,
    shape: Sequence[int],
    steps: int = 250,
    k: int = 2,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_xt: bool = False,
    diffusion: IaNDiffusion | None = None,
) -> Iterator[Step]:
    """Hot (predictor-corrector) sampler of the standard process unless ``diffusion`` is given."""
    return (diffusion or _DEFAULT).sample_hot(
        model, shape, steps, k, generator=generator, device=device, dtype=dtype, return_xt=return_xt
    )


def sample(
    model: Model,
    shape: Sequence[int],
    sampler: str = "hot",
    steps: int = 250,
    k: int = 2,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_xt: bool = False,
    diffusion: IaNDiffusion | None = None,
) -> Iterator[Step]:
    """``for step in sample(model, (B, 1, S, S, S), "hot", 250): ...``; ``step.sample`` on the last.

    ``k`` is used by the hot sampler only.
    """
    name = str(sampler).strip().lower()
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    return (diffusion or _DEFAULT).sample_guided(
        model, shape, None, name, steps, k, generator=generator, device=device, dtype=dtype,
        return_xt=return_xt,
    )  # fmt: skip


def run_to_end(steps: Iterator[Step]) -> torch.Tensor:
    """Drain a sampler and return the finished volume (for scripts that do not stream)."""
    for step in steps:
        if step.sample is not None:
            return step.sample
    raise RuntimeError("the sampler ended without a final sample")


# ---------------------------------------------------------------------- helpers
def _as_timesteps(t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(t, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"timesteps must have shape [B] = [{batch}], got {tuple(t.shape)}")
    return t


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"sample shape must be a sequence like (B, C, D, H, W), got {shape!r}") from None
    if len(out) < 3 or min(out) < 1:
        raise ValueError(f"sample shape must be (B, C, D, H, W) with positive sizes, got {out}")
    return out


def _check_generators(generator: Generators, batch: int) -> Generators:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gens = list(generator)
    if len(gens) != batch or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError(
            f"generator must be one torch.Generator or a list of {batch} (one per sample); "
            f"got {len(gens)} item(s)"
        )
    return gens


def _model_device(model: Model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")
