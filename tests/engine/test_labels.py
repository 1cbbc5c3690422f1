"""Label maps over volumes: NIfTI with names, DICOM SEG through highdicom, and refusal of maps that
do not fit the volume's grid (with the reason)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from prdit.cli import main as cli_main
from prdit.data.io import read_volume, write_nifti
from prdit.data.labels import LabelMapError, phantom_label_map, read_label_map
from prdit.data.phantom import Structure, generate_phantom
from prdit.export.dicom import write_ct_series
from prdit.volume import Volume


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    assert cli_main(["phantom", "--count", "1", "--size", "32", "--labels", "--out", str(out)]) == 0
    return out


def test_phantom_label_nifti_opens_with_its_structure_names(phantom_files):
    volume = read_volume(phantom_files / "phantom_00000.nii.gz")
    labels = read_label_map(phantom_files / "phantom_00000_labels.nii.gz", volume)
    assert labels.names[int(Structure.LUNG)] == "lung" and labels.names[int(Structure.HEART)] == "heart"
    result = generate_phantom(0, 32, return_labels=True)
    np.testing.assert_array_equal(labels.array, result.labels)
    assert (
        labels.colours[int(Structure.LUNG)] == phantom_label_map(result.labels).colours[int(Structure.LUNG)]
    )
    kji = tuple(int(v) for v in np.argwhere(result.labels == Structure.HEART)[0])
    assert labels.name_at(kji) == "heart"


def test_a_label_map_that_does_not_fit_is_refused_with_the_reason(phantom_files, tmp_path):
    volume = read_volume(phantom_files / "phantom_00000.nii.gz")
    lab = read_volume(phantom_files / "phantom_00000_labels.nii.gz")
    cases = {
        "shifted.nii.gz": (
            Volume(lab.array, lab.spacing, np.asarray(lab.origin) + 20.0, lab.direction),
            "origin",
        ),
        "small.nii.gz": (Volume(lab.array[:, :, :20].copy(), lab.spacing, lab.origin, lab.direction), "size"),
        "coarse.nii.gz": (
            Volume(lab.array, np.asarray(lab.spacing) * 2, lab.origin, lab.direction),
            "spacing",
        ),
        "flipped.nii.gz": (
            Volume(lab.array, lab.spacing, lab.origin, np.diag([-1.0, 1.0, 1.0])),
            "orientation",
        ),
        "image.nii.gz": (volume.with_array(volume.array + 0.5), "not whole numbers"),
    }
    for name, (vol, reason) in cases.items():
        write_nifti(vol, tmp_path / name)
        with pytest.raises(LabelMapError, match=reason) as info:
            read_label_map(tmp_path / name, volume)
        assert name in str(info.value)


def test_dicom_seg_is_read_with_highdicom_onto_the_ct_grid(tmp_path):
    hd = pytest.importorskip("highdicom")
    result = generate_phantom(1, 32, return_labels=True)
    series = write_ct_series(result.volume, tmp_path / "ct")
    ct = read_volume(series)
    sources = sorted(
        (pydicom.dcmread(f) for f in series.iterdir()), key=lambda d: float(d.ImagePositionPatient[2])
    )
    masks = np.stack([result.labels == Structure.LUNG, result.labels == Structure.HEART], axis=-1)
    category = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=name, segmented_property_category=category,
            segmented_property_type=hd.sr.CodedConcept(code, "SCT", name),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n, name, code in ((1, "left and right lung", "39607008"), (2, "heart", "80891009"))
    ]  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0",
    )  # fmt: skip
    seg.save_as(tmp_path / "seg.dcm")  # it stores only the slices with a segment (omit empty frames)
    labels = read_label_map(tmp_path / "seg.dcm", ct)
    assert labels.names == {1: "left and right lung", 2: "heart"}
    np.testing.assert_array_equal(labels.array == 1, result.labels == Structure.LUNG)
    np.testing.assert_array_equal(labels.array == 2, result.labels == Structure.HEART)
    other = read_volume(write_ct_series(generate_phantom(2, 24), tmp_path / "other"))
    with pytest.raises(LabelMapError, match="seg.dcm"):
        read_label_map(tmp_path / "seg.dcm", other)  # the SEG of another series


def test_sidecar_json_names_labels(tmp_path):
    volume = Volume(np.zeros((4, 5, 6), np.float32), (1.0, 1.0, 1.0))
    arr = np.zeros((4, 5, 6), np.int16)
    arr[1, 2, 3] = 7
    write_nifti(volume.with_array(arr), tmp_path / "mask.nii.gz")
    (tmp_path / "mask.json").write_text(json.dumps({"labels": {"7": "nodule"}}), encoding="utf-8")
    labels = read_label_map(tmp_path / "mask.nii.gz", volume)
    assert labels.names == {7: "nodule"} and labels.counts() == {7: 1}
