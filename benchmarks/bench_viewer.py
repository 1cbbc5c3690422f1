"""How fast the studio's views take new volumes (the Generate panel streams one per sampling step).

Run: ``QT_QPA_PLATFORM=offscreen python benchmarks/bench_viewer.py [--no-3d] [--sizes 128 256]``.
Results go in docs/benchmarks.md ("## Viewer"). Not a test: timings depend on the machine and load.

Measures, per volume size:

1. slice views: ``ViewerState.set_volume(new, keep_view=True)`` + synchronous repaint of the three
   pyqtgraph views (what the user sees), median / 95th percentile / max over many frames;
2. 3D view (offscreen VTK, llvmpipe on CPU machines): one full-quality frame and one streaming-quality
   frame at 488x482 (the 3D pane's size in a 1600x1000 window);
3. a streaming run: a new volume every 0.1 s for a few seconds, shown through the event loop with
   the 3D view streaming (render thread, or GUI-thread throttle): time to show one volume in the
   slice views, and how often / how long the event loop was blocked (what delays a new step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def _frames(size: int, n: int) -> list:
    from prdit.data.phantom import generate_phantom

    base = generate_phantom(0, size)
    rng = np.random.default_rng(0)
    # same geometry, different voxels (like successive x0_hat estimates)
    shifts = rng.normal(0, 30, size=n).astype(np.float32)
    return [base.with_array(base.array + shifts[k]) for k in range(n)]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_slices(app, size: int, n: int = 60) -> dict:
    from prdit_app.state import ViewerState
    from prdit_app.views.slices import SliceView

    st = ViewerState()
    views = [SliceView(st, p) for p in ("axial", "coronal", "sagittal")]
    for v in views:
        v.resize(488, 460)
        v.show()
    frames = _frames(size, 8)
    st.set_volume(frames[0])
    app.processEvents()
    times = []
    for k in range(n):
        t0 = time.perf_counter()
        st.set_volume(frames[k % len(frames)], keep_view=True)
        for v in views:
            v.graphics.viewport().repaint()
        times.append((time.perf_counter() - t0) * 1000)
    for v in views:
        v.close()
    return {"median_ms": statistics.median(times), "p95_ms": _pct(times, 95), "max_ms": max(times)}


def bench_3d(app, size: int) -> dict:
    from prdit_app.state import ViewerState
    from prdit_app.views.volume3d import Volume3DView

    st = ViewerState()
    view = Volume3DView(st, offscreen=True)
    view.resize(488, 482)
    view.show()
    frames = _frames(size, 2)
    st.set_volume(frames[0])
    view.render_now()  # first frame: shader compile + texture upload
    first = view.last_render_s
    full = []
    for _ in range(3):
        view.render_now()
        full.append(view.last_render_s)
    view._streaming = True
    view.scene.set_streaming(True)
    fast = []
    for k in range(3):
        st.set_volume(frames[k % 2], keep_view=True)
        view.render_now()
        fast.append(view.last_render_s)
    view._streaming = False
    view.scene.set_streaming(False)
    view.close_vtk()
    view.close()
    return {"first_s": first, "full_s": statistics.median(full), "stream_s": statistics.median(fast)}


def bench_stream(
    app, size: int, with_3d: bool, hz: float = 10.0, seconds: float = 6.0, threaded: bool = True
) -> dict:
    from prdit_app.state import ViewerState
    from prdit_app.views.slices import SliceView

    st = ViewerState()
    views = [SliceView(st, p) for p in ("axial", "coronal", "sagittal")]
    for v in views:
        v.resize(488, 460)
        v.show()
    view3d = None
    if with_3d:
        from prdit_app.views.volume3d import Volume3DView

        view3d = Volume3DView(st, offscreen=True, threaded=threaded)
        view3d.resize(488, 482)
        view3d.show()
    frames = _frames(size, 8)
    st.set_volume(frames[0])
    if view3d is not None:
        view3d.render_now()
    app.processEvents()
    n_frames = int(hz * seconds)
    # The loop plays the Generate panel: every 1/hz s a new volume is ready and is shown at once.
    # Reported: how long showing one takes (set_volume + repaint of the three slice views) and how
    # long the event loop was ever unavailable (the delay a new step could see before it is shown).
    update_ms: list[float] = []
    gaps_ms: list[float] = []
    renders0 = view3d.render_count if view3d else 0
    t_next = time.perf_counter()
    last = time.perf_counter()
    shown = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or shown < n_frames:
        app.processEvents()
        now = time.perf_counter()
        gaps_ms.append((now - last) * 1000)
        if now >= t_next and shown < n_frames:
            st.set_volume(frames[shown % len(frames)], keep_view=True)
            for v in views:
                v.graphics.viewport().repaint()
            shown += 1
            t_next += 1.0 / hz
            update_ms.append((time.perf_counter() - now) * 1000)
        last = time.perf_counter()
        time.sleep(0.002)
    for _ in range(50):  # let the last 3D frame land before reading the counters
        app.processEvents()
        time.sleep(0.01)
    stalls = [g for g in gaps_ms if g > 50]
    out = {
        "frames": n_frames,
        "update_median_ms": statistics.median(update_ms),
        "update_p95_ms": _pct(update_ms, 95),
        "update_max_ms": max(update_ms),
        "stalls": len(stalls),
        "stall_max_ms": max(gaps_ms),
    }
    if view3d is not None:
        out["renders_3d"] = view3d.render_count - renders0
        out["render_3d_s"] = view3d.last_render_s
        out["threaded"] = view3d.threaded
        out["stream_frames"] = view3d.stream_frames
        out["stream_cost_s"] = view3d._cost.get(True, float("nan"))
        view3d.close_vtk()
        view3d.close()
    for v in views:
        v.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--no-3d", action="store_true", help="skip the VTK measurements (no OpenGL)")
    args = ap.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for size in args.sizes:
        s = bench_slices(app, size)
        print(
            f"{size}^3 slice views (3 x setImage + repaint): median {s['median_ms']:.1f} ms, "
            f"p95 {s['p95_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
        )
        if not args.no_3d:
            r = bench_3d(app, size)
            print(
                f"{size}^3 3D view 488x482 (offscreen VTK): first frame {r['first_s']:.2f} s, "
                f"full quality {r['full_s']:.2f} s, streaming quality {r['stream_s']:.2f} s"
            )
        for with_3d, threaded in (
            ((False, False),) if args.no_3d else ((False, False), (True, True), (True, False))
        ):
            m = bench_stream(app, size, with_3d, threaded=threaded)
            extra = (
                f"; 3D: {m['stream_frames']} streamed frames shown from the render thread "
                f"({m['stream_cost_s']:.2f} s each), {m['renders_3d']} GUI-thread renders"
                if with_3d and m["threaded"]
                else f"; 3D: {m['renders_3d']} GUI-thread renders of {m['frames']} frames"
                if with_3d
                else ""
            )
            print(
                f"{size}^3 streaming at 10 Hz {'with' if with_3d else 'without'} 3D"
                f"{' (render thread)' if with_3d and threaded else ' (GUI thread only)' if with_3d else ''}: "
                f"update median {m['update_median_ms']:.1f} ms, p95 {m['update_p95_ms']:.1f} ms, "
                f"max {m['update_max_ms']:.1f} ms; event loop blocked > 50 ms {m['stalls']} times, "
                f"longest {m['stall_max_ms']:.0f} ms{extra}"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
