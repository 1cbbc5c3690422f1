"""float32 against bf16 autocast, measured: network evaluations, training steps and whole samples.

For each case the two formats run interleaved (fastest of several rounds, after a warm-up), so a
busy machine slows both alike; the table gives bf16's time as a fraction of float32's, how far its
output moves, and what ``--precision auto`` decides on this machine (:mod:`prdit.precision`).

    python benchmarks/bench_precision.py [--threads N] [--json runs/bench-precision.json]

Cases: the bundled 32^3 and 64^3 models (batch 1 and 2), PRDiT-B/12/4 (the paper's size) with
random weights at 64^3, one stage-3 training step (the bundled preset, batch 8), and two whole
64^3 samples (50 steps) from the same seeds in each format, compared in HU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from prdit.checkpoint import load_for_inference  # noqa: E402
from prdit.diffusion import IaNDiffusion, run_to_end, sample  # noqa: E402
from prdit.models import build_model  # noqa: E402
from prdit.paths import bundled_model  # noqa: E402
from prdit.precision import cpu_has_native_bf16, decide, probe_formats, with_precision  # noqa: E402


def forward_case(label: str, model, batch: int, size: int, rounds: int) -> dict:
    x = torch.randn(batch, 1, size, size, size, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 500)
    with torch.inference_mode():
        r = probe_formats(lambda: model(x, t), "cpu", rounds=rounds)
    return {
        "case": label,
        "fp32_ms": r.fp32_s * 1e3,
        "bf16_ms": r.bf16_s * 1e3,
        "ratio": r.ratio,
        "change": r.change,
        "auto": decide(r).precision,
    }


def training_case(rounds: int) -> dict:
    from prdit.config import load_config
    from prdit.data.normalize import HUWindow
    from prdit.training import build_training_model

    cfg = load_config("resources/configs/studio-default-stage3.yaml", [])
    model = build_training_model(cfg, HUWindow(), lambda m: None).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    diffusion = IaNDiffusion()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 64, 64, 64, generator=gen) * 2 - 1
    t = torch.randint(0, 1000, (8,), generator=gen)
    noise = torch.randn(x.shape, generator=gen)

    def step():
        losses = diffusion.training_losses(model, x, t=t, noise=noise)
        losses["loss"].backward()
        for p in trainable:
            p.grad = None
        return losses["x0_hat"]

    r = probe_formats(step, "cpu", rounds=rounds)
    return {
        "case": "stage-3 training step, 8 x 64^3 (forward + backward)",
        "fp32_ms": r.fp32_s * 1e3,
        "bf16_ms": r.bf16_s * 1e3,
        "ratio": r.ratio,
        "change": r.change,
        "auto": decide(r).precision,
    }


def sample_case(model, info, rounds: int) -> dict:
    from prdit.precision import PrecisionChoice

    size, steps = info.input_size, 50
    out, secs = {}, {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for name in ("fp32", "bf16"):
            net = with_precision(model, PrecisionChoice(name, "bench", ""))
            gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
            t0 = time.perf_counter()
            with torch.inference_mode():
                x = run_to_end(sample(net, (2, 1, size, size, size), "hot", steps, 2, generator=gens))
            secs[name].append(time.perf_counter() - t0)
            out[name] = info.hu_window.to_hu(x.numpy())
    diff = np.abs(out["bf16"] - out["fp32"])
    return {
        "case": f"2 samples {size}^3, hot k=2, 50 steps (whole run)",
        "fp32_ms": min(secs["fp32"]) * 1e3,
        "bf16_ms": min(secs["bf16"]) * 1e3,
        "ratio": min(secs["bf16"]) / min(secs["fp32"]),
        "mean_abs_hu": float(diff.mean()),
        "p99_abs_hu": float(np.percentile(diff, 99)),
        "max_abs_hu": float(diff.max()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("runs/bench-precision.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    small, _ = load_for_inference(bundled_model("fast-32"))
    big, info = load_for_inference(bundled_model("default"))
    for b in (1, 2):
        rows.append(forward_case(f"fast-32 forward, {b} x 32^3", small, b, 32, args.rounds))
        rows.append(forward_case(f"default (64^3) forward, {b} x 64^3", big, b, 64, args.rounds))
    torch.manual_seed(0)
    paper = build_model("PRDiT-B/12/4", input_size=64).eval()
    with torch.no_grad():  # the zero-initialised read-outs would make every output 0: perturb all weights
        for p in paper.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    rows.append(forward_case("PRDiT-B/12/4 forward, 1 x 64^3 (random weights)", paper, 1, 64, args.rounds))
    del paper
    rows.append(training_case(max(1, args.rounds - 1)))
    rows.append(sample_case(big, info, max(1, args.rounds - 1)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "load_average_1min_at_end": load,
        "torch": torch.__version__,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"CPU capability {report['capability']}, native bf16 {report['cpu_native_bf16']}, "
        f"{args.threads} threads, load {load:.1f}"
    )
    print("| case | fp32 | bf16 | bf16 / fp32 | output change | auto picks |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        change = (
            f"{r['change']:.1e} (relative RMS)"
            if "change" in r
            else f"mean {r['mean_abs_hu']:.1f} HU, p99 {r['p99_abs_hu']:.1f}, max {r['max_abs_hu']:.0f}"
        )
        print(
            f"| {r['case']} | {r['fp32_ms']:.0f} ms | {r['bf16_ms']:.0f} ms | {r['ratio']:.2f} | {change} | "
            f"{r.get('auto', '-')} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
