"""Generate volumes from a trained model: NIfTI in HU with the true spacing, a JSON sidecar per
sample (seed, sampler, steps, checkpoint SHA-256), PNG previews and optional DICOM series.

CHECKPOINT is a run folder, a checkpoints/step_* folder, an exported .safetensors model, a
reference-layout .pt (then --model and --input-size may be needed), or the name of a model bundled
in resources/models (``default``: the 64^3 studio model, ``fast-32``: its 32^3 base); without it,
the bundled default. Sample i uses seed SEED+i, so
it is the same whatever --batch-size; under torchrun each rank writes its own share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prdit.cli.paths import output_folder
from prdit.cli.precision import add_precision_argument, precision_for
from prdit.cli.progress import add_progress_argument, progress_mode
from prdit.cli.threads import add_threads_argument, threads_for_cpu
from prdit.estimate import sampling_needs_check
from prdit.sampler_defaults import DEFAULT_STEPS
from prdit.sampler_names import SAMPLERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        nargs="?",
        default=None,
        help="run folder, step folder, exported .safetensors, reference .pt, or the name of a bundled "
        "model (default, fast-32); default: the bundled default model",
    )
    parser.add_argument("--count", type=int, default=1, help="number of volumes (default 1)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (default: what the model file recommends, else 21 = 20 network evaluations, "
        "measured in docs/sampling.md)",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="default: what the model file recommends, else hot (the paper's best); v2m and v2m-sde: "
        "multistep solvers for few steps (docs/sampling.md)",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="hot sampler multiplier (default: what the model file recommends, else 2, the paper's best; "
        "prdit info shows it)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sample i uses seed SEED+i (default 0)")
    parser.add_argument("--start-index", type=int, default=0, help="first sample index (default 0)")
    parser.add_argument("--batch-size", type=int, default=1, help="volumes generated together (default 1)")
    parser.add_argument("--out", metavar="DIR", help="output folder (required unless --dry-run)")
    parser.add_argument(
        "--dicom", action="store_true", help="also write a synthetic CT DICOM series per sample"
    )
    parser.add_argument("--no-preview", action="store_true", help="do not write PNG previews")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--model", help="variant of a reference .pt, e.g. PRDiT-B/12/4 (inferred when omitted)"
    )
    parser.add_argument("--input-size", type=int, help="volume edge of a reference .pt, e.g. 128")
    parser.add_argument(
        "--hu-window",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="HU window of a reference .pt (default -1000 1000)",
    )
    parser.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help="voxel spacing in mm for a reference .pt (default: recorded, else 1 1 1)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing samples")
    parser.add_argument("--skip-existing", action="store_true", help="only generate samples not yet written")
    add_progress_argument(parser)
    add_threads_argument(parser)
    add_precision_argument(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="load the model and print the estimated peak memory and time per volume (one traced sampler "
        "step and a short timed probe) without sampling; exit status 1 if it would not fit",
    )


def resolve_checkpoint_arg(arg: str | None, who: str = "prdit sample") -> Path:
    """:func:`prdit.paths.resolve_model_arg` for the CLI: says when it falls back to the default."""
    from prdit.cli import CliError
    from prdit.paths import NoSuchModelError, resolve_model_arg

    try:
        found = resolve_model_arg(arg)
    except NoSuchModelError as exc:
        raise CliError(str(exc)) from None
    if arg is None:
        print(f"{who}: no checkpoint given; using the bundled default model {found}")
    return found


def run(args: argparse.Namespace) -> int:
    from prdit.cli import CliError

    for name in ("count", "steps", "k", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.start_index < 0:
        raise CliError(f"--start-index must be >= 0, got {args.start_index}")
    if not args.out and not args.dry_run:
        raise CliError("--out DIR is required (the folder the samples are written to)")
    if args.out:
        output_folder(args.out, "--out")

    import time

    import torch

    from prdit.checkpoint import CheckpointError, load_for_inference
    from prdit.data.normalize import HUWindow
    from prdit.distributed import cleanup, init_distributed
    from prdit.sampler_defaults import SamplerDefaults
    from prdit.sampling import SampleSpec, generate_to_folder

    try:
        dist = init_distributed(args.device)
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"--device: {exc}") from None
    try:
        window = HUWindow(*args.hu_window) if args.hu_window else None
    except ValueError as exc:
        raise CliError(f"--hu-window: {exc}") from None
    checkpoint = resolve_checkpoint_arg(args.checkpoint)
    try:
        model, info = load_for_inference(
            checkpoint,
            device=dist.device,
            use_ema=not args.raw_weights,
            model_name=args.model,
            input_size=args.input_size,
            hu_window=window,
            spacing=tuple(args.spacing) if args.spacing else None,
        )
    except CheckpointError as exc:
        cleanup(dist)
        raise CliError(str(exc)) from None
    if not args.raw_weights and info.weights == "model" and Path(checkpoint).is_dir() and dist.is_main:
        print(
            f"prdit sample: note: {checkpoint} holds no EMA weights (ema.safetensors); sampling with the raw "
            "training weights instead",
            file=sys.stderr,
        )
    recommended = info.sampler_defaults
    args.sampler = args.sampler or recommended.sampler
    args.k = args.k or recommended.k
    args.steps = args.steps or recommended.steps or DEFAULT_STEPS
    if dist.is_main and recommended.recommended:
        used = SamplerDefaults(args.sampler, args.k, args.steps).describe(origin=False)
        print(f"prdit sample: the model recommends {recommended.describe(origin=False)}; using {used}")
    spec = SampleSpec(
        count=args.count,
        steps=args.steps,
        sampler=args.sampler,
        k=args.k,
        seed=args.seed,
        batch_size=args.batch_size,
        start_index=args.start_index,
    )
    governor = threads_for_cpu(args.threads, dist.device, "prdit sample" if dist.is_main else None)
    size = info.input_size
    shape = (min(args.batch_size, args.count), 1, size, size, size)
    if args.dry_run or sampling_needs_check(dist.device, shape[0], size):
        fits = _memory_check(model, info, args, dist.device)  # before anything of the run's size
        if args.dry_run or not fits:
            cleanup(dist)
            return 0 if fits else 1
    precision = precision_for(
        args.precision, dist.device, model, shape, "prdit sample" if dist.is_main else None
    )
    bar = None
    mode = progress_mode(args)
    if dist.is_main and mode == "jsonl":
        from prdit.run_log import emit_progress

        written = [0]
        share = len(range(dist.rank, args.count, dist.world_size))

        def on_step(done: int, total: int) -> None:
            emit_progress("sample steps", done, total)

        def on_sample(out) -> None:
            written[0] += 1
            emit_progress("samples", written[0], share, last=out.nifti.name)

    elif dist.is_main and mode == "bar":
        from tqdm import tqdm

        share = len(range(dist.rank, args.count, dist.world_size))
        bar = tqdm(total=share, desc=f"sample {info.display_name}", unit="vol", dynamic_ncols=True)
        step_bar = tqdm(total=0, desc="  steps", unit="step", leave=False, dynamic_ncols=True)

        def on_step(done: int, total: int) -> None:
            if step_bar.total != total:
                step_bar.total = total
            step_bar.update(done - step_bar.n)

        def on_sample(out) -> None:
            bar.update(1)
            bar.set_postfix(last=out.nifti.name, s_per_vol=f"{out.seconds:.1f}", refresh=False)
    else:
        on_step = on_sample = None  # type: ignore[assignment]
    progress_step = on_step

    def on_step(done: int, total: int) -> None:  # noqa: F811 - wraps the progress bar's callback
        if governor is not None:
            governor.tick()
        if progress_step is not None:
            progress_step(done, total)

    t0 = time.perf_counter()
    try:
        results = generate_to_folder(
            model,
            info,
            args.out,
            spec,
            device=dist.device,
            rank=dist.rank,
            world_size=dist.world_size,
            previews=not args.no_preview,
            dicom=args.dicom,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
            on_step=on_step,
            on_sample=on_sample,
            precision=precision,
        )
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar is not None:
            step_bar.close()
            bar.close()
        cleanup(dist)
    elapsed = time.perf_counter() - t0
    mem = ""
    if dist.device.type == "cuda":
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated(dist.device) / 2**30:.1f} GiB"
    print(
        f"prdit sample: rank {dist.rank} wrote {len(results)} volume(s) to {args.out} in {elapsed:.1f} s "
        f"({info.display_name} at {info.input_size}^3, {args.sampler} sampler, {args.steps} steps, "
        f"{precision.precision}{mem})"
    )
    return 0


def _memory_check(model, info, args, device) -> bool:
    """Whether the run fits (:func:`prdit.estimate.estimate_sampling_run`). ``--dry-run`` prints the
    estimate, timed in the precision the run would use; otherwise a run that would not fit is
    refused before it starts. Small CPU runs are not checked by the caller: they fit wherever the
    model loads, and the check costs about a second."""
    from prdit.cli import CliError
    from prdit.estimate import EstimateError, estimate_sampling_run, human_bytes
    from prdit.precision import PrecisionSettingError
    from prdit.sampling import diffusion_for

    size, batch = info.input_size, min(args.batch_size, args.count)
    try:
        est, choice = estimate_sampling_run(
            model,
            size,
            batch,
            args.steps,
            sampler=args.sampler,
            k=args.k,
            diffusion=diffusion_for(info),
            device=device,
            precision=args.precision,
            probe=args.dry_run,
        )
    except PrecisionSettingError as exc:
        raise CliError(str(exc)) from None
    except EstimateError as exc:
        if args.dry_run:
            raise CliError(str(exc)) from None
        print(f"prdit sample: memory estimate skipped: {exc}", file=sys.stderr)
        return True
    if args.dry_run:
        if est.fits:
            print(f"prdit sample: computes in {choice.describe()}", file=sys.stderr)
        print("\n".join(est.lines()))
        return est.fits
    if not est.fits:
        raise CliError(
            f"{batch} volume(s) of {size}^3 at once need ~{human_bytes(est.work_bytes)} on top of "
            f"the model's {human_bytes(est.resident_bytes)}, but only "
            f"{human_bytes(est.available_bytes or 0)} is available on {device}: {est.advice()} "
            "(prdit sample --dry-run shows the whole estimate)"
        )
    return True
