"""A ready-to-sample model from any checkpoint form (a run folder, a ``step_*`` folder, an exported
file, a reference ``.pt``): picking the weights, building the network from the metadata or from
the tensor shapes, and the :class:`~prdit.model_info.ModelInfo` that describes it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prdit.checkpoint.formats import (
    SIZE_BY_HIDDEN,
    CheckpointError,
    load_safetensors,
    looks_like_safetensors,
    safe_torch_load,
    sha256_file,
    strip_prefixes,
)
from prdit.checkpoint.training_state import read_meta, resolve_checkpoint_dir
from prdit.checkpoint_dirs import STEP_DIR_RE as STEP_DIR_RE  # re-exported: prdit.cli.info uses it
from prdit.data.normalize import HUWindow
from prdit.model_info import ModelInfo


# ---------------------------------------------------------------------------------------------- inference
def build_model_from_meta(meta: dict[str, Any], attention: str | None = None) -> nn.Module:
    """A fresh (untrained) network of the variant and size that ``meta`` describes.

    Stage 3 (``meta["stage"] == 3``): the whole stored geometry (``model_config``, which nests
    the bases of a cascade); files written before it existed: the base variant at ``base_size``
    wrapped, frozen, by a residual branch of ``highres_patch``/``highres_width`` at ``input_size``.
    """
    from prdit.models import build_highres_model, build_model

    if attention == "auto":
        attention = None  # follow the process default ($PRDIT_ATTENTION, else auto)
    if int(meta.get("stage", 1)) == 3 and meta.get("model_config"):
        from prdit.models import build_model_from_config

        model = build_model_from_config(meta["model_config"])
        if attention is not None:
            model.set_attention_backend(attention)
        return model
    if int(meta.get("stage", 1)) == 3:
        base = build_model(meta["model_name"], input_size=int(meta["base_size"]), attention=attention)
        width = meta.get("highres_width")
        return build_highres_model(
            base,
            input_size=int(meta["input_size"]),
            patch=int(meta.get("highres_patch", 12)),
            width=int(width) if width is not None else None,
        )
    return build_model(meta["model_name"], input_size=int(meta["input_size"]), attention=attention)


def infer_variant(state: dict[str, torch.Tensor]) -> tuple[str, int | None]:
    """Variant name (and input size when a positional buffer reveals it) from tensor shapes.

    Reads the reference layout: ``t_embedder.mlp.0`` gives the hidden width (-> size),
    ``t_embedder.coarse_head`` the token width ``p^3`` (-> patch), the final coarse Linear
    ``s^3 * 2`` (-> stride), the ``fine.blocks.N`` the depth.
    """
    try:
        hidden = int(state["t_embedder.mlp.0.weight"].shape[0])
        token = int(state["t_embedder.coarse_head.weight"].shape[0])
        out = int(state["coarse.mlp_denoise.linear_final.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"no {exc.args[0]} tensor: not a PRDiT state dict") from None
    size = SIZE_BY_HIDDEN.get(hidden)
    patch = round(token ** (1 / 3))
    stride = round((out / 2) ** (1 / 3))
    if size is None or patch**3 != token or 2 * stride**3 != out:
        raise CheckpointError(
            f"tensor shapes (hidden {hidden}, token width {token}, output {out}) match no PRDiT variant"
        )
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^fine\.blocks\.(\d+)\.", k))}
    depth = len(blocks)
    name = f"PRDiT-{size}/{patch}/{depth}"
    input_size = None
    for k, v in state.items():
        if k.endswith("pos_embed") and v.ndim >= 2:
            n = int(v.shape[-2])
            g = round(n ** (1 / 3))
            if g**3 == n:
                input_size = g * stride
    return name, input_size


MAX_INPUT_SIZE = 1024  # voxels per edge: 1024^3 is 4 GiB per float32 volume, beyond any PRDiT model


def check_claims(meta: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> None:
    """What the metadata claims against sanity and against what the file holds, before any large
    allocation: an input size within bounds, a finite positive spacing, finite weights (a NaN
    weight would make every sample NaN, silently)."""
    size = meta.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int | float) or not 8 <= int(size) <= MAX_INPUT_SIZE:
        raise CheckpointError(
            f"checkpoint {source}: its metadata declares input_size {size!r}; expected a whole number "
            f"from 8 to {MAX_INPUT_SIZE} (a volume edge in voxels)"
        )
    spacing = meta.get("spacing")
    if spacing is not None:
        values = np.atleast_1d(np.asarray(spacing, dtype=float)) if _numeric(spacing) else None
        if (
            values is None
            or values.size not in (1, 3)
            or not np.all(np.isfinite(values))
            or np.any(values <= 0)
        ):
            raise CheckpointError(
                f"checkpoint {source}: its metadata declares spacing {spacing!r}; expected 1 or 3 finite "
                "positive numbers (mm)"
            )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"checkpoint {source}: weight {name} holds {bad} NaN or infinite value(s); the model "
                "would generate NaN volumes (was it saved from a diverged run?)"
            )


def _numeric(value: Any) -> bool:
    try:
        np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load (names and shapes); the engine's error lists every key that does not fit."""
    from prdit.models import load_weights

    try:
        load_weights(model, state)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {source}: {exc}") from None


def _pick_state(obj: Any, use_ema: bool, source: Path) -> tuple[dict[str, torch.Tensor], str]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {source}: holds a {type(obj).__name__}, not a dict of weights")
    if "ema" in obj or "model" in obj:
        order = ("ema", "model") if use_ema else ("model", "ema")
        for key in order:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
        else:
            raise CheckpointError(f"checkpoint {source}: 'model'/'ema' entries are not state dicts")
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, key = obj, "model"
    else:
        raise CheckpointError(
            f"checkpoint {source}: a dict with keys {sorted(map(str, obj))[:8]} but no 'model' or 'ema' "
            f"state dict"
        )
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {source}: the '{key}' entry holds non-tensor values")
    return strip_prefixes(state), key


def read_weights(
    path: str | Path, use_ema: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path, str]:
    """(state dict, metadata, weights file, "ema"/"model") from any supported checkpoint form.

    Used to start stage 2/3 from a previous model as well as for inference. Reference ``.pt``
    files get ``meta = {"format": "reference", "model_name": <inferred>, "input_size": <or None>}``.
    """
    source = Path(path)
    if not source.exists():
        raise CheckpointError(f"checkpoint {source}: no such file or folder")
    if source.is_dir():
        step_dir = resolve_checkpoint_dir(source)
        meta = read_meta(step_dir)
        weights_file = step_dir / ("ema.safetensors" if use_ema else "model.safetensors")
        kind = "ema" if use_ema else "model"
        if not weights_file.is_file():
            weights_file, kind = step_dir / "model.safetensors", "model"
        state, _ = load_safetensors(weights_file)
        return state, meta, weights_file, kind
    if looks_like_safetensors(source):
        state, meta = load_safetensors(source)
        if not meta:
            try:
                name, size = infer_variant(state)
            except CheckpointError as exc:
                raise CheckpointError(f"checkpoint {source}: {exc}") from None
            meta = {"format": "reference", "model_name": name, "input_size": size, "stage": 1}
        return state, meta, source, str(meta.get("weights", "model"))
    obj = safe_torch_load(source)
    state, kind = _pick_state(obj, use_ema, source)
    try:
        name, size = infer_variant(state)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {source}: {exc}") from None
    return state, {"format": "reference", "model_name": name, "input_size": size, "stage": 1}, source, kind


def load_for_inference(
    path: str | Path,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
    *,
    model_name: str | None = None,
    input_size: int | None = None,
    hu_window: HUWindow | None = None,
    spacing: tuple[float, float, float] | None = None,
    attention: str | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """A ready-to-sample model (eval mode, on ``device``) and what it is.

    ``model_name``/``input_size``/``hu_window``/``spacing`` are needed only for reference ``.pt``
    files, which carry no metadata (the variant is inferred from tensor shapes when not given);
    for our own files they must agree with the recorded values.
    """
    source = Path(path)
    if not source.exists():
        raise CheckpointError(f"checkpoint {source}: no such file or folder")
    state, meta, weights_file, kind = read_weights(source, use_ema=use_ema)
    meta = dict(meta)
    if meta.get("format") == "reference":
        if model_name is not None and model_name != meta["model_name"]:
            raise CheckpointError(
                f"checkpoint {source}: holds weights of {meta['model_name']}, not the requested {model_name}"
            )
        meta["input_size"] = input_size or meta.get("input_size")
        if meta["input_size"] is None:
            raise CheckpointError(
                f"checkpoint {source}: a reference-layout file of {meta['model_name']} does not record the "
                f"volume size it was trained for; pass it explicitly (e.g. --input-size 128)"
            )
    if not meta.get("model_name") or not meta.get("input_size"):
        raise CheckpointError(
            f"checkpoint {source}: no model name/input size recorded; pass them explicitly "
            f"(e.g. --model PRDiT-B/12/4 --input-size 128)"
        )
    if model_name is not None and model_name != meta["model_name"]:
        raise CheckpointError(
            f"checkpoint {source}: holds {meta['model_name']}, not the requested {model_name}"
        )
    if input_size is not None and int(input_size) != int(meta["input_size"]):
        raise CheckpointError(
            f"checkpoint {source}: trained at {meta['input_size']}^3, not the requested {input_size}^3"
        )
    check_claims(meta, state, source)  # before building anything of the claimed size
    try:
        model = build_model_from_meta(meta, attention=attention)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {source}: cannot build {meta.get('model_name')!r} ({exc})"
        ) from exc
    _load_into(model, state, source)
    model.to(device).eval()
    info = ModelInfo.from_meta(
        meta,
        source,
        sha256=sha256_file(weights_file),
        weights=str(kind),
        spacing=tuple(spacing) if spacing else None,
        hu_window=hu_window,
    )
    try:
        _ = info.sampler_defaults  # a malformed recommendation fails here, naming the file
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    return model, info
