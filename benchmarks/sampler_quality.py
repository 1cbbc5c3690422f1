"""Sampler study: quality against network evaluations (NFE) for every sampler, with the seed spread,
plus the analytic-oracle error against NFE (reproduces docs/sampling.md and its curves).

    python benchmarks/sampler_quality.py --model fast-32 --count 64 --sets 2
    python benchmarks/sampler_quality.py --model default --count 32 --sets 1 --nfe 5,10,20,50,250

For each sampler (``hot`` k = 2, ``cold``, ``v2m``, ``v2m-sde``) and NFE, ``--count`` volumes per seed
set (set ``j`` uses seeds ``10000 j + i``; NFE = network evaluations = steps - 1, the last step
lands at t = 0 without one) are scored against ``--heldout`` held-out phantoms (seeds 0.., training
used >= 100000) on:

* FID and KID with the built-in feature extractor (a fixed random ResNet-50: comparable only within
  this study; FID is biased at this N, KID is not), and MMD;
* HU Wasserstein-1 of the pooled histograms;
* anatomy: the fraction of samples inside the held-out phantoms' range on every measure, and the
  worst measure;
* seconds per volume (batched, ``--threads`` threads).

The oracle part feeds each sampler the exact denoiser of per-voxel Gaussian data (``N(0.3, 0.2^2)``)
and of two-valued data (-0.6 / 0.4, p = 0.5), where the answer is known: deterministic samplers are
compared with the exact probability-flow map (Gaussian) voxel by voxel; all samplers' output
distributions with the truth (|mean error| + |std error| for the Gaussian, Wasserstein-1 to the two
points for the two-valued data). Writes ``results.json``, ``sampling-quality.png`` and
``sampling-oracle.png`` in ``--out`` and the tables to stdout (Markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from prdit.analytic import gaussian_denoiser, gaussian_flow, two_point_denoiser  # noqa: E402
from prdit.diffusion import IaNDiffusion, run_to_end, sample  # noqa: E402

SAMPLERS = ("hot", "cold", "v2m", "v2m-sde")


def oracle_table(nfes: list[int]) -> dict:
    """Errors of every sampler on the two analytic denoisers (float64, 16^3 voxels x 4 samples)."""
    d = IaNDiffusion()
    shape = (4, 1, 16, 16, 16)
    mu, s = 0.3, 0.2
    out: dict = {}
    for name in SAMPLERS:
        for nfe in nfes:
            g = torch.Generator().manual_seed(0)
            x_start = d.noise_scale * torch.randn(
                shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
            )
            walk = sample(
                gaussian_denoiser(mu, s, d), shape, name, nfe + 1, 2, generator=g, dtype=torch.float64
            )
            x = run_to_end(walk)
            flow_err = float((x - gaussian_flow(x_start, d.num_timesteps - 1, mu, s, d)).abs().max())
            dist_err = abs(float(x.mean()) - mu) + abs(float(x.std()) - s)
            g = torch.Generator().manual_seed(1)
            y = run_to_end(sample(two_point_denoiser(0.4, -0.6, 0.5, d), shape, name, nfe + 1, 2, generator=g,
                                  dtype=torch.float64))  # fmt: skip
            truth = np.where(np.arange(y.numel()) < y.numel() // 2, -0.6, 0.4)
            two_w1 = float(np.mean(np.abs(np.sort(y.flatten().numpy()) - truth)))
            out.setdefault(name, []).append(
                {
                    "nfe": nfe,
                    "gaussian_flow_max_err": flow_err,
                    "gaussian_dist_err": dist_err,
                    "two_point_w1": two_w1,
                }
            )
    return out


def quality(
    model_name: str,
    nfes: list[int],
    count: int,
    sets: int,
    heldout: int,
    batch: int,
    samplers: tuple[str, ...] = SAMPLERS,
    first_set: int = 0,
) -> dict:
    from prdit.checkpoint import load_for_inference
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.data.phantom import generate_phantom
    from prdit.metrics.anatomy import measure_rows, summarize_anatomy
    from prdit.metrics.features import build_default_extractor
    from prdit.metrics.fid import fid
    from prdit.metrics.histogram import HUHistogram, hu_wasserstein
    from prdit.metrics.kid import kid
    from prdit.metrics.mmd import mmd_rbf
    from prdit.paths import bundled_model
    from prdit.sampling import diffusion_for, to_volume

    path = Path(model_name) if Path(model_name).exists() else bundled_model(model_name)
    model, info = load_for_inference(path)
    size = info.input_size
    diffusion = diffusion_for(info)
    extractor = build_default_extractor()
    real = [generate_phantom(i, size) for i in range(heldout)]
    keys = tuple(ANATOMY_KEYS)
    real_rows = measure_rows([measure_anatomy(v) for v in real], keys)
    ref = summarize_anatomy(real_rows, real_rows[:0], keys)
    real_hist = HUHistogram()
    for v in real:
        real_hist.add(v.array)
    real_feats = np.concatenate(
        [extractor.extract(np.stack([v.array for v in real[i : i + 8]])) for i in range(0, heldout, 8)]
    )
    rows: list[dict] = []
    for name in samplers:
        for nfe in nfes:
            for j in range(first_set, first_set + sets):
                t0 = time.perf_counter()
                vols = []
                with torch.inference_mode():
                    for start in range(0, count, batch):
                        n = min(batch, count - start)
                        gens = [torch.Generator().manual_seed(10000 * j + start + i) for i in range(n)]
                        walk = sample(model, (n, 1, size, size, size), name, nfe + 1, 2, generator=gens,
                                      diffusion=diffusion)  # fmt: skip
                        x = run_to_end(walk)
                        vols += [to_volume(x[b], info) for b in range(n)]
                seconds = (time.perf_counter() - t0) / count
                hist = HUHistogram()
                for v in vols:
                    hist.add(v.array)
                fake_rows = measure_rows([measure_anatomy(v) for v in vols], keys)
                summary = summarize_anatomy(real_rows, fake_rows, keys)
                inside = {k: summary[k]["fake_in_real_range"] for k in keys}
                feats = np.concatenate(
                    [
                        extractor.extract(np.stack([v.array for v in vols[i : i + 8]]))
                        for i in range(0, count, 8)
                    ]
                )
                row = {
                    "sampler": name,
                    "nfe": nfe,
                    "set": j,
                    "fid": float(fid(real_feats, feats)),
                    "kid": float(kid(real_feats, feats).value),
                    "mmd": float(mmd_rbf(real_feats, feats).mmd),
                    "hu_w1": float(hu_wasserstein(real_hist, hist)),
                    "inside": inside,
                    "worst": float(min(inside.values())),
                    "seconds_per_volume": seconds,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {
        "model": info.display_name,
        "size": size,
        "count": count,
        "sets": sets,
        "heldout": heldout,
        "range": {k: [ref[k]["real_min"], ref[k]["real_max"]] for k in keys},
        "rows": rows,
    }


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = results.get("quality")
    if q:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for name in SAMPLERS:
            rows = [r for r in q["rows"] if r["sampler"] == name]
            nfes = sorted({r["nfe"] for r in rows})
            panels = (("hu_w1", "HU W1"), ("kid", "KID"), ("worst", "worst anatomy in range"))
            for ax, (key, label) in zip(axes, panels, strict=True):
                vals = [[r[key] for r in rows if r["nfe"] == n] for n in nfes]
                mean = [float(np.mean(v)) for v in vals]
                lo = [float(np.min(v)) for v in vals]
                hi = [float(np.max(v)) for v in vals]
                ax.plot(nfes, mean, marker="o", label=name)
                ax.fill_between(nfes, lo, hi, alpha=0.2)
                ax.set_xscale("log")
                ax.set_xlabel("network evaluations (NFE)")
                ax.set_title(f"{label} ({q['model']}, {q['count']} samples x {q['sets']} seed sets)")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(out / "sampling-quality.png", dpi=90)
        plt.close(fig)
    o = results["oracle"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in o.items():
        nfes = [r["nfe"] for r in rows]
        panels = (
            ("gaussian_flow_max_err", "Gaussian: max error vs exact flow (deterministic)"),
            ("gaussian_dist_err", "Gaussian: |mean err| + |std err|"),
            ("two_point_w1", "two-valued: W1 to the truth"),
        )
        for ax, (key, label) in zip(axes, panels, strict=True):
            if key == "gaussian_flow_max_err" and name in ("hot", "v2m-sde"):
                continue
            ax.loglog(nfes, [r[key] for r in rows], marker="o", label=name)
            ax.set_xlabel("NFE")
            ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "sampling-oracle.png", dpi=90)
    plt.close(fig)


def markdown(results: dict) -> str:
    lines = []
    q = results.get("quality")
    if q:
        lines += [
            f"Model {q['model']} ({q['size']}^3), {q['count']} samples per seed set x {q['sets']} sets "
            f"against {q['heldout']} held-out phantoms; values: mean over sets (min-max).",
            "",
            "| sampler | NFE | FID | KID | MMD | HU W1 | worst anatomy in range | s / volume |",
            "|---|---|---|---|---|---|---|---|",
        ]

        def cell(vals: list[float], fmt: str) -> str:
            if len(vals) == 1:
                return format(vals[0], fmt)
            return f"{format(np.mean(vals), fmt)} ({format(min(vals), fmt)}-{format(max(vals), fmt)})"

        for name in SAMPLERS:
            for nfe in sorted({r["nfe"] for r in q["rows"]}):
                rs = [r for r in q["rows"] if r["sampler"] == name and r["nfe"] == nfe]
                if not rs:
                    continue
                cells = [cell([r[key] for r in rs], ".3g") for key in ("fid", "kid", "mmd", "hu_w1")]
                cells.append(cell([r["worst"] for r in rs], ".2f"))
                secs = np.mean([r["seconds_per_volume"] for r in rs])
                lines.append(f"| {name} | {nfe} | " + " | ".join(cells) + f" | {secs:.3f} |")
        lines.append("")
    lines += [
        "Oracle (exact denoisers): Gaussian max error against the exact flow (deterministic samplers), "
        "Gaussian |mean err| + |std err|, two-valued W1 to the truth.",
        "",
        "| sampler | " + " | ".join(f"NFE {r['nfe']}" for r in next(iter(results["oracle"].values()))) + " |",
        "|---|" + "---|" * len(next(iter(results["oracle"].values()))),
    ]
    for name, rows in results["oracle"].items():
        cells = []
        for r in rows:
            flow = "" if name in ("hot", "v2m-sde") else f"{r['gaussian_flow_max_err']:.1e} / "
            cells.append(f"{flow}{r['gaussian_dist_err']:.1e} / {r['two_point_w1']:.1e}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fast-32", help="a bundled model name or a checkpoint")
    ap.add_argument("--nfe", default="5,10,15,20,25,50,100,250")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--sets", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated (default: all four)")
    ap.add_argument("--first-set", type=int, default=0, help="seed set to start at (add sets to a run)")
    ap.add_argument("--oracle-only", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/sampler-quality"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nfes = [int(v) for v in args.nfe.split(",")]
    results: dict = {"oracle": oracle_table([5, 10, 20, 40, 80, 160])}
    print(markdown(results), flush=True)
    if not args.oracle_only:
        samplers = tuple(s for s in args.samplers.split(",") if s)
        unknown = sorted(set(samplers) - set(SAMPLERS))
        if unknown:
            ap.error(f"--samplers: unknown {', '.join(unknown)} (choose from {', '.join(SAMPLERS)})")
        results["quality"] = quality(
            args.model, nfes, args.count, args.sets, args.heldout, args.batch, samplers, args.first_set
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results))
    plot(results, args.out)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
