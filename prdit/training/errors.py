"""Why a training run did not start or stopped early (the CLI turns both into messages)."""

from __future__ import annotations

_MASK64 = (1 << 63) - 1


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the run stopped without saving the bad state."""


class TrainingSetupError(ValueError):
    """Inconsistent inputs (dataset vs config vs the checkpoint started from); names the problem."""
