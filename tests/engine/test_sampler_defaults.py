"""A model file can recommend its sampler settings; `prdit sample` uses them unless told otherwise."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from prdit import checkpoint as ckpt
from prdit.cli import main as cli_main
from prdit.models import build_model
from prdit.sampler_defaults import SamplerDefaults

NAME, SIZE = "PRDiT-XS/4/0", 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One tiny run exported twice: with a recommendation (k = 4, 3 steps) and without."""
    root = tmp_path_factory.mktemp("sampling")
    torch.manual_seed(0)
    model = build_model(NAME, input_size=SIZE)
    meta = {"stage": 1, "model_name": NAME, "input_size": SIZE, "spacing": [2.0, 2.0, 2.0]}
    ckpt.save_checkpoint(
        root / "run" / "checkpoints", 7, model_state=model.state_dict(), ema_state=model.state_dict(),
        optimizer_state=None, meta=meta,
    )  # fmt: skip
    assert cli_main(["export-model", str(root / "run"), str(root / "plain.safetensors")]) == 0
    tuned = ["export-model", str(root / "run"), str(root / "tuned.safetensors"), "--recommend-k", "4"]
    assert cli_main([*tuned, "--recommend-steps", "3", "--recommend-note", "tune_sampler, 48"]) == 0
    return root


def test_metadata_round_trip(exported):
    with safe_open(str(exported / "tuned.safetensors"), framework="pt") as f:
        entry = json.loads(f.metadata()["prdit"])["sampling"]
    assert entry == {"sampler": "hot", "k": 4, "steps": 3, "note": "tune_sampler, 48"}
    _, info = ckpt.load_for_inference(exported / "tuned.safetensors")
    assert info.sampler_defaults == SamplerDefaults("hot", 4, 3, recommended=True)
    _, plain = ckpt.load_for_inference(exported / "plain.safetensors")
    assert plain.sampler_defaults == SamplerDefaults("hot", 2, None, recommended=False)


def test_info_prints_the_recommendation(exported, capsys):
    assert cli_main(["info", str(exported / "tuned.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "sampling:" in out and "hot, k = 4, 3 steps (recommended by the model)" in out
    assert cli_main(["info", str(exported / "plain.safetensors")]) == 0
    assert "hot, k = 2 (paper default)" in capsys.readouterr().out


def _sidecar(folder):
    return json.loads((folder / "sample_00000.json").read_text(encoding="utf-8"))


def test_sample_uses_the_recommendation_unless_overridden(exported, tmp_path, capsys):
    common = ["--no-preview", "--no-progress", "--device", "cpu"]
    tuned = str(exported / "tuned.safetensors")
    assert cli_main(["sample", tuned, "--out", str(tmp_path / "a"), *common]) == 0
    assert "the model recommends hot, k = 4, 3 steps; using hot, k = 4, 3 steps" in capsys.readouterr().out
    side = _sidecar(tmp_path / "a")
    assert (side["sampler"], side["k"], side["steps"]) == ("hot", 4, 3)

    args = ["sample", tuned, "--out", str(tmp_path / "b"), "--k", "2"]
    assert cli_main([*args, "--steps", "2", *common]) == 0
    assert "using hot, k = 2, 2 steps" in capsys.readouterr().out
    side = _sidecar(tmp_path / "b")
    assert (side["k"], side["steps"]) == (2, 2)

    # a file without a recommendation keeps the paper's settings (250 steps is slow; ask for 2)
    assert cli_main(["sample", str(exported / "plain.safetensors"), "--out", str(tmp_path / "c"),
                     "--steps", "2", *common]) == 0  # fmt: skip
    assert "recommends" not in capsys.readouterr().out
    assert _sidecar(tmp_path / "c")["k"] == 2


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": "4"}, "k must be an integer >= 1"),
        ({"sampler": "warm"}, "sampler must be one of hot, cold"),
        ({"steps": -3}, "steps must be an integer >= 1"),
        ({"k": 4, "temperature": 2}, "unknown field(s) temperature"),
        ([4], "must be a mapping"),
    ],
)
def test_malformed_recommendations_are_named(entry, message):
    with pytest.raises(ValueError, match=r"model\.safetensors: metadata 'sampling'") as err:
        SamplerDefaults.from_meta({"sampling": entry}, source="model.safetensors")
    assert message in str(err.value)


def test_export_refuses_a_bad_recommendation(exported, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert cli_main(["export-model", str(exported / "run"), str(out), "--recommend-k", "0"]) != 0
    assert "--recommend-k: k must be an integer >= 1" in capsys.readouterr().err
    assert cli_main(["export-model", str(exported / "run"), str(out), "--recommend-steps", "0"]) != 0
    assert "--recommend-steps: steps must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_display_window_is_recorded_shown_and_checked(exported, tmp_path, capsys):
    from prdit.sampler_defaults import DisplayWindow

    out = tmp_path / "windowed.safetensors"
    assert (
        cli_main(["export-model", str(exported / "run"), str(out), "--recommend-window", "1500", "-600"]) == 0
    )
    _, info = ckpt.load_for_inference(out)
    assert info.display_window == DisplayWindow(1500.0, -600.0)
    _, plain = ckpt.load_for_inference(exported / "plain.safetensors")
    assert plain.display_window is None
    capsys.readouterr()
    assert cli_main(["info", str(out)]) == 0
    assert "display window:  W 1500 / L -600 (recommended by the model)" in capsys.readouterr().out
    assert cli_main(["export-model", str(exported / "run"), str(tmp_path / "x.safetensors"),
                     "--recommend-window", "0", "40"]) == 2  # fmt: skip
    assert "--recommend-window: display window width must be between 1 and 100000" in capsys.readouterr().err
    with pytest.raises(ValueError, match="metadata 'display'"):
        DisplayWindow.from_meta({"display": {"width": 3}}, source="m")


def test_a_model_can_recommend_a_multistep_solver(exported, tmp_path, capsys):
    out = tmp_path / "v2m.safetensors"
    argv = ["export-model", str(exported / "run"), str(out), "--recommend-sampler", "v2m-sde"]
    assert cli_main([*argv, "--recommend-steps", "11"]) == 0
    _, info = ckpt.load_for_inference(out)
    assert info.sampler_defaults == SamplerDefaults("v2m-sde", 2, 11, recommended=True)
    assert cli_main(["info", str(out)]) == 0
    assert "v2m-sde, 11 steps (recommended by the model)" in capsys.readouterr().out
    samples = tmp_path / "s"
    common = ["--no-preview", "--no-progress", "--device", "cpu", "--count", "1", "--out", str(samples)]
    assert cli_main(["sample", str(out), *common]) == 0
    side = _sidecar(samples)
    assert side["sampler"] == "v2m-sde" and side["steps"] == 11 and side["k"] is None


def test_an_exported_model_gets_new_recommendations_with_its_tensors_unchanged(exported, tmp_path, capsys):
    from safetensors import safe_open

    def load_raw(path):
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["prdit"])

    src = exported / "tuned.safetensors"
    out = tmp_path / "restamped.safetensors"
    argv = ["export-model", str(src), str(out), "--recommend-sampler", "hot", "--recommend-steps", "21"]
    assert cli_main(argv) == 0
    before, meta_before = load_raw(src)
    after, meta_after = load_raw(out)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert meta_after["sampling"] == {"sampler": "hot", "k": 2, "steps": 21}
    assert {k: v for k, v in meta_after.items() if k != "sampling"} == {
        k: v for k, v in meta_before.items() if k != "sampling"
    }
    assert cli_main(["export-model", str(src), str(tmp_path / "x.safetensors")]) != 0
    assert "already a single-file model" in capsys.readouterr().err
