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

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prdit import checkpoint as ckpt
from prdit import stopping
from prdit.config import Config
from prdit.data.normalize import HUWindow
from prdit.distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    gather_objects,
    init_distributed,
)
from prdit.ema import EMA, unwrap

_MASK64 = (1 << 63) - 1
VAL_STREAM = 1 << 40  # offset that keeps validation seeds apart from training positions


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the run stopped without saving the bad state."""


class TrainingSetupError(ValueError):
    """Inconsistent inputs (dataset vs config vs the checkpoint started from); names the problem."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_checkpoint: Path | None
    stopped_by: str | None = None  # None: max_steps reached; else "SIGTERM", "SIGINT", "stop", "STOP file"
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_run: int = 0  # optimiser steps taken by this call (0: stopped before the first one)


# ---------------------------------------------------------------------------------------------- randomness
def sample_seed(seed: int, position: int, stream: int = 0) -> int:
    """A 63-bit seed for one sample from (run seed, its position in the data stream, stream id).

    SplitMix64-style mixing, so neighbouring positions get unrelated generator states.
    """
    z = (seed * 0x9E3779B97F4A7C15 + position * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK64


class DataOrder:
    """Stateless shuffled order: position ``p`` -> dataset index ``perm(p // N)[p % N]``.

    Each epoch is a fresh permutation seeded by (seed, epoch); nothing to save on checkpoint
    except the step, and every rank computes the same order without communication.
    """

    def __init__(self, length: int, seed: int) -> None:
        if length < 1:
            raise TrainingSetupError("the training dataset is empty")
        self.length = length
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        perm = self._perms.get(epoch)
        if perm is None:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, stream=7))
            perm = torch.randperm(self.length, generator=g).tolist()
            self._perms = {epoch: perm}  # keep one epoch: memory stays O(N)
        return perm

    def index(self, position: int) -> int:
        return self._perm(position // self.length)[position % self.length]


class BatchPlan:
    """Who trains on which positions: global batch ``B`` = world x grad_accum x micro."""

    def __init__(self, batch_size: int, world: int, grad_accum: int) -> None:
        self.batch_size = batch_size
        self.world = world
        self.grad_accum = grad_accum
        self.micro = batch_size // (world * grad_accum)

    def positions(self, step: int, accum_index: int, rank: int) -> list[int]:
        start = step * self.batch_size + (accum_index * self.world + rank) * self.micro
        return list(range(start, start + self.micro))


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches (lists of dataset indices) from ``start_step`` on."""

    def __init__(self, order: DataOrder, plan: BatchPlan, rank: int, start_step: int, max_steps: int) -> None:
        self.order, self.plan, self.rank = order, plan, rank
        self.start_step, self.max_steps = start_step, max_steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            for a in range(self.plan.grad_accum):
                yield [self.order.index(p) for p in self.plan.positions(step, a, self.rank)]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.plan.grad_accum


def per_sample_noise(
    positions: list[int],
    seed: int,
    shape: tuple[int, ...],
    num_timesteps: int,
    device: torch.device,
    stream: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t ``[B]`` long, eps ``[B, *shape]`` float32, flip ``[B]`` bool), each row from its own seed."""
    ts, eps, flips = [], [], []
    for p in positions:
        g = torch.Generator(device=device).manual_seed(sample_seed(seed, p, stream))
        ts.append(torch.randint(0, num_timesteps, (1,), generator=g, device=device))
        flips.append(torch.rand((1,), generator=g, device=device) < 0.5)
        eps.append(torch.randn((1, *shape), generator=g, device=device))
    return torch.cat(ts), torch.cat(eps), torch.cat(flips)


def apply_flips(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Left-right flip (last axis, patient x) of the rows where ``flips`` is true."""
    if not bool(flips.any()):
        return x
    flipped = torch.flip(x, dims=[-1])
    mask = flips.view(-1, *([1] * (x.ndim - 1)))
    return torch.where(mask, flipped, x)


# ---------------------------------------------------------------------------------------------- data
def build_datasets(cfg: Config) -> tuple[Any, Any]:
    """(train, val) datasets yielding ``[1, S, S, S]`` float32 in [-1, 1] with ``hu_window``/``spacing``.

    Flips are applied by the loop (seeded per sample), so datasets are built with ``flip=False``.
    """
    from prdit.data import datasets

    size = cfg.model.input_size
    if cfg.data.source == "phantom":
        window = HUWindow(**vars(cfg.data.hu_window)) if cfg.data.hu_window else HUWindow()
        common = dict(size=size, hu_window=window, flip=False, cache=cfg.data.cache)
        train = datasets.PhantomDataset(
            length=cfg.data.phantom_count, seed_offset=cfg.data.phantom_seed_offset, **common
        )
        val = datasets.PhantomDataset(
            length=cfg.data.phantom_val_count,
            seed_offset=cfg.data.phantom_seed_offset + 1_000_000,  # never a training phantom
            **common,
        )
        return train, val
    root = Path(cfg.data.root or "")
    if not root.is_dir():
        raise TrainingSetupError(f"data.root: {root} is not a folder")
    train = datasets.VolumeFolderDataset(root, split=cfg.data.train_split, flip=False)
    try:
        val = datasets.VolumeFolderDataset(root, split=cfg.data.val_split, flip=False)
        if len(val) == 0:
            val = None
    except (FileNotFoundError, ValueError):
        val = None
    if cfg.data.hu_window is not None:
        want = HUWindow(**vars(cfg.data.hu_window))
        if HUWindow.from_dict(_window_dict(train.hu_window)) != want:
            raise TrainingSetupError(
                f"data.hu_window: the config says {want.to_dict()} but the dataset {root} was prepared "
                f"with {_window_dict(train.hu_window)}; remove data.hu_window or re-run prdit preprocess"
            )
    return train, val


def _window_dict(window: Any) -> dict[str, Any]:
    if isinstance(window, HUWindow):
        return window.to_dict()
    if isinstance(window, dict):
        return HUWindow.from_dict(window).to_dict()
    return HUWindow().to_dict()


def _spacing(dataset: Any) -> list[float]:
    sp = getattr(dataset, "spacing", None)
    if sp is None:
        return [1.0, 1.0, 1.0]
    arr = np.asarray(sp, dtype=float).reshape(-1)
    return [float(arr[0])] * 3 if arr.size == 1 else [float(v) for v in arr[:3]]


def _check_item(x: torch.Tensor, size: int, where: str) -> None:
    if x.ndim != 5 or tuple(x.shape[1:]) != (1, size, size, size):
        raise TrainingSetupError(
            f"{where}: expected volumes [1, {size}, {size}, {size}] (model.input_size), got batch "
            f"{tuple(x.shape)}; preprocess the data at this size or change model.input_size"
        )


# ---------------------------------------------------------------------------------------------- model
def build_training_model(cfg: Config, hu_window: HUWindow, log: Callable[[str], None]) -> nn.Module:
    """The network for ``cfg.stage``, initialised (and partly frozen) as the stage requires."""
    from prdit.models import build_highres_model, build_model

    attention = None if cfg.model.attention == "auto" else cfg.model.attention
    if cfg.stage == 1:
        return build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
    if cfg.model.from_scratch:  # validated: stage 2 without init_from
        log(f"stage 2 from scratch: {cfg.model.name}, all parameters trained jointly from random weights")
        return build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
    state, meta, source, kind = ckpt.read_weights(cfg.model.init_from, use_ema=cfg.model.init_use_ema)
    check_normalisation(meta.get("hu_window"), hu_window, f"model.init_from: {source}", log)
    if cfg.stage == 2:
        model = build_model(cfg.model.name, input_size=cfg.model.input_size, attention=attention)
        try:
            model.load_stage1_state_dict(state, freeze=True)
        except ValueError as exc:
            raise TrainingSetupError(f"model.init_from: {source}: {exc}") from None
        log(f"stage 2: coarse path loaded from {source} ({kind} weights) and frozen")
        return model
    base_size = int(cfg.model.base_size)  # validated: stage 3 has base_size
    if meta.get("model_name") and meta["model_name"] != cfg.model.name:
        raise TrainingSetupError(
            f"model.init_from: {source} holds {meta['model_name']}, but model.name is {cfg.model.name}"
        )
    if meta.get("input_size") and int(meta["input_size"]) != base_size:
        raise TrainingSetupError(
            f"model.base_size: {base_size}, but {source} was trained at {meta['input_size']}^3"
        )
    if meta.get("format") == "reference":
        base = build_model(cfg.model.name, input_size=base_size, attention=attention)
    else:  # ours: a PRDiT, or a stage-3 model for a cascade (64^3 -> 128^3 reusing 32^3 -> 64^3)
        base = ckpt.build_model_from_meta(meta, attention=attention)
    from prdit.models import load_weights

    try:
        load_weights(base, state)
    except ValueError as exc:
        raise TrainingSetupError(f"model.init_from: {source}: {exc}") from None
    model = build_highres_model(
        base,
        input_size=cfg.model.input_size,
        patch=cfg.model.highres_patch,
        width=cfg.model.highres_width,
        alignment=cfg.model.highres_alignment,
    )
    log(f"stage 3: {cfg.model.name} at {base_size}^3 loaded from {source} ({kind} weights) and frozen")
    return model


def check_normalisation(
    recorded: dict[str, Any] | None,
    window: HUWindow,
    where: str,
    log: Callable[[str], None] | None = None,
) -> None:
    """Refuse to continue from weights trained on differently normalised data.

    ``recorded`` is the checkpoint's ``hu_window`` (None: nothing recorded, nothing to check) and
    ``window`` the one this run's data use. Fixed windows (``mode="window"``) must match exactly:
    the same HU must map to the same model value in every stage. Min-max data (``mode="minmax"``)
    are different: every volume was scaled by its own minimum and maximum, and the dataset's
    window is only a nominal median of those, which differs between datasets of the same scans
    at another size or with more cases (a 128^3 and a 256^3 LIDC folder). The model never saw
    those numbers, so for min-max only the mode must match; a differing nominal window is logged.
    """
    if not recorded:
        return
    theirs = HUWindow.from_dict(recorded)
    if theirs.mode != window.mode:
        raise TrainingSetupError(
            f"{where} was trained on {theirs.mode!r}-normalised data ({theirs.to_dict()}), but this run's "
            f"data are {window.mode!r}-normalised ({window.to_dict()}); the stages must share one "
            f"normalisation: prepare the data with prdit preprocess --norm {theirs.mode}"
        )
    if theirs == window:
        return
    if window.mode == "minmax":
        if log is not None:
            log(
                f"{where}: min-max data; its nominal window {theirs.low:g}..{theirs.high:g} HU differs from "
                f"this dataset's {window.low:g}..{window.high:g} HU. Only the mode must match (min-max "
                f"values carry no HU scale); this run records {window.low:g}..{window.high:g}."
            )
        return
    raise TrainingSetupError(
        f"{where} was trained with HU window {theirs.to_dict()}, but this run's data use "
        f"{window.to_dict()}; the stages must share one normalisation"
    )


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute activations of the heavy trainable blocks in backward (less memory, ~30% slower).

    Wraps each DiT block, the local denoiser and the stage-3 residual branch from outside by
    replacing the instance's ``forward``; parameter names (and so checkpoints) do not change.
    Returns the number of wrapped modules.
    """
    from torch.utils.checkpoint import checkpoint

    targets: list[nn.Module] = []
    m = unwrap(model)
    fine = getattr(m, "fine", None)
    if fine is not None:
        targets.extend(fine.blocks)
    for name in ("coarse", "residual"):
        sub = getattr(m, name, None)
        if isinstance(sub, nn.Module) and any(p.requires_grad for p in sub.parameters()):
            targets.append(sub)
    for mod in targets:
        inner = mod.forward

        def wrapped(*args, _inner=inner, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        mod.forward = wrapped  # type: ignore[method-assign]
    return len(targets)


# ---------------------------------------------------------------------------------------------- logging
class MetricsLog:
    """Append-only JSONL (one object per line, flushed) plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL only
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        if self._tb is not None and "step" in record:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


class _StopFlag:
    """SIGINT/SIGTERM (main thread only), an optional threading.Event and the STOP file -> one flag.

    A signal that arrived before the loop (recorded by :mod:`prdit.stopping`'s early handlers
    while torch was importing) is taken over on entry.
    """

    def __init__(self, event: threading.Event | None, stop_path: Path | None = None) -> None:
        self.event = event
        self.stop_path = stop_path
        self.signal_name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        self.signal_name = stopping.pending_signal()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def reason(self) -> str | None:
        if self.signal_name:
            return self.signal_name
        if self.event is not None and self.event.is_set():
            return "stop"
        if self.stop_path is not None and self.stop_path.exists():
            return "STOP file"
        return None


def existing_run(run_dir: str | Path) -> str | None:
    """Why ``run_dir`` cannot take a new run (it already holds one), or None when it can.

    A run is there when the folder has a complete checkpoint or a non-empty ``metrics.jsonl`` (a
    run killed before its first checkpoint still logged there). Starting afresh in such a folder
    would restart at step 0 and append a second run to the same ``metrics.jsonl``. Empty folders
    and folders holding only other files are fine.
    """
    root = Path(run_dir)
    found = ckpt.list_checkpoints(root / "checkpoints")
    if found:
        return (
            f"{root} already holds a run (checkpoint at step {found[-1][0]}); starting a new one there "
            f"would restart at step 0 and mix two runs in its metrics.jsonl. Add --resume to continue "
            f"it, or choose a new --out folder"
        )
    metrics = root / "metrics.jsonl"
    try:
        logged = metrics.stat().st_size > 0
    except FileNotFoundError:
        logged = False
    if logged:
        return (
            f"{root} already holds a run that saved no checkpoint ({metrics} is not empty); a new run "
            f"there would mix two runs in one metrics.jsonl. Choose a new --out folder, or delete {root} "
            f"to start over in it"
        )
    return None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- the loop
def choose_training_precision(
    cfg: Config,
    device: torch.device,
    model: nn.Module,
    trainable: list[nn.Parameter],
    diffusion: Any,
    micro_batch: int,
    resume_state: ckpt.TrainingState | None = None,
):
    """The run's autocast format (:mod:`prdit.precision`), chosen once, before the first step.

    A resumed run keeps the format its checkpoint recorded, so resuming stays exact whatever the
    machine measures today; ``auto`` on a CPU with native bf16 times one training step (forward
    and backward of this run's micro-batch) in each format.
    """
    from prdit.precision import PrecisionChoice, PrecisionSettingError, choose_precision, probe_formats

    recorded = resume_state.meta.get("precision") if resume_state is not None else None
    if recorded in ("fp32", "bf16") and cfg.train.precision == "auto":
        return PrecisionChoice(recorded, "--resume", f"{resume_state.path.name} recorded it")

    def probe():  # on up to 2 volumes: a ratio of speeds, not a full step
        shape = (min(max(1, micro_batch), 2), 1) + (cfg.model.input_size,) * 3
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.rand(shape, generator=gen).mul(2).sub(1).to(device)
        t = torch.full((shape[0],), cfg.diffusion.num_timesteps // 2, device=device)
        noise = torch.randn(shape, generator=gen).to(device)

        def step() -> torch.Tensor:
            losses = diffusion.training_losses(model, x, t=t, noise=noise)
            losses["loss"].backward()
            return losses["x0_hat"]

        try:
            return probe_formats(step, device, rounds=2)
        finally:
            for p in trainable:
                p.grad = None

    # "auto" in the config is the default: PRDIT_PRECISION may still choose
    requested = None if cfg.train.precision == "auto" else cfg.train.precision
    try:
        return choose_precision(requested, device, probe=probe, what="train.precision")
    except PrecisionSettingError as exc:
        raise TrainingSetupError(str(exc)) from None


class Trainer:
    """Holds the run's state; :meth:`run` trains until max_steps, a stop request or divergence."""

    def __init__(
        self,
        cfg: Config,
        *,
        run_dir: str | Path | None = None,
        resume: str | Path | bool | None = None,
        dist: DistInfo | None = None,
        stop_event: threading.Event | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist or init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.run_dir = Path(run_dir or cfg.out_dir or Path("runs") / cfg.name)
        self.ckpt_dir = self.run_dir / "checkpoints"
        # When this run began: a STOP file older than this is left over from an earlier run.
        self.started = stopping.process_started() or time.time()
        self.stop_event = stop_event
        self.callback = callback
        self.show_progress = cfg.log.progress if progress is None else progress
        try:  # a bad PRDIT_PRECISION fails before anything is written
            from prdit.precision import PrecisionSettingError, parse_precision

            parse_precision(None)
        except PrecisionSettingError as exc:
            raise TrainingSetupError(str(exc)) from None
        self.history: list[dict[str, Any]] = []
        if self.device.type == "cpu":
            from prdit.threads import apply_threads, choose_threads

            choice = choose_threads(cfg.train.threads or None)
            apply_threads(choice)
            self.log(f"torch computes with {choice.describe()}")

        if not resume:
            problem = existing_run(self.run_dir) if self.dist.is_main else None
            if any_rank(self.dist, problem is not None):
                raise TrainingSetupError(problem or f"{self.run_dir} already holds a run (see rank 0)")

        # Data first: the HU window and spacing it was prepared with travel with the model.
        self.train_set, self.val_set = build_datasets(cfg)
        self.hu_window = HUWindow.from_dict(_window_dict(getattr(self.train_set, "hu_window", None)))
        self.spacing = _spacing(self.train_set)
        self.plan = BatchPlan(cfg.train.batch_size, self.dist.world_size, cfg.train.grad_accum)
        self.order = DataOrder(len(self.train_set), cfg.train.seed)

        from prdit.diffusion import IaNDiffusion

        self.diffusion = IaNDiffusion(
            num_timesteps=cfg.diffusion.num_timesteps, noise_scale=cfg.diffusion.noise_scale
        )

        resume_state = self._find_resume(resume)
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank and every run
        model = build_training_model(cfg, self.hu_window, self.log)
        if resume_state is not None:
            _load_model_state(model, resume_state.model, resume_state.path)
        model.to(self.device)
        self.raw_model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        if not self.trainable:
            raise TrainingSetupError("the model has no trainable parameters for this stage")
        self._check_memory()  # before the precision probe allocates anything of the batch's size
        self._setup_precision(resume_state)
        if self.dist.is_main:  # only now: a run refused above leaves no folder behind
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "previews").mkdir(exist_ok=True)
        barrier(self.dist)
        if cfg.train.activation_checkpointing:
            n = enable_activation_checkpointing(model)
            self.log(f"activation checkpointing on {n} modules")
        self.model: nn.Module = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(
            self.trainable,
            lr=cfg.train.lr,
            betas=cfg.train.betas,
            eps=cfg.train.eps,
            weight_decay=cfg.train.weight_decay,
        )
        self.ema = EMA(model, decay=cfg.train.ema_decay)
        self.step = 0
        self.last_checkpoint: Path | None = None
        if resume_state is not None:
            self._restore(resume_state)
        self._ema_model: nn.Module | None = None

    # ------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        if self.dist.is_main:
            from tqdm import tqdm

            tqdm.write(f"[prdit train] {message}")
            if self.callback:
                self.callback({"event": "log", "message": message})

    def _setup_precision(self, resume_state: ckpt.TrainingState | None) -> None:
        """Choose the autocast format once per run (:func:`choose_training_precision`)."""
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.cfg.train.tf32
            torch.backends.cudnn.allow_tf32 = self.cfg.train.tf32
        choice = choose_training_precision(
            self.cfg,
            self.device,
            self.raw_model,
            self.trainable,
            self.diffusion,
            self.plan.micro,
            resume_state,
        )
        self.precision = choice.precision
        self.amp_dtype = choice.dtype
        self.log(f"computes in {choice.describe()}")

    def _check_memory(self) -> None:
        """Refuse a run whose first step would not fit in the memory available now (a traced
        estimate, :mod:`prdit.train_estimate`), instead of thrashing into swap or dying mid-step."""
        from prdit.estimate import EstimateError, human_bytes
        from prdit.train_estimate import cached_data_bytes, estimate_for, planned_amp_dtype

        try:
            est = estimate_for(
                self.cfg,
                self.device,
                self.raw_model,
                self.trainable,
                self.diffusion,
                self.plan.micro,
                planned_amp_dtype(self.cfg, self.device),
                cached_data_bytes(self.cfg, self.train_set, self.val_set),
                probe=False,
                world_size=self.dist.world_size,
            )
        except EstimateError as exc:  # an estimate that cannot be made must not stop training
            self.log(f"memory estimate skipped: {exc}")
            return
        if any_rank(self.dist, not est.fits):
            raise TrainingSetupError(
                f"train.batch_size {self.cfg.train.batch_size} at {self.cfg.model.input_size}^3 needs "
                f"~{human_bytes(est.work_bytes)} for one step on top of {human_bytes(est.resident_bytes)} "
                f"resident per process, but only {human_bytes(est.available_bytes or 0)} is available on "
                f"{self.device}: {est.advice()} (prdit train --dry-run shows the whole estimate)"
            )
        self.log(f"memory: ~{human_bytes(est.peak_bytes)} of tensors per process")

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _find_resume(self, resume: str | Path | bool | None) -> ckpt.TrainingState | None:
        if not resume:
            return None
        where = self.run_dir if resume is True else Path(resume)
        if resume is True and not ckpt.list_checkpoints(self.ckpt_dir):
            self.log(f"--resume: no checkpoint in {self.ckpt_dir} yet; starting from step 0")
            return None
        state = ckpt.load_training_state(where)
        meta = state.meta
        mine = {
            "stage": self.cfg.stage,
            "model_name": self.cfg.model.name,
            "input_size": self.cfg.model.input_size,
        }
        theirs = {k: meta.get(k) for k in mine}
        if mine != theirs:
            raise TrainingSetupError(
                f"--resume: {state.path} is a checkpoint of {theirs}, but the config describes {mine}"
            )
        check_normalisation(meta.get("hu_window"), self.hu_window, f"--resume: {state.path}", self.log)
        if meta.get("batch_size") not in (None, self.cfg.train.batch_size):
            self.log(
                f"warning: global batch changed from {meta['batch_size']} to {self.cfg.train.batch_size}; "
                f"the data order continues from sample {meta.get('samples_seen')}, not bit-exact"
            )
        return state

    def _restore(self, state: ckpt.TrainingState) -> None:
        if state.ema is not None:
            self.ema.load_state_dict(state.ema)
        if state.optimizer is not None:
            try:
                self.optimizer.load_state_dict(state.optimizer)
            except (ValueError, KeyError) as exc:
                raise TrainingSetupError(
                    f"--resume: optimiser state in {state.path} does not fit: {exc}"
                ) from None
        self.step = state.step
        if state.rng and self.dist.rank < len(state.rng):
            ckpt.restore_rng_state(state.rng[self.dist.rank])
        self.last_checkpoint = state.path
        self.log(f"resumed from {state.path} at step {self.step}")

    def _meta(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "stage": c.stage,
            "model_name": c.model.name,
            "input_size": c.model.input_size,
            "base_size": c.model.base_size,
            "highres_patch": c.model.highres_patch if c.stage == 3 else None,
            "highres_width": c.model.highres_width if c.stage == 3 else None,
            # the whole stage-3 geometry, nested bases included (a cascade rebuilds from this)
            "model_config": unwrap(self.raw_model).config.to_dict() if c.stage == 3 else None,
            "hu_window": self.hu_window.to_dict(),
            "spacing": self.spacing,
            "config": c.to_dict(),
            "world_size": self.dist.world_size,
            "batch_size": c.train.batch_size,
            "samples_seen": self.step * c.train.batch_size,
            "dataset_length": len(self.train_set),
            "diffusion": {"num_timesteps": c.diffusion.num_timesteps, "noise_scale": c.diffusion.noise_scale},
            "precision": self.precision,
        }

    def save(self) -> Path | None:
        """Checkpoint now (collective: every rank must call it); returns the folder on rank 0."""
        rng = gather_objects(self.dist, ckpt.capture_rng_state())
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.ckpt_dir,
                self.step,
                model_state=self.raw_model.state_dict(),
                ema_state=self.ema.state_dict(),
                optimizer_state=self.optimizer.state_dict(),
                meta=self._meta(),
                rng_states=rng,
                keep_last=self.cfg.checkpoint.keep_last,
            )
            self.last_checkpoint = path
        barrier(self.dist)
        return path

    def _lr(self, step: int) -> float:
        w = self.cfg.train.warmup_steps
        return self.cfg.train.lr * min(1.0, (step + 1) / w) if w else self.cfg.train.lr

    # ------------------------------------------------------------------ evaluation
    def ema_model(self) -> nn.Module:
        """A separate eval copy holding the EMA weights (built once, refreshed on each call)."""
        import copy

        if self._ema_model is None:
            self._ema_model = copy.deepcopy(self.raw_model).eval()
            for p in self._ema_model.parameters():
                p.requires_grad_(False)
        self.ema.copy_to(self._ema_model)
        return self._ema_model

    def _val_batches(self) -> list[tuple[torch.Tensor, list[int]]]:
        if self.val_set is None or len(self.val_set) == 0:
            return []
        n = min(len(self.val_set), self.cfg.log.val_batches * max(1, self.plan.micro))
        idx = list(range(n))
        bs = max(1, self.plan.micro)
        out = []
        for i in range(0, n, bs):
            chunk = idx[i : i + bs]
            x = torch.stack([torch.as_tensor(self.val_set[j]) for j in chunk]).float()
            out.append((x, chunk))
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss of the raw and EMA weights on the held-out volumes with fixed t and noise."""
        batches = self._val_batches()
        if not batches:
            return {}
        result = {}
        for label, model in (("val_loss", unwrap(self.raw_model)), ("val_loss_ema", self.ema_model())):
            was_training = model.training
            model.eval()
            total, count = 0.0, 0
            for x, idx in batches:
                x = x.to(self.device)
                t, eps, _ = per_sample_noise(
                    idx,
                    self.cfg.train.seed,
                    tuple(x.shape[1:]),
                    self.cfg.diffusion.num_timesteps,
                    self.device,
                    stream=VAL_STREAM,
                )
                with self._autocast():
                    losses = self.diffusion.training_losses(model, x, t=t, noise=eps)
                total += float(losses["loss"].float()) * len(idx)
                count += len(idx)
            model.train(was_training)
            result[label] = total / max(count, 1)
        return result

    @torch.no_grad()
    def preview(self) -> Path | None:
        """PNG: for a few held-out volumes, three orthogonal slices of x_t, the EMA x0_hat and x0."""
        from prdit.sampling import save_slices_png

        source = self.val_set if self.val_set is not None and len(self.val_set) else self.train_set
        n = min(self.cfg.log.preview_count, len(source))
        if n == 0:
            return None
        x0 = torch.stack([torch.as_tensor(source[i]) for i in range(n)]).float().to(self.device)
        t = torch.full((n,), self.cfg.diffusion.num_timesteps // 2, device=self.device, dtype=torch.long)
        _, eps, _ = per_sample_noise(
            list(range(n)),
            self.cfg.train.seed,
            tuple(x0.shape[1:]),
            self.cfg.diffusion.num_timesteps,
            self.device,
            stream=VAL_STREAM + 1,
        )
        with self._autocast():
            losses = self.diffusion.training_losses(self.ema_model(), x0, t=t, noise=eps)
        x_t = self.diffusion.q_sample(x0, t, eps)
        rows = []
        for i in range(n):
            rows.append([x_t[i, 0], losses["x0_hat"][i, 0], x0[i, 0]])
        path = self.run_dir / "previews" / f"step_{self.step:07d}.png"
        save_slices_png(rows, path, column_labels=["x_t (t=T/2)", "x0_hat (EMA)", "x0"])
        return path

    # ------------------------------------------------------------------ one step
    def _train_step(self, batches: Iterator[list[int] | torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)
        for a in range(self.plan.grad_accum):
            x0 = next(batches)
            if not isinstance(x0, torch.Tensor):
                raise TrainingSetupError("the dataset must yield tensors")
            x0 = x0.to(self.device, non_blocking=True).float()
            _check_item(x0, cfg.model.input_size, "training data")
            positions = self.plan.positions(self.step, a, self.dist.rank)
            t, eps, flips = per_sample_noise(
                positions, cfg.train.seed, tuple(x0.shape[1:]), cfg.diffusion.num_timesteps, self.device
            )
            if cfg.data.flip:
                x0 = apply_flips(x0, flips)
            last = a == self.plan.grad_accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.model.no_sync()
            with sync:
                with self._autocast():
                    losses = self.diffusion.training_losses(self.model, x0, t=t, noise=eps)
                loss = losses["loss"].float() / self.plan.grad_accum
                loss.backward()
            sums += (
                torch.stack(
                    [
                        losses["loss"].detach().double(),
                        losses["loss_x0"].detach().double(),
                        losses["loss_noise"].detach().double(),
                    ]
                )
                / self.plan.grad_accum
            )
        all_reduce_sum(self.dist, sums)
        sums /= self.dist.world_size
        loss_v, x0_v, noise_v = (float(v) for v in sums.tolist())
        if not math.isfinite(loss_v):
            raise TrainingDiverged(
                f"the loss became {loss_v} at step {self.step + 1}; the run stopped before the optimiser "
                f"step. Last good checkpoint: {self.last_checkpoint or 'none saved yet'}. Try a lower "
                f"train.lr, train.precision=fp32 or check the data for NaNs."
            )
        if cfg.train.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, cfg.train.grad_clip))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in self.trainable if p.grad is not None])
                )
            )
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(
                f"the gradient norm became {grad_norm} at step {self.step + 1} (loss {loss_v:.4g}); stopped "
                f"before the optimiser step. Last good checkpoint: "
                f"{self.last_checkpoint or 'none saved yet'}."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.raw_model)
        self.step += 1
        return {
            "loss": loss_v,
            "loss_x0": x0_v,
            "loss_noise": noise_v,
            "grad_norm": grad_norm,
            "lr": self.optimizer.param_groups[0]["lr"],
        }

    def _loader(self) -> Iterator[torch.Tensor]:
        sampler = MicroBatchSampler(
            self.order, self.plan, self.dist.rank, self.step, self.cfg.train.max_steps
        )
        workers = self.cfg.data.num_workers
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
        )
        return iter(loader)

    # ------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Train until max_steps or a stop request; the STOP file is removed when the run ends."""
        stop_path = stopping.stop_file(self.run_dir) if self.dist.is_main else None
        if stop_path is not None and stopping.stale_stop_file(self.run_dir, self.started):
            stopping.remove_stop_file(self.run_dir)
            self.log(f"removed {stop_path}: it is older than this run (left by a run that was killed)")
        try:
            with _StopFlag(self.stop_event, stop_path) as stop:
                return self._run(stop)
        finally:
            if stop_path is not None and stopping.remove_stop_file(self.run_dir):
                self.log(f"removed {stop_path}")

    def _agreed_stop(self, stop: _StopFlag) -> str | None:
        """The stop reason on every rank once any rank has one (collective: all ranks call it)."""
        if any_rank(self.dist, stop.reason is not None):
            return stop.reason or "stop (another rank)"
        return None

    def _run(self, stop: _StopFlag) -> TrainResult:
        cfg = self.cfg
        start_step = self.step
        stopped_by = self._agreed_stop(stop)
        if stopped_by:  # e.g. SIGTERM while torch was importing: nothing trained, nothing to write
            if self.dist.is_main:
                have = f"; latest checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
                self.log(f"stopped by {stopped_by} before the first step; nothing to save{have}")
            return TrainResult(self.run_dir, self.step, self.last_checkpoint, stopped_by, self.history, 0)
        metrics = MetricsLog(self.run_dir, cfg.log.tensorboard) if self.dist.is_main else None
        if self.dist.is_main:
            _write_text_atomic(self.run_dir / "config.yaml", cfg.to_yaml())
            n_train = sum(p.numel() for p in self.trainable)
            n_all = sum(p.numel() for p in self.raw_model.parameters())
            self.log(
                f"{cfg.name}: stage {cfg.stage}, {cfg.model.name} at {cfg.model.input_size}^3, "
                f"{n_train:,} trainable of {n_all:,} parameters, {len(self.train_set)} training volumes, "
                f"device {self.device}, {self.dist.world_size} process(es), "
                f"global batch {cfg.train.batch_size} "
                f"= {self.dist.world_size} x {cfg.train.grad_accum} x {self.plan.micro}"
            )
            if metrics:
                metrics.write(
                    {
                        "event": "start",
                        "step": self.step,
                        "time": time.time(),
                        "world_size": self.dist.world_size,
                        "device": str(self.device),
                    }
                )
        bar = None
        if self.dist.is_main and self.show_progress:
            from tqdm import tqdm

            bar = tqdm(
                total=cfg.train.max_steps,
                initial=self.step,
                desc=f"train {cfg.name}",
                unit="step",
                dynamic_ncols=True,
            )
        batches = self._loader()
        start_time = time.perf_counter()
        window: list[dict[str, float]] = []
        last_log_time, last_log_step = start_time, self.step
        try:
            self.raw_model.train()
            while self.step < cfg.train.max_steps:
                if self.step > start_step:  # checked above for the first step
                    stopped_by = self._agreed_stop(stop)
                    if stopped_by:
                        break
                record = self._train_step(batches)
                window.append(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                s = self.step
                if s % cfg.log.every == 0 or s == cfg.train.max_steps:
                    now = time.perf_counter()
                    rate = (s - last_log_step) / max(now - last_log_time, 1e-9)
                    agg = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    agg.update(
                        step=s,
                        steps_per_s=rate,
                        samples_per_s=rate * cfg.train.batch_size,
                        elapsed_s=now - start_time,
                        eta_s=(cfg.train.max_steps - s) / max((s - start_step) / (now - start_time), 1e-9),
                    )
                    if self.device.type == "cuda":
                        agg["max_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                    window, last_log_time, last_log_step = [], now, s
                    self._emit(metrics, agg)
                if self.dist.is_main:
                    extra: dict[str, Any] = {}
                    if cfg.log.val_every and s % cfg.log.val_every == 0:
                        extra.update(self.validate())
                    if cfg.log.preview_every and s % cfg.log.preview_every == 0:
                        p = self.preview()
                        if p:
                            extra["preview"] = str(p)
                    if extra:
                        extra["step"] = s
                        self._emit(metrics, extra)
                if cfg.checkpoint.every and s % cfg.checkpoint.every == 0 and s < cfg.train.max_steps:
                    self.save()
                    self._emit(metrics, {"step": s, "checkpoint": str(self.last_checkpoint)})
            # Save only what this process trained: a run resumed at max_steps has its checkpoint.
            saved = self.save() if self.step > start_step else self.last_checkpoint
            if self.dist.is_main:
                self._emit(
                    metrics,
                    {
                        "step": self.step,
                        "checkpoint": str(saved),
                        "event": "stopped" if stopped_by else "finished",
                        **({"reason": stopped_by} if stopped_by else {}),
                    },
                )
                if stopped_by:
                    self.log(f"stopped by {stopped_by} at step {self.step}; checkpoint saved in {saved}")
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
        return TrainResult(
            self.run_dir, self.step, self.last_checkpoint, stopped_by, self.history, self.step - start_step
        )

    def _emit(self, metrics: MetricsLog | None, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.history.append(record)
        if metrics is not None:
            metrics.write(record)
        if self.callback:
            self.callback({"event": "metrics", **record})


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    from prdit.models import load_weights

    try:
        load_weights(model, state)
    except ValueError as exc:
        raise TrainingSetupError(f"--resume: {source}: {exc}") from None


def train(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | bool | None = None,
    dist: DistInfo | None = None,
    stop_event: threading.Event | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``cfg`` (see :class:`Trainer`); the one-call entry used by ``prdit train`` and the studio."""
    trainer = Trainer(
        cfg,
        run_dir=run_dir,
        resume=resume,
        dist=dist,
        stop_event=stop_event,
        callback=callback,
        progress=progress,
    )
    return trainer.run()
