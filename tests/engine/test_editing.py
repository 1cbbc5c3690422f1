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
