"""FID and KID against the number of samples, for two sets of ONE distribution (phantoms of
disjoint seeds): the true distance is 0, so whatever FID reports is bias plus spread.

    python benchmarks/bench_fid_vs_n.py [--size 32] [--draws 3]

For each N, ``--draws`` disjoint pairs of N-volume sets are compared with the built-in feature
extractor (a fixed random ResNet-50: the bias behaves the same with MedicalNet weights, the scale
differs). Prints a Markdown table: FID mean over draws with the mean 90 % bootstrap interval, and
KID mean with its mean subset spread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from prdit.data.phantom import generate_phantom  # noqa: E402
from prdit.metrics.features import build_default_extractor  # noqa: E402
from prdit.metrics.fid import fid, fid_bootstrap  # noqa: E402
from prdit.metrics.kid import kid  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12, 16, 24, 32])
    args = ap.parse_args()
    torch.set_num_threads(2)
    extractor = build_default_extractor()
    needed = 2 * max(args.sizes) * args.draws
    feats = []
    for seed in range(needed):
        hu = generate_phantom(200000 + seed, args.size).array
        feats.append(extractor.extract(torch.as_tensor(hu)[None])[0])
    feats = np.asarray(feats)
    print(f"{needed} phantoms at {args.size}^3, built-in extractor, {args.draws} disjoint draws per N")
    print("| N per set | FID (mean of draws) | 90 % bootstrap interval (mean) | KID (mean) | KID subset SD |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        fids, los, his, kids, sds = [], [], [], [], []
        for d in range(args.draws):
            base = d * 2 * max(args.sizes)
            a, b = feats[base : base + n], feats[base + max(args.sizes) : base + max(args.sizes) + n]
            fids.append(fid(a, b))
            lo, hi = fid_bootstrap(a, b, seed=d)
            los.append(lo)
            his.append(hi)
            k = kid(a, b, seed=d)
            kids.append(k.value)
            sds.append(k.subset_std if k.subset_std is not None else float("nan"))
        print(
            f"| {n} | {np.mean(fids):.3g} | [{np.mean(los):.3g}, {np.mean(his):.3g}] | {np.mean(kids):.3g} | "
            f"{np.mean(sds):.3g} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
