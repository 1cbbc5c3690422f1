"""``prdit info`` on checkpoints: every form load_for_inference accepts, described without building
the network; the SHA-256 is the one inference (and every sample sidecar) records."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from prdit import checkpoint as ckpt
from prdit.checkpoint.info import read_safetensors_header, summarize_checkpoint
from prdit.cli import CliError, info
from prdit.data.normalize import HUWindow
from prdit.models import build_model

NAME, SIZE = "PRDiT-XS/4/0", 16


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with two step checkpoints of a tiny model, plus the other loadable forms."""
    root = tmp_path_factory.mktemp("info")
    torch.manual_seed(0)
    model = build_model(NAME, input_size=SIZE)
    meta = {
        "stage": 1,
        "model_name": NAME,
        "input_size": SIZE,
        "hu_window": HUWindow(-1000, 600).to_dict(),
        "spacing": [0.8, 0.9, 2.5],
        "config": {"name": "tiny-test"},
    }
    run = root / "run"
    for step in (10, 20):
        ema = {k: v * 0.5 for k, v in model.state_dict().items()}
        ckpt.save_checkpoint(
            run / "checkpoints", step, model_state=model.state_dict(), ema_state=ema,
            optimizer_state=None, meta=meta,
        )  # fmt: skip
    (run / "config.yaml").write_text("name: tiny-test\n", encoding="utf-8")
    ckpt.export_model(run, root / "tiny.safetensors")
    # int8 applies to matrices of >= 65536 weights: patch 10 gives 1000 x 192 token projections
    big = build_model("PRDiT-XS/10/0", input_size=SIZE)
    ckpt.save_checkpoint(
        root / "big", 5, model_state=big.state_dict(), ema_state=None, optimizer_state=None,
        meta={**meta, "model_name": "PRDiT-XS/10/0"},
    )  # fmt: skip
    ckpt.export_model(
        root / "big", root / "big-q8.safetensors", use_ema=False, dtype=torch.float16, quantize="int8"
    )
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}}, root / "ref.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "bare.safetensors"))
    return run


def _info(path, capsys) -> str:
    parser = argparse.ArgumentParser()
    info.add_arguments(parser)
    assert info.run(parser.parse_args([str(path)])) == 0
    return capsys.readouterr().out


def _no_model_building(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("prdit info must not build the network")

    monkeypatch.setattr(ckpt, "build_model_from_meta", refuse)
    monkeypatch.setattr("prdit.models.build_model", refuse)


@pytest.mark.parametrize(
    "rel, form, step, weights",
    [
        (".", "training run with 2 checkpoint(s) (steps 10, 20)", "20", "ema.safetensors"),
        ("checkpoints", "checkpoints folder with 2 checkpoint(s)", "20", "ema.safetensors"),
        ("checkpoints/step_0000010", "step checkpoint", "10", "ema.safetensors"),
        ("../tiny.safetensors", "exported model", "20", None),
    ],
)
def test_our_checkpoint_forms(run_dir, capsys, monkeypatch, rel, form, step, weights):
    path = (run_dir / rel).resolve()
    _, expected = ckpt.load_for_inference(path)  # what sampling records (built here, for the check)
    _no_model_building(monkeypatch)
    out = _info(path, capsys)
    assert out.endswith("\n") and not out.endswith("\n\n")
    first, *rest = out.splitlines()
    assert first.startswith(f"{path}: {form}")
    facts = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in rest}
    assert facts["model"] == f"{NAME} (stage 1: local denoiser)"
    assert facts["input size"] == f"{SIZE}^3 voxels"
    assert facts["step"] == step
    assert facts["HU window"] == "[-1000, 600] (window)"
    assert facts["spacing (mm)"] == "0.8, 0.9, 2.5"
    assert facts["weights"] == "EMA"
    assert facts["sha256"] == expected.sha256
    assert facts["quantisation"] == "none"
    assert facts["parameters"].endswith("tensors (float32)")
    weights_file = Path(expected.source) if weights is None else ckpt.resolve_checkpoint_dir(path) / weights
    assert f"({weights_file.stat().st_size:,} bytes)" in facts["file size"]
    assert facts["config"] == "tiny-test"


def test_parameter_count_and_dtype(run_dir):
    s = summarize_checkpoint(run_dir)
    model = build_model(NAME, input_size=SIZE)
    assert s.stats.parameters == sum(v.numel() for v in model.state_dict().values())
    assert s.stats.by_dtype == {"float32": s.stats.parameters}


def test_quantised_export(run_dir, capsys, monkeypatch):
    path = run_dir.parent / "big-q8.safetensors"
    _, expected = ckpt.load_for_inference(path)
    _no_model_building(monkeypatch)
    out = _info(path, capsys)
    assert "int8-per-output-channel on" in out and "dequantised to float32 on load" in out
    assert expected.sha256 in out
    s = summarize_checkpoint(path)
    assert set(s.stats.by_dtype) == {"int8", "float16"}  # scales are not counted as parameters
    assert s.quantization["tensors"] and s.weights == "model"
    assert s.stats.parameters == summarize_checkpoint(run_dir.parent / "big").stats.parameters
    assert s.meta["source_sha256"] in out  # which weights it was exported from


def test_reference_pt_and_bare_safetensors(run_dir, capsys):
    ref = run_dir.parent / "ref.pt"
    out = _info(ref, capsys)
    assert out.startswith(f"{ref}: reference .pt")
    assert f"model:           {NAME}" in out
    assert "input size:      not recorded: pass it to prdit sample" in out
    assert "step:            not recorded" in out
    _, expected = ckpt.load_for_inference(ref, input_size=SIZE)
    assert f"sha256:          {expected.sha256}" in out
    bare = run_dir.parent / "bare.safetensors"
    out = _info(bare, capsys)
    assert out.startswith(f"{bare}: safetensors state dict (no metadata)")
    assert f"model:           {NAME}" in out and "weights:         raw (no EMA)" in out


def test_bad_checkpoints_are_clear_errors(run_dir, tmp_path, capsys):
    empty_run = tmp_path / "empty-run"
    (empty_run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CliError, match="no complete step_\\* checkpoint"):
        _info(empty_run, capsys)
    data = (run_dir.parent / "tiny.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CliError, match="truncated"):
        _info(cut, capsys)
    with pytest.raises(ckpt.CheckpointError, match="truncated"):
        read_safetensors_header(cut)
    junk = tmp_path / "notes.pt"
    junk.write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(CliError, match="notes.pt"):
        _info(junk, capsys)
