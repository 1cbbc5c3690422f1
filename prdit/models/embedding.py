"""Conditioning signals: the timestep embedder (shared trunk, coarse and fine heads) and the fixed
3D positional encoding of the token grid.

Spec section 2 (timestep) and section 4 (positional encoding). Names follow the reference state
dict: ``t_embedder.mlp.0``, ``t_embedder.coarse_head``, ``t_embedder.fine_head``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FREQUENCY_DIM = 256


def timestep_frequencies(
    t: torch.Tensor, dim: int = FREQUENCY_DIM, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features of integer timesteps ``t`` ``[B]`` -> ``[B, dim]``, cos first.

    ``freqs_i = exp(-ln(max_period) * i / (dim/2))``; the result is ``[cos(t f), sin(t f)]``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; ``shift``/``scale`` ``[B, C]`` broadcast over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """``t -> silu(Linear(freq(t)))`` shared, then two linear heads.

    ``coarse_head`` conditions the local denoiser (width ``C*p^3``); ``fine_head`` the global
    transformer (width ``hidden``) and exists only when there is a transformer (``fine_dim``).
    """

    def __init__(self, hidden: int, coarse_dim: int, fine_dim: int | None = None) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, hidden), nn.SiLU())
        self.coarse_head = nn.Linear(hidden, coarse_dim)
        self.fine_head = nn.Linear(hidden, fine_dim) if fine_dim else None

    def trunk(self, t: torch.Tensor) -> torch.Tensor:
        """The shared embedding ``[B, hidden]``; its dtype follows the first Linear's weights."""
        freq = timestep_frequencies(t).to(self.mlp[0].weight.dtype)
        return self.mlp(freq)


def positional_encoding_3d(grid: tuple[int, int, int], dim: int, device=None) -> torch.Tensor:
    """Fixed, resolution-independent encoding of a ``(gd, gh, gw)`` token grid -> ``[gd*gh*gw, dim]``.

    Token order is (gd, gh, gw) row-major (as the patch extractor). Per axis the coordinate is
    ``(i + 0.5) / g`` in (0, 1), so the same physical position gets the same code at any grid size.
    ``F = dim // 6`` frequencies ``2 pi f_max^(k / (F - 1))`` with ``f_max = 0.95 * g / 2`` (below
    the grid's Nyquist). Concatenation order: x (last axis), y, z (first axis), each ``[sin, cos]``.
    When ``dim`` is not a multiple of 6 (PRDiT-L: 1024) the last ``dim - 6F`` channels are zero —
    a documented deviation; the spec's formula leaves them undefined.
    """
    n_freq = dim // 6
    if n_freq < 1:
        raise ValueError(f"positional encoding needs a width of at least 6, got {dim}")
    k = torch.arange(n_freq, dtype=torch.float64)
    expo = k / (n_freq - 1) if n_freq > 1 else torch.zeros_like(k)
    parts = []
    # spatial axes of the grid (z=0, y=1, x=2); the encoding lists x first.
    for axis in (2, 1, 0):
        g = grid[axis]
        f_max = 0.95 * g / 2.0
        freqs = 2.0 * math.pi * torch.pow(torch.tensor(f_max, dtype=torch.float64), expo)
        coord = (torch.arange(g, dtype=torch.float64) + 0.5) / g
        shape = [1, 1, 1]
        shape[axis] = g
        pos = coord.reshape(shape).expand(*grid).reshape(-1, 1)
        parts += [torch.sin(pos * freqs), torch.cos(pos * freqs)]
    enc = torch.cat(parts, dim=1)
    if enc.shape[1] < dim:
        enc = torch.cat([enc, enc.new_zeros(enc.shape[0], dim - enc.shape[1])], dim=1)
    return enc.to(dtype=torch.float32, device=device)
