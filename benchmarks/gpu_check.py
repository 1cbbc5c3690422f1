"""One command that checks the product on a CUDA GPU and reports what it measured.

Every CUDA path of the project (fused attention backends, bf16 autocast, TF32, NCCL under
torchrun, sampling and the studio on a GPU, the evaluation's feature network) is exercised once,
timed, and written to ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``:

1. environment: torch, CUDA, device name and memory, xformers;
2. model: PRDiT-B/12/4 at 128^3, forward and forward+backward, fp32 and bf16 autocast (time,
   peak memory, output change of bf16 against fp32);
3. attention: the xformers and SDPA backends on the same model and input (equal outputs, speed);
4. training: 20 steps of stage 1 and then stage 2 at 64^3 on phantoms through ``prdit train``
   under torchrun (NCCL, ``precision: auto`` = bf16 autocast), one process per GPU;
5. sampling: the bundled default model with its recommended sampler through ``prdit sample``,
   and one hot-sampler step of PRDiT-B/12/4 at 128^3 times the recommended steps;
6. the studio's scripted generation on the GPU (offscreen Qt; skipped when PySide6 is missing);
7. evaluation: the 3D ResNet-50 feature extractor at 128^3 (time per volume, peak memory).

Each check is independent: a failure is recorded with its message and the others still run.

    python benchmarks/gpu_check.py --out runs/gpu-check          # on a CUDA machine: < 8 minutes
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke  # the same code on CPU, tiny sizes (CI)

Reports from real GPUs are in docs/benchmarks.md ("GPU check").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Plan:
    """Sizes and counts: the real check on CUDA, tiny ones for the CPU smoke run."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.device = "cpu" if smoke else "cuda"
        self.model, self.size = ("PRDiT-XS/10/2", 32) if smoke else ("PRDiT-B/12/4", 128)
        self.train_size = 16 if smoke else 64
        self.train_steps = 2 if smoke else 20
        self.repeats = 1 if smoke else 3
        self.sample_steps = 2 if smoke else None  # None: the model's recommendation
        self.eval_volumes = 2 if smoke else 4


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device, repeats: int) -> tuple[float, object]:
    fn()  # warm-up (kernels, autotuning, allocator)
    _sync(device)
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peak_reset(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device) -> float | None:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _model_and_input(plan: Plan):
    """The plan's model with trained-looking weights (a fresh one predicts exactly zero), an input
    volume and a timestep; seeded, so every check that uses them sees the same ones."""
    import torch

    from prdit.models import build_model

    torch.manual_seed(0)
    model = build_model(plan.model, input_size=plan.size).to(plan.device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.randn(1, 1, plan.size, plan.size, plan.size, device=plan.device)
    return model, x, torch.tensor([500], device=plan.device)


# --------------------------------------------------------------------------------------- checks
def check_environment(plan: Plan) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": plan.device}
    if plan.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch (use --cpu-smoke for a CPU run)")
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpus": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    try:
        import xformers

        info["xformers"] = xformers.__version__
    except ImportError:
        info["xformers"] = None
    return info


def check_model(plan: Plan) -> dict:
    import torch

    model, x, t = _model_and_input(plan)
    out: dict = {"model": plan.model, "size": plan.size}
    ref = None
    for precision in ("fp32", "bf16"):

        def ctx(precision: str = precision):
            if precision == "bf16":
                return torch.autocast(torch.device(plan.device).type, dtype=torch.bfloat16)
            return torch.autocast(torch.device(plan.device).type, enabled=False)

        def forward():
            with torch.no_grad(), ctx():
                return model(x, t).float()

        def forward_backward():
            model.zero_grad(set_to_none=True)
            with ctx():
                loss = model(x, t).float().square().mean()
            loss.backward()

        _peak_reset(plan.device)
        secs, y = _timed(forward, plan.device, plan.repeats)
        out[f"fwd_{precision}_s"], out[f"fwd_{precision}_peak_mib"] = secs, _peak_mib(plan.device)
        _peak_reset(plan.device)
        secs, _ = _timed(forward_backward, plan.device, plan.repeats)
        out[f"fwdbwd_{precision}_s"], out[f"fwdbwd_{precision}_peak_mib"] = secs, _peak_mib(plan.device)
        if precision == "fp32":
            ref = y
        else:
            out["bf16_relative_change"] = float((y - ref).norm() / ref.norm().clamp_min(1e-12))
    return out


def check_attention(plan: Plan) -> dict:
    import torch

    backends = ["sdpa", "xformers"] if plan.device == "cuda" else ["sdpa", "math"]
    model, x, t = _model_and_input(plan)
    out: dict = {}
    outputs = {}
    for name in backends:
        try:
            model.set_attention_backend(name)

            def forward():
                with torch.no_grad():
                    return model(x, t)

            out[f"{name}_s"], outputs[name] = _timed(forward, plan.device, plan.repeats)
        except Exception as exc:  # noqa: BLE001 - e.g. xformers not installed: recorded, not fatal
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
    if len(outputs) == 2:
        a, b = outputs.values()
        out["max_abs_difference"] = float((a - b).abs().max())
        out["equal_within_1e-3"] = bool(out["max_abs_difference"] < 1e-3)
    return out


def _prdit(args: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prdit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _require(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"{what} exited {proc.returncode}: " + " | ".join(tail))


def check_training(plan: Plan, work: Path) -> dict:
    import torch

    from tests.helpers.torchrun import torchrun_cmd

    nproc = max(1, torch.cuda.device_count()) if plan.device == "cuda" else 1
    common = [
        f"model.input_size={plan.train_size}",
        "data.phantom_count=16",
        "data.phantom_val_count=2",
        f"train.max_steps={plan.train_steps}",
        f"train.batch_size={2 * nproc}",
        "train.precision=auto",
        f"train.device={plan.device}",
        "log.every=5",
        "log.val_every=0",
        "log.preview_every=0",
        f"checkpoint.every={plan.train_steps}",
    ]
    out: dict = {"processes": nproc, "size": plan.train_size, "steps": plan.train_steps}
    stage2 = ["stage=2", "model.name=PRDiT-XS/10/2", f"model.init_from={work / 'stage1'}"]
    stages = (("stage1", ["stage=1", "model.name=PRDiT-XS/10/0"]), ("stage2", stage2))
    for name, extra in stages:
        cmd = [
            *torchrun_cmd(nproc),
            "-m",
            "prdit",
            "train",
            "phantom-tiny",
            "--out",
            str(work / name),
            "--no-progress",
        ] + [a for s in common + extra for a in ("--set", s)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
        _require(proc, f"torchrun prdit train ({name})")
        out[f"{name}_wall_s"] = time.perf_counter() - t0
        rows = [
            json.loads(line)
            for line in (work / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        rates = [r["steps_per_s"] for r in rows if "steps_per_s" in r]
        losses = [r["loss"] for r in rows if "loss" in r]
        out[f"{name}_steps_per_s"] = rates[-1] if rates else None
        out[f"{name}_loss_first_last"] = [losses[0], losses[-1]] if losses else None
        backend = next((r.get("backend") for r in rows if r.get("event") == "start"), None)
        if backend:
            out[f"{name}_backend"] = backend
    return out


def check_sampling(plan: Plan, work: Path) -> dict:
    import torch

    from prdit.checkpoint import load_for_inference
    from prdit.diffusion import sample
    from prdit.models import build_model
    from prdit.paths import bundled_model

    out: dict = {}
    model_file = bundled_model("fast-32" if plan.smoke else "default")
    if model_file is None:
        raise RuntimeError("no bundled model in resources/models")
    args = [
        "sample",
        str(model_file),
        "--count",
        "1",
        "--out",
        str(work / "samples"),
        "--device",
        plan.device,
    ]
    args += ["--no-preview", "--no-progress", "--overwrite"]
    if plan.sample_steps:
        args += ["--steps", str(plan.sample_steps)]
    t0 = time.perf_counter()
    _require(_prdit(args), "prdit sample")
    out["bundled_model"] = model_file.name
    out["bundled_sample_wall_s"] = time.perf_counter() - t0  # includes start-up and loading
    _, info = load_for_inference(model_file)
    rec = info.sampler_defaults
    torch.manual_seed(0)
    big = build_model(plan.model, input_size=plan.size).to(plan.device).eval()
    shape = (1, 1, plan.size, plan.size, plan.size)

    def one_step():
        gen = sample(big, shape, rec.sampler, 2, rec.k, device=plan.device)
        with torch.inference_mode():
            next(gen)

    secs, _ = _timed(one_step, plan.device, plan.repeats)
    steps = rec.steps or 50
    out |= {
        "big_model": plan.model,
        "big_size": plan.size,
        "big_step_s": secs,
        "recommended_steps": steps,
        "big_volume_estimate_s": secs * steps,
    }
    out |= _check_estimate(big, plan, rec)
    return out


def _check_estimate(model, plan: Plan, rec) -> dict:
    """``--dry-run``'s traced memory and probed time against this device's own measurement
    (``torch.cuda.max_memory_allocated`` on a GPU) for a short run of the big model."""
    import torch

    from prdit.diffusion import IaNDiffusion, run_to_end, sample
    from prdit.estimate import estimate_sampling

    steps = 4
    diffusion = IaNDiffusion()
    est = estimate_sampling(
        model, plan.size, 1, steps, sampler=rec.sampler, k=rec.k, diffusion=diffusion, device=plan.device
    )
    shape = (1, 1, plan.size, plan.size, plan.size)
    _peak_reset(plan.device)
    before = torch.cuda.memory_allocated(plan.device) if torch.device(plan.device).type == "cuda" else 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        run_to_end(sample(model, shape, rec.sampler, steps, rec.k, device=plan.device, diffusion=diffusion))
    _sync(plan.device)
    seconds = time.perf_counter() - t0
    out = {"estimate_work_mib": est.work_bytes / 2**20, "estimate_s": est.seconds, "measured_s": seconds}
    peak = _peak_mib(plan.device)
    if peak is not None:
        out["measured_work_mib"] = peak - before / 2**20
        out["estimate_ratio"] = out["estimate_work_mib"] / max(out["measured_work_mib"], 1e-9)
    return out


def check_studio(plan: Plan, work: Path) -> dict:
    try:
        import PySide6  # noqa: F401
    except ImportError:
        return {"skipped": "PySide6 is not installed here"}
    shot = work / "studio-generate.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    from prdit.paths import bundled_model

    studio = "import sys; from prdit_app.main import main; sys.exit(main())"
    cmd = [
        sys.executable,
        "-c",
        studio,
        "--generate",
        "--device",
        plan.device,
        "--no-3d",
        "--window-size",
        "1200x800",
        "--screenshot",
        str(shot),
        "--quit",
    ]
    if plan.sample_steps:
        cmd += ["--steps", str(plan.sample_steps), "--checkpoint", str(bundled_model("fast-32"))]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    _require(proc, "prdit-studio --generate")
    if not shot.is_file() or shot.stat().st_size < 5000:
        raise RuntimeError(f"the studio saved no usable screenshot at {shot}")
    line = next((ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "generated" in ln), "")
    return {"wall_s": time.perf_counter() - t0, "report": line.strip(), "screenshot": shot.name}


def check_eval(plan: Plan) -> dict:
    import torch

    from prdit.metrics.features import build_default_extractor

    ext = build_default_extractor().to(plan.device)
    vols = torch.randn(plan.eval_volumes, plan.size, plan.size, plan.size) * 300.0
    _peak_reset(plan.device)
    secs, feats = _timed(lambda: ext.extract(vols), plan.device, plan.repeats)
    return {
        "volumes": plan.eval_volumes,
        "size": plan.size,
        "s_per_volume": secs / plan.eval_volumes,
        "peak_mib": _peak_mib(plan.device),
        "feature_shape": list(feats.shape),
    }


# --------------------------------------------------------------------------------------- report
def to_markdown(report: dict) -> str:
    env = report["checks"].get("environment", {}).get("result", {})
    lines = [
        f"### GPU check: {env.get('gpu', 'CPU smoke run')}",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, xformers {env.get('xformers')}, "
        f"{report['total_s']:.0f} s in all.",
        "",
        "| check | status | seconds | results |",
        "|---|---|---|---|",
    ]
    for name, entry in report["checks"].items():
        res = entry.get("result") or {}
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items())
        status = "ok" if entry["ok"] else f"FAILED: {entry['error']}"
        lines.append(f"| {name} | {status} | {entry['seconds']:.1f} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-check")
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the script, not a GPU"
    )
    ap.add_argument("--only", default=None, help="comma-separated subset of the checks")
    args = ap.parse_args(argv)
    plan = Plan(args.cpu_smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    checks: dict[str, Callable[[], dict]] = {
        "environment": lambda: check_environment(plan),
        "model": lambda: check_model(plan),
        "attention": lambda: check_attention(plan),
        "training": lambda: check_training(plan, work),
        "sampling": lambda: check_sampling(plan, work),
        "studio": lambda: check_studio(plan, work),
        "eval": lambda: check_eval(plan),
    }
    wanted = args.only.split(",") if args.only else list(checks)
    report: dict = {"smoke": plan.smoke, "checks": {}}
    start = time.perf_counter()
    for name in wanted:
        t0 = time.perf_counter()
        try:
            entry = {"ok": True, "result": checks[name]()}
        except Exception as exc:  # noqa: BLE001 - every check reports, whatever breaks
            entry = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-2000:],
            }
        entry["seconds"] = time.perf_counter() - t0
        report["checks"][name] = entry
        print(f"{name}: {'ok' if entry['ok'] else entry['error']} ({entry['seconds']:.1f} s)", flush=True)
        if name == "environment" and not entry["ok"]:
            break
    report["total_s"] = time.perf_counter() - start
    shot = work / "studio-generate.png"
    if shot.is_file():
        shutil.copy(shot, args.out / shot.name)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (args.out / "gpu_check.md").write_text(to_markdown(report), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    print(f"report: {args.out / 'gpu_check.md'}")
    return 0 if all(e["ok"] for e in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
