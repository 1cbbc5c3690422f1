"""Describe a volume file, a DICOM folder, a preprocessed dataset folder or a checkpoint.

For volumes: shape, voxel type, spacing, origin, direction (with its orientation code), field of
view and HU statistics; --anatomy adds the anatomy measures. For a DICOM folder with several
series: the list of series (choose one with --series UID). For a checkpoint (training run folder,
step_* folder, exported .safetensors, reference .pt): model, input size, stage, step, HU window,
spacing, parameters, quantisation, file size and SHA-256, read without building the model.
"""

from __future__ import annotations

import argparse

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        help="volume file, DICOM folder, dataset folder, or checkpoint (training run folder, step_* "
        "folder, exported .safetensors, reference .pt, or a bundled model's name: default, fast-32)",
    )
    parser.add_argument("--series", default=None, help="SeriesInstanceUID in a DICOM folder")
    parser.add_argument("--key", default=None, help="array key inside a .npz file")
    parser.add_argument("--anatomy", action="store_true", help="also print anatomy measures")


def orientation_code(direction) -> str:
    """Three letters naming where each index axis (i, j, k) points, e.g. 'LPS' or 'RAS'."""
    import numpy as np

    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    code = ""
    d = np.asarray(direction)
    for col in range(3):
        axis = int(np.argmax(np.abs(d[:, col])))
        code += letters[axis][0 if d[axis, col] > 0 else 1]
    return code


def describe_volume(volume) -> list[str]:
    import numpy as np

    arr = volume.array
    fov = [s * n for s, n in zip(volume.spacing, volume.size_ijk, strict=True)]
    q = np.percentile(arr, [1, 50, 99])
    lines = [
        f"shape (D, H, W): {volume.shape}   size (i, j, k): {volume.size_ijk}   type: {arr.dtype}",
        "spacing (mm):    " + ", ".join(f"{s:.4g}" for s in volume.spacing),
        "origin (LPS mm): " + ", ".join(f"{o:.2f}" for o in volume.origin),
        f"direction:       {orientation_code(volume.direction)} "
        + str(np.round(volume.direction, 4).tolist()),
        "field of view:   " + " x ".join(f"{f:.1f}" for f in fov) + " mm",
        f"HU: min {float(arr.min()):.1f}, max {float(arr.max()):.1f}, mean {float(arr.mean()):.1f}, "
        f"p1/p50/p99 {q[0]:.1f}/{q[1]:.1f}/{q[2]:.1f}",
    ]
    for key in ("series_uid", "modality", "series_description", "npz_key"):
        if volume.metadata.get(key):
            lines.append(f"{key}: {volume.metadata[key]}")
    if volume.metadata.get("spacing_known") is False:
        lines.append("note: the file stores no spacing; 1 mm shown")
    return lines


def is_checkpoint(path) -> bool:
    """A model file by its suffix, or a folder laid out like a training run / checkpoint."""
    from prdit.checkpoint import STEP_DIR_RE

    if path.is_file():
        return path.name.lower().endswith(CHECKPOINT_SUFFIXES)
    if not path.is_dir():
        return False
    if (path / "meta.json").is_file() and (path / "model.safetensors").is_file():
        return True  # a step_* folder (or a renamed copy of one)
    run_files = (path / "config.yaml").is_file() and (path / "metrics.jsonl").exists()
    if (path / "checkpoints").is_dir() or run_files:
        return True  # a run folder (with or without a checkpoint yet)
    return any(STEP_DIR_RE.match(p.name) and p.is_dir() for p in path.iterdir())  # its checkpoints/


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from prdit.cli import CliError
    from prdit.data.io import MultipleSeriesError, VolumeReadError, read_volume
    from prdit.paths import NoSuchModelError, resolve_model_arg

    try:
        path = resolve_model_arg(args.path)
    except NoSuchModelError:
        path = Path(args.path)
    if not path.exists():
        raise CliError(f"{path}: no such file or folder")
    if is_checkpoint(path):
        from prdit.checkpoint import CheckpointError
        from prdit.checkpoint.info import format_summary, summarize_checkpoint

        try:
            summary = summarize_checkpoint(path)
        except CheckpointError as exc:
            raise CliError(str(exc)) from exc
        print("\n".join(format_summary(summary)))
        return 0
    if path.is_dir() and (path / "manifest.json").exists():
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        cases = manifest.get("cases", [])
        print(f"{path}: dataset/phantom folder with {len(cases)} case(s)")
        for key in ("kind", "recipe", "size", "spacing", "norm", "hu_window", "hu_recoverable", "dtype"):
            if key in manifest:
                value = (
                    manifest[key]["name"]
                    if key == "recipe" and isinstance(manifest[key], dict)
                    else manifest[key]
                )
                print(f"  {key}: {value}")
        if manifest.get("failed"):
            print(f"  failed cases: {len(manifest['failed'])}")
        return 0
    try:
        volume = read_volume(path, args.series, key=args.key)
    except MultipleSeriesError as exc:
        print(f"{path}: {len(exc.series)} series; choose one with --series UID")
        for s in exc.series:
            print(f"  {s}")
        return 0
    except VolumeReadError as exc:
        raise CliError(str(exc)) from exc
    print(f"{path}")
    for line in describe_volume(volume):
        print(f"  {line}")
    if args.anatomy:
        from prdit.data.anatomy import measure_anatomy

        for k, v in measure_anatomy(volume).items():
            print(f"  {k}: {v:.4f}")
    return 0
