"""Window/level and volume-rendering presets, read from JSON in ``resources/presets``.

Presets are data, not code, so users can add their own (drop a JSON file beside the bundled ones)
and a typo gives an error that names the file and the field instead of a blank 3D view. The
volume-rendering files follow 3D Slicer's ``presets.xml`` (``VolumeProperty`` nodes): piecewise
scalar opacity (HU -> alpha), gradient opacity, colour transfer (HU -> RGB), shading parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prdit.paths import resource


class PresetError(ValueError):
    """A preset file is missing, is not JSON, or has a malformed field (message names both)."""


@dataclass(frozen=True)
class WindowLevelPreset:
    name: str
    label: str
    width: float
    level: float
    shortcut: str = ""

    @property
    def levels(self) -> tuple[float, float]:
        return (self.level - self.width / 2.0, self.level + self.width / 2.0)


@dataclass(frozen=True)
class VolumeRenderingPreset:
    name: str
    description: str
    scalar_opacity: tuple[tuple[float, float], ...]
    gradient_opacity: tuple[tuple[float, float], ...]
    color: tuple[tuple[float, float, float, float], ...]
    shade: bool
    ambient: float
    diffuse: float
    specular: float
    specular_power: float
    blend_mode: str = "composite"  # or "maximum_intensity"
    interpolation: str = "linear"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PresetError(f"preset file {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise PresetError(f"preset file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PresetError(f"preset file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _points(path: Path, field: str, value: Any, width: int) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise PresetError(f"{path}: '{field}' must be a list of at least two points")
    pts = []
    for n, p in enumerate(value):
        if not isinstance(p, list) or len(p) != width or not all(isinstance(x, (int, float)) for x in p):
            raise PresetError(f"{path}: '{field}' point {n} must be {width} numbers, got {p!r}")
        pts.append(tuple(float(x) for x in p))
    xs = [p[0] for p in pts]
    if any(b < a for a, b in zip(xs, xs[1:], strict=False)):
        raise PresetError(f"{path}: '{field}' points must be sorted by HU, got {xs}")
    for n, p in enumerate(pts):
        if any(not 0.0 <= v <= 1.0 for v in p[1:]):
            raise PresetError(f"{path}: '{field}' point {n} values must lie in [0, 1], got {p[1:]}")
    return tuple(pts)


def parse_vr_preset(path: Path) -> VolumeRenderingPreset:
    """Read and validate one volume-rendering preset JSON file."""
    d = _load_json(path)
    for key in ("name", "scalar_opacity", "color"):
        if key not in d:
            raise PresetError(f"{path}: missing required field '{key}'")
    shading = d.get("shading", {})
    if not isinstance(shading, dict):
        raise PresetError(f"{path}: 'shading' must be an object")
    blend = d.get("blend_mode", "composite")
    if blend not in ("composite", "maximum_intensity"):
        raise PresetError(f"{path}: 'blend_mode' must be 'composite' or 'maximum_intensity', got {blend!r}")
    interp = d.get("interpolation", "linear")
    if interp not in ("linear", "nearest"):
        raise PresetError(f"{path}: 'interpolation' must be 'linear' or 'nearest', got {interp!r}")
    return VolumeRenderingPreset(
        name=str(d["name"]),
        description=str(d.get("description", "")),
        scalar_opacity=_points(path, "scalar_opacity", d["scalar_opacity"], 2),  # type: ignore[arg-type]
        gradient_opacity=_points(path, "gradient_opacity", d.get("gradient_opacity", [[0, 1], [255, 1]]), 2),  # type: ignore[arg-type]
        color=_points(path, "color", d["color"], 4),  # type: ignore[arg-type]
        shade=bool(shading.get("shade", True)),
        ambient=float(shading.get("ambient", 0.1)),
        diffuse=float(shading.get("diffuse", 0.9)),
        specular=float(shading.get("specular", 0.2)),
        specular_power=float(shading.get("specular_power", 10.0)),
        blend_mode=blend,
        interpolation=interp,
    )


@lru_cache(maxsize=1)
def window_level_presets() -> tuple[WindowLevelPreset, ...]:
    """The bundled W/L presets in shortcut order (lung, mediastinum, soft tissue, bone, brain)."""
    path = resource("presets", "window_level.json")
    d = _load_json(path)
    items = d.get("presets")
    if not isinstance(items, list) or not items:
        raise PresetError(f"{path}: 'presets' must be a non-empty list")
    out = []
    for n, p in enumerate(items):
        try:
            width = float(p["width"])
            out.append(
                WindowLevelPreset(
                    str(p["name"]),
                    str(p.get("label", p["name"])),
                    width,
                    float(p["level"]),
                    str(p.get("shortcut", "")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PresetError(f"{path}: preset {n} needs name, width and level numbers ({exc})") from exc
        if width <= 0:
            raise PresetError(f"{path}: preset {p['name']!r} has width {width}; it must be > 0")
    return tuple(out)


def window_level_preset(name: str) -> WindowLevelPreset:
    """Look up a W/L preset by name or label (case- and separator-insensitive: 'soft-tissue' works)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    for p in window_level_presets():
        if key in (p.name, p.label.lower().replace(" ", "_")):
            return p
    names = ", ".join(p.name for p in window_level_presets())
    raise PresetError(f"unknown window/level preset {name!r}; choose one of {names}")


@lru_cache(maxsize=1)
def volume_rendering_presets() -> dict[str, VolumeRenderingPreset]:
    """All volume-rendering presets in ``resources/presets/volume_rendering``, by name."""
    folder = resource("presets", "volume_rendering")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise PresetError(f"no volume-rendering presets (*.json) found in {folder}")
    presets = {}
    for f in files:
        p = parse_vr_preset(f)
        presets[p.name] = p
    return presets


def volume_rendering_preset(name: str) -> VolumeRenderingPreset:
    presets = volume_rendering_presets()
    for key, p in presets.items():
        if key.lower() == name.strip().lower():
            return p
    raise PresetError(f"unknown volume-rendering preset {name!r}; choose one of {', '.join(presets)}")
