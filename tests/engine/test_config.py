"""Config files: every preset loads, bad values fail early with the key and the allowed values."""

from __future__ import annotations

import pytest

from prdit.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    preset_names,
)
from prdit.paths import resource

TINY = {"model": {"name": "PRDiT-XS/4/0", "input_size": 16}, "train": {"batch_size": 2}}


def test_all_presets_exist_and_validate():
    names = preset_names()
    for expected in (
        "phantom-tiny",
        "lidc-stage1",
        "lidc-stage2",
        "lidc-stage3-256",
        "rad-stage1",
        "rad-stage2",
        "rad-stage3-256",
    ):
        assert expected in names
    for name in names:
        cfg = load_config(name, ["data.root=/data/x"] if name != "phantom-tiny" else [])
        assert isinstance(cfg, Config) and cfg.name == name


def test_paper_recipes_match_the_spec():
    s1 = load_config("lidc-stage1", ["data.root=/d"])
    s2 = load_config("lidc-stage2", ["data.root=/d"])
    s3 = load_config("rad-stage3-256", ["data.root=/d"])
    assert (s1.stage, s1.model.name, s1.model.input_size) == (1, "PRDiT-B/12/0", 128)
    assert (s2.stage, s2.model.name, s2.model.input_size) == (2, "PRDiT-B/12/4", 128)
    assert (s1.train.lr, s2.train.lr, s1.train.batch_size, s1.train.ema_decay) == (1e-4, 8e-5, 64, 0.9999)
    assert (s1.train.grad_clip, s1.train.weight_decay) == (1.0, 0.0)
    assert (s1.diffusion.num_timesteps, s1.diffusion.noise_scale) == (1000, 0.5)
    assert (s3.stage, s3.model.base_size, s3.model.input_size, s3.model.highres_patch) == (3, 128, 256, 12)
    assert (s3.train.lr, s3.train.batch_size, s3.train.max_steps) == (9e-5, 8, 60000)


def test_phantom_preset_is_cpu_sized():
    cfg = load_config(resource("configs", "phantom-tiny.yaml"))
    assert cfg.data.source == "phantom" and cfg.model.input_size <= 32 and cfg.train.max_steps <= 1000


def test_overrides_parse_yaml_values_and_reach_any_key():
    cfg = config_from_dict(
        TINY,
        [
            "train.lr=2e-4",
            "train.betas=[0.9, 0.95]",
            "log.tensorboard=false",
            "data.hu_window.low=-1200",
            "stage=1",
        ],
    )
    assert cfg.train.lr == 2e-4 and cfg.train.betas == (0.9, 0.95)
    assert cfg.log.tensorboard is False and cfg.data.hu_window.low == -1200.0
    assert parse_override("model.name=PRDiT-B/12/4") == (["model", "name"], "PRDiT-B/12/4")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_round_trip_through_dict():
    cfg = config_from_dict(TINY, ["train.betas=[0.8, 0.9]"])
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("override", "must_mention"),
    [
        ("train.lrr=1", ["train.lrr", "allowed keys in train", "lr"]),
        ("stage=4", ["stage", "allowed values", "1, 2, 3"]),
        ("train.precision=fp8", ["train.precision", "'auto', 'fp32', 'bf16'"]),
        ("train.batch_size=many", ["train.batch_size", "integer"]),
        ("train.betas=[0.9]", ["train.betas", "list"]),
        ("log.tensorboard=maybe", ["log.tensorboard", "true or false"]),
        ("model.name=PRDiT-Q/3/1", ["model.name", "PRDiT-Q/3/1"]),
        ("model.input_size=18", ["model.input_size", "18"]),
        ("train.lr=2", ["train.lr", "(0, 1)"]),
        ("train.grad_accum=3", ["train.batch_size", "divisible"]),
        ("data.source=folder", ["data.root", "--data"]),
        ("train.device=tpu", ["train.device", "cuda:N"]),
        ("data.hu_window.mode=log", ["data.hu_window.mode", "'window', 'minmax'"]),
        ("model.base_size=16", ["model.base_size", "stage 3"]),
        ("model.highres_width=64", ["model.highres_width", "stage 3"]),
        ("model.from_scratch=true", ["model.from_scratch", "only stage 2"]),
    ],
)
def test_bad_values_name_the_key_and_the_choices(override, must_mention):
    with pytest.raises(ConfigError) as err:
        config_from_dict(TINY, [override], source="my.yaml")
    text = str(err.value)
    assert text.startswith("my.yaml: ")
    for part in must_mention:
        assert part in text, (part, text)


def test_stage_rules():
    with pytest.raises(ConfigError, match="model.init_from: stage 2 needs"):
        config_from_dict({**TINY, "stage": 2, "model": {"name": "PRDiT-XS/10/1", "input_size": 16}})
    with pytest.raises(ConfigError, match="stage 1 trains the local denoiser only"):
        config_from_dict({**TINY, "model": {"name": "PRDiT-XS/10/1", "input_size": 16}})
    with pytest.raises(ConfigError, match="integer multiple of model.base_size"):
        config_from_dict(
            {
                **TINY,
                "stage": 3,
                "model": {"name": "PRDiT-XS/4/0", "input_size": 24, "base_size": 16, "init_from": "x"},
            }
        )
    ok = config_from_dict(
        {
            **TINY,
            "stage": 3,
            "model": {
                "name": "PRDiT-XS/4/0",
                "input_size": 32,
                "base_size": 16,
                "init_from": "x",
                "highres_patch": 10,
            },
        }
    )
    assert ok.model.base_size == 16
    with pytest.raises(ConfigError, match="model.highres_width: must be a positive integer"):
        config_from_dict(TINY | {"stage": 3, "model": {**ok.model.__dict__, "highres_width": 0}})
    with pytest.raises(ConfigError, match="model.highres_noise_image_var: must be a positive number"):
        config_from_dict(TINY | {"stage": 3, "model": {**ok.model.__dict__, "highres_noise_image_var": -1}})
    with pytest.raises(ConfigError, match="model.highres_noise"):
        config_from_dict(TINY | {"stage": 3, "model": {**ok.model.__dict__, "highres_noise": "bilinear"}})
    with pytest.raises(ConfigError, match="model.highres_noise: only used by stage 3"):
        config_from_dict(
            {**TINY, "model": {"name": "PRDiT-XS/10/0", "input_size": 16, "highres_noise": "implied"}}
        )
    s2 = {"name": "PRDiT-XS/10/1", "input_size": 16, "from_scratch": True}
    assert config_from_dict({**TINY, "stage": 2, "model": s2}).model.from_scratch
    with pytest.raises(ConfigError, match="model.init_from must be empty"):
        config_from_dict({**TINY, "stage": 2, "model": {**s2, "init_from": "runs/s1"}})


def test_world_size_divides_the_global_batch():
    config_from_dict(TINY, ["train.batch_size=4"], world_size=2)
    with pytest.raises(ConfigError, match="number of processes 2"):
        config_from_dict(TINY, ["train.batch_size=4", "train.grad_accum=4"], world_size=2)


def test_missing_file_lists_presets(tmp_path):
    with pytest.raises(ConfigError, match="phantom-tiny"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)
