"""Reorient any volume to the closest canonical LPS voxel grid, once, without copying.

Why: a slice viewer that honours the direction matrix has two choices — resample every slice
through the affine (slow, blurs, needs interpolation per frame) or draw the voxel grid after
reordering and flipping axes so that they run, as nearly as possible, along patient L, P and S.
Radiology viewers (and nibabel's ``io_orientation``/``as_closest_canonical``) take the second:
axis permutations and flips are exact, cost nothing (numpy views) and keep every voxel. Oblique
acquisitions (a direction matrix that is not a signed permutation) are then shown on their own
grid, which is how scanners display them too; positions are still exact in LPS mm because every
conversion goes through the volume's true affine.

The canonical array ``can`` is indexed ``can[x, y, z]`` with ``x`` increasing towards patient
Left, ``y`` towards Posterior and ``z`` towards Superior. ``canonical index <-> (i, j, k) index``
is a signed permutation; ``(i, j, k) <-> LPS`` is :class:`prdit.volume.Volume`'s affine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from prdit.volume import Volume


def closest_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For each LPS axis ``a`` the index axis (0=i, 1=j, 2=k) closest to it and whether it is reversed.

    Chooses the permutation that maximises the summed |cosines| (unique assignment even for
    45-degree obliques, where a greedy per-axis choice could pick the same index axis twice).
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    best: tuple[int, ...] | None = None
    best_score = -1.0
    for perm in itertools.permutations(range(3)):
        score = sum(abs(d[a, perm[a]]) for a in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    assert best is not None
    flips = tuple(bool(d[a, best[a]] < 0) for a in range(3))
    return (best[0], best[1], best[2]), flips  # type: ignore[return-value]


@dataclass(frozen=True)
class CanonicalGrid:
    """Geometry of a volume's canonical (L, P, S-ordered) voxel grid.

    ``perm[a]`` is the index axis (0=i, 1=j, 2=k) that runs along LPS axis ``a``; ``flip[a]`` says
    it runs backwards; ``size``/``spacing`` are per canonical axis (x, y, z).
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine_lps: np.ndarray  # the volume's (i, j, k, 1) -> LPS affine
    inverse_affine: np.ndarray

    @classmethod
    def of(cls, volume: Volume) -> CanonicalGrid:
        perm, flip = closest_axes(volume.direction)
        size_ijk = volume.size_ijk
        size = tuple(int(size_ijk[perm[a]]) for a in range(3))
        spacing = tuple(float(volume.spacing[perm[a]]) for a in range(3))
        aff = volume.affine_lps()
        return cls(perm, flip, size, spacing, aff, np.linalg.inv(aff))  # type: ignore[arg-type]

    def same_as(self, other: CanonicalGrid | None) -> bool:
        return (
            other is not None
            and self.perm == other.perm
            and self.flip == other.flip
            and self.size == other.size
            and np.allclose(self.affine_lps, other.affine_lps, atol=1e-5)
        )

    # ------------------------------------------------------------- arrays
    def view(self, array: np.ndarray) -> np.ndarray:
        """The canonical ``[x, y, z]`` view of a ``(D, H, W)`` = ``[k, j, i]`` array (no copy)."""
        # numpy axis of index axis m is 2 - m
        out = np.transpose(array, (2 - self.perm[0], 2 - self.perm[1], 2 - self.perm[2]))
        flip_axes = tuple(a for a in range(3) if self.flip[a])
        return np.flip(out, axis=flip_axes) if flip_axes else out

    # ------------------------------------------------------------- coordinates
    def canonical_to_ijk(self, c: np.ndarray) -> np.ndarray:
        """Continuous canonical index ``(x, y, z)`` -> continuous ``(i, j, k)``."""
        c = np.asarray(c, dtype=np.float64)
        ijk = np.empty(c.shape, dtype=np.float64)
        for a in range(3):
            m = self.perm[a]
            ijk[..., m] = (self.size[a] - 1 - c[..., a]) if self.flip[a] else c[..., a]
        return ijk

    def ijk_to_canonical(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        c = np.empty(ijk.shape, dtype=np.float64)
        for a in range(3):
            v = ijk[..., self.perm[a]]
            c[..., a] = (self.size[a] - 1 - v) if self.flip[a] else v
        return c

    def lps_to_canonical(self, xyz: np.ndarray) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=np.float64)
        ijk = xyz @ self.inverse_affine[:3, :3].T + self.inverse_affine[:3, 3]
        return self.ijk_to_canonical(ijk)

    def canonical_to_lps(self, c: np.ndarray) -> np.ndarray:
        ijk = self.canonical_to_ijk(c)
        return ijk @ self.affine_lps[:3, :3].T + self.affine_lps[:3, 3]

    def canonical_to_mm(self, c: np.ndarray) -> np.ndarray:
        """Display millimetres: canonical index times canonical spacing (what the views draw in)."""
        return np.asarray(c, dtype=np.float64) * np.asarray(self.spacing)

    def mm_to_canonical(self, mm: np.ndarray) -> np.ndarray:
        return np.asarray(mm, dtype=np.float64) / np.asarray(self.spacing)

    def clamp_index(self, c: np.ndarray) -> tuple[int, int, int]:
        """Nearest voxel of the canonical grid (clipped to the volume)."""
        c = np.rint(np.asarray(c, dtype=np.float64))
        return tuple(int(min(max(c[a], 0), self.size[a] - 1)) for a in range(3))  # type: ignore[return-value]

    def is_oblique(self, volume: Volume, tol_deg: float = 0.5) -> bool:
        """True when the grid is a rotation away from LPS (shown on its own voxel grid)."""
        d = volume.direction
        cos = min(abs(d[a, self.perm[a]]) for a in range(3))
        return bool(cos < np.cos(np.deg2rad(tol_deg)))


def orientation_code(volume: Volume) -> str:
    """Three letters naming where index axes i, j, k point (e.g. 'LPS' for DICOM axial, 'RAS' NIfTI)."""
    pos = "LPS"
    neg = "RAI"
    grid = CanonicalGrid.of(volume)
    letters = [""] * 3
    for a in range(3):
        letters[grid.perm[a]] = neg[a] if grid.flip[a] else pos[a]
    return "".join(letters)
