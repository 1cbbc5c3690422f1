"""The studio's main window: 2x2 views (axial, sagittal / coronal, 3D), menus, toolbar, panels dock.

The window wires things together and owns no image state: the :class:`ViewerState` does. Files
open from the File menu, the command line, drag and drop and the recent-files list, all through
:meth:`MainWindow.open_path`, which reports bad input in a dialog naming the file and the problem
and leaves whatever was open untouched.

Panels (Generate, Train, Evaluate, ...) go into the right-hand dock via :meth:`MainWindow.add_panel`.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QSizePolicy,
    QTabWidget,
    QWidget,
)

from prdit.volume import Volume
from prdit_app import dialogs
from prdit_app.panels.volume_info import InfoPanel
from prdit_app.presets import window_level_preset, window_level_presets
from prdit_app.screenshot import NATIVE_GL_PROPERTY, save_screenshot
from prdit_app.settings import Settings
from prdit_app.state import NEUROLOGICAL, RADIOLOGICAL, ViewerState
from prdit_app.views.slices import SliceView

OPEN_FILTER = (
    "Volumes (*.nii *.nii.gz *.npy *.npz *.mha *.mhd *.nrrd *.nhdr *.dcm);;"
    "NIfTI (*.nii *.nii.gz);;NumPy (*.npy *.npz);;MetaImage / NRRD (*.mha *.mhd *.nrrd *.nhdr);;"
    "DICOM file (*.dcm);;All files (*)"
)
VIEW_NAMES = ("axial", "sagittal", "coronal", "3d")
#: the panels dock's width with fresh settings: every panel works at it, and at 1600 px the four
#: views keep ~570 px each
DOCK_DEFAULT_WIDTH = 430
#: version of the saved dock/toolbar layout (QMainWindow.saveState). Raised to 1 when the dock's
#: default became narrow: layouts saved before kept a dock wide enough to squeeze the views.
WINDOW_STATE_VERSION = 1


def app_icon() -> QIcon:
    """The application icon (SVG plus PNG sizes in resources/icons)."""
    from prdit.paths import resource

    icon = QIcon()
    folder = resource("icons")
    for size in (16, 24, 32, 48, 64, 128, 256):
        png = folder / f"prdit-studio-{size}.png"
        if png.exists():
            icon.addFile(str(png))
    svg = folder / "prdit-studio.svg"
    if icon.isNull() and svg.exists():
        icon.addFile(str(svg))
    return icon


class ViewGrid(QWidget):
    """Four panes in a 2x2 grid; one can be maximised to fill the grid and restored."""

    maximisedChanged = Signal(str)  # pane name, or "" when restored

    def __init__(self, panes: dict[str, QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panes = panes
        layout = QGridLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(3)
        for (name, widget), (r, c) in zip(panes.items(), [(0, 0), (0, 1), (1, 0), (1, 1)], strict=False):
            widget.setObjectName(f"pane-{name}")
            layout.addWidget(widget, r, c)
        for i in range(2):
            layout.setRowStretch(i, 1)
            layout.setColumnStretch(i, 1)
        self.maximised = ""

    def maximise(self, name: str) -> None:
        if name not in self.panes:
            raise ValueError(f"no view named {name!r}; views: {', '.join(self.panes)}")
        for n, w in self.panes.items():
            w.setVisible(n == name)
        self.maximised = name
        self.maximisedChanged.emit(name)

    def restore(self) -> None:
        for w in self.panes.values():
            w.setVisible(True)
        self.maximised = ""
        self.maximisedChanged.emit("")

    def toggle(self, name: str) -> None:
        if self.maximised:
            self.restore()
        else:
            self.maximise(name)


class PanelTabs(QTabWidget):
    """The dock's tab widget. Its size hint is the dock's default width, not the widest panel's
    natural width (QMainWindow sizes a new dock from it), so panels never squeeze the views."""

    def sizeHint(self):  # noqa: N802 (Qt API)
        hint = super().sizeHint()
        hint.setWidth(max(DOCK_DEFAULT_WIDTH, self.minimumSizeHint().width()))
        return hint


class _EnterFilter(QObject):
    """Remembers which view the mouse entered last (for keyboard actions like maximise)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QEvent.Type.Enter:
            name = obj.objectName().removeprefix("pane-")
            if name in VIEW_NAMES:
                self._window.active_view = name
        return False


class MainWindow(QMainWindow):
    """PRDiT Studio's main window. ``enable_3d=False`` runs without VTK (no OpenGL at all)."""

    volumeOpened = Signal(str)  # the source (path or description) of a volume that opened
    regionToolChanged = Signal(object)  # the edit-region drawing tool: "box", "sphere" or None

    def __init__(
        self,
        state: ViewerState | None = None,
        settings: Settings | None = None,
        *,
        enable_3d: bool = True,
        vtk_offscreen: bool | None = None,
    ) -> None:
        super().__init__()
        self.state = state or ViewerState(self)
        self.settings = settings or Settings()
        self.setWindowTitle("PRDiT Studio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.active_view = "axial"

        self.axial = SliceView(self.state, "axial")
        self.coronal = SliceView(self.state, "coronal")
        self.sagittal = SliceView(self.state, "sagittal")
        self.volume3d = None
        if enable_3d:
            from prdit_app.views.volume3d import Volume3DView

            self.volume3d = Volume3DView(self.state, offscreen=vtk_offscreen)
            if not self.volume3d.offscreen:
                self.volume3d.surface.setProperty(NATIVE_GL_PROPERTY, True)
            third = self.volume3d
        else:
            third = QLabel("3D view disabled (--no-3d)")
            third.setAlignment(Qt.AlignmentFlag.AlignCenter)
            third.setStyleSheet("color: #888; border: 2px solid #444;")
        third.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.views: dict[str, QWidget] = {
            "axial": self.axial,
            "sagittal": self.sagittal,
            "coronal": self.coronal,
            "3d": third,
        }
        self.grid = ViewGrid(self.views)
        self.setCentralWidget(self.grid)
        self._enter_filter = _EnterFilter(self)
        for widget in self.views.values():
            widget.installEventFilter(self._enter_filter)
        for view in (self.axial, self.coronal, self.sagittal):
            view.hovered.connect(self._show_probe)
            view.maximiseRequested.connect(self.grid.toggle)

        # right-hand dock: the panels (Generate, Train, Evaluate, ...) are tabs in it
        self.panel_tabs = PanelTabs()
        self.panel_tabs.setDocumentMode(True)
        self.info_panel = InfoPanel(self.state)
        self.panel_tabs.addTab(self.info_panel, "Volume")
        from prdit_app.panels.labels import LabelsPanel

        self.labels_panel = LabelsPanel(self.state, open_labels=self.open_labels_dialog)
        self.panel_tabs.addTab(self.labels_panel, "Labels")
        self.dock = QDockWidget("Panels", self)
        self.dock.setObjectName("panels-dock")
        self.dock.setWidget(self.panel_tabs)
        self.dock.setAllowedAreas(
            Qt.DockWidgetArea.RightDockWidgetArea | Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)

        self.probe_label = QLabel("")
        self.statusBar().addPermanentWidget(self.probe_label)
        self.state.windowLevelChanged.connect(self._show_window_level)

        self._build_actions()
        self._build_menus_and_toolbar()
        if self.settings.geometry() is None:
            self.resize(1400, 900)
        self._restore_settings()

    # ------------------------------------------------------------------ actions
    def _action(
        self, text: str, slot, shortcut: str | QKeySequence | None = None, *, tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even when menus/toolbars are hidden
        return action

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_open = self._action("&Open file...", self.open_file_dialog, K.Open, tip="Open a volume file")
        self.act_open_dicom = self._action("Open DICOM &folder...", self.open_dicom_dialog, "Ctrl+Shift+O")
        self.act_phantom = self._action("Open &phantom...", self.open_phantom_dialog, "Ctrl+Shift+P")
        self.act_open_labels = self._action(
            "Open &label map...",
            self.open_labels_dialog,
            "Ctrl+Shift+L",
            tip="A segmentation of the open volume: NIfTI (integer labels) or DICOM SEG",
        )
        self.act_quit = self._action("&Quit", self.close, K.Quit)
        self.act_shot_window = self._action(
            "Screenshot of the &window...", lambda: self.screenshot_dialog("window"), "Ctrl+Shift+S"
        )
        self.act_shot_views = {
            name: self._action(
                f"Screenshot of the {name if name != '3d' else '3D'} view...",
                lambda _=False, n=name: self.screenshot_dialog(n),
            )
            for name in VIEW_NAMES
        }
        self.act_shot_active = self._action(
            "Screenshot of the &active view...",
            lambda: self.screenshot_dialog(self.active_view),
            "Ctrl+Alt+S",
        )
        self.wl_actions: list[QAction] = []
        for p in window_level_presets():
            a = self._action(
                f"{p.label} (W {p.width:.0f} / L {p.level:.0f})",
                lambda _=False, n=p.name: self.apply_wl_preset(n),
                p.shortcut or None,
            )
            a.setIconText(p.label)
            a.setToolTip(f"{p.label}: width {p.width:.0f} HU, level {p.level:.0f} HU ({p.shortcut})")
            self.wl_actions.append(a)
        self.act_auto_window = self._action(
            "&Auto (from the data)",
            self.apply_auto_window,
            "A",
            tip="Window from the volume's own values (1st-99th percentile): for MR, PET or unitless data",
        )
        self.act_auto_window.setIconText("Auto")
        self.act_auto_window.setToolTip("Auto window from the data's 1st-99th percentiles (A)")
        self.measure_actions: dict[str, QAction] = {}
        for tool, text, key in (
            ("ruler", "&Ruler (mm)", "M"),
            ("ellipse", "&Ellipse region (HU statistics)", "E"),
            ("box", "&Box region (HU statistics)", "B"),
        ):
            a = self._action(
                text,
                lambda _=False, t=tool: self.set_measure_tool(t),
                key,
                tip="Left-drag on a slice to draw; right-click a measurement to remove it",
            )
            a.setCheckable(True)
            a.setIconText(tool.capitalize())
            self.measure_actions[tool] = a
        self.act_clear_measurements = self._action(
            "&Clear measurements", self.clear_measurements, "Ctrl+Shift+M"
        )
        self.act_stop_measuring = self._action(
            "Stop measuring", lambda: self.set_measure_tool(None), "Escape"
        )
        self.act_neuro = self._action(
            "&Neurological convention (patient right on screen right)", self._toggle_convention, "Ctrl+L"
        )
        self.act_neuro.setCheckable(True)
        self.act_maximise = self._action("&Maximise / restore the active view", self._toggle_maximise, "F")
        self.act_reset = self._action("&Reset views (zoom, pan, 3D camera)", self.reset_views, "R")
        self.act_next = self._action("Next slice", lambda: self._step(1), "Up")
        self.act_prev = self._action("Previous slice", lambda: self._step(-1), "Down")
        self.act_next_page = self._action("10 slices forward", lambda: self._step(10), "PgUp")
        self.act_prev_page = self._action("10 slices back", lambda: self._step(-10), "PgDown")
        self.act_center = self._action("&Centre the crosshair", self.center_cursor, "C")
        self.act_dock = self.dock.toggleViewAction()
        self.act_dock.setShortcut(QKeySequence("Ctrl+D"))
        self.act_planes = self._action("Show slice &planes in 3D", self._toggle_planes, "P")
        self.act_planes.setCheckable(True)
        self.act_planes.setChecked(True)
        self.act_shortcuts = self._action("&Keyboard shortcuts", self.show_shortcuts, K.HelpContents)
        self.act_about = self._action("&About PRDiT Studio", lambda: dialogs.show_about(self))
        if self.volume3d is None:
            self.act_planes.setEnabled(False)
            self.act_shot_views["3d"].setEnabled(False)

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        m_file = mb.addMenu("&File")
        m_file.addActions([self.act_open, self.act_open_dicom, self.act_phantom, self.act_open_labels])
        self.recent_menu = QMenu("Open &recent", self)
        m_file.addMenu(self.recent_menu)
        m_file.addSeparator()
        m_shots = m_file.addMenu("&Save screenshot")
        m_shots.addAction(self.act_shot_window)
        m_shots.addAction(self.act_shot_active)
        m_shots.addSeparator()
        m_shots.addActions(list(self.act_shot_views.values()))
        m_file.addSeparator()
        m_file.addAction(self.act_quit)

        m_view = mb.addMenu("&View")
        m_wl = m_view.addMenu("&Window / level")
        m_wl.addAction(self.act_auto_window)
        m_wl.addSeparator()
        m_wl.addActions(self.wl_actions)
        m_view.addAction(self.act_neuro)
        m_measure = m_view.addMenu("&Measure")
        m_measure.addActions(list(self.measure_actions.values()))
        m_measure.addActions([self.act_clear_measurements, self.act_stop_measuring])
        m_view.addSeparator()
        m_view.addActions([self.act_maximise, self.act_reset, self.act_center])
        m_view.addActions([self.act_next, self.act_prev, self.act_next_page, self.act_prev_page])
        m_view.addSeparator()
        self.vr_menu = m_view.addMenu("3D &rendering preset")
        m_view.addAction(self.act_planes)
        m_view.addAction(self.act_dock)

        m_help = mb.addMenu("&Help")
        m_help.addActions([self.act_shortcuts, self.act_about])

        tb = self.addToolBar("Main")
        tb.setObjectName("main-toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addAction(self.act_open)
        tb.addSeparator()
        tb.addWidget(QLabel(" W/L: "))
        tb.addAction(self.act_auto_window)
        for a in self.wl_actions:
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" Measure: "))
        for a in self.measure_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" 3D: "))
        self.vr_combo = QComboBox()
        self.vr_combo.setToolTip("Volume-rendering preset (3D Slicer style)")
        self.vr_group = QActionGroup(self)
        if self.volume3d is not None:
            from prdit_app.presets import volume_rendering_presets

            for name, preset in volume_rendering_presets().items():
                self.vr_combo.addItem(name)
                self.vr_combo.setItemData(
                    self.vr_combo.count() - 1, preset.description, Qt.ItemDataRole.ToolTipRole
                )
                a = QAction(name, self.vr_group)
                a.setCheckable(True)
                a.triggered.connect(lambda _=False, n=name: self.set_vr_preset(n))
                self.vr_menu.addAction(a)
            self.vr_combo.setCurrentText(self.volume3d.preset_name)
            self.vr_combo.currentTextChanged.connect(self.set_vr_preset)
        else:
            self.vr_combo.setEnabled(False)
            self.vr_menu.setEnabled(False)
        tb.addWidget(self.vr_combo)
        tb.addSeparator()
        tb.addAction(self.act_maximise)
        self.act_maximise.setIconText("Maximise")
        tb.addAction(self.act_reset)
        self.act_reset.setIconText("Reset")
        tb.addAction(self.act_shot_window)
        self.act_shot_window.setIconText("Screenshot")
        self.toolbar = tb

    def shortcut_list(self) -> list[tuple[str, str]]:
        """(keys, action text) for every action with a shortcut — what Help shows."""
        out = []
        for a in self.actions():
            seq = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if seq:
                out.append((seq, a.text().replace("&", "").rstrip(".")))
        if self.act_dock.shortcut().toString():
            out.append((self.act_dock.shortcut().toString(), "Show / hide the panels dock"))
        return out

    def show_shortcuts(self) -> None:
        dialogs.ShortcutsDialog(self.shortcut_list(), self).show()

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        s = self.settings
        if (g := s.geometry()) is not None:
            self.restoreGeometry(g)
        if (st := s.window_state()) is not None:
            self.restoreState(st, WINDOW_STATE_VERSION)  # ignored when saved by an older layout
        if s.value("display/convention", RADIOLOGICAL) == NEUROLOGICAL:
            self.act_neuro.setChecked(True)
            self.state.set_convention(NEUROLOGICAL)
        vr = s.value("display/vr_preset", "")
        if vr and self.volume3d is not None:
            try:
                self.set_vr_preset(vr)
            except ValueError:
                pass  # a preset that no longer exists: keep the default
        self._rebuild_recent_menu()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.settings.save_window(self.saveGeometry(), self.saveState(WINDOW_STATE_VERSION))
        self.settings.set_value("display/convention", self.state.convention)
        if self.volume3d is not None:
            self.settings.set_value("display/vr_preset", self.volume3d.preset_name)
            self.volume3d.close_vtk()
        self.settings.sync()
        super().closeEvent(event)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            a = self.recent_menu.addAction(path)
            a.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _clear_recent(self) -> None:
        self.settings.clear_recent_files()
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------ opening
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a CT volume", self.settings.last_folder(), OPEN_FILTER
        )
        if path:
            self.open_path(path)

    def open_dicom_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a DICOM folder", self.settings.last_folder())
        if path:
            self.open_path(path)

    def open_phantom_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        seed, ok = QInputDialog.getInt(self, "Open a phantom", "Seed:", 0, 0, 2**31 - 1)
        if not ok:
            return
        size, ok = QInputDialog.getInt(self, "Open a phantom", "Size (voxels per side):", 128, 16, 512, 16)
        if ok:
            self.open_phantom(seed, size)

    def open_path(self, path: str | os.PathLike, series_uid: str | None = None) -> bool:
        """Open a file or DICOM folder. On failure a dialog names the file and the problem; the
        current volume stays. Returns True when the volume was opened."""
        from prdit.data.io import MultipleSeriesError, VolumeReadError, read_volume

        path = str(path)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        self.statusBar().showMessage(f"Reading {path} ...")
        try:
            try:
                volume = read_volume(path, series_uid, allow_2d=True)
            except MultipleSeriesError as exc:
                QApplication.restoreOverrideCursor()
                if dialogs.scripted():  # no one can answer a chooser: name the series instead
                    self._report_open_error(path, str(exc))
                    return False
                chooser = dialogs.SeriesChooserDialog(path, exc.series, self)
                if chooser.exec() != chooser.DialogCode.Accepted or not chooser.selected_uid():
                    self.statusBar().showMessage("Opening cancelled", 3000)
                    return False
                QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
                volume = read_volume(path, chooser.selected_uid(), allow_2d=True)
        except VolumeReadError as exc:
            self._report_open_error(path, str(exc))
            return False
        except MemoryError:
            self._report_open_error(path, f"{path}: not enough memory to load it")
            return False
        except Exception as exc:  # a reader bug must not take the app (and the open volume) down
            self._report_open_error(path, f"{path}: unexpected {type(exc).__name__}: {exc}")
            return False
        finally:
            if QApplication.overrideCursor() is not None:
                QApplication.restoreOverrideCursor()
        self.set_volume(volume, source=path)
        if volume.metadata.get("single_slice") or min(volume.shape) == 1:
            self.statusBar().showMessage(
                f"Opened {Path(path).name}: a single slice ({volume.shape[2]}x{volume.shape[1]}); "
                "the 3D view shows its outline only",
                8000,
            )
        self.settings.add_recent_file(path)
        self.settings.set_last_folder(path)
        self._rebuild_recent_menu()
        return True

    def _report_open_error(self, path: str, message: str) -> None:
        """The reason goes into the window: a dialog, and the status bar (which a scripted
        screenshot shows) keeps it until the next message."""
        text = message if path in message else f"{path}: {message}"
        self.statusBar().showMessage(f"Could not open {Path(path).name}: {text.splitlines()[0]}")
        dialogs.show_error(self, "Cannot open volume", text)

    def open_phantom(self, seed: int, size: int = 128) -> bool:
        """A procedural chest phantom, with its structure label map (the Labels tab)."""
        from prdit.data.labels import phantom_label_map
        from prdit.data.phantom import generate_phantom

        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            result = generate_phantom(int(seed), int(size), return_labels=True)
        except (ValueError, MemoryError) as exc:
            dialogs.show_error(self, "Cannot make phantom", f"phantom seed {seed}, size {size}: {exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        source = f"phantom seed {seed}, {size}^3"
        self.set_volume(result.volume, source=source)
        self.state.set_labels(phantom_label_map(result.labels, source=f"{source} (its structures)"))
        return True

    def open_labels_dialog(self) -> None:
        if self.state.volume is None:
            dialogs.show_error(self, "No volume", "Open a volume first: a label map is drawn over it.")
            return
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open label map",
            self.settings.last_folder(),
            "Label maps (*.nii *.nii.gz *.dcm *.nrrd *.mha *.npy *.npz);;All files (*)",
        )
        if path:
            self.open_labels(path)

    def open_labels(self, path: str | os.PathLike) -> bool:
        """Overlay a segmentation of the open volume; a map that does not fit is refused with why."""
        from prdit.data.labels import LabelMapError, read_label_map

        path = str(path)
        if self.state.volume is None:
            self._report_open_error(path, "open a volume first: a label map is drawn over it")
            return False
        try:
            labels = read_label_map(path, self.state.volume)
        except LabelMapError as exc:
            self.statusBar().showMessage(f"Label map not opened: {str(exc).splitlines()[0]}")
            dialogs.show_error(self, "Cannot open label map", str(exc))
            return False
        self.state.set_labels(labels)
        self.panel_tabs.setCurrentWidget(self.labels_panel)
        self.statusBar().showMessage(f"Label map {Path(path).name}: {len(labels.labels())} labels", 5000)
        return True

    def set_volume(self, volume: Volume, *, source: str = "", keep_view: bool = False) -> None:
        """Show a volume (what the panels call; ``keep_view`` for streamed frames of one scene)."""
        self.state.set_volume(volume, keep_view=keep_view, source=source or None)
        if not keep_view:
            name = Path(source).name if source and os.path.exists(source) else source
            self.setWindowTitle(f"PRDiT Studio - {name}" if name else "PRDiT Studio")
            self.volumeOpened.emit(source)
            self.statusBar().showMessage(f"Opened {source}" if source else "Volume opened", 4000)

    def show_generated(self, volume: Volume) -> None:
        """For the Generate panel: one sampling step (same scene: cursor, zoom and W/L stay)."""
        self.state.set_volume(volume, keep_view=True, source="generated volume")

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    # ------------------------------------------------------------------ display
    def apply_wl_preset(self, name: str) -> None:
        """A named window/level preset, or ``auto`` (:meth:`apply_auto_window`)."""
        if name.strip().lower() == "auto":
            self.apply_auto_window()
            return
        p = window_level_preset(name)
        self.state.set_window_level(p.width, p.level)

    def set_measure_tool(self, tool: str | None) -> None:
        """Left-drag draws ``tool`` (ruler, ellipse, box) in every slice view; the active tool's
        action toggles it off again (None: left-drag is window/level)."""
        current = self.axial.measure.mode
        tool = None if tool == current else tool
        for name, action in self.measure_actions.items():
            action.setChecked(name == tool)
        for view in (self.axial, self.coronal, self.sagittal):
            view.measure.set_mode(tool)
            if tool is not None or view.region.drawing_kind is not None:
                view.region.drawing_kind = None  # one drawing tool at a time
        self.regionToolChanged.emit(None)
        self.statusBar().showMessage(
            f"Measuring: left-drag draws a {tool}; Escape or the same tool again stops"
            if tool
            else "Left-drag: window / level",
            4000,
        )

    def set_region_tool(self, kind: str | None) -> None:
        """Left-drag draws the edit region (``box`` or ``sphere``) in every slice view (the Edit
        panel's Draw button); None: back to window/level. Measuring stops meanwhile."""
        for action in self.measure_actions.values():
            action.setChecked(False)
        for view in (self.axial, self.coronal, self.sagittal):
            view.measure.set_mode(None)
            view.region.drawing_kind = kind
        self.regionToolChanged.emit(kind)
        self.statusBar().showMessage(
            f"Edit region: left-drag on a slice draws a {kind}; Escape stops"
            if kind
            else "Left-drag: window / level",
            4000,
        )

    def clear_measurements(self) -> None:
        for view in (self.axial, self.coronal, self.sagittal):
            view.measure.clear()

    def apply_auto_window(self) -> None:
        chosen = self.state.apply_auto_window()
        if chosen is not None:
            self.statusBar().showMessage(
                f"Auto window from the data: W {chosen[0]:.0f}  L {chosen[1]:.0f}", 4000
            )

    def set_vr_preset(self, name: str) -> None:
        if self.volume3d is None:
            return
        self.volume3d.set_preset(name)
        current = self.volume3d.preset_name
        if self.vr_combo.currentText() != current:
            self.vr_combo.blockSignals(True)
            self.vr_combo.setCurrentText(current)
            self.vr_combo.blockSignals(False)
        for a in self.vr_group.actions():
            a.setChecked(a.text() == current)

    def _toggle_convention(self) -> None:
        self.state.set_convention(NEUROLOGICAL if self.act_neuro.isChecked() else RADIOLOGICAL)

    def _toggle_planes(self) -> None:
        if self.volume3d is not None:
            self.volume3d.set_planes_visible(self.act_planes.isChecked())

    def _toggle_maximise(self) -> None:
        self.grid.toggle(self.active_view)

    def _step(self, n: int) -> None:
        view = {"axial": self.axial, "coronal": self.coronal, "sagittal": self.sagittal}.get(self.active_view)
        if view is not None:
            view.scroll(n)

    def center_cursor(self) -> None:
        if self.state.volume is not None:
            self.state.set_cursor_lps(self.state.volume.center_lps())

    def reset_views(self) -> None:
        for v in (self.axial, self.coronal, self.sagittal):
            v.reset_view()
        if self.volume3d is not None:
            self.volume3d.reset_camera()

    def _show_window_level(self, width: float, level: float) -> None:
        self.statusBar().showMessage(f"Window {width:.0f}  Level {level:.0f}", 2000)

    def _show_probe(self, probe: dict | None) -> None:
        if probe is None:
            self.probe_label.setText("")
            return
        i, j, k = probe["ijk"]
        x, y, z = probe["lps"]
        value = probe["value"]
        unit = self.state.value_unit
        shown = f"{value:.0f}" if float(value).is_integer() else f"{value:.5g}"
        text = (
            f"voxel (i,j,k) = ({i}, {j}, {k})   LPS = ({x:.1f}, {y:.1f}, {z:.1f}) mm   "
            f"{unit or 'value'} = {shown}"
        )
        if self.state.labels is not None:
            text += f"   label: {probe.get('label') or '-'}"
        self.probe_label.setText(text)

    # ------------------------------------------------------------------ panels
    def add_panel(self, widget: QWidget, title: str) -> int:
        """Add a panel (Generate, Train, Evaluate, ...) as a tab of the right-hand dock; returns its index."""
        index = self.panel_tabs.addTab(widget, title)
        self.dock.show()
        return index

    # ------------------------------------------------------------------ screenshots
    def screenshot_target(self, target: str) -> QWidget:
        if target == "window":
            return self
        if target not in self.views:
            raise ValueError(f"unknown screenshot target {target!r}; choose window, {', '.join(self.views)}")
        if target == "3d" and self.volume3d is not None:
            self.volume3d.render_now()
        return self.views[target]

    def view_rects(self) -> dict[str, list[int]]:
        """Each visible view's rectangle [x, y, w, h] in window pixels (scripted mode prints it)."""
        out = {}
        for name, widget in self.views.items():
            if widget.isVisible():
                p = widget.mapTo(self, QPoint(0, 0))
                out[name] = [p.x(), p.y(), widget.width(), widget.height()]
        return out

    def save_screenshot(self, path: str | os.PathLike, target: str = "window") -> Path:
        """Save a PNG of the whole window or one view ('axial', 'coronal', 'sagittal', '3d')."""
        widget = self.screenshot_target(target)
        if target == "window" and self.volume3d is not None:
            self.volume3d.render_now()
        QApplication.processEvents()
        return save_screenshot(widget, path)

    def screenshot_dialog(self, target: str) -> None:
        default = str(Path(self.settings.last_folder()) / f"prdit-studio-{target}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", default, "PNG images (*.png)")
        if not path:
            return
        try:
            saved = self.save_screenshot(path, target)
        except (OSError, ValueError) as exc:
            dialogs.show_error(self, "Screenshot not saved", f"{path}: {exc}")
            return
        self.settings.set_last_folder(saved)
        self.statusBar().showMessage(f"Saved {saved}", 4000)
