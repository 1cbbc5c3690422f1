"""PNG previews of volumes: three orthogonal mid-slices per volume, in a grid (what ``prdit sample``
writes beside each sample and training writes every ``log.preview_every`` steps)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def orthogonal_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal, sagittal mid-slices of a ``(D, H, W)`` array, oriented for display.

    Axial as stored (row = j/posterior down, column = i/patient left to the right: radiological);
    coronal and sagittal with superior (k increasing) at the top.
    """
    d, h, w = volume.shape
    return [volume[d // 2], volume[:, h // 2, :][::-1], volume[:, :, w // 2][::-1]]


def save_slices_png(
    rows: Sequence[Sequence[Any]],
    path: str | Path,
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    column_labels: Sequence[str] | None = None,
    min_tile: int = 128,
) -> Path:
    """A grid PNG: one row per entry, each volume in a row shown as three orthogonal slices.

    ``rows[r][c]`` is a ``(D, H, W)`` array or tensor; values are windowed to ``value_range``.
    Small volumes are enlarged (nearest neighbour) to at least ``min_tile`` pixels. Written
    atomically (temporary file + rename).
    """
    from PIL import Image, ImageDraw

    lo, hi = value_range
    tiles_rows = []
    for row in rows:
        tiles = []
        for vol in row:
            arr = as_numpy(vol)
            if arr.ndim != 3:
                raise ValueError(f"save_slices_png: expected (D, H, W) volumes, got shape {arr.shape}")
            for sl in orthogonal_slices(arr):
                img = np.clip((sl - lo) / (hi - lo), 0.0, 1.0)
                img = (img * 255.0 + 0.5).astype(np.uint8)
                scale = max(1, int(np.ceil(min_tile / max(img.shape))))
                if scale > 1:
                    img = np.kron(img, np.ones((scale, scale), dtype=np.uint8))
                tiles.append(img)
        tiles_rows.append(tiles)
    if not tiles_rows or not tiles_rows[0]:
        raise ValueError("save_slices_png: nothing to draw")
    gap = 4
    label_h = 16 if column_labels else 0
    tile_h = max(t.shape[0] for r in tiles_rows for t in r)
    tile_w = max(t.shape[1] for r in tiles_rows for t in r)
    ncols = max(len(r) for r in tiles_rows)
    canvas = Image.new(
        "L", (ncols * (tile_w + gap) + gap, label_h + len(tiles_rows) * (tile_h + gap) + gap), 0
    )
    for r, tiles in enumerate(tiles_rows):
        for c, tile in enumerate(tiles):
            canvas.paste(
                Image.fromarray(tile), (gap + c * (tile_w + gap), label_h + gap + r * (tile_h + gap))
            )
    if column_labels:
        draw = ImageDraw.Draw(canvas)
        for i, label in enumerate(column_labels):
            draw.text((gap + 3 * i * (tile_w + gap) + 2, 2), str(label), fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
