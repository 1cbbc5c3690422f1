"""Stage 3: a frozen low-resolution PRDiT plus a trainable full-resolution local residual."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prdit.diffusion import IaNDiffusion
from prdit.models import (
    InputSizeError,
    build_highres_model,
    build_model,
    build_model_from_config,
    load_weights,
)


def _trained_looking_base(size: int = 16):
    base = build_model("PRDiT-XS/4/1", input_size=size)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return base


def test_fresh_stage3_equals_the_upsampled_base_prediction():
    base = _trained_looking_base()
    hr = build_highres_model(base, input_size=32, patch=10)  # small branch for speed; default is 12
    assert hr.config.factor == 2 and (hr.config.patch, hr.config.stride, hr.config.pad) == (10, 8, 1)
    x = torch.rand(2, 1, 32, 32, 32) * 2 - 1
    t = torch.tensor([50, 800])
    with torch.no_grad():
        out = hr(x, t)
        lo = base(x[:, :, ::2, ::2, ::2], t)  # nearest downsampling picks every other voxel
    assert out.shape == (2, 2, 32, 32, 32)
    noise_up = lo[:, :1].repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    image_up = F.interpolate(lo[:, 1:], size=(32, 32, 32), mode="trilinear", align_corners=False)
    torch.testing.assert_close(out[:, :1], noise_up, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 1:], image_up, rtol=0, atol=1e-6)
    assert lo.abs().mean() > 1e-3  # the comparison is not between zeros


def test_training_stage3_leaves_the_base_bit_identical():
    torch.manual_seed(0)
    base = _trained_looking_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    hr = build_highres_model(base, input_size=32, patch=10)
    trainable = hr.trainable_parameters()
    assert trainable and all(not any(p is q for q in base.parameters()) for p in trainable)
    assert hr.num_parameters(trainable_only=True) == sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(hr.parameters(), lr=1e-3, weight_decay=0.1)  # even given every parameter
    diffusion = IaNDiffusion()
    x0 = torch.rand(1, 1, 32, 32, 32) * 2 - 1
    hr.train()
    assert not base.training
    branch_before = hr.residual.mlp_denoise.linear_final.weight.clone()
    for step in range(2):
        opt.zero_grad()
        losses = diffusion.training_losses(hr, x0, generator=torch.Generator().manual_seed(step))
        losses["loss"].backward()
        assert all(p.grad is None for p in base.parameters())
        opt.step()
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(hr.residual.mlp_denoise.linear_final.weight, branch_before)
    # the optional joint fine-tune can unfreeze it
    hr.unfreeze_base()
    assert len(hr.trainable_parameters()) == len(list(hr.parameters()))


def test_stage3_state_dict_and_config_round_trip():
    hr = build_highres_model(_trained_looking_base(), input_size=32, patch=10)
    again = build_model_from_config(hr.config.to_dict())
    load_weights(again, hr.state_dict())
    x, t = torch.rand(1, 1, 32, 32, 32), torch.tensor([300])
    with torch.no_grad():
        assert torch.equal(again(x, t), hr(x, t))
    assert again.config == hr.config and again.base_frozen


def test_a_narrow_branch_has_the_width_asked_for_and_round_trips():
    base = _trained_looking_base()
    full = build_highres_model(base, input_size=32, patch=10)
    narrow = build_highres_model(base, input_size=32, patch=10, width=64)
    swiglu = narrow.residual.mlp_denoise.mlp1
    assert (swiglu.fc1_g.out_features, swiglu.fc2.in_features, swiglu.fc2.out_features) == (64, 64, 1000)
    assert full.residual.mlp_denoise.mlp1.fc1_g.out_features == 1000  # default: the token width
    saved = narrow.num_parameters(trainable_only=True)
    assert saved < full.num_parameters(trainable_only=True) - 2 * 3 * (1000 - 64) * 1000 + 1
    again = build_model_from_config(narrow.config.to_dict())
    assert again.config.branch_width == 64
    load_weights(again, narrow.state_dict())
    with pytest.raises(ValueError, match="branch width must be a positive integer"):
        build_highres_model(base, input_size=32, patch=10, width=0)


def test_picked_alignment_puts_the_base_answer_where_its_input_came_from():
    """Nearest downsampling feeds the base voxel f*i; "picked" upsampling returns its answer there,
    so a volume the base reproduces exactly survives the round trip (the spec's block-centre
    upsampling shifts it by half a voxel: the drift measured in docs/bundled-model.md)."""
    from prdit.models.highres import upsample_to_picked

    lo = torch.randn(1, 1, 8, 8, 8)
    assert torch.allclose(upsample_to_picked(lo, 2)[..., ::2, ::2, ::2], lo, atol=1e-6)
    ramp = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 1, 16, 2, 2)
    picked = upsample_to_picked(ramp[:, :, ::2].contiguous(), 2)[0, 0, :, 0, 0]
    block = F.interpolate(ramp[:, :, ::2], size=(16, 2, 2), mode="trilinear", align_corners=False)[
        0, 0, :, 0, 0
    ]
    assert torch.allclose(picked[:15], ramp[0, 0, :15, 0, 0])  # the ramp comes back where it was
    assert torch.allclose((block - ramp[0, 0, :, 0, 0])[2:14], torch.full((12,), -0.5))  # half a voxel off
    base = _trained_looking_base()
    hr = build_highres_model(base, input_size=32, patch=10, alignment="picked")
    again = build_model_from_config(hr.config.to_dict())
    assert again.config.alignment == "picked"
    with pytest.raises(ValueError, match="alignment must be one of"):
        build_highres_model(base, input_size=32, patch=10, alignment="centre")
    implied = build_highres_model(base, input_size=32, patch=10, noise="implied", noise_scale=0.7)
    again = build_model_from_config(implied.config.to_dict())
    assert (again.config.noise, again.config.noise_scale) == ("implied", 0.7)
    legacy = {k: v for k, v in hr.config.to_dict().items() if not k.startswith(("noise", "num_timesteps"))}
    assert build_model_from_config(legacy).config.noise == "nearest"  # files saved before the option
    with pytest.raises(ValueError, match="noise must be one of"):
        build_highres_model(base, input_size=32, patch=10, noise="trilinear")
    with pytest.raises(ValueError, match="noise_image_var must be a positive number"):
        build_highres_model(base, input_size=32, patch=10, noise="implied", noise_image_var=0)


def test_implied_noise_is_the_least_squares_noise_given_the_image():
    """Against the truth, the implied estimate never does worse than predicting zero noise, beats
    dividing by sin(b) near clean data, and beats the nearest-upsampled base noise, which is
    independent noise on 7 of every 8 voxels."""
    from prdit.models.highres import implied_noise

    g = torch.Generator().manual_seed(0)
    diffusion = IaNDiffusion()
    x0 = torch.rand(4, 1, 16, 16, 16, generator=g) * 2 - 1
    image = x0 + 0.1 * torch.randn(x0.shape, generator=g)  # an image estimate with error variance 0.01
    for t in (5, 100, 500, 900, 999):
        tt = torch.full((4,), t)
        eps = torch.randn(x0.shape, generator=g)
        n = 0.5 * eps
        x = diffusion.q_sample(x0, tt, eps)
        est = implied_noise(x, image, tt, 0.5, 1000, 0.01)
        err = ((est - n) ** 2).mean().item()
        assert err <= 0.25 * 1.02, t  # never worse than zero
        beta = diffusion.angle(float(t))
        ratio = (x - torch.cos(torch.tensor(beta)) * image) / torch.sin(torch.tensor(beta))
        ratio_err = ((ratio - n) ** 2).mean().item()
        assert err <= ratio_err * 1.02, t
        # the formula: sigma^2 s (x - c image) / (sigma^2 s^2 + v c^2)
        c, s_ = torch.cos(torch.tensor(beta)), torch.sin(torch.tensor(beta))
        expected = 0.25 * s_ * (x - c * image) / (0.25 * s_**2 + 0.01 * c**2)
        torch.testing.assert_close(est, expected, rtol=1e-5, atol=1e-6)
    # at t = 5 (nearly clean) the estimate must not blow up the image error by 1 / sin(b)
    assert err < 0.25


def test_implied_noise_starts_a_stage3_model_on_the_bundled_base_far_closer():
    """On the shipped 32^3 model and 64^3 validation phantoms, a fresh stage-3 model's loss with the
    implied noise is well below both the spec's nearest-upsampled noise and predicting zero noise."""
    from prdit.checkpoint import load_for_inference
    from prdit.data.datasets import PhantomDataset
    from prdit.paths import resource

    base = load_for_inference(resource("models", "fast-32.safetensors"))[0]
    x0 = torch.stack([PhantomDataset(64, 4, seed_offset=100000)[i] for i in range(4)])
    diffusion = IaNDiffusion()
    g = torch.Generator().manual_seed(1)
    losses = {}
    for noise in ("nearest", "fed", "implied"):
        hr = build_highres_model(base, input_size=64, patch=10, width=16, alignment="picked", noise=noise)
        hr.eval()
        g.manual_seed(1)
        total = 0.0
        with torch.inference_mode():
            for _ in range(2):
                total += float(diffusion.training_losses(hr, x0, generator=g)["loss"])
        losses[noise] = total / 2
    assert losses["implied"] < 0.5 * losses["nearest"], losses
    assert losses["implied"] < 0.2, losses  # zero noise alone costs 0.25
    assert losses["fed"] < 0.25 < losses["nearest"], losses  # a copied neighbour's noise is worse than none


def test_fed_noise_is_the_base_answer_on_the_fed_voxels_and_zero_elsewhere():
    """Nearest downsampling gives the base voxel f*i; "fed" fusion puts the base's noise answer
    there and nowhere else, and the model's noise channel is exactly that at a fresh branch."""
    from prdit.models.highres import fed_voxels_only

    lo = torch.randn(2, 1, 4, 4, 4)
    hi = fed_voxels_only(lo, 2)
    assert hi.shape == (2, 1, 8, 8, 8)
    assert torch.equal(hi[..., ::2, ::2, ::2], lo)
    mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    mask[::2, ::2, ::2] = True
    assert torch.count_nonzero(hi[..., ~mask]) == 0
    base = _trained_looking_base()
    hr = build_highres_model(base, input_size=32, patch=10, noise="fed").eval()
    assert build_model_from_config(hr.config.to_dict()).config.noise == "fed"
    x = 0.5 * torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([400])
    with torch.no_grad():
        noise_hi = hr(x, t)[:, :1]
        noise_lo = base(F.interpolate(x, size=(16, 16, 16), mode="nearest"), t)[:, :1]
    torch.testing.assert_close(noise_hi, fed_voxels_only(noise_lo, 2))


def test_stage3_rejects_bad_sizes():
    base = build_model("PRDiT-XS/4/1", input_size=16)
    with pytest.raises(InputSizeError, match="integer multiple .* of the base model's 16"):
        build_highres_model(base, input_size=24)
    with pytest.raises(ValueError, match="patch must be one of"):
        build_highres_model(base, input_size=32, patch=9)
    hr = build_highres_model(base, input_size=32, patch=10)
    assert build_highres_model(base, input_size=32).config.patch == 12  # the published branch
    with pytest.raises(InputSizeError, match="not a multiple of the 2x factor"):
        hr(torch.zeros(1, 1, 32, 33, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"expected a volume batch \[B, 1, D, H, W\]"):
        hr(torch.zeros(1, 32, 32, 32), torch.tensor([1]))
