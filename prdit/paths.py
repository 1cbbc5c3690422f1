"""Where the bundled resources (presets, configs, icons, the default model) live.

The repository keeps them in ``resources/`` beside the packages; a frozen PyInstaller build puts
them under ``sys._MEIPASS``; ``PRDIT_RESOURCES`` overrides both for unusual installs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    env = os.environ.get("PRDIT_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    """Path of a file inside the resources folder (it may not exist; callers check)."""
    return resources_dir().joinpath(*parts)
