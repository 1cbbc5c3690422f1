"""Where the bundled resources (presets, configs, icons, the default model) live.

The repository keeps them in ``resources/`` beside the packages; a frozen PyInstaller build puts
them under ``sys._MEIPASS``; ``PRDIT_RESOURCES`` overrides both for unusual installs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _installed_candidates() -> list[Path]:
    """Where a wheel's data files land: the environment's prefix, or the user base for --user."""
    import site

    prefixes = [sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None) or ""]
    return [Path(p) / "share" / "prdit-studio" / "resources" for p in prefixes if p]


def resources_dir() -> Path:
    env = os.environ.get("PRDIT_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    source_tree = Path(__file__).resolve().parent.parent / "resources"
    if source_tree.is_dir():  # a checkout or an editable install
        return source_tree
    for candidate in _installed_candidates():
        if candidate.is_dir():
            return candidate
    return source_tree  # callers report the missing file with this path


def resource(*parts: str) -> Path:
    """Path of a file inside the resources folder (it may not exist; callers check)."""
    return resources_dir().joinpath(*parts)


MODEL_SUFFIXES = (".safetensors", ".pt", ".pth")


def bundled_models(models_dir: Path | None = None) -> list[Path]:
    """Checkpoints shipped in ``resources/models``: single files and checkpoint folders.

    ``default.*`` (or the folder ``default``) comes first: it is the one the studio preselects and
    ``prdit sample`` uses when given no checkpoint.
    """
    folder = Path(models_dir) if models_dir is not None else resource("models")
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix in MODEL_SUFFIXES:
            found.append(p)
        elif p.is_dir() and ((p / "meta.json").is_file() or (p / "checkpoints").is_dir()):
            found.append(p)
    found.sort(key=lambda p: (p.stem != "default", p.name))
    return found


def bundled_model(name: str = "default", models_dir: Path | None = None) -> Path | None:
    """The bundled model called ``name`` (its file stem, e.g. ``default`` or ``fast-32``), or None."""
    return next((p for p in bundled_models(models_dir) if p.stem == name or p.name == name), None)


class NoSuchModelError(ValueError):
    """Neither an existing path nor the name of a bundled model."""


def resolve_model_arg(arg: str | None) -> Path:
    """A command-line model argument: a path as given, else a bundled model by name; None: the default.

    Anything that looks like a path (a separator or a suffix) stays a path even when missing, so
    the loader reports it by its name; a bare word that is neither gets the bundled names listed.
    """
    if arg is not None and (Path(arg).exists() or Path(arg).suffix or "/" in arg or os.sep in arg):
        return Path(arg)
    found = bundled_model(arg or "default")
    if found is None:
        names = ", ".join(p.stem for p in bundled_models()) or "none"
        raise NoSuchModelError(
            f"no checkpoint {arg or '(none given)'}: not a file or folder, and not a bundled model in "
            f"{resource('models')} (bundled: {names})"
        )
    return found
