"""benchmarks/reuse_cost.py's report: the time ratios it prints are the ones the curves imply, for
the EMA weights' and the trained weights' own validation loss, and ``--against`` refuses a stage-3
arm whose branch costs differently per step from the run it borrows the scratch arm and step
times from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _arm(
    folder: Path,
    config: Path,
    sec_per_step: float,
    vals: dict[int, float],
    raw: dict[int, float] | None = None,
    **model,
) -> None:
    """A finished ``prdit train`` run: its config and a metrics.jsonl at a steady step time; the
    trained weights' own validation loss is ``raw`` (default: the same as the EMA's)."""
    folder.mkdir(parents=True)
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["model"].update(model)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    rows = [{"event": "start", "step": 0, "time": 1000.0}]
    for step in range(25, max(vals) + 1, 25):
        rows.append({"step": step, "elapsed_s": step * sec_per_step, "steps_per_s": 1 / sec_per_step})
        if step in vals:
            rows.append({"val_loss": (raw or vals)[step], "val_loss_ema": vals[step], "step": step})
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


STAGE3 = ROOT / "resources" / "configs" / "studio-default-stage3.yaml"
SCRATCH = ROOT / "benchmarks" / "configs" / "scratch-64.yaml"


def test_report_against_an_earlier_run_uses_its_scratch_arm_and_paired_step_times(
    tmp_path, capsys, load_benchmark
):
    rc = load_benchmark("reuse_cost")
    earlier, alone = tmp_path / "earlier", tmp_path / "alone"
    _arm(earlier / "stage3", STAGE3, 0.5, {250: 0.30, 500: 0.20})
    _arm(earlier / "scratch", SCRATCH, 2.0, {250: 0.40, 500: 0.25, 750: 0.15, 1000: 0.10})
    # trained alone, on a quieter machine (0.3 s a step): timed at the earlier run's 0.5 s instead
    _arm(alone / "stage3", STAGE3, 0.3, {250: 0.20, 500: 0.12}, highres_noise="fed")
    result = rc.report(alone, against=earlier)
    assert result["seconds_per_step"]["stage3"] == pytest.approx(0.5)
    assert result["seconds_per_step"]["scratch"] == pytest.approx(2.0)
    assert result["stage3_final"]["val_loss_ema"] == pytest.approx(0.12)
    assert result["scratch_reached"]["step"] == 1000  # first scratch validation at or below 0.12
    levels = {round(r["val_loss_ema"], 2): r for r in result["levels"]}
    assert levels[0.2]["scratch_step"] == 750
    assert levels[0.2]["ratio"] == pytest.approx(250 * 0.5 / (750 * 2.0))
    assert levels[0.12]["ratio"] == pytest.approx(500 * 0.5 / (1000 * 2.0))
    assert "scratch arm and step times from" in capsys.readouterr().out
    assert (alone / "reuse_cost.json").is_file()


def test_report_against_refuses_a_branch_of_another_cost(tmp_path, load_benchmark):
    rc = load_benchmark("reuse_cost")
    earlier, alone = tmp_path / "earlier", tmp_path / "alone"
    _arm(earlier / "stage3", STAGE3, 0.5, {250: 0.30})
    _arm(earlier / "scratch", SCRATCH, 2.0, {250: 0.40})
    _arm(alone / "stage3", STAGE3, 0.5, {250: 0.20}, highres_width=512)
    with pytest.raises(SystemExit, match="costs differently per step"):
        rc.report(alone, against=earlier)
    shutil.rmtree(alone)
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        rc.report(alone, against=earlier)


def test_report_gives_the_raw_loss_ratio_beside_the_ema_one(tmp_path, load_benchmark):
    """The EMA carries the initial weights for as many steps in both arms, which flatters the arm
    with cheaper steps; the trained weights' own loss is compared too, and can tell another story."""
    rc = load_benchmark("reuse_cost")
    run = tmp_path / "run"
    _arm(run / "stage3", STAGE3, 0.5, {250: 0.30, 500: 0.10}, raw={250: 0.08, 500: 0.06})
    _arm(
        run / "scratch",
        SCRATCH,
        2.0,
        {250: 0.40, 500: 0.20, 750: 0.10},
        raw={250: 0.07, 500: 0.05, 750: 0.04},
    )
    result = rc.report(run)
    assert result["scratch_reached"]["step"] == 750  # EMA: 250 x 0.5 s against 750 x 2 s
    assert result["raw"]["stage3_final"]["val_loss"] == pytest.approx(0.06)
    assert result["raw"]["scratch_reached"]["step"] == 500  # first scratch raw loss <= 0.06
    assert result["raw"]["ratio"] == pytest.approx(500 * 0.5 / (500 * 2.0))
    (run / "scratch" / "metrics.jsonl").write_text(
        (run / "scratch" / "metrics.jsonl")
        .read_text()
        .replace('"val_loss": 0.05', '"val_loss": 0.09')
        .replace('"val_loss": 0.04', '"val_loss": 0.08'),
        encoding="utf-8",
    )
    assert rc.report(run)["raw"]["scratch_reached"] is None  # never at 0.06: said, not divided by zero
