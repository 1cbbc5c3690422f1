"""What the studio remembers between runs (QSettings): window layout, last folder, recent files.

``PRDIT_SETTINGS=/path/file.ini`` stores them in that INI file instead of the user's profile —
tests and scripted screenshots use it so they never read or change a user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10
ORGANIZATION = "PRDiT"
APPLICATION = "PRDiT Studio"


class Settings:
    """Typed accessors over QSettings (which stores everything as variants/strings)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        if qsettings is None:
            path = os.environ.get("PRDIT_SETTINGS")
            if path:
                qsettings = QSettings(path, QSettings.Format.IniFormat)
            else:
                qsettings = QSettings(ORGANIZATION, APPLICATION)
        self.q = qsettings

    # recent files ------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.q.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a bare string for one-element lists
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent_file(self, path: str | os.PathLike) -> list[str]:
        p = str(Path(path).resolve())
        items = [p] + [r for r in self.recent_files() if r != p]
        items = items[:MAX_RECENT]
        self.q.setValue("recent_files", items)
        return items

    def remove_recent_file(self, path: str) -> None:
        self.q.setValue("recent_files", [r for r in self.recent_files() if r != path])

    def clear_recent_files(self) -> None:
        self.q.setValue("recent_files", [])

    # folders -----------------------------------------------------------------
    def last_folder(self) -> str:
        value = str(self.q.value("last_folder", "") or "")
        return value if value and Path(value).is_dir() else str(Path.home())

    def set_last_folder(self, path: str | os.PathLike) -> None:
        p = Path(path)
        self.q.setValue("last_folder", str(p if p.is_dir() else p.parent))

    # window ------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        v = self.q.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        v = self.q.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    # display -----------------------------------------------------------------
    def value(self, key: str, default: str = "") -> str:
        return str(self.q.value(key, default) or default)

    def set_value(self, key: str, value: str) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()
