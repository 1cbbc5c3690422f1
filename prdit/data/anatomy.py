"""Coarse anatomy measures of any chest-CT volume: a plausibility check for generated volumes.

A generated volume can look like CT noise and still have the right histogram; these measures ask
whether it has a body, lungs of about the right size on both sides, soft tissue and bone. They use
only HU thresholds and connected components, so they work on real scans, phantoms and (noisy)
model samples alike.

Definitions (all floats):

* ``body_fraction``: body voxels / all voxels. The body is the largest connected component above
  -500 HU (after a light smoothing), with enclosed air (lungs, airways) filled slice by slice, so
  the scanner table and noise specks outside are excluded.
* ``lung_fraction``, ``soft_tissue_fraction``, ``bone_fraction``: fractions *of the body*
  (they sum to 1): lung is air-like tissue inside the body (< -400 HU, including the airways;
  components smaller than 0.05 % of the body are noise and count as soft tissue, and a mask too
  thin to keep a fifth of its voxels through one erosion is speckle, not lungs: noise volumes score
  no lung), bone is
  >= 250 HU (unsmoothed, so thin ribs count), soft tissue everything between (fat, muscle, blood,
  organs). Fractions depend on the voxel size (partial volume), so compare volumes of one size.
* ``lung_lr_balance``: left lung voxels / all lung voxels, split at the body's centre of mass
  along the patient's left-right axis (0.5 is symmetric; real and phantom chests are ~0.45-0.5,
  the heart takes room on the left). NaN when there is no lung.

Volumes are taken in the project's orientation (array ``[k, j, i]``, ``i`` to the patient's
left) unless a :class:`~prdit.volume.Volume` with another direction is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

from prdit.volume import Volume

ANATOMY_KEYS: tuple[str, ...] = (
    "body_fraction",
    "lung_fraction",
    "soft_tissue_fraction",
    "bone_fraction",
    "lung_lr_balance",
)

BODY_HU = -500.0
LUNG_HU = -400.0
BONE_HU = 250.0
_MIN_LUNG_COMPONENT = 5e-4  # of the body volume
#: the lung mask must keep at least this fraction of its voxels through one 6-connected erosion:
#: phantom lungs keep 0.37-0.49 at 32^3 and 0.52-0.63 at 64^3, the low-HU speckle of noise volumes
#: (Gaussian, mean -500..-100 HU, SD 300..800) at most 0.075, which was otherwise counted as lung.
#: Tested on the whole mask, not per component, so thin airways beside solid lungs still count.
_MIN_LUNG_SOLIDITY = 0.2


def _left_axis(volume: Volume | None) -> tuple[int, float]:
    """Numpy axis (0..2) that runs most along the patient's left (+x in LPS) and its sign."""
    if volume is None:
        return 2, 1.0
    # direction columns are index axes (i, j, k) = numpy axes (2, 1, 0)
    x_components = volume.direction[0, :]
    col = int(np.argmax(np.abs(x_components)))
    return 2 - col, float(np.sign(x_components[col]) or 1.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def measure_anatomy(volume_or_hu_array: Volume | np.ndarray) -> dict[str, float]:
    """Body, lung, soft-tissue and bone fractions and the lung left/right balance (see module doc)."""
    volume = volume_or_hu_array if isinstance(volume_or_hu_array, Volume) else None
    hu = np.asarray(volume.array if volume is not None else volume_or_hu_array, dtype=np.float32)
    if hu.ndim != 3:
        raise ValueError(f"measure_anatomy needs a 3D HU array, got shape {hu.shape}")
    if not np.all(np.isfinite(hu)):
        hu = np.nan_to_num(hu, nan=-1000.0, posinf=3000.0, neginf=-1000.0)
    smooth = ndimage.gaussian_filter(hu, 0.7, truncate=2.5)
    body = _largest_component(smooth > BODY_HU)
    # fill enclosed air per axial slice: structure connects in-plane only
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    body = ndimage.binary_fill_holes(body, structure=plane)
    n_body = int(body.sum())
    out = dict.fromkeys(ANATOMY_KEYS, 0.0)
    out["lung_lr_balance"] = math.nan
    out["body_fraction"] = n_body / hu.size
    if n_body == 0:
        return out
    lung = body & (smooth < LUNG_HU)
    lab, n = ndimage.label(lung)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = sizes >= max(1, _MIN_LUNG_COMPONENT * n_body)
        keep[0] = False
        lung = keep[lab]
        if lung.any() and ndimage.binary_erosion(lung).sum() < _MIN_LUNG_SOLIDITY * lung.sum():
            lung[:] = False  # speckle, not lungs (a noise volume)
    bone = body & (hu >= BONE_HU)  # raw HU: smoothing would erase thin ribs at coarse voxels
    n_lung, n_bone = int(lung.sum()), int(bone.sum())
    out["lung_fraction"] = n_lung / n_body
    out["bone_fraction"] = n_bone / n_body
    out["soft_tissue_fraction"] = (n_body - n_lung - n_bone) / n_body
    if n_lung:
        axis, sign = _left_axis(volume)
        coords = np.arange(hu.shape[axis], dtype=np.float64)
        shape = [1, 1, 1]
        shape[axis] = -1
        profile_body = body.sum(axis=tuple(a for a in range(3) if a != axis))
        centre = float((profile_body * coords).sum() / max(profile_body.sum(), 1))
        profile_lung = lung.sum(axis=tuple(a for a in range(3) if a != axis)).astype(np.float64)
        left_side = (coords - centre) * sign > 0
        out["lung_lr_balance"] = float(profile_lung[left_side].sum() / n_lung)
    return {k: float(v) for k, v in out.items()}


def phantom_reference_ranges(
    seeds: Iterable[int] = range(100), size: int = 32, margin: float = 0.15
) -> dict[str, tuple[float, float]]:
    """Per-key (low, high) range of the phantom's anatomy measures over many seeds.

    The range is widened by ``margin`` times its width on both sides; it is what a plausibility
    check of generated volumes compares against (a model trained on phantoms should land inside).
    """
    from prdit.data.phantom import generate_phantom

    values: dict[str, list[float]] = {k: [] for k in ANATOMY_KEYS}
    for seed in seeds:
        m = measure_anatomy(generate_phantom(int(seed), size=size))
        for k in ANATOMY_KEYS:
            values[k].append(m[k])
    ranges = {}
    for k, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            raise ValueError(f"no finite {k} over the phantom seeds")
        lo, hi = float(arr.min()), float(arr.max())
        pad = margin * max(hi - lo, 1e-3)
        ranges[k] = (lo - pad, hi + pad)
    return ranges


def check_plausibility(measures: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]) -> list[str]:
    """Human-readable problems (empty when every measure lies inside its range)."""
    problems = []
    for key, (lo, hi) in ranges.items():
        value = measures.get(key, math.nan)
        if not math.isfinite(value):
            problems.append(f"{key} is undefined (no lungs found?)")
        elif not lo <= value <= hi:
            problems.append(f"{key} = {value:.3f} outside the expected [{lo:.3f}, {hi:.3f}]")
    return problems
