"""``evaluate_folders``: one streaming pass per folder, then the metrics, then a report dict.

Used by ``prdit eval`` and by the studio's evaluation panel (plain Python: a progress callback in,
a dict out). Why one pass: at 128^3 a folder of 1000 volumes is 8 GB, so volumes are never all in
memory. Each volume is read once and feeds every product that is not already cached:

* ``features``: 2048-d ResNet features (batched) -> FID, MMD;
* ``histogram``: pooled 1 HU histogram -> HU Wasserstein-1;
* ``anatomy``: ``measure_anatomy`` per volume -> anatomy summary;
* ``critic``: the volume area-pooled to ``critic.size^3`` (float16) -> WGAN-GP critic;
* ``msssim``: MS-SSIM of disjoint pairs. Files are visited in a seeded random order and
  consecutive files form a pair, so pairs are uniformly random distinct pairs (their mean
  estimates the published all-pairs mean) and each is computed while both volumes are loaded.

Under ``torchrun`` (WORLD_SIZE > 1) the pairs of files are sharded across ranks (strided), every
rank extracts its share, the partial products are all-gathered, and rank 0 computes the metrics
and returns the report (other ranks return None).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prdit.metrics.critic import CriticConfig, critic_wasserstein, pool_for_critic
from prdit.metrics.features import NOT_COMPARABLE, FeatureExtractor, build_extractor
from prdit.metrics.folders import (
    FolderCache,
    FolderError,
    check_shapes,
    fingerprint,
    list_volume_files,
    load_for_eval,
)
from prdit.metrics.histogram import HUHistogram, hu_wasserstein
from prdit.metrics.msssim import MSSSIMConfig, ms_ssim, msssim_config
from prdit.metrics.protocol import comparability, get_protocol, pool_to_published_size, published_input

ALL_METRICS: tuple[str, ...] = ("fid", "kid", "mmd", "msssim", "critic", "histogram", "anatomy")
_PRODUCTS_FOR = {
    "fid": "features",
    "kid": "features",
    "mmd": "features",
    "msssim": "msssim",
    "critic": "critic",
    "histogram": "histogram",
    "anatomy": "anatomy",
}
_MIN_VOLUMES = {"fid": 2, "kid": 2, "mmd": 2, "msssim": 2, "critic": 4, "histogram": 1, "anatomy": 1}

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``"real"``/``"fake"`` (volumes read), ``"critic"``
(training iterations), ``"metrics"``."""


@dataclass
class EvalSettings:
    metrics: tuple[str, ...] = ALL_METRICS
    features: str = "default"  # "default" or "medicalnet:PATH"
    size: int | None = None  # resample every volume to size^3
    device: str = "auto"
    batch_size: int = 4
    seed: int = 0  # MS-SSIM pairing and critic (the default extractor's seed is fixed)
    use_cache: bool = True
    cache_dir: str | None = None
    # "auto": HU, refusing a folder whose first volume lies in [-1, 1] (a forgotten conversion);
    # "hu": HU, trusted as given; "unit": the model's [-1, 1], mapped through the HU window
    real_scale: str = "auto"
    fake_scale: str = "auto"
    msssim_pairs: int = 100  # per set (at most N // 2)
    mmd_chunk: int = 256
    critic: CriticConfig = field(default_factory=CriticConfig)
    hu_clip: tuple[float, float] = (-1000.0, 1000.0)
    protocol: str = "prdit"  # prdit.metrics.protocol: "prdit", "published-lidc", "published-rad"

    def __post_init__(self) -> None:
        protocol = get_protocol(self.protocol)  # a clear error for an unknown name
        if protocol.published and self.size is not None:
            raise ValueError(
                f"--size {self.size}: --protocol {self.protocol} evaluates at 128^3 by average pooling, "
                "as published; leave --size out (or use --protocol prdit)"
            )
        unknown = [m for m in self.metrics if m not in ALL_METRICS]
        if unknown or not self.metrics:
            raise ValueError(
                f"unknown metric(s) {unknown or self.metrics}; allowed: {', '.join(ALL_METRICS)}"
            )
        if self.size is not None and not 16 <= self.size <= 1024:
            raise ValueError(f"--size must be between 16 and 1024 voxels, got {self.size}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.msssim_pairs < 1:
            raise ValueError(f"--msssim-pairs must be >= 1, got {self.msssim_pairs}")
        c = self.critic.size
        if c < 4 or c & (c - 1):
            raise ValueError(f"--critic-size must be a power of two >= 4 (8, 16, 32, 64), got {c}")
        for name in ("real_scale", "fake_scale"):
            if getattr(self, name) not in ("auto", "hu", "unit"):
                raise ValueError(
                    f"{name.replace('_', '-')} must be 'auto', 'hu' or 'unit', got {getattr(self, name)!r}"
                )

    @property
    def eval_protocol(self):
        return get_protocol(self.protocol)

    def scale_for(self, label: str) -> str:
        return self.real_scale if label == "real" else self.fake_scale

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        d["critic"] = self.critic.to_dict()
        return d


# --------------------------------------------------------------------------- helpers
def _to_unit01(hu: torch.Tensor, clip: tuple[float, float]) -> torch.Tensor:
    lo, hi = clip
    return (hu.clamp(lo, hi) - lo) / (hi - lo)


def anatomy_volume(loaded) -> Any:
    """The volume ``measure_anatomy`` sees: as evaluated (resampled if asked), original direction."""
    from prdit.volume import Volume

    src = loaded.volume
    arr = loaded.hu.numpy()
    if tuple(arr.shape) == tuple(src.shape):
        return src.with_array(arr)
    scale = np.asarray(src.size_ijk, dtype=np.float64) / np.asarray(arr.shape[::-1], dtype=np.float64)
    return Volume(arr, tuple(np.asarray(src.spacing) * scale), src.origin, src.direction.copy())


@dataclass
class _FolderJob:
    label: str  # "real" / "fake"
    folder: Path
    files: list[Path]
    fingerprint: str
    scale: str
    products: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    cache_status: dict[str, str] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None


def _product_keys(job: _FolderJob, s: EvalSettings, extractor_key: str | None) -> dict[str, dict[str, Any]]:
    base = {"fingerprint": job.fingerprint, "size": s.size, "scale": s.scale_for(job.label)}
    base["protocol"] = s.protocol
    return {
        "features": {**base, "extractor": extractor_key, "batch_independent": True},
        "histogram": {**base, "bins": "1HU[-1024,3071]"},
        "anatomy": {**base, "measures": "prdit.data.anatomy.v1"},
        "critic": {**base, "critic_size": s.critic.size, "clip": list(s.hu_clip)},
        "msssim": {**base, "seed": s.seed, "pairs": s.msssim_pairs, "clip": list(s.hu_clip), "kernel": 3},
    }


def _scan_folder(
    job: _FolderJob,
    needed: set[str],
    settings: EvalSettings,
    extractor: FeatureExtractor | None,
    expected_shape: tuple[int, int, int] | None,
    info,
    progress: Progress | None,
) -> dict[str, dict[str, np.ndarray]]:
    """Read this rank's share of the folder once; return the gathered products (all ranks)."""
    from prdit.distributed import gather_objects, shard

    n = len(job.files)
    order = np.random.default_rng([settings.seed, 0x4D535349]).permutation(n)
    units = [order[i : i + 2].tolist() for i in range(0, n, 2)]
    pair_limit = min(settings.msssim_pairs, n // 2)
    indexed = list(enumerate(units))
    if needed == {"msssim"}:
        indexed = indexed[:pair_limit]  # only the paired volumes are needed
    mine = shard(indexed, info.rank, info.world_size)
    total = sum(len(u) for _, u in mine)

    protocol = settings.eval_protocol
    all_pairs = "msssim" in needed and protocol.msssim_all_pairs
    kept: dict[int, torch.Tensor] = {}  # all-pairs MS-SSIM: every volume, scaled, float16
    feats: dict[int, np.ndarray] = {}
    anat: dict[int, dict[str, float]] = {}
    pooled: dict[int, np.ndarray] = {}
    pairs: list[tuple[int, int, float]] = []
    hist = HUHistogram()
    ms_cfg: MSSSIMConfig | None = None
    batch: list[tuple[int, torch.Tensor]] = []
    shape_seen = expected_shape

    def flush() -> None:
        if batch:
            stacked = torch.stack([t for _, t in batch])
            out = extractor.extract(stacked, prepared=protocol.published)  # type: ignore[union-attr]
            for (idx, _), f in zip(batch, out, strict=True):
                feats[idx] = f
            batch.clear()

    if "anatomy" in needed:
        from prdit.data.anatomy import measure_anatomy
    done = 0
    for unit_idx, unit in mine:
        loaded = []
        for i in unit:
            lv = load_for_eval(
                job.files[i],
                i,
                size=settings.size,
                scale=job.scale,
                expected_shape=None if protocol.published else shape_seen,
                check_scale=(done == 0),
            )
            prepared = None  # the published protocols' network input: scaled at full size, then pooled
            if protocol.published:
                prepared = published_input(protocol, lv.hu, str(job.files[i]))
                lv = dataclasses.replace(lv, hu=pool_to_published_size(lv.hu, str(job.files[i])))
            shape_seen = shape_seen or tuple(lv.hu.shape)
            loaded.append(lv)
            if "features" in needed:
                batch.append((i, lv.hu if prepared is None else prepared))
                if len(batch) >= settings.batch_size:
                    flush()
            if "histogram" in needed:
                hist.add(lv.hu.numpy())
            if "anatomy" in needed:
                anat[i] = measure_anatomy(anatomy_volume(lv))
            if "critic" in needed:
                pooled[i] = pool_for_critic(lv.hu, settings.critic.size, settings.hu_clip)[0].numpy()
            if all_pairs and prepared is not None:
                kept[i] = prepared.half()
            done += 1
            if progress:
                progress(job.label, done, total)
        if "msssim" in needed and not all_pairs and len(loaded) == 2 and unit_idx < pair_limit:
            a = _to_unit01(loaded[0].hu, settings.hu_clip)[None].to(info.device)
            b = _to_unit01(loaded[1].hu, settings.hu_clip)[None].to(info.device)
            ms_cfg = ms_cfg or msssim_config(tuple(a.shape))
            pairs.append((unit[0], unit[1], float(ms_ssim(a, b, ms_cfg)[0])))
    flush()
    if all_pairs:
        pairs = _all_pairs_msssim(kept, info.device, progress)

    parts = gather_objects(
        info,
        {
            "feats": feats,
            "anat": anat,
            "pooled": pooled,
            "pairs": pairs,
            "hist": hist.counts,
            "shape": shape_seen,
        },
    )
    shapes = {p["shape"] for p in parts if p["shape"] is not None}
    if len(shapes) > 1:
        raise FolderError(f"{job.folder}: volumes have different shapes {sorted(shapes)}; pass --size N")
    job.shape = next(iter(shapes)) if shapes else None
    out: dict[str, dict[str, np.ndarray]] = {}
    if "features" in needed:
        merged = {k: v for p in parts for k, v in p["feats"].items()}
        out["features"] = {"features": np.stack([merged[i] for i in range(n)])}
    if "histogram" in needed:
        out["histogram"] = {"counts": np.sum([p["hist"] for p in parts], axis=0)}
    if "anatomy" in needed:
        from prdit.metrics.anatomy import anatomy_keys, measure_rows

        keys = anatomy_keys()
        merged = {k: v for p in parts for k, v in p["anat"].items()}
        out["anatomy"] = {"rows": measure_rows([merged[i] for i in range(n)], keys), "keys": np.array(keys)}
    if "critic" in needed:
        merged = {k: v for p in parts for k, v in p["pooled"].items()}
        out["critic"] = {"volumes": np.stack([merged[i] for i in range(n)])}
    if "msssim" in needed:
        all_pairs = sorted(pr for p in parts for pr in p["pairs"])
        out["msssim"] = {
            "pairs": np.array([[a, b] for a, b, _ in all_pairs], dtype=np.int64).reshape(-1, 2),
            "values": np.array([v for _, _, v in all_pairs], dtype=np.float64),
        }
    for arrays in out.values():  # every product remembers the evaluated shape (for cached runs)
        arrays["shape"] = np.array(job.shape or (), dtype=np.int64)
    return out


def _all_pairs_msssim(kept: dict[int, torch.Tensor], device, progress: Progress | None) -> list:
    """MS-SSIM (data range 1, on the protocol's scaled volumes) of every pair of distinct volumes,
    as the published evaluation averages it; ``[(i, j, value)]``."""
    keys = sorted(kept)
    todo = [(a, b) for n, a in enumerate(keys) for b in keys[n + 1 :]]
    out = []
    cfg: MSSSIMConfig | None = None
    chunk = 8
    for start in range(0, len(todo), chunk):
        batch = todo[start : start + chunk]
        x = torch.stack([kept[a] for a, _ in batch]).float().unsqueeze(1).to(device)
        y = torch.stack([kept[b] for _, b in batch]).float().unsqueeze(1).to(device)
        cfg = cfg or msssim_config(tuple(x.shape))
        values = ms_ssim(x, y, cfg).cpu().tolist()
        out.extend((a, b, float(v)) for (a, b), v in zip(batch, values, strict=True))
        if progress:
            progress("msssim", min(start + chunk, len(todo)), len(todo))
    return out


def _check_all_pairs_memory(n: int, world_size: int) -> None:
    """All-pairs MS-SSIM keeps every volume (128^3 float16: 4 MB each); refuse what cannot fit."""
    import os

    if world_size > 1:
        raise FolderError(
            "the published protocols' all-pairs MS-SSIM runs in one process; run prdit eval without "
            "torchrun, or leave msssim out with --metrics"
        )
    need = n * 128**3 * 2
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * free:
        raise FolderError(
            f"all-pairs MS-SSIM of {n} volumes keeps {need / 2**30:.1f} GiB in memory, "
            f"{free / 2**30:.1f} GiB is free; leave msssim out with --metrics or free memory"
        )


# --------------------------------------------------------------------------- main entry
def evaluate_folders(
    real: str | Path,
    fake: str | Path,
    settings: EvalSettings | None = None,
    *,
    progress: Progress | None = None,
    extractor: FeatureExtractor | None = None,
    dist_info: Any = None,
) -> dict[str, Any] | None:
    """Compare a folder of real volumes with a folder of generated ones; returns the report dict.

    ``extractor`` overrides ``settings.features`` (for callers that keep one loaded).
    ``dist_info`` (:class:`prdit.distributed.DistInfo`) is set up from the environment when
    omitted; the caller owns the process group (``prdit.distributed.cleanup``). Returns None on
    ranks other than 0 under torchrun.
    """
    from prdit.distributed import barrier, init_distributed

    s = settings or EvalSettings()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    jobs = []
    for label, folder, scale in (("real", Path(real), s.real_scale), ("fake", Path(fake), s.fake_scale)):
        files = list_volume_files(folder)
        jobs.append(_FolderJob(label, folder, files, fingerprint(files), scale))
    for m in s.metrics:
        for job in jobs:
            if len(job.files) < _MIN_VOLUMES[m]:
                raise FolderError(
                    f"{m} needs at least {_MIN_VOLUMES[m]} volumes per folder, {job.label} folder "
                    f"{job.folder} has {len(job.files)}; add volumes or leave it out with --metrics"
                )
    protocol = s.eval_protocol
    expected_shape = (
        None if s.size is not None or protocol.published else check_shapes({j.label: j.files for j in jobs})
    )
    info = dist_info if dist_info is not None else init_distributed(s.device)
    if "msssim" in s.metrics and protocol.msssim_all_pairs:
        _check_all_pairs_memory(len(jobs[1].files), info.world_size)
    cache = FolderCache(s.cache_dir, enabled=s.use_cache)
    needed_products = {_PRODUCTS_FOR[m] for m in s.metrics}

    if "features" in needed_products and extractor is None:
        extractor = build_extractor(s.features, hu_clip=s.hu_clip)
    if extractor is not None:
        extractor.intensity = protocol.intensity  # the protocol decides what the network is fed
        extractor.to(info.device)
    extractor_key = extractor.cache_key if extractor is not None else None
    timings["setup"] = time.perf_counter() - t0

    for job in jobs:
        t = time.perf_counter()
        keys = _product_keys(job, s, extractor_key)
        missing = set()
        for product in needed_products:
            hit = cache.load(job.folder, product, keys[product])
            if hit is not None:
                job.products[product] = hit
                job.cache_status[product] = "cached"
                job.shape = job.shape or (tuple(int(v) for v in hit.get("shape", ())) or None)
            else:
                missing.add(product)
        if missing:
            scanned = _scan_folder(job, missing, s, extractor, expected_shape, info, progress)
            for product, arrays in scanned.items():
                job.products[product] = arrays
                job.cache_status[product] = "computed"
                if info.is_main:
                    cache.store(job.folder, product, keys[product], arrays)
            if expected_shape is None and s.size is None:
                expected_shape = job.shape
        timings[f"read_{job.label}"] = time.perf_counter() - t
    real_job, fake_job = jobs
    if s.size is None and not protocol.published:
        shapes = {j.label: j.shape for j in jobs}
        if shapes["real"] and shapes["fake"] and tuple(shapes["real"]) != tuple(shapes["fake"]):
            raise FolderError(
                f"real volumes are {'x'.join(map(str, shapes['real']))} but generated volumes are "
                f"{'x'.join(map(str, shapes['fake']))}; pass --size N to resample both to N^3"
            )

    if not info.is_main:
        barrier(info)
        return None
    metrics = _compute_metrics(real_job, fake_job, s, info.device, progress, timings)
    barrier(info)

    import scipy

    from prdit import __version__

    shape = next((tuple(j.shape) for j in jobs if j.shape), None)
    if shape is None and expected_shape is not None:
        shape = tuple(expected_shape)
    reasons = comparability(
        protocol, extractor.comparable if extractor is not None else None, shape, len(fake_job.files)
    )
    comparable = None if extractor is None else not reasons
    notes = []
    if extractor is not None and not extractor.comparable:
        notes.append(f"FID and MMD use the built-in default extractor: {NOT_COMPARABLE}")
    if comparable is False and protocol.published:
        notes += [f"not comparable with the published numbers: {r}" for r in reasons]
    elif comparable is False and extractor is not None and extractor.comparable:
        notes.append(
            "MedicalNet features, but fed by this project's recipe (z-score): not comparable with the "
            "published numbers; use --protocol published-lidc or published-rad"
        )
    report: dict[str, Any] = {
        "report_format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "real": _folder_entry(real_job, s, shape),
        "fake": _folder_entry(fake_job, s, shape),
        "metrics": metrics,
        "feature_extractor": None
        if extractor is None
        else {
            "spec": s.features,
            "identity": extractor.identity,
            "description": extractor.description,
            "comparable_with_published": extractor.comparable,
            "input": protocol.description,
        },
        "protocol": protocol.to_dict(),
        "comparable_with_published": comparable,
        "not_comparable_because": reasons if comparable is False else [],
        "notes": notes,
        "settings": {**s.to_dict(), "world_size": info.world_size, "device_used": str(info.device)},
        "software": {
            "prdit": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return report


def _folder_entry(job: _FolderJob, s: EvalSettings, shape) -> dict[str, Any]:
    return {
        "folder": str(job.folder.resolve()),
        "count": len(job.files),
        "shape": list(shape) if shape else None,
        "resampled_to": [s.size] * 3 if s.size else None,
        "intensity_scale": job.scale,
        "files_fingerprint": job.fingerprint,
        "cache": dict(sorted(job.cache_status.items())),
    }


def _compute_metrics(real: _FolderJob, fake: _FolderJob, s: EvalSettings, device, progress, timings) -> dict:
    from prdit.metrics.fid import fid, fid_bootstrap
    from prdit.metrics.mmd import mmd_rbf

    out: dict[str, Any] = {}
    if "fid" in s.metrics:
        t = time.perf_counter()
        rf, ff = real.products["features"]["features"], fake.products["features"]["features"]
        value = fid(rf, ff)
        lo, hi = fid_bootstrap(rf, ff, seed=s.seed)
        out["fid"] = {
            "value": value,
            "value_x1e3": value * 1e3,
            "n_real": len(real.files),
            "n_fake": len(fake.files),
            "interval_90": [lo, hi],  # bootstrap percentile interval: the spread at this N
            "comparable_at": "equal N only (FID is biased upwards at small N)",
        }
        timings["fid"] = time.perf_counter() - t
    if "kid" in s.metrics:
        from prdit.metrics.kid import kid

        t = time.perf_counter()
        k = kid(real.products["features"]["features"], fake.products["features"]["features"], seed=s.seed)
        out["kid"] = {
            "value": k.value,
            "value_x1e3": k.value * 1e3,
            "subset_std": k.subset_std,
            "subset_size": k.subset_size,
            "subsets": k.subsets,
        }
        timings["kid"] = time.perf_counter() - t
    if "mmd" in s.metrics:
        t = time.perf_counter()
        r = mmd_rbf(
            real.products["features"]["features"], fake.products["features"]["features"], chunk=s.mmd_chunk
        )
        out["mmd"] = {
            "value": r.mmd,
            "mmd2": r.mmd2,
            "gamma": r.gamma,
            "median_sq_distance": r.median_sq_distance,
        }
        timings["mmd"] = time.perf_counter() - t
    if "msssim" in s.metrics:
        entry: dict[str, Any] = {}
        shape = fake.shape
        for label, job in (("fake", fake), ("real", real)):
            vals = job.products["msssim"]["values"]
            entry[f"{label}_mean"] = float(vals.mean()) if vals.size else None
            entry[f"{label}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
            entry[f"{label}_pairs"] = int(vals.size)
        entry["value"] = entry["fake_mean"]
        entry["config"] = msssim_config(shape).to_dict() if shape else None
        if s.eval_protocol.msssim_all_pairs:
            entry["input"] = f"{s.eval_protocol.name}: the network's input, data range 1, all pairs"
        else:
            entry["input"] = (
                f"HU clipped to [{s.hu_clip[0]:g}, {s.hu_clip[1]:g}] mapped to [0, 1], random disjoint pairs"
            )
        out["msssim"] = entry
    if "critic" in s.metrics:
        t = time.perf_counter()
        res = critic_wasserstein(
            torch.from_numpy(real.products["critic"]["volumes"]),
            torch.from_numpy(fake.products["critic"]["volumes"]),
            dataclasses.replace(s.critic, seed=s.seed),
            device=device,
            progress=(lambda d, n: progress("critic", d, n)) if progress else None,
        )
        out["critic"] = {"value": res.wasserstein, **res.to_dict()}
        timings["critic"] = time.perf_counter() - t
    if "histogram" in s.metrics:
        hr = HUHistogram(counts=real.products["histogram"]["counts"].astype(np.int64))
        hf = HUHistogram(counts=fake.products["histogram"]["counts"].astype(np.int64))
        out["histogram"] = {
            "value": hu_wasserstein(hr, hf),
            "unit": "HU",
            "real_mean_hu": hr.mean(),
            "fake_mean_hu": hf.mean(),
            "real_quantiles_hu": hr.quantiles(),
            "fake_quantiles_hu": hf.quantiles(),
            **_histogram_counts(hr, hf),
        }
    if "anatomy" in s.metrics:
        from prdit.metrics.anatomy import summarize_anatomy

        keys = tuple(str(k) for k in real.products["anatomy"]["keys"])
        summary = summarize_anatomy(real.products["anatomy"]["rows"], fake.products["anatomy"]["rows"], keys)
        fracs = [v["fake_in_real_range"] for v in summary.values() if v["fake_in_real_range"] is not None]
        out["anatomy"] = {
            "value": float(np.mean(fracs)) if fracs else math.nan,
            "measures": summary,
            # per volume, in the order of the sorted file lists; NaN (undefined) is written as null
            "real_values": _per_volume(real.products["anatomy"]["rows"], keys),
            "fake_values": _per_volume(fake.products["anatomy"]["rows"], keys),
        }
    return out


def _histogram_counts(real: HUHistogram, fake: HUHistogram) -> dict[str, Any]:
    """Both pooled histograms for the report: 1 HU bins from ``lo``, trimmed to the HU range that
    holds any voxel of either set (a few hundred to ~4000 integers, whatever the number of volumes)."""
    nonzero = np.flatnonzero((real.counts > 0) | (fake.counts > 0))
    first, last = (int(nonzero[0]), int(nonzero[-1])) if nonzero.size else (0, -1)
    return {
        "lo": real.lo + first,
        "bin_hu": 1,
        "real_counts": [int(c) for c in real.counts[first : last + 1]],
        "fake_counts": [int(c) for c in fake.counts[first : last + 1]],
    }


def _per_volume(rows: np.ndarray, keys: tuple[str, ...]) -> dict[str, list[float]]:
    return {key: [float(v) for v in rows[:, j]] for j, key in enumerate(keys)}
