"""Checkpoints: safe to load, atomic to write, self-describing.

Layout of a training run (``runs/<name>/checkpoints/step_0001000/``)::

    model.safetensors   raw weights (+ the metadata below, so the file alone is a usable model)
    ema.safetensors     EMA weights (what sampling uses by default)
    optimizer.pt        AdamW state (tensors and numbers only: loads with weights_only=True)
    rng.pt              RNG states of every rank (torch CPU/CUDA as tensors, numpy, python)
    meta.json           step, stage, model name/size, HU window, spacing, the full config

Why: weights are safetensors (no code runs on load); everything else is either JSON or a
``torch.load(weights_only=True)``-safe file. A checkpoint is written into a temporary folder
beside its final name and renamed in one ``os.replace``, so a crash or Ctrl-C mid-write never
leaves a half checkpoint that a resume would pick up; only complete ``step_*`` folders count.

Three kinds of file load for inference (:func:`load_for_inference`): a checkpoint of ours (a run
folder, its ``checkpoints`` folder or one ``step_*`` folder), a single-file model exported with
:func:`export_model` (``.safetensors`` with JSON metadata) and a reference-layout ``.pt`` (a dict
holding ``model`` and/or ``ema`` state dicts). The ``.pt`` is read with
``torch.load(weights_only=True)`` only: a pickle that tries to build any other object is refused.
"""

from __future__ import annotations

from prdit.checkpoint.export import export_model
from prdit.checkpoint.formats import (
    FORMAT,
    FORMAT_VERSION,
    MODEL_FORMAT,
    QSCALE_SUFFIX,
    CheckpointError,
    dequantize_state,
    load_safetensors,
    looks_like_safetensors,
    quantize_state,
    read_safetensors_header,
    sha256_file,
    strip_prefixes,
)
from prdit.checkpoint.inference import build_model_from_meta, infer_variant, load_for_inference, read_weights
from prdit.checkpoint.training_state import (
    TrainingState,
    capture_rng_state,
    load_training_state,
    read_meta,
    resolve_checkpoint_dir,
    restore_rng_state,
    save_checkpoint,
    step_dir_name,
)
from prdit.checkpoint_dirs import STEP_DIR_RE, list_checkpoints

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FORMAT",
    "QSCALE_SUFFIX",
    "STEP_DIR_RE",
    "CheckpointError",
    "TrainingState",
    "build_model_from_meta",
    "capture_rng_state",
    "dequantize_state",
    "export_model",
    "infer_variant",
    "list_checkpoints",
    "load_for_inference",
    "load_safetensors",
    "load_training_state",
    "looks_like_safetensors",
    "quantize_state",
    "read_meta",
    "read_safetensors_header",
    "read_weights",
    "resolve_checkpoint_dir",
    "restore_rng_state",
    "save_checkpoint",
    "sha256_file",
    "step_dir_name",
    "strip_prefixes",
]
