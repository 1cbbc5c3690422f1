"""``prdit-studio [FILE]``: the desktop viewer and generator.

Scripted mode (documentation, smoke tests)::

    prdit-studio FILE --preset lung --screenshot out.png --quit
    prdit-studio --phantom 3 --size 128 --vr-preset CT-Bone --screenshot docs/img/x.png --quit

opens, renders every view, saves the PNG and exits (status 1 when something failed, with the
reason on stderr instead of a dialog). The 3D view needs OpenGL: under Xvfb run with
``QT_QPA_PLATFORM=xcb``; with Qt's offscreen platform an offscreen VTK fallback is used; ``--no-3d``
leaves VTK out entirely for machines without any OpenGL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence

VIEW_CHOICES = ("window", "axial", "coronal", "sagittal", "3d")


def build_parser() -> argparse.ArgumentParser:
    from prdit import __version__

    p = argparse.ArgumentParser(
        prog="prdit-studio", description="PRDiT Studio: view, generate and export 3D CT volumes."
    )
    p.add_argument("file", nargs="?", help="volume to open: NIfTI, DICOM folder or file, .npy/.npz, MHA/NRRD")
    p.add_argument("--series", metavar="UID", help="DICOM series to open when the folder holds several")
    p.add_argument(
        "--phantom", type=int, metavar="SEED", help="open a procedural chest phantom instead of a file"
    )
    p.add_argument("--size", type=int, default=128, help="phantom size in voxels per side (default 128)")
    p.add_argument(
        "--preset", metavar="NAME", help="window/level preset: lung, mediastinum, soft_tissue, bone, brain"
    )
    p.add_argument(
        "--labels",
        metavar="PATH",
        help="a label map of FILE to overlay (NIfTI with integer labels, or DICOM SEG)",
    )
    p.add_argument("--vr-preset", metavar="NAME", help="3D preset: CT-Bone, CT-Lung, CT-Soft-Tissue, CT-MIP")
    p.add_argument(
        "--neurological", action="store_true", help="neurological convention (patient right on screen right)"
    )
    p.add_argument("--maximise", choices=VIEW_CHOICES[1:], help="start with one view filling the layout")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot once everything has rendered")
    p.add_argument(
        "--screenshot-view", choices=VIEW_CHOICES, default="window", help="what to capture (default: window)"
    )
    p.add_argument(
        "--quit", action="store_true", help="exit after opening (and the screenshot): scripted mode"
    )
    p.add_argument("--window-size", metavar="WxH", help="window size in pixels, e.g. 1600x1000")
    p.add_argument("--no-3d", action="store_true", help="no VTK 3D view (for machines without OpenGL)")
    p.add_argument(
        "--vtk-offscreen", action="store_true", help="render 3D offscreen into an image (no native GL widget)"
    )
    p.add_argument("--no-panels", action="store_true", help="do not load the task panels (faster start)")
    p.add_argument("--version", action="version", version=f"prdit-studio {__version__}")
    from prdit_app import generate_options  # argparse only

    generate_options.add_generate_arguments(
        p.add_argument_group(generate_options.GROUP_TITLE, generate_options.GROUP_DESCRIPTION)
    )
    return p


def _refuse_generation_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Generation options without --generate would be silently ignored: say so instead."""
    from prdit_app import generate_options

    for dest, (flag, default) in generate_options.generate_only_options().items():
        if getattr(args, dest, default) != default:
            parser.error(f"{flag} is an option of scripted generation: add --generate")


def _window_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(
            f"prdit-studio: error: --window-size must look like 1600x1000, got {text!r}"
        ) from None
    if w < 200 or h < 150:
        raise SystemExit(f"prdit-studio: error: --window-size {text} is too small (at least 200x150)")
    return w, h


def install_panels(window) -> list[str]:
    """Add the task panels to the window's right-hand dock (Generate, Export, ...).

    This is the one place panels are registered. A panel that fails to build is reported in the
    status bar and on stderr; the viewer keeps working without it.
    """
    installed = []
    from prdit_app.app_model import AppModel

    app = window.app_model = AppModel(window.state, window)

    def generate():
        from prdit_app.panels.generate import GeneratePanel

        panel = GeneratePanel(show_volume=window.show_generated, app=app)
        panel.windowRecommended.connect(window.state.recommend_window)
        app.loadCheckpointRequested.connect(lambda _path: window.panel_tabs.setCurrentWidget(panel))
        return panel

    def export():
        from prdit_app.panels.export import ExportPanel

        panel = ExportPanel(
            get_volume=lambda: window.state.volume,
            get_trajectory=app.trajectory,
            get_window=lambda: window.state.levels,
        )
        app.trajectoryChanged.connect(panel.refresh)
        return panel

    def edit():
        from PySide6.QtGui import QKeySequence

        from prdit_app.panels.edit import EditPanel

        panel = EditPanel(window.state, app=app, set_region_tool=window.set_region_tool)
        window.regionToolChanged.connect(lambda kind: kind is None and panel.stop_drawing())
        window.edit_panel = panel
        window.act_undo_edit = window._action(
            "&Undo edit", panel.undo, QKeySequence.StandardKey.Undo, tip="The volume before the last edit"
        )
        return panel

    for title, factory in (("Generate", generate), ("Edit", edit), ("Export", export)):
        try:
            window.add_panel(factory(), title)
            installed.append(title)
        except Exception as exc:  # noqa: BLE001 - one broken panel must not stop the viewer
            print(
                f"prdit-studio: the {title} panel is unavailable: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            window.statusBar().showMessage(f"{title} panel unavailable: {exc}", 8000)
    from prdit_app.panels.train_eval_install import install_train_eval_panels

    installed += install_train_eval_panels(window, app)
    return installed


def main(argv: Sequence[str] | None = None) -> int:
    """The viewer (``prdit-studio [FILE] ...``); :mod:`prdit_app.main` hands ``--generate`` elsewhere."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _refuse_generation_options(parser, args)  # --generate itself was handed over above
    size = _window_size(args.window_size)
    if args.vtk_offscreen:
        os.environ["PRDIT_VTK_OFFSCREEN"] = "1"

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    QApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PRDiT Studio")
    app.setOrganizationName("PRDiT")
    app.setApplicationDisplayName("PRDiT Studio")
    app.setDesktopFileName("io.github.prdit.Studio")  # matches packaging/linux/*.desktop (Wayland)

    from prdit_app import dialogs
    from prdit_app.mainwindow import MainWindow, app_icon
    from prdit_app.theme import apply_dark_theme

    apply_dark_theme(app)
    app.setWindowIcon(app_icon())
    failures: list[str] = []
    if args.quit:  # scripted: never block on a modal dialog

        def sink(title: str, message: str) -> None:
            failures.append(message)
            print(f"prdit-studio: {title}: {message}", file=sys.stderr)

        dialogs.set_error_sink(sink)

    window = MainWindow(enable_3d=not args.no_3d, vtk_offscreen=True if args.vtk_offscreen else None)
    if not args.no_panels:
        install_panels(window)
    if size:
        window.resize(*size)
    if args.neurological:
        window.act_neuro.setChecked(True)
        window._toggle_convention()
    try:
        if args.vr_preset:
            window.set_vr_preset(args.vr_preset)
        if args.preset:
            window.apply_wl_preset(args.preset)
    except ValueError as exc:
        print(f"prdit-studio: error: {exc}", file=sys.stderr)
        return 2
    window.show()
    if args.maximise:
        window.grid.maximise(args.maximise)

    def open_input() -> None:
        ok = True
        if args.phantom is not None:
            ok = window.open_phantom(args.phantom, args.size)
        elif args.file:
            ok = window.open_path(args.file, args.series)
        if ok and args.labels:
            ok = window.open_labels(args.labels)
        if ok and args.preset:
            window.apply_wl_preset(args.preset)  # a file's own W/L hint must not override the request
        if not ok:
            failures.append("open failed")
        if args.screenshot:
            # let Qt lay out and paint, and VTK draw its first (slow) frame, before capturing
            QTimer.singleShot(400, take_screenshot)
        elif args.quit:
            QTimer.singleShot(0, app.quit)

    def take_screenshot() -> None:
        try:
            if window.volume3d is not None:
                window.volume3d.render_now()
            app.processEvents()
            saved = window.save_screenshot(args.screenshot, args.screenshot_view)
            print(f"prdit-studio: saved {saved}")
            print(f"prdit-studio: views {json.dumps(window.view_rects())}")
        except Exception as exc:  # noqa: BLE001 - report, exit non-zero in scripted mode
            traceback.print_exc()
            failures.append(f"screenshot failed: {exc}")
            if not args.quit:
                dialogs.show_error(window, "Screenshot not saved", f"{args.screenshot}: {exc}")
        if args.quit:
            QTimer.singleShot(0, app.quit)

    QTimer.singleShot(0, open_input)
    rc = app.exec()
    if window.isVisible():
        window.close()
    return 1 if (failures and args.quit) else int(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
