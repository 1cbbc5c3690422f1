"""The mapping between HU and the model's [-1, 1] range, recorded with every dataset and model.

Default: a fixed HU window mapped linearly to [-1, 1], so a generated volume maps back to HU
exactly. The paper's per-volume min-max (LIDC recipe) is not HU-recoverable; datasets that use it
record ``mode="minmax"`` and outputs are then mapped back through the nominal window only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class HUWindow:
    """Linear map ``[low, high] HU -> [-1, 1]`` (values outside are clipped)."""

    low: float = -1000.0
    high: float = 1000.0
    mode: str = "window"  # "window" (HU-recoverable) or "minmax" (per-volume, paper's LIDC option)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ValueError(f"HU window needs low < high, got low={self.low}, high={self.high}")
        if self.mode not in ("window", "minmax"):
            raise ValueError(f"HU window mode must be 'window' or 'minmax', got {self.mode!r}")

    def to_unit(self, hu):
        """HU (numpy array or torch tensor) -> model range [-1, 1], clipped."""
        scaled = (hu - self.low) / (self.high - self.low)
        scaled = scaled.clip(0.0, 1.0)
        return scaled * 2.0 - 1.0

    def to_hu(self, x):
        """Model range [-1, 1] (numpy array or torch tensor) -> HU; values outside are clipped first."""
        x = x.clip(-1.0, 1.0)
        return (x + 1.0) * 0.5 * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HUWindow:
        if not data:
            return cls()
        unknown = set(data) - {"low", "high", "mode"}
        if unknown:
            raise ValueError(f"unknown HU window keys {sorted(unknown)}; allowed: low, high, mode")
        return cls(
            float(data.get("low", -1000.0)), float(data.get("high", 1000.0)), str(data.get("mode", "window"))
        )


DEFAULT_WINDOW = HUWindow()
