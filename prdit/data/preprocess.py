"""Turn scans (LIDC-IDRI DICOM, RAD-ChestCT .npz, anything readable) into a training dataset folder.

The published recipes (``docs/data.md`` has the details and the sources):

* ``lidc``: resample to 1 mm isotropic (cubic B-spline), centre crop 256^3 (pad with -1024 HU),
  clip below -1000 HU and above the volume's 0.999 quantile, downsample to ``--size``.
* ``rad``: RAD-ChestCT as published: no resampling (the volumes are already isotropic), clip HU
  to [-1000, 1000], centre crop 256^3, downsample to ``--size``.
* ``generic``: like ``lidc`` but linear interpolation and a fixed [-1000, 1000] clip.

Every recipe first brings the volume to the project orientation (``i`` to the patient's left,
``j`` posterior, ``k`` superior: identity direction in LPS), exactly by axis permutation/flip when
the scan is axis-aligned, by resampling otherwise.

Normalisation: ``window`` (default) maps a fixed HU window (default [-1000, 1000]) linearly to
[-1, 1] for every case, so a model output maps back to HU exactly (``HUWindow.to_hu``).
``minmax`` is the paper's per-volume min-max to [-1, 1]: better contrast use, but the HU scale
differs per case, so generated volumes are *not* HU-recoverable (the manifest records each case's
min and max; the dataset window then holds a nominal mapping only).

Output folder::

    OUT/manifest.json        settings + one record per finished case + failures
    OUT/preprocess.json      the settings (a re-run with other settings is refused)
    OUT/volumes/<id>.npy     (S, S, S) float16 (default) or float32 in [-1, 1], memory-mappable
    OUT/volumes/<id>.json    the case record (written last: its presence marks the case done)
    OUT/train.txt, val.txt   case ids, one per line

Re-running skips finished cases (resumable); a bad case is reported and skipped, the rest finish.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from prdit.data.normalize import HUWindow
from prdit.volume import Volume

MANIFEST = "manifest.json"
SETTINGS = "preprocess.json"
VOLUMES = "volumes"
FORMAT_VERSION = 1
PAD_HU = -1024.0
_VOLUME_FILE_SUFFIXES = (".nii", ".nii.gz", ".npy", ".npz", ".mha", ".mhd", ".nrrd", ".nhdr")


@dataclass(frozen=True)
class Recipe:
    """One published preprocessing recipe."""

    name: str
    spacing_mm: float | None  # isotropic resampling target; None keeps the scan's spacing
    crop: int  # centre crop edge in voxels (at the resampled spacing)
    clip_low: float
    clip_high: float | None  # fixed upper clip (HU), or None to use the quantile
    clip_quantile: float | None
    interpolation: str  # "bspline" (cubic) or "linear"
    description: str = ""


RECIPES: dict[str, Recipe] = {
    "lidc": Recipe(
        "lidc",
        1.0,
        256,
        -1000.0,
        None,
        0.999,
        "bspline",
        "LIDC-IDRI: 1 mm cubic resampling, centre crop 256^3, clip [-1000, q0.999], downsample",
    ),
    "rad": Recipe(
        "rad",
        None,
        256,
        -1000.0,
        1000.0,
        None,
        "linear",
        "RAD-ChestCT: clip [-1000, 1000], centre crop 256^3, downsample (no resampling)",
    ),
    "generic": Recipe(
        "generic",
        1.0,
        256,
        -1000.0,
        1000.0,
        None,
        "linear",
        "any CT: 1 mm linear resampling, centre crop 256^3, clip [-1000, 1000], downsample",
    ),
}


@dataclass(frozen=True)
class Settings:
    """Everything that determines a case's output (a resumed run must use the same)."""

    recipe: str
    size: int
    norm: str = "window"
    window_low: float = -1000.0
    window_high: float = 1000.0
    dtype: str = "float16"
    crop: int | None = None  # override the recipe's crop (voxels)
    spacing_mm: float | None = None  # override the recipe's resampling spacing
    npz_key: str | None = None
    assume_spacing: float | None = None  # spacing of inputs that do not store one (npz)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if not 8 <= int(self.size) <= 1024:
            raise ValueError(f"--size must be between 8 and 1024 voxels, got {self.size}")
        if self.norm not in ("window", "minmax"):
            raise ValueError(f"--norm must be 'window' or 'minmax', got {self.norm!r}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"--dtype must be float16 or float32, got {self.dtype!r}")
        HUWindow(self.window_low, self.window_high)  # validates
        if self.crop is not None and self.crop < self.size:
            raise ValueError(f"--crop ({self.crop}) must be at least --size ({self.size})")

    @property
    def recipe_obj(self) -> Recipe:
        r = RECIPES[self.recipe]
        changes: dict[str, Any] = {}
        if self.crop is not None:
            changes["crop"] = int(self.crop)
        if self.spacing_mm is not None:
            changes["spacing_mm"] = float(self.spacing_mm)
        return Recipe(**{**asdict(r), **changes}) if changes else r

    @property
    def hu_window(self) -> HUWindow:
        return HUWindow(self.window_low, self.window_high, self.norm)


@dataclass
class Case:
    """One input case: a file or a DICOM folder."""

    case_id: str
    path: str
    kind: str  # "dicom" or "file"


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    out: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        lines = [
            f"preprocess: {len(self.done)} case(s) written, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed -> {self.out}"
        ]
        for f in self.failed:
            lines.append(f"  FAILED {f['case_id']}: {f['error']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------- geometry
def reorient_to_lps(volume: Volume, interpolation: str = "linear") -> Volume:
    """Return the volume with identity direction (i -> L, j -> P, k -> S).

    Axis-aligned scans (almost all) are permuted/flipped exactly, without interpolation; oblique
    ones are resampled onto an axis-aligned grid at their finest spacing.
    """
    d = volume.direction
    if np.allclose(d, np.eye(3), atol=1e-4):
        return volume
    perm = np.argmax(np.abs(d), axis=1)  # index axis (i,j,k) carrying each LPS axis
    axis_aligned = sorted(perm.tolist()) == [0, 1, 2] and np.allclose(
        np.abs(d[np.arange(3), perm]), 1.0, atol=1e-3
    )
    if not axis_aligned:
        return resample_isotropic(volume, min(volume.spacing), interpolation)
    signs = np.sign(d[np.arange(3), perm])
    # numpy axis of index axis a is 2 - a; output numpy axis for LPS axis x is 2 - x
    arr = volume.array
    np_axes = [2 - perm[2 - out_ax] for out_ax in range(3)]  # output numpy axis -> input numpy axis
    arr = np.transpose(arr, np_axes)
    new_spacing = [volume.spacing[perm[x]] for x in range(3)]
    size = [volume.size_ijk[perm[x]] for x in range(3)]
    origin = np.array(volume.origin, dtype=np.float64)
    flip_np = []
    for x in range(3):
        if signs[x] < 0:
            # index runs towards -x: flip it; the new first voxel is the old last one
            origin[x] -= (size[x] - 1) * new_spacing[x]
            flip_np.append(2 - x)
    if flip_np:
        arr = np.flip(arr, axis=tuple(flip_np))
    # other components of origin are unchanged: the axes are exactly aligned
    return Volume(
        np.ascontiguousarray(arr), tuple(new_spacing), tuple(origin), np.eye(3), dict(volume.metadata)
    )


def _isotropic_grid(volume: Volume, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(size per axis, origin) of the identity-direction grid at ``spacing`` covering the scan."""
    size = np.asarray(volume.size_ijk, dtype=np.float64)
    corners = np.array(
        [[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    )
    pts = volume.index_to_lps(corners)
    lo, hi = pts.min(0), pts.max(0)
    n = np.maximum(np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1, 1)
    origin = (lo + hi) / 2.0 - (n - 1) * spacing / 2.0  # centred on the scan's extent
    return n, origin


def resample_isotropic(
    volume: Volume,
    spacing: float,
    interpolation: str = "linear",
    crop: int | None = None,
) -> Volume:
    """Resample onto an identity-direction grid of the given isotropic spacing covering the scan.

    With ``crop``, only the centred ``crop``^3 part of that grid is computed (voxels outside the
    scan get -1024 HU): exactly the grid points of "resample, then centre crop/pad", without
    interpolating the voxels the crop would throw away (a 350 mm scan at 1 mm is 43 M voxels, its
    256^3 crop 17 M).
    """
    import SimpleITK as sitk

    interp = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolation not in interp:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    n_full, origin = _isotropic_grid(volume, spacing)
    n = n_full
    start = np.zeros(3, dtype=int)
    if crop is not None:
        start = (n_full - crop) // 2  # same rounding as center_crop_pad on the full grid
        origin = origin + start * spacing
        n = np.array([crop, crop, crop])
    image = volume.with_array(volume.array.astype(np.float32, copy=False)).to_sitk()
    out = sitk.Resample(
        image,
        [int(v) for v in n],
        sitk.Transform(),
        interp[interpolation],
        [float(v) for v in origin],
        [float(spacing)] * 3,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        PAD_HU,
        sitk.sitkFloat32,
    )
    result = Volume.from_sitk(out, **volume.metadata)
    if crop is not None:
        # points beyond the full grid are padding (as center_crop_pad would add), not extrapolation
        arr = result.array
        for ijk_axis in range(3):
            ax = 2 - ijk_axis  # numpy axis of index axis i/j/k
            lo = max(0, -int(start[ijk_axis]))
            hi = min(crop, int(n_full[ijk_axis] - start[ijk_axis]))
            index = [slice(None)] * 3
            if lo > 0:
                index[ax] = slice(0, lo)
                arr[tuple(index)] = PAD_HU
            if hi < crop:
                index[ax] = slice(max(hi, 0), crop)
                arr[tuple(index)] = PAD_HU
    return result


def center_crop_pad(array: np.ndarray, size: int, pad_value: float = PAD_HU) -> tuple[np.ndarray, list[int]]:
    """Centre crop (or pad with ``pad_value``) every axis to ``size``; returns (array, start offsets).

    The offsets are the input index of output index 0 per numpy axis (negative when padded).
    """
    out = np.full((size, size, size), pad_value, dtype=np.float32)
    starts = []
    src, dst = [], []
    for n in array.shape:
        start = (n - size) // 2
        starts.append(start)
        s0, s1 = max(start, 0), min(start + size, n)
        src.append(slice(s0, s1))
        dst.append(slice(s0 - start, s1 - start))
    out[tuple(dst)] = array[tuple(src)]
    return out, starts


def downsample(array: np.ndarray, size: int) -> np.ndarray:
    """Cubic array -> ``size``^3: block mean for integer factors (area average), else
    Gaussian anti-aliasing then linear interpolation."""
    n = array.shape[0]
    if n == size:
        return array.astype(np.float32, copy=False)
    if n % size == 0:
        f = n // size
        return array.reshape(size, f, size, f, size, f).mean(axis=(1, 3, 5), dtype=np.float32)
    factor = n / size
    src = ndimage.gaussian_filter(array, sigma=max(0.0, (factor - 1.0) / 2.0)) if factor > 1 else array
    out = ndimage.zoom(src, size / n, order=1, mode="nearest", grid_mode=True)
    return out[:size, :size, :size].astype(np.float32)


def preprocess_volume(volume: Volume, settings: Settings) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the recipe to one volume: ``(array in [-1, 1] (S, S, S) float32, record)``."""
    recipe = settings.recipe_obj
    info: dict[str, Any] = {
        "original_shape": list(volume.shape),
        "original_spacing": [float(v) for v in volume.spacing],
        "original_origin": [float(v) for v in volume.origin],
        "original_direction": [[float(v) for v in row] for row in volume.direction],
    }
    if recipe.spacing_mm is not None:
        # resample straight onto the centred crop (same grid points as resample-then-crop)
        vol = resample_isotropic(volume, recipe.spacing_mm, recipe.interpolation, crop=recipe.crop)
    else:
        vol = reorient_to_lps(volume, recipe.interpolation)
    hu = vol.array.astype(np.float32, copy=False)
    cropped, starts = center_crop_pad(hu, recipe.crop)  # a no-op after the cropped resampling
    # geometry of the crop: origin of output index 0 (numpy axes reversed to (i, j, k))
    offset_ijk = np.array(starts[::-1], dtype=np.float64)
    crop_origin = vol.index_to_lps(offset_ijk)
    high = recipe.clip_high
    if recipe.clip_quantile is not None:
        high = float(np.quantile(cropped, recipe.clip_quantile))
        high = max(high, recipe.clip_low + 1.0)
    np.clip(cropped, recipe.clip_low, high, out=cropped)
    small = downsample(cropped, settings.size)
    factor = recipe.crop / settings.size
    out_spacing = [float(s * factor) for s in vol.spacing]
    # the downsampled voxel centre 0 sits at the centre of the first block
    out_origin = crop_origin + (factor - 1.0) / 2.0 * np.asarray(vol.spacing)
    if settings.norm == "window":
        unit = settings.hu_window.to_unit(small)
    else:
        lo, hi = float(small.min()), float(small.max())
        info["minmax_hu"] = [lo, hi]
        unit = (small - lo) / max(hi - lo, 1e-6) * 2.0 - 1.0
    info.update(
        {
            "shape": [settings.size] * 3,
            "spacing": out_spacing,
            "origin": [float(v) for v in out_origin],
            "direction": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "hu_clip": [float(recipe.clip_low), float(high)],
        }
    )
    return unit.astype(np.float32, copy=False), info


# --------------------------------------------------------------------------------------- discovery
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _case_id(rel: str) -> str:
    rel = rel.replace("\\", "/").strip("/")
    for suffix in sorted(_VOLUME_FILE_SUFFIXES, key=len, reverse=True):
        if rel.lower().endswith(suffix):
            rel = rel[: -len(suffix)]
            break
    return _SAFE.sub("_", rel.replace("/", "__")).strip("_") or "case"


def _folder_has_dicom(folder: Path) -> bool:
    from prdit.data.dicom_series import _is_dicom_file

    for entry in sorted(folder.iterdir()):
        if entry.is_file() and (_is_dicom_file(str(entry)) or entry.suffix.lower() == ".dcm"):
            return True
    return False


def discover_cases(source: str | os.PathLike, recipe: str) -> list[Case]:
    """Cases under ``source``: DICOM series folders (lidc), .npz files (rad), or both plus any
    volume file (generic). A single file is one case."""
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        return [Case(_case_id(root.name), str(root), "file")]
    cases: list[Case] = []
    want_dicom = recipe in ("lidc", "generic")
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        rel_folder = here.relative_to(root).as_posix()
        if want_dicom and files and _folder_has_dicom(here):
            cases.append(Case(_case_id(rel_folder if rel_folder != "." else root.name), str(here), "dicom"))
            continue
        for name in sorted(files):
            low = name.lower()
            if recipe == "rad" and not low.endswith(".npz"):
                continue
            if recipe == "lidc":
                continue
            if not low.endswith(_VOLUME_FILE_SUFFIXES) or low.endswith(".json"):
                continue
            rel = (here / name).relative_to(root).as_posix()
            cases.append(Case(_case_id(rel), str(here / name), "file"))
    seen: dict[str, int] = {}
    for c in cases:  # make ids unique
        if c.case_id in seen:
            seen[c.case_id] += 1
            c.case_id = f"{c.case_id}_{seen[c.case_id]}"
        else:
            seen[c.case_id] = 0
    return cases


def _read_case(case: Case, settings: Settings) -> tuple[Volume, dict[str, Any]]:
    from prdit.data.io import list_dicom_series, read_volume

    extra: dict[str, Any] = {}
    if case.kind == "dicom":
        series = [s for s in list_dicom_series(case.path) if os.path.samefile(s.folder, case.path)]
        ct = [s for s in series if s.modality.upper() == "CT"]
        if not ct:
            found = ", ".join(f"{s.modality or '?'} ({s.number_of_files} files)" for s in series) or "none"
            raise ValueError(f"{case.path}: no CT series in this folder (found: {found})")
        chosen = max(ct, key=lambda s: s.number_of_files)
        if len(ct) > 1:
            extra["note"] = f"{len(ct)} CT series in the folder; took the largest"
        extra["series_uid"] = chosen.uid
        volume = read_volume(case.path, chosen.uid)
    else:
        volume = read_volume(case.path, key=settings.npz_key, spacing=settings.assume_spacing)
        if not volume.metadata.get("spacing_known", True):
            extra["note"] = "the file stores no spacing; 1 mm assumed (use --assume-spacing)"
    return volume, extra


def process_case(case: Case, settings: Settings, out_dir: str) -> dict[str, Any]:
    """Read, preprocess and write one case; returns its record (raises on bad input)."""
    out = Path(out_dir) / VOLUMES
    volume, extra = _read_case(case, settings)
    unit, info = preprocess_volume(volume, settings)
    npy = out / f"{case.case_id}.npy"
    tmp = out / f".{case.case_id}.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, unit.astype(settings.dtype))
    os.replace(tmp, npy)
    record = {"id": case.case_id, "file": f"{VOLUMES}/{npy.name}", "source": case.path, **extra, **info}
    _write_json_atomic(out / f"{case.case_id}.json", record)
    return record


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _worker(case: Case, settings: Settings, out_dir: str) -> tuple[str, dict[str, Any] | None, str | None]:
    try:
        return case.case_id, process_case(case, settings, out_dir), None
    except MemoryError:
        return case.case_id, None, "out of memory"
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the batch
        return (
            case.case_id,
            None,
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc),
        )


def _init_worker(threads: int) -> None:
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, threads))
    except Exception:  # noqa: BLE001 - thread tuning is best effort
        pass


def split_cases(ids: Sequence[str], val_count: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split. Default validation size: 200 as published, but at
    most 10 % of the cases (at least 1 when there are 2 or more)."""
    ids = sorted(ids)
    n = len(ids)
    if n < 2:
        return ids, []
    if val_count is None:
        val_count = min(200, max(1, round(0.1 * n)))
    val_count = max(0, min(int(val_count), n - 1))
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(ids[i] for i in order[:val_count])
    vs = set(val)
    return [i for i in ids if i not in vs], val


def run_preprocess(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: Settings,
    *,
    workers: int = 1,
    val_count: int | None = None,
    split_seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Preprocess every case under ``source`` into ``out_dir`` (resumable; see the module doc)."""
    from tqdm import tqdm

    from prdit import __version__

    out = Path(out_dir)
    (out / VOLUMES).mkdir(parents=True, exist_ok=True)
    settings_path = out / SETTINGS
    wanted = {"format_version": FORMAT_VERSION, **asdict(settings)}
    if settings_path.exists():
        try:
            previous = json.loads(settings_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{settings_path}: corrupt settings file ({exc}); delete it to start over"
            ) from exc
        if previous != wanted:
            diff = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
            raise ValueError(
                f"{out}: was preprocessed with other settings ({', '.join(diff)} differ); "
                "use a new output folder or delete it"
            )
    else:
        _write_json_atomic(settings_path, wanted)

    cases = discover_cases(source, settings.recipe)
    if not cases:
        raise ValueError(f"{source}: no cases found for recipe '{settings.recipe}'")
    summary = RunSummary(out=str(out))
    todo = []
    for case in cases:
        if (out / VOLUMES / f"{case.case_id}.json").exists() and (
            out / VOLUMES / f"{case.case_id}.npy"
        ).exists():
            summary.skipped.append(case.case_id)
        else:
            todo.append(case)
    bar = tqdm(total=len(todo), desc=f"preprocess ({settings.recipe})", unit="case", disable=not progress)
    results = []
    if workers <= 1 or len(todo) <= 1:
        for case in todo:
            results.append(_worker(case, settings, str(out)))
            bar.update(1)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(_worker, case, settings, str(out)) for case in todo]
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
    bar.close()
    by_id = {c.case_id: c for c in cases}
    for case_id, _record, error in results:
        if error is None:
            summary.done.append(case_id)
        else:
            summary.failed.append({"case_id": case_id, "source": by_id[case_id].path, "error": error})
            if log:
                log(f"case {case_id} failed: {error}")
    write_manifest(out, settings, summary.failed, val_count, split_seed, __version__)
    return summary


def write_manifest(
    out: Path,
    settings: Settings,
    failed: list[dict[str, str]],
    val_count: int | None,
    split_seed: int,
    version: str,
) -> dict[str, Any]:
    """Collect the per-case records into manifest.json and write train.txt / val.txt."""
    records = []
    for path in sorted((out / VOLUMES).glob("*.json")):
        if path.name.startswith("."):
            continue
        records.append(json.loads(path.read_text(encoding="utf-8")))
    ids = [r["id"] for r in records]
    train, val = split_cases(ids, val_count, split_seed)
    recipe = settings.recipe_obj
    window = settings.hu_window
    if settings.norm == "minmax" and records:
        # nominal mapping for outputs: min-max removes the per-case scale, so this is approximate
        lows = [r["minmax_hu"][0] for r in records if "minmax_hu" in r]
        highs = [r["minmax_hu"][1] for r in records if "minmax_hu" in r]
        if lows and highs and float(np.median(highs)) > float(np.median(lows)):
            window = HUWindow(float(np.median(lows)), float(np.median(highs)), "minmax")
    spacing = records[0]["spacing"] if records else None
    manifest = {
        "format_version": FORMAT_VERSION,
        "software_version": version,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": asdict(recipe),
        "size": settings.size,
        "spacing": spacing,
        "dtype": settings.dtype,
        "norm": settings.norm,
        "hu_window": window.to_dict(),
        "hu_recoverable": settings.norm == "window",
        "num_cases": len(records),
        "splits": {"train": "train.txt", "val": "val.txt", "seed": split_seed},
        "cases": records,
        "failed": failed,
    }
    _write_json_atomic(out / MANIFEST, manifest)
    for name, ids_ in (("train.txt", train), ("val.txt", val)):
        tmp = out / f".{name}.tmp"
        tmp.write_text("".join(f"{i}\n" for i in ids_), encoding="utf-8")
        os.replace(tmp, out / name)
    return manifest


def expected_output_spacing(settings: Settings, input_spacing: Sequence[float] | None = None) -> float | None:
    """Output voxel size in mm (None for the rad recipe without known input spacing)."""
    recipe = settings.recipe_obj
    base = recipe.spacing_mm
    if base is None:
        if input_spacing is None:
            return None
        base = float(min(input_spacing))
    return base * recipe.crop / settings.size


__all__ = [
    "RECIPES",
    "Recipe",
    "Settings",
    "Case",
    "RunSummary",
    "reorient_to_lps",
    "resample_isotropic",
    "center_crop_pad",
    "downsample",
    "preprocess_volume",
    "discover_cases",
    "process_case",
    "split_cases",
    "run_preprocess",
    "write_manifest",
    "expected_output_spacing",
]
