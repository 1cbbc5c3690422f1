"""Stage 3: reach 256^3 by reusing a frozen 128^3 PRDiT plus a full-resolution local residual.

Spec section 5. For a noisy volume ``x`` at the high resolution:

1. ``x_lo`` = nearest-neighbour downsample of ``x`` to the base model's size. Picking voxels (not
   averaging) keeps the per-voxel noise level the base model was trained on.
2. ``(n_lo, x0_lo) = base(x_lo, t)`` with the base frozen and run without gradients.
3. Upsample: the image channel trilinearly (align_corners False), the noise channel nearest.
   ``noise="fed"`` (ours) keeps the base's noise answer only on the voxel it was fed and puts zero
   on the other ``f^3 - 1``, where a copied neighbour's answer is worse than no answer.
   ``noise="implied"`` (ours, not the spec's) instead derives the noise at full resolution from
   ``x`` and the upsampled image (:func:`implied_noise`): the base's noise answer is right only on
   the one voxel in ``f^3`` it was fed, so nearest upsampling hands the branch a noise estimate
   worse than zero on the rest (a fresh 64^3 model on phantoms: loss 0.394 with nearest noise,
   0.264 predicting zero noise, 0.062 implied; docs/bundled-model.md).
4. Add a full-resolution correction from a new per-patch MLP denoiser (the stage-1 family: patch
   12, stride 8, pad 2) with its own timestep embedder. Its read-out starts at zero, so a fresh
   stage-3 model equals the upsampled base prediction, and its cost grows linearly with voxels.
   ``branch_width`` (default: the token width ``p^3``, as in stage 1) narrows the branch's SwiGLU
   layers: they are most of its per-voxel cost, while the detail it adds is low-dimensional.

Only the new branch trains (:meth:`HighResPRDiT.trainable_parameters`); the base stays
bit-identical. :meth:`HighResPRDiT.unfreeze_base` exists for the optional short joint fine-tune.

The base may itself be a stage-3 model: the same step one level up (32^3 -> 64^3 -> 128^3) is a
cascade of frozen models, each adding its own full-resolution residual.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import TimestepEmbedder
from .local_denoiser import LocalDenoiser, extract_patches, unpatchify
from .prdit import PRDiT
from .registry import PATCHES, STANDARD_STRIDE, InputSizeError, PRDiTConfig, config_from_dict


@dataclass(frozen=True)
class HighResConfig:
    """Stage-3 configuration; field names mirror :class:`PRDiTConfig` so callers can treat both alike.

    ``patch``/``stride``/``pad`` describe the new full-resolution branch and ``branch_width`` its
    SwiGLU width (None: the token width ``p^3``); ``hidden``/``heads``/``depth`` are the base model's;
    ``base`` is the base's full config (a dict, so this stays serialisable).
    """

    name: str
    hidden: int
    heads: int
    patch: int
    stride: int
    pad: int
    depth: int
    input_size: int
    in_channels: int
    out_channels: int
    attention: str | None
    factor: int
    base: dict[str, Any] = field(default_factory=dict)
    branch_width: int | None = None
    # Where the base's answer for low-resolution voxel i lands when its image is upsampled:
    # "block": the centre of high-resolution block [f i, f i + f) (the spec: trilinear,
    # align_corners False); "picked": high-resolution voxel f i, the one nearest downsampling fed
    # the base. "block" displaces each estimate by (f - 1) / 2 voxels along every axis, and the
    # bundled 64^3 model's samples drift ~5 mm (docs/bundled-model.md); "picked" does not.
    alignment: str = "block"
    # How the base's noise answer reaches full resolution: "nearest" (the spec), "fed" (only on the
    # voxels nearest downsampling fed the base, zero elsewhere: :func:`fed_voxels_only`) or "implied"
    # (:func:`implied_noise` from x and the upsampled image, which needs the diffusion's angle and
    # noise scale, recorded here so a saved model keeps computing what it was trained with).
    noise: str = "nearest"
    noise_image_var: float = 0.01
    noise_scale: float = 0.5
    num_timesteps: int = 1000

    @property
    def branch(self) -> PRDiTConfig:
        """The residual branch as a depth-0 PRDiT geometry (for tiling checks)."""
        return PRDiTConfig(
            f"{self.name} residual branch",
            self.hidden,
            self.heads,
            self.patch,
            self.stride,
            self.pad,
            0,
            self.input_size,
            self.in_channels,
            self.out_channels,
        )

    @property
    def token_dim(self) -> int:
        return self.in_channels * self.patch**3

    def check_size(self, size: int, what: str = "input size") -> None:
        """Raise :class:`InputSizeError` unless both this branch and the base tile ``size``."""
        if size % self.factor:
            raise InputSizeError(
                f"{self.name}: {what} {size} is not a multiple of the {self.factor}x factor between the "
                f"high-resolution branch ({self.input_size}) and the base model "
                f"({self.input_size // self.factor})"
            )
        self.branch.check_size(size, what=what)
        base_config(self.base).check_size(
            size // self.factor, what=f"downsampled {what} {size // self.factor}"
        )

    @property
    def out_dim(self) -> int:
        return self.stride**3 * self.out_channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HighResConfig:
        return config_from_dict(cls, data, "high-resolution config")


ALIGNMENTS = ("block", "picked")
NOISE_FUSIONS = ("nearest", "fed", "implied")


def implied_noise(
    x: torch.Tensor,
    image: torch.Tensor,
    t: torch.Tensor,
    noise_scale: float,
    num_timesteps: int,
    image_var: float,
) -> torch.Tensor:
    """The linear least-squares noise estimate given ``x = cos b x0 + sin b n`` and an image estimate.

    ``x - cos(b) image = sin(b) n + cos(b) (x0 - image)``; with ``n`` of variance ``noise_scale^2``
    and the image's error of variance ``image_var`` (independent), the best linear estimate of ``n``
    is ``noise_scale^2 sin(b) (x - cos(b) image) / (noise_scale^2 sin^2(b) + image_var cos^2(b))``.
    Near pure noise it is ``(x - cos b image) / sin b``, the noise the image implies; near clean data
    it shrinks to zero instead of dividing the image's error by ``sin b``. Its mean squared error is
    at most ``noise_scale^2`` (predicting zero) at every ``t``.
    """
    beta = (torch.pi / 2) * t.to(device=x.device, dtype=torch.float64) / num_timesteps
    shape = (-1,) + (1,) * (x.ndim - 1)
    cos = torch.cos(beta).reshape(shape)
    sin = torch.sin(beta).reshape(shape)
    var = noise_scale**2
    gain = (var * sin / (var * sin**2 + image_var * cos**2)).to(x.dtype)
    return gain * (x - cos.to(x.dtype) * image)


def fed_voxels_only(lo: torch.Tensor, factor: int) -> torch.Tensor:
    """``lo`` placed on the high-resolution voxels nearest downsampling fed the base (``factor * i``),
    zero on the other ``factor^3 - 1`` of each block.

    The base's noise answer for low-resolution voxel ``i`` estimates the noise of the one voxel it
    was given; its neighbours' noise is independent of it, so copying it there (nearest) is worse
    than predicting zero (a fresh 64^3 model on phantoms: loss 0.394 nearest, 0.239 fed-only).
    """
    b, c, *lo_size = lo.shape
    out = lo.new_zeros((b, c, *(factor * n for n in lo_size)))
    out[..., ::factor, ::factor, ::factor] = lo
    return out


def upsample_to_picked(lo: torch.Tensor, factor: int) -> torch.Tensor:
    """Trilinear upsampling by ``factor`` with low-resolution voxel ``i`` at high-resolution voxel
    ``factor * i``: the inverse of nearest downsampling, which picks that voxel
    (``upsample_to_picked(v, f)[..., ::f, ::f, ::f] == v``). Beyond the last one the border value
    repeats.

    Corner-aligned interpolation onto ``f (n - 1) + 1`` voxels puts voxel ``i`` exactly at ``f i``;
    the last ``f - 1`` voxels repeat the border. It runs on every sampler step, so it uses
    ``interpolate`` and ``pad`` (0.7 ms at 32^3 -> 64^3) rather than ``grid_sample`` (7.6 ms).
    """
    size = tuple(factor * (n - 1) + 1 for n in lo.shape[2:])
    up = F.interpolate(lo, size=size, mode="trilinear", align_corners=True)
    return F.pad(up, (0, factor - 1) * 3, mode="replicate")


def base_config(data: dict[str, Any]) -> PRDiTConfig | HighResConfig:
    """The stored config of a stage-3 model's base: a PRDiT's, or (a cascade) another stage 3's."""
    return HighResConfig.from_dict(data) if "base" in data else PRDiTConfig.from_dict(data)


class HighResPRDiT(nn.Module):
    """Frozen low-resolution model + trainable full-resolution local residual; same call signature."""

    def __init__(self, base: PRDiT | HighResPRDiT, config: HighResConfig) -> None:
        super().__init__()
        self.config = config
        self.base = base
        self.t_embedder = TimestepEmbedder(config.hidden, config.token_dim, None)
        self.residual = LocalDenoiser(config.token_dim, config.out_dim, config.branch_width)
        for m in self.t_embedder.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for m in self.residual.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.residual.zero_init()
        self._base_frozen = False
        self.freeze_base()

    # ------------------------------------------------------------------ freezing
    @property
    def base_frozen(self) -> bool:
        return self._base_frozen

    def freeze_base(self) -> None:
        for p in self.base.parameters():
            p.requires_grad_(False)
        self._base_frozen = True
        self.train(self.training)

    def unfreeze_base(self) -> None:
        """For the optional joint fine-tune (spec: lr ~1e-7, grad clip 0.2)."""
        for p in self.base.parameters():
            p.requires_grad_(True)
        self._base_frozen = False

    def train(self, mode: bool = True) -> HighResPRDiT:
        super().train(mode)
        if self._base_frozen:
            self.base.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def set_attention_backend(self, name: str | None) -> None:
        self.base.set_attention_backend(name)

    # ------------------------------------------------------------------ forward
    def _check(self, x: torch.Tensor) -> tuple[int, int, int]:
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != c.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{c.name}: expected a volume batch [B, {c.in_channels}, D, H, W], got {shape}")
        lo = []
        for axis, size in zip("DHW", x.shape[2:], strict=True):
            c.check_size(int(size), what=f"edge {axis}")
            lo.append(int(size) // c.factor)
        return tuple(lo)  # type: ignore[return-value]

    def upsampled_base(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Steps 1-3: the frozen base's prediction, brought to ``x``'s resolution."""
        lo = self._check(x)
        x_lo = F.interpolate(x, size=lo, mode="nearest")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._base_frozen):
            out_lo = self.base(x_lo, t)
        cfg = self.config
        c = cfg.in_channels
        if cfg.alignment == "picked":
            image = upsample_to_picked(out_lo[:, c:], cfg.factor)
        else:
            image = F.interpolate(out_lo[:, c:], size=x.shape[2:], mode="trilinear", align_corners=False)
        if cfg.noise == "implied":
            t_b = torch.as_tensor(t, device=x.device)  # [B] or a scalar: implied_noise broadcasts either
            noise = implied_noise(x, image, t_b, cfg.noise_scale, cfg.num_timesteps, cfg.noise_image_var)
        elif cfg.noise == "fed":
            noise = fed_voxels_only(out_lo[:, :c], cfg.factor)
        else:
            noise = F.interpolate(out_lo[:, :c], size=x.shape[2:], mode="nearest")
        return torch.cat([noise, image], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """High-resolution ``x`` ``[B, C, S, S, S]``, ``t`` ``[B]`` -> ``[B, 2C, S, S, S]`` [noise, image]."""
        up = self.upsampled_base(x, t)  # validates x, and t through the base model
        c = self.config
        tokens, grid = extract_patches(x, c.patch, c.stride, c.pad)
        t_vec = torch.as_tensor(t, device=x.device)
        t_vec = t_vec.expand(x.shape[0]) if t_vec.ndim == 0 else t_vec
        residual = self.residual(tokens, self.t_embedder.coarse_head(self.t_embedder.trunk(t_vec)))
        return up + unpatchify(residual, grid, c.stride, c.out_channels)


def build_highres_model(
    base_model: PRDiT | HighResPRDiT,
    input_size: int = 256,
    patch: int = 12,
    width: int | None = None,
    alignment: str = "block",
    noise: str = "nearest",
    noise_image_var: float = 0.01,
    noise_scale: float = 0.5,
    num_timesteps: int = 1000,
) -> HighResPRDiT:
    """Wrap a trained low-resolution ``base_model`` (frozen) for ``input_size`` with a new residual
    branch of patch ``patch`` (stride 8, reflect pad ``(patch - 8) // 2``) and SwiGLU width
    ``width`` (None: the token width ``patch^3``). The base may be a stage-3 model (a cascade).

    ``noise``: how the base's noise answer reaches full resolution ("nearest", the spec; "fed", only
    on the voxels the base was fed, zero elsewhere; "implied",
    :func:`implied_noise` with the diffusion's ``noise_scale`` and ``num_timesteps`` and the assumed
    variance ``noise_image_var`` of the upsampled image's error)."""
    if not isinstance(base_model, PRDiT | HighResPRDiT):
        raise TypeError(
            f"build_highres_model needs a PRDiT or stage-3 base model, got {type(base_model).__name__}"
        )
    bc = base_model.config
    if bc.out_channels != 2 * bc.in_channels:
        raise ValueError(
            f"{bc.name}: stage 3 needs a base with [noise, image] outputs (out_channels = 2 * in_channels = "
            f"{2 * bc.in_channels}), got out_channels {bc.out_channels}"
        )
    if patch not in PATCHES:
        raise ValueError(f"stage-3 branch patch must be one of {PATCHES}, got {patch}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"stage-3 alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if noise not in NOISE_FUSIONS:
        raise ValueError(f"stage-3 noise must be one of {NOISE_FUSIONS}, got {noise!r}")
    for what, value in (("noise_image_var", noise_image_var), ("noise_scale", noise_scale)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
            raise ValueError(f"stage-3 {what} must be a positive number, got {value!r}")
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 2:
        raise ValueError(f"stage-3 num_timesteps must be an integer >= 2, got {num_timesteps!r}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ValueError(f"stage-3 branch width must be a positive integer (or None), got {width!r}")
    if not isinstance(input_size, int) or input_size <= bc.input_size or input_size % bc.input_size:
        raise InputSizeError(
            f"stage-3 input_size must be an integer multiple (> 1x) of the base model's {bc.input_size}, "
            f"e.g. {2 * bc.input_size}; got {input_size!r}"
        )
    config = HighResConfig(
        name=f"{bc.name}+HR{input_size}",
        hidden=bc.hidden,
        heads=bc.heads,
        patch=patch,
        stride=STANDARD_STRIDE,
        pad=(patch - STANDARD_STRIDE) // 2,
        depth=bc.depth,
        input_size=input_size,
        in_channels=bc.in_channels,
        out_channels=bc.out_channels,
        attention=bc.attention,
        factor=input_size // bc.input_size,
        base=bc.to_dict(),
        branch_width=width,
        alignment=alignment,
        noise=noise,
        noise_image_var=float(noise_image_var),
        noise_scale=float(noise_scale),
        num_timesteps=int(num_timesteps),
    )
    config.branch.check_size(input_size)
    return HighResPRDiT(base_model, config)
