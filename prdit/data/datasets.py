"""PyTorch datasets for training: a preprocessed folder, or phantoms generated on the fly.

Items are float32 tensors ``[1, S, S, S]`` in [-1, 1]; every dataset carries ``.hu_window`` (the
:class:`~prdit.data.normalize.HUWindow` that maps model outputs back to HU) and ``.spacing`` (mm,
``(i, j, k)`` order) so that training can store both with the model.

Flips are an optional augmentation. They are a pure function of ``(flip_seed, epoch, index)``, so
a resumed run sees exactly the same augmented items: call :meth:`set_epoch` at the start of each
epoch (before creating the DataLoader iterator; with ``persistent_workers=False`` the workers pick
it up). Default flip axis is left-right only. Note that a left-right flip mirrors the anatomy (the
heart changes side, situs inversus): it doubles the data but teaches the model both layouts;
leave ``flip=False`` for anatomically faithful samples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from prdit.data.normalize import HUWindow

FLIP_AXES_LR = (2,)  # numpy axis W = patient left-right in the project orientation


class _FlipMixin:
    flip: bool
    flip_axes: tuple[int, ...]
    flip_seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose flips ``__getitem__`` applies (deterministic per index)."""
        self.epoch = int(epoch)

    def flips_for(self, index: int) -> tuple[int, ...]:
        """Numpy axes (of the ``(D, H, W)`` volume) flipped for this index in the current epoch."""
        if not self.flip:
            return ()
        rng = np.random.default_rng([int(self.flip_seed), int(self.epoch), int(index)])
        draws = rng.random(len(self.flip_axes))
        return tuple(ax for ax, u in zip(self.flip_axes, draws, strict=True) if u < 0.5)

    def _to_item(self, array: np.ndarray, index: int) -> torch.Tensor:
        axes = self.flips_for(index)
        if axes:
            array = np.flip(array, axis=axes)
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(0)


def _check_flip_axes(flip_axes: Sequence[int]) -> tuple[int, ...]:
    axes = tuple(int(a) for a in flip_axes)
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"flip_axes must be distinct numpy axes among 0, 1, 2; got {flip_axes!r}")
    return axes


class VolumeFolderDataset(_FlipMixin, Dataset):
    """A folder written by ``prdit preprocess`` (``manifest.json``, ``volumes/*.npy``, split files).

    ``split``: "train" or "val" reads ``train.txt`` / ``val.txt``; None takes every case.
    Volumes are memory-mapped, so the dataset is cheap to create and to copy into workers.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        flip: bool = False,
        *,
        flip_axes: Sequence[int] = FLIP_AXES_LR,
        flip_seed: int = 0,
    ):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(
                f"{self.root}: no manifest.json; is this a folder written by 'prdit preprocess'?"
            )
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path}: not valid JSON ({exc})") from exc
        cases = {c["id"]: c for c in self.manifest.get("cases", [])}
        if split is None:
            ids = sorted(cases)
        elif split in ("train", "val"):
            split_file = self.root / f"{split}.txt"
            if not split_file.exists():
                raise FileNotFoundError(f"{split_file}: missing split file")
            ids = [
                line.strip() for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
            unknown = [i for i in ids if i not in cases]
            if unknown:
                raise ValueError(f"{split_file}: ids not in the manifest: {', '.join(unknown[:5])}")
        else:
            raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
        if not ids:
            raise ValueError(f"{self.root}: split {split!r} is empty")
        self.split = split
        self.case_ids = ids
        self._files = [self.root / cases[i]["file"] for i in ids]
        missing = [str(f) for f in self._files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"{self.root}: volume files missing: {', '.join(missing[:5])}")
        self.hu_window = HUWindow.from_dict(self.manifest.get("hu_window"))
        spacing = self.manifest.get("spacing") or cases[ids[0]].get("spacing") or [1.0, 1.0, 1.0]
        self.spacing = tuple(float(s) for s in spacing)
        self.size = int(self.manifest.get("size", 0)) or int(np.load(self._files[0], mmap_mode="r").shape[0])
        self.flip = bool(flip)
        self.flip_axes = _check_flip_axes(flip_axes)
        self.flip_seed = int(flip_seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} volumes")
        index %= len(self)
        array = np.load(self._files[index], mmap_mode="r")
        if array.ndim != 3:
            raise ValueError(f"{self._files[index]}: expected a 3D array, got shape {array.shape}")
        return self._to_item(array, index)


class PhantomDataset(_FlipMixin, Dataset):
    """``length`` chest phantoms of edge ``size``; item i is the phantom with seed ``seed_offset + i``.

    Values are ``hu_window.to_unit(HU)``. With ``cache`` each item is generated once per process
    (float32 in memory: ``4 * size^3`` bytes per item, e.g. 1 MiB at 64^3, 8 MiB at 128^3).
    """

    def __init__(
        self,
        size: int,
        length: int,
        seed_offset: int = 0,
        hu_window: HUWindow | None = None,
        flip: bool = False,
        spacing: float | None = None,
        cache: bool = True,
        *,
        flip_axes: Sequence[int] = FLIP_AXES_LR,
        flip_seed: int = 0,
    ):
        from prdit.data.phantom import MAX_SIZE, MIN_SIZE, default_spacing

        if not MIN_SIZE <= int(size) <= MAX_SIZE:
            raise ValueError(f"phantom size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
        if int(length) < 1:
            raise ValueError(f"PhantomDataset length must be at least 1, got {length}")
        if int(seed_offset) < 0:
            raise ValueError(f"seed_offset must be non-negative, got {seed_offset}")
        self.size = int(size)
        self.length = int(length)
        self.seed_offset = int(seed_offset)
        self.hu_window = hu_window if hu_window is not None else HUWindow()
        self.phantom_spacing = spacing
        sp = float(spacing) if spacing is not None else default_spacing(self.size)
        self.spacing = (sp, sp, sp)
        self.cache = bool(cache)
        self._cache: dict[int, np.ndarray] = {}
        self.flip = bool(flip)
        self.flip_axes = _check_flip_axes(flip_axes)
        self.flip_seed = int(flip_seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def unit_array(self, index: int) -> np.ndarray:
        """The un-flipped item as a float32 numpy array in [-1, 1]."""
        from prdit.data.phantom import generate_phantom

        cached = self._cache.get(index)
        if cached is not None:
            return cached
        volume = generate_phantom(self.seed_offset + index, size=self.size, spacing=self.phantom_spacing)
        unit = np.asarray(self.hu_window.to_unit(volume.array), dtype=np.float32)
        if self.cache:
            self._cache[index] = unit
        return unit

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} phantoms")
        index %= self.length
        return self._to_item(self.unit_array(index), index)
