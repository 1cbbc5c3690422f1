"""Export of a generated volume: DICOM (dciodvfy-clean, with provenance), NIfTI (+ sidecar),
the formation as GIF/PNG frames, progress dialog with a working Cancel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QProgressDialog, QPushButton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fakes import CountingModel, fake_source  # noqa: E402

from prdit.model_info import ModelInfo  # noqa: E402
from prdit_app.panels.export import (  # noqa: E402
    ExportPanel,
    default_series_description,
    formation_frame,
    nifti_sidecar_path,
    run_with_progress,
)
from prdit_app.panels.generate import GeneratePanel  # noqa: E402

SHA = "0123456789abcdef" * 4
INFO = ModelInfo("PRDiT-XS/4/0", 12, spacing=(1.25, 1.25, 2.5), sha256=SHA, source="/m/tiny.safetensors")


@pytest.fixture
def generated(qtbot, tmp_path):
    """A Generate panel after a finished 8-step run of 2 samples, and an Export panel wired to it."""
    gen = GeneratePanel(models_dir=tmp_path / "none")
    qtbot.addWidget(gen)
    model = CountingModel(size=12)
    gen.add_model(model, INFO)
    gen.source_factory = lambda req: fake_source(model, req.steps, req.num_samples, INFO)
    gen.steps_spin.setValue(8)
    gen.samples_spin.setValue(2)
    gen.seed_spin.setValue(40)
    gen.start()
    qtbot.waitUntil(lambda: not gen.running, timeout=20000)
    gen.trajectory.sample_spin.setValue(2)  # show the second sample (seed 41)
    exp = ExportPanel(gen.shown_volume, lambda: (gen.store, gen.trajectory.sample))
    qtbot.addWidget(exp)
    gen.volumeShown.connect(exp.refresh)
    exp.refresh()
    return gen, exp


def test_dicom_export_is_conformant_and_carries_provenance(generated, tmp_path):
    gen, exp = generated
    assert exp.dicom_button.isEnabled() and "seed 41" in exp.shown_label.text()
    status, out = exp.export_dicom_to(tmp_path / "series")
    assert status == "done", out
    files = sorted(Path(out).glob("*.dcm")) or sorted(p for p in Path(out).iterdir() if p.is_file())
    assert len(files) == 12
    import pydicom

    ds = pydicom.dcmread(files[0])
    text = str(ds.get("DerivationDescription", "")) + str(ds.get("ContributingEquipmentSequence", ""))
    assert "seed=41" in text and SHA in text and "sampler=hot" in text and "steps=8" in text
    assert ds.SeriesDescription.startswith("SYNTHETIC") and "seed 41" in ds.SeriesDescription
    assert [float(v) for v in ds.PixelSpacing] == [1.25, 1.25]
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for f in (files[0], files[-1]):
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [
            line
            for line in (res.stdout + res.stderr).splitlines()
            if line.startswith("Error") and "(0x0008,0x001c)" not in line
        ]
        assert errors == [], "\n".join(errors)


def test_dicom_export_refuses_a_non_empty_folder_with_a_dialog(generated, tmp_path, monkeypatch):
    _, exp = generated
    dialogs = []
    monkeypatch.setattr(
        "prdit_app.panels.export.QMessageBox.critical",
        lambda parent, title, text: dialogs.append((title, text)),
    )
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    status, message = exp.export_dicom_to(target)
    assert status == "failed" and "not empty" in message and dialogs[0][0] == "DICOM export failed"
    assert (target / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_nifti_export_keeps_geometry_and_writes_a_sidecar(generated, tmp_path):
    gen, exp = generated
    path = tmp_path / "out.nii.gz"
    status, _ = exp.export_nifti_to(path)
    assert status == "done"
    from prdit.data.io import read_volume

    back = read_volume(path)
    shown = gen.shown_volume()
    assert back.same_geometry(shown)
    np.testing.assert_allclose(back.array, shown.array, atol=0.5)
    side = json.loads(nifti_sidecar_path(path).read_text(encoding="utf-8"))
    assert side["seed"] == 41 and side["checkpoint_sha256"] == SHA and side["model_name"] == "PRDiT-XS/4/0"
    assert nifti_sidecar_path(path).name == "out.json"


def test_formation_gif_and_png_series(generated, tmp_path):
    gen, exp = generated
    import imageio.v3 as iio

    status, gif = exp.export_gif_to(tmp_path / "formation.gif")
    assert status == "done"
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == len(gen.store) == 8 and frames.shape[-1] == 3
    assert not np.array_equal(frames[0], frames[-1])  # the volume forms over the run
    status, pngs = exp.export_png_to(tmp_path / "frames", with_xt=False)
    assert status == "done" and len(pngs) == 8 and pngs[0].name == "formation_000.png"
    assert not list((tmp_path / "frames").glob(".*"))  # no temporary files left


def test_frame_has_true_aspect():
    vol = np.zeros((10, 20, 20), np.float32)
    frame = formation_frame(vol, None, (1.0, 1.0, 4.0), (-1000, 1000), "x", height=100)
    # axial 20x20 at 1 mm -> 100 wide; coronal/sagittal 20 mm wide x 40 mm tall -> 50 wide
    assert frame.shape == (22 + 100, 100 + 4 + 50 + 4 + 50, 3)


def test_cancel_in_the_progress_dialog_stops_the_job(qtbot):
    reports = []

    def job(progress):
        for i in range(200):
            progress(i, 200)
            reports.append(i)
            time.sleep(0.01)
        return "finished"

    def press_cancel():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QProgressDialog) and w.isVisible():
                w.findChild(QPushButton).click()  # what a user does (QProgressDialog.cancel() is silent)
                return
        QTimer.singleShot(20, press_cancel)

    QTimer.singleShot(300, press_cancel)
    status, value = run_with_progress(None, "testing", job)
    assert status == "cancelled" and value is None and len(reports) < 200


def test_description_defaults(generated):
    gen, _ = generated
    assert default_series_description(gen.shown_volume()) == "PRDiT-XS/4/0 seed 41"
    gen.trajectory.slider.setValue(0)
    assert "step 1/8" in default_series_description(gen.shown_volume())
    assert default_series_description(None) == "PRDiT export"


def test_cancelled_dicom_export_leaves_nothing(generated, tmp_path):
    from prdit_app.panels.export import export_dicom
    from prdit_app.tasks import TaskCancelled

    gen, _ = generated

    def progress(done, total):
        if done >= 3:
            raise TaskCancelled()

    with pytest.raises(TaskCancelled):
        export_dicom(gen.shown_volume(), tmp_path / "series", progress=progress)
    assert not (tmp_path / "series").exists() and list(tmp_path.iterdir()) == []
