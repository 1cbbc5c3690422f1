"""Stage 2: the global residual diffusion transformer (spec section 4).

It reads the same raw patch tokens as the local denoiser, embeds them, adds the fixed 3D
positional encoding, runs ``depth`` adaLN-Zero DiT blocks with full self-attention over all
tokens, and predicts a per-token residual that is *added* to the local denoiser's output. All
read-outs start at zero, so a fresh stage-2 model reproduces its stage-1 model exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .embedding import modulate, positional_encoding_3d


def _ln(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters, eps 1e-6 (DiT): the adaLN supplies scale and shift."""
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class PatchEmbedder(nn.Module):
    """``norm(fc2(gelu_tanh(fc1(x))) + skip(x))``: raw ``C*p^3`` values -> ``hidden``."""

    def __init__(self, token_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(token_dim, 4 * hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(4 * hidden, hidden)
        self.skip = nn.Linear(token_dim, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc2(self.act(self.fc1(x))) + self.skip(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: gated attention and gated MLP, both conditioned on ``c``."""

    def __init__(self, hidden: int, heads: int, attention: str | None = None) -> None:
        super().__init__()
        self.attn = Attention(hidden, heads, backend=attention)
        self.mlp = Mlp(hidden, 4 * hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(
            6, dim=-1
        )
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(_ln(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(_ln(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(_ln(x), shift, scale))


class GlobalRefiner(nn.Module):
    """Patch tokens ``[B, N, C*p^3]`` + fine conditioning ``[B, hidden]`` -> residual ``[B, N, s^3*out]``.

    ``pos_embed`` is a non-persistent buffer for the configured grid (it is derived, not learned,
    and is absent from the reference state dict); other grids get their encoding computed on the fly.
    """

    def __init__(
        self,
        token_dim: int,
        hidden: int,
        heads: int,
        depth: int,
        out_dim: int,
        grid: tuple[int, int, int],
        attention: str | None = None,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.grid = tuple(grid)
        self.patch_embedder = PatchEmbedder(token_dim, hidden)
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, attention) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, out_dim)
        self.register_buffer("pos_embed", positional_encoding_3d(self.grid, hidden), persistent=False)

    def positional_encoding(self, grid: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        if tuple(grid) == self.grid:
            return self.pos_embed.to(dtype=like.dtype)
        return positional_encoding_3d(tuple(grid), self.hidden, device=like.device).to(like.dtype)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        x = self.patch_embedder(tokens)
        x = x + self.positional_encoding(grid, x).unsqueeze(0)
        for block in self.blocks:
            x = block(x, c)
        return self.final_layer(x, c)

    def zero_init(self) -> None:
        """Zero every adaLN projection and the final read-out (adaLN-Zero)."""
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for lin in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
