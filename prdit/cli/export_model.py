"""Write a single-file, inference-only model (.safetensors with metadata) from a training checkpoint.

This is how the bundled default model is made: EMA weights, float16, optionally int8 for the large
matrices (weight-only, per output channel), plus the metadata the studio and `prdit sample` need
(model name, input size, HU window, spacing, training step, the config).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a run folder, a step_* folder of one, or a checkpoint file")
    parser.add_argument("out", help="output .safetensors file")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema", help="which weights")
    parser.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16"], default="float16", help="storage type"
    )
    parser.add_argument("--quantize", choices=["none", "int8"], default="none", help="int8 large matrices")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from prdit.checkpoint import export_model, load_for_inference

    out = export_model(
        args.checkpoint,
        args.out,
        use_ema=args.weights == "ema",
        dtype=getattr(torch, args.dtype),
        quantize=None if args.quantize == "none" else args.quantize,
    )
    _, info = load_for_inference(out)  # proves the file loads before we report success
    size_mb = Path(out).stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB): {info.display_name} sha256 {info.sha256[:16]}…")
    return 0
