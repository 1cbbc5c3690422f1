"""Editing with the model: regenerate a masked region of a volume so that it fits what is around it.

In-fill by replacement (RePaint, Lugmayr et al. 2022, without its resampling jumps): at every
sampler step the known voxels of the state are replaced by the known volume taken to the same
noise level, ``x_t = cos(b_t) x0 + sin(b_t) sigma_n eps`` with fresh noise, while the masked voxels
follow the sampler. The model therefore denoises a state whose known part is statistically what it
was trained on, and the generated part is pulled toward agreement with it; the final sample equals
the known volume exactly outside the mask. It runs on the hot and the cold sampler through
:meth:`prdit.diffusion.IaNDiffusion.sample_guided`, so it streams ``Step`` events, stops on cancel
and keeps one state in memory like plain sampling.

Any input is brought to the model's grid (its voxel size, ``input_size^3`` centred on the input),
edited there, and the regenerated region written back onto the input's own grid: voxels outside the
mask keep their original values exactly (``prdit edit infill``).

Super-resolution (:func:`sample_superres`) uses the same seam: the state's block averages are
replaced by the low-resolution measurement taken to each step's noise level, so the sample agrees
with the measurement after downsampling and the detail inside each block comes from the model.

The grid handling lives here once, in two jobs that ``prdit edit`` and the studio's Edit panel
share: :func:`prepare_infill` (a volume and a boolean region on its grid) and
:func:`prepare_superres` (a low-resolution volume); each gives the tensors the guided sampler needs
and turns its result back into HU volumes with geometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from prdit.diffusion import Generators, IaNDiffusion, Step, _randn
from prdit.model_info import ModelInfo
from prdit.volume import Volume


class EditError(ValueError):
    """An edit that cannot be made as asked; the message names the setting and what is wrong."""


def _at_noise_level(
    diffusion: IaNDiffusion, clean: torch.Tensor, t: int, draw: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``clean`` taken to step ``t``'s noise level by the forward process (``diffusion.q_sample``)
    with standard normal noise from ``draw()``; at ``t = 0`` (no noise) ``clean`` itself, and
    nothing is drawn, so the generators' streams stay where the samplers expect them."""
    if t == 0 or math.sin(diffusion.angle(float(t))) == 0.0:
        return clean
    return diffusion.q_sample(clean, t, draw())


def infill_constraint(known: torch.Tensor, mask: torch.Tensor, diffusion: IaNDiffusion):
    """``constraint(x, t, generators)``: ``x`` inside ``mask``, the noised ``known`` outside it."""
    if known.shape != mask.shape:
        raise ValueError(f"in-fill: known volume {tuple(known.shape)} and mask {tuple(mask.shape)} differ")
    region = mask.to(torch.bool)

    def apply(x: torch.Tensor, t: int, gens: Generators) -> torch.Tensor:
        noisy = _at_noise_level(
            diffusion, known.to(x.dtype), t, lambda: _randn(tuple(x.shape), gens, x.device, x.dtype)
        )
        return torch.where(region.to(x.device), x, noisy)

    return apply


def sample_infill(
    model: torch.nn.Module,
    known: torch.Tensor,
    mask: torch.Tensor,
    sampler: str = "hot",
    steps: int = 50,
    k: int = 2,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    diffusion: IaNDiffusion | None = None,
    return_xt: bool = False,
    end: str = "sample",
) -> Iterator[Step]:
    """Regenerate ``mask`` (True: make anew) of ``known`` (``[B, 1, S, S, S]`` in the model's
    [-1, 1] scale, on the model's grid); yields the sampler's ``Step`` events, ``x0_hat`` shown
    with the known voxels in place. ``step.sample`` on the last equals ``known`` outside the mask."""
    diffusion = diffusion or IaNDiffusion()
    if known.ndim != 5 or known.shape[1] != 1:
        raise ValueError(f"in-fill: the known volume must be [B, 1, S, S, S], got {tuple(known.shape)}")
    if not bool(mask.any()):
        raise ValueError("in-fill: the mask is empty; there is nothing to regenerate")
    device = torch.device(device) if device is not None else known.device
    constraint = infill_constraint(known.to(device), mask.to(device), diffusion)
    return with_end(
        end,
        diffusion.sample_guided(
            model,
            tuple(known.shape),
            constraint,
            sampler,
            steps,
            k,
            generator=generator,
            device=device,
            return_xt=return_xt,
        ),
    )


ENDS = ("sample", "denoised")


def with_end(end: str, steps: Iterator[Step]) -> Iterator[Step]:
    """The guided walk with the chosen last volume.

    ``"sample"``: the state reached at ``t = 0`` (a draw from the model, with its texture).
    ``"denoised"``: the last network evaluation's clean estimate, constraint applied (the state at
    the last ``t > 0`` denoised): an estimate of the posterior mean near the end of the walk, which
    scores higher on fidelity measures (PSNR, SSIM) and is smoother; measured in docs/editing.md.
    Same events, same count; only the final one's ``x0_hat``/``sample`` differ.
    """
    if end not in ENDS:
        raise ValueError(f"end must be one of {ENDS}, got {end!r}")
    if end == "sample":
        yield from steps
        return
    previous: torch.Tensor | None = None
    try:
        for step in steps:
            if step.sample is not None and previous is not None and step.t == 0:
                step = Step(step.index, step.total, step.t, previous, step.x_t, sample=previous)
            previous = step.x0_hat
            yield step
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()


def superres_constraint(low: torch.Tensor, factor: int, diffusion: IaNDiffusion):
    """``constraint(x, t, generators)``: the state's ``factor``-block averages replaced by the
    measurement ``low`` taken to the same noise level. With ``D`` the block average and ``U`` its
    nearest upsampling (``D U = I``): ``x <- x - U D x + U y_t``, ``y_t = cos(b) low + sin(b) sigma_n
    D eps``, so at ``t = 0`` the sample's block averages equal ``low`` exactly and the detail inside
    each block is the model's."""
    f = int(factor)
    if f < 2:
        raise ValueError(f"super-resolution: factor must be >= 2, got {factor}")

    def down(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool3d(x, f)

    def up(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(f, 2).repeat_interleave(f, 3).repeat_interleave(f, 4)

    def apply(x: torch.Tensor, t: int, gens: Generators) -> torch.Tensor:
        target = _at_noise_level(
            diffusion,
            low.to(x.device, x.dtype),
            t,
            lambda: down(_randn(tuple(x.shape), gens, x.device, x.dtype)),
        )
        return x - up(down(x)) + up(target)

    return apply


def sample_superres(
    model: torch.nn.Module,
    low: torch.Tensor,
    factor: int = 2,
    sampler: str = "hot",
    steps: int = 50,
    k: int = 2,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
    diffusion: IaNDiffusion | None = None,
    return_xt: bool = False,
    end: str = "sample",
) -> Iterator[Step]:
    """A ``factor``-times finer volume whose ``factor``-block averages equal ``low``
    (``[B, 1, s, s, s]`` in the model's [-1, 1] scale, ``s * factor`` = the model's size); yields
    the sampler's ``Step`` events like :func:`sample_infill`."""
    diffusion = diffusion or IaNDiffusion()
    if low.ndim != 5 or low.shape[1] != 1:
        raise ValueError(
            f"super-resolution: the low-resolution volume must be [B, 1, s, s, s], got {tuple(low.shape)}"
        )
    device = torch.device(device) if device is not None else low.device
    shape = (low.shape[0], 1, *(int(n) * int(factor) for n in low.shape[2:]))
    constraint = superres_constraint(low.to(device), factor, diffusion)
    return with_end(
        end,
        diffusion.sample_guided(
            model,
            shape,
            constraint,
            sampler,
            steps,
            k,
            generator=generator,
            device=device,
            return_xt=return_xt,
        ),
    )


# ---------------------------------------------------------------------------------------------- grids
def model_grid_like(volume: Volume, size: int, spacing: tuple[float, float, float]) -> Volume:
    """An empty ``size^3`` volume at the model's ``spacing``, axis-aligned (LPS), centred where
    ``volume`` is centred: the grid a volume is brought to for editing."""
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    origin = np.asarray(volume.center_lps()) - (size - 1) / 2.0 * spacing_arr
    return Volume(np.zeros((size, size, size), np.float32), tuple(spacing_arr), tuple(origin), np.eye(3))


def resample_onto(
    source: Volume, target: Volume, *, nearest: bool = False, fill: float = -1000.0
) -> np.ndarray:
    """``source``'s values on ``target``'s voxels (linear, or nearest for labels), ``fill`` outside."""
    import SimpleITK as sitk

    resampled = sitk.Resample(
        source.to_sitk(),
        target.to_sitk(),
        sitk.Transform(),
        sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear,
        float(fill),
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(resampled).astype(np.float32)


def box_mask(volume: Volume, low_lps: np.ndarray, high_lps: np.ndarray) -> np.ndarray:
    """``[k, j, i]`` booleans: voxels of ``volume`` whose centres lie in the LPS box ``[low, high]``."""
    low, high = np.minimum(low_lps, high_lps), np.maximum(low_lps, high_lps)
    k, j, i = np.indices(volume.shape)
    centres = volume.index_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(*volume.shape, 3)
    return np.all((centres >= low) & (centres <= high), axis=-1)


def ellipsoid_mask(volume: Volume, low_lps: np.ndarray, high_lps: np.ndarray) -> np.ndarray:
    """``[k, j, i]`` booleans: voxels of ``volume`` whose centres lie in the ellipsoid inscribed in
    the LPS box ``[low, high]`` (a sphere when the box is a cube)."""
    low, high = np.minimum(low_lps, high_lps), np.maximum(low_lps, high_lps)
    centre, radius = (low + high) / 2.0, np.maximum((high - low) / 2.0, 1e-9)
    k, j, i = np.indices(volume.shape)
    centres = volume.index_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(*volume.shape, 3)
    return np.sum(((centres - centre) / radius) ** 2, axis=-1) <= 1.0


@dataclass(frozen=True)
class EditRegion:
    """A region to regenerate: an LPS-aligned box, or the ellipsoid inscribed in it (``sphere``).

    In patient millimetres, so it means the same on any grid (the studio's slice views draw it,
    :meth:`mask_on` turns it into voxels of a volume)."""

    kind: str  # "box" or "sphere"
    low_lps: tuple[float, float, float]
    high_lps: tuple[float, float, float]

    KINDS = ("box", "sphere")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise EditError(f"region kind must be one of {self.KINDS}, got {self.kind!r}")
        low = np.minimum(self.low_lps, self.high_lps)
        high = np.maximum(self.low_lps, self.high_lps)
        object.__setattr__(self, "low_lps", tuple(float(v) for v in low))
        object.__setattr__(self, "high_lps", tuple(float(v) for v in high))

    @classmethod
    def around(cls, kind: str, centre_lps, half_mm) -> EditRegion:
        centre, half = np.asarray(centre_lps, float), np.abs(np.asarray(half_mm, float))
        return cls(kind, tuple(centre - half), tuple(centre + half))

    @property
    def centre_lps(self) -> np.ndarray:
        return (np.asarray(self.low_lps) + np.asarray(self.high_lps)) / 2.0

    @property
    def size_mm(self) -> np.ndarray:
        return np.asarray(self.high_lps) - np.asarray(self.low_lps)

    def mask_on(self, volume: Volume) -> np.ndarray:
        """``[k, j, i]`` booleans: the voxels of ``volume`` whose centres lie in the region."""
        low, high = np.asarray(self.low_lps), np.asarray(self.high_lps)
        return box_mask(volume, low, high) if self.kind == "box" else ellipsoid_mask(volume, low, high)

    def describe(self) -> dict:
        """What a sidecar records."""
        return {f"{self.kind}_lps_mm": [list(self.low_lps), list(self.high_lps)]}


# ---------------------------------------------------------------------------------------------- jobs
def hu_on_grid(grid: Volume, info: ModelInfo, result: torch.Tensor | np.ndarray) -> Volume:
    """A sampler result in the model's scale (``[S, S, S]`` or ``[1, 1, S, S, S]``) as HU on ``grid``."""
    arr = np.asarray(result.detach().cpu() if isinstance(result, torch.Tensor) else result, np.float32)
    return grid.with_array(info.hu_window.to_hu(arr.reshape(grid.shape)).astype(np.float32))


@dataclass
class InfillJob:
    """Regenerating ``region`` of ``volume``: the tensors on the model's grid and the way back."""

    volume: Volume  # the input, HU, its own grid
    region: np.ndarray  # [k, j, i] booleans on the input's grid: True = synthetic
    grid: Volume  # the model's grid (empty), centred on the input
    known: torch.Tensor  # [1, 1, S, S, S], the input on the model's grid, model scale
    mask: torch.Tensor  # [1, 1, S, S, S] booleans on the model's grid
    info: ModelInfo

    def steps(self, model: torch.nn.Module, sampler: str, steps: int, k: int, **kwargs) -> Iterator[Step]:
        """The guided sampler's ``Step`` events (keyword arguments as :func:`sample_infill`)."""
        return sample_infill(model, self.known, self.mask, sampler, steps, k, **kwargs)

    def on_model_grid(self, result: torch.Tensor | np.ndarray) -> Volume:
        """A result (model scale) as an HU volume on the model's grid."""
        return hu_on_grid(self.grid, self.info, result)

    def write_back(self, result: torch.Tensor | np.ndarray) -> np.ndarray:
        """The edited volume on the input's grid, in HU: the region from ``result`` (model scale,
        resampled linearly), every other voxel the input's own value, bit for bit."""
        return self.write_back_hu(self.on_model_grid(result).array)

    def write_back_hu(self, grid_hu: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """``grid_hu`` (HU on the model's grid) written into the region of ``base`` (default: a copy
        of the input). Only the region's bounding box is resampled, so the studio can do this for
        every streamed step of a large volume; ``base`` is modified in place when given."""
        out = np.array(self.volume.array, dtype=np.float32) if base is None else base
        box = self._bounding_box()
        corner = self.volume.index_to_lps([box[2].start, box[1].start, box[0].start])
        crop_shape = tuple(sl.stop - sl.start for sl in box)
        crop = Volume(
            np.zeros(crop_shape, np.float32), self.volume.spacing, tuple(corner), self.volume.direction
        )
        values = resample_onto(self.grid.with_array(np.asarray(grid_hu, np.float32)), crop)
        inside = self.region[box]
        out[box][inside] = values[inside]
        return out

    def _bounding_box(self) -> tuple[slice, slice, slice]:
        if getattr(self, "_box", None) is None:
            idx = np.nonzero(self.region)
            self._box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in idx)
        return self._box

    def describe(self) -> dict:
        """What the sidecar records about the region."""
        return {"synthetic_voxels": int(self.region.sum()), "total_voxels": int(self.region.size)}


def prepare_infill(volume: Volume, region: np.ndarray, info: ModelInfo) -> InfillJob:
    """An :class:`InfillJob`; :class:`EditError` when the region is empty or too small for the model."""
    region = np.asarray(region, dtype=bool)
    if region.shape != volume.shape:
        raise EditError(f"the region's shape {region.shape} is not the volume's {volume.shape}")
    if not region.any():
        raise EditError("the region covers no voxel of the volume; draw or choose a larger one")
    grid = model_grid_like(volume, info.input_size, info.spacing)
    hu = resample_onto(volume, grid)
    as_float = volume.with_array(region.astype(np.float32))
    region_grid = resample_onto(as_float, grid, nearest=True, fill=0.0) > 0.5
    if not region_grid.any():
        raise EditError(
            "the region is smaller than one voxel of the model's grid "
            f"({info.spacing[0]:.1f} mm); make it larger"
        )
    if region_grid.all():
        raise EditError("the region covers the whole field of the model: nothing is left to fit it to")
    known = torch.as_tensor(info.hu_window.to_unit(hu))[None, None].float()
    return InfillJob(volume, region, grid, known, torch.as_tensor(region_grid)[None, None], info)


@dataclass
class SuperresJob:
    """Super-resolving ``volume`` by ``factor``: the measurement at ``factor`` times the model's
    voxel size and the model's grid the result lands on (both centred on the input)."""

    volume: Volume
    factor: int
    low_grid: Volume  # the measurement's grid, with ``low`` as its array (HU)
    grid: Volume  # the model's grid (empty): the result's geometry
    low: torch.Tensor  # [1, 1, s, s, s], model scale
    info: ModelInfo

    def steps(self, model: torch.nn.Module, sampler: str, steps: int, k: int, **kwargs) -> Iterator[Step]:
        return sample_superres(model, self.low, self.factor, sampler, steps, k, **kwargs)

    def on_model_grid(self, result: torch.Tensor | np.ndarray) -> Volume:
        """A result (model scale) as an HU volume on the model's grid."""
        return hu_on_grid(self.grid, self.info, result)

    def trilinear(self) -> Volume:
        """The measurement upsampled trilinearly onto the model's grid: the baseline to beat."""
        return self.grid.with_array(resample_onto(self.low_grid, self.grid))

    def describe(self) -> dict:
        return {
            "factor": self.factor,
            "measurement_size": list(self.low_grid.shape),
            "measurement_spacing_mm": [round(float(v), 4) for v in self.low_grid.spacing],
        }


def prepare_superres(volume: Volume, info: ModelInfo, factor: int = 2) -> SuperresJob:
    """A :class:`SuperresJob`. The measurement is the input on a grid ``factor`` times coarser
    than the model's: resampled linearly when the input is about that coarse already, else the
    block average of the input on the model's grid (what a coarser scanner voxel would record)."""
    factor = int(factor)
    size = info.input_size
    if factor not in (2, 4) or size % factor:
        raise EditError(f"--factor must be 2 or 4 and divide the model's size {size}, got {factor}")
    grid = model_grid_like(volume, size, info.spacing)
    coarse = tuple(float(s) * factor for s in info.spacing)
    low_grid = model_grid_like(volume, size // factor, coarse)
    if min(volume.spacing) >= 0.75 * min(coarse):
        low_hu = resample_onto(volume, low_grid)
    else:
        fine = torch.as_tensor(resample_onto(volume, grid))[None, None]
        low_hu = torch.nn.functional.avg_pool3d(fine, factor)[0, 0].numpy()
    low_grid = low_grid.with_array(low_hu.astype(np.float32))
    low = torch.as_tensor(info.hu_window.to_unit(low_hu))[None, None].float()
    return SuperresJob(volume, factor, low_grid, grid, low, info)
