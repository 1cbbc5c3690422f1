"""Training configuration: a typed dataclass schema, loaded from YAML and validated up front.

Why a schema instead of a free dict: a typo in a key or a value that cannot work (``stage: 4``,
``precision: fp8``) should fail in the first second with a message naming the key and what is
allowed, not after an hour on a GPU queue. Every key can be overridden from the command line with
``--set section.key=value`` (values parsed as YAML, so ``--set train.betas=[0.9,0.95]`` works).

The loaded config is stored in every checkpoint (``to_dict``) so a run can be resumed or audited.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from prdit.paths import resource


class ConfigError(ValueError):
    """A configuration the run cannot use; the message names the key (``train.lr``) and the fix."""


# ---------------------------------------------------------------------------------------------- schema
@dataclass
class HUWindowConfig:
    """HU range mapped to [-1, 1]; stored with the model so outputs map back to HU."""

    low: float = -1000.0
    high: float = 1000.0
    mode: Literal["window", "minmax"] = "window"


@dataclass
class ModelConfig:
    """Which network to train (names as in the paper: ``PRDiT-{size}/{patch}/{depth}``)."""

    name: str = "PRDiT-B/12/4"
    input_size: int = 128
    attention: Literal["auto", "xformers", "sdpa", "math"] = "auto"
    # Stage 2: the stage-1 checkpoint whose coarse path is loaded and frozen.
    # Stage 3: the trained low-resolution checkpoint (stage 1 or 2) reused, frozen, as the prior.
    init_from: str | None = None
    # Stage 3 only: edge of the frozen base model's input (128 in the paper); input_size is the
    # high-resolution edge (256 in the paper).
    base_size: int | None = None
    # Stage 3 only: input patch edge of the new full-resolution residual branch (stride 8,
    # reflect pad (patch - 8) // 2; the spec's branch is patch 12).
    highres_patch: int = 12
    # Stage 3 only: SwiGLU width of that branch (null: the token width patch^3, as in stage 1).
    highres_width: int | None = None
    # Stage 3 only: where the base's upsampled image lands: "block" (the spec: block centres) or
    # "picked" (the voxels nearest downsampling fed it; no drift, see prdit/models/highres.py).
    highres_alignment: Literal["block", "picked"] = "block"
    # Stage 3 only: how the base's noise answer reaches full resolution: "nearest" (the spec),
    # "fed" (only on the voxels the base was fed, zero on the rest) or "implied" (from the noisy
    # input and the upsampled image; a fresh model starts ~6x closer, see prdit/models/highres.py
    # implied_noise), with highres_noise_image_var the assumed variance of the upsampled image's
    # error in [-1, 1] data units.
    highres_noise: Literal["nearest", "fed", "implied"] = "nearest"
    highres_noise_image_var: float = 0.01
    # Stage 2 only: train the whole model (local denoiser and global branch) jointly from random
    # weights instead of loading a frozen stage-1 checkpoint. Not the paper's recipe: it is the
    # from-scratch baseline that stage-3 reuse is measured against (benchmarks/reuse_cost.py).
    from_scratch: bool = False
    # Stages 2 and 3: start from the EMA weights of init_from (the better model) or its raw weights.
    init_use_ema: bool = True


@dataclass
class DiffusionConfig:
    """The IaN forward process (spec section 6); the paper's values must match."""

    num_timesteps: int = 1000
    noise_scale: float = 0.5


@dataclass
class DataConfig:
    """Where training volumes come from: a preprocessed folder or phantoms made on the fly."""

    source: Literal["phantom", "folder"] = "phantom"
    root: str | None = None  # folder source: the preprocessed dataset (``--data DIR`` overrides)
    train_split: str = "train"
    val_split: str = "val"
    # HU range -> [-1, 1]. Phantoms use it (default -1000..1000); a preprocessed folder records its
    # own window, which wins; a value set here must then agree with it.
    hu_window: HUWindowConfig | None = None
    # Random left-right flips (augmentation), decided per sample from the run seed. Off by default:
    # a flip mirrors the anatomy (heart on the right), so samples would show both layouts.
    flip: bool = False
    phantom_count: int = 64  # phantom source: number of distinct training phantoms
    phantom_val_count: int = 4  # phantom source: held-out phantoms for the validation loss
    phantom_seed_offset: int = 0
    cache: bool = True
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Optimisation (spec section 6: AdamW without weight decay, clip 1.0, EMA 0.9999)."""

    seed: int = 0
    max_steps: int = 400_000
    batch_size: int = 64  # global batch per optimiser step (all ranks, all accumulation steps)
    grad_accum: int = 1  # micro-batches per optimiser step on each rank
    lr: float = 1e-4
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 disables clipping
    ema_decay: float = 0.9999
    # auto: bf16 autocast on CUDA; on CPUs with native bf16 if one timed step finds it clearly
    # faster (prdit.precision); fp32 elsewhere. A resumed run keeps its checkpoint's choice.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    tf32: bool = True
    activation_checkpointing: bool = False
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    # CPU threads for torch; 0: prdit.threads' choice ($PRDIT_THREADS, else the free cores), made
    # once at the start so that a run's arithmetic does not change with the machine's load
    threads: int = 0


@dataclass
class LogConfig:
    every: int = 50  # metrics line (JSONL/TensorBoard) every N steps
    val_every: int = 2000  # validation loss every N steps (0: never)
    val_batches: int = 4
    preview_every: int = 5000  # preview PNGs every N steps (0: never)
    preview_count: int = 2
    tensorboard: bool = True  # used when the tensorboard package is importable
    progress: bool = True  # tqdm progress bar on rank 0


@dataclass
class CheckpointConfig:
    every: int = 5000  # save every N steps (and always at the end)
    keep_last: int = 3  # older step checkpoints are deleted (0: keep all)


@dataclass
class Config:
    """A whole training run."""

    name: str = "run"
    stage: Literal[1, 2, 3] = 1
    out_dir: str | None = None  # default runs/<name>
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable dict (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self) -> Config:
        return copy.deepcopy(self)


# ---------------------------------------------------------------------------------------------- helpers
def model_spec(name: str, key: str = "model.name", input_size: int | None = None) -> Any:
    """The engine registry's configuration for ``name`` (checked at ``input_size`` when given).

    Delegates to :mod:`prdit.models.registry` (the single source of truth for variant names and
    for which sizes a patch grid tiles) and re-raises its errors as ConfigError naming ``key``.
    """
    from prdit.models.registry import model_config, parse_model_name

    try:
        _, _, _, _, stride, _, _ = parse_model_name(name)
        if input_size is None:
            for size in range(stride, 1025, stride):
                try:
                    return model_config(name, input_size=size)
                except ValueError:
                    continue
            raise ValueError(f"no input size up to 1024 fits the patch grid of {name}")
        return model_config(name, input_size=int(input_size))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return "a list [" + ", ".join(_type_name(a) for a in typing.get_args(tp)) + "]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        for a in allowed:
            # YAML may give 1 for stage 1 or "1" from an override: compare loosely, return canonical.
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(repr, allowed))}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: must not be null; expected {_type_name(tp)}")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            names = [f.name for f in dataclasses.fields(tp)]
            raise ConfigError(f"{key}: expected a mapping with keys among {', '.join(names)}")
        return _build(tp, value, key + ".")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in the schema, not the user's


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(prefix + str(k) for k in unknown)}; allowed keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _positive(cfg: Config, key: str, minimum: float = 1) -> None:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    if obj < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {obj}")


def validate(cfg: Config, world_size: int = 1) -> Config:
    """Cross-field checks (types were checked on load). Returns ``cfg`` for chaining."""
    for key in (
        "model.input_size",
        "diffusion.num_timesteps",
        "train.max_steps",
        "train.batch_size",
        "train.grad_accum",
        "log.every",
        "data.phantom_count",
        "data.phantom_val_count",
    ):
        _positive(cfg, key)
    for key in (
        "train.warmup_steps",
        "log.val_every",
        "log.preview_every",
        "log.val_batches",
        "log.preview_count",
        "checkpoint.every",
        "checkpoint.keep_last",
        "data.num_workers",
        "train.threads",
        "train.grad_clip",
        "train.weight_decay",
    ):
        _positive(cfg, key, 0)
    spec = model_spec(cfg.model.name, "model.name")
    if not 0 < cfg.train.lr < 1:
        raise ConfigError(f"train.lr: must be in (0, 1), got {cfg.train.lr}")
    if not 0 <= cfg.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {cfg.train.ema_decay}")
    if not all(0 <= b < 1 for b in cfg.train.betas):
        raise ConfigError(f"train.betas: both must be in [0, 1), got {list(cfg.train.betas)}")
    if not 0 < cfg.diffusion.noise_scale <= 10:
        raise ConfigError(
            f"diffusion.noise_scale: must be in (0, 10] (the noise's standard deviation relative to the "
            f"[-1, 1] data; the paper uses 0.5), got {cfg.diffusion.noise_scale}"
        )
    w = cfg.data.hu_window
    if w is not None and w.high <= w.low:
        raise ConfigError(f"data.hu_window: needs low < high, got low={w.low}, high={w.high}")
    if not (cfg.train.device in ("auto", "cpu", "cuda") or re.match(r"^cuda:\d+$", cfg.train.device)):
        raise ConfigError(
            f"train.device: {cfg.train.device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N"
        )
    per_step = world_size * cfg.train.grad_accum
    if cfg.train.batch_size % per_step:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} must be divisible by (number of processes "
            f"{world_size}) x train.grad_accum {cfg.train.grad_accum} = {per_step}"
        )
    if cfg.data.source == "folder" and not cfg.data.root:
        raise ConfigError(
            "data.root: the folder source needs a dataset folder (set data.root or pass --data DIR)"
        )
    if cfg.model.from_scratch and cfg.stage != 2:
        raise ConfigError(f"model.from_scratch: only stage 2 trains from scratch, this is stage {cfg.stage}")
    if cfg.model.from_scratch and cfg.model.init_from:
        raise ConfigError(
            "model.from_scratch: true trains from random weights, so model.init_from must be empty "
            f"(got {cfg.model.init_from!r})"
        )
    if cfg.stage in (2, 3) and not cfg.model.init_from and not cfg.model.from_scratch:
        what = "stage-1 checkpoint" if cfg.stage == 2 else "trained low-resolution checkpoint to reuse"
        raise ConfigError(f"model.init_from: stage {cfg.stage} needs the {what}")
    if cfg.stage == 1 and cfg.model.init_from:
        raise ConfigError(
            "model.init_from: only stages 2 and 3 start from a checkpoint (use --resume to continue)"
        )
    if cfg.stage == 1 and spec.depth != 0:
        raise ConfigError(
            f"model.name: stage 1 trains the local denoiser only (depth 0), got {cfg.model.name}"
        )
    if cfg.stage == 2 and spec.depth == 0:
        raise ConfigError(
            f"model.name: stage 2 trains the global branch, so depth must be > 0, got {cfg.model.name}"
        )
    if cfg.stage != 3:
        if cfg.model.base_size is not None:
            raise ConfigError("model.base_size: only used by stage 3")
        if cfg.model.highres_width is not None:
            raise ConfigError("model.highres_width: only used by stage 3")
        if cfg.model.highres_alignment != "block":
            raise ConfigError("model.highres_alignment: only used by stage 3")
        if cfg.model.highres_noise != "nearest":
            raise ConfigError("model.highres_noise: only used by stage 3")
        model_spec(cfg.model.name, "model.input_size", cfg.model.input_size)
        return cfg
    # Stage 3: a frozen base at base_size reused at input_size (an integer multiple of it).
    if not cfg.model.base_size:
        raise ConfigError("model.base_size: stage 3 needs the frozen base model's input size (e.g. 128)")
    model_spec(cfg.model.name, "model.base_size", cfg.model.base_size)
    if cfg.model.input_size <= cfg.model.base_size or cfg.model.input_size % cfg.model.base_size:
        raise ConfigError(
            f"model.input_size: stage 3 needs an integer multiple of model.base_size "
            f"({cfg.model.base_size}), larger than it; got {cfg.model.input_size}"
        )
    from prdit.models.registry import PATCHES

    if cfg.model.highres_patch not in PATCHES:
        raise ConfigError(
            f"model.highres_patch: {cfg.model.highres_patch} is not allowed; allowed values: "
            f"{', '.join(map(str, PATCHES))}"
        )
    w = cfg.model.highres_width
    if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
        raise ConfigError(f"model.highres_width: must be a positive integer or null, got {w!r}")
    v = cfg.model.highres_noise_image_var
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
        raise ConfigError(
            f"model.highres_noise_image_var: must be a positive number (the upsampled image's error "
            f"variance in [-1, 1] units, e.g. 0.01), got {v!r}"
        )
    return cfg


# ---------------------------------------------------------------------------------------------- loading
def preset_names() -> list[str]:
    """Names of the built-in presets in ``resources/configs`` (without ``.yaml``)."""
    folder = resource("configs")
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_config_path(path_or_preset: str | Path) -> Path:
    """A YAML path, or the name of a built-in preset (``phantom-tiny``)."""
    p = Path(path_or_preset)
    if p.is_file():
        return p
    preset = resource("configs", f"{path_or_preset}.yaml")
    if preset.is_file():
        return preset
    if p.exists():
        raise ConfigError(f"config {p}: not a file")
    raise ConfigError(
        f"config {path_or_preset}: no such file and no built-in preset of that name; "
        f"presets: {', '.join(preset_names()) or '(none)'}"
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=2e-4"`` -> (["train", "lr"], "2e-4" parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.lr=2e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not all(part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"override {text!r}: {key!r} is not a dotted key like train.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a raw config dict (before validation)."""
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def config_from_dict(
    data: Mapping[str, Any] | None, overrides: Sequence[str] = (), world_size: int = 1, source: str = "config"
) -> Config:
    """Build and validate a Config; errors are prefixed with ``source`` (the file name)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        merged = apply_overrides(dict(data), overrides)
        cfg = _build(Config, merged, "")
        return validate(cfg, world_size=world_size)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path_or_preset: str | Path, overrides: Sequence[str] = (), world_size: int = 1) -> Config:
    """Read a YAML file (or built-in preset), apply overrides, validate."""
    path = resolve_config_path(path_or_preset)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML ({exc})") from exc
    return config_from_dict(data, overrides, world_size=world_size, source=f"config {path}")
