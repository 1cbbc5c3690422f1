"""What a model file is: the one descriptor the CLI, the studio, the metrics and the sidecars share.

Built from a checkpoint's metadata, either while loading it (:func:`prdit.checkpoint.load_for_inference`)
or without the weights (:meth:`ModelInfo.from_meta`: the Generate panel describes a file before it
loads). Everything derived from the metadata lives here once: the variant's labels, the diffusion
settings it was trained with, the sampler and display window it recommends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from prdit.data.normalize import HUWindow
from prdit.sampler_defaults import DISPLAY_META_KEY, DisplayWindow, SamplerDefaults
from prdit.sampler_defaults import META_KEY as SAMPLING_META_KEY

#: Metadata keys that describe a stage-3 model's geometry (its branch and base).
HIGHRES_META_KEYS = ("highres_patch", "highres_width", "model_config")
#: Metadata kept with the descriptor (``meta``): the training config and the recommendations.
KEPT_META_KEYS = ("config", *HIGHRES_META_KEYS, SAMPLING_META_KEY, DISPLAY_META_KEY)


@dataclass(frozen=True)
class ModelInfo:
    """A model: its variant and size, how its outputs map to HU and mm, where it came from."""

    model_name: str
    input_size: int
    hu_window: HUWindow = field(default_factory=HUWindow)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    sha256: str = ""
    step: int | None = None
    source: str = ""  # the file or folder it was read from ("" for a model built in memory)
    weights: str = "ema"  # "ema" or "model"
    stage: int = 1
    base_size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # KEPT_META_KEYS that the file records

    # ------------------------------------------------------------------ building
    @classmethod
    def from_meta(
        cls,
        meta: Mapping[str, Any],
        source: str | Path = "",
        *,
        sha256: str = "",
        weights: str = "ema",
        spacing: tuple[float, float, float] | None = None,
        hu_window: HUWindow | None = None,
    ) -> ModelInfo:
        """The descriptor of a checkpoint's metadata (a ``ValueError`` names ``source`` when the
        model name or input size is missing)."""
        name, size = meta.get("model_name"), meta.get("input_size")
        if not name or not size:
            raise ValueError(
                f"checkpoint {source or '<in memory>'} does not record model_name and input_size"
            )
        raw = spacing or meta.get("spacing") or (1.0, 1.0, 1.0)
        spacing3 = tuple(float(s) for s in np.broadcast_to(np.asarray(raw, dtype=float).reshape(-1), (3,)))
        return cls(
            model_name=str(name),
            input_size=int(size),
            hu_window=hu_window or HUWindow.from_dict(meta.get("hu_window")),
            spacing=spacing3,  # type: ignore[arg-type]
            sha256=sha256 or str(meta.get("sha256") or ""),
            step=int(meta["step"]) if meta.get("step") is not None else None,
            source=str(source),
            weights=weights,
            stage=int(meta.get("stage") or 1),
            base_size=int(meta["base_size"]) if meta.get("base_size") else None,
            meta={k: meta[k] for k in KEPT_META_KEYS if k in meta},
        )

    def with_source(self, source: str | Path) -> ModelInfo:
        return replace(self, source=str(source))

    # ------------------------------------------------------------------ derived
    @property
    def file_name(self) -> str:
        """The file's name without its folders (what sidecars and titles show: no user paths)."""
        return Path(self.source).name if self.source else ""

    @property
    def display_name(self) -> str:
        if self.stage == 3 and self.base_size:
            return f"{self.model_name}@{self.base_size}->{self.input_size}"
        return self.model_name

    @property
    def size_label(self) -> str:
        """``PRDiT-B/12/4`` -> ``B``: the family's width/heads letter."""
        try:
            return self.model_name.split("-", 1)[1].split("/", 1)[0]
        except IndexError:
            return "?"

    @property
    def variant_label(self) -> str:
        """Human summary: "stage 1: local patch denoiser" or "stage 2: local denoiser + 4 DiT blocks"."""
        try:
            depth = int(self.model_name.rsplit("/", 1)[1])
        except (IndexError, ValueError):
            return "unknown variant"
        if self.stage == 3:
            return f"stage 3: high-resolution residual on a frozen {self.model_name} backbone"
        if depth == 0:
            return "stage 1: local patch denoiser"
        return f"stage 2: local denoiser + {depth} DiT block{'s' if depth != 1 else ''}"

    @property
    def config(self) -> dict[str, Any]:
        """The training config the file records ({} when none)."""
        config = self.meta.get("config")
        return dict(config) if isinstance(config, Mapping) else {}

    @property
    def diffusion(self) -> dict[str, Any]:
        """The training config's ``diffusion`` section (num_timesteps, noise_scale), or {}."""
        section = self.config.get("diffusion")
        return dict(section) if isinstance(section, Mapping) else {}

    @property
    def sampler_defaults(self) -> SamplerDefaults:
        """The sampler settings the file recommends, or the paper's (hot, k = 2); a malformed
        recommendation raises ``ValueError`` naming the file."""
        return SamplerDefaults.from_meta(self.meta, source=f"checkpoint {self.source or '<in memory>'}")

    @property
    def display_window(self) -> DisplayWindow | None:
        """The display window the file recommends (None: the viewer decides)."""
        return DisplayWindow.from_meta(self.meta, source=f"checkpoint {self.source or '<in memory>'}")
