"""The Export panel: the shown volume as a DICOM series or NIfTI, the formation as a GIF or PNGs.

Every export runs on a background thread (:class:`prdit_app.tasks.TaskWorker`) behind a
``QProgressDialog`` whose Cancel stops it at the next slice/frame; writers are atomic, so a
cancelled or failed export leaves nothing half-written. DICOM carries the provenance of a
generated volume (model, checkpoint hash, seed, sampler, steps, k) through the engine's
``write_ct_series``; NIfTI gets the same record in a ``prdit sample``-style JSON sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEventLoop, QObject, Qt, QThread, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prdit.atomic import atomic_path, write_text_atomic
from prdit.volume import Volume
from prdit_app.dialogs import show_error
from prdit_app.tasks import TaskWorker
from prdit_app.trajectory import TrajectoryStore, tri_planar_slices, window_to_uint8

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- provenance
def provenance_dict(volume: Volume) -> dict[str, Any] | None:
    """A ``prdit sample``-style record from a generated volume's metadata (None if not generated)."""
    meta = volume.metadata
    if not meta.get("model_name"):
        return None
    import prdit

    keys = ("seed", "sampler", "steps", "k", "model_name", "checkpoint", "checkpoint_sha256",
            "input_size", "hu_window", "edit")  # fmt: skip
    out = {key: meta.get(key) for key in keys if meta.get(key) is not None}
    out["software_version"] = prdit.__version__
    if meta.get("generated"):
        out["shown"] = str(meta["generated"])  # e.g. "x0_hat · step 12/50" for an intermediate
    return out


def default_series_description(volume: Volume | None) -> str:
    meta = volume.metadata if volume is not None else {}
    if not meta.get("model_name"):
        return "PRDiT export"
    if meta.get("edit"):  # an edited volume: the engine's wording (prdit export-dicom says the same)
        from prdit.export.provenance import Provenance, series_description

        return series_description(Provenance.from_sidecar(provenance_dict(volume) or {}))[:60]
    text = f"{meta['model_name']} seed {meta.get('seed')}"
    shown = str(meta.get("generated") or "")
    if shown and not meta.get("final", True):
        text += f" {shown.replace('·', '').replace('  ', ' ')}"
    return text[:60]


# --------------------------------------------------------------------------- the writers (any thread)
def export_dicom(
    volume: Volume,
    out_dir: Path,
    *,
    series_description: str = "",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """The volume as a synthetic CT series, with its provenance when it was generated."""
    from prdit.export.dicom import write_ct_series
    from prdit.export.provenance import Provenance

    record = provenance_dict(volume)
    provenance = Provenance.from_sidecar(record, source="generated volume") if record else None
    kwargs: dict[str, Any] = {}
    if series_description:
        kwargs["series_description"] = series_description
    return write_ct_series(volume, out_dir, provenance=provenance, overwrite=overwrite, progress=progress,
                           **kwargs)  # fmt: skip


def nifti_sidecar_path(path: Path) -> Path:
    name = path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
    return path.with_name(stem + ".json")


def export_nifti(volume: Volume, path: Path, progress: ProgressFn | None = None) -> Path:
    """NIfTI (.nii/.nii.gz) plus, for a generated volume, its JSON provenance sidecar."""
    from prdit.data.io import write_nifti

    path = Path(path)
    if progress:
        progress(0, 2)
    write_nifti(volume, path)
    record = provenance_dict(volume)
    if record is not None:
        write_text_atomic(nifti_sidecar_path(path), json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    if progress:
        progress(2, 2)
    return path


def _scaled(gray: np.ndarray, row_mm: float, col_mm: float, height: int) -> np.ndarray:
    """Resize a 2D uint8 slice to ``height`` rows with the true aspect (nearest neighbour)."""
    from PIL import Image

    h, w = gray.shape
    width = max(1, int(round(height * (w * col_mm) / (h * row_mm))))
    return np.asarray(Image.fromarray(gray).resize((width, height), Image.Resampling.NEAREST))


def formation_frame(
    x0: np.ndarray,
    xt: np.ndarray | None,
    spacing: tuple[float, float, float],
    window: tuple[float, float],
    label: str,
    height: int = 192,
) -> np.ndarray:
    """One RGB frame: axial | coronal | sagittal of x0_hat (and x_t above it), with a caption."""
    from PIL import Image, ImageDraw

    sx, sy, sz = spacing
    aspects = ((sy, sx), (sz, sx), (sz, sy))  # (row mm, column mm) per plane
    rows = []
    for vol in ([xt] if xt is not None else []) + [x0]:
        tiles = [_scaled(window_to_uint8(sl, *window), r, c, height)
                 for sl, (r, c) in zip(tri_planar_slices(vol), aspects, strict=True)]  # fmt: skip
        gap = np.zeros((height, 4), np.uint8)
        row = tiles[0]
        for tile in tiles[1:]:
            row = np.concatenate([row, gap, tile], axis=1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    caption_h = 22
    canvas = np.zeros((caption_h + sum(r.shape[0] for r in rows) + 4 * (len(rows) - 1), width), np.uint8)
    y = caption_h
    for r in rows:
        canvas[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + 4
    image = Image.fromarray(canvas).convert("RGB")
    ImageDraw.Draw(image).text((6, 5), label, fill=(255, 200, 80))
    return np.asarray(image)


def formation_frames(
    store: TrajectoryStore,
    sample: int,
    spacing: tuple[float, float, float],
    window: tuple[float, float] = (-1000.0, 1000.0),
    with_xt: bool = False,
    progress: ProgressFn | None = None,
) -> list[np.ndarray]:
    """Frames of the recorded formation of one sample (x0_hat, optionally with x_t)."""
    snaps = store.snapshots()
    if not snaps:
        raise ValueError("nothing to export: no generation has been recorded yet")
    frames = []
    use_xt = with_xt and store.has_xt
    for n, snap in enumerate(snaps):
        x0 = store.volume(n, sample, "x0")
        xt = store.volume(n, sample, "xt") if use_xt else None
        label = f"step {snap.index + 1}/{snap.total}  t={snap.t}"
        if use_xt:
            label += "   top: x_t  bottom: x0_hat"
        frames.append(formation_frame(x0, xt, spacing, window, label))
        if progress:
            progress(n + 1, len(snaps) + 1)
    return frames


def export_gif(frames: list[np.ndarray], path: Path, fps: float = 6.0, hold_last_s: float = 1.5) -> Path:
    """Animated GIF (looping), written atomically; the last frame is held a little longer."""
    import imageio.v3 as iio

    path = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: folder {path.parent} does not exist")
    frame_ms = 1000.0 / max(fps, 0.1)
    durations = [frame_ms] * (len(frames) - 1) + [max(frame_ms, hold_last_s * 1000.0)]
    with atomic_path(path, suffix=".gif") as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=durations, loop=0)
    return path


def export_png_series(frames: list[np.ndarray], folder: Path, prefix: str = "formation") -> list[Path]:
    """``prefix_000.png ...`` in ``folder`` (each file written atomically)."""
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, frame in enumerate(frames):
        path = folder / f"{prefix}_{n:03d}.png"
        with atomic_path(path, suffix=".png") as tmp:
            iio.imwrite(tmp, frame, extension=".png")
        out.append(path)
    return out


# --------------------------------------------------------------------------- progress dialog runner
class _TaskRelay(QObject):
    """Lives on the GUI thread so the worker's signals arrive queued (never touching widgets)."""

    def __init__(self, dialog: QProgressDialog, loop: QEventLoop, worker: TaskWorker) -> None:
        super().__init__()
        self.dialog = dialog
        self.loop = loop
        self.worker = worker
        self.outcome: tuple[str, Any] = ("failed", "the export did not finish")

    @Slot(int, int)
    def on_progress(self, done: int, total: int) -> None:
        if self.dialog.maximum() != total:
            self.dialog.setMaximum(total)
        self.dialog.setValue(min(done, total - 1) if total > 0 else 0)  # close only when finished

    @Slot()
    def on_cancel_clicked(self) -> None:
        # a direct call, not a queued signal: the worker's thread is busy running the job
        self.worker.cancel()
        self.dialog.setLabelText("Cancelling…")

    @Slot(object)
    def on_finished(self, value: Any) -> None:
        self.outcome = ("done", value)
        self.loop.quit()

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.outcome = ("failed", message)
        self.loop.quit()

    @Slot()
    def on_cancelled(self) -> None:
        self.outcome = ("cancelled", None)
        self.loop.quit()


def run_with_progress(parent: QWidget | None, label: str, fn: Callable[[ProgressFn], Any]) -> tuple[str, Any]:
    """Run ``fn(progress)`` on a thread behind a progress dialog; ``(status, value_or_message)``.

    The GUI stays live (a local event loop runs while waiting); Cancel stops the job at its next
    progress report.
    """
    dialog = QProgressDialog(label, "Cancel", 0, 0, parent)
    dialog.setWindowTitle("Export")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(250)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    loop = QEventLoop()
    worker = TaskWorker(fn)
    relay = _TaskRelay(dialog, loop, worker)
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.progress.connect(relay.on_progress)
    worker.finished.connect(relay.on_finished)
    worker.failed.connect(relay.on_failed)
    worker.cancelled.connect(relay.on_cancelled)
    # Direct: the flag is thread-safe, and a queued call would wait for the busy worker thread.
    dialog.canceled.connect(relay.on_cancel_clicked, Qt.ConnectionType.DirectConnection)
    thread.start()
    loop.exec()
    thread.quit()
    thread.wait()
    dialog.close()
    dialog.deleteLater()
    return relay.outcome


# --------------------------------------------------------------------------- the panel
class ExportPanel(QWidget):
    """Export buttons for the shown volume and the recorded formation.

    ``get_volume()`` -> the volume on screen; ``get_trajectory()`` -> ``(store, sample)`` or None;
    ``get_window()`` -> the display window (low, high) HU used for GIF/PNG frames.
    """

    def __init__(
        self,
        get_volume: Callable[[], Volume | None],
        get_trajectory: Callable[[], tuple[TrajectoryStore, int] | None] | None = None,
        get_window: Callable[[], tuple[float, float]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("exportPanel")
        self.get_volume = get_volume
        self.get_trajectory = get_trajectory
        self.get_window = get_window
        self.last_outcome: tuple[str, Any] | None = None

        self.shown_label = QLabel("Nothing shown yet")
        self.shown_label.setWordWrap(True)
        self.shown_label.setTextFormat(Qt.TextFormat.PlainText)  # a file name is not HTML
        self.description_edit = QLineEdit()
        self.description_edit.setPlaceholderText("series description (default: model and seed)")
        self.description_edit.setMaxLength(60)
        self.dicom_button = QPushButton("DICOM series…")
        self.nifti_button = QPushButton("NIfTI…")
        vol_box = QGroupBox("Shown volume")
        vlay = QVBoxLayout(vol_box)
        vlay.addWidget(self.shown_label)
        form = QFormLayout()
        form.addRow("Description", self.description_edit)
        vlay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.dicom_button)
        row.addWidget(self.nifti_button)
        vlay.addLayout(row)

        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 30)
        self.fps_spin.setValue(6)
        self.fps_spin.setSuffix(" frames/s")
        self.gif_button = QPushButton("Animated GIF…")
        self.png_button = QPushButton("PNG series…")
        form_box = QGroupBox("Formation (recorded steps)")
        flay = QVBoxLayout(form_box)
        frow = QHBoxLayout()
        frow.addWidget(self.fps_spin)
        frow.addWidget(self.gif_button)
        frow.addWidget(self.png_button)
        flay.addLayout(frow)

        lay = QVBoxLayout(self)
        lay.addWidget(vol_box)
        lay.addWidget(form_box)
        lay.addStretch(1)

        self.dicom_button.clicked.connect(self._choose_dicom)
        self.nifti_button.clicked.connect(self._choose_nifti)
        self.gif_button.clicked.connect(self._choose_gif)
        self.png_button.clicked.connect(self._choose_png)
        self.refresh()

    # -- state
    def trajectory(self) -> tuple[TrajectoryStore, int] | None:
        """``(store, sample)`` of the generation to export as frames (``get_trajectory``), or None."""
        return self.get_trajectory() if self.get_trajectory is not None else None

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.refresh()
        super().showEvent(event)

    def refresh(self, *_: Any) -> None:
        """Update labels and enabled buttons (connect to the generate panel's volumeShown)."""
        volume = self.get_volume()
        has_volume = volume is not None
        self.dicom_button.setEnabled(has_volume)
        self.nifti_button.setEnabled(has_volume)
        traj = self.trajectory()
        has_traj = traj is not None and len(traj[0]) > 0
        self.gif_button.setEnabled(has_traj)
        self.png_button.setEnabled(has_traj)
        if volume is None:
            self.shown_label.setText("Nothing shown yet")
            return
        meta = volume.metadata
        shape = "×".join(str(s) for s in volume.size_ijk)
        if meta.get("model_name"):
            what = meta.get("generated") or "final sample"
            text = f"{meta['model_name']}, seed {meta.get('seed')}, {meta.get('sampler')} sampler — {what}"
        else:
            text = str(meta.get("source") or "loaded volume")
        self.shown_label.setText(f"{text}\n{shape} voxels")
        self.description_edit.setPlaceholderText(default_series_description(volume))

    def _finish(self, outcome: tuple[str, Any], what: str) -> tuple[str, Any]:
        self.last_outcome = outcome
        status, value = outcome
        if status == "failed":
            show_error(self, f"{what} export failed", str(value))
        return outcome

    # -- exports (callable from tests and scripts without file dialogs)
    def export_dicom_to(self, folder: Path, overwrite: bool = False) -> tuple[str, Any]:
        volume = self.get_volume()
        if volume is None:
            return self._finish(("failed", "no volume is shown"), "DICOM")
        description = self.description_edit.text().strip() or default_series_description(volume)

        def job(progress: ProgressFn) -> Path:
            return export_dicom(volume, Path(folder), series_description=description, overwrite=overwrite,
                                progress=progress)  # fmt: skip

        return self._finish(run_with_progress(self, f"Writing DICOM series to {folder}…", job), "DICOM")

    def export_nifti_to(self, path: Path) -> tuple[str, Any]:
        volume = self.get_volume()
        if volume is None:
            return self._finish(("failed", "no volume is shown"), "NIfTI")
        label = f"Writing {Path(path).name}…"
        return self._finish(run_with_progress(self, label, lambda p: export_nifti(volume, path, p)), "NIfTI")

    def _frames_job(self, with_xt: bool) -> Callable[[ProgressFn], list[np.ndarray]] | None:
        traj = self.trajectory()
        volume = self.get_volume()
        if traj is None or volume is None:
            return None
        store, sample = traj
        window = self.get_window() if self.get_window else (-1000.0, 1000.0)
        spacing = volume.spacing
        return lambda progress: formation_frames(store, sample, spacing, window, with_xt, progress)

    def export_gif_to(self, path: Path, with_xt: bool = True) -> tuple[str, Any]:
        frames_job = self._frames_job(with_xt)
        if frames_job is None:
            return self._finish(("failed", "no generation has been recorded yet"), "GIF")
        fps = float(self.fps_spin.value())

        def job(progress: ProgressFn) -> Path:
            frames = frames_job(progress)
            out = export_gif(frames, Path(path), fps=fps)
            progress(len(frames) + 1, len(frames) + 1)
            return out

        return self._finish(run_with_progress(self, f"Writing {Path(path).name}…", job), "GIF")

    def export_png_to(self, folder: Path, with_xt: bool = True) -> tuple[str, Any]:
        frames_job = self._frames_job(with_xt)
        if frames_job is None:
            return self._finish(("failed", "no generation has been recorded yet"), "PNG")

        def job(progress: ProgressFn) -> list[Path]:
            frames = frames_job(progress)
            out = export_png_series(frames, Path(folder))
            progress(len(frames) + 1, len(frames) + 1)
            return out

        return self._finish(run_with_progress(self, f"Writing PNG frames to {folder}…", job), "PNG")

    # -- buttons
    def _choose_dicom(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export DICOM series into an empty folder")
        if not folder:
            return
        overwrite = False
        if any(Path(folder).iterdir()):
            answer = QMessageBox.question(
                self,
                "Folder not empty",
                f"{folder} is not empty. Replace the DICOM series in it?\n"
                "(Folders holding anything other than a previous DICOM export are never replaced.)",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            overwrite = True
        self.export_dicom_to(Path(folder), overwrite=overwrite)

    def _choose_nifti(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export NIfTI", "generated.nii.gz", "NIfTI (*.nii.gz *.nii)"
        )
        if path:
            if not path.lower().endswith((".nii", ".nii.gz")):
                path += ".nii.gz"
            self.export_nifti_to(Path(path))

    def _choose_gif(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export formation as GIF", "formation.gif", "GIF (*.gif)")
        if path:
            self.export_gif_to(Path(path if path.lower().endswith(".gif") else path + ".gif"))

    def _choose_png(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export formation frames (PNG) into a folder")
        if folder:
            self.export_png_to(Path(folder))
