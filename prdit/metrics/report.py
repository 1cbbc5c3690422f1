"""The evaluation report: a terminal table and an atomically written JSON file.

The JSON holds every number plus everything needed to reproduce or judge it: the folders (with a
fingerprint of their files), counts and shapes, the feature extractor's identity and whether its
numbers are comparable with published ones, all settings, software versions and timings. It also
holds the small per-set data the studio plots (HU histogram counts, per-volume anatomy measures),
so a report is enough to redraw them without the volumes.

:func:`table_rows` is the one place that names, formats and annotates the metrics: the terminal
table (:func:`format_table`) and the studio's Evaluate panel both use it, so they show the same text.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from prdit.atomic import write_text_atomic

# (metric key, display name, note template filled from the metric's report entry)
_ROWS = (
    ("fid", "3D FID", "lower is better; x1e3 as in the paper: {value_x1e3:.4g}"),
    ("kid", "3D KID (unbiased)", "lower is better, ~0 for one distribution at any N; x1e3: {value_x1e3:.4g}"),
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


class MetricRow(NamedTuple):
    """One line of the results table; ``name, text, note = row[:3]`` is what is printed."""

    name: str  # e.g. "3D FID"
    text: str  # the value as printed: 6 significant digits, "n/a" when missing
    note: str  # how to read it, with the numbers that go with it
    key: str  # the metric's key in ``report["metrics"]``
    value: float | None  # the value itself (None when missing or not a number)


def format_value(value: Any) -> str:
    """How every number is printed: 6 significant digits, ``n/a`` for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table_rows(report: dict[str, Any]) -> list[MetricRow]:
    """One row per metric present in ``report["metrics"]``, in the fixed table order."""
    metrics = report.get("metrics") or {}
    rows = []
    for key, name, note in _ROWS:
        if key not in metrics:
            continue
        m = dict(metrics[key])
        m.setdefault("real_mean_s", format_value(m.get("real_mean")))
        try:
            note_text = note.format(**m)
        except (KeyError, TypeError, ValueError):
            note_text = ""
        interval = m.get("interval_90")
        if isinstance(interval, list | tuple) and len(interval) == 2 and "n_real" in m:
            note_text += (
                f"; N = {m['n_real']}/{m['n_fake']}, 90 % bootstrap [{interval[0]:.4g}, {interval[1]:.4g}]: "
                "compare only at equal N"
            )
        for warning in m.get("warnings") or ():
            note_text += f"; WARNING: {warning}"
        value = m.get("value")
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        rows.append(MetricRow(name, format_value(value), note_text, key, number))
    return rows


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
    rows = [row[:3] for row in table_rows(report)]
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
            real = f"{format_value(m['real_mean'])} +- {format_value(m['real_std'])}"
            fake = f"{format_value(m['fake_mean'])} +- {format_value(m['fake_std'])}"
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


def _dumps(report: dict[str, Any]) -> str:
    """Indented JSON, except that lists of plain numbers stay on one line: the histogram counts and
    the per-volume values would otherwise take one indented line per number (5x the bytes).

    Such lists are swapped for unique placeholder strings, the rest is dumped indented, and the
    placeholders are replaced by the compact lists (so string values are never touched).
    """
    tag = f"@@prdit-list-{uuid.uuid4().hex}-"
    lists: list[str] = []

    def swap(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: swap(v) for k, v in obj.items()}
        if isinstance(obj, list):
            if obj and all(v is None or (type(v) in (int, float)) for v in obj):  # (bool is not a number)
                lists.append(json.dumps(obj, allow_nan=False, separators=(", ", ": ")))
                return f"{tag}{len(lists) - 1}"
            return [swap(v) for v in obj]
        return obj

    text = json.dumps(swap(report), indent=2, allow_nan=False)
    return re.sub(f'"{re.escape(tag)}(\\d+)"', lambda m: lists[int(m.group(1))], text)


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the report as JSON (temp file in the same folder, then ``os.replace``)."""
    target = Path(path)
    if target.exists() and target.is_dir():
        raise ValueError(f"--report {target} is a folder; give a file name such as {target / 'eval.json'}")
    target.parent.mkdir(parents=True, exist_ok=True)
    plain = json.loads(json.dumps(_clean(report), default=_json_default, allow_nan=False))
    text = _dumps(plain)
    write_text_atomic(target, text + "\n")
    return target


# ---------------------------------------------------------------------------------------------- CSV
ANATOMY_LABELS = {
    "body_fraction": "body",
    "lung_fraction": "lung",
    "soft_tissue_fraction": "soft tissue",
    "bone_fraction": "bone",
    "lung_lr_balance": "lung L/R",
}


@dataclass
class ResultRow:
    key: str
    name: str
    value: float | None
    text: str  # the value as the terminal table prints it
    note: str


def report_rows(report: dict[str, Any]) -> list[ResultRow]:
    """One row per metric in the report, named, formatted and annotated like ``prdit eval``'s table
    (both come from :func:`prdit.metrics.report.table_rows`)."""
    return [ResultRow(r.key, r.name, r.value, r.text, r.note) for r in table_rows(report)]


def anatomy_summary(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return ((report.get("metrics") or {}).get("anatomy") or {}).get("measures") or {}


CSV_FIELDS = (
    "metric", "name", "value", "note", "real_mean", "real_std", "real_min", "real_max",
    "fake_mean", "fake_std", "fake_in_real_range",
)  # fmt: skip


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: one row per metric, then one per anatomy measure (``anatomy:<measure>``).

    Values are written at full precision (``repr``), not as rounded for the screen.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()

    def num(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(v)

    for row in report_rows(report):
        w.writerow({"metric": row.key, "name": row.name, "value": num(row.value), "note": row.note})
    for key, m in anatomy_summary(report).items():
        rec = {"metric": f"anatomy:{key}", "name": ANATOMY_LABELS.get(key, key)}
        rec["value"] = num(m.get("fake_in_real_range"))
        for f in CSV_FIELDS[4:]:
            rec[f] = num(m.get(f))
        w.writerow(rec)
    return buf.getvalue()


def save_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """``.csv`` -> :func:`report_csv`; anything else -> the JSON report (NaN written as null)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return write_text_atomic(p, report_csv(report), newline="")
    return write_report(report, p)


def comparison_warnings(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Why two reports' numbers cannot be compared side by side (empty: they can). FID and MMD
    depend on N (biased at small N), on the feature network and on the protocol; the Evaluate
    panel shows these under a new result when the previous one differs."""
    if not previous:
        return []
    out = []

    def counts(r: dict[str, Any]) -> tuple[Any, Any]:
        return (r.get("real") or {}).get("count"), (r.get("fake") or {}).get("count")

    if counts(previous) != counts(current):
        (pr, pf), (cr, cf) = counts(previous), counts(current)
        out.append(
            f"N differs from the previous result ({pr} real / {pf} generated then, {cr} / {cf} now): "
            "FID and MMD are biased by N, so their change is not the models' difference; compare KID, "
            "or evaluate both at equal N"
        )
    ident = [((r.get("feature_extractor") or {}).get("identity")) for r in (previous, current)]
    if ident[0] != ident[1]:
        out.append(
            "the feature network differs from the previous result: FID, KID and MMD are in other units"
        )
    proto = [((r.get("protocol") or {}).get("name", "prdit")) for r in (previous, current)]
    if proto[0] != proto[1]:
        out.append(f"the protocol differs from the previous result ({proto[0]} then, {proto[1]} now)")
    shapes = [((r.get("real") or {}).get("shape")) for r in (previous, current)]
    if shapes[0] != shapes[1]:
        out.append("the evaluated size differs from the previous result")
    return out
