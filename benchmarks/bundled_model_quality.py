"""Quality of the bundled default model, measured the way issue 10 asks (reproduces docs/bundled-model.md).

Three comparisons against the same 100 held-out phantoms (seeds 0..99; training used seeds
>= 100000), all with the built-in feature extractor and the phantom anatomy measures:

* floor   — 100 other phantoms (seeds 50000..50099): what a perfect generator would score;
* model   — 100 volumes sampled from the bundled model (hot sampler with the k the model file
  recommends, chosen by ``tune_sampler.py`` on validation phantoms; ``--k`` overrides);
* model-k2 — the same with the paper's k = 2, for comparison (left out when the model's k is 2);
* ceiling — 100 volumes sampled from the same variant untrained: its zero-initialised read-outs
  predict no change, so the walk ends where it started, on the initial noise (0.5 eps, clipped
  to the HU window).

Target: FID(model) - FID(floor) <= (FID(ceiling) - FID(floor)) / 4, and at least 90 % of samples
inside the phantoms' range on every anatomy measure.

    python benchmarks/bundled_model_quality.py --out runs/bundled-quality [--model FILE] [--steps 50] [--k K]

Everything goes through the public CLI (``python -m prdit ...``), so the figures are what a user
gets. Re-runs reuse finished volumes (``--skip-existing``) and the eval caches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def prdit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "prdit", *args], check=True, cwd=ROOT)


def write_untrained(model_file: Path, out: Path) -> None:
    """The same variant, size and metadata as the bundled model, freshly initialised."""
    import torch
    from safetensors.torch import save_file

    from prdit.checkpoint import build_model_from_meta, load_safetensors

    _, meta = load_safetensors(model_file)
    meta = {k: v for k, v in meta.items() if k not in ("quantization", "source_sha256", "step")}
    torch.manual_seed(0)
    model = build_model_from_meta(meta)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"prdit": json.dumps(meta)})


def time_one_volume(
    model_file: Path, steps: int, k: int, threads: int = 2, repeats: int = 3
) -> dict[str, float]:
    """Seconds to sample one volume with the hot sampler on ``threads`` CPU threads.

    Median of ``repeats`` runs, model already loaded (what the studio's Start button costs), plus
    the one-off load time.
    """
    import torch

    from prdit.checkpoint import load_for_inference
    from prdit.diffusion import run_to_end, sample

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, info = load_for_inference(model_file)
    load_s = time.perf_counter() - t0
    shape = (1, 1, info.input_size, info.input_size, info.input_size)
    runs = []
    with torch.inference_mode():
        for seed in range(repeats):
            g = torch.Generator().manual_seed(seed)
            t0 = time.perf_counter()
            run_to_end(sample(model, shape, sampler="hot", steps=steps, k=k, generator=g))
            runs.append(time.perf_counter() - t0)
    return {
        "load_s": load_s,
        "sample_s_median": float(np.median(runs)),
        "threads": threads,
        "steps": steps,
        "k": k,
    }


def anatomy_table(folder: Path) -> dict[str, np.ndarray]:
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.data.io import read_volume

    rows = [measure_anatomy(read_volume(f)) for f in sorted(folder.glob("*.nii.gz"))]
    return {k: np.array([r[k] for r in rows]) for k in ANATOMY_KEYS}


def write_montage(rows: dict[str, Path], out_png: Path, count: int = 6, zoom: int = 4) -> None:
    """Mid axial, coronal and sagittal slices (lung window) of the first volumes, a row per set."""
    from PIL import Image, ImageDraw

    from prdit.data.io import read_volume

    def tile(path: Path) -> np.ndarray:
        a = read_volume(path).array.astype(np.float32)
        d, h, w = a.shape
        views = [a[d // 2], a[::-1, h // 2, :], a[::-1, :, w // 2]]  # superior up in coronal/sagittal
        views[0] = views[0][:, ::-1]  # radiological: patient left on screen right
        views[1] = views[1][:, ::-1]
        g = np.concatenate([np.pad(v, 1) for v in views], axis=1)
        return np.clip((g + 1350.0) / 1500.0 * 255.0, 0, 255).astype(np.uint8)

    label_w = 90
    strips = []
    for name, folder in rows.items():
        tiles = [tile(f) for f in sorted(folder.glob("*.nii.gz"))[:count]]
        strip = np.concatenate([np.pad(t, 2) for t in tiles], axis=1)
        img = Image.fromarray(strip).resize((strip.shape[1] * zoom, strip.shape[0] * zoom), Image.NEAREST)
        canvas = Image.new("L", (img.width + label_w, img.height), 0)
        canvas.paste(img, (label_w, 0))
        ImageDraw.Draw(canvas).text((6, img.height // 2 - 6), name, fill=255)
        strips.append(canvas)
    full = Image.new("L", (max(s.width for s in strips), sum(s.height for s in strips)), 0)
    y = 0
    for strip in strips:
        full.paste(strip, (0, y))
        y += strip.height
    out_png.parent.mkdir(parents=True, exist_ok=True)
    full.save(out_png)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bundled-quality")
    ap.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "default.safetensors")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument(
        "--k", type=int, default=None, help="hot-sampler k (default: the model file's recommendation)"
    )
    args = ap.parse_args()
    if args.k is None:  # from the file's header: no need to build the model for it
        from prdit.checkpoint_info import summarize_checkpoint
        from prdit.sampler_defaults import SamplerDefaults

        args.k = SamplerDefaults.from_meta(summarize_checkpoint(args.model).meta, str(args.model)).k
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    n, size = str(args.count), str(args.size)

    prdit(
        "phantom",
        "--count",
        n,
        "--size",
        size,
        "--seed-offset",
        "0",
        "--out",
        str(out / "heldout"),
        "--no-progress",
    )
    prdit(
        "phantom",
        "--count",
        n,
        "--size",
        size,
        "--seed-offset",
        "50000",
        "--out",
        str(out / "floor"),
        "--no-progress",
    )
    untrained = out / "untrained.safetensors"
    write_untrained(args.model, untrained)
    common = ["--count", n, "--steps", str(args.steps), "--sampler", "hot", "--seed", "0"]
    common += ["--no-preview", "--skip-existing", "--no-progress"]
    k = ["--k", str(args.k)]
    # a folder per k: --skip-existing must never mix volumes sampled with different settings
    model_dir = out / f"model-k{args.k}"
    prdit("sample", str(args.model), "--out", str(model_dir), *common, *k)
    prdit("sample", str(untrained), "--out", str(out / "ceiling"), *common, *k)
    rows = {"floor": out / "floor", "model": model_dir}
    if args.k != 2:
        prdit("sample", str(args.model), "--out", str(out / "model-k2"), *common, "--k", "2")
        rows["model-k2"] = out / "model-k2"
    rows["ceiling"] = out / "ceiling"
    timing = time_one_volume(args.model, args.steps, args.k)

    results: dict[str, dict] = {}
    heldout = anatomy_table(out / "heldout")
    lo = {k: v.min() for k, v in heldout.items()}
    hi = {k: v.max() for k, v in heldout.items()}
    for name, folder in rows.items():
        report = out / f"{name}.json"
        # --fake-scale hu: every folder here is in HU; never let the "auto" check guess from the
        # values (an untrained model's output could pass for data left in the [-1, 1] scale)
        prdit(
            "eval",
            str(out / "heldout"),
            str(folder),
            "--metrics",
            "fid,mmd,histogram",
            "--fake-scale",
            "hu",
            "--report",
            str(report),
            "--no-progress",
        )
        metrics = json.loads(report.read_text(encoding="utf-8"))["metrics"]
        anat = anatomy_table(folder)
        inside = {k: float(np.mean((anat[k] >= lo[k]) & (anat[k] <= hi[k]))) for k in anat}
        all_inside = float(np.mean(np.all([(anat[k] >= lo[k]) & (anat[k] <= hi[k]) for k in anat], axis=0)))
        results[name] = {
            "fid": metrics["fid"]["value"],
            "mmd": metrics["mmd"]["value"],
            "hu_w1": metrics["histogram"]["value"],
            "inside_range": inside,
            "inside_all": all_inside,
            "anatomy_mean": {k: float(v.mean()) for k, v in anat.items()},
        }
    f_floor, f_model, f_ceil = (results[k]["fid"] for k in ("floor", "model", "ceiling"))
    summary = {
        "settings": vars(args) | {"out": str(out), "model": str(args.model)},
        "sampling_time": timing,
        "results": results,
        "heldout_range": {k: [float(lo[k]), float(hi[k])] for k in lo},
        "fid_gap_ratio": (f_ceil - f_floor) / max(f_model - f_floor, 1e-12),
        "targets_met": {
            "fid_4x_closer_to_floor": (f_model - f_floor) * 4 <= (f_ceil - f_floor),
            "anatomy_90pct_every_measure": all(v >= 0.9 for v in results["model"]["inside_range"].values()),
        },
    }
    write_montage(
        {"phantoms": out / "heldout", "model": model_dir, "untrained": out / "ceiling"},
        out / "montage.png",
        count=4,
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
