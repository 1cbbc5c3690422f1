"""File formats and their safe readers: safetensors (one sniffer, the header, the tensors and our
JSON metadata), ``torch.load(weights_only=True)`` for the reference ``.pt`` and optimiser files,
state-dict prefixes, hashing, and the errors a bad file gets."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

from prdit.checkpoint_dirs import STEP_DIR_RE as STEP_DIR_RE  # re-exported: prdit.cli.info uses it

MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit
#: safetensors dtype codes -> the torch names a .pt shows, so both forms print alike
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}

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


def plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses views and shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def meta_to_str(meta: dict[str, Any]) -> dict[str, str]:
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


# ---------------------------------------------------------------------------------------------- file readers
def looks_like_safetensors(path: Path) -> bool:
    """The safetensors signature: an 8-byte little-endian header length, then a JSON table."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and 0 < struct.unpack("<Q", head[:8])[0] < MAX_HEADER_BYTES and head[8:9] == b"{"


def read_safetensors_header(path: str | Path) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:
    """``({tensor: (dtype, shape)}, string metadata)`` from a safetensors file's header only.

    Raises :class:`CheckpointError` for a file that is not safetensors or is cut short (the header
    promises more bytes than the file has).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"checkpoint {path}: not a safetensors file (only {len(head)} bytes)")
            (n,) = struct.unpack("<Q", head)
            if not 0 < n < MAX_HEADER_BYTES:
                raise CheckpointError(f"checkpoint {path}: not a safetensors file (bad header length)")
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read ({exc})") from exc
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: not a safetensors file (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path}: not a safetensors file (header is not a table)")
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, tuple[str, list[int]]] = {}
    end = 0
    for name, entry in header.items():
        try:
            tensors[name] = (str(entry["dtype"]), [int(s) for s in entry["shape"]])
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"checkpoint {path}: malformed safetensors entry {name!r}") from exc
    size = path.stat().st_size
    if 8 + n + end > size:
        raise CheckpointError(
            f"checkpoint {path}: truncated: the header describes {8 + n + end:,} bytes, the file has {size:,}"
        )
    return tensors, meta


def load_safetensors(
    path: str | Path, dequantize: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and our JSON metadata (``{}`` when the file has none) of a safetensors file.

    ``dequantize=False`` returns int8 tensors and their scales as stored (to rewrite a file's
    metadata without touching its tensors)."""
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
    if dequantize and meta.get("quantization"):
        tensors = dequantize_state(tensors, meta["quantization"], path)
    return tensors, meta


def safe_torch_load(path: Path) -> Any:
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
