"""The ``--precision`` option of the commands that run the network, and what they print about it.

The policy (measured ``auto``, explicit ``fp32``/``bf16``) is :mod:`prdit.precision`.
"""

from __future__ import annotations

import argparse
import sys

from prdit.precision import PRECISIONS, PrecisionChoice, PrecisionSettingError, choose_precision


def add_precision_argument(parser: argparse.ArgumentParser, what: str = "the network") -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help=f"number format {what} computes in (default auto: bf16 on GPUs, and on CPUs with native "
        "bf16 when a short probe measures it clearly faster; fp32 elsewhere)",
    )


def precision_for(
    requested: str | None, device, model, shape: tuple[int, ...], who: str | None
) -> PrecisionChoice:
    """Resolve ``--precision`` for ``model`` on ``shape``; print the choice as ``who`` (None: quiet)."""
    from prdit.cli import CliError

    try:
        choice = choose_precision(requested, device, model, shape)
    except PrecisionSettingError as exc:
        raise CliError(str(exc)) from None
    if who:
        print(f"{who}: computes in {choice.describe()}", file=sys.stderr)
    return choice
