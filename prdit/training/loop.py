"""The training loop: :class:`Trainer` (set-up, one optimiser step, validation, previews,
checkpoints, stopping) and :func:`train`, the entry the CLI and the studio call."""

from __future__ import annotations

import contextlib
import math
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
from prdit.run_log import emit_progress
from prdit.training.data_feed import (
    VAL_STREAM,
    BatchPlan,
    DataOrder,
    MicroBatchSampler,
    _check_item,
    _spacing,
    _window_dict,
    apply_flips,
    build_datasets,
    per_sample_noise,
)
from prdit.training.errors import TrainingDiverged, TrainingSetupError
from prdit.training.model_setup import (
    _load_model_state,
    build_training_model,
    check_normalisation,
    choose_training_precision,
    enable_activation_checkpointing,
)
from prdit.training.run_folder import MetricsLog, _write_text_atomic, existing_run

_MASK64 = (1 << 63) - 1


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_checkpoint: Path | None
    stopped_by: str | None = None  # None: max_steps reached; else "SIGTERM", "SIGINT", "stop", "STOP file"
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_run: int = 0  # optimiser steps taken by this call (0: stopped before the first one)


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
        progress: bool | str | None = None,
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
        estimate, :mod:`prdit.training.estimate`), instead of thrashing into swap or dying mid-step."""
        from prdit.estimate import EstimateError, human_bytes
        from prdit.training.estimate import cached_data_bytes, estimate_for, planned_amp_dtype

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
        from prdit.previews import save_slices_png

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
            with stopping.StopFlag(self.stop_event, stop_path) as stop:
                return self._run(stop)
        finally:
            if stop_path is not None and stopping.remove_stop_file(self.run_dir):
                self.log(f"removed {stop_path}")

    def _agreed_stop(self, stop: stopping.StopFlag) -> str | None:
        """The stop reason on every rank once any rank has one (collective: all ranks call it)."""
        if any_rank(self.dist, stop.reason is not None):
            return stop.reason or "stop (another rank)"
        return None

    def _run(self, stop: stopping.StopFlag) -> TrainResult:
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
        jsonl = self.dist.is_main and self.show_progress == "jsonl"
        if self.dist.is_main and self.show_progress and not jsonl:
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
                elif jsonl:
                    emit_progress("train", self.step, cfg.train.max_steps, loss=round(record["loss"], 6))
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


def train(
    cfg: Config,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | bool | None = None,
    dist: DistInfo | None = None,
    stop_event: threading.Event | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool | str | None = None,
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
