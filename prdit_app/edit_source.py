"""One edit run in the studio (regenerate a region, or super-resolve), on the sampling worker.

The Edit panel builds an :class:`EditRun` on the GUI thread from the volume on screen and the
region; the :class:`~prdit_app.worker.SamplingWorker` calls :meth:`EditRun.open_source` on its own
thread, where the model is loaded and the volume brought to the model's grid
(:func:`prdit.editing.prepare_infill` / :func:`prdit.editing.prepare_superres`, the same jobs
``prdit edit`` runs), and iterates the guided sampler's ``Step`` events like any generation. On the
GUI thread :meth:`EditRun.frame` turns each streamed step into the volume to show: for an in-fill,
the input with the region's bounding box replaced by the current estimate, so the region forms in
place while everything else stays as it was; for super-resolution, the finer volume itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdit.editing import InfillJob, SuperresJob, prepare_infill, prepare_superres
from prdit.precision import choose_precision, with_precision
from prdit.sampling import diffusion_for, sample_sidecar
from prdit.volume import Volume
from prdit_app.sampling_types import SampleRequest, SamplingResult, StepUpdate
from prdit_app.step_source import load_model, resolve_device

INFILL, SUPERRES = "infill", "superres"


class EditRun:
    """An in-fill of ``region`` (booleans on ``volume``'s grid) or a ``factor``-times super-resolution."""

    def __init__(
        self,
        kind: str,
        volume: Volume,
        request: SampleRequest,
        *,
        region: np.ndarray | None = None,
        region_record: dict | None = None,
        factor: int = 2,
        end: str = "sample",
        source_name: str = "",
    ) -> None:
        if kind not in (INFILL, SUPERRES):
            raise ValueError(f"edit kind must be {INFILL!r} or {SUPERRES!r}, got {kind!r}")
        if kind == INFILL and (region is None or not np.any(region)):
            raise ValueError("the region covers no voxel of the volume; draw a larger one")
        self.kind = kind
        self.volume = volume
        self.request = request
        self.region = region
        self.region_record = region_record or {}
        self.factor = factor
        self.end = end
        self.source_name = source_name
        self.job: InfillJob | SuperresJob | None = None  # set on the worker thread
        self._canvas: np.ndarray | None = None  # the in-fill's display buffer (GUI thread)

    # ------------------------------------------------------------------ worker thread
    def open_source(self, worker: Any):
        """The ``StepSource`` protocol: load, prepare, and return the guided sampler and the model."""
        request = self.request
        device = resolve_device(request.device)
        worker.status.emit(f"Loading model on {device.type.upper()}…")
        model, info = load_model(request, device)
        worker.status.emit("Bringing the volume to the model's grid…")
        if self.kind == INFILL:
            self.job = prepare_infill(self.volume, self.region, info)
        else:
            self.job = prepare_superres(self.volume, info, self.factor)
        shape = (1, 1, *self.job.grid.shape)
        choice = choose_precision(request.precision, device, model, shape)
        worker.precision = choice.precision
        steps = self.job.steps(
            with_precision(model, choice),
            request.sampler,
            request.steps,
            request.k,
            generator=torch.Generator(device=device).manual_seed(request.seed),
            device=device,
            diffusion=diffusion_for(info),
            return_xt=request.record_xt,
            end=self.end,
        )
        return steps, info

    # ------------------------------------------------------------------ GUI thread
    def frame(self, update: StepUpdate) -> Volume | None:
        """The volume to show for a streamed step (None before the job exists)."""
        job = self.job
        if job is None:
            return None
        hu = update.x0_hu[0]
        what = "in-fill" if self.kind == INFILL else "super-resolution"
        label = f"{what} · step {update.index + 1}/{update.total}"
        if isinstance(job, SuperresJob):
            return job.grid.with_array(np.ascontiguousarray(hu), generated=label, final=False)
        if self._canvas is None:
            self._canvas = np.array(self.volume.array, dtype=np.float32)
        # a new array per frame: the views keep the one they were given (ViewerState.set_volume)
        self._canvas = job.write_back_hu(hu, self._canvas.copy())
        return self.volume.with_array(self._canvas, generated=label, final=False)

    def result_volume(self, result: SamplingResult, precision: str = "fp32") -> Volume | None:
        """The finished volume with its sidecar (None when cancelled or nothing ran)."""
        job = self.job
        if job is None or result.status != "done" or not result.volumes:
            return None
        hu = np.asarray(result.volumes[0].array, dtype=np.float32)
        request, info = self.request, result.info
        edit: dict[str, Any] = {"kind": self.kind, "end": self.end, "input": self.source_name}
        if isinstance(job, InfillJob):
            edit.update(self.region_record)
            edit.update(job.describe())
            edit["note"] = "voxels outside the region are the input's own; the region is synthetic"
        else:
            edit.update(job.describe())
            edit["note"] = "every voxel is synthetic; its factor-block averages equal the measurement"
        sidecar = sample_sidecar(
            info,
            seed=request.seed,
            sampler=request.sampler,
            steps=request.steps,
            k=request.k,
            precision=precision,
            edit=edit,
            seconds=round(result.elapsed_s, 3),
        )
        if isinstance(job, SuperresJob):
            return job.grid.with_array(hu, **sidecar, generated="super-resolved", final=True)
        edited = job.write_back_hu(hu)
        return self.volume.with_array(edited, **sidecar, generated="edited", final=True)


def source_label(volume: Volume) -> str:
    """A short name for the input in the sidecar (a file name, never a full path)."""
    src = str(volume.metadata.get("source") or volume.metadata.get("path") or "")
    return Path(src).name if src else "volume on screen"
