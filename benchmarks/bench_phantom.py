"""Speed and memory of the chest phantom on ONE CPU core (target: 64^3 < 1 s, 128^3 < 5 s).

Run: ``python benchmarks/bench_phantom.py [--sizes 32 64 128 256] [--seeds 3] [--write-docs]``.
Threads are pinned to one (numpy/scipy BLAS/OpenMP and torch) before anything is imported, so
the number is the single-core cost. ``--write-docs`` replaces the "## Phantom" section of
docs/benchmarks.md (other sections are kept). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

from prdit.data.anatomy import measure_anatomy  # noqa: E402
from prdit.data.phantom import generate_phantom  # noqa: E402

TARGETS = {64: 1.0, 128: 5.0}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def bench(size: int, seeds: int) -> dict:
    generate_phantom(1000, size=size)  # warm-up (imports, caches)
    times = []
    for seed in range(seeds):
        start = time.perf_counter()
        vol = generate_phantom(seed, size=size)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    generate_phantom(0, size=size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    measure_anatomy(vol)
    anatomy_s = time.perf_counter() - start
    return {
        "size": size,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "peak_mib": peak / 2**20,
        "anatomy_s": anatomy_s,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| size | phantom median (s) | worst (s) | target (s) | peak memory (MiB) | measure_anatomy (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        target = TARGETS.get(r["size"])
        lines.append(
            f"| {r['size']}^3 | {r['median_s']:.2f} | {r['max_s']:.2f} | "
            f"{'< ' + format(target, 'g') if target else '-'} | {r['peak_mib']:.0f} | {r['anatomy_s']:.2f} |"
        )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    """Replace (or append) the '## Phantom' section, keeping every other section."""
    old = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    lines = old.splitlines()
    out, skipping, replaced = [], False, False
    for line in lines:
        if line.strip() == "## Phantom":
            skipping, replaced = True, True
            out.extend(text.rstrip("\n").splitlines())
            continue
        if skipping and line.startswith("## "):
            skipping = False
            out.append("")
        if not skipping:
            out.append(line)
    if not replaced:
        if out and out[-1].strip():
            out.append("")
        out.extend(text.rstrip("\n").splitlines())
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS.with_name(".benchmarks.md.tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    os.replace(tmp, DOCS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    rows = []
    for size in args.sizes:
        r = bench(size, args.seeds)
        rows.append(r)
        print(
            f"{size}^3: median {r['median_s']:.3f} s, worst {r['max_s']:.3f} s, peak {r['peak_mib']:.0f} MiB"
        )
    text = (
        "## Phantom\n\n"
        f"`python benchmarks/bench_phantom.py` — one thread, {args.seeds} seeds per size, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.1f}.\n\n"
        + table(rows)
        + "\n\nSizes below 64 are rendered at 64^3 (or finer) and block-averaged, so 32^3 costs about as "
        "much as 64^3. Peak memory is numpy's traced allocations (tracemalloc).\n"
    )
    print(text)
    if args.write_docs:
        write_docs(text)
        print(f"updated {DOCS}")
    ok = all(r["median_s"] < TARGETS.get(r["size"], float("inf")) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
