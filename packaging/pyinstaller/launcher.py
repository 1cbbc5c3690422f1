"""Entry point of the frozen PRDiT Studio bundle (``dist/prdit-studio/prdit-studio``).

One executable serves three roles, because a frozen bundle has no Python interpreter to hand out:

* ``prdit-studio [ARGS]`` -> the desktop studio (:func:`prdit_app.main.main`);
* ``prdit-studio -m prdit ARGS`` -> the ``prdit`` command line. The studio starts training and
  evaluation runs as ``[sys.executable, "-m", "prdit", ...]`` (see
  :func:`prdit_app.process_runner.prdit_command`); in a bundle ``sys.executable`` is this binary, so
  it must understand ``-m prdit`` exactly like ``python`` does;
* ``prdit ARGS`` (the ``prdit`` symlink the spec puts beside the binary) -> the command line too, so
  users of the bundle get the CLI without installing Python.

Kept tiny and free of heavy imports so ``--help`` stays fast.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

CLI_NAMES = {"prdit", "prdit.exe"}


def _honour_unbuffered() -> None:
    """Make ``PYTHONUNBUFFERED=1`` work in the bundle.

    The frozen interpreter ignores ``PYTHON*`` environment variables, yet the studio's process
    runner relies on ``PYTHONUNBUFFERED=1`` to stream a child's log lines (and tqdm bars) into its
    panels as they are printed instead of in 8 KiB blocks.
    """
    if os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and hasattr(stream, "reconfigure"):
                stream.reconfigure(write_through=True, line_buffering=True)


def main(argv: list[str] | None = None) -> int:
    # Needed before anything else when a worker process of a frozen program is started with the
    # "spawn" method (preprocessing pools, DataLoader workers); a no-op otherwise.
    multiprocessing.freeze_support()
    _honour_unbuffered()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["-m", "prdit"] or args[:1] == ["-mprdit"]:
        from prdit.cli import main as cli_main

        return cli_main(args[2:] if args[0] == "-m" else args[1:])
    if args[:1] == ["-m"]:
        print(
            f"{Path(sys.argv[0]).name}: only '-m prdit' is available in the packaged application",
            file=sys.stderr,
        )
        return 2
    if Path(sys.argv[0]).name in CLI_NAMES:
        from prdit.cli import main as cli_main

        return cli_main(args)
    from prdit_app.main import main as studio_main

    return studio_main(args)


if __name__ == "__main__":
    sys.exit(main())
