"""Output paths checked before any work, so a bad one is a message naming it, not a traceback
halfway through (``--out FILE/run`` where FILE is a file, a folder where a file must go)."""

from __future__ import annotations

import os
from pathlib import Path


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` (itself excluded) that is not a folder."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_folder(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder the command may create or fill; else :class:`prdit.cli.CliError`."""
    from prdit.cli import CliError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{option} {p}: is a file, not a folder")
    blocker = _blocking_file(p)
    if blocker is not None:
        raise CliError(f"{option} {p}: {blocker} is a file, so no folder can be made inside it")
    _check_writable(p, option)
    return p


def output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a file the command may write (its folder may not exist yet)."""
    from prdit.cli import CliError

    p = Path(path)
    if p.is_dir():
        raise CliError(f"{option} {p}: is a folder; give a file name")
    blocker = _blocking_file(p)
    if blocker is not None:
        raise CliError(f"{option} {p}: {blocker} is a file, so {p.name} cannot be written inside it")
    _check_writable(p.parent, option)
    return p


def _check_writable(folder: Path, option: str) -> None:
    from prdit.cli import CliError

    existing = next((q for q in (folder, *folder.parents) if q.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise CliError(f"{option} {folder}: {existing} is not writable")
