"""Checkpoint I/O: exact round trips, atomic layout, three loadable forms, and no unpickling of code."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from prdit import checkpoint as ckpt
from prdit.checkpoint import CheckpointError, load_for_inference
from prdit.data.normalize import HUWindow
from prdit.models import build_model

NAME, SIZE = "PRDiT-XS/4/0", 16


def _perturbed(name: str = NAME, size: int = SIZE, seed: int = 0) -> torch.nn.Module:
    """A model with every weight non-zero (a fresh one has zero-initialised read-outs)."""
    torch.manual_seed(seed)
    model = build_model(name, input_size=size)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def _meta(**kw):
    meta = {
        "stage": 1,
        "model_name": NAME,
        "input_size": SIZE,
        "hu_window": HUWindow(-1000, 600).to_dict(),
        "spacing": [0.8, 0.9, 2.5],
        "config": {"name": "t"},
    }
    meta.update(kw)
    return meta


def _save(root, step, model, **kw):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 1, SIZE, SIZE, SIZE), torch.zeros(1, dtype=torch.long)).sum().backward()
    opt.step()
    ema = {k: v.clone() * 0.5 for k, v in model.state_dict().items()}
    return (
        ckpt.save_checkpoint(
            root,
            step,
            model_state=model.state_dict(),
            ema_state=ema,
            optimizer_state=opt.state_dict(),
            meta=_meta(**kw),
            rng_states=[ckpt.capture_rng_state()],
            keep_last=kw.pop("keep_last", 0),
        ),
        opt,
        ema,
    )


def test_round_trip_is_exact(tmp_path):
    model = _perturbed()
    path, opt, ema = _save(tmp_path / "checkpoints", 7, model)
    assert path.name == "step_0000007"
    assert sorted(p.name for p in path.iterdir()) == [
        "ema.safetensors",
        "meta.json",
        "model.safetensors",
        "optimizer.pt",
        "rng.pt",
    ]
    state = ckpt.load_training_state(tmp_path)  # a run folder resolves to its latest checkpoint
    assert state.step == 7 and state.meta["model_name"] == NAME and state.meta["format"] == "prdit-checkpoint"
    for k, v in model.state_dict().items():
        assert torch.equal(state.model[k], v) and torch.equal(state.ema[k], ema[k])
    reloaded = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reloaded.load_state_dict(state.optimizer)
    for a, b in zip(opt.state.values(), reloaded.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_rng_states_restore_every_generator():
    state = ckpt.capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123), np.random.seed(5), random.seed(9)
    ckpt.restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_keep_last_and_incomplete_folders_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    model = _perturbed()
    for step in (1, 2, 3, 4):
        _save(root, step, model, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [3, 4]
    # what a crash mid-write leaves: a temporary folder, and a step folder without metadata
    (root / ".step_0000009.abc.tmp").mkdir()
    (root / "step_0000008").mkdir()
    (root / "step_0000008" / "model.safetensors").write_bytes(b"partial")
    assert ckpt.resolve_checkpoint_dir(tmp_path).name == "step_0000004"
    # saving the same step again replaces it whole
    _save(root, 4, model)
    assert ckpt.read_meta(root / "step_0000004")["step"] == 4


def test_load_for_inference_from_our_checkpoint(tmp_path):
    model = _perturbed()
    path, _, ema = _save(tmp_path / "run" / "checkpoints", 5, model)
    net, info = load_for_inference(tmp_path / "run")
    assert (info.model_name, info.input_size, info.step, info.weights) == (NAME, SIZE, 5, "ema")
    assert info.hu_window == HUWindow(-1000, 600) and info.spacing == (0.8, 0.9, 2.5)
    assert info.sha256 == ckpt.sha256_file(path / "ema.safetensors")
    assert not net.training and all(torch.equal(net.state_dict()[k], v) for k, v in ema.items())
    raw, info_raw = load_for_inference(path, use_ema=False)
    assert info_raw.weights == "model"
    assert all(torch.equal(raw.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="not the requested PRDiT-B/12/4"):
        load_for_inference(path, model_name="PRDiT-B/12/4")


def test_exported_single_file_model(tmp_path):
    model = _perturbed()
    _save(tmp_path / "checkpoints", 3, model)
    out = ckpt.export_model(tmp_path, tmp_path / "ship" / "tiny.safetensors")
    net, info = load_for_inference(out)
    assert (info.model_name, info.input_size, info.step) == (NAME, SIZE, 3)
    assert info.hu_window == HUWindow(-1000, 600) and info.spacing == (0.8, 0.9, 2.5)
    half = ckpt.export_model(tmp_path, tmp_path / "ship" / "tiny16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * out.stat().st_size
    net16, _ = load_for_inference(half)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(net16.state_dict()[k], v, atol=2e-3, rtol=2e-3)
    assert not list((tmp_path / "ship").glob(".*.tmp"))  # atomic write left nothing behind


def test_int8_export_is_small_and_close(tmp_path):
    model = _perturbed("PRDiT-XS/10/1", 16)
    _save(tmp_path / "checkpoints", 5, model, model_name="PRDiT-XS/10/1", input_size=16)
    f32 = ckpt.export_model(tmp_path, tmp_path / "f32.safetensors")
    f16 = ckpt.export_model(tmp_path, tmp_path / "f16.safetensors", dtype=torch.float16)
    q8 = ckpt.export_model(tmp_path, tmp_path / "q8.safetensors", dtype=torch.float16, quantize="int8")
    assert q8.stat().st_size < 0.6 * f16.stat().st_size
    ref_net, _ = load_for_inference(f32)
    net, info = load_for_inference(q8)
    assert info.model_name == "PRDiT-XS/10/1"
    ref = ref_net.state_dict()
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32
        if ref[k].dim() == 2:  # per-row int8: at most half a step of the row's abs-max (+ fp16 scale)
            bound = ref[k].abs().amax(dim=1, keepdim=True) / 127.0 * 0.51 + 1e-6
        else:
            bound = 1e-3 * ref[k].abs() + 1e-6
        assert torch.all((v - ref[k]).abs() <= bound), k
    x = torch.randn(1, 1, 16, 16, 16)
    t = torch.tensor([500])
    with torch.no_grad():
        out_ref, out_q = ref_net(x, t), net(x, t)
    assert (out_q - out_ref).abs().max() < 0.02 * out_ref.abs().max() + 1e-4
    with pytest.raises(CheckpointError, match="quantize"):
        ckpt.export_model(tmp_path, tmp_path / "bad.safetensors", quantize="int4")


def test_reference_layout_pt(tmp_path):
    stage1 = _perturbed("PRDiT-XS/10/0", 16)
    full = _perturbed("PRDiT-XS/10/1", 16, seed=1)
    f = tmp_path / "ref.pt"
    torch.save(
        {
            "model": {"module." + k: v for k, v in full.state_dict().items()},
            "ema": full.state_dict(),
            "opt": {},
            "args": __import__("argparse").Namespace(model="PRDiT-XS/10/1"),
        },
        f,
    )
    with pytest.raises(CheckpointError, match="--input-size"):
        load_for_inference(f)
    net, info = load_for_inference(f, input_size=16)
    assert info.model_name == "PRDiT-XS/10/1" and info.weights == "ema" and info.step is None
    assert all(torch.equal(net.state_dict()[k], v) for k, v in full.state_dict().items())
    with pytest.raises(
        CheckpointError, match="holds weights of PRDiT-XS/10/1, not the requested PRDiT-XS/10/0"
    ):
        load_for_inference(f, model_name="PRDiT-XS/10/0", input_size=16)
    bare = tmp_path / "bare.pt"
    torch.save(stage1.state_dict(), bare)  # a plain state dict also loads
    net0, info0 = load_for_inference(bare, input_size=16)
    assert info0.model_name == "PRDiT-XS/10/0"
    with pytest.raises(CheckpointError, match="16"):
        load_for_inference(bare, input_size=18)  # not tiled by the patch grid


def test_not_a_checkpoint_gets_a_clear_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello, I am not a checkpoint\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_for_inference(text, input_size=16)
    other = tmp_path / "other.pt"
    torch.save({"model": {"encoder.weight": torch.zeros(3, 3)}}, other)
    with pytest.raises(CheckpointError, match="not a PRDiT state dict"):
        load_for_inference(other, input_size=16)
    with pytest.raises(CheckpointError, match="no such file"):
        load_for_inference(tmp_path / "missing")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no complete step"):
        load_for_inference(empty)


class _Exploit:
    """Unpickling this would create a marker file (stands in for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("wrap", ["plain", "torch"])
def test_malicious_pickle_does_not_run(tmp_path, wrap):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.zeros(1)}, "x": _Exploit(str(marker))}
    if wrap == "plain":
        evil.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        load_for_inference(evil, model_name=NAME, input_size=SIZE)
    assert not marker.exists(), "loading a checkpoint executed code from the pickle"
    assert "refused" in str(err.value) and "evil.pt" in str(err.value)


def test_meta_json_is_plain_json(tmp_path):
    path, _, _ = _save(tmp_path, 1, _perturbed())
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    assert meta["spacing"] == [0.8, 0.9, 2.5] and meta["software_version"]
    assert os.path.getsize(path / "model.safetensors") > 4 * sum(p.numel() for p in _perturbed().parameters())


def test_int8_requantisation_is_exact():
    """A stage-3 file re-exports its frozen base from int8-dequantised weights: the base must come
    back bit-identical, so quantising dequantised weights again may not change a single value.
    (It holds because every scale is itself ``fl(m / 127)``: ``fl(fl(127 s) / 127) == s`` then, while
    for an arbitrary float ``s`` it fails ~1 % of the time; rows over 5 decades of magnitude.)"""
    from prdit.checkpoint import dequantize_state, quantize_state

    g = torch.Generator().manual_seed(0)
    rows = torch.logspace(-4, 1, 20000)[:, None]
    state = {"w": torch.randn(20000, 8, generator=g) * rows, "b": torch.randn(300)}
    q1, info1 = quantize_state(state)
    once = dequantize_state(q1, info1, "first")
    q2, info2 = quantize_state(once)
    twice = dequantize_state(q2, info2, "second")
    assert torch.equal(q1["w"], q2["w"])
    assert all(torch.equal(once[k], twice[k]) for k in state)
