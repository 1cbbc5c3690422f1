"""The common currency of the project: a CT volume in HU that knows where it is in the patient.

Every reader returns a :class:`Volume` and every writer takes one, so geometry survives any round
trip. Conventions follow SimpleITK/ITK (and so DICOM), because that is where most mistakes happen:

* ``array[k, j, i]`` with shape ``(D, H, W)``; ``i`` (the last numpy axis, W) is the fastest index.
* ``spacing``, ``origin`` and the columns of ``direction`` are given in index order ``(i, j, k)``,
  exactly like ``SimpleITK.Image.GetSpacing()`` — *not* in numpy axis order.
* Patient coordinates are LPS (DICOM): +x towards the patient's Left, +y Posterior, +z Superior.
  NIfTI's RAS is obtained by negating x and y (:meth:`Volume.affine_ras`).

``position_lps = origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_triple(name: str, value: Any) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise ValueError(f"Volume {name} must be three finite numbers (i, j, k order), got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass
class Volume:
    """HU array ``(D, H, W)`` plus spacing/origin/direction in LPS (ITK index order)."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise ValueError(
                f"a Volume needs a 3D array (D, H, W); got {arr.ndim}D with shape {tuple(arr.shape)}"
            )
        if min(arr.shape) < 1:
            raise ValueError(f"a Volume cannot be empty; got shape {tuple(arr.shape)}")
        self.array = arr
        self.spacing = _as_triple("spacing", self.spacing)
        if min(self.spacing) <= 0:
            raise ValueError(f"Volume spacing must be positive (mm), got {self.spacing}")
        self.origin = _as_triple("origin", self.origin)
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.shape == (9,):
            direction = direction.reshape(3, 3)
        if direction.shape != (3, 3) or not np.all(np.isfinite(direction)):
            raise ValueError(f"Volume direction must be a 3x3 matrix, got {self.direction!r}")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise ValueError(
                f"Volume direction must be orthonormal (a rotation/reflection), got\n{direction}"
            )
        self.direction = direction

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape ``(D, H, W)``."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Size in index order ``(W, H, D)``, as SimpleITK reports it."""
        d, h, w = self.shape
        return (w, h, d)

    @property
    def spacing_dhw(self) -> tuple[float, float, float]:
        """Spacing in numpy axis order ``(D, H, W)`` — handy for scipy.ndimage."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous index ``(i, j, k, 1)`` to LPS millimetres."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction @ np.diag(self.spacing)
        aff[:3, 3] = self.origin
        return aff

    def affine_ras(self) -> np.ndarray:
        """4x4 matrix mapping ``(i, j, k, 1)`` to RAS millimetres (the NIfTI convention)."""
        return _RAS_FROM_LPS @ self.affine_lps()

    def index_to_lps(self, ijk: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS position (mm) of continuous index ``(i, j, k)``; accepts ``(..., 3)`` arrays."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def lps_to_index(self, xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous index ``(i, j, k)`` of an LPS position (mm); accepts ``(..., 3)`` arrays."""
        xyz = np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin)
        inv = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return xyz @ inv.T

    def center_lps(self) -> np.ndarray:
        """LPS position of the volume's geometric centre."""
        return self.index_to_lps((np.asarray(self.size_ijk, dtype=np.float64) - 1.0) / 2.0)

    def value_at_index(self, ijk: Sequence[int]) -> float:
        """HU value at integer index ``(i, j, k)`` (note: the array is indexed ``[k, j, i]``)."""
        i, j, k = (int(v) for v in ijk)
        return float(self.array[k, j, i])

    # ------------------------------------------------------------------ copies
    def with_array(self, array: np.ndarray, **metadata: Any) -> Volume:
        """Same geometry, new voxel values (e.g. a processed copy); the shape must match."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"with_array needs shape {self.shape}, got {tuple(array.shape)}")
        meta = dict(self.metadata)
        meta.update(metadata)
        return Volume(array, self.spacing, self.origin, self.direction.copy(), meta)

    def resized(self, shape: Sequence[int]) -> Volume:
        """Trilinear resampling to ``shape`` (D, H, W) over the same physical extent.

        Voxel centres follow the half-voxel convention (PyTorch ``align_corners=False``,
        ``scipy.ndimage.zoom(grid_mode=True)``): the volume's outer faces stay where they are, the
        spacing scales by ``old / new`` and the first voxel centre moves by half the change of
        spacing. Edges repeat the border value. Used for the honest "upsampled low resolution"
        baseline of a higher-resolution model, and to bring inputs to a model's grid.
        """
        from scipy import ndimage

        new = tuple(int(n) for n in shape)
        if len(new) != 3 or min(new) < 1:
            raise ValueError(f"resized needs three positive sizes (D, H, W), got {tuple(shape)}")
        zoom = [n / o for n, o in zip(new, self.shape, strict=True)]
        out = ndimage.zoom(self.array.astype(np.float32), zoom, order=1, mode="nearest", grid_mode=True)
        spacing_ijk = np.array(self.spacing) * np.array(self.shape[::-1]) / np.array(new[::-1])
        shift = self.direction @ ((spacing_ijk - np.array(self.spacing)) / 2.0)
        return Volume(
            out,
            tuple(spacing_ijk),
            tuple(np.array(self.origin) + shift),
            self.direction.copy(),
            dict(self.metadata),
        )

    def same_geometry(self, other: Volume, atol: float = 1e-4) -> bool:
        """True when both volumes cover the same voxels in patient space."""
        return self.shape == other.shape and np.allclose(self.affine_lps(), other.affine_lps(), atol=atol)

    @classmethod
    def from_affine_lps(cls, array: np.ndarray, affine: np.ndarray, **metadata: Any) -> Volume:
        """Build from a ``(D, H, W)`` array and a 4x4 index->LPS affine (may include shear-free scaling)."""
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        rot_scale = affine[:3, :3]
        spacing = np.linalg.norm(rot_scale, axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"affine has a zero-length axis: {affine}")
        direction = rot_scale / spacing
        return cls(np.asarray(array), tuple(spacing), tuple(affine[:3, 3]), direction, dict(metadata))

    @classmethod
    def from_affine_ras(cls, array: np.ndarray, affine: np.ndarray, **metadata: Any) -> Volume:
        """Build from a ``(D, H, W)`` array and a 4x4 index->RAS affine (NIfTI style)."""
        return cls.from_affine_lps(array, _RAS_FROM_LPS @ np.asarray(affine, dtype=np.float64), **metadata)

    # ------------------------------------------------------------------ SimpleITK bridge
    def to_sitk(self):  # -> SimpleITK.Image (imported lazily: SimpleITK is heavy)
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.reshape(-1)))
        return image

    @classmethod
    def from_sitk(cls, image, **metadata: Any) -> Volume:
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel"
            )
        array = sitk.GetArrayFromImage(image)
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        return cls(array, image.GetSpacing(), image.GetOrigin(), direction, dict(metadata))

    def __repr__(self) -> str:  # arrays are big: never print them
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"origin={tuple(round(o, 3) for o in self.origin)})"
        )
