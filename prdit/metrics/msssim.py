"""3D MS-SSIM between pairs of volumes: the paper's diversity measure (lower = more diverse).

The reference evaluation uses MONAI's ``MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0,
kernel_size=3)`` on volumes scaled to [0, 1] and averages over pairs of distinct generated
samples. This module computes the same quantity without MONAI:

* a ``kernel_size``-tap Gaussian window (sigma 1.5, normalised, MONAI's ``gaussian_1d``), applied as
  three separable 1D convolutions ("valid": no padding, as MONAI does);
* ``c1 = (0.01 * data_range)^2``, ``c2 = (0.03 * data_range)^2``;
* at each scale the mean contrast-structure term ``cs``; at the last scale the full SSIM;
  each term clamped at 0 (ReLU), raised to its beta and multiplied; 2x average pooling between scales.

Scales for small volumes: the standard five betas ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``
need ``edge // 16 > kernel_size - 1`` (MONAI's and torchmetrics' check), i.e. edge >= 48 for the
3-tap window. For smaller volumes the number of scales drops until the check passes and the first
``n`` betas are renormalised to sum to 1 (32^3: 4 scales; 16^3: 3 scales). :func:`msssim_config`
returns what was used; reports record it.

Why not torchmetrics' ``multiscale_structural_similarity_index_measure`` (which does accept 5D
input): it derives the Gaussian window width from sigma (11 taps for sigma 1.5), so it cannot
express the published 3-tap window, and it averages the last scale's SSIM over reflect-padded
borders while MONAI uses the valid region only. Away from those two choices the formulas are the
same; this file keeps MONAI's, which is what the published numbers used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass(frozen=True)
class MSSSIMConfig:
    kernel_size: int = 3
    sigma: float = 1.5
    betas: tuple[float, ...] = STANDARD_BETAS
    data_range: float = 1.0
    k1: float = 0.01
    k2: float = 0.03

    def to_dict(self) -> dict:
        return asdict(self)


def msssim_config(shape: tuple[int, ...], kernel_size: int = 3, sigma: float = 1.5) -> MSSSIMConfig:
    """The published settings, with fewer scales where the volume is too small for five."""
    edge = min(shape[-3:])
    for n in range(len(STANDARD_BETAS), 0, -1):
        div = max(1, n - 1) ** 2
        if edge // div > kernel_size - 1 and edge >= 2 ** (n - 1) * kernel_size:
            betas = STANDARD_BETAS[:n]
            if n < len(STANDARD_BETAS):
                total = sum(betas)
                betas = tuple(b / total for b in betas)
            return MSSSIMConfig(kernel_size=kernel_size, sigma=sigma, betas=betas)
    raise ValueError(
        f"MS-SSIM: volumes of shape {tuple(shape[-3:])} are too small for a {kernel_size}-tap window"
    )


def _gaussian_1d(kernel_size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    dist = torch.arange((1 - kernel_size) / 2, (1 + kernel_size) / 2, 1.0, device=device, dtype=dtype)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of ``[B, 1, D, H, W]``."""
    k = g.numel()
    x = F.conv3d(x, g.view(1, 1, k, 1, 1))
    x = F.conv3d(x, g.view(1, 1, 1, k, 1))
    return F.conv3d(x, g.view(1, 1, 1, 1, k))


def _ssim_cs(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, cfg: MSSSIMConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    c1 = (cfg.k1 * cfg.data_range) ** 2
    c2 = (cfg.k2 * cfg.data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mu_x * mu_x
    syy = _filter(y * y, g) - mu_y * mu_y
    sxy = _filter(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


@torch.no_grad()
def ms_ssim(x: torch.Tensor, y: torch.Tensor, config: MSSSIMConfig | None = None) -> torch.Tensor:
    """MS-SSIM per pair: ``x``, ``y`` are ``[B, D, H, W]`` or ``[B, 1, D, H, W]`` in ``[0, data_range]``."""
    if x.shape != y.shape:
        raise ValueError(f"MS-SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim == 4:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    if x.ndim != 5 or x.shape[1] != 1:
        raise ValueError(f"MS-SSIM needs [B, D, H, W] volumes, got {tuple(x.shape)}")
    cfg = config or msssim_config(tuple(x.shape))
    x, y = x.float(), y.float()
    g = _gaussian_1d(cfg.kernel_size, cfg.sigma, x.device, x.dtype)
    terms = []
    for level in range(len(cfg.betas)):
        ssim, cs = _ssim_cs(x, y, g, cfg)
        terms.append(torch.relu(ssim if level == len(cfg.betas) - 1 else cs))
        if level < len(cfg.betas) - 1:
            x, y = F.avg_pool3d(x, 2), F.avg_pool3d(y, 2)
    stack = torch.stack(terms)  # [levels, B]
    betas = torch.tensor(cfg.betas, device=stack.device, dtype=stack.dtype).view(-1, 1)
    return torch.prod(stack**betas, dim=0)
