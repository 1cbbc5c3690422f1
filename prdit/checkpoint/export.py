"""Shipping a model: a single ``.safetensors`` file with its metadata (export_model), optionally
with its large matrices in int8 with per-output-channel scales (quantize_state / dequantize_state)."""

from __future__ import annotations

from pathlib import Path

import torch

from prdit.atomic import write_bytes_atomic
from prdit.checkpoint.formats import (
    QSCALE_SUFFIX,
    CheckpointError,
    load_safetensors,
    meta_to_str,
    plain_state,
    quantize_state,
    sha256_file,
)
from prdit.checkpoint.training_state import read_meta, resolve_checkpoint_dir
from prdit.checkpoint_dirs import STEP_DIR_RE as STEP_DIR_RE  # re-exported: prdit.cli.info uses it
from prdit.model_info import HIGHRES_META_KEYS
from prdit.sampler_defaults import DISPLAY_META_KEY, DisplayWindow, SamplerDefaults
from prdit.sampler_defaults import META_KEY as SAMPLING_META_KEY


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    use_ema: bool = True,
    dtype: torch.dtype | None = None,
    quantize: str | None = None,
    sampling: SamplerDefaults | None = None,
    sampling_note: str | None = None,
    display: DisplayWindow | None = None,
) -> Path:
    """Write one inference-only ``.safetensors`` (weights + JSON metadata) from a checkpoint of ours.

    ``dtype`` (e.g. ``torch.float16``) halves the file for shipping; loading casts back to the
    model's float32. ``quantize="int8"`` additionally stores the large matrices as int8 with
    per-output-channel scales (:func:`quantize_state`), for the bundled model's size budget.
    ``sampling`` records the sampler settings the model was tuned for and ``display`` the window its
    volumes are meant to be seen in (:mod:`prdit.sampler_defaults`).
    """
    if quantize not in (None, "int8"):
        raise CheckpointError(f"export quantize must be None or 'int8', got {quantize!r}")
    step_dir = resolve_checkpoint_dir(checkpoint)
    meta = read_meta(step_dir)
    weights_file = step_dir / ("ema.safetensors" if use_ema else "model.safetensors")
    if not weights_file.is_file():
        raise CheckpointError(f"checkpoint {step_dir}: has no {weights_file.name}")
    state, _ = load_safetensors(weights_file)
    quantization = None
    if quantize == "int8":  # from the float32 weights, before any float16 rounding
        state, quantization = quantize_state(state)
    if dtype is not None:  # the int8 scales stay float32
        state = {
            k: v.to(dtype) if v.is_floating_point() and not k.endswith(QSCALE_SUFFIX) else v
            for k, v in state.items()
        }
    keep = (
        "model_name",
        "input_size",
        "stage",
        "base_size",
        *HIGHRES_META_KEYS,
        "hu_window",
        "spacing",
        "step",
        "config",
        "software_version",
    )
    out_meta = {k: meta[k] for k in keep if k in meta}
    out_meta.update(weights="ema" if use_ema else "model", source_sha256=sha256_file(weights_file))
    if quantization is not None:
        out_meta["quantization"] = quantization
    return _write_model(out, state, out_meta, sampling, sampling_note, display)


def restamp_model(
    model_file: str | Path,
    out: str | Path,
    sampling: SamplerDefaults | None = None,
    sampling_note: str | None = None,
    display: DisplayWindow | None = None,
) -> Path:
    """A single-file model with new recommendations and the same tensors, bit for bit (a benchmark
    chose better sampler settings; re-exporting would re-quantize). Only ``sampling`` (and
    ``display``) change in the metadata; ``None`` keeps what the file has."""
    state, meta = load_safetensors(model_file, dequantize=False)  # as stored: int8 stays int8
    if not meta.get("model_name") or not meta.get("input_size"):
        raise CheckpointError(f"{model_file}: not a prdit single-file model (no model_name/input_size)")
    return _write_model(out, state, meta, sampling, sampling_note, display)


def _write_model(
    out: str | Path,
    state: dict[str, torch.Tensor],
    meta: dict,
    sampling: SamplerDefaults | None,
    sampling_note: str | None,
    display: DisplayWindow | None,
) -> Path:
    """Stamp the recommendations given (``None`` keeps ``meta``'s) and write the single-file model
    atomically: the one writer of :func:`export_model` and :func:`restamp_model`."""
    if sampling is not None:
        meta[SAMPLING_META_KEY] = sampling.to_meta(sampling_note)
    if display is not None:
        meta[DISPLAY_META_KEY] = display.to_meta()
    from safetensors.torch import save

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, save(plain_state(state), metadata=meta_to_str(meta)), fsync=True)
    return out
