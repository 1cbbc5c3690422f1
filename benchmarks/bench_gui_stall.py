"""Does the studio stay responsive while it samples? The worst event-loop gap during generation.

Run (2-core CI machine, no display)::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py --model PRDiT-B/12/4 --size 128 --steps 4

What it does: builds the real main window (slice views; the 3D view with ``--with-3d``), installs
the real Generate panel, and samples an untrained model of the requested variant through the real
worker (same code path as the Start button), with a 10 ms QTimer on the GUI thread recording the
interval between its ticks. A responsive GUI fires it every ~10 ms; the worst interval is the
longest freeze a user could feel. Each configuration is run for each torch thread count given.

An untrained network costs exactly as much per step as a trained one, so the timings are real;
only the pictures are not. Results (worst / p99 gap, step time, frames drawn) are printed as a
Markdown table for docs/benchmarks.md "## Studio generation". Not a test: depends on machine load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import torch  # noqa: E402 - imported before the window shows, as the studio does
from PySide6.QtWidgets import QApplication  # noqa: E402


def run_one(app, model_name: str, size: int, steps: int, threads: int, with_3d: bool, samples: int) -> dict:
    from prdit.model_info import ModelInfo
    from prdit.models import build_model
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow
    from prdit_app.panels.generate import GeneratePanel
    from prdit_app.stall_meter import StallMeter

    torch.manual_seed(0)
    model = build_model(model_name, input_size=size).eval()
    window = MainWindow(enable_3d=with_3d, vtk_offscreen=True if with_3d else None)
    install_panels(window)
    window.resize(1600, 1000)
    window.show()
    panel = window.findChild(GeneratePanel)
    panel.add_model(model, ModelInfo(model_name, size), "benchmark model")
    panel.steps_spin.setValue(steps)
    panel.samples_spin.setValue(samples)
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    os.environ["PRDIT_THREADS"] = str(threads)
    for _ in range(20):
        app.processEvents()
    load = os.getloadavg()[0]
    meter = StallMeter(10)
    meter.start()
    t0 = time.perf_counter()
    panel.start()
    while panel.running:
        app.processEvents()
        time.sleep(0.001)
    wall = time.perf_counter() - t0
    meter.stop()
    result = panel.result
    worker = panel.controller.worker
    out = {
        "model": model_name,
        "size": size,
        "samples": samples,
        "threads": threads,
        "3d": with_3d,
        "steps": result.steps_done if result else 0,
        "step_s": (result.elapsed_s / max(result.steps_done, 1)) if result else float("nan"),
        "wall_s": wall,
        "worst_ms": meter.worst_gap_ms,
        "p99_ms": meter.percentile_ms(99),
        "median_ms": meter.percentile_ms(50),
        "ticks": len(meter.gaps_ms),
        "emitted": worker.steps_emitted if worker else 0,
        "drawn": panel.steps_drawn,
        "draw_ms": panel.draw_ms_max,
        "status": result.status if result else "failed",
        "load": load,
    }
    window.close()
    window.deleteLater()
    app.processEvents()
    return out


def idle_baseline(app, seconds: float) -> dict:
    """The same window and timer with nothing sampling: the gaps the machine itself causes."""
    from prdit_app.main import install_panels
    from prdit_app.mainwindow import MainWindow
    from prdit_app.stall_meter import StallMeter

    window = MainWindow(enable_3d=False)
    install_panels(window)
    window.resize(1600, 1000)
    window.show()
    for _ in range(20):
        app.processEvents()
    load = os.getloadavg()[0]
    meter = StallMeter(10)
    meter.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    meter.stop()
    window.close()
    window.deleteLater()
    app.processEvents()
    return {
        "model": "(idle: nothing sampling)", "size": 0, "samples": 0, "threads": 0, "3d": False, "steps": 0,
        "step_s": float("nan"), "worst_ms": meter.worst_gap_ms, "p99_ms": meter.percentile_ms(99),
        "median_ms": meter.percentile_ms(50), "draw_ms": 0.0, "emitted": 0, "drawn": 0, "load": load,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="variant(s), default PRDiT-XS/4/0 and PRDiT-S/12/4")
    p.add_argument("--size", type=int, action="append", help="input size per --model (default 64, 64)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--with-3d", action="store_true", help="include the VTK 3D view (offscreen)")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle baseline length (0: skip)")
    args = p.parse_args(argv)
    models = args.model or ["PRDiT-XS/4/0", "PRDiT-S/12/4"]
    sizes = args.size or [64] * len(models)
    if len(sizes) != len(models):
        p.error("give one --size per --model")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    # warm-up: imports and first-call costs happen once per process; measure steady use
    run_one(app, "PRDiT-XS/4/0", 16, 2, 2, args.with_3d, 1)
    rows = [idle_baseline(app, args.idle_seconds)] if args.idle_seconds > 0 else []
    print(rows[0] if rows else "", flush=True)
    for model_name, size in zip(models, sizes, strict=True):
        for threads in args.threads:
            r = run_one(app, model_name, size, args.steps, threads, args.with_3d, args.samples)
            rows.append(r)
            print(r, flush=True)
    print()
    print("| model | size | samples | torch threads | 3D view | step (s) | worst gap (ms) | p99 (ms) "
          "| median (ms) | GUI work per step, max (ms) | steps emitted / drawn | load avg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']}³ | {r['samples']} | {r['threads']} | {'on' if r['3d'] else 'off'} "
            f"| {r['step_s']:.2f} | {r['worst_ms']:.0f} | {r['p99_ms']:.0f} | {r['median_ms']:.1f} "
            f"| {r['draw_ms']:.0f} | {r['emitted']} / {r['drawn']} | {r['load']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
