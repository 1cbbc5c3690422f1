"""Kernel Inception Distance on 3D features: an unbiased estimate, so sets of different sizes compare.

FID's plug-in estimate is biased upwards by an amount that shrinks with the number of samples
(two samples of the same phantom distribution: FID 12.4 at N = 4, 0.91 at N = 24), so FID numbers
compare only at equal N. KID (Binkowski et al., 2018, "Demystifying MMD GANs") is the squared MMD
with the cubic polynomial kernel ``k(a, b) = (a . b / d + 1)^3``, estimated by the unbiased
U-statistic (diagonals of the within-set kernel matrices left out):

    KID = sum_{i != j} k(r_i, r_j) / (n (n - 1)) + sum_{i != j} k(f_i, f_j) / (m (m - 1))
          - 2 sum_{i, j} k(r_i, f_j) / (n m)

Its expectation is the population value for every n, m >= 2, so it is 0 on average for two sets
from one distribution (single estimates can be slightly negative). The spread is reported too:
the standard deviation over ``subsets`` random subsets of ``subset_size`` per set, the usual
way KID's uncertainty is given. Feature matrices here are at most a few thousand rows, so the
kernel matrices are built whole in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KIDResult:
    value: float  # unbiased KID over the full sets
    subset_std: float | None  # std over random subsets (None when the sets are too small)
    subset_size: int
    subsets: int


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _unbiased(krr: np.ndarray, kff: np.ndarray, krf: np.ndarray) -> float:
    n, m = krr.shape[0], kff.shape[0]
    within_r = (krr.sum() - np.trace(krr)) / (n * (n - 1))
    within_f = (kff.sum() - np.trace(kff)) / (m * (m - 1))
    return float(within_r + within_f - 2.0 * krf.mean())


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> KIDResult:
    """Unbiased KID of two ``[N, D]`` feature matrices (N, M >= 2), with its subset spread."""
    r = np.asarray(real, dtype=np.float64)
    f = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"KID needs two [N, D] feature matrices of one width, got {r.shape} and {f.shape}")
    if min(len(r), len(f)) < 2:
        raise ValueError(f"KID needs at least 2 volumes per set, got {len(r)} real and {len(f)} generated")
    krr, kff, krf = _kernel(r, r), _kernel(f, f), _kernel(r, f)
    value = _unbiased(krr, kff, krf)
    size = min(subset_size, len(r), len(f))
    # subsets of the whole set would all be the same draw: use at most half of the smaller set
    size = min(size, max(2, min(len(r), len(f)) // 2))
    if min(len(r), len(f)) < 4 or subsets < 2:
        return KIDResult(value, None, size, 0)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(subsets):
        i = rng.choice(len(r), size, replace=False)
        j = rng.choice(len(f), size, replace=False)
        draws.append(_unbiased(krr[np.ix_(i, i)], kff[np.ix_(j, j)], krf[np.ix_(i, j)]))
    return KIDResult(value, float(np.std(draws, ddof=1)), size, subsets)
