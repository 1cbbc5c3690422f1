"""Which number format the network computes in: float32 or bfloat16 autocast, chosen by measuring.

Why measured and not assumed: bf16 is 5-50x slower than float32 on CPUs without native bf16
(AVX2 only: every op converts in software), but CPUs with AVX512-BF16 or AMX run bf16 matrix
products faster, and on CUDA bf16 autocast is the norm. Even on a capable CPU the gain depends on
the model and the volume size: on the development machine (Xeon with AMX) the bundled 32^3 model
ran 1.23x *slower* in bf16 while the 64^3 one ran 0.93x the float32 time (docs/benchmarks.md),
because small matrices spend their time in the conversions around them.

``auto`` therefore means:

An explicit ``--precision`` (or setting) wins, then the environment variable ``PRDIT_PRECISION``.

* CUDA: bf16 where the device supports it (``torch.cuda.is_bf16_supported``), else float32;
* CPU without native bf16: float32, no probe;
* CPU with native bf16: a short probe on the real model and input shape (a few interleaved forward
  passes in each format) picks bf16 only if it is clearly faster (:data:`BF16_MIN_GAIN`) and its
  output stays close to float32's (:data:`BF16_MAX_CHANGE`). Probe results are remembered per
  model, shape and thread count for the life of the process (the studio generates many times).

The network's output is always returned in float32, so the samplers' arithmetic (the tangent
step, the corrector) never runs in bf16: only the network evaluations do.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
ENV_VAR = "PRDIT_PRECISION"  # the default when no flag or setting is given
BF16_MIN_GAIN = 0.85  # bf16 must take at most this fraction of the float32 time to be chosen
BF16_MAX_CHANGE = 0.05  # ... and change the output by at most this (relative RMS)


class PrecisionSettingError(ValueError):
    """A precision that is not one of :data:`PRECISIONS`."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The format chosen (``fp32`` or ``bf16``), how (``--precision`` / ``auto``) and why."""

    precision: str
    source: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain float32."""
        return torch.bfloat16 if self.precision == "bf16" else None

    def describe(self) -> str:
        return f"{self.precision} ({self.source}: {self.reason})"


@dataclass(frozen=True)
class ProbeResult:
    """Seconds per forward pass in each format and the relative RMS change bf16 makes."""

    fp32_s: float
    bf16_s: float
    change: float

    @property
    def ratio(self) -> float:
        return self.bf16_s / self.fp32_s if self.fp32_s > 0 else float("inf")


def parse_precision(text: str | None, what: str = "--precision") -> tuple[str, str]:
    """(``auto``/``fp32``/``bf16``, where it came from). None means ``PRDIT_PRECISION``, else
    ``auto``; anything else raises naming ``what`` (or the environment variable)."""
    if text is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            text, what = env, ENV_VAR
    value = "auto" if text is None else str(text).strip().lower()
    if value not in PRECISIONS:
        raise PrecisionSettingError(f"{what}: expected one of {', '.join(PRECISIONS)}, got {text!r}")
    return value, what


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bf16 in hardware."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        fn = getattr(cpu, name, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # pragma: no cover - builds without the query
            continue
    return False


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device``'s type, or a no-op for float32."""
    import contextlib

    device_type = torch.device(device).type
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


class AutocastModel(nn.Module):
    """Runs ``model`` under autocast and hands back float32, so a sampler needs no change.

    The wrapped model stays reachable as ``.model`` (and its ``config``), so code that inspects the
    model (its size, its attention backend) sees the real one.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    @property
    def config(self):  # the samplers and the studio read model.config
        return self.model.config

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.dtype):
            out = self.model(x, t)
        return out.float()


def with_precision(model: nn.Module, choice: PrecisionChoice) -> nn.Module:
    """``model`` itself for float32, else wrapped to compute in the chosen format."""
    if choice.dtype is None:
        return model
    return AutocastModel(model, choice.dtype)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside :class:`AutocastModel` (or ``model`` itself)."""
    return model.model if isinstance(model, AutocastModel) else model


def probe_formats(
    run: Callable[[], torch.Tensor],
    device: torch.device | str,
    rounds: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> ProbeResult:
    """Time ``run()`` (called inside each format's autocast) in float32 and bf16, interleaved
    after one warm-up each, keeping the fastest of ``rounds`` (the least disturbed by other
    programs), and measure how far bf16's result is from float32's (relative RMS)."""
    device = torch.device(device)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    outs = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):  # warm-up
        with autocast(device, dtype):
            outs[name] = run().detach().float()
    for _ in range(rounds):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            _sync(device)
            t0 = clock()
            with autocast(device, dtype):
                run()
            _sync(device)
            best[name] = min(best[name], clock() - t0)
    ref = outs["fp32"]
    change = float((outs["bf16"] - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12))
    return ProbeResult(best["fp32"], best["bf16"], change)


def probe_forward(model: nn.Module, shape: tuple[int, ...], device: torch.device | str) -> ProbeResult:
    """:func:`probe_formats` on one network evaluation of a random input of ``shape`` at t = 500."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device)
    t = torch.full((shape[0],), 500, dtype=torch.long, device=device)
    with torch.inference_mode():
        return probe_formats(lambda: model(x, t), device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_PROBES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ProbeResult]] = weakref.WeakKeyDictionary()


def choose_precision(
    requested: str | None,
    device: torch.device | str,
    model: nn.Module | None = None,
    shape: tuple[int, ...] | None = None,
    probe: Callable[[], ProbeResult] | None = None,
    what: str = "--precision",
) -> PrecisionChoice:
    """Resolve ``requested`` (``auto``/``fp32``/``bf16``/None) for ``model`` on input ``shape``.

    ``auto`` on a CPU with native bf16 measures: ``probe()`` if given (training times a whole
    step), else :func:`probe_forward` on ``model`` and ``shape``, remembered per model, shape and
    thread count in this process. Without either it stays float32 there.
    """
    value, what = parse_precision(requested, what)
    device = torch.device(device)
    if value == "fp32":
        return PrecisionChoice("fp32", what, "set explicitly")
    if value == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(device)
            raise PrecisionSettingError(f"{what} bf16: the GPU {name} does not support bf16; use fp32")
        note = "set explicitly"
        if device.type == "cpu" and not cpu_has_native_bf16():
            note += "; this CPU has no native bf16, expect it to be several times slower than fp32"
        return PrecisionChoice("bf16", what, note)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "auto", "the GPU computes bf16 natively")
        return PrecisionChoice("fp32", "auto", "the GPU has no bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", "auto", f"no bf16 policy for {device.type}")
    if not cpu_has_native_bf16():
        return PrecisionChoice("fp32", "auto", "the CPU has no native bf16 (AVX512-BF16 or AMX)")
    if probe is not None:
        result = probe()
    elif model is not None and shape is not None:
        known = _PROBES.setdefault(model, {})
        key = (tuple(shape), torch.get_num_threads())
        result = known.get(key)
        if result is None:
            result = known[key] = probe_forward(model, tuple(shape), device)
    else:
        return PrecisionChoice("fp32", "auto", "nothing to measure")
    return decide(result)


def decide(result: ProbeResult) -> PrecisionChoice:
    """``auto``'s rule on a probe: bf16 only if clearly faster and close to float32."""
    measured = f"measured bf16 at {result.ratio:.2f}x the fp32 time, output change {result.change:.1e}"
    if result.change > BF16_MAX_CHANGE:
        return PrecisionChoice("fp32", "auto", f"{measured}: too large a change")
    if result.ratio > BF16_MIN_GAIN:
        return PrecisionChoice("fp32", "auto", f"{measured}: not fast enough to pay")
    return PrecisionChoice("bf16", "auto", measured)
