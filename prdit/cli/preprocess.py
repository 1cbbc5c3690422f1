"""Turn LIDC-IDRI DICOM series, RAD-ChestCT .npz volumes or other scans into a training dataset.

Recipes (as published): lidc = resample to 1 mm (cubic), centre crop 256^3, clip [-1000, q0.999],
downsample to --size; rad = clip [-1000, 1000], centre crop 256^3, downsample; generic = 1 mm
linear resampling, crop, clip [-1000, 1000], downsample. Default normalisation maps a fixed HU
window to [-1, 1] (HU-recoverable); --norm minmax is the paper's per-volume option (not
HU-recoverable). Writes OUT/volumes/<case>.npy, manifest.json, train.txt and val.txt. Re-running
skips finished cases; failed cases are listed and the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="input folder (searched recursively) or a single file")
    parser.add_argument("output", metavar="OUT", help="dataset folder to write")
    parser.add_argument("--recipe", choices=("lidc", "rad", "generic"), default="generic")
    parser.add_argument("--size", type=int, default=128, help="output cubic edge in voxels (default 128)")
    parser.add_argument("--norm", choices=("window", "minmax"), default="window")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=(-1000.0, 1000.0),
        help="HU window mapped to [-1, 1] (default -1000 1000)",
    )
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--crop", type=int, default=None, help="override the recipe's 256 voxel crop")
    parser.add_argument("--spacing", type=float, default=None, help="override the recipe's resampling (mm)")
    parser.add_argument("--key", default=None, help="array key inside .npz files (default 'ct')")
    parser.add_argument(
        "--assume-spacing", type=float, default=None, help="spacing (mm) of inputs that store none (.npz)"
    )
    parser.add_argument("--val", type=int, default=None, help="validation cases (default min(200, 10%%))")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import sys

    from prdit.cli import CliError
    from prdit.data.preprocess import Settings, run_preprocess

    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    try:
        settings = Settings(
            recipe=args.recipe,
            size=args.size,
            norm=args.norm,
            window_low=args.window[0],
            window_high=args.window[1],
            dtype=args.dtype,
            crop=args.crop,
            spacing_mm=args.spacing,
            npz_key=args.key,
            assume_spacing=args.assume_spacing,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    summary = run_preprocess(
        args.input,
        args.output,
        settings,
        workers=args.workers,
        val_count=args.val,
        split_seed=args.split_seed,
        progress=not args.no_progress,
    )
    print(summary.text(), file=sys.stderr if summary.failed else sys.stdout)
    if settings.norm == "minmax":
        print("note: --norm minmax outputs are not HU-recoverable (per-volume scaling)", file=sys.stderr)
    return 0 if summary.ok else 1
