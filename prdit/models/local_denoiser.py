"""Stage 1: the local denoiser — an adaLN-conditioned MLP applied to every overlapping 3D patch.

Spec section 3. Also home of the patch geometry shared by both stages: :func:`extract_patches`
(reflect-pad, unfold with (p, s)) and :func:`unpatchify` (non-overlapping output patches of edge
``s`` back to a volume). Each token sees ``p^3`` voxels but writes only the central-ish ``s^3``
block, so neighbouring tokens overlap in what they read and never in what they write.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import modulate


def extract_patches(
    x: torch.Tensor, patch: int, stride: int, pad: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``[B, C, D, H, W] -> ([B, N, C*p^3], (gd, gh, gw))``.

    Tokens in (gd, gh, gw) row-major order; inside a token channel-major, then (pd, ph, pw).
    """
    if pad:
        x = F.pad(x, (pad,) * 6, mode="reflect")
    b, c = x.shape[:2]
    u = x.unfold(2, patch, stride).unfold(3, patch, stride).unfold(4, patch, stride)
    # u: [B, C, gd, gh, gw, p, p, p] -> [B, gd, gh, gw, C, p, p, p]
    grid = tuple(u.shape[2:5])
    u = u.permute(0, 2, 3, 4, 1, 5, 6, 7)
    return u.reshape(b, grid[0] * grid[1] * grid[2], c * patch**3), grid  # type: ignore[return-value]


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], stride: int, channels: int) -> torch.Tensor:
    """``[B, N, s^3*C] -> [B, C, gd*s, gh*s, gw*s]``; each token's vector is (od, oh, ow, C), channel last."""
    b = tokens.shape[0]
    gd, gh, gw = grid
    s = stride
    v = tokens.reshape(b, gd, gh, gw, s, s, s, channels)
    v = v.permute(0, 7, 1, 4, 2, 5, 3, 6)  # B, C, gd, od, gh, oh, gw, ow
    return v.reshape(b, channels, gd * s, gh * s, gw * s)


class SwiGLU(nn.Module):
    """``fc2(norm(silu(fc1_g(x)) * fc1_x(x)))`` with an affine LayerNorm on the hidden width (eps 1e-5)."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-5)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(F.silu(self.fc1_g(x)) * self.fc1_x(x)))


class MLPDenoiser(nn.Module):
    """Two modulated SwiGLU layers with a residual, a final modulation and a linear read-out.

    ``h = SwiGLU1(mod(LN(x), 1)); h = SwiGLU2(mod(LN(h), 2)); h = mod(h + x, 3); out = linear_final(h)``.
    The adaLN projection and ``linear_final`` start at zero, so the untrained denoiser outputs 0.
    ``hidden`` is the SwiGLU width: the token width (mlp ratio 1) in stages 1-2 as published; a
    stage-3 residual branch may be narrower, which cuts its per-voxel cost (see docs/bundled-model.md).
    """

    def __init__(self, dim: int, out_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.mlp1 = SwiGLU(dim, hidden)
        self.mlp2 = SwiGLU(dim, hidden)
        self.linear_final = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def _ln(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), eps=1e-6)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, shift2, scale2, shift3, scale3 = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = self.mlp1(modulate(self._ln(x), shift1, scale1))
        h = self.mlp2(modulate(self._ln(h), shift2, scale2))
        h = modulate(h + x, shift3, scale3)
        return self.linear_final(h)


class LocalDenoiser(nn.Module):
    """Patch tokens ``[B, N, C*p^3]`` + coarse conditioning ``[B, C*p^3]`` -> ``[B, N, s^3*out]``.

    Kept as its own module (state-dict prefix ``coarse.mlp_denoise``) so stage 2 can freeze it and
    stage 3 can reuse the same family at full resolution.
    """

    def __init__(self, token_dim: int, out_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.mlp_denoise = MLPDenoiser(token_dim, out_dim, hidden)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mlp_denoise(tokens, c)

    def zero_init(self) -> None:
        """Zero the adaLN projection and the read-out (spec: zero-initialised outputs)."""
        m = self.mlp_denoise
        for lin in (m.adaLN_modulation[-1], m.linear_final):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
