"""Cost of candidate stage-3 residual branches on a frozen base: why the bundled 64^3 model's branch
is patch 10, stride 8, SwiGLU width 192.

For every (patch, width) candidate this builds the stage-3 model on the given base and measures,
round-robin over the candidates (so a load change on a shared machine hits all of them alike):

* trainable parameters, and the size of the int8 model file (base + branch, as ``prdit
  export-model --quantize int8`` writes it);
* one training step (forward, backward, AdamW) at the training batch;
* one sampling evaluation of a single volume (what each sampler step costs in the studio).

    python benchmarks/stage3_branch_cost.py --base resources/models/fast-32.safetensors --size 64

Stride stays 8: it is the edge of the block each token writes, so stride 4 would mean 8x the
tokens (and 8x the cost) for the same receptive field. Results are in docs/bundled-model.md.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def int8_file_bytes(model) -> int:
    """Bytes of the model's int8 safetensors export (large matrices int8, the rest float16)."""
    import torch
    from safetensors.torch import save

    from prdit.checkpoint import QSCALE_SUFFIX, quantize_state

    state, _ = quantize_state({k: v.detach() for k, v in model.state_dict().items()})
    state = {
        k: v.to(torch.float16) if v.is_floating_point() and not k.endswith(QSCALE_SUFFIX) else v.contiguous()
        for k, v in state.items()
    }
    return len(io.BytesIO(save(state)).getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=ROOT / "resources" / "models" / "fast-32.safetensors")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patches", default="10,12")
    ap.add_argument("--widths", default="128,192,256,512,0", help="SwiGLU widths; 0 = the token width p^3")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    import torch

    from prdit.checkpoint import load_for_inference
    from prdit.models import build_highres_model

    torch.set_num_threads(args.threads)
    base, info = load_for_inference(args.base)
    cands = [
        (p, w or None) for p in map(int, args.patches.split(",")) for w in map(int, args.widths.split(","))
    ]
    models, opts = {}, {}
    for p, w in cands:
        torch.manual_seed(0)
        m = build_highres_model(base, input_size=args.size, patch=p, width=w)
        models[(p, w)] = m
        opts[(p, w)] = torch.optim.AdamW(m.trainable_parameters(), lr=1e-4)
    x = torch.randn(args.batch, 1, args.size, args.size, args.size)
    t = torch.randint(0, 1000, (args.batch,))
    times: dict = {c: {"train": [], "sample": []} for c in cands}
    for r in range(args.rounds + 1):  # round 0 warms up
        for c in cands:
            m, opt = models[c], opts[c]
            m.train()
            t0 = time.perf_counter()
            m(x, t).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            m.eval()
            with torch.inference_mode():
                m(x[:1], t[:1])
            t2 = time.perf_counter()
            if r:
                times[c]["train"].append(t1 - t0)
                times[c]["sample"].append(t2 - t1)
    rows = []
    print(f"base {args.base.name} ({info.model_name} at {info.input_size}^3) -> {args.size}^3, "
          f"batch {args.batch}, {args.threads} threads, min of {args.rounds} interleaved rounds")  # fmt: skip
    print("| patch | SwiGLU width | trainable params | int8 file | train step | one evaluation |")
    print("|---|---|---|---|---|---|")
    for (p, w), m in models.items():
        row = {
            "patch": p,
            "width": w or p**3,
            "trainable": m.num_parameters(trainable_only=True),
            "file_mb": int8_file_bytes(m) / 1e6,
            "train_s": min(times[(p, w)]["train"]),
            "sample_ms": 1e3 * min(times[(p, w)]["sample"]),
        }
        rows.append(row)
        print(f"| {p} | {row['width']} | {row['trainable'] / 1e6:.1f} M | {row['file_mb']:.1f} MB | "
              f"{row['train_s']:.2f} s | {row['sample_ms']:.0f} ms |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
