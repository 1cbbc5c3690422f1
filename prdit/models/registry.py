"""Model names -> configurations: ``PRDiT-{XS,S,B,L,XL}/{10,12,14,16}/{0,1,2,3,4,8,10,12}``,
plus the two small-patch variants ``PRDiT-XS/4/0`` and ``PRDiT-XS/4/1``.

A name fixes width, heads, patch, stride, padding and depth; the input size is separate because
the same weights run at any size the patch grid tiles (the positional encoding is
resolution-independent). The grid rule (spec section 1) is ``g = (S + 2 pad - p) // s + 1`` tokens
per axis, and the output patches of edge ``s`` must tile the volume: ``g * s == S``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

SIZES: dict[str, tuple[int, int]] = {
    "XS": (192, 6),
    "S": (384, 6),
    "B": (768, 12),
    "L": (1024, 16),
    "XL": (1152, 16),
}
PATCHES = (10, 12, 14, 16)
DEPTHS = (0, 1, 2, 3, 4, 8, 10, 12)
STANDARD_STRIDE = 8

# Special variants: name -> (patch, stride, pad, depth). The spec lists XS/4/1 with pad 0, but with
# p=4, s=2, pad=0 the grid is g = S/2 - 1 and g*s = S - 2 never tiles any S; pad (p - s)//2 = 1 is
# the minimal fix (g = S/2) and follows the standard grid's own rule. Documented in docs/engine.md.
SPECIAL: dict[str, tuple[int, int, int, int]] = {
    "PRDiT-XS/4/0": (4, 4, 0, 0),
    "PRDiT-XS/4/1": (4, 2, 1, 1),
}

NAME_PATTERN = "PRDiT-{XS,S,B,L,XL}/{10,12,14,16}/{0,1,2,3,4,8,10,12}, PRDiT-XS/4/0 or PRDiT-XS/4/1"
_NAME_RE = re.compile(r"^prdit-(xs|s|b|l|xl)/(\d+)/(\d+)$", re.IGNORECASE)


class UnknownModelError(ValueError):
    """A model name outside the registry."""


class InputSizeError(ValueError):
    """A volume size the model's patch grid cannot tile."""


@dataclass(frozen=True)
class PRDiTConfig:
    """Everything needed to rebuild a PRDiT network (stored with checkpoints via :meth:`to_dict`)."""

    name: str
    hidden: int
    heads: int
    patch: int
    stride: int
    pad: int
    depth: int
    input_size: int
    in_channels: int = 1
    out_channels: int = 2
    attention: str | None = None  # None: follow the process default (see prdit.models.attention)

    @property
    def token_dim(self) -> int:
        """Raw values per token, ``C * p^3`` (1728 for p = 12)."""
        return self.in_channels * self.patch**3

    @property
    def out_dim(self) -> int:
        """Outputs per token, ``s^3 * out_channels``."""
        return self.stride**3 * self.out_channels

    def grid_for(self, size: int) -> int:
        return (size + 2 * self.pad - self.patch) // self.stride + 1

    @property
    def grid(self) -> int:
        return self.grid_for(self.input_size)

    @property
    def num_tokens(self) -> int:
        return self.grid**3

    def tiles(self, size: int) -> bool:
        """Whether an edge of ``size`` voxels is covered exactly by the output patches."""
        if size < 1 or size + 2 * self.pad < self.patch or self.pad >= size:
            return False  # no full patch fits, or reflect padding wider than the volume
        return self.grid_for(size) * self.stride == size

    def valid_sizes(self, up_to: int = 512) -> list[int]:
        return [s for s in range(1, up_to + 1) if self.tiles(s)]

    def check_size(self, size: int, what: str = "input size") -> None:
        if not self.tiles(size):
            sizes = self.valid_sizes(up_to=max(256, size))
            shown = ", ".join(str(s) for s in sizes[:8])
            raise InputSizeError(
                f"{self.name}: {what} {size} cannot be tiled by the patch grid (patch {self.patch}, stride "
                f"{self.stride}, pad {self.pad}: tokens per axis g = (S + 2*pad - p) // s + 1 must satisfy "
                f"g * s == S); valid sizes are {shown}, ... (multiples of {self.stride} from {sizes[0]})"
            )

    def with_(self, **changes: Any) -> PRDiTConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PRDiTConfig:
        return config_from_dict(cls, data, "model config")


_C = TypeVar("_C")


def config_from_dict(cls: type[_C], data: dict[str, Any], what: str) -> _C:
    """``cls(**data)`` for a config dataclass, refusing unknown keys by name (a typo in a saved config
    must not be silently dropped, nor surface as a bare ``TypeError``)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; expected keys from {sorted(known)}")
    return cls(**data)


def list_models() -> list[str]:
    """Every registered name, standard grid first."""
    names = [f"PRDiT-{s}/{p}/{d}" for s in SIZES for p in PATCHES for d in DEPTHS]
    return names + list(SPECIAL)


def parse_model_name(name: str) -> tuple[str, int, int, int, int, int, int]:
    """``name -> (canonical name, hidden, heads, patch, stride, pad, depth)``; case-insensitive."""
    m = _NAME_RE.match(str(name).strip())
    if m is None:
        raise UnknownModelError(f"unknown model name {name!r}; expected {NAME_PATTERN}")
    size, patch, depth = m.group(1).upper(), int(m.group(2)), int(m.group(3))
    canonical = f"PRDiT-{size}/{patch}/{depth}"
    hidden, heads = SIZES[size]
    if canonical in SPECIAL:
        p, s, pad, d = SPECIAL[canonical]
        return canonical, hidden, heads, p, s, pad, d
    if patch not in PATCHES or depth not in DEPTHS:
        raise UnknownModelError(
            f"unknown model name {name!r}: patch must be one of {PATCHES} and depth one of {DEPTHS}; "
            f"expected {NAME_PATTERN}"
        )
    return canonical, hidden, heads, patch, STANDARD_STRIDE, (patch - STANDARD_STRIDE) // 2, depth


def model_config(
    name: str,
    input_size: int = 128,
    in_channels: int = 1,
    out_channels: int = 2,
    attention: str | None = None,
) -> PRDiTConfig:
    """The validated configuration for ``name`` at a cubic ``input_size``."""
    canonical, hidden, heads, patch, stride, pad, depth = parse_model_name(name)
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise InputSizeError(f"{canonical}: input_size must be an integer edge length, got {input_size!r}")
    if in_channels < 1:
        raise ValueError(f"{canonical}: in_channels must be >= 1, got {in_channels}")
    if out_channels < 1:
        raise ValueError(f"{canonical}: out_channels must be >= 1, got {out_channels}")
    cfg = PRDiTConfig(
        canonical, hidden, heads, patch, stride, pad, depth, input_size, in_channels, out_channels, attention
    )
    cfg.check_size(input_size)
    return cfg
