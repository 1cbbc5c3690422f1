"""The command-line options of scripted generation (``prdit-studio --generate``), argparse only.

Both the viewer's parser (which lists them in its ``--help`` and refuses them without
``--generate``) and :mod:`prdit_app.scripted_generate` (which parses them) take them from here, so
neither imports the other for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prdit.sampler_names import SAMPLERS

GENERATE_FLAG = "--generate"


def wants_generate(argv: Sequence[str] | None) -> bool:
    """True when the command line asks for scripted generation (``main`` delegates to :func:`main`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return GENERATE_FLAG in args


#: the viewer's --help shows the generation options under this heading (one list: add_generate_arguments)
GROUP_TITLE = "scripted generation (prdit-studio --generate [options])"
GROUP_DESCRIPTION = (
    "Sample a volume in the studio while the views stream each step. With --generate, --screenshot "
    "saves the window once sampling has ended and --quit exits then (status 1 if anything failed); "
    "the viewer options above still apply (e.g. --preset, --vr-preset, --window-size)."
)


def add_generate_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The options only scripted generation takes.

    The single source of the list: :func:`build_parser` parses them and the viewer's parser shows
    them in its ``--help`` (and refuses them without ``--generate``).
    """
    parser.add_argument(GENERATE_FLAG, action="store_true", help="start a generation once the window is up")
    parser.add_argument("--checkpoint", metavar="PATH", help="model to sample (default: the bundled model)")
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the model's, else 50)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample (default 0)")
    parser.add_argument(
        "--sampler", choices=SAMPLERS, default=None, help="sampler (default: the model's, else hot)"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="hot-sampler multiplier (default: the model's, else 2)"
    )
    parser.add_argument("--samples", type=int, default=1, help="number of samples (default 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument(
        "--side-by-side", action="store_true", help="show the x_t | x0_hat strip in the panel"
    )
    parser.add_argument(
        "--screenshot-during",
        type=int,
        metavar="STEP",
        help="also save <screenshot>-running.png once this step has been drawn",
    )


def generate_only_options() -> dict[str, tuple[str, object]]:
    """dest -> (option string, default) of every option :func:`add_generate_arguments` adds."""
    probe = argparse.ArgumentParser(add_help=False)
    add_generate_arguments(probe)
    return {a.dest: (a.option_strings[0], a.default) for a in probe._actions}
