"""Screenshots of a view or the whole window, saved as PNG atomically.

``QWidget.grab()`` renders widgets through Qt's painter, which cannot see a native OpenGL surface:
the VTK widget comes out black or as garbage. When a native VTK surface is inside the widget and a
real display (X11/Xvfb) is present we grab the window's pixels from the screen instead
(``QScreen.grabWindow``), which captures exactly what the user sees.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QPoint
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QWidget

from prdit.atomic import atomic_path

NATIVE_GL_PROPERTY = "prdit_native_gl"


def has_native_gl(widget: QWidget) -> bool:
    """True when ``widget`` is or contains a visible native OpenGL (QVTK) surface."""
    if widget.property(NATIVE_GL_PROPERTY):
        return widget.isVisible()
    return any(w.property(NATIVE_GL_PROPERTY) and w.isVisible() for w in widget.findChildren(QWidget))


def grab(widget: QWidget) -> QImage:
    """What ``widget`` shows on screen, as an image (works with VTK's native GL widget under X)."""
    app = QGuiApplication.instance()
    if (
        app is not None
        and has_native_gl(widget)
        and QGuiApplication.platformName() not in ("offscreen", "minimal")
    ):
        window = widget.window()
        screen = window.screen() or QGuiApplication.primaryScreen()
        app.processEvents()
        if widget is window:
            pixmap = screen.grabWindow(window.winId())
        else:
            pos = widget.mapTo(window, QPoint(0, 0))
            pixmap = screen.grabWindow(window.winId(), pos.x(), pos.y(), widget.width(), widget.height())
        # grabWindow returns device pixels; keep them (sharper on HiDPI screens)
        return pixmap.toImage()
    return widget.grab().toImage()


def save_png(image: QImage, path: str | os.PathLike) -> Path:
    """Write ``image`` to ``path`` as PNG via a temp file + ``os.replace`` (never half-written)."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        target = target.with_suffix(target.suffix + ".png") if target.suffix else target.with_suffix(".png")
    if image.isNull() or image.width() == 0:
        raise ValueError(f"nothing to save to {target}: the captured image is empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".png") as tmp:
        if not image.save(str(tmp), "PNG"):
            raise OSError(f"could not write PNG data to {target} (is the folder writable?)")
    return target


def save_screenshot(widget: QWidget, path: str | os.PathLike) -> Path:
    """Grab ``widget`` (see :func:`grab`) and save it as a PNG at ``path``."""
    return save_png(grab(widget), path)
