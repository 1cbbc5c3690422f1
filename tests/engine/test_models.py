"""The PRDiT network: registry, shapes, zero-init, reference state-dict layout, stage-2 freezing, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from prdit.models import (
    InputSizeError,
    UnknownModelError,
    WeightsMismatchError,
    build_model,
    build_model_from_config,
    list_models,
    load_weights,
    model_config,
)
from prdit.models.embedding import positional_encoding_3d, timestep_frequencies
from prdit.models.local_denoiser import extract_patches, unpatchify

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference-state-dict.txt"


def _reference_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    """Parse ``# PRDiT-XS/12/0, input 32^3 ...`` headers followed by ``name AxB`` lines."""
    layouts: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            current = re.match(r"#\s*(PRDiT-\S+?),", line).group(1)
            layouts[current] = {}
            continue
        name, shape = line.split()
        layouts[current][name] = tuple(int(v) for v in shape.split("x"))
    return layouts


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)


# ---------------------------------------------------------------------- registry
def test_registry_names_and_geometry():
    names = list_models()
    assert len(names) == 5 * 4 * 8 + 2 and len(set(names)) == len(names)
    assert "PRDiT-B/12/4" in names and "PRDiT-XS/4/0" in names and "PRDiT-XS/4/1" in names
    c = model_config("PRDiT-B/12/4", input_size=128)
    assert (c.hidden, c.heads, c.patch, c.stride, c.pad, c.depth) == (768, 12, 12, 8, 2, 4)
    assert c.grid == 16 and c.num_tokens == 4096 and c.token_dim == 1728 and c.out_dim == 1024
    assert model_config("PRDiT-B/12/4", input_size=256).num_tokens == 32768
    assert model_config("prdit-l/16/12", input_size=64).name == "PRDiT-L/16/12"
    xl = model_config("PRDiT-XL/10/8", input_size=64)
    assert (xl.hidden, xl.heads, xl.pad, xl.depth) == (1152, 16, 1, 8)
    special = model_config("PRDiT-XS/4/0", input_size=32)
    assert (special.patch, special.stride, special.pad, special.depth, special.grid) == (4, 4, 0, 0, 8)
    # XS/4/1: with the published pad 0 no size tiles (g*s = S-2); pad 1 is the documented fix.
    s41 = model_config("PRDiT-XS/4/1", input_size=32)
    assert (s41.patch, s41.stride, s41.pad, s41.depth, s41.grid) == (4, 2, 1, 1, 16)
    assert s41.with_(pad=0).valid_sizes(up_to=512) == []  # the published pad 0: g = S/2 - 1, never tiles


def test_config_round_trip_rebuilds_same_model():
    model = build_model("PRDiT-XS/10/1", input_size=16, attention="math")
    again = build_model_from_config(model.config.to_dict())
    assert again.config == model.config
    assert [k for k in again.state_dict()] == [k for k in model.state_dict()]


# ---------------------------------------------------------------------- patch geometry
def test_patch_extraction_order_and_unpatchify_inverse():
    x = torch.arange(2 * 16**3, dtype=torch.float32).reshape(1, 2, 16, 16, 16)
    tokens, grid = extract_patches(x, patch=4, stride=4, pad=0)
    assert grid == (4, 4, 4) and tokens.shape == (1, 64, 2 * 64)
    # token (gd=1, gh=2, gw=3), channel 1, voxel (pd=0, ph=1, pw=2) -> x[1, 4+0, 8+1, 12+2]
    tok = 1 * 16 + 2 * 4 + 3
    assert tokens[0, tok, 1 * 64 + 0 * 16 + 1 * 4 + 2] == x[0, 1, 4, 9, 14]
    # un-patchify expects (od, oh, ow, channel) channel-last per token
    per_token = tokens.reshape(1, 64, 2, 4, 4, 4).permute(0, 1, 3, 4, 5, 2).reshape(1, 64, -1)
    assert torch.equal(unpatchify(per_token, grid, 4, 2), x)


def test_reflect_padded_overlapping_patches():
    x = torch.randn(1, 1, 16, 16, 16)
    tokens, grid = extract_patches(x, patch=12, stride=8, pad=2)
    assert grid == (2, 2, 2) and tokens.shape == (1, 8, 1728)
    # token (0,0,1) reads padded rows 0..11 / cols 8..19: its voxel (2,2,2) is x[0,0,0,0,8]
    assert tokens[0, 1].reshape(12, 12, 12)[2, 2, 2] == x[0, 0, 0, 0, 8]
    # the reflected face: padded index 0 is original index 2
    assert tokens[0, 0].reshape(12, 12, 12)[0, 2, 2] == x[0, 0, 2, 0, 0]


# ---------------------------------------------------------------------- embeddings
def test_timestep_and_positional_encodings_follow_the_spec():
    t = torch.tensor([0, 7, 999])
    f = timestep_frequencies(t)
    assert f.shape == (3, 256)
    freq5 = torch.tensor(math.exp(-math.log(10000.0) * 5 / 128))
    assert torch.allclose(f[1, 5], torch.cos(7 * freq5)) and torch.allclose(
        f[1, 128 + 5], torch.sin(7 * freq5)
    )
    assert torch.equal(f[0, :128], torch.ones(128))
    pe = positional_encoding_3d((4, 4, 4), 192)
    assert pe.shape == (64, 192)
    # token (z=1, y=2, x=3): x block first; frequency 0 is 2*pi, so sin(2 pi (3 + .5)/4)
    tok = 1 * 16 + 2 * 4 + 3
    assert pe[tok, 0].item() == pytest.approx(
        torch.sin(torch.tensor(2 * torch.pi * 3.5 / 4)).item(), abs=1e-6
    )
    assert pe[tok, 64].item() == pytest.approx(
        torch.sin(torch.tensor(2 * torch.pi * 2.5 / 4)).item(), abs=1e-6
    )
    assert pe[tok, 128 + 32].item() == pytest.approx(
        torch.cos(torch.tensor(2 * torch.pi * 1.5 / 4)).item(), abs=1e-6
    )
    f_max = 0.95 * 4 / 2  # last frequency of the x block
    assert pe[tok, 31].item() == pytest.approx(
        float(torch.sin(torch.tensor(2 * torch.pi * f_max * 3.5 / 4))), abs=1e-5
    )
    # width not divisible by 6 (PRDiT-L): zero-padded channels
    pe_l = positional_encoding_3d((2, 2, 2), 1024)
    assert pe_l.shape == (8, 1024) and torch.all(pe_l[:, 1020:] == 0) and pe_l[:, :1020].abs().sum() > 0


# ---------------------------------------------------------------------- shapes and zero-init
@pytest.mark.parametrize(
    "name,size,batch",
    [
        ("PRDiT-XS/12/0", 16, 2),
        ("PRDiT-XS/12/1", 32, 1),
        ("PRDiT-XS/10/2", 24, 1),
        ("PRDiT-S/14/0", 16, 1),
        ("PRDiT-XS/10/1", 48, 1),
        ("PRDiT-XS/4/0", 16, 2),
        ("PRDiT-XS/4/1", 16, 1),
    ],
)
def test_output_shape_and_zero_at_init(name, size, batch):
    model = build_model(name, input_size=size)
    x = torch.rand(batch, 1, size, size, size) * 2 - 1
    t = torch.randint(0, 1000, (batch,))
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == (batch, 2, size, size, size) and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0  # zero-initialised read-outs


def test_randomised_model_gives_finite_varied_output_and_other_sizes():
    model = build_model("PRDiT-XS/12/1", input_size=16)
    _randomize(model)
    x = torch.randn(1, 1, 16, 16, 16)
    out16 = model(x, torch.tensor([10]))
    assert torch.isfinite(out16).all() and out16.std() > 0
    # any size the grid tiles works, also non-cubic (positional encoding computed for that grid)
    out = model(torch.randn(1, 1, 24, 16, 32), torch.tensor([10]))
    assert out.shape == (1, 2, 24, 16, 32) and torch.isfinite(out).all()
    # token-local: changing the timestep changes the output
    assert not torch.allclose(model(x, torch.tensor([900])), out16)


def test_nonzero_after_one_optimizer_step():
    torch.manual_seed(0)
    model = build_model("PRDiT-XS/10/1", input_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    x0 = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    t = torch.tensor([100, 600])
    assert torch.count_nonzero(model(x0, t)) == 0
    target = torch.cat([torch.randn_like(x0) * 0.5, x0], dim=1)
    loss = torch.mean((model(x0, t) - target) ** 2)
    loss.backward()
    assert model.coarse.mlp_denoise.linear_final.weight.grad.abs().sum() > 0
    assert model.fine.final_layer.linear.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        out = model(x0, t)
    assert torch.count_nonzero(out) > 0.99 * out.numel() and out.abs().mean() > 1e-4


# ---------------------------------------------------------------------- stage-2 freezing
def test_stage2_loads_stage1_and_freezes_coarse_path():
    torch.manual_seed(1)
    stage1 = build_model("PRDiT-XS/10/0", input_size=16)
    _randomize(stage1, seed=1)
    stage2 = build_model("PRDiT-XS/10/2", input_size=16)
    stage2.load_stage1_state_dict({"module." + k: v for k, v in stage1.state_dict().items()})
    assert stage2.coarse_frozen
    x = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    t = torch.tensor([5, 500])
    with torch.no_grad():  # fresh stage 2 = stage 1 exactly (zero-initialised global branch)
        assert torch.equal(stage2(x, t), stage1(x, t))

    coarse_before = {n: p.detach().clone() for n, p in stage2.named_parameters() if not p.requires_grad}
    fine_before = {n: p.detach().clone() for n, p in stage2.named_parameters() if p.requires_grad}
    assert set(coarse_before) == {
        n
        for n, _ in stage2.named_parameters()
        if n.startswith(("coarse.", "t_embedder.mlp.", "t_embedder.coarse_"))
    }
    assert all(n.startswith(("fine.", "t_embedder.fine_head.")) for n in fine_before)
    assert len(stage2.trainable_parameters()) == len(fine_before)

    # Even an optimiser handed *all* parameters (with weight decay) must leave the coarse path alone.
    opt = torch.optim.AdamW(stage2.parameters(), lr=1e-3, weight_decay=0.1)
    stage2.train()
    assert not stage2.coarse.training and stage2.fine.training
    for _ in range(3):
        opt.zero_grad()
        out = stage2(x, t)
        loss = torch.mean((out - torch.cat([torch.zeros_like(x), x], 1)) ** 2)
        loss.backward()
        assert all(p.grad is None for p in stage2.coarse_parameters())
        opt.step()
    for n, p in stage2.named_parameters():
        if n in coarse_before:
            assert torch.equal(p, coarse_before[n]), n
    changed = [
        n for n, p in stage2.named_parameters() if n in fine_before and not torch.equal(p, fine_before[n])
    ]
    assert "fine.final_layer.linear.weight" in changed and "t_embedder.fine_head.weight" in changed


def test_stage1_loading_rejects_a_wrong_patch_size():
    stage1 = build_model("PRDiT-XS/10/0", input_size=16)
    stage2 = build_model("PRDiT-XS/12/1", input_size=16)
    with pytest.raises(
        WeightsMismatchError, match=r"coarse\.mlp_denoise\.mlp1\.fc1_g\.weight: expected 1728x1728"
    ):
        stage2.load_stage1_state_dict(stage1.state_dict())


# ---------------------------------------------------------------------- reference layout
@pytest.mark.parametrize("name", ["PRDiT-XS/12/0", "PRDiT-XS/12/2"])
def test_reference_state_dict_layout_loads_strictly(name):
    layout = _reference_layouts()[name]
    model = build_model(name, input_size=32)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == layout  # exactly the reference names and shapes (the pos-embed buffer is not saved)
    g = torch.Generator().manual_seed(3)
    state = {k: torch.randn(shape, generator=g) for k, shape in layout.items()}
    model.load_state_dict(state, strict=True)
    load_weights(model, {"module." + k: v for k, v in state.items()})  # DDP prefix accepted
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32), torch.tensor([250]))
    assert out.shape == (1, 2, 32, 32, 32) and torch.isfinite(out).all()


def test_load_weights_lists_every_problem():
    model = build_model("PRDiT-XS/10/1", input_size=16)
    state = dict(model.state_dict())
    del state["fine.blocks.0.attn.qkv.bias"]
    state["fine.blocks.0.mlp.fc1.weight"] = torch.zeros(100, 192)
    state["fine.blocks.7.mlp.fc1.weight"] = torch.zeros(768, 192)
    with pytest.raises(WeightsMismatchError) as err:
        load_weights(model, state)
    msg = str(err.value)
    assert "PRDiT-XS/10/1" in msg and "16^3" in msg
    assert "1 missing key(s)" in msg and "fine.blocks.0.attn.qkv.bias" in msg
    assert "1 unexpected key(s)" in msg and "fine.blocks.7.mlp.fc1.weight (768x192)" in msg
    assert "fine.blocks.0.mlp.fc1.weight: expected 768x192, given 100x192" in msg
    # a stage-1 state dict into a stage-2 model: the hint names the depth
    with pytest.raises(WeightsMismatchError, match="depth differs"):
        load_weights(model, build_model("PRDiT-XS/10/0", input_size=16).state_dict())


# ---------------------------------------------------------------------- bad input
def test_bad_input_errors_say_what_was_expected():
    with pytest.raises(UnknownModelError, match=r"PRDiT-\{XS,S,B,L,XL\}/\{10,12,14,16\}"):
        build_model("PRDiT-M/12/4")
    with pytest.raises(UnknownModelError, match=r"depth one of \(0, 1, 2, 3, 4, 8, 10, 12\)"):
        build_model("PRDiT-B/12/5")
    with pytest.raises(InputSizeError, match=r"valid sizes are 8, 16, 24, 32"):
        build_model("PRDiT-XS/12/0", input_size=30)
    with pytest.raises(InputSizeError, match=r"valid sizes are 4, 8, 12"):
        build_model("PRDiT-XS/4/0", input_size=18)
    model = build_model("PRDiT-XS/10/1", input_size=16)
    t = torch.tensor([1])
    with pytest.raises(
        ValueError, match=r"expected a volume batch \[B, 1, D, H, W\] \(5 dimensions\), got \(16, 16, 16\)"
    ):
        model(torch.zeros(16, 16, 16), t)
    with pytest.raises(ValueError, match="expected 1 input channel"):
        model(torch.zeros(1, 3, 16, 16, 16), t)
    with pytest.raises(InputSizeError, match=r"edge H=20 .* valid sizes are 8, 16, 24"):
        model(torch.zeros(1, 1, 16, 20, 16), t)
    with pytest.raises(ValueError, match=r"expected timesteps t of shape \[B\] = \[2\]"):
        model(torch.zeros(2, 1, 16, 16, 16), torch.tensor([1, 2, 3]))
