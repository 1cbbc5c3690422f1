"""The PRDiT network family: registry, building, weight loading, attention backends, stage 3.

Public entry points::

    from prdit.models import build_model, list_models, load_weights
    model = build_model("PRDiT-B/12/4", input_size=128)   # [B,1,S,S,S], t [B] -> [B,2,S,S,S]

Heavy optional pieces (xformers) are imported lazily; nothing here imports a GUI toolkit.
"""

from __future__ import annotations

from .attention import BACKENDS, get_attention_backend, resolve_backend, set_attention_backend
from .highres import HighResConfig, HighResPRDiT, build_highres_model
from .prdit import PRDiT, WeightsMismatchError, load_weights
from .registry import (
    NAME_PATTERN,
    InputSizeError,
    PRDiTConfig,
    UnknownModelError,
    list_models,
    model_config,
    parse_model_name,
)


def build_model(
    name: str,
    input_size: int = 128,
    in_channels: int = 1,
    out_channels: int = 2,
    attention: str | None = None,
) -> PRDiT:
    """Build a freshly initialised PRDiT by registry name (see :func:`list_models`).

    ``attention``: ``auto``/``xformers``/``sdpa``/``math`` for this model, or ``None`` to follow the
    process default (``set_attention_backend`` / ``$PRDIT_ATTENTION``, itself ``auto`` by default).
    Raises :class:`UnknownModelError` or :class:`InputSizeError` (both ``ValueError``) with the
    valid names / sizes in the message.
    """
    cfg = model_config(name, input_size=input_size, in_channels=in_channels, out_channels=out_channels)
    model = PRDiT(cfg)
    if attention is not None:
        model.set_attention_backend(attention)
    return model


def build_model_from_config(config: PRDiTConfig | HighResConfig | dict) -> PRDiT | HighResPRDiT:
    """Rebuild a fresh model from a stored ``model.config`` (or its ``to_dict()``), e.g. from a checkpoint.

    A stage-3 config (it has a ``base`` entry) rebuilds the base (a PRDiT or, for a cascade,
    another stage-3 model) and wraps it. Fields that disagree
    with the registry (a hand-edited or foreign file) are an error rather than silently corrected.
    """
    if isinstance(config, dict) and "base" in config:
        config = HighResConfig.from_dict(config)
    if isinstance(config, HighResConfig):
        base = build_model_from_config(config.base)
        return build_highres_model(
            base,
            input_size=config.input_size,
            patch=config.patch,
            width=config.branch_width,
            alignment=config.alignment,
            noise=config.noise,
            noise_image_var=config.noise_image_var,
            noise_scale=config.noise_scale,
            num_timesteps=config.num_timesteps,
        )
    cfg = PRDiTConfig.from_dict(config) if isinstance(config, dict) else config
    canonical = model_config(cfg.name, cfg.input_size, cfg.in_channels, cfg.out_channels, cfg.attention)
    if canonical != cfg:
        raise ValueError(f"stored model config {cfg} disagrees with the registry entry {canonical}")
    model = PRDiT(canonical)
    if cfg.attention is not None:
        model.set_attention_backend(cfg.attention)
    return model


__all__ = [
    "BACKENDS",
    "NAME_PATTERN",
    "HighResConfig",
    "HighResPRDiT",
    "InputSizeError",
    "PRDiT",
    "PRDiTConfig",
    "UnknownModelError",
    "WeightsMismatchError",
    "build_highres_model",
    "build_model",
    "build_model_from_config",
    "get_attention_backend",
    "list_models",
    "load_weights",
    "model_config",
    "parse_model_name",
    "resolve_backend",
    "set_attention_backend",
]
