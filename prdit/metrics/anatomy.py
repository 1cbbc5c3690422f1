"""Set-level summary of the anatomy measures (``prdit.data.anatomy.measure_anatomy``).

For each measure: mean and standard deviation per set, the real set's ``[min, max]``, and the
fraction of generated volumes whose value lies inside that range (NaN counts as outside). A model
that makes bodies without lungs, or lungs on one side only, shows up here even when FID is
computed with a random network. Needs no pretrained weights.
"""

from __future__ import annotations

import math

import numpy as np


def anatomy_keys() -> tuple[str, ...]:
    from prdit.data.anatomy import ANATOMY_KEYS

    return tuple(ANATOMY_KEYS)


def measure_rows(measures: list[dict[str, float]], keys: tuple[str, ...]) -> np.ndarray:
    """``[N, len(keys)]`` float64 array (NaN where a measure is undefined)."""
    return np.array([[float(m.get(k, math.nan)) for k in keys] for m in measures], dtype=np.float64).reshape(
        len(measures), len(keys)
    )


def _stats(col: np.ndarray) -> tuple[float | None, float | None]:
    finite = col[np.isfinite(col)]
    if finite.size == 0:
        return None, None
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0


def summarize_anatomy(real: np.ndarray, fake: np.ndarray, keys: tuple[str, ...]) -> dict[str, dict]:
    """Per-measure summary of ``[N, K]`` real and ``[M, K]`` generated measure rows."""
    out: dict[str, dict] = {}
    for j, key in enumerate(keys):
        r, f = real[:, j], fake[:, j]
        r_fin = r[np.isfinite(r)]
        r_mean, r_std = _stats(r)
        f_mean, f_std = _stats(f)
        if r_fin.size:
            lo, hi = float(r_fin.min()), float(r_fin.max())
            inside = np.isfinite(f) & (f >= lo) & (f <= hi)
            frac = float(inside.mean()) if f.size else None
        else:
            lo = hi = frac = None
        out[key] = {
            "real_mean": r_mean,
            "real_std": r_std,
            "real_min": lo,
            "real_max": hi,
            "fake_mean": f_mean,
            "fake_std": f_std,
            "fake_in_real_range": frac,
            "real_undefined": int((~np.isfinite(r)).sum()),
            "fake_undefined": int((~np.isfinite(f)).sum()),
        }
    return out
