"""`prdit sample`: NIfTI in HU with the true spacing, sidecars, previews, DICOM, per-sample seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from prdit import checkpoint as ckpt
from prdit.cli import CliError
from prdit.cli import sample as sample_cli
from prdit.data.normalize import HUWindow
from prdit.models import build_model
from prdit.sampling import SIDECAR_KEYS, SampleSpec, generate_to_folder, planned_indices

NAME, SIZE = "PRDiT-XS/4/0", 16
SPACING = [1.5, 1.25, 2.0]  # anisotropic on purpose: (x, y, z) must not get swapped


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A checkpoint with non-trivial weights (a fresh model predicts exactly zero)."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_model(NAME, input_size=SIZE)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    meta = {
        "stage": 1,
        "model_name": NAME,
        "input_size": SIZE,
        "hu_window": HUWindow(-1000, 1000).to_dict(),
        "spacing": SPACING,
    }
    ckpt.save_checkpoint(
        root / "checkpoints",
        12,
        model_state=model.state_dict(),
        ema_state=model.state_dict(),
        optimizer_state=None,
        meta=meta,
    )
    return root


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sample_cli.add_arguments(parser)
    return sample_cli.run(parser.parse_args(list(argv)))


def test_cli_writes_nifti_with_true_spacing_and_sidecars(run_dir, tmp_path):
    out = tmp_path / "s"
    assert (
        _cli(
            str(run_dir),
            "--count",
            "2",
            "--steps",
            "4",
            "--seed",
            "7",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--dicom",
        )
        == 0
    )
    for i in range(2):
        img = nib.load(out / f"sample_{i:05d}.nii.gz")
        assert img.shape == (SIZE, SIZE, SIZE)
        assert np.allclose(img.header.get_zooms(), SPACING)
        data = np.asarray(img.dataobj)
        assert data.min() >= -1000 - 1e-3 and data.max() <= 1000 + 1e-3 and data.std() > 1.0
        side = json.loads((out / f"sample_{i:05d}.json").read_text(encoding="utf-8"))
        assert set(SIDECAR_KEYS) <= set(side)
        assert (side["seed"], side["sampler"], side["steps"], side["k"]) == (7 + i, "hot", 4, 2)
        assert side["model_name"] == NAME and side["input_size"] == SIZE and side["training_step"] == 12
        assert side["checkpoint_sha256"] == ckpt.sha256_file(
            run_dir / "checkpoints" / "step_0000012" / "ema.safetensors"
        )
        assert (out / f"sample_{i:05d}.png").stat().st_size > 0
        assert len(list((out / f"sample_{i:05d}_dicom").glob("*.dcm"))) == SIZE
    # the same command again refuses to overwrite, and --skip-existing has nothing to do
    with pytest.raises(CliError, match="already exists"):
        _cli(
            str(run_dir),
            "--count",
            "2",
            "--steps",
            "4",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        )
    assert (
        _cli(
            str(run_dir),
            "--count",
            "2",
            "--steps",
            "4",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--skip-existing",
        )
        == 0
    )


def test_sample_i_does_not_depend_on_the_batch_size(run_dir, tmp_path):
    model, info = ckpt.load_for_inference(run_dir)
    arrays = {}
    for bs in (1, 3):
        spec = SampleSpec(count=3, steps=5, sampler="hot", k=2, seed=11, batch_size=bs)
        written = generate_to_folder(model, info, tmp_path / f"bs{bs}", spec, previews=False)
        assert [w.index for w in written] == [0, 1, 2]
        arrays[bs] = [np.asarray(nib.load(w.nifti).dataobj) for w in written]
    for a, b in zip(arrays[1], arrays[3], strict=True):
        # within 0.05 HU (1 HU is the smallest step CT reports): batched matmuls sum in another order
        np.testing.assert_allclose(a, b, rtol=0, atol=0.05)
    assert not np.allclose(arrays[1][0], arrays[1][1])  # different seeds, different volumes


def test_cold_sampler_and_raw_weights(run_dir, tmp_path):
    assert (
        _cli(
            str(run_dir),
            "--count",
            "1",
            "--steps",
            "3",
            "--sampler",
            "cold",
            "--raw-weights",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--no-preview",
            "--device",
            "cpu",
        )
        == 0
    )
    side = json.loads((tmp_path / "sample_00000.json").read_text(encoding="utf-8"))
    assert (side["sampler"], side["k"], side["weights"]) == ("cold", None, "model")  # cold has no k
    assert not (tmp_path / "sample_00000.png").exists()


def test_ranks_share_the_work():
    spec = SampleSpec(count=5, start_index=10)
    shares = [planned_indices(spec, r, 2) for r in range(2)]
    assert shares == [[10, 12, 14], [11, 13]]


def test_bad_arguments_are_clear(run_dir, tmp_path):
    with pytest.raises(CliError, match="--count must be >= 1"):
        _cli(str(run_dir), "--count", "0", "--out", str(tmp_path))
    with pytest.raises(CliError, match="no such file"):
        _cli(str(tmp_path / "missing"), "--out", str(tmp_path), "--device", "cpu")
    with pytest.raises(ValueError, match="sampling steps"):
        _cli(str(run_dir), "--steps", "5000", "--out", str(tmp_path), "--device", "cpu", "--no-progress")


def test_bundled_models_are_found_by_name(run_dir, tmp_path, monkeypatch, capsys):
    """No checkpoint: the bundled default; a bare name: the bundled model of that name."""
    res = tmp_path / "resources"
    (res / "models").mkdir(parents=True)
    ckpt.export_model(run_dir, res / "models" / "default.safetensors")
    ckpt.export_model(run_dir, res / "models" / "fast-32.safetensors")
    monkeypatch.setenv("PRDIT_RESOURCES", str(res))
    monkeypatch.chdir(tmp_path)
    assert sample_cli.resolve_checkpoint_arg(None) == res / "models" / "default.safetensors"
    assert "using the bundled default model" in capsys.readouterr().out
    assert sample_cli.resolve_checkpoint_arg("fast-32") == res / "models" / "fast-32.safetensors"
    assert sample_cli.resolve_checkpoint_arg("runs/x") == Path("runs/x")  # a path stays a path
    with pytest.raises(CliError, match=r"not a bundled model .*bundled: default, fast-32"):
        sample_cli.resolve_checkpoint_arg("fast-64")
    _cli("--count", "1", "--steps", "2", "--out", str(tmp_path / "s"), "--device", "cpu", "--no-progress")
    sidecar = json.loads((tmp_path / "s" / "sample_00000.json").read_text(encoding="utf-8"))
    assert sidecar["checkpoint"].endswith("default.safetensors") and sidecar["steps"] == 2
    assert (tmp_path / "s" / "sample_00000.nii.gz").is_file()


def test_info_takes_a_bundled_name_and_survives_a_closed_pipe(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        f"{sys.executable} -m prdit info fast-32 | head -n 1",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.stdout.strip().endswith("fast-32.safetensors: exported model")
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_info_says_how_a_stage3_model_joins_its_base():
    from prdit.checkpoint.info import format_summary
    from prdit.checkpoint.info import summarize_checkpoint as summarize
    from prdit.paths import resource

    lines = format_summary(summarize(resource("models", "default.safetensors")))
    branch = next(line for line in lines if "stage-3 branch:" in line)
    assert "patch 10, stride 8, width 192" in branch and "picked-aligned" in branch
    assert not any(
        "stage-3 branch" in line
        for line in format_summary(summarize(resource("models", "fast-32.safetensors")))
    )
