"""Folders of volumes for evaluation: listing, size checks, loading, resampling and the cache.

* A folder holds one volume per file: NIfTI (``.nii``, ``.nii.gz``), ``.npy`` (optional JSON
  sidecar), ``.npz``, ``.mha``/``.mhd``/``.nrrd``. Sidecar ``.json`` files (such as those
  ``prdit sample`` writes) and hidden files are skipped; files are taken in sorted name order.
* All volumes of both folders must have one shape, because features, MS-SSIM and the critic are
  only comparable at one resolution. Otherwise the error lists the shapes and the files that have
  them, and ``size`` (``--size N``) resamples every volume to ``N^3`` instead (area averaging
  where an axis shrinks, trilinear where it grows: a plain array resize, like the paper's
  "downsample to the target size"; voxel spacing is not used).
* Values are HU. A folder stored in the model's [-1, 1] scale is detected on its first volume and
  rejected unless declared with ``scale="unit"`` (mapped back through the HU window).
* The cache keeps each per-folder product (features, histogram, anatomy, pooled volumes, MS-SSIM
  values) in ``<cache_dir>/<folder hash>/<product>-<key hash>.npz``; the key covers the file names,
  sizes and modification times plus every setting that changes the product (extractor identity,
  size, seed...). A second run with the same inputs loads them instead of reading volumes again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prdit.atomic import write_bytes_atomic
from prdit.data.normalize import HUWindow
from prdit.volume import Volume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy", ".npz", ".mha", ".mhd", ".nrrd", ".nhdr")
CACHE_FORMAT = 1


class FolderError(ValueError):
    """A folder that cannot be evaluated (missing, empty, mixed sizes, wrong intensity scale)."""


# --------------------------------------------------------------------------- listing
def list_volume_files(folder: str | os.PathLike) -> list[Path]:
    """Volume files directly inside ``folder``, sorted by name."""
    root = Path(folder)
    if not root.exists():
        raise FolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder (prdit eval compares two folders of volumes)")
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(VOLUME_SUFFIXES)
    )
    if not files:
        raise FolderError(
            f"{root}: no volume files found (looked for {', '.join(VOLUME_SUFFIXES)} directly in the folder)"
        )
    return files


def fingerprint(files: Sequence[Path]) -> str:
    """Hash of the file names, sizes and modification times: changes when any file changes."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- shapes
def peek_shape(path: Path) -> tuple[int, int, int] | None:
    """Array shape ``(D, H, W)`` from the header alone where that is cheap (NIfTI, .npy), else None."""
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            shape = nib.load(str(path)).shape
            if len(shape) == 3:
                return (int(shape[2]), int(shape[1]), int(shape[0]))
        elif name.endswith(".npy"):
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.ndim == 3:
                return tuple(int(s) for s in arr.shape)  # type: ignore[return-value]
    except Exception:  # unreadable headers are reported by the real reader, with its message
        return None
    return None


def _describe_shapes(groups: dict[tuple, list[str]]) -> str:
    parts = []
    for shape, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} files)" if len(names) > 4 else "")
        parts.append(f"{'x'.join(map(str, shape))}: {shown}")
    return "; ".join(parts)


def check_shapes(folders: dict[str, Sequence[Path]]) -> tuple[int, int, int] | None:
    """Common shape of every volume in ``folders`` (label -> files) from cheap headers.

    Raises :class:`FolderError` naming the odd files when shapes differ. Returns None when some
    shapes cannot be read cheaply (they are then checked while loading).
    """
    groups: dict[tuple, list[str]] = {}
    unknown = False
    for label, files in folders.items():
        for p in files:
            shape = peek_shape(p)
            if shape is None:
                unknown = True
                continue
            groups.setdefault(shape, []).append(f"{label}/{p.name}")
    if len(groups) > 1:
        raise FolderError(
            f"volumes have different shapes ({_describe_shapes(groups)}); all real and generated volumes "
            "must have one shape: pass --size N to resample every volume to N^3"
        )
    if unknown or not groups:
        return None
    return next(iter(groups))


# --------------------------------------------------------------------------- loading
def resample_to(array: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``(D, H, W)`` array to ``size^3``: area average on shrinking axes, then trilinear."""
    x = torch.tensor(np.asarray(array, dtype=np.float32))[None, None]  # a copy: input may be read-only
    shape = tuple(x.shape[2:])
    if shape == (size, size, size):
        return x[0, 0]
    shrunk = tuple(min(s, size) for s in shape)
    if shrunk != shape:
        x = F.interpolate(x, size=shrunk, mode="area")
    if shrunk != (size, size, size):
        x = F.interpolate(x, size=(size, size, size), mode="trilinear", align_corners=False)
    return x[0, 0]


@dataclass(frozen=True)
class LoadedVolume:
    index: int  # position in the folder's sorted file list
    path: Path
    hu: torch.Tensor  # (D, H, W) float32 HU, after resampling
    volume: Volume  # as read (original geometry and values), for geometry-aware measures


def load_for_eval(
    path: Path,
    index: int,
    *,
    size: int | None,
    scale: str = "hu",
    window: HUWindow | None = None,
    expected_shape: tuple[int, int, int] | None = None,
    check_scale: bool = False,
) -> LoadedVolume:
    """Read one volume (via :func:`prdit.data.io.read_volume`), convert to HU, resample if asked."""
    from prdit.data.io import read_volume

    vol = read_volume(path)
    arr = np.asarray(vol.array, dtype=np.float32)
    if scale == "unit":
        if float(np.abs(arr).max()) > 1.01:
            raise FolderError(
                f"{path}: declared to be in the model's [-1, 1] scale but holds values in "
                f"[{arr.min():.4g}, {arr.max():.4g}]; is it in HU?"
            )
        arr = np.asarray((window or HUWindow()).to_hu(arr), dtype=np.float32)
        vol = vol.with_array(arr)
    elif scale not in ("hu", "auto"):
        raise ValueError(f"unknown intensity scale {scale!r}; allowed: auto, hu, unit")
    elif scale == "auto" and check_scale and float(np.abs(arr).max()) <= 1.01:
        raise FolderError(
            f"{path}: values lie in [{arr.min():.4g}, {arr.max():.4g}], which looks like the model's [-1, 1] "
            "scale, not HU; declare it with --real-scale unit / --fake-scale unit (mapped through the "
            "HU window -1000..1000), or with --real-scale hu / --fake-scale hu if these really are HU "
            "(e.g. a flat water volume from an untrained model)"
        )
    if size is None and expected_shape is not None and tuple(arr.shape) != tuple(expected_shape):
        raise FolderError(
            f"{path}: shape {'x'.join(map(str, arr.shape))} differs from the other volumes "
            f"({'x'.join(map(str, expected_shape))}); pass --size N to resample every volume to N^3"
        )
    hu = resample_to(arr, size) if size is not None else torch.tensor(arr)  # a copy: arr may be read-only
    return LoadedVolume(index=index, path=path, hu=hu, volume=vol)


# --------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$PRDIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/prdit/eval``, else ``~/.cache/prdit/eval``."""
    if os.environ.get("PRDIT_CACHE_DIR"):
        return Path(os.environ["PRDIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prdit" / "eval"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FolderCache:
    """Per-folder, per-product cache of evaluation inputs (atomic ``.npz`` files).

    ``key`` must contain everything the product depends on; the folder fingerprint is added here.
    A corrupt or mismatching entry is ignored (and overwritten), never trusted.
    """

    def __init__(self, root: str | os.PathLike | None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def _path(self, folder: Path, product: str, key: dict[str, Any]) -> tuple[Path, str]:
        key_text = json.dumps(
            {"format": CACHE_FORMAT, "product": product, **key}, sort_keys=True, default=str
        )
        folder_dir = self.root / _short_hash(str(folder.resolve()))
        return folder_dir / f"{product}-{_short_hash(key_text)}.npz", key_text

    def load(self, folder: Path, product: str, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path, key_text = self._path(folder, product, key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["__key__"]) != key_text:
                    return None
                return {k: data[k] for k in data.files if k != "__key__"}
        except Exception:  # truncated/corrupt entry: recompute
            return None

    def store(
        self, folder: Path, product: str, key: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> Path | None:
        """Write atomically (temp file in the same folder, then ``os.replace``); returns the path."""
        if not self.enabled:
            return None
        path, key_text = self._path(folder, product, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, __key__=np.array(key_text), **arrays)
        write_bytes_atomic(path, buf.getvalue())
        return path
