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
