"""Quality of the bundled default model against held-out phantoms (reproduces docs/bundled-model.md).

Comparisons against the same 100 held-out phantoms (seeds 0..99; training used seeds >= 100000)
at the model's own size, all with the built-in feature extractor (FID, the unbiased KID, MMD), the
HU histogram and the phantom anatomy measures:

* floor   — 100 other phantoms (seeds 50000..50099): what a perfect generator would score;
* model   — 100 volumes sampled from the bundled model (hot sampler with the k the model file
  recommends, chosen by ``tune_sampler.py`` on validation phantoms; ``--k`` overrides);
* model-k2 — the same with the paper's k = 2, for comparison (left out when the model's k is 2);
* upsampled — with ``--baseline MODEL`` (a lower-resolution model, e.g. the stage-3 model's own
  frozen base ``fast-32``): 100 volumes sampled from it with its recommended settings and
  upsampled trilinearly to the model's size, the honest baseline for "reuse adds detail";
* ceiling — 100 volumes sampled from the same variant untrained: its zero-initialised read-outs
  predict no change, so the walk ends where it started, on the initial noise (0.5 eps, clipped
  to the HU window).

Target: FID(model) - FID(floor) <= (FID(ceiling) - FID(floor)) / 4, and at least 90 % of samples
inside the phantoms' range on every anatomy measure.

    python benchmarks/bundled_model_quality.py --out runs/bundled-quality \
        [--model FILE] [--baseline resources/models/fast-32.safetensors] [--steps N] [--k K]

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
    model_file: Path, steps: int, k: int, threads: int = 2, repeats: int = 3, sampler: str = "hot"
) -> dict[str, float]:
    """Seconds to sample one volume with ``sampler`` on ``threads`` CPU threads.

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
            run_to_end(sample(model, shape, sampler=sampler, steps=steps, k=k, generator=g))
            runs.append(time.perf_counter() - t0)
    return {
        "load_s": load_s,
        "sample_s_median": float(np.median(runs)),
        "threads": threads,
        "steps": steps,
        "k": k,
    }


def write_upsampled(src: Path, dst: Path, size: int) -> None:
    """Every ``*.nii.gz`` of ``src`` resampled trilinearly to ``size^3`` (same field of view) in ``dst``."""
    from prdit.data.io import read_volume, write_volume

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.nii.gz")):
        out = dst / f.name
        if not out.is_file():
            write_volume(read_volume(f).resized((size, size, size)), out)


def recommended(model_file: Path):
    """The sampler settings a model file recommends (read from its header, no model built)."""
    from prdit.checkpoint.info import summarize_checkpoint
    from prdit.sampler_defaults import SamplerDefaults

    return SamplerDefaults.from_meta(summarize_checkpoint(model_file).meta, str(model_file))


def model_size(model_file: Path) -> int:
    from prdit.checkpoint.info import summarize_checkpoint

    return int(summarize_checkpoint(model_file).meta["input_size"])


def distribution_metrics(heldout: Path, folder: Path, report: Path, metrics: str) -> dict:
    """``prdit eval`` of ``folder`` against ``heldout`` (``metrics``, comma-separated): the report's
    ``metrics`` section, also written to ``report``."""
    # --fake-scale hu: every folder here is in HU; never let the "auto" check guess from the
    # values (an untrained model's output could pass for data left in the [-1, 1] scale)
    prdit(
        "eval",
        str(heldout),
        str(folder),
        "--metrics",
        metrics,
        "--fake-scale",
        "hu",
        "--report",
        str(report),
        "--no-progress",
    )
    return json.loads(report.read_text(encoding="utf-8"))["metrics"]


def anatomy_table(folder: Path) -> dict[str, np.ndarray]:
    from prdit.data.anatomy import ANATOMY_KEYS, measure_anatomy
    from prdit.data.io import read_volume

    rows = [measure_anatomy(read_volume(f)) for f in sorted(folder.glob("*.nii.gz"))]
    return {k: np.array([r[k] for r in rows]) for k in ANATOMY_KEYS}


def inside_fractions(table: dict[str, np.ndarray], lo: dict, hi: dict) -> dict[str, float]:
    """Per anatomy measure, the fraction of ``table``'s volumes inside ``[lo, hi]`` (the held-out range)."""
    return {k: float(np.mean((table[k] >= lo[k]) & (table[k] <= hi[k]))) for k in table}


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
    ap.add_argument(
        "--baseline", type=Path, default=None, help="a lower-resolution model to sample and upsample (a row)"
    )
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument(
        "--steps", type=int, default=None, help="default: the model file's recommendation, else 50"
    )
    ap.add_argument(
        "--k", type=int, default=None, help="hot-sampler k (default: the model file's recommendation)"
    )
    ap.add_argument("--sampler", default=None, help="default: the model file's recommendation")
    args = ap.parse_args()
    rec = recommended(args.model)  # from the file's header: no need to build the model for it
    args.k = args.k or rec.k
    args.sampler = args.sampler or rec.sampler
    args.steps = args.steps or rec.steps or 50
    args.size = model_size(args.model)
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
    common = ["--count", n, "--steps", str(args.steps), "--seed", "0"]
    common += ["--no-preview", "--skip-existing", "--no-progress"]
    k = ["--sampler", args.sampler, "--k", str(args.k)]
    # a folder per setting: --skip-existing must never mix volumes sampled with different settings
    model_dir = out / (f"model-k{args.k}" if args.sampler == "hot" else f"model-{args.sampler}-{args.steps}")
    prdit("sample", str(args.model), "--out", str(model_dir), *common, *k)
    prdit("sample", str(untrained), "--out", str(out / "ceiling"), *common, *k)
    rows = {"floor": out / "floor", "model": model_dir}
    if args.sampler != "hot" or args.k != 2:
        prdit(
            "sample", str(args.model), "--out", str(out / "model-k2"), *common, "--sampler", "hot", "--k", "2"
        )
        rows["model-k2"] = out / "model-k2"
    if args.baseline is not None:
        base_rec, base_size = recommended(args.baseline), model_size(args.baseline)
        base_dir = out / f"baseline-{base_size}"
        base_args = [
            "--count",
            n,
            "--sampler",
            base_rec.sampler,
            "--seed",
            "0",
            "--no-preview",
            "--skip-existing",
        ]
        base_args += ["--no-progress", "--k", str(base_rec.k), "--steps", str(base_rec.steps or 50)]
        prdit("sample", str(args.baseline), "--out", str(base_dir), *base_args)
        write_upsampled(base_dir, out / f"upsampled-{base_size}", args.size)
        rows[f"upsampled-{base_size}"] = out / f"upsampled-{base_size}"
    rows["ceiling"] = out / "ceiling"
    timing = time_one_volume(args.model, args.steps, args.k, sampler=args.sampler)

    results: dict[str, dict] = {}
    heldout = anatomy_table(out / "heldout")
    lo = {k: v.min() for k, v in heldout.items()}
    hi = {k: v.max() for k, v in heldout.items()}
    for name, folder in rows.items():
        metrics = distribution_metrics(out / "heldout", folder, out / f"{name}.json", "fid,kid,mmd,histogram")
        anat = anatomy_table(folder)
        inside = inside_fractions(anat, lo, hi)
        all_inside = float(np.mean(np.all([(anat[k] >= lo[k]) & (anat[k] <= hi[k]) for k in anat], axis=0)))
        results[name] = {
            "fid": metrics["fid"]["value"],
            "kid": metrics["kid"]["value"],
            "kid_subset_std": metrics["kid"]["subset_std"],
            "mmd": metrics["mmd"]["value"],
            "hu_w1": metrics["histogram"]["value"],
            "inside_range": inside,
            "inside_all": all_inside,
            "anatomy_mean": {k: float(v.mean()) for k, v in anat.items()},
        }
    f_floor, f_model, f_ceil = (results[k]["fid"] for k in ("floor", "model", "ceiling"))
    summary = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sampling_time": timing,
        "results": results,
        "heldout_range": {k: [float(lo[k]), float(hi[k])] for k in lo},
        "fid_gap_ratio": (f_ceil - f_floor) / max(f_model - f_floor, 1e-12),
        "targets_met": {
            "fid_4x_closer_to_floor": (f_model - f_floor) * 4 <= (f_ceil - f_floor),
            "anatomy_90pct_every_measure": all(v >= 0.9 for v in results["model"]["inside_range"].values()),
        },
    }
    for name in (k for k in results if k.startswith("upsampled")):  # "reuse adds detail"
        m, u = results["model"], results[name]
        mi, ui = m["inside_range"], u["inside_range"]
        summary["targets_met"][f"beats_{name}"] = {
            "fid": m["fid"] < u["fid"],
            "kid": m["kid"] < u["kid"],
            "bone_fraction_inside": mi["bone_fraction"] > ui["bone_fraction"],
            "lung_balance_inside": mi["lung_lr_balance"] > ui["lung_lr_balance"],
        }
    montage_rows = {"phantoms": out / "heldout", "model": model_dir}
    montage_rows.update({k: v for k, v in rows.items() if k.startswith("upsampled")})
    write_montage(
        montage_rows,
        out / "montage.png",
        count=4,
        zoom=max(1, 128 // args.size),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
