"""Benchmark the PRDiT network: time per volume and peak memory, forward and forward+backward,
per variant and size, and the ``sdpa`` attention backend against the explicit ``math`` one.

Every case runs in a fresh subprocess so that its peak memory is its own:
* CPU: peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` after warm-up)
  minus the resident memory just before the measured passes, plus the process's total peak.
* CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the passes.

Usage::

    python benchmarks/bench_model.py                       # the default CPU plan, writes docs/benchmarks.md
    python benchmarks/bench_model.py --device cuda         # 128^3 and 256^3 on a GPU
    python benchmarks/bench_model.py --quick --no-write    # a smoke run

The "## Model" section of ``docs/benchmarks.md`` is replaced; other sections are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Model"

# (variant, size, backend, mode) per device. Sizes: 32/64/128 on CPU, 128/256 on CUDA.
CPU_PLAN = (
    [("PRDiT-XS/12/0", s, "sdpa", m) for s in (32, 64, 128) for m in ("fwd", "fwdbwd")]
    + [("PRDiT-XS/12/4", s, "sdpa", m) for s in (32, 64) for m in ("fwd", "fwdbwd")]
    + [("PRDiT-B/12/4", s, "sdpa", m) for s in (32, 64, 128) for m in ("fwd", "fwdbwd")]
    + [
        ("PRDiT-B/12/4", 64, "math", "fwd"),
        ("PRDiT-B/12/4", 64, "math", "fwdbwd"),
        ("PRDiT-B/12/4", 128, "math", "fwd"),
    ]
)
CUDA_PLAN = [
    (v, s, "auto", m)
    for v in ("PRDiT-B/12/4", "PRDiT-B/12/12")
    for s in (128, 256)
    for m in ("fwd", "fwdbwd")
] + [("PRDiT-B/12/4", s, b, "fwd") for s in (128, 256) for b in ("sdpa", "math")]
QUICK_PLAN = [("PRDiT-XS/12/2", 32, "sdpa", "fwd"), ("PRDiT-XS/12/2", 32, "math", "fwdbwd")]
# Attention alone at the token counts of 128^3 and 256^3 volumes (XS width: 6 heads x 32).
ATTN_PLAN = [(4096, 6, 32, "sdpa"), (4096, 6, 32, "math"), (32768, 6, 32, "sdpa")]


# ---------------------------------------------------------------------- worker (one case per process)
def _status(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        pass


def _timed(fn, device, min_total: float, max_repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per call. On a shared machine wall time grows with the load,
    CPU time (all threads) much less, so both are reported."""
    import torch

    wall: list[float] = []
    cpu: list[float] = []
    while len(wall) < max_repeats and (not wall or sum(wall) < min_total):
        if device == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def run_case(case: dict) -> dict:
    import torch

    from prdit.models import build_model

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    device = case["device"]
    model = build_model(case["variant"], input_size=case["size"], attention=case["backend"]).to(device)
    s = case["size"]
    x = torch.rand(case["batch"], 1, s, s, s, device=device) * 2 - 1
    t = torch.randint(0, 1000, (case["batch"],), device=device)

    if case["mode"] == "fwd":
        model.eval()

        def step():
            with torch.no_grad():
                model(x, t)
    else:
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            out = model(x, t)
            out.float().square().mean().backward()

    # Peak counted from here: the warm-up pass (kernels, allocator, thread pools, gradients) and the
    # measured passes, but not the model's construction.
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _reset_peak()
        before = _status("VmRSS")
    step()
    times, cpu = _timed(step, device, case["min_total"], case["max_repeats"])
    if device == "cuda":
        peak_delta = torch.cuda.max_memory_allocated() - before
        peak_total = torch.cuda.max_memory_allocated()
    else:
        peak_delta = _status("VmHWM") - before
        peak_total = _status("VmHWM")
    cfg = model.config
    return {
        **case,
        "tokens": cfg.grid_for(s) ** 3,
        "params": model.num_parameters(),
        "seconds": statistics.median(times) / case["batch"],
        "cpu_seconds": statistics.median(cpu) / case["batch"],
        "repeats": len(times),
        "peak_delta": peak_delta,
        "peak_total": peak_total,
    }


def run_attention_case(case: dict) -> dict:
    import torch

    from prdit.models.attention import attend

    torch.set_num_threads(case["threads"])
    n, h, d, device = case["tokens"], case["heads"], case["head_dim"], case["device"]
    q, k, v = (torch.randn(1, n, h, d, device=device) for _ in range(3))
    attend(q[:, :256], k[:, :256], v[:, :256], case["backend"])  # warm-up on a slice
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _reset_peak()
        before = _status("VmRSS")
    times, _ = _timed(
        lambda: attend(q, k, v, case["backend"]), device, case["min_total"], case["max_repeats"]
    )
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _status("VmHWM")) - before
    return {**case, "seconds": statistics.median(times), "repeats": len(times), "peak_delta": peak}


# ---------------------------------------------------------------------- driver
def _spawn(case: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {**case, "error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_description(device: str) -> str:
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        mem = torch.cuda.get_device_properties(0).total_memory / 2**30
        return f"{name} ({mem:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        m = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
        cpu = m.group(1).strip() if m else cpu
        m = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
        flags = set(m.group(1).split()) if m else set()
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags]
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
        mem = f", {mem_kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        mem = ""
    gpu = "no GPU" if not torch.cuda.is_available() else "GPU present but not used"
    return (
        f"{platform.machine()} CPU '{cpu}', {os.cpu_count()} logical cores "
        f"({'/'.join(simd) or 'no AVX2'}){mem}, {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def _fmt_s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def render(
    results: list[dict],
    attn: list[dict],
    device: str,
    threads: int,
    elapsed: float,
    load: tuple[float, float],
) -> str:
    lines = [
        SECTION,
        "",
        f"Measured by `python benchmarks/bench_model.py{' --device cuda' if device == 'cuda' else ''}` "
        f"on {time.strftime('%Y-%m-%d')}.",
        "",
        f"- Machine: {machine_description(device)}.",
        f"- float32, batch 1, {threads} torch thread(s); time is the median per volume over repeated passes "
        "after one warm-up pass; `fwd` is inference (`torch.no_grad`), `fwdbwd` one forward + backward of a "
        "scalar loss with fresh gradients.",
        "- Peak memory: "
        + (
            "`torch.cuda.max_memory_allocated` above the allocation before the passes (delta) and in total."
            if device == "cuda"
            else "resident set, measured in a fresh process per row: the peak (`VmHWM`, reset once the "
            "model and input exist) above the resident memory at that moment, over the warm-up and the "
            "measured passes (delta); and the whole process's peak including Python, torch and the "
            "weights (total)."
        ),
        f"- Whole run: {elapsed / 60:.1f} min; 1-minute load average {load[0]:.1f} at the start and "
        f"{load[1]:.1f} at the end (above {os.cpu_count()} means other jobs shared the cores and inflated "
        "the wall times; CPU time is the steadier figure).",
        "",
        "| variant | size | tokens | params (M) | attention | pass | s / volume | CPU s / volume "
        "| peak delta (MiB) | peak total (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['variant']} | {r['size']}^3 | | | {r['backend']} | {r['mode']} "
                f"| failed: {r['error']} | | | |"
            )
            continue
        lines.append(
            f"| {r['variant']} | {r['size']}^3 | {r['tokens']} | {r['params'] / 1e6:.1f} | {r['backend']} | "
            f"{r['mode']} | {_fmt_s(r['seconds'])} | {_fmt_s(r['cpu_seconds'])} | {_mib(r['peak_delta'])} "
            f"| {_mib(r['peak_total'])} |"
        )
    pairs = {}
    for r in results:
        if "error" not in r:
            pairs[(r["variant"], r["size"], r["mode"], r["backend"])] = r
    compare = []
    for (variant, size, mode, backend), r in pairs.items():
        if backend == "math" and (variant, size, mode, "sdpa") in pairs:
            f = pairs[(variant, size, mode, "sdpa")]
            compare.append(
                f"| {variant} | {size}^3 | {mode} | {_fmt_s(f['seconds'])} / {_fmt_s(r['seconds'])} | "
                f"{_mib(f['peak_delta'])} / {_mib(r['peak_delta'])} |"
            )
    if compare:
        lines += [
            "",
            "`sdpa` (fused, never materialises the N x N scores) against the explicit `math` reference:",
            "",
            "| variant | size | pass | s / volume sdpa / math | peak delta MiB sdpa / math |",
            "|---|---|---|---|---|",
            *compare,
        ]
    if attn:
        lines += [
            "",
            "Attention alone (one layer's softmax attention, 6 heads x 32, float32) at the token counts of "
            "128^3 (4096) and 256^3 (32768) volumes:",
            "",
            "| tokens | backend | s | peak delta (MiB) | one N x N score matrix per head (MiB) |",
            "|---|---|---|---|---|",
        ]
        for a in attn:
            nn_mib = _mib(a["tokens"] ** 2 * 4)
            if "error" in a:
                lines.append(f"| {a['tokens']} | {a['backend']} | failed: {a['error']} | | {nn_mib} |")
            else:
                lines.append(
                    f"| {a['tokens']} | {a['backend']} | {_fmt_s(a['seconds'])} | {_mib(a['peak_delta'])} "
                    f"| {nn_mib} |"
                )
        lines.append(
            "| 32768 | math | not run: needs 6 x 4,096 MiB of scores (24 GiB) plus the softmax copy "
            "| | 4,096 |"
        )
    target = pairs.get(("PRDiT-B/12/4", 128, "fwd", "sdpa"))
    if target and device == "cpu":
        ok = "fits" if target["peak_total"] < 3 * 2**30 else "DOES NOT fit"
        lines += [
            "",
            f"PRDiT-B/12/4 at 128^3, batch 1, forward on CPU: whole-process peak "
            f"{_mib(target['peak_total'])} MiB (+{_mib(target['peak_delta'])} MiB for the pass itself): "
            f"{ok} in the 3 GB budget.",
        ]
    return "\n".join(lines) + "\n"


INTRO = """# Benchmarks

Measured numbers for PRDiT Studio, each section written by the script named in it. Timings on the
shared 2-core development machine are indicative only: other jobs may run at the same time.
"""


def write_section(text: str, path: Path = DOC) -> None:
    """Replace (or append) the "## Model" section atomically, keeping every other section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.exists() else INTRO
    pattern = re.compile(rf"^{re.escape(SECTION)}\s*$.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    p.add_argument("--quick", action="store_true", help="two tiny cases, for a smoke test")
    p.add_argument("--no-write", action="store_true", help=f"print the section instead of updating {DOC}")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument(
        "--min-seconds", type=float, default=4.0, help="repeat a case until this much time is spent"
    )
    p.add_argument("--max-repeats", type=int, default=5)
    p.add_argument("--timeout", type=float, default=600.0, help="per case")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        case = json.loads(args.worker)
        result = run_attention_case(case) if case.get("kind") == "attention" else run_case(case)
        print(json.dumps(result))
        return 0

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: run the CPU plan instead (--device cpu)", file=sys.stderr)
            return 2
    plan = QUICK_PLAN if args.quick else (CUDA_PLAN if args.device == "cuda" else CPU_PLAN)
    common = {
        "device": args.device,
        "threads": args.threads,
        "min_total": args.min_seconds,
        "max_repeats": args.max_repeats,
    }
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    results = []
    for variant, size, backend, mode in plan:
        case = {**common, "variant": variant, "size": size, "backend": backend, "mode": mode, "batch": 1}
        r = _spawn(case, args.timeout)
        results.append(r)
        msg = r.get("error") or f"{_fmt_s(r['seconds'])} s/vol, peak +{_mib(r['peak_delta'])} MiB"
        print(f"{variant:15s} {size:4d}^3 {backend:5s} {mode:7s} {msg}", flush=True)
    attn = []
    if not args.quick:
        for n, h, d, backend in ATTN_PLAN if args.device == "cpu" else [(32768, 16, 64, "sdpa")]:
            case = {**common, "kind": "attention", "tokens": n, "heads": h, "head_dim": d, "backend": backend}
            r = _spawn(case, args.timeout)
            attn.append(r)
            print(
                f"attention {n:6d} tokens {backend:5s} {r.get('error') or _fmt_s(r['seconds'])}", flush=True
            )
    elapsed = time.perf_counter() - started
    text = render(results, attn, args.device, args.threads, elapsed, (load_start, os.getloadavg()[0]))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "attention": attn}, indent=1), encoding="utf-8")
    if args.no_write:
        print(text)
    else:
        write_section(text)
        print(f"wrote the '{SECTION}' section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
