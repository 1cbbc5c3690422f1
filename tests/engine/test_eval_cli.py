"""``prdit eval`` end to end on small phantom folders: report, cache, size/scale errors, torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from prdit.cli import main
from prdit.data.io import write_nifti, write_npy
from prdit.data.phantom import generate_phantom
from prdit.volume import Volume
from tests.helpers.torchrun import torchrun_cmd

N = 6
FAST = ["--critic-iterations", "10", "--critic-size", "16", "--msssim-pairs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    for i in range(N):
        write_nifti(generate_phantom(i, size=32), real / f"real_{i:02d}.nii.gz")
        write_npy(generate_phantom(200 + i, size=32), fake / f"sample_{i:05d}.npy")
    (fake / "sample_00000.json").write_text('{"seed": 0}', encoding="utf-8")  # sample sidecars are skipped
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_end_to_end_report_then_cached_second_run(folders, capsys, monkeypatch):
    cache, report = folders / "cache", folders / "report.json"
    args = [folders / "real", folders / "fake", "--report", report, "--cache-dir", cache, *FAST]
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    assert "3D FID" in out and "MMD" in out and "HU histogram" in out and "lung_fraction" in out
    assert "not comparable with published numbers" in out

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["real"]["count"] == N and data["fake"]["count"] == N
    assert data["real"]["shape"] == [32, 32, 32]
    assert data["comparable_with_published"] is False
    assert data["feature_extractor"]["identity"].startswith("default:resnet50-seed0-")
    assert data["settings"]["metrics"] == ["fid", "kid", "mmd", "msssim", "critic", "histogram", "anatomy"]
    assert data["settings"]["critic"]["iterations"] == 10 and data["settings"]["seed"] == 0
    assert {"prdit", "torch", "numpy", "scipy", "python"} <= set(data["software"])
    m = data["metrics"]
    assert m["fid"]["value"] > 0 and math.isfinite(m["fid"]["value"])
    assert 0 < m["mmd"]["value"] < math.sqrt(2) and m["mmd"]["gamma"] > 0
    assert m["msssim"]["fake_pairs"] == 2 and m["msssim"]["real_pairs"] == 2
    assert 0 < m["msssim"]["fake_mean"] < 1 and len(m["msssim"]["config"]["betas"]) == 4
    assert m["critic"]["n_test"] == [3, 3] and math.isfinite(m["critic"]["value"])
    assert 0 <= m["histogram"]["value"] < 200  # phantoms of one generator: close HU histograms
    assert set(m["anatomy"]["measures"]) >= {"body_fraction", "lung_fraction", "bone_fraction"}
    assert set(data["real"]["cache"].values()) == {"computed"}

    # Second run: every product comes from the cache; no volume is read, no feature extracted.
    def refuse(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("prdit.metrics.features.FeatureExtractor.extract", refuse)
    monkeypatch.setattr("prdit.metrics.pipeline.load_for_eval", refuse)
    report2 = folders / "report2.json"
    code, out, err = _run(capsys, *args[:2], "--report", report2, *args[4:])
    assert code == 0, err
    data2 = json.loads(report2.read_text(encoding="utf-8"))
    assert set(data2["real"]["cache"].values()) == {"cached"} == set(data2["fake"]["cache"].values())
    for key in ("fid", "mmd", "msssim", "critic", "histogram"):
        assert data2["metrics"][key]["value"] == data["metrics"][key]["value"]

    # Touching a file invalidates that folder's cache (names + sizes + mtimes are the key).
    monkeypatch.undo()
    first = folders / "fake" / "sample_00001.npy"
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    code, out, err = _run(capsys, *args[:2], "--metrics", "histogram", "--cache-dir", cache, *FAST)
    assert code == 0, err


def test_mixed_sizes_are_named_or_resampled(folders, capsys, tmp_path):
    fake = tmp_path / "fake_mixed"
    shutil.copytree(folders / "fake", fake)
    write_nifti(generate_phantom(7, size=24), fake / "odd_one.nii.gz")
    code, _, err = _run(capsys, folders / "real", fake, "--no-cache", "--metrics", "histogram", *FAST)
    assert code == 2
    assert "odd_one.nii.gz" in err and "24x24x24" in err and "--size" in err
    report = tmp_path / "r.json"
    code, out, err = _run(
        capsys, folders / "real", fake, "--no-cache", "--metrics", "fid,histogram", "--size", "32",
        "--report", report, *FAST,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["fake"]["count"] == N + 1 and data["fake"]["resampled_to"] == [32, 32, 32]


def test_unit_scale_folder_is_detected_and_can_be_declared(folders, capsys, tmp_path):
    unit = tmp_path / "unit"
    unit.mkdir()
    for i in range(3):
        v = generate_phantom(300 + i, size=32)
        arr = np.clip(v.array, -1000, 1000) / 1000.0
        write_npy(Volume(arr.astype(np.float32), v.spacing), unit / f"u{i}.npy")
    code, _, err = _run(capsys, folders / "real", unit, "--no-cache", "--metrics", "histogram", *FAST)
    assert code == 2 and "--fake-scale unit" in err and re.search(r"u[0-2]\.npy", err)
    report = tmp_path / "r.json"
    code, _, err = _run(
        capsys, folders / "real", unit, "--no-cache", "--metrics", "histogram", "--fake-scale", "unit",
        "--report", report, *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert (
        json.loads(report.read_text(encoding="utf-8"))["metrics"]["histogram"]["fake_mean_hu"] < -100
    )  # back in HU


def test_flat_water_volumes_are_accepted_when_declared_hu(folders, capsys, tmp_path):
    """An untrained model writes 0 HU everywhere: 'auto' suspects [-1, 1] data, 'hu' trusts it."""
    water = tmp_path / "water"
    water.mkdir()
    for i in range(2):
        write_npy(Volume(np.zeros((32, 32, 32), np.float32), (10.9, 10.9, 10.9)), water / f"w{i}.npy")
    code, _, err = _run(capsys, folders / "real", water, "--no-cache", "--metrics", "histogram", *FAST)
    assert code == 2 and "--fake-scale hu" in err
    report = tmp_path / "w.json"
    code, _, err = _run(
        capsys, folders / "real", water, "--no-cache", "--metrics", "histogram", "--fake-scale", "hu",
        "--report", report, *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(report.read_text(encoding="utf-8"))["metrics"]["histogram"]["fake_mean_hu"] == 0.0


def test_user_errors_are_clear(folders, capsys, tmp_path):
    code, _, err = _run(
        capsys, folders / "real", folders / "fake", "--features", f"medicalnet:{tmp_path}/nope.pth"
    )
    assert code == 2 and "nope.pth" in err and "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, folders / "real", empty, *FAST)
    assert code == 2 and "no volume files" in err
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        write_npy(generate_phantom(i, size=32), few / f"v{i}.npy")
    code, _, err = _run(capsys, folders / "real", few, "--no-cache", "--metrics", "critic", *FAST)
    assert code == 2 and "critic needs at least 4" in err
    code, _, err = _run(capsys, folders / "real", folders / "fake", "--critic-size", "24")
    assert code == 2 and "power of two" in err
    with pytest.raises(SystemExit):
        main(["eval", str(folders / "real"), str(folders / "fake"), "--metrics", "fid,inception"])
    assert "inception" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_shards_feature_extraction(folders, tmp_path):
    """Two gloo processes under torchrun give the numbers of a single process."""
    single, sharded = tmp_path / "single.json", tmp_path / "sharded.json"
    common = [
        str(folders / "real"),
        str(folders / "fake"),
        "--no-cache",
        "--metrics",
        "fid,mmd,msssim,histogram",
    ]
    common += ["--device", "cpu", "--msssim-pairs", "3", "--no-progress"]
    assert main(["eval", *common, "--report", str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = torchrun_cmd(2)
    cmd += ["-m", "prdit", "eval", *common, "--report", str(sharded)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(single.read_text(encoding="utf-8")), json.loads(sharded.read_text(encoding="utf-8"))
    assert b["settings"]["world_size"] == 2 and a["settings"]["world_size"] == 1
    # float32 convolutions round differently with other batch groupings / thread counts
    for key in ("fid", "mmd", "histogram"):
        assert b["metrics"][key]["value"] == pytest.approx(a["metrics"][key]["value"], rel=1e-4)
    assert b["metrics"]["msssim"]["fake_mean"] == pytest.approx(a["metrics"]["msssim"]["fake_mean"], rel=1e-6)
    assert proc.stdout.count("3D FID") == 1  # only rank 0 reports
