"""Evaluation protocols: what the networks and MS-SSIM are fed, and when a number is comparable
with the paper's.

``prdit`` (the default) is this project's recipe: HU clipped to the window, a per-volume z-score
into the feature network (MedicalNet's own input normalisation), MS-SSIM on HU mapped to [0, 1]
over random disjoint pairs. It is well defined for any data, but its features differ from the
published ones, so its FID is comparable only with itself.

``published-lidc`` and ``published-rad`` reproduce the paper's evaluation as its reference code
does it (docs/metrics.md, "Protocols"):

* resampling: every volume to 128^3 by average pooling by an integer factor (256^3 -> 128^3); a
  volume whose edge is not a multiple of 128 is refused, because any other resampling changes the
  features;
* intensities, applied to real and generated volumes alike: LIDC-IDRI: HU clipped below at -1000
  HU and above at the volume's 0.999 quantile, min-max scaled to [0, 1], then ``2x - 1`` to
  [-1, 1]; RAD-ChestCT: HU clipped to [-1000, 1000] and scaled to [0, 1];
* the feature network sees that tensor directly (no z-score);
* MS-SSIM: the same tensor with ``data_range = 1`` (also on the [-1, 1] LIDC data, as published),
  averaged over all pairs of distinct generated volumes;
* sample count: 1000 generated volumes.

``comparable_with_published`` is true only under a published protocol, with MedicalNet weights,
at 128^3 and with at least 1000 generated volumes; the report says which condition failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from prdit.metrics.folders import FolderError

PUBLISHED_SIZE = 128
PUBLISHED_SAMPLES = 1000
LIDC_QUANTILE = 0.999


@dataclass(frozen=True)
class EvalProtocol:
    name: str
    intensity: str  # "zscore" (ours), "lidc" or "rad": what the feature network is fed
    msssim_all_pairs: bool
    size: int | None  # the evaluation size the protocol fixes (None: native / --size)
    samples: int | None  # the generated-sample count it was published with
    description: str

    @property
    def published(self) -> bool:
        return self.name.startswith("published")

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, EvalProtocol] = {
    "prdit": EvalProtocol(
        "prdit",
        "zscore",
        False,
        None,
        None,
        "this project's recipe: HU clipped to the window, per-volume z-score into the feature network, "
        "MS-SSIM on [0, 1] over random disjoint pairs; comparable only with itself",
    ),
    "published-lidc": EvalProtocol(
        "published-lidc",
        "lidc",
        True,
        PUBLISHED_SIZE,
        PUBLISHED_SAMPLES,
        "the paper's LIDC-IDRI evaluation: 128^3 by average pooling, HU clipped at -1000 and the "
        "0.999 quantile, min-max to [-1, 1], MS-SSIM (data range 1) over all pairs, 1000 samples",
    ),
    "published-rad": EvalProtocol(
        "published-rad",
        "rad",
        True,
        PUBLISHED_SIZE,
        PUBLISHED_SAMPLES,
        "the paper's RAD-ChestCT evaluation: 128^3 by average pooling, HU clipped to [-1000, 1000] "
        "and scaled to [0, 1], MS-SSIM (data range 1) over all pairs, 1000 samples",
    ),
}


def get_protocol(name: str) -> EvalProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown --protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None


def scale_volumes(
    recipe: str, hu: torch.Tensor, hu_clip: tuple[float, float] = (-1000.0, 1000.0)
) -> torch.Tensor:
    """``[B, D, H, W]`` HU -> what the protocol feeds the networks (``[B, D, H, W]`` float32)."""
    x = hu.to(torch.float32)
    if recipe == "zscore":
        x = x.clamp(hu_clip[0], hu_clip[1])
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1).view(-1, 1, 1, 1)
        return (x - mean) / std.clamp_min(1e-6)
    if recipe == "rad":
        return (x.clamp(-1000.0, 1000.0) + 1000.0) / 2000.0
    if recipe == "lidc":
        out = torch.empty_like(x)
        for b in range(x.shape[0]):
            flat = x[b].reshape(-1)
            # torch.quantile refuses > 16M elements (256^3); kthvalue gives the same order statistic
            # as numpy's "linear" quantile up to interpolation between neighbours, so interpolate.
            pos = LIDC_QUANTILE * (flat.numel() - 1)
            lo_k = int(pos)
            frac = pos - lo_k
            v0 = flat.kthvalue(lo_k + 1).values
            v1 = flat.kthvalue(min(lo_k + 2, flat.numel())).values
            upper = v0 + (v1 - v0) * frac
            clipped = x[b].clamp(min=-1000.0).minimum(upper)
            lo, hi = clipped.min(), clipped.max()
            unit = (clipped - lo) / (hi - lo).clamp_min(1e-6)
            out[b] = 2.0 * unit - 1.0
        return out
    raise ValueError(f"unknown intensity recipe {recipe!r}")


def pool_to_published_size(hu: torch.Tensor, source: str = "volume") -> torch.Tensor:
    """``(D, H, W)`` -> 128^3 by average pooling by an integer factor; other edges are refused."""
    shape = tuple(int(s) for s in hu.shape[-3:])
    if any(s % PUBLISHED_SIZE for s in shape):
        raise FolderError(
            f"{source}: shape {'x'.join(map(str, shape))} cannot be average-pooled to "
            f"{PUBLISHED_SIZE}^3 (every edge must be a multiple of {PUBLISHED_SIZE}, as the published "
            "evaluation's 256^3 -> 128^3); use --protocol prdit with --size N instead"
        )
    factors = tuple(s // PUBLISHED_SIZE for s in shape)
    if factors == (1, 1, 1):
        return hu
    return torch.nn.functional.avg_pool3d(hu[None, None].float(), factors)[0, 0]


def published_input(protocol: EvalProtocol, hu: torch.Tensor, source: str = "volume") -> torch.Tensor:
    """What a published protocol feeds the feature network and MS-SSIM for one ``(D, H, W)`` HU
    volume: the dataset's intensity recipe at full size (LIDC's quantile is the 256^3 volume's),
    then average pooling to 128^3, in that order, as the published data were made and evaluated."""
    scaled = scale_volumes(protocol.intensity, hu[None])[0]
    return pool_to_published_size(scaled, source)


def comparability(protocol: EvalProtocol, extractor_comparable: bool | None, size, n_fake: int) -> list[str]:
    """Why a report is NOT comparable with the published numbers (empty: it is)."""
    reasons = []
    if not protocol.published:
        reasons.append(f"protocol {protocol.name!r} is not the published recipe (use published-lidc/-rad)")
    if not extractor_comparable:
        reasons.append("the features are not MedicalNet's (--features medicalnet:PATH)")
    if protocol.published and tuple(size or ()) != (PUBLISHED_SIZE,) * 3:
        reasons.append(f"evaluated at {size}, not {PUBLISHED_SIZE}^3")
    if protocol.samples is not None and n_fake < protocol.samples:
        reasons.append(
            f"{n_fake} generated volumes, not {protocol.samples}: FID is biased upwards at small N "
            "(docs/metrics.md)"
        )
    return reasons
