"""Memory and time a run will need, told before it starts (``--dry-run``, the Generate and Train panels).

Why: the most common complaint of the peers' users is running out of (GPU) memory with no warning,
and a CPU user cannot tell a 5-second volume from a 50-minute one. Two measurements, both cheap:

* **Memory** is traced, not guessed. The run's own code (a sampler step, a training step) runs once
  on *fake* tensors (``torch._subclasses.FakeTensorMode``: shapes and dtypes, no data, no
  arithmetic) while a dispatch mode adds up the bytes of every tensor storage that comes alive and
  subtracts it when it is freed. The peak of that sum is what torch's allocator will be asked
  for, autocast copies included; on the development machine it matched the CPU allocator's own
  accounting (the profiler's memory events) to the byte for the bundled models and within 7 %
  for PRDiT-B (tests/engine/test_estimate.py holds it to 25 % at three sizes). Not included: the
  Python/torch runtime itself (a few hundred MB of process memory that exists before the run) and
  allocator slack (CUDA's caching allocator rounds blocks up).
* **Time** comes from a short probe: a few real network evaluations (or training steps) at the
  run's shape when they are cheap, or at a smaller batch or size when they are not, scaled by the
  ratio of floating-point operations (``torch.utils.flop_counter``, counted during the trace).

A run that would not fit in the memory available now says so, with the largest batch and the
largest volume size that would.
"""

from __future__ import annotations

import copy
import math
import os
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

PROBE_FLOPS = 40e9  # the probe runs real work up to about this many operations (~1 s on a laptop core)
#: Sampling runs at least this large (voxels in one batch), and every GPU run, are checked for
#: memory before they start; smaller CPU runs fit wherever the model loads, and a check costs ~1 s.
CHECK_VOXELS = 2 * 128**3


def sampling_needs_check(device: torch.device | str, batch: int, size: int) -> bool:
    return torch.device(device).type == "cuda" or batch * size**3 >= CHECK_VOXELS


class EstimateError(RuntimeError):
    """The estimate itself could not be made (an operation fake tensors cannot trace)."""


class WouldNotFitError(MemoryError):
    """A run refused before it started: its estimate exceeds the memory available."""

    def __init__(self, message: str, estimate: Estimate) -> None:
        super().__init__(message)
        self.estimate = estimate


# ---------------------------------------------------------------------------------------------- tracing
class _LiveBytes:
    """Adds up the bytes of tensor storages created under it and alive at each moment."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        tracker.add(t)
                return out

        self.mode = Mode()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def known(self, tensors: Iterable[torch.Tensor]) -> None:
        """Storages that exist before the work (weights): never counted, views of them neither."""
        for t in tensors:
            storage = t.untyped_storage()
            self._refs.setdefault(id(storage), weakref.ref(storage))

    def add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._refs:  # already counted (or a weight)
            return
        nbytes = storage.nbytes()

        def freed(_ref, key=key, nbytes=nbytes) -> None:
            self._refs.pop(key, None)
            self.live -= nbytes

        self._refs[key] = weakref.ref(storage, freed)
        self.live += nbytes
        self.peak = max(self.peak, self.live)


@dataclass(frozen=True)
class Trace:
    """Peak bytes of the tensors a piece of work allocates, and its floating-point operations."""

    peak_bytes: int
    flops: int


class Tracer:
    """A fake-tensor twin of ``model`` (no memory, no arithmetic) on which work is traced.

    Build it once per model: copying the model into fake tensors is the slow part (~1 s).
    """

    def __init__(self, model: nn.Module) -> None:
        try:
            from torch._subclasses.fake_tensor import FakeCopyMode, FakeTensorMode
        except ImportError as exc:  # pragma: no cover - every supported torch has it
            raise EstimateError(f"this torch build cannot trace memory ({exc})") from None
        self.fake = FakeTensorMode(allow_non_fake_inputs=False)
        with FakeCopyMode(self.fake):
            self.twin = copy.deepcopy(model)

    def trace(self, work: Callable[[nn.Module], Any]) -> Trace:
        """Run ``work(twin)`` on fake tensors; its inputs must be made inside ``work``."""
        from torch.utils.flop_counter import FlopCounterMode

        live = _LiveBytes()
        live.known([*self.twin.parameters(), *self.twin.buffers()])
        try:
            with self.fake, FlopCounterMode(display=False) as flops, live.mode:
                result = work(self.twin)
                del result
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            raise EstimateError(f"could not trace the run's memory: {exc}") from None
        return Trace(live.peak, int(flops.get_total_flops()))


# ---------------------------------------------------------------------------------------------- memory
def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that can still be allocated on ``device`` now: free GPU memory, or the OS's
    MemAvailable on the CPU (None where it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def valid_size_for(model: nn.Module) -> Callable[[int], bool]:
    """Whether ``model`` (a PRDiT or a stage-3 model, possibly wrapped) tiles an edge of ``s``."""
    from prdit.models.registry import InputSizeError

    config = getattr(model, "config", None)

    def valid(s: int) -> bool:
        try:
            config.check_size(s)
        except (InputSizeError, AttributeError):
            return False
        return True

    return valid


def smaller_sizes(valid: Callable[[int], bool], size: int) -> list[int]:
    """Valid volume edges below ``size``, largest first."""
    return [s for s in range(size - 1, 0, -1) if valid(s)]


def _timed(fn: Callable[[], Any], device: torch.device, rounds: int = 2) -> float:
    """Fastest of ``rounds`` calls after one warm-up (the least disturbed by other programs)."""
    fn()
    best = math.inf
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Estimate:
    """What a run will need. ``work_bytes`` is the tensor memory the run allocates at its peak on
    top of what is already resident (``resident_bytes``: the weights, for sampling); ``seconds``
    is per volume (sampling) or per optimiser step (training)."""

    what: str
    device: str
    resident_bytes: int
    work_bytes: int
    seconds: float
    seconds_label: str
    probe: str
    available_bytes: int | None
    breakdown: dict[str, int] = field(default_factory=dict)
    largest_batch: int | None = None
    largest_size: int | None = None
    batch_label: str = "batch"

    @property
    def peak_bytes(self) -> int:
        return self.resident_bytes + self.work_bytes

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.work_bytes <= self.available_bytes

    def lines(self) -> list[str]:
        out = [
            f"{self.what} on {self.device}",
            f"  peak memory   ~{human_bytes(self.peak_bytes)} of tensors "
            + "("
            + ", ".join(f"{k} {human_bytes(v)}" for k, v in self.breakdown.items())
            + ")",
        ]
        if self.available_bytes is not None:
            out.append(f"  available now  {human_bytes(self.available_bytes)} on {self.device}")
        if math.isnan(self.seconds):
            out.append(f"  time          not measured ({self.probe})")
        else:
            out.append(f"  time          ~{human_seconds(self.seconds)} {self.seconds_label} ({self.probe})")
        if not self.fits:
            out.append("  DOES NOT FIT: " + self.advice())
        return out

    def advice(self) -> str:
        parts = []
        if self.largest_batch:
            parts.append(f"the largest {self.batch_label} that fits is {self.largest_batch}")
        if self.largest_size:
            parts.append(f"the largest volume size that fits is {self.largest_size}^3")
        if not parts:
            return "not even one volume of the smallest size fits; free memory or use another device"
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "device": self.device,
            "peak_bytes": self.peak_bytes,
            "resident_bytes": self.resident_bytes,
            "work_bytes": self.work_bytes,
            "breakdown": dict(self.breakdown),
            "seconds": self.seconds,
            "seconds_per": self.seconds_label,
            "probe": self.probe,
            "available_bytes": self.available_bytes,
            "fits": self.fits,
            "largest_batch": self.largest_batch,
            "largest_size": self.largest_size,
        }


def _largest_batch(work_at: Callable[[int], int], batch: int, available: int | None) -> int | None:
    """Largest batch whose traced work fits ``available`` (memory is affine in the batch)."""
    if available is None:
        return None
    one, two = work_at(1), work_at(2)
    per = max(1, two - one)
    fixed = one - per
    n = int((available - fixed) // per)
    return max(0, min(n, 1 << 20)) or None


def _largest_size(work_at_size: Callable[[int], int], sizes: list[int], available: int | None) -> int | None:
    if available is None:
        return None
    for s in sizes:  # largest first
        if work_at_size(s) <= available:
            return s
    return None


# ---------------------------------------------------------------------------------------------- sampling
def estimate_sampling(
    model: nn.Module,
    size: int,
    batch: int,
    steps: int,
    *,
    sampler: str = "hot",
    k: int = 2,
    diffusion: Any = None,
    device: torch.device | str = "cpu",
    valid_size: Callable[[int], bool] | None = None,
    probe: bool = True,
    available: int | None | str = "now",
) -> Estimate:
    """Memory and time for sampling ``batch`` volumes of ``size^3`` with ``steps`` steps.

    ``model`` is the network as it will run (wrapped for bf16 by :mod:`prdit.precision` if so);
    ``valid_size(s)`` says which smaller sizes the model tiles (for the "largest size" advice).
    """
    from prdit.diffusion import IaNDiffusion, sample

    device = torch.device(device)
    diffusion = diffusion or IaNDiffusion()
    calls = _model_calls(diffusion, steps)
    tracer = Tracer(model)

    def step_work(b: int, s: int) -> Trace:
        def work(twin: nn.Module) -> None:
            gen = sample(twin, (b, 1, s, s, s), sampler, steps, k, device="cpu", diffusion=diffusion)
            with torch.inference_mode():
                for i, _step in enumerate(gen):  # the first steps allocate everything a step needs
                    if i >= min(2, calls):
                        break
            gen.close()

        return tracer.trace(work)

    def forward_flops(b: int, s: int) -> int:
        def work(twin: nn.Module) -> torch.Tensor:
            with torch.inference_mode():
                return twin(torch.zeros(b, 1, s, s, s), torch.full((b,), 500))

        return tracer.trace(work).flops

    full = step_work(batch, size)
    weights = tensor_bytes(list(model.parameters()) + list(model.buffers()))
    avail = available_memory(device) if available == "now" else available
    flops = forward_flops(batch, size)
    seconds, how = math.nan, "no probe"
    if probe:
        seconds_per_call, how = _probe_forward(model, batch, size, flops, device, forward_flops, valid_size)
        seconds = seconds_per_call * calls / batch
    estimate = Estimate(
        what=f"sampling {batch} x {size}^3 ({sampler}, {steps} steps = {calls} network evaluations each)",
        device=str(device),
        resident_bytes=weights,
        work_bytes=full.peak_bytes,
        seconds=seconds,
        seconds_label="per volume",
        probe=how,
        available_bytes=avail,
        breakdown={"weights": weights, "sampling work": full.peak_bytes},
        batch_label="number of volumes at once (--batch-size)",
    )
    if not estimate.fits:
        estimate.largest_batch = _largest_batch(lambda b: step_work(b, size).peak_bytes, batch, avail)
        sizes = smaller_sizes(valid_size, size) if valid_size else []
        estimate.largest_size = _largest_size(lambda s: step_work(1, s).peak_bytes, sizes, avail)
    return estimate


def estimate_sampling_run(
    model: nn.Module,
    size: int,
    batch: int,
    steps: int,
    *,
    sampler: str,
    k: int,
    diffusion: Any,
    device: torch.device | str,
    precision: str | None = None,
    probe: bool = True,
):
    """What ``prdit sample`` and the Generate panel ask: memory first, traced in the format a
    probe-free choice gives (float32 on a CPU, the larger), so a request that cannot fit allocates
    nothing of its size; then (``probe``) the precision is chosen as the run would choose it,
    probe included, and the time measured in it. Returns ``(estimate, precision choice)``."""
    from prdit.precision import choose_precision, with_precision

    device = torch.device(device)

    def run(choice, timed: bool) -> Estimate:
        return estimate_sampling(
            with_precision(model, choice),
            size,
            batch,
            steps,
            sampler=sampler,
            k=k,
            diffusion=diffusion,
            device=device,
            valid_size=valid_size_for(model),
            probe=timed,
        )

    planned = choose_precision(precision, device)
    first = run(planned, False)
    if not first.fits or not probe:
        return first, planned
    choice = choose_precision(precision, device, model, (batch, 1, size, size, size))
    return run(choice, True), choice


def _model_calls(diffusion: Any, steps: int) -> int:
    ts = diffusion.respace(steps)
    return max(1, len(ts) - (1 if len(ts) > 1 and ts[-1] == 0 else 0))


def _probe_forward(
    model: nn.Module,
    batch: int,
    size: int,
    flops: int,
    device: torch.device,
    forward_flops: Callable[[int, int], int],
    valid_size: Callable[[int], bool] | None,
) -> tuple[float, str]:
    """Seconds per network evaluation at (batch, size): measured there if cheap, else measured at
    batch 1 or a smaller size and scaled by the ratio of operations."""
    b, s, f = batch, size, flops
    if f > PROBE_FLOPS and batch > 1:
        b, f = 1, forward_flops(1, size)
    if f > PROBE_FLOPS and valid_size is not None:
        for smaller in smaller_sizes(valid_size, size):
            f_small = forward_flops(1, smaller)
            if f_small <= PROBE_FLOPS:
                s, f = smaller, f_small
                break
    x = torch.zeros(b, 1, s, s, s, device=device)
    t = torch.full((b,), 500, device=device)
    with torch.inference_mode():
        seconds = _timed(lambda: model(x, t), device)
    if (b, s) == (batch, size):
        return seconds, f"measured: {seconds * 1000:.0f} ms per network evaluation"
    scale = flops / max(f, 1)
    return seconds * scale, (
        f"measured {seconds * 1000:.0f} ms at {b} x {s}^3, scaled x{scale:.1f} by operation count "
        f"({flops / 1e9:.0f} GFLOP per evaluation)"
    )


# ---------------------------------------------------------------------------------------------- training
def estimate_training(
    model: nn.Module,
    trainable: list[nn.Parameter],
    *,
    micro_batch: int,
    size: int,
    grad_accum: int,
    diffusion: Any,
    amp_dtype: torch.dtype | None,
    device: torch.device | str,
    data_bytes: int = 0,
    valid_size: Callable[[int], bool] | None = None,
    probe: bool = True,
    available: int | None | str = "now",
) -> Estimate:
    """Memory and time per optimiser step of one training process.

    Resident: the weights, their AdamW moments (2x the trainable weights), the EMA shadow and its
    evaluation copy (1x the weights each) and the cached training volumes (``data_bytes``). Work:
    the traced forward and backward of one micro-batch (gradients included).
    """
    from prdit.precision import autocast

    device = torch.device(device)
    tracer = Tracer(model)
    trainable_ids = {id(p) for p in trainable}

    def step_work(b: int, s: int) -> Trace:
        def work(twin: nn.Module) -> None:
            twin_trainable = [
                q
                for p, q in zip(model.parameters(), twin.parameters(), strict=True)
                if id(p) in trainable_ids
            ]
            x = torch.zeros(b, 1, s, s, s)
            t = torch.full((b,), diffusion.num_timesteps // 2)
            with autocast("cpu" if device.type == "cpu" else device, amp_dtype):
                losses = diffusion.training_losses(twin, x, t=t, noise=torch.zeros_like(x), check=False)
            losses["loss"].backward()
            del losses
            for q in twin_trainable:
                q.grad = None

        return tracer.trace(work)

    weights = tensor_bytes(list(model.parameters()) + list(model.buffers()))
    train_bytes = tensor_bytes(trainable)
    resident = {
        "weights": weights,
        "AdamW moments": 2 * train_bytes,
        "EMA + its eval copy": 2 * weights,
    }
    if data_bytes:
        resident["cached volumes"] = data_bytes
    full = step_work(micro_batch, size)
    avail = available_memory(device) if available == "now" else available
    seconds, how = math.nan, "no probe: it would not fit" if not probe else ""
    if probe:
        seconds_per_micro, how = _probe_training(
            model, trainable, diffusion, amp_dtype, micro_batch, size, device, full.flops
        )
        seconds = seconds_per_micro * grad_accum
    resident_total = sum(resident.values())
    estimate = Estimate(
        what=f"training {size}^3, micro-batch {micro_batch} x {grad_accum} accumulation step(s) per process",
        device=str(device),
        resident_bytes=resident_total,
        work_bytes=full.peak_bytes,
        seconds=seconds,
        seconds_label="per optimiser step",
        probe=how,
        available_bytes=None if avail is None else max(0, avail - resident_total + weights),
        breakdown={**resident, "forward + backward": full.peak_bytes},
        batch_label="micro-batch per process (train.batch_size / processes / train.grad_accum)",
    )
    if not estimate.fits:
        room = estimate.available_bytes
        estimate.largest_batch = _largest_batch(lambda b: step_work(b, size).peak_bytes, micro_batch, room)
    return estimate


def _probe_training(
    model: nn.Module,
    trainable: list[nn.Parameter],
    diffusion: Any,
    amp_dtype: torch.dtype | None,
    micro_batch: int,
    size: int,
    device: torch.device,
    flops: int,
) -> tuple[float, str]:
    """Seconds per forward + backward of one micro-batch (``flops`` operations), measured at
    batch 1 if the full micro-batch is costly and scaled by the batch (the work is linear in it)."""
    from prdit.precision import autocast

    b = micro_batch if flops <= 3 * PROBE_FLOPS else 1
    x = torch.zeros(b, 1, size, size, size, device=device)
    t = torch.full((b,), diffusion.num_timesteps // 2, device=device)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def step() -> None:
        with autocast(device, amp_dtype):
            losses = diffusion.training_losses(model, x, t=t, noise=noise)
        losses["loss"].backward()

    try:
        seconds = _timed(step, device, rounds=1)
    finally:
        for p in trainable:
            p.grad = None
    if b == micro_batch:
        return seconds, f"measured: one forward + backward of {b} x {size}^3"
    return (
        seconds * micro_batch / b,
        f"measured {human_seconds(seconds)} at batch {b}, scaled to {micro_batch}",
    )
