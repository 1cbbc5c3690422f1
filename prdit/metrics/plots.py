"""The data behind the Evaluate panel's plots: pooled HU histograms and per-volume anatomy measures,
from a report that carries them or by reading both folders again (one volume in memory at a time,
measured exactly as :mod:`prdit.metrics.pipeline` measures them), plus the re-binning and box
statistics the plots draw. Qt-free, so a script can draw the same figures."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

DISPLAY_BIN_HU = 8  # the histogram plot's bin width


@dataclass
class PlotData:
    """Per-set HU histograms (1 HU bins from ``lo``) and per-volume anatomy measures."""

    lo: int
    real_counts: np.ndarray
    fake_counts: np.ndarray
    anatomy_keys: tuple[str, ...]
    real_values: dict[str, list[float]]
    fake_values: dict[str, list[float]]
    source: str = "volumes"  # "volumes" (read again) or "report"


def plot_data_from_report(report: dict[str, Any]) -> PlotData | None:
    """PlotData from a report that carries per-volume data (see the module docstring), else None."""
    metrics = report.get("metrics") or {}
    hist, anat = metrics.get("histogram") or {}, metrics.get("anatomy") or {}
    if not (hist.get("real_counts") and anat.get("real_values")) or int(hist.get("bin_hu", 1)) != 1:
        return None
    keys = tuple(anat["real_values"].keys())
    return PlotData(
        lo=int(hist.get("lo", -1024)),
        real_counts=np.asarray(hist["real_counts"], dtype=np.int64),
        fake_counts=np.asarray(hist["fake_counts"], dtype=np.int64),
        anatomy_keys=keys,
        real_values={k: [float(v) for v in anat["real_values"][k] if v is not None] for k in keys},
        fake_values={k: [float(v) for v in anat["fake_values"].get(k, []) if v is not None] for k in keys},
        source="report",
    )


def compute_plot_data(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    *,
    size: int | None = None,
    real_scale: str = "auto",
    fake_scale: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> PlotData | None:
    """Read both folders once (one volume in memory at a time) for the histogram and anatomy plots.

    Returns None when cancelled. Errors propagate (the caller shows them).
    """
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.metrics.folders import list_volume_files, load_for_eval
    from prdit.metrics.histogram import HUHistogram
    from prdit.metrics.pipeline import anatomy_volume

    sets = [(list_volume_files(real), real_scale), (list_volume_files(fake), fake_scale)]
    total = sum(len(f) for f, _ in sets)
    done = 0
    hists, values = [], []
    for files, scale in sets:
        hist = HUHistogram()
        vals: dict[str, list[float]] = {k: [] for k in ANATOMY_KEYS}
        for i, path in enumerate(files):
            if cancelled and cancelled():
                return None
            lv = load_for_eval(path, i, size=size, scale=scale)
            hist.add(lv.hu.numpy())
            for k, v in measure_anatomy(anatomy_volume(lv)).items():
                if k in vals and math.isfinite(v):
                    vals[k].append(float(v))
            done += 1
            if progress:
                progress(done, total)
        hists.append(hist)
        values.append(vals)
    return PlotData(
        lo=hists[0].lo,
        real_counts=hists[0].counts,
        fake_counts=hists[1].counts,
        anatomy_keys=tuple(ANATOMY_KEYS),
        real_values=values[0],
        fake_values=values[1],
    )


def display_histogram(
    counts: np.ndarray, lo: int, bin_hu: int = DISPLAY_BIN_HU
) -> tuple[np.ndarray, np.ndarray]:
    """Re-bin 1 HU counts to ``bin_hu`` and normalise to a density (per HU): (edges, density)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = int(math.ceil(counts.size / bin_hu))
    padded = np.zeros(n * bin_hu)
    padded[: counts.size] = counts
    coarse = padded.reshape(n, bin_hu).sum(axis=1)
    total = coarse.sum()
    density = coarse / (total * bin_hu) if total > 0 else coarse
    edges = lo - 0.5 + np.arange(n + 1) * bin_hu
    return edges, density


def box_stats(values: list[float]) -> tuple[float, float, float, float, float] | None:
    """(min, q1, median, q3, max) or None for no values."""
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(a.min()), float(q1), float(med), float(q3), float(a.max())
