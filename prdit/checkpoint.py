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

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prdit import __version__
from prdit.atomic import current_umask, write_bytes_atomic
from prdit.checkpoint_dirs import STEP_DIR_RE as STEP_DIR_RE  # re-exported: prdit.cli.info uses it
from prdit.checkpoint_dirs import list_checkpoints
from prdit.data.normalize import HUWindow
from prdit.model_info import HIGHRES_META_KEYS, ModelInfo
from prdit.sampler_defaults import DISPLAY_META_KEY, DisplayWindow, SamplerDefaults
from prdit.sampler_defaults import META_KEY as SAMPLING_META_KEY

FORMAT = "prdit-checkpoint"
MODEL_FORMAT = "prdit-model"
FORMAT_VERSION = 1
SIZE_BY_HIDDEN = {192: "XS", 384: "S", 768: "B", 1024: "L", 1152: "XL"}


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------- small helpers
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (recorded with every generated volume)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses views and shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _meta_to_str(meta: dict[str, Any]) -> dict[str, str]:
    return {"format": MODEL_FORMAT, "format_version": str(FORMAT_VERSION), "prdit": json.dumps(meta)}


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP (``module.``) and torch.compile (``_orig_mod.``) prefixes from every key."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if k.startswith(prefix):
                    k, changed = k[len(prefix) :], True
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Every RNG the training process touches, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------------------------------------- saving
def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    meta: dict[str, Any],
    rng_states: list[dict[str, Any]] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write ``ckpt_root/step_XXXXXXX`` atomically and prune to the newest ``keep_last``.

    ``meta`` must be JSON-serialisable (model name, input size, HU window, spacing, config...).
    """
    from safetensors.torch import save_file

    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        step=int(step),
        software_version=__version__,
        torch_version=torch.__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        str_meta = _meta_to_str({k: v for k, v in meta.items() if k != "format"})
        save_file(_plain_state(model_state), str(tmp / "model.safetensors"), metadata=str_meta)
        if ema_state is not None:
            save_file(_plain_state(ema_state), str(tmp / "ema.safetensors"), metadata=str_meta)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        if rng_states is not None:
            torch.save(rng_states, tmp / "rng.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        if final.exists():  # the same step saved again (e.g. a signal right after a periodic save)
            old = root / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old_step, path in list_checkpoints(root)[:-keep_last]:
            if old_step != step:
                shutil.rmtree(path, ignore_errors=True)
    return final


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A run folder, its ``checkpoints`` folder or a ``step_*`` folder -> the step folder to load."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p}: no such file or folder")
    if p.is_dir() and (p / "meta.json").is_file():
        return p
    for root in (p / "checkpoints", p):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise CheckpointError(f"checkpoint {p}: a folder with no complete step_* checkpoint in it")


def read_meta(step_dir: str | Path) -> dict[str, Any]:
    path = Path(step_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a PRDiT checkpoint (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {meta.get('format_version')} is newer than this "
            f"software understands ({FORMAT_VERSION}); update prdit"
        )
    return meta


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly."""

    path: Path
    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any] | None
    rng: list[dict[str, Any]] | None

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def load_training_state(path: str | Path) -> TrainingState:
    """Load a checkpoint of ours for resuming (all on CPU; the trainer moves what it needs)."""
    step_dir = resolve_checkpoint_dir(path)
    meta = read_meta(step_dir)
    model = load_safetensors(step_dir / "model.safetensors")[0]
    ema_file = step_dir / "ema.safetensors"
    ema = load_safetensors(ema_file)[0] if ema_file.is_file() else None
    opt = _safe_torch_load(step_dir / "optimizer.pt") if (step_dir / "optimizer.pt").is_file() else None
    rng = _safe_torch_load(step_dir / "rng.pt") if (step_dir / "rng.pt").is_file() else None
    return TrainingState(step_dir, meta, model, ema, opt, rng)


# ---------------------------------------------------------------------------------------------- file readers
def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < (100 << 20) and head[8:9] == b"{"


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and our JSON metadata (``{}`` when the file has none) of a safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({exc})") from exc
    meta: dict[str, Any] = {}
    if "prdit" in raw_meta:
        try:
            meta = json.loads(raw_meta["prdit"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"checkpoint {path}: corrupt PRDiT metadata ({exc})") from exc
    if meta.get("quantization"):
        tensors = dequantize_state(tensors, meta["quantization"], path)
    return tensors, meta


# ---------------------------------------------------------------------------------------------- int8 shipping
QSCALE_SUFFIX = ".qscale"
# a stage-3 file's geometry: its residual branch, and the whole nested config (cascades)
INT8_SCHEME = "int8-per-output-channel"


def quantize_state(
    state: dict[str, torch.Tensor], min_numel: int = 65536
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weight-only int8 quantisation of the large matrices, for shipping a small model file.

    Why: the local denoiser's token width is ``p^3`` (1000 for p = 10), so even the smallest
    standard variant has ~16 M parameters, 32 MB in float16. Symmetric per-output-channel int8
    (scale = row abs-max / 127) halves that again with a relative weight error below 0.4 %, far
    under the noise of diffusion sampling; biases, norms and small tensors stay as they are.
    Loading dequantises to float32, so the network itself never sees int8.
    """
    out: dict[str, torch.Tensor] = {}
    names: list[str] = []
    for key, value in state.items():
        if value.is_floating_point() and value.dim() == 2 and value.numel() >= min_numel:
            w = value.detach().float()
            scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[key] = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
            out[key + QSCALE_SUFFIX] = scale
            names.append(key)
        else:
            out[key] = value
    return out, {"scheme": INT8_SCHEME, "tensors": names}


def dequantize_state(
    tensors: dict[str, torch.Tensor], quantization: dict[str, Any], source: str | Path
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_state` (float32 weights back from int8 + per-row scales)."""
    if not isinstance(quantization, dict) or quantization.get("scheme") != INT8_SCHEME:
        raise CheckpointError(
            f"checkpoint {source}: unsupported weight quantisation {quantization!r}; "
            f"this version reads only {INT8_SCHEME!r}"
        )
    out = {k: v for k, v in tensors.items() if not k.endswith(QSCALE_SUFFIX)}
    for key in quantization.get("tensors", []):
        q, scale = tensors.get(key), tensors.get(key + QSCALE_SUFFIX)
        if q is None or scale is None or q.dtype != torch.int8 or scale.shape != (q.shape[0],):
            raise CheckpointError(f"checkpoint {source}: quantised tensor {key!r} is missing or malformed")
        out[key] = q.float() * scale.float()[:, None]
    return out


def _safe_torch_load(path: Path) -> Any:
    """``torch.load`` that can only build tensors and plain containers (never arbitrary objects).

    ``argparse.Namespace`` is additionally allowed because reference checkpoints store their
    command-line ``args`` that way; building one only fills a ``__dict__`` (no code runs).
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln or "GLOBAL" in ln]
        first = lines[0] if lines else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path}: refused to load: the file contains Python objects other than tensors "
            f"and plain containers, so it is not a weights checkpoint (loading it could run code). "
            f"Detail: {first}"
        ) from None
    except Exception as exc:  # a corrupt or foreign file fails in many ways inside the unpickler
        raise CheckpointError(
            f"checkpoint {path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


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
    if _is_safetensors(source):
        state, meta = load_safetensors(source)
        if not meta:
            try:
                name, size = infer_variant(state)
            except CheckpointError as exc:
                raise CheckpointError(f"checkpoint {source}: {exc}") from None
            meta = {"format": "reference", "model_name": name, "input_size": size, "stage": 1}
        return state, meta, source, str(meta.get("weights", "model"))
    obj = _safe_torch_load(source)
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
    if sampling is not None:
        out_meta[SAMPLING_META_KEY] = sampling.to_meta(sampling_note)
    if display is not None:
        out_meta[DISPLAY_META_KEY] = display.to_meta()
    from safetensors.torch import save

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, save(_plain_state(state), metadata=_meta_to_str(out_meta)), fsync=True)
    return out
