"""Edit a volume with a model: ``prdit edit infill INPUT --box ... | --mask LABELS --out DIR``.

The volume is brought to the model's grid, the region is regenerated there (the known voxels
enforced at every sampler step: :mod:`prdit.editing`), and the region written back onto the
input's own grid; every voxel outside the region keeps its original value. Writes ``edited.nii.gz``
(HU, the input's geometry) and ``edited.json``: the sample sidecar of ``prdit sample`` plus what
was edited (the input, the region, how many voxels are synthetic).
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
        "--mask", metavar="LABELS", help="a label map of INPUT (NIfTI or DICOM SEG): its voxels > 0"
    )
    p.add_argument("--label", type=int, help="with --mask: only this label")
    p.add_argument("--model", metavar="CKPT", help="model to edit with (default: the bundled default model)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's recommendation, else 50)")
    p.add_argument("--sampler", choices=("hot", "cold"), help="default: the model's recommendation")
    p.add_argument("--k", type=int, help="hot-sampler multiplier (default: the model's recommendation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace edited.nii.gz / edited.json in DIR")
    add_threads_argument(p)
    add_precision_argument(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from prdit.atomic import write_text_atomic
    from prdit.checkpoint import CheckpointError, load_for_inference
    from prdit.cli import CliError
    from prdit.cli.sample import resolve_checkpoint_arg
    from prdit.data.io import VolumeReadError, read_volume, write_nifti
    from prdit.data.labels import LabelMapError, read_label_map
    from prdit.diffusion import run_to_end
    from prdit.editing import box_mask, model_grid_like, resample_onto, sample_infill
    from prdit.precision import choose_precision, with_precision
    from prdit.sampling import diffusion_for, sample_sidecar

    out = output_folder(args.out, "--out")
    target = out / "edited.nii.gz"
    if target.exists() and not args.overwrite:
        raise CliError(f"{target} already exists; choose another --out or pass --overwrite")
    try:
        volume = read_volume(args.input)
    except VolumeReadError as exc:
        raise CliError(str(exc)) from None
    if args.box:
        region = box_mask(volume, np.asarray(args.box[:3]), np.asarray(args.box[3:]))
        region_desc = {"box_lps_mm": [list(args.box[:3]), list(args.box[3:])]}
    else:
        try:
            labels = read_label_map(args.mask, volume)
        except LabelMapError as exc:
            raise CliError(str(exc)) from None
        region = labels.array == args.label if args.label is not None else labels.array > 0
        region_desc = {"mask": Path(args.mask).name, "label": args.label}
    if not region.any():
        raise CliError(f"the region covers no voxel of {args.input}; check --box (LPS mm) or --mask/--label")
    checkpoint = resolve_checkpoint_arg(args.model, "prdit edit")
    try:
        model, info = load_for_inference(checkpoint)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    threads_for_cpu(args.threads, torch.device("cpu"), "prdit edit")
    rec = info.sampler_defaults
    sampler, k, steps = args.sampler or rec.sampler, args.k or rec.k, args.steps or rec.steps or 50
    size = info.input_size
    grid = model_grid_like(volume, size, info.spacing)
    hu_grid = resample_onto(volume, grid)
    region_grid = (
        resample_onto(volume.with_array(region.astype(np.float32)), grid, nearest=True, fill=0.0) > 0.5
    )
    if not region_grid.any():
        raise CliError("the region is smaller than one voxel of the model's grid; make it larger")
    known = torch.as_tensor(info.hu_window.to_unit(hu_grid))[None, None].float()
    mask = torch.as_tensor(region_grid)[None, None]
    precision = choose_precision(args.precision, "cpu", model, tuple(known.shape))
    t0 = time.perf_counter()
    result = run_to_end(
        sample_infill(
            with_precision(model, precision),
            known,
            mask,
            sampler,
            steps,
            k,
            generator=torch.Generator().manual_seed(args.seed),
            diffusion=diffusion_for(info),
        )
    )
    edited_grid = grid.with_array(info.hu_window.to_hu(result[0, 0].numpy()).astype(np.float32))
    back = resample_onto(edited_grid, volume)
    edited = np.where(region, back, np.asarray(volume.array, dtype=np.float32)).astype(np.float32)
    sidecar = sample_sidecar(
        info,
        seed=args.seed,
        sampler=sampler,
        steps=steps,
        k=k,
        precision=precision.precision,
        edit={
            "kind": "infill",
            "input": Path(args.input).name,
            **region_desc,
            "synthetic_voxels": int(region.sum()),
            "total_voxels": int(region.size),
            "note": "voxels outside the region are the input's own; the region is synthetic",
        },
        seconds=round(time.perf_counter() - t0, 3),
    )
    write_nifti(volume.with_array(edited, sidecar=sidecar), target)
    write_text_atomic(out / "edited.json", json.dumps(sidecar, indent=2) + "\n")
    print(
        f"prdit edit: regenerated {int(region.sum()):,} of {region.size:,} voxels of {args.input} with "
        f"{info.display_name} ({sampler}, {steps} steps) in {sidecar['seconds']:.1f} s -> {target}",
        file=sys.stderr,
    )
    return 0
