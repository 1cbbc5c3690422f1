"""HU-histogram Wasserstein-1: a model-free check of the intensity distribution, in HU.

Each set's voxels are pooled into one histogram with 1 HU bins over ``[-1024, 3071]`` (the 12-bit
CT range; values outside are clipped into the end bins), accumulated volume by volume so memory
does not depend on the number of volumes. The distance is the 1D earth mover's distance between
the two normalised histograms, ``W1 = sum |CDF_real - CDF_fake| * 1 HU`` (what
``scipy.stats.wasserstein_distance`` computes for weighted bin centres, and used here). In HU:
"on average, how many HU must the generated voxels be moved to match the real ones". It needs no
network, so unlike FID it means the same thing on every machine and in every paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import wasserstein_distance

HU_MIN = -1024
HU_MAX = 3071


@dataclass
class HUHistogram:
    """Streaming histogram of HU values with 1 HU bins over ``[lo, hi]``."""

    lo: int = HU_MIN
    hi: int = HU_MAX
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.hi <= self.lo:
            raise ValueError(f"histogram range needs lo < hi, got [{self.lo}, {self.hi}]")
        if self.counts is None:
            self.counts = np.zeros(self.hi - self.lo + 1, dtype=np.int64)
        elif self.counts.shape != (self.hi - self.lo + 1,):
            raise ValueError(
                f"histogram counts must have {self.hi - self.lo + 1} bins, got {self.counts.shape}"
            )

    def add(self, volume_hu: np.ndarray) -> None:
        """Add every voxel of one volume (rounded to the nearest HU, clipped into range)."""
        v = np.asarray(volume_hu, dtype=np.float32).ravel()
        if not np.all(np.isfinite(v)):
            raise ValueError("HU histogram: the volume contains NaN or infinity")
        idx = np.clip(np.rint(v), self.lo, self.hi).astype(np.int64) - self.lo
        self.counts += np.bincount(idx, minlength=self.counts.size)

    def merge(self, other: HUHistogram) -> HUHistogram:
        if (other.lo, other.hi) != (self.lo, self.hi):
            raise ValueError("cannot merge histograms with different ranges")
        return HUHistogram(self.lo, self.hi, self.counts + other.counts)

    @property
    def centres(self) -> np.ndarray:
        return np.arange(self.lo, self.hi + 1, dtype=np.float64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def mean(self) -> float:
        return float((self.centres * self.counts).sum() / max(self.total, 1))

    def quantiles(self, qs: tuple[float, ...] = (0.01, 0.25, 0.5, 0.75, 0.99)) -> dict[str, float]:
        """HU quantiles of the pooled voxels (bin resolution: 1 HU)."""
        cdf = np.cumsum(self.counts) / max(self.total, 1)
        return {f"q{int(round(q * 100)):02d}": float(self.lo + np.searchsorted(cdf, q)) for q in qs}


def hu_wasserstein(real: HUHistogram, fake: HUHistogram) -> float:
    """Wasserstein-1 distance in HU between two pooled HU histograms."""
    if (real.lo, real.hi) != (fake.lo, fake.hi):
        raise ValueError("HU histograms with different ranges cannot be compared")
    if real.total == 0 or fake.total == 0:
        raise ValueError("HU histogram Wasserstein needs voxels in both sets")
    c = real.centres
    return float(wasserstein_distance(c, c, real.counts.astype(np.float64), fake.counts.astype(np.float64)))
