"""Benchmark of the evaluation metrics: memory of MMD at 2000 x 2048, speed of every stage.

Each measurement runs in its own subprocess so the peak resident set size (``ru_maxrss``) belongs
to that measurement alone; the baseline (interpreter + torch + numpy imported, inputs built) is
measured just before the metric runs and reported separately.

    python benchmarks/bench_metrics.py               # all, prints a Markdown table + JSON
    python benchmarks/bench_metrics.py --quick       # smaller sizes (CI smoke run)
    python benchmarks/bench_metrics.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

_CHILD = r"""
import json, os, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
kind, arg = sys.argv[1], json.loads(sys.argv[2])

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

out = {}
if kind == "mmd":
    from prdit.metrics.mmd import mmd_rbf
    rng = np.random.default_rng(0)
    x = rng.random((arg["n"], arg["d"]))
    y = rng.random((arg["n"], arg["d"])) + 0.01
    out["baseline_rss_mb"] = rss_mb()
    t = time.perf_counter()
    r = mmd_rbf(x, y, chunk=arg["chunk"])
    out["seconds"] = time.perf_counter() - t
    out["mmd"] = r.mmd
elif kind == "fid":
    from prdit.metrics.fid import fid
    rng = np.random.default_rng(0)
    x = rng.random((arg["n"], arg["d"]))
    y = rng.random((arg["n"], arg["d"])) + 0.01
    out["baseline_rss_mb"] = rss_mb()
    t = time.perf_counter()
    out["fid"] = fid(x, y)
    out["seconds"] = time.perf_counter() - t
elif kind == "features":
    from prdit.metrics.features import build_default_extractor
    t = time.perf_counter()
    ex = build_default_extractor()
    out["build_seconds"] = time.perf_counter() - t
    s, b = arg["size"], arg["batch"]
    x = torch.randn(b, s, s, s) * 400 - 500
    ex.extract(x[:1])  # warm-up
    out["baseline_rss_mb"] = rss_mb()
    t = time.perf_counter()
    reps = arg.get("reps", 2)
    for _ in range(reps):
        ex.extract(x)
    out["seconds_per_volume"] = (time.perf_counter() - t) / (reps * b)
elif kind == "msssim":
    from prdit.metrics.msssim import ms_ssim
    s = arg["size"]
    a, b = torch.rand(1, s, s, s), torch.rand(1, s, s, s)
    ms_ssim(a, b)
    out["baseline_rss_mb"] = rss_mb()
    t = time.perf_counter()
    for _ in range(3):
        ms_ssim(a, b)
    out["seconds_per_pair"] = (time.perf_counter() - t) / 3
elif kind == "critic":
    from prdit.metrics.critic import CriticConfig, critic_wasserstein
    s, n = arg["size"], arg["n"]
    real = (torch.rand(n, s, s, s) * 2 - 1).half()
    fake = (torch.rand(n, s, s, s) * 2 - 1).half()
    out["baseline_rss_mb"] = rss_mb()
    cfg = CriticConfig(size=s, iterations=arg["iterations"])
    t = time.perf_counter()
    critic_wasserstein(real, fake, cfg)
    out["seconds_per_iteration"] = (time.perf_counter() - t) / arg["iterations"]
out["peak_rss_mb"] = rss_mb()
print(json.dumps(out))
"""


def _child(kind: str, **arg) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("BENCH_THREADS", "2")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, json.dumps(arg)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {arg} failed:\n{proc.stderr[-2000:]}")
    return {"kind": kind, **arg, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    results = []
    if args.quick:
        results.append(_child("mmd", n=500, d=2048, chunk=256))
        results.append(_child("features", size=32, batch=2))
    else:
        for chunk in (64, 256):
            results.append(_child("mmd", n=2000, d=2048, chunk=chunk))
        results.append(_child("fid", n=1000, d=2048))
        results.append(_child("fid", n=2000, d=2048))
        for size, batch in ((32, 4), (64, 2), (128, 1)):
            results.append(_child("features", size=size, batch=batch, reps=1 if size == 128 else 2))
        for size in (64, 128):
            results.append(_child("msssim", size=size))
        results.append(_child("critic", size=32, n=64, iterations=20))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# metrics benchmark: {platform.processor() or platform.machine()}, "
        f"{os.environ.get('BENCH_THREADS', '2')} torch threads, load average {load:.1f}, {time.ctime()}"
    )
    print("| measurement | time | baseline RSS | peak RSS |")
    print("|---|---|---|---|")
    for r in results:
        k = r["kind"]
        if k == "mmd":
            name, t = (
                f"MMD {r['n']}x{r['d']} vs {r['n']}x{r['d']}, chunk {r['chunk']}",
                f"{r['seconds']:.1f} s",
            )
        elif k == "fid":
            name, t = f"FID {r['n']}x{r['d']} vs {r['n']}x{r['d']}", f"{r['seconds']:.1f} s"
        elif k == "features":
            name = f"ResNet-50 features {r['size']}^3, batch {r['batch']}"
            t = f"{r['seconds_per_volume']:.2f} s/volume"
        elif k == "msssim":
            name, t = f"MS-SSIM {r['size']}^3 pair", f"{r['seconds_per_pair'] * 1000:.0f} ms/pair"
        else:
            name = f"critic {r['size']}^3, batch 16"
            t = f"{r['seconds_per_iteration'] * 1000:.0f} ms/iteration"
        print(f"| {name} | {t} | {r['baseline_rss_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"load_average": load, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
