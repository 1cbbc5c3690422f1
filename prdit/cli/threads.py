"""The ``--threads`` option of the commands that compute with torch, and its application.

One place for the flag's wording and for what each command prints about the choice; the policy
itself (explicit > ``PRDIT_THREADS`` > the free cores) is :mod:`prdit.threads`.
"""

from __future__ import annotations

import argparse
import sys

from prdit.threads import (
    ThreadGovernor,
    ThreadSettingError,
    apply_threads,
    choose_threads,
    parse_thread_setting,
)


def _thread_count(text: str) -> int | None:
    try:
        return parse_thread_setting(text, "--threads")
    except ThreadSettingError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of threads or 'auto', got {text!r}"
        ) from None


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        metavar="N|auto",
        help="CPU threads for torch (default auto: the cores other programs leave free; "
        "PRDIT_THREADS sets the default)",
    )


def threads_for_cpu(requested: int | None, device, who: str | None) -> ThreadGovernor | None:
    """Apply the thread policy when computing on the CPU; print the choice as ``who`` (None: quiet).

    On a GPU the CPU only feeds it, so torch's default is left alone and None is returned.
    """
    from prdit.cli import CliError

    if getattr(device, "type", str(device)) != "cpu":
        return None
    try:
        choice = choose_threads(requested)
    except ThreadSettingError as exc:
        raise CliError(str(exc)) from None
    if who:
        print(f"{who}: {choice.describe()}", file=sys.stderr)
    return apply_threads(choice)
