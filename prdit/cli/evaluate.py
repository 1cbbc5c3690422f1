"""Compare a folder of generated volumes (FAKE) with a folder of real ones (REAL).

Metrics (--metrics, comma-separated, default all): fid, kid and mmd (on 2048-d features of a 3D
ResNet-50 with the MedicalNet architecture), msssim (diversity over pairs of generated volumes),
critic (Wasserstein estimate of a WGAN-GP critic on held-out volumes), histogram (HU-histogram
Wasserstein-1) and anatomy (body/lung/bone measures, fraction of generated volumes inside the real
range). The last two need no network.

Features: --features medicalnet:PATH loads MedicalNet's resnet_50.pth or resnet_50_23dataset.pth
(the paper's feature space). Without it a fixed-seed random ResNet-50 is used: its FID/MMD are
only comparable between runs of this program, never with published numbers.

Folders hold NIfTI/.npy/.npz/.mha/.nrrd volumes in HU, all of one shape (or use --size N to
resample every volume to N^3). Per-folder results are cached, so a second run is fast. Under
torchrun, feature extraction is sharded across processes; rank 0 prints and writes the report.
"""

from __future__ import annotations

import argparse

from prdit.cli.progress import add_progress_argument, progress_mode
from prdit.cli.threads import add_threads_argument, threads_for_cpu


def _metrics_arg(text: str) -> tuple[str, ...]:
    from prdit.metrics.pipeline import ALL_METRICS

    if text.strip() == "all":
        return ALL_METRICS
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    bad = [n for n in names if n not in ALL_METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown metric(s) {', '.join(bad) or repr(text)}; choose from {','.join(ALL_METRICS)} or all"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("real", help="folder of real volumes")
    parser.add_argument("fake", help="folder of generated volumes")
    parser.add_argument(
        "--metrics",
        type=_metrics_arg,
        default="all",
        help="comma-separated subset of fid,kid,mmd,msssim,critic,histogram,anatomy (default: all)",
    )
    parser.add_argument(
        "--features",
        default="default",
        metavar="default|medicalnet:PATH",
        help="feature extractor for FID/MMD (default: built-in fixed-seed random ResNet-50)",
    )
    parser.add_argument("--report", metavar="FILE.json", help="write the full report as JSON")
    parser.add_argument("--size", type=_positive_int, metavar="N", help="resample every volume to N^3")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=4, help="volumes per feature batch (default 4)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for MS-SSIM pairing and the critic (default 0)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="ignore and do not write the per-folder cache"
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="cache folder (default $PRDIT_CACHE_DIR or ~/.cache/prdit/eval)"
    )
    parser.add_argument(
        "--msssim-pairs", type=_positive_int, default=100, help="random distinct pairs per set (default 100)"
    )
    parser.add_argument(
        "--critic-iterations", type=_positive_int, default=300, help="critic steps (default 300)"
    )
    parser.add_argument(
        "--critic-size", type=_positive_int, default=32, help="critic input edge (default 32)"
    )
    parser.add_argument(
        "--real-scale",
        choices=("auto", "hu", "unit"),
        default="auto",
        help="REAL intensities: auto (HU, refusing [-1, 1] data; default), hu (trusted) or unit [-1, 1]",
    )
    parser.add_argument(
        "--fake-scale",
        choices=("auto", "hu", "unit"),
        default="auto",
        help="FAKE intensities: auto (HU, refusing [-1, 1] data; default), hu (trusted) or unit [-1, 1]",
    )
    parser.add_argument(
        "--protocol",
        choices=("prdit", "published-lidc", "published-rad"),
        default="prdit",
        help="prdit (default: HU window, z-score into the features, random pairs for MS-SSIM) or the "
        "paper's evaluation exactly (128^3 by average pooling, its intensity scaling, all-pairs "
        "MS-SSIM): the only way comparable_with_published can be true (with MedicalNet weights and "
        "1000 samples); docs/metrics.md",
    )
    add_progress_argument(parser)
    add_threads_argument(parser)


class _Bars:
    """tqdm bars keyed by stage, created on first use (the engine only calls back with numbers)."""

    _NAMES = {
        "real": "real volumes",
        "fake": "generated volumes",
        "critic": "critic training",
        "msssim": "MS-SSIM pairs",
    }

    def __init__(self, enabled: bool, jsonl: bool = False) -> None:
        self.enabled = enabled
        self.jsonl = jsonl
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.jsonl:
            from prdit.run_log import emit_progress

            emit_progress(self._NAMES.get(stage, stage), done, total)
            return
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=total, desc=self._NAMES.get(stage, stage), unit="it", leave=False
            )
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    from prdit.cli.paths import output_file, output_folder

    if args.report:
        output_file(args.report, "--report")
    if args.cache_dir:
        output_folder(args.cache_dir, "--cache-dir")

    from prdit.cli import CliError
    from prdit.data.io import VolumeReadError
    from prdit.metrics.critic import CriticConfig
    from prdit.metrics.features import WeightsError
    from prdit.metrics.folders import FolderError
    from prdit.metrics.pipeline import EvalSettings, evaluate_folders
    from prdit.metrics.report import format_table, write_report

    metrics = args.metrics if isinstance(args.metrics, tuple) else _metrics_arg(args.metrics)
    try:
        settings = EvalSettings(
            metrics=metrics,
            features=args.features,
            size=args.size,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            use_cache=not args.no_cache,
            cache_dir=args.cache_dir,
            real_scale=args.real_scale,
            fake_scale=args.fake_scale,
            msssim_pairs=args.msssim_pairs,
            critic=CriticConfig(iterations=args.critic_iterations, size=args.critic_size, seed=args.seed),
            protocol=args.protocol,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    from prdit.distributed import cleanup, init_distributed

    try:
        info = init_distributed(args.device)
    except (RuntimeError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    mode = progress_mode(args)
    bars = _Bars(enabled=info.is_main and mode == "bar", jsonl=info.is_main and mode == "jsonl")
    threads_for_cpu(args.threads, info.device, "prdit eval" if info.is_main else None)
    try:
        report = evaluate_folders(args.real, args.fake, settings, progress=bars, dist_info=info)
    except (FolderError, WeightsError, VolumeReadError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        bars.close()
        cleanup(info)
    if report is None:  # not rank 0
        return 0
    print(format_table(report))
    if args.report:
        path = write_report(report, args.report)
        print(f"\nreport: {path}")
    return 0
