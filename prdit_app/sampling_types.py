"""What a Generate run is asked to do and what it hands the GUI: the request, one step in HU, the
result. Plain data, shared by the worker, its step source and the panels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prdit.model_info import ModelInfo  # the engine's model descriptor, re-exported for the app
from prdit.sampler_names import SAMPLERS
from prdit.volume import Volume

#: what the panels' sampler choosers say (in the engine's order, prdit.sampler_names.SAMPLERS)
SAMPLER_LABELS = {
    "hot": "hot (predictor-corrector)",
    "cold": "cold (deterministic)",
    "v2m": "v2m (multistep, few steps)",
    "v2m-sde": "v2m-sde (multistep, stochastic)",
}
assert tuple(SAMPLER_LABELS) == SAMPLERS


def fill_sampler_combo(combo) -> None:
    """The samplers, labelled, with their engine names as item data.

    The closed combo sizes to a short text (its popup still shows the whole label), so the panels
    that hold it stay usable in a ~400 px dock.
    """
    for name, label in SAMPLER_LABELS.items():
        combo.addItem(label, name)
    combo.setSizeAdjustPolicy(combo.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(16)


# --------------------------------------------------------------------------- data passed to the GUI
@dataclass(frozen=True)
class SampleRequest:
    """Everything one Generate run needs. Either ``checkpoint`` or ``model`` (+``model_info``)."""

    checkpoint: Path | None = None
    sampler: str = "hot"
    steps: int = 50
    k: int = 2
    seed: int = 0
    num_samples: int = 1
    device: str = "auto"
    record_xt: bool = True
    torch_threads: int | None = None
    precision: str | None = None  # prdit.precision (None: PRDIT_PRECISION, else auto: measured)
    model: Any = None  # an nn.Module already in memory (tests, the benchmark)
    model_info: ModelInfo | None = None

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.sampler == "hot" and self.k < 1:
            raise ValueError(f"the hot sampler needs k >= 1, got {self.k}")
        if self.num_samples < 1:
            raise ValueError(f"number of samples must be at least 1, got {self.num_samples}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2^63), got {self.seed}")
        if self.model is None and self.checkpoint is None:
            raise ValueError("no model chosen: open a checkpoint first")
        if self.model is not None and self.model_info is None:
            raise ValueError("an in-memory model needs model_info")

    def seeds(self) -> list[int]:
        """One seed per sample (seed, seed+1, ...), as ``prdit sample`` numbers them."""
        return [self.seed + i for i in range(self.num_samples)]


@dataclass(frozen=True)
class StepUpdate:
    """One step, already in HU, as the GUI receives it."""

    index: int  # 0-based
    total: int
    t: int
    x0_hu: np.ndarray  # (B, D, H, W) float32 HU
    xt_hu: np.ndarray | None  # (B, D, H, W) float32, x_t mapped linearly to HU (not clipped)
    elapsed_s: float  # since the first model call
    steps_per_s: float
    eta_s: float
    final: bool


@dataclass
class SamplingResult:
    """A finished (or cancelled) run: one Volume per sample, plus what made it."""

    status: str  # "done" or "cancelled"
    volumes: list[Volume]
    info: ModelInfo
    request: SampleRequest
    steps_done: int
    elapsed_s: float
