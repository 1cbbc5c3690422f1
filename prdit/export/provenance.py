"""Where a synthetic volume came from: model, checkpoint hash, seed, sampler, steps, software.

The DICOM writer puts this into Derivation Description and the Contributing Equipment Sequence,
so that anyone who finds the series in a PACS can tell it is synthetic and reproduce it. It is
read from the JSON sidecar that ``prdit sample`` writes next to each ``sample_NNNNN.nii.gz``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Keys of a `prdit sample` sidecar that identify it as one (a `.npy` geometry sidecar has none).
SAMPLE_SIDECAR_KEYS = ("model_name", "checkpoint_sha256", "sampler", "seed")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Provenance:
    """Everything needed to regenerate a sample; every field may be unknown (``None``)."""

    model_name: str | None = None
    checkpoint_sha256: str | None = None
    seed: int | None = None
    sampler: str | None = None
    steps: int | None = None
    k: int | None = None
    software_version: str | None = None
    checkpoint: str | None = None  # file name only: a full path would leak the user's folders
    edit: str | None = None  # an edited volume: what was synthesised (edit_summary); None: all of it

    def __post_init__(self) -> None:
        if self.checkpoint_sha256 is not None:
            sha = str(self.checkpoint_sha256).strip().lower()
            if not _SHA256_RE.match(sha):
                raise ValueError(
                    f"provenance checkpoint_sha256 must be 64 hex digits, got {self.checkpoint_sha256!r}"
                )
            object.__setattr__(self, "checkpoint_sha256", sha)
        for name in ("seed", "steps", "k"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"provenance {name} must be an integer, got {value!r}")
        for name in ("steps", "k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"provenance {name} must be >= 1, got {value}")
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(str(self.checkpoint)).name)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_sidecar(cls, data: dict[str, Any], *, source: str = "sidecar") -> Provenance:
        """Build from a ``prdit sample`` sidecar dict; unknown keys (input_size, hu_window, ...) are ignored.

        Raises ``ValueError`` naming ``source`` and the key when a value has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"{source}: '{key}' must be a string, got {value!r}")
            return str(value)

        def integer(key: str) -> int | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"{source}: '{key}' must be an integer, got {value!r}")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{source}: '{key}' must be an integer, got {value!r}") from None
            if not number.is_integer():
                raise ValueError(f"{source}: '{key}' must be an integer, got {value!r}")
            return int(number)

        try:
            return cls(
                model_name=text("model_name"),
                checkpoint_sha256=text("checkpoint_sha256"),
                seed=integer("seed"),
                sampler=text("sampler"),
                steps=integer("steps"),
                k=integer("k"),
                software_version=text("software_version"),
                checkpoint=text("checkpoint"),
                edit=edit_summary(data.get("edit"), source),
            )
        except ValueError as exc:
            if str(exc).startswith(source):
                raise
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_sidecar_file(cls, path: str | Path) -> Provenance:
        """Read a sidecar JSON file; errors name the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_sidecar(data, source=str(path))

    @staticmethod
    def is_sample_sidecar(data: Any) -> bool:
        """True when a JSON object looks like a ``prdit sample`` sidecar (not a geometry sidecar)."""
        return isinstance(data, dict) and any(key in data for key in SAMPLE_SIDECAR_KEYS)

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_empty(self) -> bool:
        return all(value is None for value in asdict(self).values())

    def summary(self) -> str:
        """One line for DICOM text fields: ``model=...; checkpoint_sha256=...; seed=...; ...``.

        Only known fields are listed; the order is fixed so the text is easy to parse back.
        """
        fields = (
            ("model", self.model_name),
            ("checkpoint", self.checkpoint),
            ("checkpoint_sha256", self.checkpoint_sha256),
            ("seed", self.seed),
            ("sampler", self.sampler),
            ("steps", self.steps),
            ("k", self.k),
            ("software", None if self.software_version is None else f"prdit {self.software_version}"),
            ("edit", self.edit),
        )
        parts = [f"{name}={value}" for name, value in fields if value is not None]
        return "; ".join(parts) if parts else "provenance unknown"


def edit_summary(edit: Any, source: str = "sidecar") -> str | None:
    """One line from a sidecar's ``edit`` record (``prdit edit``, the studio's Edit panel):
    ``in-fill: 4096 of 262144 voxels synthetic, the rest acquired`` or ``2x super-resolution of a
    32x32x32 measurement``; None for a plain sample."""
    if edit is None:
        return None
    if not isinstance(edit, dict) or "kind" not in edit:
        raise ValueError(f"{source}: 'edit' must be an object with a 'kind', got {edit!r}")
    kind = str(edit["kind"])
    if kind == "infill":
        n, total = edit.get("synthetic_voxels"), edit.get("total_voxels")
        return f"in-fill: {n} of {total} voxels synthetic, the rest from the input"
    if kind == "superres":
        size = "x".join(str(v) for v in edit.get("measurement_size", [])) or "?"
        return f"{edit.get('factor', '?')}x super-resolution of a {size} measurement"
    return kind


def series_description(provenance: Provenance | None) -> str:
    """The default DICOM SeriesDescription for a volume with this provenance (the CLI's export and
    the studio's say the same): says SYNTHETIC first, and for an edited volume how it was made."""
    if provenance is None:
        return "SYNTHETIC CT (PRDiT)"
    seed = f" seed {provenance.seed}" if provenance.seed is not None else ""
    if provenance.edit and provenance.edit.startswith("in-fill"):
        return f"SYNTHETIC REGION: CT in-filled by PRDiT{seed}"
    if provenance.edit and "super-resolution" in provenance.edit:
        return f"SYNTHETIC CT (PRDiT super-resolution){seed}"
    return f"SYNTHETIC CT (PRDiT){seed}"
