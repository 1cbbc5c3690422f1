"""The models shipped in resources/models: the 64^3 default reuses the 32^3 one, frozen, bit for bit."""

from __future__ import annotations

import pytest
import torch

from prdit import checkpoint as ckpt
from prdit.diffusion import run_to_end, sample
from prdit.paths import bundled_model

DEFAULT, FAST = bundled_model("default"), bundled_model("fast-32")
pytestmark = pytest.mark.skipif(
    DEFAULT is None or FAST is None, reason="no bundled models in resources/models"
)


def test_the_default_is_stage3_at_64_on_the_frozen_fast_32_model_bit_for_bit():
    high, high_meta = ckpt.load_safetensors(DEFAULT)
    low, low_meta = ckpt.load_safetensors(FAST)
    assert (high_meta["stage"], high_meta["base_size"], high_meta["input_size"]) == (3, 32, 64)
    assert (low_meta["model_name"], low_meta["input_size"]) == (high_meta["model_name"], 32)
    assert high_meta["hu_window"] == low_meta["hu_window"]
    for key, value in low.items():
        assert torch.equal(high["base." + key].float(), value.float()), key
    assert any(k.startswith("residual.") for k in high)  # and something was added on top


def test_both_bundled_models_sample_with_their_recommended_settings():
    for path, size in ((DEFAULT, 64), (FAST, 32)):
        model, info = ckpt.load_for_inference(path)
        rec = info.sampler_defaults
        assert rec.recommended and info.input_size == size
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            x = run_to_end(sample(model, (1, 1, size, size, size), rec.sampler, 2, rec.k, generator=g))
        assert x.shape == (1, 1, size, size, size) and torch.isfinite(x).all()
