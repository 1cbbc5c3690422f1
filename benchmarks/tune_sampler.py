"""Choose a model's recommended sampler settings (hot-sampler k and step count) on validation data.

The paper tuned k on its data (LIDC 128^3: k = 2 best, k = 3 and 4 worse). A different model, size
and training length can prefer another k and another step count, and a user should get the best
the model can do without knowing that. This script samples ``--count`` volumes for every (k,
steps) pair (seeds from 1000 on, disjoint from the quality benchmark's 0..99) and scores them
against validation phantoms: the trainer's own held-out validation seeds (``phantom_seed_offset
+ 1_000_000`` = 1_100_000 on, never trained on), never the test phantoms (seeds 0..99 and
50000..50099) that ``bundled_model_quality.py`` reports on:

* anatomy: the fraction of samples inside the validation phantoms' [min, max] on every
  ``prdit.data.anatomy`` measure (the target is >= 90 % on each), and its worst measure;
* HU histogram W1 to the pooled validation phantoms (a cheap distribution check);
* the seed-to-seed spread of both: the standard deviation over ``--bootstrap`` resamples of the
  samples, so that a choice is only made where the difference is larger than the noise.

``--samplers hot,cold,v2m-sde`` adds other samplers (``--k`` applies to hot only).
The rule, fixed before any run: (1) keep the settings whose worst-measure fraction is within
two spreads of the best; (2) of those, keep the ones whose W1 is within two spreads of the
lowest; (3) of those, the fewest steps (a user waits for every step), then the smallest k.
Write the choice into the exported model with ``prdit export-model ... --recommend-k K
--recommend-steps N`` so that ``prdit sample``, the studio and the scripted mode use it.

    python benchmarks/tune_sampler.py --model runs/studio-default-stage3 --k 2,3,4 --steps 25,50

Results for the bundled models are in docs/bundled-model.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VALIDATION_SEEDS = 1_100_000  # the studio presets' phantom_seed_offset + 1_000_000 (the trainer's val set)


def validation_phantoms(count: int, size: int, seed_offset: int) -> list:
    from prdit.data.phantom import generate_phantom

    return [generate_phantom(seed_offset + i, size) for i in range(count)]


def _spread(values: np.ndarray, stat, bootstrap: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    n = len(values)
    return float(np.std([stat(values[rng.integers(0, n, n)]) for _ in range(bootstrap)], ddof=1))


def choose(results: list[dict]) -> dict:
    """The rule in the module docstring."""

    def close(a: float, sa: float, b: float, sb: float) -> bool:
        return abs(a - b) <= 2.0 * float(np.hypot(sa, sb))

    top = max(results, key=lambda r: r["worst_measure"])
    tier = [
        r
        for r in results
        if close(r["worst_measure"], r["worst_spread"], top["worst_measure"], top["worst_spread"])
    ]
    best_w1 = min(tier, key=lambda r: r["hu_w1"])
    tier = [
        r for r in tier if close(r["hu_w1"], r["hu_w1_spread"], best_w1["hu_w1"], best_w1["hu_w1_spread"])
    ]
    return sorted(tier, key=lambda r: (r["steps"], r["k"] or 0))[0]


Setting = tuple[str, int | None, int]  # (sampler, hot k or None, steps)


def score(model_file: Path, settings: list[Setting], count: int, val_count: int, threads: int,
          bootstrap: int) -> dict:  # fmt: skip
    import torch

    from prdit.checkpoint import load_for_inference
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.diffusion import run_to_end, sample
    from prdit.metrics.anatomy import measure_rows, summarize_anatomy
    from prdit.metrics.histogram import HUHistogram, hu_wasserstein
    from prdit.sampling import to_volume

    torch.set_num_threads(threads)
    model, info = load_for_inference(model_file)
    size = info.input_size
    val = validation_phantoms(val_count, size, VALIDATION_SEEDS)
    keys = tuple(ANATOMY_KEYS)
    val_rows = measure_rows([measure_anatomy(v) for v in val], keys)
    reference = summarize_anatomy(val_rows, val_rows[:0], keys)  # the validation ranges and means
    lo = np.array([reference[key]["real_min"] for key in keys])
    hi = np.array([reference[key]["real_max"] for key in keys])
    val_hist = HUHistogram()
    for v in val:
        val_hist.add(v.array)
    results = []
    for sampler, k, steps in settings:
        t0 = time.perf_counter()
        rows, hists = [], []
        with torch.inference_mode():
            for i in range(count):
                g = torch.Generator().manual_seed(1000 + i)
                x = run_to_end(sample(model, (1, 1, size, size, size), sampler, steps, k or 2, generator=g))
                vol = to_volume(x[0], info)
                rows.append(measure_anatomy(vol))
                h = HUHistogram()
                h.add(vol.array)
                hists.append(h.counts)
        seconds = time.perf_counter() - t0
        # the same in-range rule as `prdit eval --metrics anatomy` (NaN counts as outside)
        fake = measure_rows(rows, keys)
        summary = summarize_anatomy(val_rows, fake, keys)
        inside = {key: summary[key]["fake_in_real_range"] for key in keys}
        in_range = (fake >= lo) & (fake <= hi)  # [count, measures]; NaN compares False
        counts = np.stack(hists)

        def w1(idx: np.ndarray, counts: np.ndarray = counts) -> float:
            return hu_wasserstein(val_hist, HUHistogram(counts=counts[idx].sum(axis=0)))

        idx = np.arange(count)
        results.append(
            {
                "sampler": sampler,
                "k": k,
                "steps": steps,
                "inside_range": inside,
                "worst_measure": min(inside.values()),
                "worst_spread": _spread(in_range, lambda s: float(s.mean(axis=0).min()), bootstrap),
                "mean": {key: summary[key]["fake_mean"] for key in keys},
                "hu_w1": w1(idx),
                "hu_w1_spread": _spread(idx, w1, bootstrap),
                "seconds_per_volume": seconds / count,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    best = choose(results)
    return {
        "model": str(model_file),
        "count": count,
        "validation_seeds": [VALIDATION_SEEDS, VALIDATION_SEEDS + val_count - 1],
        "validation_range": {key: [reference[key]["real_min"], reference[key]["real_max"]] for key in keys},
        "validation_mean": {key: reference[key]["real_mean"] for key in keys},
        "results": results,
        "best": {"sampler": best["sampler"], "k": best["k"], "steps": best["steps"]},
    }


def _ints(text: str, flag: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise SystemExit(f"{flag}: expected positive integers like 2,3,4, got {text!r}")
    return values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.safetensors")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tune-sampler")
    ap.add_argument("--k", default="2,3,4", help="comma-separated multipliers to try (default 2,3,4)")
    ap.add_argument("--steps", default="50", help="comma-separated step counts to try (default 50)")
    ap.add_argument("--count", type=int, default=48, help="samples per setting (default 48)")
    ap.add_argument("--val-count", type=int, default=100, help="validation phantoms (default 100)")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples for the spread (default 200)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--samplers",
        default="hot",
        help="comma-separated samplers to try (default hot; k applies to hot only)",
    )
    args = ap.parse_args()
    from prdit.sampler_names import SAMPLERS

    samplers = [v for v in args.samplers.split(",") if v.strip()]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown or not samplers:
        ap.error(
            f"--samplers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SAMPLERS)}"
        )
    settings: list[tuple[str, int | None, int]] = []
    for steps in _ints(args.steps, "--steps"):
        for name in samplers:
            settings += (
                [(name, k, steps) for k in _ints(args.k, "--k")] if name == "hot" else [(name, None, steps)]
            )
    summary = score(args.model, settings, args.count, args.val_count, args.threads, args.bootstrap)
    args.out.mkdir(parents=True, exist_ok=True)
    from prdit.atomic import write_text_atomic

    write_text_atomic(args.out / "summary.json", json.dumps(summary, indent=2))
    best = summary["best"]
    k = f", k = {best['k']}" if best["k"] else ""
    print(f"best: {best['sampler']}{k}, {best['steps']} steps  (written to {args.out / 'summary.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
