"""The viewer's document and the canonical reorientation (no widgets, but Qt signals)."""

from __future__ import annotations

import numpy as np
import pytest

from prdit.volume import Volume
from prdit_app.orientation import CanonicalGrid, closest_axes, orientation_code
from prdit_app.state import ViewerState
from tests.app._viewer_support import left_marker_volume, thorax

RAS_DIRECTION = np.diag([-1.0, -1.0, 1.0])  # what a NIfTI in RAS voxel order looks like in LPS
SAGITTAL_ACQ = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # i->P, j->I, k->R


def _rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


@pytest.mark.parametrize(
    "direction, code",
    [(np.eye(3), "LPS"), (RAS_DIRECTION, "RAS"), (SAGITTAL_ACQ, "PIR"), (_rot_z(20), "LPS")],
)
def test_orientation_code(direction, code):
    assert orientation_code(Volume(np.zeros((3, 4, 5)), direction=direction)) == code


def test_closest_axes_unique_even_at_45_degrees():
    perm, _ = closest_axes(_rot_z(45))
    assert sorted(perm) == [0, 1, 2]


@pytest.mark.parametrize("direction", [np.eye(3), RAS_DIRECTION, SAGITTAL_ACQ, _rot_z(15) @ SAGITTAL_ACQ])
def test_canonical_view_points_lps_and_maps_back(direction):
    vol = thorax(shape=(6, 7, 8), direction=direction, origin=(3.0, -2.0, 5.0))
    grid = CanonicalGrid.of(vol)
    can = grid.view(vol.array)
    assert can.shape == grid.size
    assert np.shares_memory(can, vol.array)  # a view, never a copy
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = tuple(int(rng.integers(0, n)) for n in grid.size)
        ijk = grid.canonical_to_ijk(np.array(c, float)).astype(int)
        assert can[c] == vol.value_at_index(ijk)
        np.testing.assert_allclose(
            grid.lps_to_canonical(grid.canonical_to_lps(np.array(c, float))), c, atol=1e-9
        )
    # moving +1 along canonical x goes (mostly) towards patient Left, y Posterior, z Superior
    base = grid.canonical_to_lps(np.zeros(3))
    for a in range(3):
        step = np.zeros(3)
        step[a] = 1
        assert (grid.canonical_to_lps(step) - base)[a] > 0


def test_marker_on_the_left_is_at_high_canonical_x_for_any_voxel_order():
    for direction in (np.eye(3), RAS_DIRECTION, SAGITTAL_ACQ):
        vol = left_marker_volume(direction)
        grid = CanonicalGrid.of(vol)
        can = grid.view(vol.array)
        xs = np.nonzero(can > 0)[0]
        assert xs.size and xs.min() > grid.size[0] / 2, direction


def test_set_volume_resets_then_keep_view_keeps_cursor_and_window(qtbot):
    st = ViewerState()
    vol = thorax()
    with qtbot.waitSignal(st.volumeChanged) as sig:
        st.set_volume(vol)
    assert sig.args == [True]
    np.testing.assert_allclose(st.cursor_lps, vol.center_lps())
    assert (st.window, st.level) == (350.0, 50.0)  # CT data: mediastinum by default

    st.set_window_level(1500, -600)
    st.set_slice(2, 3)
    cursor = st.cursor_lps.copy()
    new = vol.with_array(vol.array + 5)
    with qtbot.waitSignal(st.volumeChanged) as sig:
        st.set_volume(new, keep_view=True)
    assert sig.args == [False]
    assert st.volume is new
    np.testing.assert_allclose(st.cursor_lps, cursor)
    assert (st.window, st.level) == (1500.0, -600.0)
    assert st.slice_index(2) == 3


def test_keep_view_with_new_geometry_resets_cursor(qtbot):
    st = ViewerState()
    st.set_volume(thorax())
    st.set_slice(2, 0)
    other = thorax(shape=(10, 12, 14))
    with qtbot.waitSignal(st.volumeChanged) as sig:
        st.set_volume(other, keep_view=True)
    assert sig.args == [True]
    np.testing.assert_allclose(st.cursor_lps, other.center_lps())


def test_non_ct_data_gets_a_percentile_window():
    st = ViewerState()
    arr = np.random.default_rng(1).uniform(0, 500, size=(8, 9, 10)).astype(np.float32)
    st.set_volume(Volume(arr))
    lo, hi = st.levels
    assert 0 <= lo < 30 and 470 < hi <= 500


def test_dicom_window_hint_is_used():
    st = ViewerState()
    vol = thorax()
    vol.metadata.update(window_center=40, window_width=400)
    st.set_volume(vol)
    assert (st.window, st.level) == (400.0, 40.0)


def test_cursor_is_clipped_into_the_volume_and_probe_reads_the_voxel():
    st = ViewerState()
    vol = thorax(direction=RAS_DIRECTION)
    st.set_volume(vol)
    st.set_cursor_lps(np.array([1e6, -1e6, 1e6]))
    c = st.cursor_canonical()
    assert np.all(c >= 0) and np.all(c <= np.asarray(st.grid.size) - 1)
    probe = st.probe(np.array([2, 3, 4]))
    assert probe["value"] == vol.value_at_index(probe["ijk"])
    np.testing.assert_allclose(probe["lps"], vol.index_to_lps(probe["ijk"]))
    assert st.probe(np.array([-3, 0, 0])) is None


def test_bad_convention_is_refused():
    with pytest.raises(ValueError, match="radiological"):
        ViewerState().set_convention("sideways")


def test_ct_is_told_from_mr_and_dose_by_modality_then_values():
    import nibabel

    from prdit.data.io import read_volume
    from prdit_app.state import looks_like_ct

    mr = read_volume(f"{nibabel.__path__[0]}/tests/data/anatomical.nii")  # -610..30393, no modality
    assert not looks_like_ct(mr)
    assert looks_like_ct(thorax())  # air at -1000, tissue near 0: CT in HU
    dose = Volume(np.random.default_rng(0).uniform(0, 1e6, (8, 8, 8)).astype(np.float32))
    assert not looks_like_ct(dose)
    labelled = thorax()
    labelled.metadata["modality"] = "MR"  # the file's own word wins over the values
    assert not looks_like_ct(labelled)


def test_auto_window_uses_robust_percentiles_and_skips_a_filling_background():
    from prdit_app.state import auto_window

    rng = np.random.default_rng(2)
    arr = rng.uniform(100, 1100, size=(20, 20, 20))
    arr[:, :, :10] = 0  # half the volume is zero background (MR outside the head)
    w, level = auto_window(arr)
    lo, hi = np.percentile(arr[arr > 0], [1, 99])
    assert abs((level - w / 2) - lo) < 15 and abs((level + w / 2) - hi) < 15
    assert auto_window(np.full((4, 4, 4), 7.0)) == (1.0, 7.0)  # constant: still a usable window


def test_mr_opens_in_an_auto_window_and_ct_after_it_gets_the_ct_default(qtbot):
    import nibabel

    from prdit.data.io import read_volume

    st = ViewerState()
    mr = read_volume(f"{nibabel.__path__[0]}/tests/data/anatomical.nii")
    st.set_volume(mr)
    lo, hi = st.levels
    p1, p99 = np.percentile(mr.array[mr.array > mr.array.min()], [1, 99])
    assert abs(lo - p1) < 0.05 * (p99 - p1) and abs(hi - p99) < 0.05 * (p99 - p1)
    assert not st.is_ct
    st.set_window_level(1000, 15000)  # the user adjusts the MR window
    st.set_volume(thorax())  # a CT next: the MR window must not carry over
    assert (st.window, st.level) == (350.0, 50.0) and st.is_ct
    assert st.apply_auto_window() is not None and st.window > 350  # "Auto" on CT: from its values


def test_the_value_unit_is_hu_for_ct_and_the_files_own_otherwise():
    st = ViewerState()
    st.set_volume(thorax())
    assert st.value_unit == "HU"
    dose = Volume(np.random.default_rng(0).uniform(0, 70, (8, 8, 8)).astype(np.float32))
    dose.metadata.update(modality="RTDOSE", units="GY")
    st.set_volume(dose)
    assert not st.is_ct and st.value_unit == "GY"  # not shown as HU, and labelled with its unit
    st.set_volume(Volume(np.random.default_rng(1).uniform(0, 500, (8, 8, 8)).astype(np.float32)))
    assert st.value_unit == ""
