"""Write procedural chest-CT phantoms as NIfTI files plus a manifest.json.

Each seed gives a different, anatomically plausible thorax in HU (see prdit.data.phantom). The
manifest records per case the seed, file, size, spacing and the anatomy measures (body, lung,
soft-tissue and bone fractions, lung left/right balance). Volumes are stored as int16 HU (rounded,
as scanners store them). Existing files are overwritten.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=10, help="number of phantoms (default 10)")
    parser.add_argument("--size", type=int, default=64, help="cubic edge in voxels, 32..256 (default 64)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed-offset", type=int, default=0, help="seed of the first phantom (default 0)")
    parser.add_argument(
        "--spacing",
        type=float,
        default=None,
        help="isotropic voxel size in mm (default 350/size: 350 mm FOV)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--labels", action="store_true", help="also write the structure label maps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _one(seed: int, size: int, spacing: float | None, out: str, labels: bool) -> dict:
    from pathlib import Path

    import numpy as np

    from prdit.data.anatomy import measure_anatomy
    from prdit.data.io import write_nifti
    from prdit.data.phantom import generate_phantom

    result = generate_phantom(seed, size=size, spacing=spacing, return_labels=True)
    # whole HU like a scanner writes them: int16 NIfTI, half the size of float32
    volume = result.volume.with_array(np.rint(result.volume.array).astype(np.int16))
    name = f"phantom_{seed:05d}.nii.gz"
    write_nifti(volume, Path(out) / name)
    record = {
        "seed": seed,
        "file": name,
        "size": size,
        "spacing": list(volume.spacing),
        "anatomy": measure_anatomy(volume),
    }
    if labels:
        label_name = f"phantom_{seed:05d}_labels.nii.gz"
        write_nifti(volume.with_array(result.labels.astype("int16")), Path(out) / label_name)
        record["labels"] = label_name
    return record


def run(args: argparse.Namespace) -> int:
    import datetime as dt
    import json
    import os
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from prdit import __version__
    from prdit.cli import CliError
    from prdit.data.phantom import MAX_SIZE, MIN_SIZE, Structure

    if args.count < 1:
        raise CliError(f"--count must be at least 1, got {args.count}")
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise CliError(f"--size must be in [{MIN_SIZE}, {MAX_SIZE}], got {args.size}")
    if args.seed_offset < 0:
        raise CliError(f"--seed-offset must be non-negative, got {args.seed_offset}")
    if args.spacing is not None and not args.spacing > 0:
        raise CliError(f"--spacing must be a positive number of mm, got {args.spacing}")
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    from prdit.cli.paths import output_folder

    out = output_folder(args.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed_offset, args.seed_offset + args.count))
    bar = tqdm(total=len(seeds), desc="phantoms", unit="vol", disable=args.no_progress)
    records = []
    if args.workers == 1:
        for s in seeds:
            records.append(_one(s, args.size, args.spacing, str(out), args.labels))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(_one, s, args.size, args.spacing, str(out), args.labels) for s in seeds]
            for f in futures:
                records.append(f.result())
                bar.update(1)
    bar.close()
    manifest = {
        "kind": "prdit-phantoms",
        "software_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "size": args.size,
        "units": "HU",
        "label_codes": {s.name.lower(): int(s) for s in Structure} if args.labels else None,
        "cases": records,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    print(f"wrote {len(records)} phantoms ({args.size}^3) and manifest.json to {out}")
    return 0
