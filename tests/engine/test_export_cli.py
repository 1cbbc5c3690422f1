"""`prdit export-dicom`: sample outputs (NIfTI + sidecar) to synthetic DICOM series."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from prdit.cli import CliError
from prdit.cli import export_dicom as cmd
from prdit.data.io import write_npy
from prdit.export.nifti import export_nifti
from prdit.export.provenance import Provenance
from prdit.volume import Volume

nib = pytest.importorskip("nibabel")

SHA = "fedcba9876543210" * 4


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="prdit export-dicom")
    cmd.add_arguments(parser)
    return cmd.run(parser.parse_args(list(argv)))


def write_sample(folder: Path, index: int, seed: int, sidecar: bool = True) -> Volume:
    """What `prdit sample` writes: sample_NNNNN.nii.gz (HU) + sample_NNNNN.json."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-300.0, 400.0, size=(6, 10, 8)).astype(np.float32)  # (D, H, W)
    volume = Volume(hu, spacing=(0.9, 1.1, 2.0), origin=(-5.0, 7.0, 11.0))
    data_ijk = hu.transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data_ijk, volume.affine_ras()), folder / f"sample_{index:05d}.nii.gz")
    if sidecar:
        (folder / f"sample_{index:05d}.json").write_text(
            json.dumps(
                {
                    "seed": seed,
                    "sampler": "hot",
                    "steps": 25,
                    "k": 2,
                    "checkpoint": "/runs/a/ema.safetensors",
                    "checkpoint_sha256": SHA,
                    "model_name": "PRDiT-S/8/2",
                    "input_size": 8,
                    "hu_window": {"low": -1000, "high": 1000, "mode": "window"},
                    "software_version": "0.1.0",
                    "created": "2026-01-01T00:00:00",
                }
            ),
            encoding="utf-8",
        )
    return volume


def series(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))


def test_single_sample_with_sidecar(tmp_path, capsys):
    volume = write_sample(tmp_path, 0, seed=42)
    out = tmp_path / "dicom"
    assert run_cli(str(tmp_path / "sample_00000.nii.gz"), str(out), "--series-number", "5") == 0
    datasets = series(out)
    assert len(datasets) == 6
    ds = datasets[0]
    assert ds.SyntheticData == "YES" and ds.SeriesDescription == "SYNTHETIC CT (PRDiT) seed 42"
    assert int(ds.SeriesNumber) == 5
    for needle in ("PRDiT-S/8/2", SHA, "seed=42", "sampler=hot", "steps=25"):
        assert needle in ds.DerivationDescription
    hu = np.stack([d.pixel_array for d in datasets])
    assert np.array_equal(hu, np.clip(np.rint(volume.array), -1024, 3071).astype(np.int16))
    for k, d in enumerate(datasets):
        assert np.allclose(
            [float(v) for v in d.ImagePositionPatient], volume.index_to_lps((0, 0, k)), atol=1e-4
        )
    assert "sample_00000.nii.gz" in capsys.readouterr().out


def test_folder_of_samples_same_study(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(3):
        write_sample(samples, i, seed=100 + i)
    out = tmp_path / "dicom"
    rc = run_cli(
        str(samples),
        str(out),
        "--same-study",
        "--patient-name",
        "DEMO^SYNTH",
        "--patient-id",
        "DEMO-7",
        "--series-description",
        "demo",
        "--series-number",
        "20",
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["sample_00000", "sample_00001", "sample_00002"]
    firsts = [series(out / f"sample_{i:05d}")[0] for i in range(3)]
    assert len({d.StudyInstanceUID for d in firsts}) == 1
    assert len({d.SeriesInstanceUID for d in firsts}) == 3
    assert [int(d.SeriesNumber) for d in firsts] == [20, 21, 22]
    assert {(str(d.PatientName), d.PatientID) for d in firsts} == {("DEMO^SYNTH", "DEMO-7")}
    assert all(d.SeriesDescription == "SYNTHETIC demo" for d in firsts)
    assert [f"seed={100 + i}" in d.DerivationDescription for i, d in enumerate(firsts)] == [True] * 3


def test_several_files_get_a_study_each(tmp_path):
    for i in range(2):
        write_sample(tmp_path, i, seed=i, sidecar=False)
    out = tmp_path / "dicom"
    files = [str(tmp_path / f"sample_{i:05d}.nii.gz") for i in range(2)]
    assert run_cli(*files, str(out)) == 0
    firsts = [series(out / f"sample_{i:05d}")[0] for i in range(2)]
    assert firsts[0].StudyInstanceUID != firsts[1].StudyInstanceUID
    assert all("provenance unknown" in d.DerivationDescription for d in firsts)


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    write_sample(tmp_path, 0, seed=1)
    src = str(tmp_path / "sample_00000.nii.gz")
    out = tmp_path / "dicom"
    assert run_cli(src, str(out)) == 0
    first_uid = series(out)[0].SeriesInstanceUID
    with pytest.raises(CliError, match="not empty"):
        run_cli(src, str(out))
    assert run_cli(src, str(out), "--overwrite") == 0
    assert series(out)[0].SeriesInstanceUID != first_uid


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(CliError, match="no such file"):
        run_cli(str(tmp_path / "missing.nii.gz"), str(tmp_path / "out"))
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CliError, match="not a volume file"):
        run_cli(str(tmp_path / "notes.txt"), str(tmp_path / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CliError, match="no volume files"):
        run_cli(str(empty), str(tmp_path / "out"))
    write_sample(tmp_path, 0, seed=1)
    (tmp_path / "sample_00000.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CliError, match="sample_00000.json"):
        run_cli(str(tmp_path / "sample_00000.nii.gz"), str(tmp_path / "out"))
    with pytest.raises(CliError, match="--uid-root"):
        run_cli(str(tmp_path / "sample_00000.nii.gz"), str(tmp_path / "out"), "--uid-root", "1.02")
    assert not (tmp_path / "out").exists()


def test_npy_needs_known_spacing(tmp_path):
    hu = np.random.default_rng(3).normal(0.0, 300.0, size=(4, 6, 5)).astype(np.float32)
    np.save(tmp_path / "bare.npy", hu)
    with pytest.raises(CliError, match="spacing is unknown"):
        run_cli(str(tmp_path / "bare.npy"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert run_cli(str(tmp_path / "bare.npy"), str(tmp_path / "out"), "--spacing", "0.6", "0.7", "3") == 0
    ds = series(tmp_path / "out")[0]
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.6] and float(ds.SliceThickness) == 3.0

    # with the geometry sidecar that prdit.data.io writes: spacing, origin and direction are kept
    volume = Volume(hu, spacing=(0.5, 0.5, 1.25), origin=(1.0, 2.0, 3.0))
    write_npy(volume, tmp_path / "geo.npy")
    assert run_cli(str(tmp_path / "geo.npy"), str(tmp_path / "out2")) == 0
    datasets = series(tmp_path / "out2")
    assert [float(v) for v in datasets[1].ImagePositionPatient] == [1.0, 2.0, 4.25]
    assert "provenance unknown" in datasets[0].DerivationDescription  # a geometry sidecar is not provenance


def test_export_nifti_keeps_provenance_for_a_later_dicom_export(tmp_path):
    hu = np.random.default_rng(4).normal(0.0, 300.0, size=(4, 6, 5)).astype(np.float32)
    volume = Volume(hu, spacing=(0.8, 0.8, 2.0))
    prov = Provenance(model_name="PRDiT-S/8/2", checkpoint_sha256=SHA, seed=9, sampler="cold", steps=12)
    path = export_nifti(volume, tmp_path / "studio.nii.gz", provenance=prov)
    assert Provenance.from_sidecar_file(tmp_path / "studio.json") == prov
    with pytest.raises(FileExistsError, match="studio.nii.gz"):
        export_nifti(volume, path, provenance=prov)
    image = nib.load(path)
    assert np.allclose(image.affine, volume.affine_ras())
    assert run_cli(str(path), str(tmp_path / "dicom")) == 0
    ds = series(tmp_path / "dicom")[0]
    assert "seed=9" in ds.DerivationDescription and "sampler=cold" in ds.DerivationDescription
    assert ds.SeriesDescription == "SYNTHETIC CT (PRDiT) seed 9"
