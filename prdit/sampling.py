"""Batched generation to files: what ``prdit sample`` and the studio's batch export run.

Each sample ``i`` is drawn with its own generator seeded ``seed + i``, so it is the same volume
whatever the batch size or the number of processes (up to float summation order in batched
matrix products). Only the current sampler state lives in memory: the trajectory is never kept.

Per sample ``i`` the output folder gets::

    sample_0000i.nii.gz   HU, float32, with the training data's spacing (origin at the centre)
    sample_0000i.json     seed, sampler, steps, k, checkpoint and its SHA-256, model, HU window...
    sample_0000i.png      three orthogonal mid-slices (optional)
    sample_0000i_dicom/   a synthetic CT series (optional, ``dicom=True``)

Under torchrun each rank generates the samples ``rank, rank + world, ...`` of the requested range.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prdit import __version__
from prdit.model_info import ModelInfo
from prdit.precision import PrecisionChoice
from prdit.previews import as_numpy, save_slices_png
from prdit.volume import Volume

SIDECAR_KEYS = (
    "seed",
    "sampler",
    "steps",
    "k",
    "checkpoint",
    "checkpoint_sha256",
    "model_name",
    "input_size",
    "hu_window",
    "software_version",
    "created",
    "spacing",
    "weights",
    "training_step",
    "stage",
    "precision",
)


def sample_sidecar(
    info: ModelInfo,
    *,
    seed: int,
    sampler: str,
    steps: int,
    k: int | None,
    precision: str = "fp32",
    **extra: Any,
) -> dict[str, Any]:
    """What made one sample: the one sidecar/provenance record every writer uses (``prdit sample``'s
    JSON beside each NIfTI, the studio's volume metadata and its exports, DICOM provenance).

    The checkpoint is named by its file name and identified by its SHA-256: a full path would write
    the user's folders into every file shared. ``k`` is None for the cold sampler (it has none).
    ``extra`` adds run details (index, seconds, status) after the shared keys.
    """
    return {
        "seed": int(seed),
        "sampler": sampler,
        "steps": int(steps),
        "k": int(k) if sampler == "hot" and k is not None else None,
        "checkpoint": info.file_name or None,
        "checkpoint_sha256": info.sha256 or None,
        "model_name": info.display_name,
        "input_size": info.input_size,
        "hu_window": info.hu_window.to_dict(),
        "software_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spacing": [float(v) for v in info.spacing],
        "weights": info.weights,
        "training_step": info.step,
        "stage": info.stage,
        "precision": precision,
        **extra,
    }


# ---------------------------------------------------------------------------------------------- writing
def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def sample_stem(index: int) -> str:
    return f"sample_{index:05d}"


def to_volume(x: torch.Tensor, info: ModelInfo, metadata: dict[str, Any] | None = None) -> Volume:
    """Model-range ``[1, S, S, S]`` (or ``[S, S, S]``) -> HU :class:`Volume` with the true spacing."""
    arr = as_numpy(x)
    if arr.ndim == 4:
        arr = arr[0]
    return volume_from_hu(info.hu_window.to_hu(arr), info, metadata)


def volume_from_hu(hu: np.ndarray, info: ModelInfo, metadata: dict[str, Any] | None = None) -> Volume:
    """A generated volume in patient space: the model's voxel spacing, identity direction (axial,
    LPS), its centre at (0, 0, 0) mm. The one place generated voxels get their geometry (the CLI's
    files and the studio's views alike)."""
    spacing = np.asarray(info.spacing, dtype=np.float64)
    size_ijk = np.asarray(hu.shape[::-1], dtype=np.float64)
    origin = -(size_ijk - 1.0) / 2.0 * spacing
    array = np.ascontiguousarray(hu, dtype=np.float32)
    return Volume(array, tuple(spacing), tuple(origin), np.eye(3), dict(metadata or {}))


def diffusion_for(info: ModelInfo):
    """The diffusion process a model was trained with (its config), for sampling it."""
    from prdit.diffusion import IaNDiffusion

    cfg = info.diffusion
    return IaNDiffusion(
        num_timesteps=int(cfg.get("num_timesteps", 1000)), noise_scale=float(cfg.get("noise_scale", 0.5))
    )


@dataclass
class SampleSpec:
    """What to generate (the same for every rank)."""

    count: int
    steps: int = 250
    sampler: str = "hot"
    k: int = 2
    seed: int = 0
    batch_size: int = 1
    start_index: int = 0


@dataclass
class SampleOutput:
    index: int
    nifti: Path
    sidecar: Path
    preview: Path | None = None
    dicom: Path | None = None
    seconds: float = 0.0


def planned_indices(spec: SampleSpec, rank: int = 0, world_size: int = 1) -> list[int]:
    """Sample indices this rank generates: a strided share of ``start .. start + count - 1``."""
    from prdit.distributed import shard

    return shard(list(range(spec.start_index, spec.start_index + spec.count)), rank, world_size)


def generate_to_folder(
    model: nn.Module,
    info: ModelInfo,
    out_dir: str | Path,
    spec: SampleSpec,
    *,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    previews: bool = True,
    dicom: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    diffusion: Any = None,
    on_step: Callable[[int, int], None] | None = None,
    on_sample: Callable[[SampleOutput], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    precision: PrecisionChoice | None = None,
) -> list[SampleOutput]:
    """Generate this rank's share of ``spec`` into ``out_dir``; returns what was written.

    ``on_step(done_model_calls, total_model_calls)`` after every sampler step (progress bars),
    ``on_sample`` after each written sample, ``should_stop()`` checked between steps (cancel:
    the current batch is dropped, finished samples stay). ``precision`` (None: float32) is the
    format the network computes in (:func:`prdit.precision.choose_precision`); the sidecar says it.
    """
    from prdit.diffusion import sample
    from prdit.precision import with_precision

    if spec.count < 1:
        raise ValueError(f"count must be >= 1, got {spec.count}")
    if spec.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {spec.batch_size}")
    from prdit.sampler_names import SAMPLERS

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {spec.sampler!r}")
    if spec.k < 1:
        raise ValueError(f"k must be >= 1, got {spec.k}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if diffusion is None:
        diffusion = diffusion_for(info)
    diffusion.respace(spec.steps)  # validates steps before any work
    indices = planned_indices(spec, rank, world_size)
    todo = []
    for i in indices:
        nifti = out / f"{sample_stem(i)}.nii.gz"
        if nifti.exists() and not overwrite:
            if skip_existing and (out / f"{sample_stem(i)}.json").exists():
                continue  # complete: its sidecar is written last
            if skip_existing:  # a volume without its sidecar was interrupted: make it again
                todo.append(i)
                continue
            raise FileExistsError(
                f"{nifti} already exists; choose another --out folder, --start-index, or pass --overwrite "
                f"(or --skip-existing to fill in missing samples)"
            )
        todo.append(i)
    precision_name = precision.precision if precision is not None else "fp32"
    if precision is not None:
        model = with_precision(model, precision)
    s = info.input_size
    model_calls = len(diffusion.respace(spec.steps))
    total_calls = model_calls * len(todo)
    done_calls = 0
    results: list[SampleOutput] = []
    for b in range(0, len(todo), spec.batch_size):
        chunk = todo[b : b + spec.batch_size]
        gens = [torch.Generator(device=device).manual_seed(spec.seed + i) for i in chunk]
        t0 = time.perf_counter()
        final = None
        with torch.inference_mode():
            for step in sample(
                model,
                (len(chunk), 1, s, s, s),
                spec.sampler,
                spec.steps,
                spec.k,
                generator=gens,
                device=device,
                diffusion=diffusion,
            ):
                done_calls += 1
                if on_step:
                    on_step(done_calls, total_calls)
                if step.sample is not None:
                    final = step.sample
                elif should_stop is not None and should_stop():
                    return results
        if final is None:  # pragma: no cover - the sampler always ends with a sample
            raise RuntimeError("the sampler ended without a sample")
        seconds = (time.perf_counter() - t0) / len(chunk)
        for j, i in enumerate(chunk):
            results.append(
                _write_one(
                    final[j],
                    i,
                    out,
                    info,
                    spec,
                    seconds,
                    previews,
                    dicom,
                    overwrite,
                    precision_name,
                )
            )
            if on_sample:
                on_sample(results[-1])
        del final
    return results


def _write_one(
    x: torch.Tensor,
    index: int,
    out: Path,
    info: ModelInfo,
    spec: SampleSpec,
    seconds: float,
    previews: bool,
    dicom: bool,
    overwrite: bool,
    precision: str = "fp32",
) -> SampleOutput:
    from prdit.data.io import write_nifti

    stem = sample_stem(index)
    sidecar = sample_sidecar(
        info,
        seed=spec.seed + index,
        sampler=spec.sampler,
        steps=spec.steps,
        k=spec.k,
        precision=precision,
        index=index,
        seconds=round(seconds, 3),
    )
    volume = to_volume(x, info, {"sidecar": sidecar})
    nifti = out / f"{stem}.nii.gz"
    write_nifti(volume, nifti)
    result = SampleOutput(index, nifti, out / f"{stem}.json", seconds=seconds)
    if previews:
        w = info.hu_window
        result.preview = save_slices_png([[volume.array]], out / f"{stem}.png", value_range=(w.low, w.high))
    if dicom:
        from prdit.export.dicom import write_ct_series
        from prdit.export.provenance import Provenance

        prov = Provenance.from_sidecar(sidecar, source=str(result.sidecar))
        result.dicom = write_ct_series(
            volume,
            out / f"{stem}_dicom",
            provenance=prov,
            series_description=f"{info.display_name} seed {spec.seed + index}",
            series_number=index + 1,
            overwrite=overwrite,
        )
    _write_json_atomic(result.sidecar, sidecar)  # last: a sidecar means the sample is complete
    return result
