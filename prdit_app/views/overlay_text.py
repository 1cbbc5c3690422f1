"""Text drawn over images that stays legible on any background: a dark outline around light glyphs.

Plain coloured text on a slice vanishes where the tissue under it has the same brightness (the W/L
read-out and the orientation letters over bone in a bone window). Clinical viewers outline or
shadow their overlays; this label strokes each glyph's outline in near-black, then fills it.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QLabel, QWidget

OUTLINE = 3.0  # px: the dark stroke around each glyph


class OverlayLabel(QLabel):
    """A QLabel for one or more lines of plain text, painted with a dark outline."""

    def __init__(
        self, parent: QWidget | None = None, color: str = "#ffffff", bold: bool = False, point_size: int = 9
    ) -> None:
        super().__init__(parent)
        font = QFont()
        font.setPointSize(point_size)
        font.setBold(bold)
        self.setFont(font)
        self._color = QColor(color)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setStyleSheet("background: transparent; border: none;")

    def color(self) -> QColor:
        return QColor(self._color)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        fm = self.fontMetrics()
        lines = self.text().splitlines() or [""]
        width = max(fm.horizontalAdvance(line) for line in lines)
        pad = int(2 * OUTLINE)
        return QSize(width + pad, fm.height() * len(lines) + pad)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return self.sizeHint()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        fm = self.fontMetrics()
        path = QPainterPath()
        y = OUTLINE + fm.ascent()
        for line in self.text().splitlines():
            path.addText(QPointF(OUTLINE, y), self.font(), line)
            y += fm.height()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.strokePath(
            path,
            QPen(
                QColor(0, 0, 0, 230),
                OUTLINE,
                Qt.PenStyle.SolidLine,
                Qt.PenCapStyle.RoundCap,
                Qt.PenJoinStyle.RoundJoin,
            ),
        )
        painter.fillPath(path, self._color)
        painter.end()
