"""Write a single-file, inference-only model (.safetensors with metadata) from a training checkpoint.

This is how the bundled default model is made: EMA weights, float16, optionally int8 for the large
matrices (weight-only, per output channel), plus the metadata the studio and `prdit sample` need
(model name, input size, HU window, spacing, training step, the config).
"""

from __future__ import annotations

import argparse

from prdit.sampler_names import SAMPLERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder, a step_* folder of one, or a checkpoint file")
    parser.add_argument("out", help="output .safetensors file")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema", help="which weights")
    parser.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16"], default="float16", help="storage type"
    )
    parser.add_argument("--quantize", choices=["none", "int8"], default="none", help="int8 large matrices")
    parser.add_argument(
        "--recommend-k",
        type=int,
        metavar="K",
        help="record the hot-sampler multiplier this model was tuned for (benchmarks/tune_sampler.py); "
        "prdit sample and the studio then default to it",
    )
    parser.add_argument(
        "--recommend-steps", type=int, metavar="N", help="record the sampling step count it was tuned for"
    )
    parser.add_argument(
        "--recommend-sampler",
        choices=SAMPLERS,
        help="record the sampler it was tuned for (default hot; benchmarks/sampler_quality.py)",
    )
    parser.add_argument("--recommend-note", metavar="TEXT", help="how the recommendation was measured")
    parser.add_argument(
        "--recommend-window",
        nargs=2,
        type=float,
        metavar=("WIDTH", "LEVEL"),
        help="record the display window (HU) the model's volumes are meant to be seen in, e.g. 1500 -600 "
        "(the lung window); the studio applies it when a generation starts",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from prdit.checkpoint import CheckpointError, export_model, load_for_inference
    from prdit.cli import CliError
    from prdit.cli.paths import output_file
    from prdit.sampler_defaults import PAPER_K, DisplayWindow, SamplerDefaults

    output_file(args.out, "OUT")
    sampling = None
    if args.recommend_k is not None or args.recommend_steps is not None or args.recommend_sampler:
        k = PAPER_K if args.recommend_k is None else args.recommend_k
        sampler = args.recommend_sampler or "hot"
        # built twice so that the error names the flag that is wrong
        for flag, fields in (
            ("--recommend-k", {"k": k, "sampler": sampler}),
            ("--recommend-steps", {"k": k, "steps": args.recommend_steps, "sampler": sampler}),
        ):
            try:
                sampling = SamplerDefaults(**fields)
            except ValueError as exc:
                raise CliError(f"{flag}: {exc}") from None
    elif args.recommend_note:
        raise CliError("--recommend-note needs --recommend-sampler, --recommend-k or --recommend-steps")
    display = None
    if args.recommend_window:
        try:
            display = DisplayWindow(*args.recommend_window)
        except ValueError as exc:
            raise CliError(f"--recommend-window: {exc}") from None
    if Path(args.checkpoint).is_file() and Path(args.checkpoint).suffix == ".safetensors":
        # an exported model: new recommendations, the tensors copied as they are (no re-quantizing)
        from prdit.checkpoint.export import restamp_model

        if sampling is None and display is None:
            raise CliError(
                f"{args.checkpoint} is already a single-file model; give --recommend-sampler/-k/-steps or "
                "--recommend-window to record new recommendations in a copy"
            )
        try:
            out = restamp_model(args.checkpoint, args.out, sampling, args.recommend_note, display)
        except CheckpointError as exc:
            raise CliError(str(exc)) from None
        print(f"{args.checkpoint}: tensors copied unchanged, recommendations replaced")
    else:
        out = export_model(
            args.checkpoint,
            args.out,
            use_ema=args.weights == "ema",
            dtype=getattr(torch, args.dtype),
            quantize=None if args.quantize == "none" else args.quantize,
            sampling=sampling,
            sampling_note=args.recommend_note,
            display=display,
        )
    _, info = load_for_inference(out)  # proves the file loads before we report success
    size_mb = Path(out).stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB): {info.display_name} sha256 {info.sha256[:16]}…")
    if sampling is not None:
        print(f"  sampling: {info.sampler_defaults.describe()}")
    if display is not None:
        print(f"  display window: {info.display_window.describe()}")
    return 0
