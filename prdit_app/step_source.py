"""The seam between the studio's sampling worker and the engine: load the model, check the memory,
choose the precision, and run ``prdit.diffusion.sample`` with ``prdit sample``'s per-sample seeds;
plus turning its output into HU volumes with the shared sidecar, and naming failures for a dialog."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdit.estimate import sampling_needs_check
from prdit.model_info import ModelInfo  # the engine's model descriptor, re-exported for the app
from prdit.precision import choose_precision, with_precision
from prdit.sampling import diffusion_for, sample_sidecar, volume_from_hu
from prdit.volume import Volume
from prdit_app.sampling_types import SampleRequest


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` fails clearly when there is none."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but this torch build sees no CUDA GPU; choose CPU")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(name)


# --------------------------------------------------------------------------- the engine seam
StepSource = Callable[[Any], tuple[Iterator[Any], ModelInfo]]  # (SamplingWorker) -> steps, model


def load_model(request: SampleRequest, device: torch.device) -> tuple[Any, ModelInfo]:
    """The model and its info for a request (loads the checkpoint on the worker thread)."""
    if request.model is not None:
        return request.model.to(device).eval(), request.model_info  # type: ignore[return-value]
    path = Path(request.checkpoint)  # type: ignore[arg-type]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from prdit.checkpoint import load_for_inference

    model, info = load_for_inference(path, device, use_ema=True)
    return model.eval(), info


def estimate_request(request: SampleRequest):
    """What ``request`` will need and the precision it would run in
    (:func:`prdit.estimate.estimate_sampling_run`): loads the model, traces one sampler step and
    times a few network evaluations. Runs off the GUI thread (the Generate panel's Estimate)."""

    request.validate()
    device = resolve_device(request.device)
    model, info = load_model(request, device)
    return _estimate(model, info, request, device, probe=True)


def _estimate(model: Any, info: ModelInfo, request: SampleRequest, device: torch.device, probe: bool):
    """:func:`prdit.estimate.estimate_sampling_run` for ``request`` (the estimate and the precision)."""
    from prdit.estimate import estimate_sampling_run

    return estimate_sampling_run(
        model,
        info.input_size,
        request.num_samples,
        request.steps,
        sampler=request.sampler,
        k=request.k,
        diffusion=diffusion_for(info),
        device=device,
        precision=request.precision,
        probe=probe,
    )


def refuse_if_too_big(model: Any, info: ModelInfo, request: SampleRequest, device: torch.device) -> None:
    """Raise :class:`prdit.estimate.WouldNotFitError` before a run that would not fit starts."""
    from prdit.estimate import EstimateError, WouldNotFitError

    try:
        est, _ = _estimate(model, info, request, device, probe=False)
    except EstimateError:
        return  # an estimate that cannot be made must not stop sampling
    if not est.fits:
        raise WouldNotFitError(
            f"{request.num_samples} samples of {info.input_size}³ would not fit: {est.advice()}", est
        )


def engine_step_source(request: SampleRequest) -> StepSource:
    """The real source: load the model, then run ``prdit.diffusion.sample`` with per-sample seeds."""

    def open_source(worker: Any) -> tuple[Iterator[Any], ModelInfo]:  # a SamplingWorker
        device = resolve_device(request.device)
        worker.status.emit(f"Loading model on {device.type.upper()}…")
        model, info = load_model(request, device)
        from prdit import diffusion  # preloaded on the GUI thread by preload_engine()

        size = info.input_size
        shape = (request.num_samples, 1, size, size, size)
        if sampling_needs_check(device, request.num_samples, size):
            worker.status.emit("Checking memory…")
            refuse_if_too_big(model, info, request, device)
        if device.type == "cpu" and request.precision in (None, "auto"):
            worker.status.emit("Measuring the fastest number format…")
        choice = choose_precision(request.precision, device, model, shape)
        worker.precision = choice.precision
        model = with_precision(model, choice)
        # Per-sample generators exactly as `prdit sample` makes them (on the sampling device, seed + i),
        # so the studio and the CLI give the same volume for the same seed, whatever the batch.
        gens = [torch.Generator(device=device).manual_seed(s) for s in request.seeds()]
        process = diffusion_for(info)
        gen = diffusion.sample(
            model,
            shape,
            sampler=request.sampler,
            steps=request.steps,
            k=request.k,
            generator=gens,
            device=device,
            return_xt=request.record_xt,
            diffusion=process,
        )
        return gen, info

    return open_source


def make_volume(hu: np.ndarray, info: ModelInfo, **metadata: Any) -> Volume:
    """A generated volume in patient space (:func:`prdit.sampling.volume_from_hu`)."""
    return volume_from_hu(hu, info, metadata)


def sample_metadata(
    request: SampleRequest, info: ModelInfo, sample: int, precision: str = "fp32"
) -> dict[str, Any]:
    """What made sample ``sample`` of a run: the same record ``prdit sample`` writes beside it
    (:func:`prdit.sampling.sample_sidecar`), so a studio export and a CLI sample say the same."""
    return sample_sidecar(
        info,
        seed=request.seed + sample,
        sampler=request.sampler,
        steps=request.steps,
        k=request.k,
        precision=precision,
    )


def describe_error(
    exc: BaseException, request: SampleRequest | None = None, phase: str = "sample"
) -> tuple[str, str]:
    """(title, message) for a dialog: name what failed and what the user can change."""
    text = str(exc) or exc.__class__.__name__
    estimate = getattr(exc, "estimate", None)
    if estimate is not None:  # refused before it started (prdit.estimate.WouldNotFitError)
        from prdit.estimate import human_bytes

        return (
            "Not enough memory",
            f"{text}.\n\nThe run would need ~{human_bytes(estimate.peak_bytes)}; "
            f"{human_bytes(estimate.available_bytes or 0)} is free on {estimate.device.upper()}. "
            "Nothing was started.",
        )
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        n = request.num_samples if request else "?"
        return (
            "Out of memory",
            f"Sampling ran out of memory ({text.splitlines()[0]}).\n\n"
            f"Try fewer samples (now {n}), a smaller model, or the other device.",
        )
    from prdit.editing import EditError

    if isinstance(exc, EditError):
        return ("Cannot edit", text)
    if phase == "load":
        where = request.checkpoint if request is not None and request.checkpoint is not None else "the model"
        return ("Cannot load the model", f"{where}:\n{exc.__class__.__name__}: {text}")
    if phase == "settings":
        return ("Invalid generation settings", text)
    return ("Generation failed", f"{exc.__class__.__name__}: {text}")
