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

Not yet here (issue 21): ``prdit edit superres``, the studio's region tool and the seam benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from prdit.diffusion import Generators, IaNDiffusion, Step, _randn
from prdit.volume import Volume


def infill_constraint(known: torch.Tensor, mask: torch.Tensor, diffusion: IaNDiffusion):
    """``constraint(x, t, generators)``: ``x`` inside ``mask``, the noised ``known`` outside it."""
    if known.shape != mask.shape:
        raise ValueError(f"in-fill: known volume {tuple(known.shape)} and mask {tuple(mask.shape)} differ")
    region = mask.to(torch.bool)

    def apply(x: torch.Tensor, t: int, gens: Generators) -> torch.Tensor:
        beta = diffusion.angle(float(t))
        if t == 0 or math.sin(beta) == 0.0:
            noisy = known.to(x.dtype)
        else:
            eps = _randn(tuple(x.shape), gens, x.device, x.dtype)
            noisy = math.cos(beta) * known.to(x.dtype) + math.sin(beta) * diffusion.noise_scale * eps
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
    return diffusion.sample_guided(
        model,
        tuple(known.shape),
        constraint,
        sampler,
        steps,
        k,
        generator=generator,
        device=device,
        return_xt=return_xt,
    )


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
        beta = diffusion.angle(float(t))
        target = low.to(x.device, x.dtype)
        if t != 0 and math.sin(beta) != 0.0:
            eps = _randn(tuple(x.shape), gens, x.device, x.dtype)
            target = math.cos(beta) * target + math.sin(beta) * diffusion.noise_scale * down(eps)
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
    return diffusion.sample_guided(
        model, shape, constraint, sampler, steps, k, generator=generator, device=device, return_xt=return_xt
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
