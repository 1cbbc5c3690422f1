"""Maximum mean discrepancy with an RBF kernel, exactly as the paper reports it, in bounded memory.

Published recipe (reference ``evaluations/mmd.py``):

* ``k(a, b) = exp(-gamma * |a - b|^2)`` on float64 features;
* ``gamma = 1 / (2 * median(D))`` where ``D`` is the full ``N x N`` matrix of real-real squared
  distances *including its zero diagonal*, and the median is the lower median (``torch.median``);
* the biased estimator ``MMD^2 = mean(K_rr) + mean(K_ff) - 2 mean(K_rf)`` (all entries, diagonals
  included);
* reported as ``sqrt(max(MMD^2, 0))``.

The reference builds an ``N x N x 2048`` difference tensor for the median (16 GB at N = 1000).
Here every matrix is produced in row blocks of ``chunk`` rows: peak memory is
``O(chunk * max(N, M))`` for the kernel sums plus ``N (N - 1) / 2`` float64 values for the exact
median (N = 2000: 16 MB; see docs/benchmarks.md "Metrics"). The median uses the symmetry of ``D``:
its ``N^2`` entries are the ``N`` zeros plus every off-diagonal value twice, so the lower median of
the full matrix is an order statistic of the upper triangle, found with ``np.partition``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class MMDResult:
    mmd: float  # sqrt(max(mmd2, 0)): the number the paper reports
    mmd2: float  # biased (V-statistic) MMD^2: >= 0 in exact arithmetic, round-off can give -1e-17
    gamma: float  # RBF gamma from the median heuristic
    median_sq_distance: float


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"MMD needs [N, D] features, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("MMD: the features contain NaN or infinity")
    return t.to(device=device, dtype=torch.float64)


def _sq_dist_blocks(x: torch.Tensor, y: torch.Tensor, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(row0, |x[row0:row0+chunk] - y|^2)`` blocks, via the norm expansion, clamped at 0."""
    y_norm = (y * y).sum(dim=1)
    for row0 in range(0, x.shape[0], chunk):
        xb = x[row0 : row0 + chunk]
        d = (xb * xb).sum(dim=1, keepdim=True) + y_norm.unsqueeze(0) - 2.0 * (xb @ y.T)
        yield row0, d.clamp_min_(0.0)


def median_sq_distance(x: np.ndarray | torch.Tensor, chunk: int = DEFAULT_CHUNK) -> float:
    """Lower median of the full ``N x N`` squared-distance matrix of ``x`` (zero diagonal included)."""
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    xt = _as_tensor(x, device)
    n = xt.shape[0]
    if n < 2:
        raise ValueError("MMD's median heuristic needs at least 2 real feature vectors")
    upper = np.empty(n * (n - 1) // 2, dtype=np.float64)
    pos = 0
    for row0, block in _sq_dist_blocks(xt, xt, chunk):
        block = block.cpu().numpy()
        for r in range(block.shape[0]):
            i = row0 + r
            vals = block[r, i + 1 :]
            upper[pos : pos + vals.size] = vals
            pos += vals.size
    # Sorted full matrix = [0] * n followed by each off-diagonal value twice (all values >= 0).
    k = (n * n - 1) // 2  # index of torch.median's lower median in the sorted N^2 entries
    if k < n:
        return 0.0
    j = (k - n) // 2
    return float(np.partition(upper, j)[j])


def _kernel_mean(x: torch.Tensor, y: torch.Tensor, gamma: float, chunk: int) -> float:
    total = 0.0
    for _, d in _sq_dist_blocks(x, y, chunk):
        total += float(torch.exp(d.mul_(-gamma)).sum())
    return total / (x.shape[0] * y.shape[0])


def mmd_rbf(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    *,
    chunk: int = DEFAULT_CHUNK,
    gamma: float | None = None,
    device: str | torch.device | None = None,
) -> MMDResult:
    """Published MMD between real and generated features (``[N, D]`` and ``[M, D]``).

    ``gamma`` defaults to the median heuristic on ``real``; pass it to reuse one bandwidth across
    several comparisons. ``device`` (default: CPU) may be a CUDA device for large sets.
    """
    if chunk < 1:
        raise ValueError(f"MMD chunk must be >= 1, got {chunk}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = _as_tensor(real, dev)
    y = _as_tensor(fake, dev)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD: feature sizes differ ({x.shape[1]} vs {y.shape[1]})")
    if y.shape[0] < 1:
        raise ValueError("MMD needs at least one generated feature vector")
    med = median_sq_distance(x, chunk)
    if gamma is None:
        if med <= 0.0:
            raise ValueError(
                "MMD: the median real-real squared distance is 0 (real features are mostly identical)"
            )
        gamma = 1.0 / (2.0 * med)
    mmd2 = (
        _kernel_mean(x, x, gamma, chunk)
        + _kernel_mean(y, y, gamma, chunk)
        - 2.0 * _kernel_mean(x, y, gamma, chunk)
    )
    return MMDResult(
        mmd=float(np.sqrt(max(mmd2, 0.0))), mmd2=float(mmd2), gamma=float(gamma), median_sq_distance=med
    )
