"""In-fill with the model: the known voxels come back exactly, the masked region is generated to fit,
through the same Step generator as plain sampling."""

from __future__ import annotations

import pytest
import torch

from prdit.checkpoint import load_for_inference
from prdit.data.phantom import generate_phantom
from prdit.diffusion import run_to_end
from prdit.editing import sample_infill
from prdit.paths import bundled_model
from prdit.sampling import diffusion_for


@pytest.fixture(scope="module")
def model_and_known():
    model, info = load_for_inference(bundled_model("fast-32"))
    hu = torch.as_tensor(generate_phantom(123456, 32).array)
    known = torch.as_tensor(info.hu_window.to_unit(hu.numpy()))[None, None].float()
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[..., 10:22, 8:20, 10:22] = True  # a box through the mediastinum
    return model, info, known, mask


@pytest.mark.parametrize("sampler", ["hot", "cold"])
def test_infill_keeps_the_known_voxels_and_generates_the_masked_ones(model_and_known, sampler):
    model, info, known, mask = model_and_known
    steps = list(
        sample_infill(
            model,
            known,
            mask,
            sampler,
            12,
            2,
            generator=torch.Generator().manual_seed(0),
            diffusion=diffusion_for(info),
        )
    )
    assert len(steps) == 12 and steps[-1].sample is not None
    out = steps[-1].sample
    assert torch.equal(out[~mask], known[~mask])  # exactly the input outside the region
    inside = out[mask]
    assert torch.isfinite(inside).all() and not torch.allclose(inside, known[mask])  # made anew
    # every streamed x0_hat shows the known voxels in place
    assert all(torch.equal(s.x0_hat[~mask], known[~mask]) for s in steps)
    # and the generated region fits its surroundings: its mean HU is near the original region's
    hu = info.hu_window.to_hu
    assert abs(float(hu(inside.numpy()).mean()) - float(hu(known[mask].numpy()).mean())) < 250


def test_infill_is_seeded_and_refuses_an_empty_mask(model_and_known):
    model, info, known, mask = model_and_known

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return run_to_end(
            sample_infill(model, known, mask, "hot", 6, generator=gen, diffusion=diffusion_for(info))
        )

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    with pytest.raises(ValueError, match="mask is empty"):
        sample_infill(model, known, torch.zeros_like(mask), "hot", 6)


def test_prdit_edit_infill_writes_back_only_the_region(tmp_path, capsys):
    import json

    import nibabel as nib
    import numpy as np

    from prdit.cli import main
    from prdit.data.io import write_nifti

    phantom = generate_phantom(7, 48)  # another grid than the model's (48^3 at 7.3 mm vs 32^3 at 11 mm)
    src = tmp_path / "ct.nii.gz"
    write_nifti(phantom, src)
    argv = [
        "edit",
        "infill",
        str(src),
        "--box",
        "-40",
        "-40",
        "-40",
        "40",
        "40",
        "40",
        "--model",
        "fast-32",
        "--steps",
        "8",
        "--out",
        str(tmp_path / "e"),
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    before = np.asarray(nib.load(src).dataobj, dtype=np.float32)
    after = np.asarray(nib.load(tmp_path / "e" / "edited.nii.gz").dataobj, dtype=np.float32)
    side = json.loads((tmp_path / "e" / "edited.json").read_text())
    changed = before != after
    assert 0 < changed.sum() <= side["edit"]["synthetic_voxels"] < before.size  # only inside the region
    assert side["edit"]["kind"] == "infill" and side["checkpoint"] == "fast-32.safetensors"
    # the DICOM export says the series is partly synthetic and how
    import pydicom

    assert main(["export-dicom", str(tmp_path / "e" / "edited.nii.gz"), str(tmp_path / "d")]) == 0
    first = pydicom.dcmread(next((tmp_path / "d").rglob("*.dcm")))
    assert first.SeriesDescription.startswith("SYNTHETIC REGION")
    assert "in-fill" in first.DerivationDescription and str(side["edit"]["synthetic_voxels"]) in (
        first.DerivationDescription
    )
    # a region that misses the volume is a clear error, and nothing is written
    assert (
        main(
            [
                "edit",
                "infill",
                str(src),
                "--box",
                "900",
                "900",
                "900",
                "950",
                "950",
                "950",
                "--out",
                str(tmp_path / "f"),
            ]
        )
        == 2
    )
    assert "covers no voxel" in capsys.readouterr().err and not (tmp_path / "f" / "edited.nii.gz").exists()


def test_superres_agrees_with_the_measurement_and_adds_detail(model_and_known):
    from prdit.editing import sample_superres

    model, info, known, _mask = model_and_known
    low = torch.nn.functional.avg_pool3d(known, 2)  # 16^3: what a coarser scanner would have seen
    steps = list(
        sample_superres(
            model,
            low,
            2,
            "hot",
            12,
            2,
            generator=torch.Generator().manual_seed(0),
            diffusion=diffusion_for(info),
        )
    )
    out = steps[-1].sample
    assert out.shape == known.shape and len(steps) == 12
    assert torch.allclose(torch.nn.functional.avg_pool3d(out, 2), low, atol=1e-5)  # consistent
    blocky = low.repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    assert float((out - blocky).abs().mean()) > 1e-3  # detail inside the blocks, not just upsampling
    # closer to the true fine volume than the blocky upsampling is
    assert float((out - known).abs().mean()) < 1.5 * float((blocky - known).abs().mean())


def test_prdit_edit_superres_writes_a_finer_volume_that_averages_back_to_the_input(tmp_path, capsys):
    import json

    import numpy as np

    from prdit.cli import main
    from prdit.data.io import read_volume, write_nifti
    from prdit.editing import model_grid_like, resample_onto

    _model, info = load_for_inference(bundled_model("fast-32"))
    truth = generate_phantom(11, 32)  # the model's grid (32^3 at 10.9 mm)
    low_grid = model_grid_like(truth, 16, tuple(2 * s for s in info.spacing))
    low = low_grid.with_array(resample_onto(truth, low_grid))  # a 16^3 scan at 21.9 mm
    src = tmp_path / "low.nii.gz"
    write_nifti(low, src)
    argv = ["edit", "superres", str(src), "--model", "fast-32", "--steps", "8", "--threads", "1"]
    assert main([*argv, "--baseline", "--out", str(tmp_path / "s")]) == 0
    out = read_volume(tmp_path / "s" / "superres.nii.gz")
    side = json.loads((tmp_path / "s" / "superres.json").read_text())
    assert out.shape == (32, 32, 32) and np.allclose(out.spacing, info.spacing, atol=1e-4)
    assert np.allclose(out.center_lps(), low.center_lps(), atol=1e-3)  # same place in the patient
    blocks = out.array.reshape(16, 2, 16, 2, 16, 2)
    pooled = blocks.mean(axis=(1, 3, 5))
    w = info.hu_window
    inside = ((blocks > w.low) & (blocks < w.high)).all(axis=(1, 3, 5))  # no voxel clipped to the window
    assert inside.mean() > 0.3
    assert np.abs(pooled - low.array)[inside].max() < 0.5  # HU: the measurement, averaged back
    assert side["edit"]["kind"] == "superres" and side["edit"]["factor"] == 2
    assert side["edit"]["measurement_size"] == [16, 16, 16]
    assert (tmp_path / "s" / "trilinear.nii.gz").exists()
    # a factor the model's size does not allow is named
    assert main([*argv, "--factor", "4", "--out", str(tmp_path / "t")]) == 0  # 32 / 4 = 8: allowed
    assert main(["edit", "superres", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "u")]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err


def test_edit_regions_box_and_sphere_in_patient_millimetres():
    import numpy as np

    from prdit.editing import EditError, box_mask, ellipsoid_mask, prepare_infill

    _model, info = load_for_inference(bundled_model("fast-32"))
    volume = generate_phantom(5, 32)
    c = volume.center_lps()
    box = box_mask(volume, c - 100, c + 100)
    ball = ellipsoid_mask(volume, c - 100, c + 100)
    assert ball.sum() < box.sum() and np.all(box[ball])  # the ball sits inside its box
    ratio = ball.sum() / box.sum()
    assert abs(ratio - np.pi / 6) < 0.08  # a sphere fills pi/6 of its cube
    job = prepare_infill(volume, box, info)
    assert job.mask.sum() == box.sum()  # the model's grid is the volume's here
    with pytest.raises(EditError, match="covers no voxel"):
        prepare_infill(volume, np.zeros_like(box), info)
    with pytest.raises(EditError, match="whole field"):
        prepare_infill(volume, np.ones_like(box), info)
