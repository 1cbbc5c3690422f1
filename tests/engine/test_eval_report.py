"""The eval report: one table for terminal and studio (``table_rows``), and the per-set plot data in
the JSON (histogram counts, per-volume anatomy) that must reproduce the report's own numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from prdit.cli import main
from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
from prdit.data.io import read_volume, write_nifti
from prdit.data.phantom import generate_phantom
from prdit.metrics.report import MetricRow, format_table, format_value, table_rows


def test_table_rows_name_format_and_annotate_each_metric():
    report = {
        "real": {"folder": "/r", "count": 2},
        "fake": {"folder": "/f", "count": 2},
        "metrics": {
            "anatomy": {"value": 0.8, "measures": {}},
            "fid": {"value": 0.0123456789, "value_x1e3": 12.3456789},
            "msssim": {"value": 0.25, "real_mean": None, "fake_pairs": 3},
            "histogram": {"value": float("nan"), "real_mean_hu": -600.04, "fake_mean_hu": -590.26},
            "mmd": {"value": 0.5},  # no gamma: the note cannot be filled, the row stays
        },
    }
    rows = table_rows(report)
    assert [r.key for r in rows] == ["fid", "mmd", "msssim", "histogram", "anatomy"]  # table order
    fid = rows[0]
    assert isinstance(fid, MetricRow) and fid[:3] == (
        "3D FID",
        "0.0123457",
        "lower is better; x1e3 as in the paper: 12.35",
    )
    assert fid.value == 0.0123456789
    assert rows[1].note == "" and rows[1].text == "0.5"
    assert rows[2].note == "lower = more diverse; real pairs n/a (3 pairs)"
    assert rows[3].text == "n/a" and "-600.0" in rows[3].note and "-590.3" in rows[3].note
    assert format_value(None) == "n/a" and format_value(3) == "3" and format_value(1 / 3) == "0.333333"
    # the terminal table prints exactly these rows
    text = format_table(report)
    for r in rows:
        line = next(ln for ln in text.splitlines() if ln.startswith(r.name))
        assert r.text in line and line.rstrip().endswith(r.note.rstrip())
    assert table_rows({"metrics": {}}) == []


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalreport")
    for label, seeds in (("real", range(3)), ("fake", range(300, 303))):
        (root / label).mkdir()
        for s in seeds:
            write_nifti(generate_phantom(s, size=32), root / label / f"{label}_{s:05d}.nii.gz")
    return root


def test_report_carries_the_plot_data_and_it_reproduces_the_metrics(folders, capsys):
    report_path = folders / "report.json"
    code = main(
        [
            "eval",
            str(folders / "real"),
            str(folders / "fake"),
            "--metrics",
            "histogram,anatomy",
            "--report",
            str(report_path),
            "--no-cache",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    hist, anat = report["metrics"]["histogram"], report["metrics"]["anatomy"]

    # Histogram: 1 HU bins from lo, every voxel counted, trimmed to the occupied HU range.
    real_c, fake_c = np.asarray(hist["real_counts"]), np.asarray(hist["fake_counts"])
    assert hist["bin_hu"] == 1 and len(real_c) == len(fake_c) <= 4096
    assert real_c.sum() == fake_c.sum() == 3 * 32**3
    assert (real_c[0] > 0 or fake_c[0] > 0) and (real_c[-1] > 0 or fake_c[-1] > 0)
    centres = hist["lo"] + np.arange(len(real_c))
    assert (centres * real_c).sum() / real_c.sum() == pytest.approx(hist["real_mean_hu"], rel=1e-12)
    assert wasserstein_distance(centres, centres, real_c, fake_c) == pytest.approx(hist["value"], rel=1e-9)
    direct = np.zeros(len(real_c), dtype=np.int64)
    for path in sorted((folders / "real").glob("*.nii.gz")):  # the counts are the voxels themselves
        idx = np.clip(np.rint(read_volume(path).array), -1024, 3071).astype(np.int64) - hist["lo"]
        direct += np.bincount(idx.ravel(), minlength=len(real_c))[: len(real_c)]
    assert np.array_equal(direct, real_c)

    # Anatomy: one value per volume and measure, in sorted file order, consistent with the summary.
    assert set(anat["real_values"]) == set(anat["fake_values"]) == set(ANATOMY_KEYS)
    files = sorted((folders / "fake").glob("*.nii.gz"))
    for key in ANATOMY_KEYS:
        vals = anat["fake_values"][key]
        assert len(vals) == 3
        assert np.mean(vals) == pytest.approx(anat["measures"][key]["fake_mean"], rel=1e-12)
        assert min(anat["real_values"][key]) == pytest.approx(anat["measures"][key]["real_min"], rel=1e-12)
    for i, path in enumerate(files):
        measured = measure_anatomy(read_volume(path))
        assert anat["fake_values"]["lung_fraction"][i] == pytest.approx(measured["lung_fraction"], rel=1e-12)

    # Small for many volumes: the histogram does not grow with N, anatomy adds 2 x 5 numbers per volume.
    assert len(report_path.read_bytes()) < 150_000


def test_fid_carries_its_n_and_a_bootstrap_interval():
    import numpy as np

    from prdit.metrics.fid import fid, fid_bootstrap
    from prdit.metrics.report import table_rows

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 64)), rng.normal(size=(12, 64))
    lo, hi = fid_bootstrap(a, b, rounds=100)
    assert lo < hi and lo <= fid(a, b) * 3  # an interval around the resampled values, not a point
    report = {
        "metrics": {
            "fid": {
                "value": fid(a, b),
                "value_x1e3": 0.0,
                "n_real": 12,
                "n_fake": 12,
                "interval_90": [lo, hi],
            }
        }
    }
    (row,) = table_rows(report)
    assert "N = 12/12, 90 % bootstrap [" in row.note and "compare only at equal N" in row.note
