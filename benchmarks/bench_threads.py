"""The thread policy on a quiet and on a busy machine, as ratios within one run.

Runs ``prdit sample MODEL --count N`` as a child process with each thread setting (``1``, every
count up to the cores, and ``auto``: the policy of ``prdit/threads.py``), on the quiet machine and
under a synthetic load of ``--hogs`` busy processes (pure-Python loops, one core each), interleaved
round by round so that drifting background load hits every setting alike.

What "good" means: with H busy processes on C cores, a fair scheduler gives us C / (H + 1) cores,
so the ideal time under load is the quiet single-thread time (the work in core-seconds) divided
by min(1, C / (H + 1)). The report gives each setting's slowdown against that ideal; issue 15's
target is < 1.5x for the default (auto).

    python benchmarks/bench_threads.py --model fast-32 --count 2 --rounds 3

Results are in docs/benchmarks.md ("Threads on a busy machine").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOG = "import time\nwhile True:\n    sum(range(100000))\n"


def run_sample(model: str, count: int, steps: int | None, threads: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "prdit", "sample", model, "--count", str(count), "--out", str(out)]
    cmd += ["--overwrite", "--no-preview", "--no-progress", "--threads", threads, "--device", "cpu"]
    if steps:
        cmd += ["--steps", str(steps)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PRDIT_THREADS")}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fast-32", help="checkpoint or bundled model name (default fast-32)")
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="default: the model's recommendation")
    ap.add_argument("--hogs", type=int, default=2, help="busy processes for the loaded condition (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    from prdit.threads import usable_cores

    cores = usable_cores()
    settings = [str(n) for n in range(1, cores + 1)] + ["auto"]
    times: dict[tuple[str, str], list[float]] = {(c, s): [] for c in ("quiet", "loaded") for s in settings}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_sample(args.model, 1, 2, "1", out)  # warm the file cache and imports
        for r in range(args.rounds):
            for cond in ("quiet", "loaded"):
                hogs = []
                if cond == "loaded":
                    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
                    time.sleep(1.0)  # let the policy see them
                try:
                    for s in settings:
                        times[(cond, s)].append(run_sample(args.model, args.count, args.steps, s, out))
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                time.sleep(0.5)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    share = min(1.0, cores / (args.hogs + 1))
    ideal = med[("quiet", "1")] / share
    print(f"\n{args.model}, {args.count} volume(s), {cores} usable cores, {args.hogs} busy processes "
          f"when loaded; load average {load0:.1f} at the start; median of {args.rounds} rounds")  # fmt: skip
    print(f"ideal time under load: quiet 1-thread time / {share:.2f} cores = {ideal:.2f} s\n")
    print("| threads | quiet | loaded | loaded / ideal |")
    print("|---|---|---|---|")
    rows = []
    for s in settings:
        q, lo = med[("quiet", s)], med[("loaded", s)]
        rows.append({"threads": s, "quiet_s": q, "loaded_s": lo, "loaded_over_ideal": lo / ideal})
        print(f"| {s} | {q:.2f} s | {lo:.2f} s | {lo / ideal:.2f}x |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"cores": cores, "hogs": args.hogs, "ideal_loaded_s": ideal, "rows": rows, "raw": {
            f"{c}/{s}": v for (c, s), v in times.items()}}  # fmt: skip
        args.out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
