"""What reuse saves in the currency users see: sample quality against training time, per arm.

``reuse_cost.py`` compares the two arms' validation losses. At 64^3 that measure favours the
from-scratch model: it trains every parameter at full resolution and learns per-voxel denoising
faster per step (its raw validation loss is below stage 3's from the first validations on), while what reuse
saves is the global anatomy the 32^3 training already bought, which the loss barely weighs. This
benchmark asks the question a user would: how long does each arm train before its *samples* are
as good?

For each ``--arm NAME=RUN:STEP[,STEP...]`` it samples the checkpoint of every listed step (EMA
weights, the same sampler and seeds for all), scores the samples against held-out test phantoms
(FID, KID, HU W1 and the anatomy measures' in-range fractions, as ``bundled_model_quality.py``
does) and puts each checkpoint at its training time: step x the arm's seconds per step while
both arms of ``--step-times`` RUN (a ``reuse_cost.py`` output folder) ran side by side.
``montage.png`` shows mid-slices of the phantoms, the reference model and each other arm's last
checkpoint.

    python benchmarks/reuse_quality.py --step-times runs/reuse-cost-lr1e3 \
        --arm stage3=runs/reuse-cost-lr1e3/stage3:2000 \
        --arm scratch=runs/scratch-lr1e3-long:1500,2000,2500,3000 --out runs/reuse-quality-lr1e3

"Reached" means the issue's bar for the bundled model: FID at most the first arm's final FID
and every anatomy measure >= 90 % inside the held-out range. Results: docs/bundled-model.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundled_model_quality import (  # noqa: E402 (benchmarks/)
    anatomy_table,
    distribution_metrics,
    inside_fractions,
    prdit,
    write_montage,
)
from reuse_cost import paired_step_times, read_curve  # noqa: E402

ANATOMY_BAR = 0.9


def parse_arm(text: str) -> tuple[str, Path, list[int]]:
    """``NAME=RUN:STEP[,STEP...]`` -> (name, run folder, steps); each step needs its checkpoint."""
    try:
        name, rest = text.split("=", 1)
        run, steps = rest.rsplit(":", 1)
        step_list = [int(s) for s in steps.split(",") if s]
    except ValueError:
        raise SystemExit(
            f"--arm {text!r}: expected NAME=RUN:STEP[,STEP...], e.g. scratch=runs/x:1500,2000"
        ) from None
    if not step_list:
        raise SystemExit(f"--arm {text!r}: no steps given")
    for step in step_list:
        if not (folder := checkpoint(Path(run), step)).is_dir():
            raise SystemExit(f"--arm {name}: {folder} does not exist")
    return name, Path(run), step_list


def checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:07d}"


def score(heldout: Path, folder: Path, report: Path, lo: dict, hi: dict) -> dict:
    """FID, KID, HU W1 of ``folder`` against ``heldout``, and the fractions of its volumes inside
    the held-out anatomy range ``[lo, hi]``."""
    metrics = distribution_metrics(heldout, folder, report, "fid,kid,histogram")
    inside = inside_fractions(anatomy_table(folder), lo, hi)
    return {
        "fid": metrics["fid"]["value"],
        "kid": metrics["kid"]["value"],
        "hu_w1": metrics["histogram"]["value"],
        "inside_range": inside,
        "worst_inside": min(inside.values()),
    }


def mark_reached(rows: list[dict], reference_arm: str) -> dict:
    """Mark each row ``reached_reference``: FID at most the reference's and every anatomy measure at
    least :data:`ANATOMY_BAR` inside. The reference is ``reference_arm``'s last (highest-step) row,
    the model that arm's training ended with; it is returned."""
    own = [r for r in rows if r["arm"] == reference_arm]
    if not own:
        raise SystemExit(f"no checkpoint of the reference arm {reference_arm!r} was scored")
    ref = max(own, key=lambda r: r["step"])
    for r in rows:
        r["reached_reference"] = bool(r["fid"] <= ref["fid"] and r["worst_inside"] >= ANATOMY_BAR)
    return ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--arm", action="append", required=True, help="NAME=RUN:STEP[,STEP...]; the first is the reference"
    )
    ap.add_argument(
        "--step-times", type=Path, required=True, help="reuse_cost.py output: its arms' paired step times"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=100, help="samples per checkpoint and held-out phantoms")
    ap.add_argument("--sampler", default="hot")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    arms = [parse_arm(a) for a in args.arm]
    seen: set[tuple[str, int]] = set()
    for name, _, steps in arms:
        for step in steps:
            if (name, step) in seen:  # both would sample into the same folder
                raise SystemExit(f"--arm {name}: step {step} is listed twice (samples go to {name}-{step}/)")
            seen.add((name, step))
    pair = args.step_times
    s3, scratch = read_curve(pair / "stage3"), read_curve(pair / "scratch")
    times = dict(zip(("stage3", "scratch"), paired_step_times(s3, scratch), strict=True))
    for name, _, _ in arms:
        if name not in times:
            raise SystemExit(f"--arm {name}: name must be one of {sorted(times)} (the arms of {pair})")

    args.out.mkdir(parents=True, exist_ok=True)
    # --skip-existing reuses samples already in --out: never mix volumes of different settings
    settings = {"count": args.count, "sampler": args.sampler, "k": args.k, "steps": args.steps}
    settings_file = args.out / "settings.json"
    if settings_file.is_file():
        before = json.loads(settings_file.read_text(encoding="utf-8"))
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            raise SystemExit(
                f"{args.out} holds samples made with other settings "
                + ", ".join(f"{k} {a} (now {b})" for k, (a, b) in changed.items())
                + "; use another --out"
            )
    else:
        settings_file.write_text(json.dumps(settings), encoding="utf-8")
    heldout = args.out / "heldout"
    if not heldout.is_dir():
        prdit(
            "phantom",
            "--count",
            str(args.count),
            "--size",
            "64",
            "--seed-offset",
            "0",
            "--out",
            str(heldout),
            "--no-progress",
        )
    real = anatomy_table(heldout)  # measured once: every checkpoint is scored against its range
    lo, hi = {k: v.min() for k, v in real.items()}, {k: v.max() for k, v in real.items()}
    rows = []
    for name, run, steps in arms:
        for step in steps:
            folder = args.out / f"{name}-{step}"
            prdit(
                "sample",
                str(checkpoint(run, step)),
                "--out",
                str(folder),
                "--count",
                str(args.count),
                "--sampler",
                args.sampler,
                "--k",
                str(args.k),
                "--steps",
                str(args.steps),
                "--seed",
                "0",
                "--threads",
                str(args.threads),
                "--no-preview",
                "--skip-existing",
                "--no-progress",
            )
            result = score(heldout, folder, args.out / f"{name}-{step}.json", lo, hi)
            rows.append({"arm": name, "step": step, "minutes": step * times[name] / 60, **result})
            print(json.dumps(rows[-1]), flush=True)

    ref = mark_reached(rows, arms[0][0])
    summary = {"step_times_s": times, "reference": {"arm": ref["arm"], "step": ref["step"]}, "rows": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    # what the numbers look like: the reference model and every other arm's last checkpoint
    shown = {
        "phantoms": heldout,
        f"{ref['arm']} {ref['minutes']:.0f} min": args.out / f"{ref['arm']}-{ref['step']}",
    }
    for name, _, steps in arms:
        if name != ref["arm"]:
            last = next(r for r in rows if r["arm"] == name and r["step"] == max(steps))
            shown[f"{name} {last['minutes']:.0f} min"] = args.out / f"{name}-{last['step']}"
    write_montage(shown, args.out / "montage.png", count=3, zoom=2)

    print(
        f"seconds per step while both arms of {pair} ran: "
        + ", ".join(f"{k} {v:.3f}" for k, v in times.items())
    )
    print("arm       step  minutes   FID     KID   HU W1  worst anatomy  lung balance  reached " + ref["arm"])
    for r in rows:
        balance = r["inside_range"]["lung_lr_balance"]
        print(
            f"{r['arm']:<8} {r['step']:>5} {r['minutes']:>8.1f} {r['fid']:>6.1f} {r['kid']:>7.1f}"
            f" {r['hu_w1']:>6.1f}  {r['worst_inside']:>12.2f}  {balance:>12.2f}  {r['reached_reference']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
