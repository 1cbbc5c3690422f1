"""The evaluation report: a terminal table and an atomically written JSON file.

The JSON holds every number plus everything needed to reproduce or judge it: the folders (with a
fingerprint of their files), counts and shapes, the feature extractor's identity and whether its
numbers are comparable with published ones, all settings, software versions and timings.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

_ROWS = (
    ("fid", "3D FID", "lower is better; x1e3 as in the paper: {value_x1e3:.4g}"),
    ("mmd", "MMD (RBF, median heuristic)", "lower is better; gamma {gamma:.3g}"),
    (
        "msssim",
        "MS-SSIM generated pairs",
        "lower = more diverse; real pairs {real_mean_s} ({fake_pairs} pairs)",
    ),
    (
        "critic",
        "Wasserstein (WGAN-GP critic)",
        "held out; ~0 when indistinguishable; train {train_estimate:.4g}",
    ),
    (
        "histogram",
        "HU histogram Wasserstein-1",
        "HU; mean HU real {real_mean_hu:.1f} / generated {fake_mean_hu:.1f}",
    ),
    ("anatomy", "Anatomy in real range", "mean over measures of the fraction of generated volumes inside"),
)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(report: dict[str, Any]) -> str:
    """A plain-text summary: one line per metric, then the anatomy measures, then notes."""
    metrics = report["metrics"]
    lines = [
        f"real: {report['real']['folder']} ({report['real']['count']} volumes)",
        f"generated: {report['fake']['folder']} ({report['fake']['count']} volumes)",
    ]
    shape = report["real"].get("shape")
    if shape:
        resampled = " (resampled)" if report["real"].get("resampled_to") else ""
        lines.append(f"shape: {'x'.join(map(str, shape))}{resampled}")
    fx = report.get("feature_extractor")
    if fx:
        lines.append(f"features: {fx['description']}")
    lines.append("")
    rows = []
    for key, name, note in _ROWS:
        if key not in metrics:
            continue
        m = dict(metrics[key])
        m.setdefault("real_mean_s", _fmt(m.get("real_mean")))
        try:
            note_text = note.format(**m)
        except (KeyError, TypeError, ValueError):
            note_text = ""
        rows.append((name, _fmt(m.get("value")), note_text))
    w0 = max((len(r[0]) for r in rows), default=10)
    w1 = max((len(r[1]) for r in rows), default=5)
    lines.append(f"{'metric'.ljust(w0)}  {'value'.rjust(w1)}  note")
    lines.append(f"{'-' * w0}  {'-' * w1}  ----")
    lines += [f"{a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows]
    if "anatomy" in metrics:
        lines.append("")
        lines.append(
            "anatomy measure          real mean+-sd        generated mean+-sd   generated in real range"
        )
        for key, m in metrics["anatomy"]["measures"].items():
            real = f"{_fmt(m['real_mean'])} +- {_fmt(m['real_std'])}"
            fake = f"{_fmt(m['fake_mean'])} +- {_fmt(m['fake_std'])}"
            frac = "n/a" if m["fake_in_real_range"] is None else f"{100 * m['fake_in_real_range']:.0f}%"
            lines.append(f"{key:<24} {real:<20} {fake:<20} {frac}")
    for note in report.get("notes", []):
        lines.append("")
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the report as JSON (temp file in the same folder, then ``os.replace``)."""
    target = Path(path)
    if target.exists() and target.is_dir():
        raise ValueError(f"--report {target} is a folder; give a file name such as {target / 'eval.json'}")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(report), indent=2, default=_json_default, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
