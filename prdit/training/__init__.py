"""The training loop for stages 1, 2 and 3: one process on one device, or many under torchrun.

What it guarantees, and how:

* **Exact resume.** Nothing random depends on hidden state. The data order is a pure function
  of (seed, epoch) and every sample's timestep, noise and flip come from a generator seeded by
  (seed, the sample's global position in the data stream). With the weights, EMA and AdamW
  state restored from the checkpoint, training 20 steps equals 10 + resume + 10, bit for bit on
  CPU. (The RNG states of every rank are saved too, for anything else that draws.)
* **Same result on 1 or N processes.** The global batch of step ``s`` is the same positions
  ``s*B .. s*B+B-1`` however it is split over ranks and accumulation steps, and each sample's
  noise depends on its position only; DDP averages the per-rank means. Differences are float
  summation order only.
* **Stage 2** loads the stage-1 weights into the coarse path and freezes it (the engine's
  ``freeze_coarse``); **stage 3** wraps the frozen trained model in the full-resolution residual
  branch (``build_highres_model``). Only trainable parameters reach AdamW and the EMA, so
  frozen weights stay bit-identical.
* **Stopping.** SIGINT/SIGTERM, a ``<run_dir>/STOP`` file (checked by rank 0 every step; the
  portable way, see :mod:`prdit.stopping`) or ``stop_event`` -> all ranks agree, save a
  checkpoint, return; the STOP file is removed. A signal that arrives while ``prdit train`` is
  still importing torch is recorded by early handlers and honoured before the first step (nothing
  trained, nothing saved). A NaN/inf loss or gradient stops before the optimiser step with
  :class:`TrainingDiverged`; the last good checkpoint is left untouched.
* **One run per folder.** Without ``resume`` a folder that already holds a run (a checkpoint or
  a non-empty ``metrics.jsonl``) is refused (:func:`existing_run`), never restarted at step 0.
* bf16 autocast and TF32 on CUDA only (bf16 on these CPUs is 5-50x slower than float32).
"""

from __future__ import annotations

from prdit.training.data_feed import (
    VAL_STREAM,
    BatchPlan,
    DataOrder,
    MicroBatchSampler,
    apply_flips,
    build_datasets,
    per_sample_noise,
    sample_seed,
)
from prdit.training.errors import TrainingDiverged, TrainingSetupError
from prdit.training.loop import Trainer, TrainResult, train
from prdit.training.model_setup import (
    build_training_model,
    check_normalisation,
    choose_training_precision,
    enable_activation_checkpointing,
)
from prdit.training.run_folder import MetricsLog, existing_run

__all__ = [
    "VAL_STREAM",
    "BatchPlan",
    "DataOrder",
    "MetricsLog",
    "MicroBatchSampler",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingSetupError",
    "apply_flips",
    "build_datasets",
    "build_training_model",
    "check_normalisation",
    "choose_training_precision",
    "enable_activation_checkpointing",
    "existing_run",
    "per_sample_noise",
    "sample_seed",
    "train",
]
