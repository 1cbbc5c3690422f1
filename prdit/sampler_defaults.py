"""What a model file recommends to the front ends: the sampler settings it was tuned for and the
display window its volumes read best in, so every front end starts from them.

The paper's best hot-sampler multiplier (k = 2) was tuned for PRDiT-B at 128^3 on LIDC; a small,
briefly trained model can prefer another k (``benchmarks/tune_sampler.py`` measures it on
validation data). ``prdit export-model --recommend-k K --recommend-steps N`` records the choice in
the exported file's metadata under ``"sampling"``; ``prdit sample``, the studio's Generate panel
and the scripted mode then use it unless the user sets their own. Files without the key get the
paper's settings, so nothing changes for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prdit.sampler_names import SAMPLERS

PAPER_K = 2
#: Steps for a model that recommends none (hot, k = 2): 21 steps = 20 network evaluations, the
#: cheapest setting that reached the 250-step row's FID, KID, HU W1 and anatomy on
#: benchmarks/sampler_quality.py (docs/sampling.md); the paper's 250 took 12x longer and scored no
#: better on the bundled models.
DEFAULT_STEPS = 21
META_KEY = "sampling"
DISPLAY_META_KEY = "display"


@dataclass(frozen=True)
class SamplerDefaults:
    """Sampler, hot-sampler multiplier and step count to start from.

    ``steps`` is ``None`` when the model does not recommend a count (front ends keep their own
    default). ``recommended`` tells whether the values came from the model file or are the
    paper's fallback.
    """

    sampler: str = "hot"
    k: int = PAPER_K
    steps: int | None = None
    recommended: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, source: str = "model") -> SamplerDefaults:
        """The recommendation in a model's metadata, or the paper's settings when it has none.

        A malformed entry raises ``ValueError`` naming ``source`` and the field, rather than
        silently sampling with settings nobody chose.
        """
        entry = (meta or {}).get(META_KEY)
        if entry is None:
            return cls()
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: metadata '{META_KEY}' must be a mapping, got {type(entry).__name__}")
        unknown = set(entry) - {"sampler", "k", "steps", "note"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"{source}: metadata '{META_KEY}' has unknown field(s) {names}")
        try:
            return cls(
                sampler=entry.get("sampler", "hot"),
                k=entry.get("k", PAPER_K),
                steps=entry.get("steps"),
                recommended=True,
            )
        except ValueError as exc:
            raise ValueError(f"{source}: metadata '{META_KEY}': {exc}") from None

    def to_meta(self, note: str | None = None) -> dict[str, Any]:
        """The ``"sampling"`` metadata entry for an exported model."""
        out: dict[str, Any] = {"sampler": self.sampler, "k": self.k}
        if self.steps is not None:
            out["steps"] = self.steps
        if note:
            out["note"] = note
        return out

    def describe(self, origin: bool = True) -> str:
        """For ``prdit info`` and the studio: "hot, k = 4, 50 steps (recommended by the model)"."""
        text = f"{self.sampler}, k = {self.k}" if self.sampler == "hot" else self.sampler
        if self.steps is not None:
            text += f", {self.steps} steps"
        if not origin:
            return text
        return text + (" (recommended by the model)" if self.recommended else " (paper default)")


@dataclass(frozen=True)
class DisplayWindow:
    """A window (width, level in HU) a model's volumes are meant to be looked at in."""

    width: float
    level: float

    def __post_init__(self) -> None:
        for name in ("width", "level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValueError(f"display window {name} must be a number, got {value!r}")
        if not 1 <= self.width <= 100_000:
            raise ValueError(f"display window width must be between 1 and 100000 HU, got {self.width!r}")

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, source: str = "model") -> DisplayWindow | None:
        """The recommendation in a model's metadata (None when it has none); a malformed entry
        raises ``ValueError`` naming ``source``."""
        entry = (meta or {}).get(DISPLAY_META_KEY)
        if entry is None:
            return None
        if not isinstance(entry, Mapping) or set(entry) - {"window_width", "window_level", "note"}:
            raise ValueError(
                f"{source}: metadata '{DISPLAY_META_KEY}' must be a mapping of window_width, window_level"
            )
        try:
            return cls(entry.get("window_width"), entry.get("window_level"))
        except ValueError as exc:
            raise ValueError(f"{source}: metadata '{DISPLAY_META_KEY}': {exc}") from None

    def to_meta(self) -> dict[str, Any]:
        return {"window_width": float(self.width), "window_level": float(self.level)}

    def describe(self) -> str:
        return f"W {self.width:.0f} / L {self.level:.0f}"
