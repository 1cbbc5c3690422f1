"""benchmarks/reuse_quality.py: which checkpoints count as having reached the reference model's
sample quality, and how it refuses an --arm it cannot score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _row(arm: str, step: int, fid: float, worst: float) -> dict:
    return {"arm": arm, "step": step, "fid": fid, "worst_inside": worst}


def test_the_reference_is_the_first_arms_last_checkpoint_and_reaching_it_needs_fid_and_anatomy(
    load_benchmark,
):
    rq = load_benchmark("reuse_quality")
    rows = [
        _row("stage3", 1500, 9.0, 0.93),
        _row("stage3", 2000, 8.2, 0.91),  # the reference: stage 3's final model
        _row("scratch", 1500, 51.0, 0.55),  # worse on both
        _row("scratch", 2500, 8.0, 0.80),  # FID as good, but anatomy below the 90 % bar
        _row("scratch", 3000, 8.2, 0.90),  # equal FID, anatomy exactly at the bar: reached
    ]
    ref = rq.mark_reached(rows, "stage3")
    assert (ref["arm"], ref["step"]) == ("stage3", 2000)
    reached = {(r["arm"], r["step"]): r["reached_reference"] for r in rows}
    assert reached == {
        ("stage3", 1500): False,
        ("stage3", 2000): True,
        ("scratch", 1500): False,
        ("scratch", 2500): False,
        ("scratch", 3000): True,
    }


def test_a_missing_reference_arm_or_checkpoint_is_named(tmp_path, load_benchmark):
    rq = load_benchmark("reuse_quality")
    with pytest.raises(SystemExit, match="reference arm 'stage3'"):
        rq.mark_reached([_row("scratch", 1500, 51.0, 0.55)], "stage3")
    (tmp_path / "checkpoints" / "step_0001500").mkdir(parents=True)
    name, run, steps = rq.parse_arm(f"scratch={tmp_path}:1500")
    assert (name, run, steps) == ("scratch", tmp_path, [1500])
    with pytest.raises(SystemExit, match="step_0002000 does not exist"):
        rq.parse_arm(f"scratch={tmp_path}:1500,2000")
    with pytest.raises(SystemExit, match="expected NAME=RUN:STEP"):
        rq.parse_arm("scratch")


def _steady_run(folder: Path, sec_per_step: float) -> None:
    """A metrics.jsonl at a steady step time: all ``--step-times`` reads of a run."""
    folder.mkdir(parents=True)
    rows = [{"event": "start", "step": 0, "time": 1000.0}]
    rows += [
        {"step": s, "elapsed_s": s * sec_per_step, "steps_per_s": 1 / sec_per_step}
        for s in range(25, 501, 25)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_samples_of_other_settings_or_a_step_listed_twice_are_refused_before_any_work(
    tmp_path, load_benchmark
):
    rq = load_benchmark("reuse_quality")
    pair, run, out = tmp_path / "pair", tmp_path / "run", tmp_path / "out"
    _steady_run(pair / "stage3", 0.5)
    _steady_run(pair / "scratch", 2.0)
    (run / "checkpoints" / "step_0000500").mkdir(parents=True)
    arm = f"stage3={run}:500"
    with pytest.raises(SystemExit, match="step 500 is listed twice"):
        rq.main(["--step-times", str(pair), "--arm", arm, "--arm", arm, "--out", str(out)])
    with pytest.raises(SystemExit, match="name must be one of"):
        rq.main(["--step-times", str(pair), "--arm", f"other={run}:500", "--out", str(out)])
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"count": 100, "sampler": "hot", "k": 2, "steps": 50}))
    with pytest.raises(SystemExit, match=r"other settings k 2 \(now 3\)"):
        rq.main(["--step-times", str(pair), "--arm", arm, "--out", str(out), "--k", "3"])
    assert sorted(p.name for p in out.iterdir()) == ["settings.json"]  # nothing sampled or generated
