"""A panel layout that works both in the studio's narrow dock and in a wide floating dock.

Why: the panels live in the right-hand dock beside four image views. A layout that puts its form
beside its plots needs ~850 px, and a dock that cannot be narrower than its widest panel squeezes
the views to slivers. :class:`SettingsResultsLayout` puts the form (``controls``) *above* the
results (plots, tables, logs) while the panel is narrow, with one vertical scroll bar for the whole
panel, and *beside* them once the panel is at least ``wide`` pixels wide (a floated or widened
dock). Its minimum width is the widest child's, never their sum, so the dock can be ~400 px.

Inner splitters (e.g. two plots side by side) can be handed over too: they are stacked vertically
below ``stack_below`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QSplitter, QWidget

#: panel width from which the form goes beside the results
WIDE_PX = 900
#: panel width below which inner side-by-side splitters stack vertically
STACK_BELOW_PX = 620


def orientation_for(width: int, threshold: int) -> Qt.Orientation:
    """Horizontal (side by side) at ``threshold`` px and wider, vertical (stacked) below."""
    return Qt.Orientation.Horizontal if width >= threshold else Qt.Orientation.Vertical


class SettingsResultsLayout(QScrollArea):
    """``controls`` above ``results`` in a narrow panel, beside them in a wide one.

    Narrow: the two are stacked in one scrolling column; ``results`` gets at least
    ``narrow_results_height`` px so plots stay readable (the user scrolls down to them).
    Wide: ``controls`` is a column of ``controls_width`` px on the left, ``results`` fill the rest;
    the splitter handle between them can be dragged.
    """

    def __init__(
        self,
        controls: QWidget,
        results: QWidget,
        *,
        inner: Sequence[QSplitter] = (),
        wide: int = WIDE_PX,
        stack_below: int = STACK_BELOW_PX,
        controls_width: int = 380,
        narrow_results_height: int = 700,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.controls = controls
        self.results = results
        self.inner = list(inner)
        self.wide = wide
        self.stack_below = stack_below
        self.controls_width = controls_width
        self.narrow_results_height = narrow_results_height
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("settingsResultsSplit")
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(controls)
        self.split.addWidget(results)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.setWidget(self.split)
        for s in self.inner:
            s.setChildrenCollapsible(False)
            s.setOrientation(Qt.Orientation.Vertical)
        self._apply(Qt.Orientation.Vertical, force=True)

    def minimumSizeHint(self):  # noqa: N802 (Qt API)
        """As wide as the stacked content needs (no horizontal scrolling), any height (it scrolls)."""
        hint = super().minimumSizeHint()
        content = max(self.controls.minimumSizeHint().width(), self.results.minimumSizeHint().width())
        hint.setWidth(content + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth())
        return hint

    @property
    def is_wide(self) -> bool:
        return self.split.orientation() == Qt.Orientation.Horizontal

    def adapt(self, width: int) -> None:
        """Choose the arrangement for a panel ``width`` px wide (called on every resize)."""
        want = orientation_for(width, self.wide)
        inner = orientation_for(
            width - self.controls_width if want == Qt.Orientation.Horizontal else width, self.stack_below
        )
        for s in self.inner:  # first: the results' minimum height depends on it
            if s.orientation() != inner:
                s.setOrientation(inner)
        self._apply(want)

    def _apply(self, want: Qt.Orientation, force: bool = False) -> None:
        changed = force or self.split.orientation() != want
        if want == Qt.Orientation.Horizontal:
            if changed:
                self.split.setOrientation(want)
                self.results.setMinimumHeight(0)
                self.split.setSizes([self.controls_width, max(1, self.width() - self.controls_width)])
            return
        # stacked: the results keep at least their own minimum (an explicit minimum height would
        # override what their children need)
        self.results.setMinimumHeight(0)
        self.results.setMinimumHeight(
            max(self.narrow_results_height, self.results.minimumSizeHint().height())
        )
        if changed:
            self.split.setOrientation(want)
            self.split.setSizes([self.controls.sizeHint().height(), self.results.minimumHeight()])

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.adapt(event.size().width())
        super().resizeEvent(event)
