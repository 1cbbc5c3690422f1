"""The training loop on CPU with tiny models: learning, exact resume, frozen stages, stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prdit import checkpoint as ckpt
from prdit.data.normalize import HUWindow
from prdit.models import build_model
from prdit.training import Trainer, TrainingDiverged, per_sample_noise, train
from tests.helpers.training import tiny_cfg

ROOT = Path(__file__).resolve().parents[2]


def _states(run_dir: Path):
    state = ckpt.load_training_state(run_dir)
    return state.model, state.ema, state.optimizer


def test_loss_falls_on_a_fixed_phantom_batch(tmp_path):
    cfg = tiny_cfg(train={"max_steps": 30, "batch_size": 2, "lr": 3e-3}, data={"phantom_count": 2})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    x0 = torch.stack([trainer.train_set[i] for i in range(2)])
    t, eps, _ = per_sample_noise([0, 1, 2, 3], 99, (1, 16, 16, 16), 1000, torch.device("cpu"))
    x0 = x0.repeat(2, 1, 1, 1, 1)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(trainer.diffusion.training_losses(trainer.raw_model, x0, t=t, noise=eps)["loss"])

    before = fixed_loss()
    result = trainer.run()
    after = fixed_loss()
    assert result.step == 30 and result.stopped_by is None
    assert after < 0.6 * before, (before, after)
    logged = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert losses[-1] < losses[0]
    assert {"steps_per_s", "eta_s", "grad_norm", "lr", "loss_x0", "loss_noise"} <= set(logged[1])


def test_resume_is_bit_exact(tmp_path):
    train(tiny_cfg(), run_dir=tmp_path / "straight", progress=False)
    first = train(tiny_cfg(train={"max_steps": 10}), run_dir=tmp_path / "split", progress=False)
    assert first.step == 10
    second = train(tiny_cfg(), run_dir=tmp_path / "split", resume=True, progress=False)
    assert second.step == 20
    a_model, a_ema, a_opt = _states(tmp_path / "straight")
    b_model, b_ema, b_opt = _states(tmp_path / "split")
    assert a_model.keys() == b_model.keys()
    for k in a_model:
        assert torch.equal(a_model[k], b_model[k]), k
        assert torch.equal(a_ema[k], b_ema[k]), k
    for sa, sb in zip(a_opt["state"].values(), b_opt["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # and the weights did move: this is not a comparison of two untouched models
    fresh = build_model("PRDiT-XS/4/0", input_size=16).state_dict()
    assert any(not torch.equal(fresh[k], a_model[k]) for k in fresh)


def test_gradient_accumulation_matches_a_full_batch(tmp_path):
    train(tiny_cfg(train={"max_steps": 4, "batch_size": 4}), run_dir=tmp_path / "full", progress=False)
    train(
        tiny_cfg(train={"max_steps": 4, "batch_size": 4, "grad_accum": 2}),
        run_dir=tmp_path / "acc",
        progress=False,
    )
    a, _, _ = _states(tmp_path / "full")
    b, _, _ = _states(tmp_path / "acc")
    # Adam divides by sqrt(v): where a gradient is ~0, summation-order rounding between one batch
    # of 4 and two of 2 is amplified (3.7e-6 seen on an AVX-512 Xeon); a wrong accumulation (a
    # missing 1/grad_accum, a dropped micro-batch) moves weights by ~lr = 2e-3
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=2e-5)


def _perturbed_checkpoint(root: Path, name: str, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(name, input_size=size)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {
        "stage": 1,
        "model_name": name,
        "input_size": size,
        "hu_window": HUWindow().to_dict(),
        "spacing": [21.875] * 3,
    }
    ckpt.save_checkpoint(
        root / "checkpoints", 100, model_state=state, ema_state=state, optimizer_state=None, meta=meta
    )
    return state


def test_stage2_keeps_the_coarse_path_bit_identical(tmp_path):
    stage1 = _perturbed_checkpoint(tmp_path / "stage1", "PRDiT-XS/10/0", 16)
    cfg = tiny_cfg(
        stage=2,
        model={"name": "PRDiT-XS/10/1", "input_size": 16, "init_from": str(tmp_path / "stage1")},
        train={"max_steps": 3, "lr": 1e-3},
    )
    result = train(cfg, run_dir=tmp_path / "stage2", progress=False)
    assert result.step == 3
    model, ema, _ = _states(tmp_path / "stage2")
    coarse = [k for k in model if k.startswith(("coarse.", "t_embedder.mlp.", "t_embedder.coarse_head."))]
    assert coarse and set(coarse) == set(stage1)
    for k in coarse:
        assert torch.equal(model[k], stage1[k]), k
        assert torch.equal(ema[k], stage1[k]), k
    fresh = build_model("PRDiT-XS/10/1", input_size=16).state_dict()
    fine = [k for k in model if k.startswith(("fine.", "t_embedder.fine_head."))]
    assert any(not torch.equal(model[k], fresh[k]) for k in fine), "the global branch did not train"


def test_stage3_keeps_the_base_model_bit_identical(tmp_path):
    base = _perturbed_checkpoint(tmp_path / "base", "PRDiT-XS/4/0", 16)
    cfg = tiny_cfg(
        stage=3,
        model={
            "name": "PRDiT-XS/4/0",
            "base_size": 16,
            "input_size": 32,
            "highres_patch": 10,
            "highres_width": 48,
            "init_from": str(tmp_path / "base"),
        },
        data={"phantom_count": 2},
        train={"max_steps": 3},
    )
    result = train(cfg, run_dir=tmp_path / "hr", progress=False)
    assert result.step == 3
    model, ema, _ = _states(tmp_path / "hr")
    base_keys = [k for k in model if k.startswith("base.")]
    assert len(base_keys) == len(base)
    for k in base_keys:
        assert torch.equal(model[k], base[k[len("base.") :]]), k
        assert torch.equal(ema[k], base[k[len("base.") :]]), k
    residual = [k for k in model if k.startswith("residual.")]
    assert any(model[k].abs().sum() > 0 for k in residual if "linear_final" in k), "the branch did not train"
    net, info = ckpt.load_for_inference(tmp_path / "hr")
    assert (info.stage, info.base_size, info.input_size) == (3, 16, 32)
    assert net.config.branch_width == 48 and info.meta["highres_width"] == 48
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 32, 32, 32), torch.tensor([500])).shape == (1, 2, 32, 32, 32)


def test_stage3_cascades_one_level_up_on_a_stage3_model(tmp_path):
    """16^3 -> 32^3 -> 64^3: the second stage 3 reuses the first, frozen, with its own base inside."""
    _perturbed_checkpoint(tmp_path / "base", "PRDiT-XS/4/0", 16)
    level = {"name": "PRDiT-XS/4/0", "highres_patch": 10, "highres_width": 16}
    for lo, hi, source in ((16, 32, "base"), (32, 64, "hr32")):
        cfg = tiny_cfg(
            stage=3,
            model={**level, "base_size": lo, "input_size": hi, "init_from": str(tmp_path / source)},
            data={"phantom_count": 2},
            train={"max_steps": 2, "batch_size": 1},
        )
        train(cfg, run_dir=tmp_path / f"hr{hi}", progress=False)
    _, first, _ = _states(tmp_path / "hr32")  # its EMA weights are what the next level reuses
    model, ema, _ = _states(tmp_path / "hr64")
    assert all(
        torch.equal(model["base." + k], v) and torch.equal(ema["base." + k], v) for k, v in first.items()
    )
    out = tmp_path / "hr64.safetensors"
    ckpt.export_model(tmp_path / "hr64", out, quantize="int8")
    net, info = ckpt.load_for_inference(out)
    assert (info.stage, info.base_size, info.input_size) == (3, 32, 64)
    assert net.config.base["base"]["input_size"] == 16  # the cascade is stored whole
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 64, 64, 64), torch.tensor([500])).shape == (1, 2, 64, 64, 64)


def test_stage2_from_scratch_trains_local_and_global_parts_together(tmp_path):
    cfg = tiny_cfg(
        stage=2,
        model={"name": "PRDiT-XS/10/1", "input_size": 16, "from_scratch": True},
        data={"phantom_count": 2},
        train={"max_steps": 2},
    )
    train(cfg, run_dir=tmp_path / "scratch", progress=False)
    model, _, _ = _states(tmp_path / "scratch")
    # both read-outs start at zero, so a non-zero one has been trained
    for key in ("coarse.mlp_denoise.linear_final.weight", "fine.final_layer.linear.weight"):
        assert model[key].abs().sum() > 0, f"{key} did not train"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_cfg(train={"max_steps": 10}, checkpoint={"every": 2})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    real = trainer.diffusion.training_losses
    calls = {"n": 0}

    def poisoned(model, x0, **kw):
        calls["n"] += 1
        out = real(model, x0, **kw)
        if calls["n"] > 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.diffusion.training_losses = poisoned
    with pytest.raises(TrainingDiverged, match=r"nan at step 4.*step_0000002"):
        trainer.run()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == [2]
    state = ckpt.load_training_state(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state.model.values())


def test_activation_checkpointing_gives_the_same_weights(tmp_path):
    train(tiny_cfg(train={"max_steps": 3}), run_dir=tmp_path / "a", progress=False)
    train(
        tiny_cfg(train={"max_steps": 3, "activation_checkpointing": True}),
        run_dir=tmp_path / "b",
        progress=False,
    )
    a, _, _ = _states(tmp_path / "a")
    b, _, _ = _states(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


_CLI = (
    "import argparse, sys\n"
    "from prdit.cli import train as t\n"
    "p = argparse.ArgumentParser(); t.add_arguments(p)\n"
    "sys.exit(t.run(p.parse_args(sys.argv[1:])))\n"
)


def test_sigterm_saves_a_loadable_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "phantom-tiny",
        "--out",
        str(run_dir),
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        "model.input_size=16",
        "--set",
        "train.max_steps=100000",
        "--set",
        "log.every=1",
        "--set",
        "log.val_every=0",
        "--set",
        "log.preview_every=0",
        "--set",
        "checkpoint.every=0",
        "--set",
        "data.phantom_count=2",
        "--set",
        "train.threads=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (
            metrics.exists()
            and sum('"loss"' in ln for ln in metrics.read_text(encoding="utf-8").splitlines()) >= 3
        ):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by SIGTERM" in out
    state = ckpt.load_training_state(run_dir)
    assert 3 <= state.step < 100000
    model, info = ckpt.load_for_inference(run_dir)
    assert info.step == state.step and info.model_name == "PRDiT-XS/4/0"
    last = json.loads(metrics.read_text(encoding="utf-8").splitlines()[-1])
    assert last["event"] == "stopped" and last["reason"] == "SIGTERM"
