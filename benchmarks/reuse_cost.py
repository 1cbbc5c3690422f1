"""What the paper's third step saves: stage-3 reuse against training the same size from scratch.

PRDiT's claim to scale (spec section 5) is that a high resolution costs far less when a trained
low-resolution model is kept frozen and only a full-resolution residual branch is trained. This
benchmark measures it at the bundled model's scale, in one run, on one machine:

* arm **stage3**: ``resources/configs/studio-default-stage3.yaml``, the shipped 64^3 model's own
  preset (the frozen 32^3 ``fast-32`` model plus a narrow patch-10 residual branch);
* arm **scratch**: ``benchmarks/configs/scratch-64.yaml``, the base's variant PRDiT-XS/10/2
  trained at 64^3 with every parameter from random weights, on the same phantoms, batch, learning
  rate, EMA and the same 32 fixed validation volumes with fixed t and noise.

Both arms are ``prdit train`` processes started together, each with ``--threads`` torch threads,
so they share whatever load the machine has; the ratio of their step times is what compares.
The report reads both runs' ``metrics.jsonl``:

* seconds per training step of each arm while both were running;
* the EMA validation loss against steps and against time;
* the time stage 3 needs to reach its final validation loss, and the time the scratch arm needs
  to reach the same loss (or that it had not reached it when it stopped). Times are given as
  measured (wall clock) and as steps x the arm's step time while both ran, which does not flatter
  an arm that ran on alone on a quieter machine.
* the same for the trained weights' own (raw) validation loss. The EMA weights start as the
  initial weights and forget them in the same number of steps in both arms, so for most of a
  short run the EMA curves compare step times rather than learning; the raw loss is noisier but
  has no such lag. ``reuse_quality.py`` asks the question in samples instead of losses.

    python benchmarks/reuse_cost.py --out runs/reuse-cost              # run both arms, then report
    python benchmarks/reuse_cost.py --out runs/reuse-cost --report     # report on finished runs
    python benchmarks/reuse_cost.py --out runs/reuse-cost-fed --report --against runs/reuse-cost-implied
        # a stage-3 arm trained alone (runs/reuse-cost-fed/stage3) against an earlier run's scratch arm

``--stage3-config FILE`` measures another stage-3 preset against the same scratch arm (e.g.
``benchmarks/configs/stage3-implied-64.yaml``). ``--scratch-factor F`` stops the scratch arm
(``STOP`` file: it checkpoints and exits) once it has trained F times as long as stage 3 took, or
once it reaches stage 3's final loss. Results for the bundled model are in docs/bundled-model.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARMS = {
    "stage3": ROOT / "resources" / "configs" / "studio-default-stage3.yaml",
    "scratch": ROOT / "benchmarks" / "configs" / "scratch-64.yaml",
}


def read_curve(run: Path) -> dict:
    """Step timings and the (step, seconds, val loss) curves of one run's ``metrics.jsonl``: the EMA
    weights' (``curve``) and the trained weights' own (``raw_curve``)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no metrics.jsonl (has this arm been started?)")
    elapsed: dict[int, float] = {}
    rates: list[tuple[int, float, float]] = []  # (step, time, steps_per_s)
    vals: list[tuple[int, float]] = []
    raw: list[tuple[int, float]] = []
    start = finished = None
    offset = last = 0.0  # a resumed run restarts elapsed_s: continue its clock where the last one ended
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("event") == "start":
            start = float(row["time"]) if start is None else start
            offset = last
        if row.get("event") == "finished":
            finished = int(row["step"])
        if "elapsed_s" in row:
            last = offset + float(row["elapsed_s"])
            elapsed[int(row["step"])] = last
            rates.append((int(row["step"]), last, float(row["steps_per_s"])))
        if "val_loss_ema" in row:
            vals.append((int(row["step"]), float(row["val_loss_ema"])))
            raw.append((int(row["step"]), float(row["val_loss"])))
    curve = [(s, elapsed.get(s), v) for s, v in vals]
    raw_curve = [(s, elapsed.get(s), v) for s, v in raw]
    return {"start": start, "rates": rates, "curve": curve, "raw_curve": raw_curve, "finished": finished}


def step_time(rates: list[tuple[int, float, float]], until: float | None) -> float:
    """Median seconds per step over the logged intervals that ended before ``until`` (elapsed s)."""
    pts = [(s, t) for s, t, _ in rates if until is None or t <= until]
    gaps = sorted((t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(pts, pts[1:], strict=False) if s1 > s0)
    if not gaps:
        raise SystemExit("too few logged steps to time")
    return gaps[len(gaps) // 2]


def first_reaching(curve: list[tuple[int, float | None, float]], loss: float) -> tuple[int, float] | None:
    for step, secs, val in curve:
        if val <= loss and secs is not None:
            return step, secs
    return None


def paired_step_times(a: dict, b: dict) -> tuple[float, float]:
    """Seconds per step of one run's stage-3 and scratch arms (``read_curve``) while both ran."""
    # the window in which both ran: up to the end of the shorter-lived arm, in each arm's own clock
    a_end = a["rates"][-1][1]
    offset = (b["start"] or 0.0) - (a["start"] or 0.0)  # scratch started this many s after stage 3
    return step_time(a["rates"], None), step_time(b["rates"], a_end - offset)


def branch_geometry(run: Path) -> dict:
    """What sets a stage-3 arm's cost per step: variant, sizes, branch patch and width, batch."""
    from prdit.config import load_config

    cfg = load_config(run / "config.yaml")
    m = cfg.model
    return {
        "name": m.name,
        "base_size": m.base_size,
        "input_size": m.input_size,
        "highres_patch": m.highres_patch,
        "highres_width": m.highres_width,
        "batch_size": cfg.train.batch_size,
    }


def report(out: Path, against: Path | None = None) -> dict:
    """Compare ``out``'s stage-3 arm with the scratch arm of ``against`` (default ``out``).

    With ``against``, the stage-3 arm trained alone is timed at the step time ``against``'s own
    stage-3 arm had while its scratch arm ran beside it: valid only for a branch of the same cost
    (checked: same variant, sizes, patch, width and batch; the noise fusion is a few element-wise
    operations). The scratch arm is exactly reproducible, so its curve does not depend on the run.
    """
    a, b = read_curve(out / "stage3"), read_curve((against or out) / "scratch")
    if not a["curve"] or not b["curve"]:
        raise SystemExit("both arms need at least one validation")
    if against is not None:
        mine, theirs = branch_geometry(out / "stage3"), branch_geometry(against / "stage3")
        if mine != theirs:
            raise SystemExit(
                f"--against {against}: its stage-3 arm costs differently per step ({theirs}) from "
                f"{out / 'stage3'} ({mine}); run both arms together instead"
            )
        print(f"scratch arm and step times from {against} (its arms ran together); stage-3 curve from {out}")
    sec_a, sec_b = paired_step_times(read_curve(against / "stage3") if against else a, b)
    final_step, final_secs, final_loss = a["curve"][-1]
    reach_a = first_reaching(a["curve"], final_loss)
    reach_b = first_reaching(b["curve"], final_loss)
    result = {
        "seconds_per_step": {"stage3": sec_a, "scratch": sec_b, "ratio_scratch_over_stage3": sec_b / sec_a},
        "stage3_final": {"step": final_step, "elapsed_s": final_secs, "val_loss_ema": final_loss},
        "stage3_first_at_final_loss": {"step": reach_a[0], "elapsed_s": reach_a[1]} if reach_a else None,
        "scratch_reached": (
            {"step": reach_b[0], "elapsed_s": reach_b[1], "normalised_s": reach_b[0] * sec_b}
            if reach_b
            else None
        ),
        "scratch_last": {
            "step": b["curve"][-1][0],
            "elapsed_s": b["curve"][-1][1],
            "val_loss_ema": b["curve"][-1][2],
        },
        "curves": {"stage3": a["curve"], "scratch": b["curve"]},
    }
    t_a = final_step * sec_a
    last = result["scratch_last"]
    print(
        f"seconds per step (batch 8, while both ran): stage 3 {sec_a:.3f}, scratch {sec_b:.3f} "
        f"(x{sec_b / sec_a:.2f})"
    )
    print(
        f"stage 3: final EMA val loss {final_loss:.4f} at step {final_step} "
        f"({final_secs / 60:.1f} min wall, {t_a / 60:.1f} min at its step time)"
    )
    if reach_b:
        print(
            f"scratch reached {final_loss:.4f} at step {reach_b[0]} ({reach_b[1] / 60:.1f} min wall, "
            f"{reach_b[0] * sec_b / 60:.1f} min at its step time): stage 3 took "
            f"{t_a / (reach_b[0] * sec_b):.2f}x its time"
        )
    else:
        print(
            f"scratch had not reached {final_loss:.4f} when it stopped: "
            f"EMA val loss {last['val_loss_ema']:.4f} "
            f"at step {last['step']} ({(last['elapsed_s'] or 0) / 60:.1f} min wall, "
            f"{last['step'] * sec_b / 60:.1f} min at its step time = "
            f"{last['step'] * sec_b / t_a:.2f}x stage 3's time)"
        )
    # The EMA weights start as the initial weights and forget them at the same rate, in steps, in
    # both arms; stage 3's steps are cheaper, so early on the EMA curve reads as the step-time ratio
    # whatever the arms learn. The trained weights' own loss has no such lag (but is noisier).
    raw_step, _raw_secs, raw_loss = a["raw_curve"][-1]
    raw_hit = first_reaching(b["raw_curve"], raw_loss)
    result["raw"] = {
        "stage3_final": {"step": raw_step, "val_loss": raw_loss},
        "scratch_reached": {"step": raw_hit[0], "normalised_s": raw_hit[0] * sec_b} if raw_hit else None,
        "ratio": t_a / (raw_hit[0] * sec_b) if raw_hit else None,
        "curves": {"stage3": a["raw_curve"], "scratch": b["raw_curve"]},
    }
    if raw_hit:
        print(
            f"raw (not EMA) val loss: stage 3 ends at {raw_loss:.4f}; scratch first at or below it at step "
            f"{raw_hit[0]} ({raw_hit[0] * sec_b / 60:.1f} min at its step time): stage 3 took "
            f"{result['raw']['ratio']:.2f}x its time"
        )
    else:
        print(f"raw (not EMA) val loss: stage 3 ends at {raw_loss:.4f}; scratch never got there")
    # the same question at every loss stage 3 passed through: how long each arm needed to get there
    levels = []
    for step, _secs, val in a["curve"]:
        hit = first_reaching(b["curve"], val)
        levels.append(
            {
                "val_loss_ema": val,
                "stage3_step": step,
                "scratch_step": hit[0] if hit else None,
                "ratio": (step * sec_a) / (hit[0] * sec_b) if hit else None,
            }
        )
    result["levels"] = levels
    print("\nEMA val loss  stage 3 step  scratch step  time ratio (step times while both ran)")
    for row in levels:
        if row["scratch_step"] is None:
            bound = row["stage3_step"] * sec_a / (last["step"] * sec_b)
            never = f"not by {last['step']} (ratio < {bound:.2f})"
            print(f"{row['val_loss_ema']:.4f}        {row['stage3_step']:5d}         {never}")
        else:
            print(
                f"{row['val_loss_ema']:.4f}        {row['stage3_step']:5d}         {row['scratch_step']:5d}"
                f"         {row['ratio']:.2f}"
            )
    print("\nstep  stage3_val_ema  scratch_val_ema  stage3_val_raw  scratch_val_raw")
    bmap = {s: v for s, _, v in b["curve"]}
    a_raw = {s: v for s, _, v in a["raw_curve"]}
    b_raw = {s: v for s, _, v in b["raw_curve"]}
    for s, _, v in a["curve"]:
        other = f"{bmap[s]:.4f}" if s in bmap else "-     "
        other_raw = f"{b_raw[s]:.4f}" if s in b_raw else "-"
        print(f"{s:5d}  {v:.4f}          {other}           {a_raw[s]:.4f}          {other_raw}")
    (out / "reuse_cost.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def run(out: Path, threads: int, scratch_factor: float, overrides: list[str], arms: dict[str, Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    procs = {}
    for name, config in arms.items():
        cmd = [
            sys.executable,
            "-m",
            "prdit",
            "train",
            str(config),
            "--out",
            str(out / name),
            "--set",
            f"train.threads={threads}",
            "--no-progress",
        ]
        for o in overrides:
            cmd += ["--set", o]
        log = (out / f"{name}.log").open("w", encoding="utf-8")
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        print(f"started {name}: {' '.join(cmd)}", flush=True)
    a_secs = None
    while any(p.poll() is None for p in procs.values()):
        time.sleep(30)
        if procs["stage3"].poll() is not None and a_secs is None:
            if procs["stage3"].returncode:
                raise SystemExit(
                    f"stage-3 arm failed (exit {procs['stage3'].returncode}); see {out}/stage3.log"
                )
            a_secs = read_curve(out / "stage3")["curve"][-1][1]
        if a_secs is not None and procs["scratch"].poll() is None:
            b = read_curve(out / "scratch")
            target = read_curve(out / "stage3")["curve"][-1][2]
            if b["rates"] and (
                b["rates"][-1][1] >= scratch_factor * a_secs or first_reaching(b["curve"], target)
            ):
                (out / "scratch" / "STOP").touch()
    report(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "reuse-cost")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per arm (default 1: 2 arms, 2 cores)"
    )
    ap.add_argument(
        "--scratch-factor",
        type=float,
        default=2.0,
        help="stop the scratch arm after this many times stage 3's training time (default 2)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in both arms (e.g. train.max_steps=500 for a quick look)",
    )
    ap.add_argument(
        "--stage3-config",
        type=Path,
        default=ARMS["stage3"],
        help="the stage-3 arm's preset (default: the shipped 64^3 model's)",
    )
    ap.add_argument("--report", action="store_true", help="only report on the runs already in --out")
    ap.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="RUN",
        help="with --report: compare --out's stage-3 arm (trained alone) with RUN's scratch arm, "
        "at the step times RUN's two arms had while running together",
    )
    args = ap.parse_args(argv)
    if not args.stage3_config.is_file():
        ap.error(f"--stage3-config: {args.stage3_config} is not a file")
    if args.against is not None and not args.report:
        ap.error("--against: only with --report (a run of both arms times them itself)")
    if args.report:
        report(args.out, args.against)
    else:
        run(args.out, args.threads, args.scratch_factor, args.set, {**ARMS, "stage3": args.stage3_config})
    return 0


if __name__ == "__main__":
    sys.exit(main())
