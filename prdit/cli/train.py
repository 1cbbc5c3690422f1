"""Train a PRDiT model (stage 1, 2 or 3) from a YAML config or a built-in preset.

One GPU (or the CPU): `prdit train CONFIG`. Several GPUs or nodes: `torchrun --nproc_per_node N
-m prdit train CONFIG` (DistributedDataParallel, NCCL on CUDA, gloo on CPU). CONFIG is a YAML file
or a preset name from resources/configs (phantom-tiny, lidc-stage1, lidc-stage2,
lidc-stage3-256, rad-stage1, ...). Any key can be overridden: --set train.lr=2e-4 --set
train.batch_size=32. Ctrl-C, SIGTERM or creating the file OUT/STOP saves a checkpoint and exits;
--resume continues exactly. A folder that already holds a run needs --resume (or a new --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prdit.cli.progress import add_progress_argument, progress_mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file or built-in preset name (e.g. phantom-tiny)")
    parser.add_argument("--data", metavar="DIR", help="preprocessed dataset folder (sets data.source=folder)")
    parser.add_argument(
        "--out", metavar="DIR", help="run folder (default: out_dir from the config, else runs/NAME)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue the run in --out from its latest checkpoint, or from the given checkpoint folder",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.max_steps=1000 (repeatable)",
    )
    parser.add_argument("--max-steps", type=int, help="shortcut for --set train.max_steps=N")
    parser.add_argument("--device", help="shortcut for --set train.device=DEV (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--init-from", metavar="CHECKPOINT", help="shortcut for --set model.init_from=PATH")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="shortcut for --set train.threads=N (CPU threads; default: $PRDIT_THREADS, else the cores "
        "other programs leave free when the run starts)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="shortcut for --set train.precision=P (default auto: bf16 on GPUs, and on CPUs with native "
        "bf16 when one timed step is clearly faster; a resumed run keeps its checkpoint's choice)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build the run without writing anything and print the estimated peak memory and time per "
        "step (from one traced step and a short timed probe); exit status 1 if it would not fit",
    )
    add_progress_argument(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    # First, before torch is imported (seconds): SIGTERM/SIGINT from now on are recorded and the
    # run stops cleanly instead of dying without a checkpoint (see prdit.stopping).
    from prdit import stopping

    stopping.install_early_handlers()
    try:
        return _run(args)
    finally:
        stopping.restore_handlers()


def _run(args: argparse.Namespace) -> int:
    from prdit import stopping
    from prdit.cli import CliError
    from prdit.config import ConfigError, load_config
    from prdit.distributed import env_world_size

    overrides = list(args.overrides)
    if args.data:
        overrides += ["data.source=folder", f"data.root={args.data}"]
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.init_from:
        overrides.append(f"model.init_from={args.init_from}")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    if args.precision:
        overrides.append(f"train.precision={args.precision}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    try:
        cfg = load_config(args.config, overrides, world_size=env_world_size())
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from prdit.cli.paths import output_folder

    output_folder(cfg.out_dir or Path("runs") / cfg.name, "--out" if args.out else "out_dir")

    from prdit.checkpoint import CheckpointError
    from prdit.distributed import cleanup, init_distributed
    from prdit.training import TrainingDiverged, TrainingSetupError, train

    if args.dry_run:
        return _dry_run(cfg)

    early = stopping.pending_signal()
    if early and env_world_size() == 1:  # (under torchrun the ranks agree inside train())
        print(f"prdit train: stopped by {early} during start-up, before the first step; nothing was written")
        return 130 if early == "SIGINT" else 0
    try:
        dist = init_distributed(cfg.train.device)
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"train.device: {exc}") from None
    try:
        mode = progress_mode(args)
        result = train(
            cfg, resume=args.resume, dist=dist, progress=mode if mode == "jsonl" else mode == "bar"
        )
    except (TrainingSetupError, CheckpointError) as exc:
        raise CliError(str(exc)) from None
    except TrainingDiverged as exc:
        if dist.is_main:  # status 3 (not 2): the settings were valid, the run itself diverged
            print(f"prdit train: error: the run diverged (exit status 3): {exc}", file=sys.stderr)
        return 3
    finally:
        cleanup(dist)
    if dist.is_main:
        if result.stopped_by and not result.steps_run:
            print(
                f"prdit train: stopped by {result.stopped_by} before the first step; nothing new was saved "
                f"(latest checkpoint: {result.last_checkpoint or 'none'})"
            )
        else:
            state = f"stopped by {result.stopped_by}" if result.stopped_by else "finished"
            print(f"prdit train: {state} at step {result.step}; checkpoint: {result.last_checkpoint}")
        if result.last_checkpoint:
            print(
                f"prdit train: sample with: prdit sample {result.run_dir} --count 4 --steps 250 --out samples"
            )
    if result.stopped_by == "SIGINT":
        return 130
    return 0


def _dry_run(cfg) -> int:
    """``--dry-run``: the estimate for one training process; nothing is written."""
    from prdit.checkpoint import CheckpointError
    from prdit.cli import CliError
    from prdit.distributed import env_world_size, resolve_device
    from prdit.estimate import EstimateError
    from prdit.threads import apply_threads, choose_threads
    from prdit.training import TrainingSetupError
    from prdit.training.estimate import dry_run

    try:
        device = resolve_device(cfg.train.device)
    except (RuntimeError, ValueError) as exc:
        raise CliError(f"train.device: {exc}") from None
    if device.type == "cpu":
        apply_threads(choose_threads(cfg.train.threads or None))
    try:
        est = dry_run(cfg, device, env_world_size(), log=lambda m: print(f"prdit train --dry-run: {m}"))
    except (TrainingSetupError, CheckpointError, EstimateError) as exc:
        raise CliError(str(exc)) from None
    print("\n".join(est.lines()))
    return 0 if est.fits else 1
