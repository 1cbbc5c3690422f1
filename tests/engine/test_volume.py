"""Volume geometry: index <-> LPS, RAS affine, SimpleITK bridge, validation."""

from __future__ import annotations

import numpy as np
import pytest

from prdit.volume import Volume


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_index_lps_round_trip_and_affines():
    d = _rotation(0.1, -0.2, 0.3)
    v = Volume(np.zeros((4, 5, 6), np.float32), (0.5, 0.7, 2.0), (10.0, -20.0, 30.0), d)
    ijk = np.array([[0, 0, 0], [5, 4, 3], [2.5, 1.0, 0.5]])
    lps = v.index_to_lps(ijk)
    assert np.allclose(lps[0], v.origin)
    assert np.allclose(v.lps_to_index(lps), ijk)
    # LPS affine applied to homogeneous indices equals index_to_lps; RAS negates x and y
    homog = np.c_[ijk, np.ones(3)]
    assert np.allclose((v.affine_lps() @ homog.T).T[:, :3], lps)
    ras = (v.affine_ras() @ homog.T).T[:, :3]
    assert np.allclose(ras, lps * [-1, -1, 1])
    back = Volume.from_affine_ras(v.array, v.affine_ras())
    assert back.same_geometry(v)
    assert v.size_ijk == (6, 5, 4) and v.spacing_dhw == (2.0, 0.7, 0.5)


def test_sitk_bridge_keeps_geometry_and_values():
    rng = np.random.default_rng(1)
    arr = rng.normal(size=(3, 4, 5)).astype(np.float32)
    v = Volume(arr, (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), _rotation(0.0, 0.0, np.pi / 2))
    img = v.to_sitk()
    assert img.GetSize() == (5, 4, 3)
    assert np.allclose(img.TransformIndexToPhysicalPoint((1, 2, 0)), v.index_to_lps((1, 2, 0)))
    w = Volume.from_sitk(img)
    assert w.same_geometry(v) and np.array_equal(w.array, arr)
    assert v.value_at_index((4, 3, 2)) == pytest.approx(float(arr[2, 3, 4]))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"array": np.zeros((4, 4))}, "3D"),
        ({"array": np.zeros((2, 2, 2)), "spacing": (1, 0, 1)}, "positive"),
        ({"array": np.zeros((2, 2, 2)), "direction": np.ones((3, 3))}, "orthonormal"),
        ({"array": np.zeros((2, 2, 2)), "origin": (1, 2)}, "three finite"),
    ],
)
def test_invalid_volumes_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Volume(**kwargs)


def test_resized_keeps_the_physical_extent_and_matches_torch_trilinear():
    import torch
    import torch.nn.functional as F

    a = np.random.default_rng(0).normal(size=(8, 6, 4)).astype(np.float32)
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    v = Volume(a, spacing=(2.0, 3.0, 4.0), origin=(10.0, 20.0, 30.0), direction=rot)
    up = v.resized((16, 12, 8))
    x = torch.from_numpy(a)[None, None]
    ref = F.interpolate(x, size=(16, 12, 8), mode="trilinear", align_corners=False)
    np.testing.assert_allclose(up.array, ref[0, 0].numpy(), atol=1e-5)
    assert up.spacing == (1.0, 1.5, 2.0)
    # the outer faces (first centre minus half a voxel, last centre plus half) do not move
    for vol in (v, up):
        d, h, w = vol.shape
        lo = vol.index_to_lps((-0.5, -0.5, -0.5))
        hi = vol.index_to_lps((w - 0.5, h - 0.5, d - 0.5))
        np.testing.assert_allclose(lo, v.index_to_lps((-0.5, -0.5, -0.5)), atol=1e-9)
        np.testing.assert_allclose(hi, v.index_to_lps((3.5, 5.5, 7.5)), atol=1e-9)
    with pytest.raises(ValueError, match="three positive sizes"):
        v.resized((0, 4, 4))
