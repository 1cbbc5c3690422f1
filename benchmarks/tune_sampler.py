"""Choose the hot sampler's multiplier k for a model on validation data, not on the test set.

The paper tuned k on its data (LIDC 128^3: k = 2 best, k = 3 and 4 worse). A different model, size
and training length can prefer another k, and a user should get the best the model can do without
knowing that. This script samples ``--count`` volumes per k (seeds from 1000 on, disjoint from the
quality benchmark's 0..99) and scores them against phantoms drawn from the *training*
distribution (seeds from 100000 on, ``data.phantom_seed_offset`` of the studio presets), never
against the held-out phantoms (seeds 0..99) that ``bundled_model_quality.py`` reports on:

* anatomy: the fraction of samples inside the validation phantoms' [min, max] on every
  ``prdit.data.anatomy`` measure (the issue's target is >= 90 % on each);
* HU histogram W1 to the pooled validation phantoms (a cheap distribution check).

The chosen k is the one with the highest worst-measure fraction (ties: lower W1, then smaller k).
Write it into the exported model with ``prdit export-model ... --recommend-k K`` so that
``prdit sample``, the studio and the scripted mode use it by default.

    python benchmarks/tune_sampler.py --model resources/models/default.safetensors --out runs/tune-k

Results for the bundled model are in docs/bundled-model.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def validation_phantoms(count: int, size: int, seed_offset: int) -> list:
    from prdit.data.phantom import generate_phantom

    return [generate_phantom(seed_offset + i, size) for i in range(count)]


def score(model_file: Path, ks: list[int], count: int, steps: int, size: int, val_count: int, threads: int):
    import torch

    from prdit.checkpoint import load_for_inference
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.diffusion import run_to_end, sample
    from prdit.metrics.anatomy import measure_rows, summarize_anatomy
    from prdit.metrics.histogram import HUHistogram, hu_wasserstein
    from prdit.sampling import to_volume

    torch.set_num_threads(threads)
    model, info = load_for_inference(model_file)
    if info.input_size != size:
        raise SystemExit(f"{model_file}: model is {info.input_size}^3, --size is {size}")
    val = validation_phantoms(val_count, size, 100000)
    keys = tuple(ANATOMY_KEYS)
    val_rows = measure_rows([measure_anatomy(v) for v in val], keys)
    reference = summarize_anatomy(val_rows, val_rows[:0], keys)  # the validation ranges and means
    val_hist = HUHistogram()
    for v in val:
        val_hist.add(v.array)
    results = []
    for k in ks:
        t0 = time.perf_counter()
        rows, hist = [], HUHistogram()
        with torch.inference_mode():
            for i in range(count):
                g = torch.Generator().manual_seed(1000 + i)
                x = run_to_end(sample(model, (1, 1, size, size, size), "hot", steps, k, generator=g))
                vol = to_volume(x[0], info)
                rows.append(measure_anatomy(vol))
                hist.add(vol.array)
        # the same in-range rule as `prdit eval --metrics anatomy` (NaN counts as outside)
        summary = summarize_anatomy(val_rows, measure_rows(rows, keys), keys)
        inside = {key: summary[key]["fake_in_real_range"] for key in keys}
        results.append(
            {
                "k": k,
                "inside_range": inside,
                "worst_measure": min(inside.values()),
                "mean": {key: summary[key]["fake_mean"] for key in keys},
                "hu_w1": hu_wasserstein(val_hist, hist),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    best = sorted(results, key=lambda r: (-r["worst_measure"], r["hu_w1"], r["k"]))[0]
    return {
        "model": str(model_file),
        "steps": steps,
        "count": count,
        "validation_range": {key: [reference[key]["real_min"], reference[key]["real_max"]] for key in keys},
        "validation_mean": {key: reference[key]["real_mean"] for key in keys},
        "results": results,
        "best_k": best["k"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.safetensors")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tune-k")
    ap.add_argument("--k", default="2,3,4,5", help="comma-separated multipliers to try (default 2,3,4,5)")
    ap.add_argument("--count", type=int, default=48, help="samples per k (default 48)")
    ap.add_argument("--val-count", type=int, default=100, help="validation phantoms (default 100)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",") if k.strip()]
    if not ks or min(ks) < 1:
        raise SystemExit(f"--k: expected positive integers like 2,3,4, got {args.k!r}")
    summary = score(args.model, ks, args.count, args.steps, args.size, args.val_count, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    from prdit.atomic import write_text_atomic

    write_text_atomic(args.out / "summary.json", json.dumps(summary, indent=2))
    print(f"best k = {summary['best_k']}  (written to {args.out / 'summary.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
