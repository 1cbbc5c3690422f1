"""Edit a volume with a model, without retraining it.

``prdit edit infill INPUT --box ... | --sphere ... | --mask LABELS --out DIR``: the volume is
brought to the model's grid, the region is regenerated there (the known voxels enforced at every
sampler step: :mod:`prdit.editing`), and the region written back onto the input's own grid; every
voxel outside the region keeps its original value. Writes ``edited.nii.gz`` (HU, the input's
geometry).

``prdit edit superres INPUT --out DIR``: a low-resolution volume becomes the measurement of a
sample on the model's grid (``factor`` times finer); the sample's block averages equal it. Writes
``superres.nii.gz`` on the model's grid (and ``trilinear.nii.gz``, the baseline, with
``--baseline``).

Each writes a JSON beside the volume: the sample sidecar of ``prdit sample`` plus what was edited;
``prdit export-dicom`` carries it into the series description.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from prdit.cli.paths import output_folder
from prdit.cli.precision import add_precision_argument
from prdit.cli.threads import add_threads_argument, threads_for_cpu
from prdit.sampler_names import SAMPLERS


def _add_common(p: argparse.ArgumentParser, denoised_because: str) -> None:
    p.add_argument("--model", metavar="CKPT", help="model to edit with (default: the bundled default model)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's recommendation, else 50)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the model's recommendation")
    p.add_argument("--k", type=int, help="hot-sampler multiplier (default: the model's recommendation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs already in DIR")
    add_threads_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "--end",
        choices=("sample", "denoised"),
        default="denoised",
        help=f"the last denoised estimate (default: {denoised_because}; docs/editing.md) or the sample",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="edit", metavar="EDIT", required=True)
    p = sub.add_parser("infill", help="regenerate a region of a volume so that it fits its surroundings")
    p.add_argument("input", help="the volume to edit (NIfTI, DICOM folder, .npy/.npz, MHA/NRRD), in HU")
    region = p.add_mutually_exclusive_group(required=True)
    region.add_argument(
        "--box",
        nargs=6,
        type=float,
        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
        help="the region as two opposite corners in patient LPS millimetres",
    )
    region.add_argument(
        "--sphere",
        nargs=4,
        type=float,
        metavar=("X", "Y", "Z", "R"),
        help="the region as a ball: centre in patient LPS millimetres and radius in mm",
    )
    region.add_argument(
        "--mask", metavar="LABELS", help="a label map of INPUT (NIfTI or DICOM SEG): its voxels > 0"
    )
    p.add_argument("--label", type=int, help="with --mask: only this label")
    _add_common(p, "fewer seams, closer HU")
    q = sub.add_parser(
        "superres", help="make a volume finer with the model; averaged back, it equals the input"
    )
    q.add_argument("input", help="the low-resolution volume (NIfTI, DICOM folder, .npy/.npz, MHA/NRRD)")
    q.add_argument(
        "--factor", type=int, default=2, choices=(2, 4), help="times finer than the measurement (default 2)"
    )
    q.add_argument("--baseline", action="store_true", help="also write trilinear.nii.gz (the baseline)")
    _add_common(q, "closest to the truth")


def run(args: argparse.Namespace) -> int:
    from prdit.cli import CliError
    from prdit.data.io import VolumeReadError, read_volume
    from prdit.editing import EditError

    out = output_folder(args.out, "--out")
    target = out / ("edited.nii.gz" if args.edit == "infill" else "superres.nii.gz")
    if target.exists() and not args.overwrite:
        raise CliError(f"{target} already exists; choose another --out or pass --overwrite")
    try:
        volume = read_volume(args.input)
    except VolumeReadError as exc:
        raise CliError(str(exc)) from None
    try:
        if args.edit == "infill":
            return _infill(args, volume, target)
        return _superres(args, volume, target)
    except EditError as exc:
        raise CliError(f"{args.input}: {exc}") from None


def _load(args: argparse.Namespace):
    """(model, info, sampler, k, steps) with the model's recommendations filling what is not given."""
    import torch

    from prdit.checkpoint import CheckpointError, load_for_inference
    from prdit.cli import CliError
    from prdit.cli.sample import resolve_checkpoint_arg

    checkpoint = resolve_checkpoint_arg(args.model, "prdit edit")
    try:
        model, info = load_for_inference(checkpoint)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    threads_for_cpu(args.threads, torch.device("cpu"), "prdit edit")
    rec = info.sampler_defaults
    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps must be at least 1, got {args.steps}")
    if args.k is not None and args.k < 1:
        raise CliError(f"--k must be at least 1, got {args.k}")
    return model, info, args.sampler or rec.sampler, args.k or rec.k, args.steps or rec.steps or 50


def _run_job(args: argparse.Namespace, job, model, sampler: str, k: int, steps: int):
    """Run ``job``'s guided sampler to the end; (final sample, precision, seconds)."""
    import torch

    from prdit.diffusion import run_to_end
    from prdit.precision import choose_precision, with_precision
    from prdit.sampling import diffusion_for

    shape = (1, 1, *job.grid.shape)
    precision = choose_precision(args.precision, "cpu", model, shape)
    t0 = time.perf_counter()
    result = run_to_end(
        job.steps(
            with_precision(model, precision),
            sampler,
            steps,
            k,
            generator=torch.Generator().manual_seed(args.seed),
            diffusion=diffusion_for(job.info),
            end=args.end,
        )
    )
    return result, precision.precision, round(time.perf_counter() - t0, 3)


def _write(volume, sidecar: dict, target: Path) -> None:
    from prdit.atomic import write_text_atomic
    from prdit.data.io import write_nifti

    write_nifti(volume.with_array(volume.array, sidecar=sidecar), target)
    sidecar_path = target.with_name(target.name.replace(".nii.gz", ".json"))
    write_text_atomic(sidecar_path, json.dumps(sidecar, indent=2) + "\n")


def _infill(args: argparse.Namespace, volume, target: Path) -> int:
    import numpy as np

    from prdit.cli import CliError
    from prdit.data.labels import LabelMapError, read_label_map
    from prdit.editing import box_mask, ellipsoid_mask, prepare_infill
    from prdit.sampling import sample_sidecar

    if args.box:
        region = box_mask(volume, np.asarray(args.box[:3]), np.asarray(args.box[3:]))
        region_desc = {"box_lps_mm": [list(args.box[:3]), list(args.box[3:])]}
    elif args.sphere:
        centre, radius = np.asarray(args.sphere[:3]), float(args.sphere[3])
        if radius <= 0:
            raise CliError(f"--sphere: the radius must be positive, got {radius}")
        region = ellipsoid_mask(volume, centre - radius, centre + radius)
        region_desc = {"sphere_lps_mm": {"centre": list(args.sphere[:3]), "radius": radius}}
    else:
        try:
            labels = read_label_map(args.mask, volume)
        except LabelMapError as exc:
            raise CliError(str(exc)) from None
        region = labels.array == args.label if args.label is not None else labels.array > 0
        region_desc = {"mask": Path(args.mask).name, "label": args.label}
    if not region.any():
        raise CliError(
            f"the region covers no voxel of {args.input}; check --box/--sphere (LPS mm) or --mask/--label"
        )
    model, info, sampler, k, steps = _load(args)
    job = prepare_infill(volume, region, info)
    result, precision, seconds = _run_job(args, job, model, sampler, k, steps)
    edited = job.write_back(result[0, 0])
    sidecar = sample_sidecar(
        info,
        seed=args.seed,
        sampler=sampler,
        steps=steps,
        k=k,
        precision=precision,
        edit={
            "kind": "infill",
            "end": args.end,
            "input": Path(args.input).name,
            **region_desc,
            **job.describe(),
            "note": "voxels outside the region are the input's own; the region is synthetic",
        },
        seconds=seconds,
    )
    _write(volume.with_array(edited), sidecar, target)
    print(
        f"prdit edit: regenerated {int(region.sum()):,} of {region.size:,} voxels of {args.input} with "
        f"{info.display_name} ({sampler}, {steps} steps) in {seconds:.1f} s -> {target}",
        file=sys.stderr,
    )
    return 0


def _superres(args: argparse.Namespace, volume, target: Path) -> int:
    from prdit.editing import prepare_superres
    from prdit.sampling import sample_sidecar

    model, info, sampler, k, steps = _load(args)
    job = prepare_superres(volume, info, args.factor)
    result, precision, seconds = _run_job(args, job, model, sampler, k, steps)
    edit = {
        "kind": "superres",
        "end": args.end,
        "input": Path(args.input).name,
        **job.describe(),
        "note": "every voxel is synthetic; its factor-block averages equal the input on the measurement grid",
    }
    run = {"seed": args.seed, "sampler": sampler, "steps": steps, "k": k, "precision": precision}
    sidecar = sample_sidecar(info, **run, edit=edit, seconds=seconds)
    _write(job.on_model_grid(result[0, 0]), sidecar, target)
    if args.baseline:
        note = "trilinear upsampling of the measurement"
        base = {**sidecar, "edit": {**edit, "kind": "trilinear", "note": note}}
        _write(job.trilinear(), base, target.with_name("trilinear.nii.gz"))
    g = job.low_grid
    print(
        f"prdit edit: super-resolved {args.input} ({g.shape[0]}x{g.shape[1]}x{g.shape[2]} at "
        f"{g.spacing[0]:.2f} mm) to {job.grid.shape[0]}^3 at {info.spacing[0]:.2f} mm with "
        f"{info.display_name} ({sampler}, {steps} steps) in {seconds:.1f} s -> {target}",
        file=sys.stderr,
    )
    return 0
