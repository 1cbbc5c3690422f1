"""The precision choice: explicit settings win, auto measures, and every consumer records what ran."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from prdit import precision
from prdit.checkpoint import load_for_inference
from prdit.paths import bundled_model
from prdit.precision import (
    AutocastModel,
    PrecisionSettingError,
    ProbeResult,
    choose_precision,
    decide,
    parse_precision,
    with_precision,
)
from prdit.sampling import SampleSpec, generate_to_folder
from prdit.training import train
from tests.helpers.training import tiny_cfg


@pytest.fixture()
def no_env(monkeypatch):
    monkeypatch.delenv(precision.ENV_VAR, raising=False)


def test_settings_and_the_environment_variable(no_env, monkeypatch):
    assert parse_precision(None) == ("auto", "--precision")
    assert parse_precision("BF16") == ("bf16", "--precision")
    monkeypatch.setenv(precision.ENV_VAR, "fp32")
    assert parse_precision(None) == ("fp32", "PRDIT_PRECISION")
    assert parse_precision("bf16") == ("bf16", "--precision")  # an explicit setting wins
    monkeypatch.setenv(precision.ENV_VAR, "half")
    with pytest.raises(PrecisionSettingError, match="PRDIT_PRECISION.*'half'"):
        parse_precision(None)
    with pytest.raises(PrecisionSettingError, match="train.precision.*fp8"):
        choose_precision("fp8", "cpu", what="train.precision")


def test_auto_picks_bf16_only_when_clearly_faster_and_close():
    assert decide(ProbeResult(1.0, 0.6, 5e-3)).precision == "bf16"
    assert decide(ProbeResult(1.0, 0.95, 5e-3)).precision == "fp32"  # not worth it
    assert decide(ProbeResult(1.0, 1.3, 5e-3)).precision == "fp32"  # slower
    slow = decide(ProbeResult(1.0, 0.5, 0.2))
    assert slow.precision == "fp32" and "too large" in slow.reason


def test_auto_without_native_bf16_never_probes(no_env, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)

    def fail():
        raise AssertionError("probed on a CPU without bf16")

    choice = choose_precision("auto", "cpu", probe=fail)
    assert choice.precision == "fp32" and "no native bf16" in choice.reason


def test_auto_probe_runs_once_per_model_and_shape(no_env, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    calls = []

    def fake_probe(model, shape, device):
        calls.append(shape)
        return ProbeResult(1.0, 0.5, 1e-3)

    monkeypatch.setattr(precision, "probe_forward", fake_probe)
    model = torch.nn.Linear(2, 2)
    for _ in range(3):
        assert choose_precision(None, "cpu", model, (1, 1, 16, 16, 16)).precision == "bf16"
    choose_precision(None, "cpu", model, (2, 1, 16, 16, 16))
    assert calls == [(1, 1, 16, 16, 16), (2, 1, 16, 16, 16)]


def test_a_real_probe_and_the_wrapped_model_on_the_bundled_32_model():
    model, info = load_for_inference(bundled_model("fast-32"))
    shape = (1, 1, 32, 32, 32)
    result = precision.probe_forward(model, shape, "cpu")
    assert result.fp32_s > 0 and result.bf16_s > 0
    assert 1e-5 < result.change < 0.05  # bf16 does change the numbers, a little
    assert with_precision(model, choose_precision("fp32", "cpu")) is model
    wrapped = with_precision(model, choose_precision("bf16", "cpu"))
    assert isinstance(wrapped, AutocastModel) and wrapped.config is model.config
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([300])
    with torch.inference_mode():
        ref, out = model(x, t), wrapped(x, t)
    assert out.dtype == torch.float32
    assert float((out - ref).norm() / ref.norm()) < 0.05


def test_bf16_samples_say_so_and_stay_within_a_few_hu(tmp_path):
    model, info = load_for_inference(bundled_model("fast-32"))
    spec = SampleSpec(count=1, steps=10, seed=4)
    fp32 = generate_to_folder(model, info, tmp_path / "fp32", spec, previews=False)
    bf16 = generate_to_folder(
        model, info, tmp_path / "bf16", spec, previews=False, precision=choose_precision("bf16", "cpu")
    )
    assert json.loads(fp32[0].sidecar.read_text())["precision"] == "fp32"
    assert json.loads(bf16[0].sidecar.read_text())["precision"] == "bf16"
    a = np.asarray(nib.load(fp32[0].nifti).dataobj)
    b = np.asarray(nib.load(bf16[0].nifti).dataobj)
    assert 0 < np.abs(a - b).mean() < 5.0  # HU


def test_training_records_its_precision_and_a_resume_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.ENV_VAR, "bf16")
    first = train(tiny_cfg(train={"max_steps": 4}), run_dir=tmp_path / "run", progress=False)
    meta = json.loads((first.last_checkpoint / "meta.json").read_text())
    assert meta["precision"] == "bf16"
    # A resume with the default (auto) setting keeps bf16 even where the environment now says fp32
    monkeypatch.setenv(precision.ENV_VAR, "fp32")
    second = train(tiny_cfg(train={"max_steps": 6}), run_dir=tmp_path / "run", resume=True, progress=False)
    assert json.loads((second.last_checkpoint / "meta.json").read_text())["precision"] == "bf16"
