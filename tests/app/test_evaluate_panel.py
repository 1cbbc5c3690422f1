"""The Evaluate panel runs the real ``prdit eval`` (and ``prdit sample``) as child processes on
small phantom folders: its table must show exactly what ``prdit eval`` prints for the same inputs,
the histogram and anatomy plots must hold the evaluated volumes, the report must save as JSON and
CSV, and a failing run must show its error output and leave the panel idle."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from prdit.metrics.plots import box_stats, compute_plot_data, display_histogram, plot_data_from_report
from prdit.metrics.report import report_csv, report_rows
from prdit_app.panels.evaluate import (
    EvalRequest,
    EvaluatePanel,
    sample_argv,
)

pytestmark = pytest.mark.gui
METRICS = ("mmd", "msssim", "histogram", "anatomy")  # fid/critic: same path, minutes on 2 cores


def _phantoms(folder: Path, seeds, size=32) -> Path:
    from prdit.data.io import write_nifti
    from prdit.data.phantom import generate_phantom

    folder.mkdir(parents=True)
    for s in seeds:
        write_nifti(generate_phantom(s, size=size), folder / f"phantom_{s:05d}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return _phantoms(root / "real", range(4)), _phantoms(root / "fake", range(100, 104))


@pytest.fixture
def panel(qtbot, tmp_path):
    p = EvaluatePanel(work_dir=tmp_path / "work")
    p.cache_dir = str(tmp_path / "cache")
    qtbot.addWidget(p)
    yield p
    p.shutdown()


# ------------------------------------------------------------------ helpers without a process
def test_progress_lines_move_the_bar_and_other_lines_go_to_the_log(qtbot):
    from prdit.run_log import progress_line

    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    panel._on_line(progress_line("real volumes", 2, 4), "stdout", False)
    assert (panel.stage_label.text(), panel.progress.value(), panel.progress.maximum()) == (
        "real volumes",
        2,
        4,
    )
    panel._on_line("real volumes:  50%|#####     | 2/4 [00:01<00:01]", "stderr", False)  # no bar scraping
    assert panel.progress.value() == 2 and "50%" in panel.log_view.plain_text()
    assert progress_line("real volumes", 2, 4) not in panel.log_view.plain_text()


def test_eval_and_sample_commands(tmp_path):
    r = EvalRequest("/r", "/f", str(tmp_path / "rep.json"), ("fid", "anatomy"), size=64, cache_dir="/c")
    argv = r.argv()
    assert argv[1:6] == ["-m", "prdit", "eval", "/r", "/f"]
    joined = " ".join(argv)
    assert "--metrics fid,anatomy" in joined and "--size 64" in joined and "--cache-dir /c" in joined
    s = " ".join(sample_argv("/m", "/o", 3, 20, device="cpu"))
    assert "sample /m --count 3 --steps 20" in s and "--out /o" in s and "--no-preview" in s


def test_report_rows_csv_and_per_volume_data_from_a_report():
    report = {
        "metrics": {
            "mmd": {"value": 0.123456789, "gamma": 0.5},
            "histogram": {"value": 12.5, "real_mean_hu": -600.0, "fake_mean_hu": -590.25,
                          "lo": -1024, "real_counts": [0, 2, 1], "fake_counts": [1, 1, 1]},
            "anatomy": {"value": 0.5, "measures": {"lung_fraction": {
                "real_mean": 0.2, "real_std": 0.01, "real_min": 0.19, "real_max": 0.21, "fake_mean": 0.3,
                "fake_std": None, "fake_in_real_range": 0.5}},
                "real_values": {"lung_fraction": [0.19, 0.21]},
                "fake_values": {"lung_fraction": [0.2, None]}},
        }
    }  # fmt: skip
    rows = report_rows(report)
    assert [r.key for r in rows] == ["mmd", "histogram", "anatomy"]
    assert rows[0].text == "0.123457" and rows[0].value == 0.123456789
    assert "gamma 0.5" in rows[0].note and "-590.2" in rows[1].note
    table = list(csv.DictReader(report_csv(report).splitlines()))
    assert table[0]["metric"] == "mmd" and float(table[0]["value"]) == 0.123456789  # full precision
    assert table[-1]["metric"] == "anatomy:lung_fraction" and table[-1]["fake_std"] == ""
    data = plot_data_from_report(report)
    assert data.source == "report" and data.fake_values["lung_fraction"] == [0.2]
    assert plot_data_from_report({"metrics": {"mmd": {"value": 1.0}}}) is None


def test_display_histogram_is_a_density_and_box_stats():
    counts = np.zeros(4096, dtype=np.int64)
    counts[100:116] = 5
    edges, dens = display_histogram(counts, -1024, bin_hu=8)
    assert len(edges) == len(dens) + 1 and edges[0] == -1024.5
    assert np.isclose((dens * 8).sum(), 1.0)
    assert box_stats([]) is None
    assert box_stats([1.0, 2.0, 3.0, 4.0, 5.0]) == (1.0, 2.0, 3.0, 4.0, 5.0)


def test_form_errors_name_the_field(panel, tmp_path):
    assert not panel.start()
    assert "Real" in panel.error_label.text()
    panel.real_edit.setText(str(tmp_path / "nope"))
    assert not panel.start() and "is not a folder" in panel.error_label.text()
    panel.real_edit.setText(str(tmp_path))
    panel.gen_radio.setChecked(True)
    assert not panel.start() and "Model" in panel.error_label.text()
    panel.current_model = lambda: tmp_path / "model"
    panel.set_metrics([])
    assert not panel.run_button.isEnabled()


# ------------------------------------------------------------------ real runs
def _cli_table(real: Path, fake: Path, capsys) -> dict[str, str]:
    from prdit.cli import main

    argv = ["eval", str(real), str(fake), "--metrics", ",".join(METRICS), "--no-cache", "--no-progress"]
    rc = main([*argv, "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    values, in_table = {}, False
    for line in out.splitlines():
        if line.startswith("----"):
            in_table = True
            continue
        if in_table:
            if not line.strip():
                break
            m = re.match(r"^(.*?\S)\s{2,}(\S+)\s{2}", line + "  ")
            values[m.group(1)] = m.group(2)
    return values


def test_evaluation_fills_the_table_with_the_cli_numbers(qtbot, panel, folders, tmp_path, capsys):
    real, fake = folders
    panel.real_edit.setText(str(real))
    panel.fake_edit.setText(str(fake))
    panel.set_metrics(METRICS)
    panel.device_combo.setCurrentText("cpu")
    panel.pairs_spin.setValue(100)
    assert panel.start(), panel.error_label.text()
    assert panel.running and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)
    assert panel.last_outcome.ok, panel.log_view.plain_text()
    assert panel.status_label.text() == "Done: 4 metrics"
    shown = {
        panel.table.item(i, 0).text(): panel.table.item(i, 1).text() for i in range(panel.table.rowCount())
    }
    assert len(shown) == 4
    # The same inputs through `prdit eval` in this process: the very numbers the panel shows.
    assert shown == _cli_table(real, fake, capsys)
    assert panel.anatomy_table.rowCount() == 5
    # Plots: drawn from the per-volume data in the report, no volume is read again ...
    assert panel.plot_data is not None and panel.plot_data.source == "report"
    assert not panel.plots_pending
    d = panel.plot_data
    assert d.real_counts.sum() == 4 * 32**3 and d.fake_counts.sum() == 4 * 32**3
    # ... and they are what reading the volumes again gives (the old path, kept for old reports).
    again = compute_plot_data(real, fake)
    for mine, theirs in ((d.real_counts, again.real_counts), (d.fake_counts, again.fake_counts)):
        assert np.array_equal(mine, theirs[d.lo - again.lo : d.lo - again.lo + len(mine)])
        assert mine.sum() == theirs.sum()
    for key in d.anatomy_keys:
        assert np.allclose(d.real_values[key], again.real_values[key], rtol=1e-12)
        assert np.allclose(d.fake_values[key], again.fake_values[key], rtol=1e-12)
    rep_anat = panel.report["metrics"]["anatomy"]["measures"]
    for key in ("body_fraction", "lung_fraction", "bone_fraction"):
        assert np.isclose(np.mean(d.real_values[key]), rep_anat[key]["real_mean"], rtol=1e-9)
        assert np.isclose(np.mean(d.fake_values[key]), rep_anat[key]["fake_mean"], rtol=1e-9)
    x, y = panel.hist_real.getData()
    assert len(x) == len(y) + 1 and y.max() > 0
    assert panel.report["metrics"]["histogram"]["real_mean_hu"] == pytest.approx(
        float((np.arange(d.lo, d.lo + d.real_counts.size) * d.real_counts).sum() / d.real_counts.sum())
    )
    # Save: JSON is the report, CSV one row per metric and anatomy measure.
    j = panel.save_report(tmp_path / "out" / "r.json")
    assert (
        json.loads(j.read_text(encoding="utf-8"))["metrics"]["mmd"]["value"]
        == panel.report["metrics"]["mmd"]["value"]
    )
    rows = list(
        csv.DictReader(
            (panel.save_report(tmp_path / "out" / "r.csv")).read_text(encoding="utf-8").splitlines()
        )
    )
    assert [r["metric"] for r in rows][:4] == list(METRICS)
    assert len(rows) == 4 + 5
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_generate_now_then_evaluate(qtbot, panel, folders, tmp_path):
    """'Generate N now' runs `prdit sample` with the current model, then evaluates its output."""
    import torch

    from prdit.checkpoint import save_checkpoint
    from prdit.models import build_model

    torch.manual_seed(0)
    model = build_model("PRDiT-XS/4/0", input_size=16)
    with torch.no_grad():  # an untrained model predicts exactly 0 (zero-initialised heads): 0 HU
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    meta = {"stage": 1, "model_name": "PRDiT-XS/4/0", "input_size": 16, "spacing": [2.0, 2.0, 2.0],
            "hu_window": {"low": -1000.0, "high": 1000.0, "mode": "window"}}  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints", 1, model_state=model.state_dict(),
                           ema_state=model.state_dict(), optimizer_state=None, meta=meta)  # fmt: skip
    real = _phantoms(tmp_path / "real16", range(2), size=16)
    panel.current_model = lambda: ckpt
    panel.real_edit.setText(str(real))
    panel.gen_radio.setChecked(True)
    panel.count_spin.setValue(2)
    panel.gen_steps_spin.setValue(3)
    panel.device_combo.setCurrentText("cpu")
    panel.set_metrics(["histogram", "anatomy"])
    assert panel.start(), panel.error_label.text()
    assert panel.model_edit.text() == str(ckpt)
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)  # sample, then eval: one busy period
    assert panel.last_outcome.ok, panel.log_view.plain_text()
    out = Path(panel.gen_out_edit.text())
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["sample_00000.nii.gz", "sample_00001.nii.gz"]
    assert panel.report["fake"]["folder"] == str(out) and panel.report["fake"]["count"] == 2
    assert panel.fake_edit.text() == str(out)
    assert [panel.table.item(i, 0).text() for i in range(panel.table.rowCount())] == [
        "HU histogram Wasserstein-1", "Anatomy in real range"]  # fmt: skip
    log = panel.log_view.plain_text()
    assert "prdit sample" in log and "prdit eval" in log


def test_failing_run_shows_the_error_and_returns_to_idle(qtbot, panel, folders, tmp_path):
    real, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no volumes here", encoding="utf-8")
    panel.real_edit.setText(str(real))
    panel.fake_edit.setText(str(empty))
    panel.set_metrics(["histogram"])
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    outcome = panel.last_outcome
    assert not outcome.ok and outcome.exit_code == 2
    assert "no volume files found" in outcome.error
    assert "no volume files found" in panel.error_label.text()
    assert "no volume files found" in panel.log_view.plain_text()
    assert panel.status_label.text() == "Failed"
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.report is None and panel.table.rowCount() == 0


def test_a_result_made_at_another_n_is_flagged_as_not_comparable(panel):
    def report(n_real, n_fake, identity="default:x", protocol="prdit"):
        return {
            "metrics": {"fid": {"value": 1.0, "n_real": n_real, "n_fake": n_fake, "interval_90": [0.5, 2.0]}},
            "real": {"folder": "r", "count": n_real, "shape": [32, 32, 32]},
            "fake": {"folder": "f", "count": n_fake, "shape": [32, 32, 32]},
            "feature_extractor": {"identity": identity},
            "protocol": {"name": protocol},
        }

    panel.show_report(report(8, 8))
    assert panel.comparison_notes == []
    panel.show_report(report(8, 8))  # the same N, network and protocol: nothing to say
    assert panel.comparison_notes == []
    panel.show_report(report(16, 16))
    assert len(panel.comparison_notes) == 1 and "N differs" in panel.comparison_notes[0]
    assert (
        "NOT COMPARABLE: N differs" in panel.info_label.text()
        and "8 generated then" in panel.info_label.text()
    )
    panel.show_report(report(16, 16, identity="medicalnet:abc", protocol="published-lidc"))
    text = " ".join(panel.comparison_notes)
    assert "feature network differs" in text and "protocol differs" in text and "N differs" not in text
