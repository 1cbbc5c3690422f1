"""``prdit``: the headless command line (train, sample, eval, phantom, preprocess, export-dicom).

Thin by design: each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; parsing happens here, work happens in the engine. Heavy imports (torch,
SimpleITK) stay inside ``run`` so ``prdit --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prdit import __version__

# (command name, module under prdit.cli, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("train", "train", "train a PRDiT model (stage 1, 2 or 3) from a YAML config"),
    ("sample", "sample", "generate volumes from a checkpoint (NIfTI, optional DICOM, PNG previews)"),
    ("eval", "evaluate", "compare a folder of generated volumes with a folder of real ones"),
    ("phantom", "phantom", "write procedural chest-CT phantoms (NIfTI + manifest)"),
    ("preprocess", "preprocess", "turn LIDC-IDRI / RAD-ChestCT / other scans into a training dataset"),
    ("export-dicom", "export_dicom", "export a volume as a synthetic CT DICOM series"),
    ("export-model", "export_model", "write a single-file inference model (.safetensors) from a checkpoint"),
    ("info", "info", "describe a volume file, DICOM folder or checkpoint"),
    ("edit", "edit", "edit a volume with a model: regenerate a region (infill)"),
]


class CliError(Exception):
    """An error the user can fix (bad file, bad setting): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prdit",
        description="PRDiT: 3D CT volume generation with a pixel-level residual diffusion transformer.",
    )
    parser.add_argument("--version", action="version", version=f"prdit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"prdit.cli.{module_name}")
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        print(f"prdit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"prdit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"prdit {args.command}: error: out of memory (try a smaller batch or size; --dry-run estimates)",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:  # a path the checks could not foresee (permissions, a full disk, ...)
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"prdit {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prdit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `prdit info x | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
