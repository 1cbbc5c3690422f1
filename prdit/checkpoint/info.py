"""What a checkpoint holds, read without building the network (``prdit info``).

Why a separate reader: :func:`prdit.checkpoint.load_for_inference` builds the model and loads every
weight, which for a large variant costs gigabytes and tens of seconds just to print a name. Here
the safetensors *header* (a JSON table of tensor names, dtypes and shapes at the start of the
file) and ``meta.json`` are enough for every fact shown: model name, input size, stage, step, HU
window, spacing, parameter count, dtypes, quantisation. Only a reference-layout ``.pt`` (a pickle,
which has no header) is loaded, tensors only and with ``weights_only=True``, through the same
:func:`prdit.checkpoint.read_weights` inference uses.

Every form :func:`~prdit.checkpoint.load_for_inference` accepts is described: a training run
folder, its ``checkpoints`` folder, a ``step_*`` folder, an exported ``.safetensors`` model (with
or without int8 quantisation), a bare safetensors state dict and a reference ``.pt``. The weights
file, its SHA-256 and its size are those inference would use (EMA weights when present), so the
hash equals the ``checkpoint_sha256`` that ``prdit sample`` records with each volume.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prdit.checkpoint.export import QSCALE_SUFFIX
from prdit.checkpoint.formats import (
    SAFETENSORS_DTYPES,
    CheckpointError,
    looks_like_safetensors,
    read_safetensors_header,
    sha256_file,
)
from prdit.checkpoint.training_state import read_meta, resolve_checkpoint_dir
from prdit.checkpoint_dirs import list_checkpoints
from prdit.data.normalize import HUWindow
from prdit.sampler_defaults import DisplayWindow, SamplerDefaults


@dataclass
class TensorStats:
    """Counts over a state dict (int8 scales of a quantised file are not parameters)."""

    tensors: int = 0
    parameters: int = 0
    by_dtype: dict[str, int] = field(default_factory=dict)  # dtype -> parameters stored in it

    def add(self, name: str, dtype: str, shape: list[int] | tuple[int, ...]) -> None:
        if name.endswith(QSCALE_SUFFIX):
            return
        n = math.prod(int(s) for s in shape)
        self.tensors += 1
        self.parameters += n
        self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + n


@dataclass
class CheckpointSummary:
    """The facts ``prdit info`` prints for a checkpoint; ``None`` where the file does not say."""

    source: Path
    form: str  # "training run", "checkpoints folder", "step checkpoint", "exported model", ...
    weights_file: Path
    weights: str  # "ema" or "model"
    model_name: str
    input_size: int | None
    stage: int
    sha256: str
    file_size: int
    stats: TensorStats
    step: int | None = None
    base_size: int | None = None
    hu_window: HUWindow | None = None
    spacing: tuple[float, float, float] | None = None
    quantization: dict[str, Any] | None = None
    steps_available: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _stats_from_header(tensors: dict[str, tuple[str, list[int]]]) -> TensorStats:
    stats = TensorStats()
    for name, (dtype, shape) in tensors.items():
        stats.add(name, SAFETENSORS_DTYPES.get(dtype, dtype.lower()), shape)
    return stats


def _infer_from_shapes(tensors: dict[str, tuple[str, list[int]]], source: Path) -> tuple[str, int | None]:
    """The variant of a metadata-less state dict, from shapes alone (meta tensors: no memory)."""
    import torch

    from prdit.checkpoint.inference import infer_variant

    shaped = {k: torch.empty(shape, device="meta") for k, (_dtype, shape) in tensors.items()}
    try:
        return infer_variant(shaped)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {source}: {exc}") from None


# ---------------------------------------------------------------------------------------------- summary
def _window(meta: dict[str, Any]) -> HUWindow | None:
    data = meta.get("hu_window")
    return HUWindow.from_dict(data) if isinstance(data, dict) else None


def _spacing(meta: dict[str, Any]) -> tuple[float, float, float] | None:
    s = meta.get("spacing")
    return tuple(float(v) for v in s) if isinstance(s, list | tuple) and len(s) == 3 else None


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def summarize_checkpoint(path: str | Path, use_ema: bool = True) -> CheckpointSummary:
    """Describe any checkpoint form that :func:`prdit.checkpoint.load_for_inference` accepts.

    Raises :class:`CheckpointError` (naming the file and the problem) for anything else.
    """
    source = Path(path)
    if not source.exists():
        raise CheckpointError(f"checkpoint {source}: no such file or folder")
    steps: list[int] = []
    if source.is_dir():
        step_dir = resolve_checkpoint_dir(source)
        if step_dir == source:
            form = "step checkpoint"
        else:
            root = step_dir.parent
            steps = [s for s, _ in list_checkpoints(root)]
            form = "training run" if root == source / "checkpoints" else "checkpoints folder"
        meta = read_meta(step_dir)
        weights_file, kind = step_dir / "ema.safetensors", "ema"
        if not use_ema or not weights_file.is_file():
            weights_file, kind = step_dir / "model.safetensors", "model"
        tensors, _ = read_safetensors_header(weights_file)
        stats = _stats_from_header(tensors)
    elif looks_like_safetensors(source):
        tensors, raw_meta = read_safetensors_header(source)
        stats = _stats_from_header(tensors)
        weights_file = source
        if "prdit" in raw_meta:
            try:
                meta = json.loads(raw_meta["prdit"])
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"checkpoint {source}: corrupt PRDiT metadata ({exc})") from exc
            form = "exported model"
            kind = str(meta.get("weights", "model"))
        else:
            name, size = _infer_from_shapes(tensors, source)
            meta = {"model_name": name, "input_size": size, "stage": 1}
            form, kind = "safetensors state dict (no metadata)", "model"
    else:  # a pickle has no header: load its tensors (weights_only) like inference does
        from prdit.checkpoint import read_weights

        state, meta, weights_file, kind = read_weights(source, use_ema=use_ema)
        stats = TensorStats()
        for name, tensor in state.items():
            stats.add(name, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))
        form = "reference .pt"
    if not meta.get("model_name"):
        raise CheckpointError(f"checkpoint {source}: records no model name")
    return CheckpointSummary(
        source=source,
        form=form,
        weights_file=weights_file,
        weights=kind,
        model_name=str(meta["model_name"]),
        input_size=_int_or_none(meta.get("input_size")),
        stage=int(meta.get("stage") or 1),
        sha256=sha256_file(weights_file),
        file_size=weights_file.stat().st_size,
        stats=stats,
        step=_int_or_none(meta.get("step")),
        base_size=_int_or_none(meta.get("base_size")),
        hu_window=_window(meta),
        spacing=_spacing(meta),
        quantization=meta.get("quantization") or None,
        steps_available=steps,
        meta=meta,
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


STAGES = {1: "local denoiser", 2: "global refiner", 3: "high resolution"}


def _branch_line(config: Any) -> str | None:
    """How a stage-3 model joins its frozen base (from the stored model config), or None."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    if not isinstance(config, dict) or "base" not in config:
        return None
    width = config.get("branch_width") or "p^3"
    noise = config.get("noise", "nearest")
    if noise == "implied":
        noise = f"implied (image error variance {config.get('noise_image_var')})"
    elif noise == "fed":
        noise = "on the fed voxels only"
    return (
        f"patch {config.get('patch')}, stride {config.get('stride')}, width {width}; "
        f"base image {config.get('alignment', 'block')}-aligned, noise {noise}"
    )


def format_summary(s: CheckpointSummary) -> list[str]:
    """Lines for the terminal (the first names the path and form; the rest are indented facts)."""
    head = f"{s.source}: {s.form}"
    if s.steps_available:
        shown = ", ".join(str(v) for v in s.steps_available[-6:])
        more = "..., " if len(s.steps_available) > 6 else ""
        head += f" with {len(s.steps_available)} checkpoint(s) (steps {more}{shown}); the newest:"
    lines = [head]

    def add(key: str, value: str) -> None:
        lines.append(f"  {key + ':':<16} {value}")

    if s.weights_file != s.source:
        add("weights file", str(s.weights_file))
    add("model", f"{s.model_name} (stage {s.stage}: {STAGES.get(s.stage, '?')})")
    if s.input_size:
        size = f"{s.input_size}^3 voxels"
        if s.stage == 3 and s.base_size:
            size += f" (base model at {s.base_size}^3)"
        add("input size", size)
        branch = _branch_line(s.meta.get("model_config"))
        if branch:
            add("stage-3 branch", branch)
    else:
        add("input size", "not recorded: pass it to prdit sample (e.g. --input-size 128)")
    add("step", f"{s.step:,}" if s.step is not None else "not recorded")
    if s.hu_window is not None:
        w = s.hu_window
        add("HU window", f"[{w.low:g}, {w.high:g}] ({w.mode})")
    else:
        add("HU window", "not recorded (sampling assumes [-1000, 1000])")
    if s.spacing is not None:
        add("spacing (mm)", ", ".join(f"{v:.4g}" for v in s.spacing))
    else:
        add("spacing (mm)", "not recorded (1 mm assumed)")
    add("weights", "EMA" if s.weights == "ema" else "raw (no EMA)")
    dtypes = ", ".join(f"{d} {n / s.stats.parameters:.0%}" if len(s.stats.by_dtype) > 1 else d
                       for d, n in sorted(s.stats.by_dtype.items(), key=lambda kv: -kv[1]))  # fmt: skip
    add("parameters", f"{s.stats.parameters:,} in {s.stats.tensors} tensors ({dtypes or 'none'})")
    if s.quantization:
        q = s.quantization
        n = len(q.get("tensors", []))
        add("quantisation", f"{q.get('scheme', '?')} on {n} tensors (dequantised to float32 on load)")
    else:
        add("quantisation", "none")
    try:
        sampling = SamplerDefaults.from_meta(s.meta, source=str(s.source)).describe()
    except ValueError as exc:
        sampling = f"unreadable recommendation ({exc})"
    add("sampling", sampling)
    try:
        display = DisplayWindow.from_meta(s.meta, source=str(s.source))
        add(
            "display window",
            display.describe() + " (recommended by the model)" if display else "not recorded",
        )
    except ValueError as exc:
        add("display window", f"unreadable recommendation ({exc})")
    add("file size", f"{_mib(s.file_size)} ({s.file_size:,} bytes)")
    add("sha256", s.sha256)
    if s.meta.get("source_sha256"):
        add("exported from", f"weights with sha256 {s.meta['source_sha256']}")
    for key, label in (("created", "created"), ("software_version", "prdit version")):
        if s.meta.get(key):
            add(label, str(s.meta[key]))
    config = s.meta.get("config")
    if isinstance(config, dict) and config.get("name"):
        add("config", str(config["name"]))
    return lines
