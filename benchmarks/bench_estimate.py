"""How close ``--dry-run`` is: estimated memory and time against the measured run, per case.

Memory is measured as torch's CPU allocator reports it (the profiler's memory events: peak of live
tensor bytes during the run, the quantity the estimate predicts); time is the run's own wall time.

    python benchmarks/bench_estimate.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from prdit.checkpoint import load_for_inference  # noqa: E402
from prdit.diffusion import IaNDiffusion, run_to_end, sample  # noqa: E402
from prdit.estimate import estimate_sampling, estimate_training, human_bytes, valid_size_for  # noqa: E402
from prdit.models import build_model  # noqa: E402
from prdit.paths import bundled_model  # noqa: E402


def measured_peak(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def sampling_row(label: str, model, size: int, batch: int, steps: int) -> dict:
    d = IaNDiffusion()
    est = estimate_sampling(model, size, batch, steps, diffusion=d, valid_size=valid_size_for(model))

    def run():
        with torch.inference_mode():
            run_to_end(sample(model, (batch, 1, size, size, size), "hot", steps, 2, diffusion=d))

    real = measured_peak(run)
    t0 = time.perf_counter()
    run()
    seconds = (time.perf_counter() - t0) / batch
    return {
        "case": label,
        "est_bytes": est.work_bytes,
        "real_bytes": real,
        "est_s": est.seconds,
        "real_s": seconds,
        "probe": est.probe,
    }


def training_row(label: str, model, size: int, batch: int) -> dict:
    d = IaNDiffusion()
    trainable = [p for p in model.parameters() if p.requires_grad]
    est = estimate_training(
        model,
        trainable,
        micro_batch=batch,
        size=size,
        grad_accum=1,
        diffusion=d,
        amp_dtype=None,
        device="cpu",
    )
    x = torch.rand(batch, 1, size, size, size)

    def step():
        d.training_losses(model, x)["loss"].backward()
        for p in trainable:
            p.grad = None

    real = measured_peak(step)
    t0 = time.perf_counter()
    step()
    return {
        "case": label,
        "est_bytes": est.work_bytes,
        "real_bytes": real,
        "est_s": est.seconds,
        "real_s": time.perf_counter() - t0,
        "probe": est.probe,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("runs/bench-estimate.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    small, _ = load_for_inference(bundled_model("fast-32"))
    big, _ = load_for_inference(bundled_model("default"))
    rows.append(sampling_row("sample fast-32, 2 x 32^3, 50 steps", small, 32, 2, 50))
    rows.append(sampling_row("sample default, 2 x 64^3, 50 steps", big, 64, 2, 50))
    torch.manual_seed(0)
    paper = build_model("PRDiT-B/12/4", input_size=64).eval()
    rows.append(sampling_row("sample PRDiT-B/12/4, 1 x 64^3, 10 steps", paper, 64, 1, 10))
    rows.append(training_row("train PRDiT-B/12/4, batch 1 x 64^3", paper.train(), 64, 1))
    del paper
    from prdit.config import load_config
    from prdit.data.normalize import HUWindow
    from prdit.training import build_training_model

    cfg = load_config("resources/configs/studio-default-stage3.yaml", [])
    stage3 = build_training_model(cfg, HUWindow(), lambda m: None).train()
    rows.append(training_row("train stage-3 preset, batch 8 x 64^3", stage3, 64, 8))
    load = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "load": load, "rows": rows}, indent=2) + "\n")
    print(f"{args.threads} threads, load average {load:.1f} at the end")
    print("| case | memory estimated | measured | ratio | time estimated | measured | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {human_bytes(r['est_bytes'])} | {human_bytes(r['real_bytes'])} | "
            f"{r['est_bytes'] / r['real_bytes']:.2f} | {r['est_s']:.2f} s | {r['real_s']:.2f} s | "
            f"{r['est_s'] / r['real_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
