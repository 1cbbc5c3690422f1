"""A dark Fusion theme: CT images read best on a dark surround (less glare, truer grey levels).

Fusion + a palette keeps native widgets legible on every platform; the small stylesheet only
touches what the palette cannot (splitters, tabs, dock titles, toolbar buttons).
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#1e1f24"
PANEL = "#26282e"
TEXT = "#dcdde1"
ACCENT = "#3d8bd9"

_STYLE = f"""
QToolTip {{ color: {TEXT}; background-color: {PANEL}; border: 1px solid #4a4d55; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px; }}
QTabBar::tab {{ background: {PANEL}; padding: 5px 12px; border: 1px solid #33363d; }}
QTabBar::tab:selected {{ background: #34373f; border-bottom: 2px solid {ACCENT}; }}
QToolBar {{ background: {PANEL}; border: none; spacing: 4px; padding: 2px; }}
QToolButton:checked {{ background: #3a3f4a; border: 1px solid {ACCENT}; border-radius: 3px; }}
QStatusBar {{ background: {PANEL}; }}
QStatusBar QLabel {{ font-family: monospace; }}
"""


def dark_palette() -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: "#16171b",
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ff5555",
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#80838c",
    }
    for role, color in roles.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6e76"))
    return p


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style, dark palette, and the few stylesheet rules the palette cannot express."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(_STYLE)
