"""Scripted generation: ``prdit-studio --generate --steps 20 --seed 1 --screenshot out.png --quit``.

Opens the studio, samples with the default (bundled) model — or ``--checkpoint`` — while the views
stream the formation, then saves a screenshot of the finished volume and exits (status 1 with the
reason on stderr when anything failed; no dialog ever blocks). ``--screenshot-during N`` also saves
``<name>-running.png`` after step N, to document a generation in progress.

It wraps :func:`prdit_app.viewer.main` (window, panels, theme, the viewer's own options) and drives
the window's Generate panel from timers, so the run goes through exactly the code a user's click
does. Run it as ``python -m prdit_app.scripted_generate ...`` or, once wired, through
``prdit-studio --generate ...`` (:func:`wants_generate` tells ``main`` when to hand over).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from prdit_app.generate_options import (  # noqa: F401 - re-exported: the generation's own options
    GENERATE_FLAG,
    GROUP_DESCRIPTION,
    GROUP_TITLE,
    add_generate_arguments,
    generate_only_options,
    wants_generate,
)


def build_parser() -> argparse.ArgumentParser:
    """The generation options plus the two whose meaning changes with --generate (--screenshot,
    --quit); everything else, ``-h`` included, is passed on to the viewer's parser (whose help
    lists these options too)."""
    p = argparse.ArgumentParser(prog="prdit-studio --generate", description=GROUP_DESCRIPTION, add_help=False)
    add_generate_arguments(p)
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window when sampling ends")
    p.add_argument("--quit", action="store_true", help="exit when done (status 1 if anything failed)")
    return p


def running_screenshot_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}-running{path.suffix or '.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, viewer_argv = build_parser().parse_known_args(argv)
    from prdit_app import viewer as studio_main

    # before any Qt: -h / --version print and exit, a bad viewer option fails as usage (status 2)
    studio_main.build_parser().parse_args(viewer_argv)
    for flag, value in (("--steps", args.steps), ("--k", args.k)):
        if value is not None and value < 1:
            print(f"prdit-studio: error: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    if args.checkpoint and not Path(args.checkpoint).exists():
        print(f"prdit-studio: error: --checkpoint {args.checkpoint}: no such file or folder", file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    failures: list[str] = []
    state = {"running_shot": False, "started": False}

    def fail(message: str) -> None:
        failures.append(message)
        print(f"prdit-studio: {message}", file=sys.stderr)

    def find_window_and_panel():
        from prdit_app.panels.generate import GeneratePanel

        for widget in QApplication.topLevelWidgets():
            panel = widget.findChild(GeneratePanel)
            if panel is not None and hasattr(widget, "save_screenshot"):
                return widget, panel
        return None, None

    def finish() -> None:
        if args.quit:
            QTimer.singleShot(0, QApplication.instance().quit)

    def screenshot(window, path: Path) -> None:
        try:
            saved = window.save_screenshot(path, "window")
            print(f"prdit-studio: saved {saved}")
        except Exception as exc:  # noqa: BLE001 - scripted: report and exit non-zero
            fail(f"screenshot failed: {path}: {exc}")

    def start() -> None:
        if state["started"]:
            return
        window, panel = find_window_and_panel()
        if panel is None:
            fail("the Generate panel is not available (see the messages above)")
            finish()
            return
        state["started"] = True
        tabs = getattr(window, "panel_tabs", None)
        if tabs is not None:
            tabs.setCurrentWidget(panel)
        if args.checkpoint:
            panel.add_checkpoint(Path(args.checkpoint))
        if panel.model_combo.count() == 0:
            fail("no model: resources/models holds no bundled default model; pass --checkpoint PATH")
            finish()
            return
        # sampler settings the user leaves out stay what the panel took from the model's metadata
        if args.steps is not None:
            panel.steps_spin.setValue(args.steps)
        panel.seed_spin.setValue(args.seed)
        if args.sampler is not None:
            panel.sampler_combo.setCurrentIndex(panel.sampler_combo.findData(args.sampler))
        if args.k is not None:
            panel.k_spin.setValue(args.k)
        panel.samples_spin.setValue(args.samples)
        index = panel.device_combo.findData(args.device.lower())
        if index < 0:
            fail(f"device {args.device!r} is not available here")
            finish()
            return
        panel.device_combo.setCurrentIndex(index)
        if args.side_by_side:
            panel.trajectory.side_by_side.setChecked(True)

        def on_step(update) -> None:
            if (args.screenshot and args.screenshot_during and not state["running_shot"]
                    and update.index + 1 >= args.screenshot_during):  # fmt: skip
                state["running_shot"] = True
                QApplication.processEvents()
                screenshot(window, running_screenshot_path(args.screenshot))

        def on_finished(result) -> None:
            print(
                f"prdit-studio: generated {len(result.volumes)} sample(s), {result.steps_done} steps "
                f"in {result.elapsed_s:.1f} s"
            )
            if args.screenshot:
                # let the views and the 3D view draw the final volume before capturing
                QTimer.singleShot(400, lambda: (_render(window), screenshot(window, Path(args.screenshot)),
                                                finish()))  # fmt: skip
            else:
                finish()

        def on_failed(title: str, message: str) -> None:
            fail(f"{title}: {message}")
            finish()

        panel.controller.stepReady.connect(on_step)
        panel.controller.finished.connect(on_finished)
        panel.controller.failed.connect(on_failed)
        if not panel.start():
            fail("generation could not start (see the message above)")
            finish()

    def _render(window) -> None:
        view3d = getattr(window, "volume3d", None)
        if view3d is not None:
            try:
                view3d.render_now()
            except Exception as exc:  # noqa: BLE001 - a 3D failure must not lose the screenshot
                print(f"prdit-studio: 3D render failed: {exc}", file=sys.stderr)
        QApplication.processEvents()

    app = QApplication.instance()
    if app is None:
        from PySide6.QtCore import Qt

        QApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
        app = QApplication(sys.argv[:1])
    # the viewer's main() builds the window and enters the event loop; our timer fires inside it
    QTimer.singleShot(300, start)
    if args.quit:
        from prdit_app import dialogs

        dialogs.set_error_sink(lambda title, message: fail(f"{title}: {message}"))
    rc = studio_main.main([a for a in viewer_argv if a not in ("--quit",)])
    if args.quit:
        return 1 if failures else int(rc)
    return int(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
