"""The ``--progress`` option of the long-running commands: a terminal bar (default), one JSON
object per line for programs (``jsonl``: :mod:`prdit.run_log`), or nothing. ``--no-progress``
stays as the old spelling of ``--progress none``."""

from __future__ import annotations

import argparse

from prdit.run_log import PROGRESS_MODES


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="bar",
        help="bar: a terminal progress bar; jsonl: one JSON progress object per line on stdout (for "
        "programs, e.g. the studio); none: neither",
    )
    parser.add_argument("--no-progress", action="store_true", help="same as --progress none")


def progress_mode(args: argparse.Namespace) -> str:
    return "none" if getattr(args, "no_progress", False) else args.progress
