"""A procedural chest-CT phantom: a different, anatomically plausible thorax in HU for every seed.

Why: a new user with no data must still be able to train, sample and look at something meaningful,
and tests need CT-like volumes with known anatomy. The phantom is built from analytic shapes in
millimetres (so the anatomy of a seed does not depend on the voxel size), rasterised as a structure
label map, turned into HU with per-structure values and textures, blurred by a CT-like point spread
function and given correlated (reconstruction-kernel-like) noise.

Patient axes follow the project convention (``prdit.volume``): array ``[k, j, i]``; ``i`` runs to
the patient's LEFT, ``j`` POSTERIOR, ``k`` SUPERIOR, so ``direction`` is the identity in LPS and
the origin puts the field of view's centre at (0, 0, 0) mm. The default spacing gives a 350 mm
field of view at any size (``spacing = 350 / size``).

Structures (see :class:`Structure`): skin, subcutaneous fat and muscle layers (thick paraspinal
muscles), intercostal zone with 12 rib pairs and costal cartilage, sternum, clavicles; two lungs
(~ -850 HU, denser posteriorly as in a supine patient) with branching pulmonary artery and vein
trees and an airway tree (trachea, carina, main bronchi, lobar and segmental branches); heart in
pericardial fat, ascending aorta, arch and descending aorta, pulmonary trunk, superior vena cava,
oesophagus; thoracic spine (vertebral bodies with cortical rim, discs, spinal canal, posterior
arches, spinous and transverse processes); below the diaphragm liver, spleen and stomach (with a
gas bubble); optional solid lung nodules and the scanner table.

Per seed: body size and shape, fat and muscle thickness, position, a small in-plane rotation, lung
height (inspiration), diaphragm heights, heart size and axis, spine curvature, vessel branching,
tissue HU values and noise level.

Speed (one core): the work is vectorised numpy on bounding boxes; sizes below 64 are rendered at
a finer grid and block-averaged (partial-volume effect) so thin structures are not aliased away.
See ``benchmarks/bench_phantom.py`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from prdit.volume import Volume

DEFAULT_FOV_MM = 350.0
MIN_SIZE = 8
MAX_SIZE = 512
_SUPERSAMPLE_BELOW = 64  # sizes below this are rendered finer, then block-averaged


class Structure(IntEnum):
    """Label codes of the structure map returned with ``return_labels=True``."""

    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    LUNG = 4
    VESSEL = 5  # pulmonary arteries and veins inside the lungs
    AIRWAY = 6  # air inside trachea and bronchi
    AIRWAY_WALL = 7
    MEDIASTINUM = 8  # mediastinal and pericardial fat
    HEART = 9
    AORTA = 10
    GREAT_VESSEL = 11  # pulmonary trunk and arteries, superior vena cava
    ESOPHAGUS = 12
    VERTEBRA = 13  # cancellous vertebral body
    CORTICAL_BONE = 14  # vertebral rims
    DISC = 15
    SPINAL_CANAL = 16
    BONE = 17  # posterior arches, processes, clavicles
    RIB = 18
    CARTILAGE = 19
    STERNUM = 20
    LIVER = 21
    SPLEEN = 22
    ABDOMEN = 23  # remaining abdominal soft tissue, stomach contents
    BOWEL_GAS = 24
    NODULE = 25
    TABLE = 26


# Mean HU of each structure before per-seed jitter, and the jitter's standard deviation.
# Values: unenhanced chest CT (blood ~ 40 HU, fat ~ -100, lung ~ -850, cancellous bone ~ 200-250).
_BASE_HU: dict[Structure, tuple[float, float]] = {
    Structure.AIR: (-1000.0, 0.0),
    Structure.SKIN: (30.0, 5.0),
    Structure.FAT: (-100.0, 10.0),
    Structure.MUSCLE: (50.0, 5.0),
    Structure.LUNG: (-855.0, 20.0),
    Structure.VESSEL: (40.0, 4.0),
    Structure.AIRWAY: (-1000.0, 0.0),
    Structure.AIRWAY_WALL: (60.0, 8.0),
    Structure.MEDIASTINUM: (-90.0, 10.0),
    Structure.HEART: (42.0, 4.0),
    Structure.AORTA: (42.0, 4.0),
    Structure.GREAT_VESSEL: (40.0, 4.0),
    Structure.ESOPHAGUS: (40.0, 5.0),
    Structure.VERTEBRA: (230.0, 35.0),
    Structure.CORTICAL_BONE: (750.0, 80.0),
    Structure.DISC: (90.0, 10.0),
    Structure.SPINAL_CANAL: (30.0, 5.0),
    Structure.BONE: (500.0, 60.0),
    Structure.RIB: (500.0, 60.0),
    Structure.CARTILAGE: (120.0, 20.0),
    Structure.STERNUM: (380.0, 50.0),
    Structure.LIVER: (58.0, 5.0),
    Structure.SPLEEN: (47.0, 4.0),
    Structure.ABDOMEN: (15.0, 10.0),
    Structure.BOWEL_GAS: (-1000.0, 0.0),
    Structure.NODULE: (40.0, 10.0),
    Structure.TABLE: (150.0, 40.0),
}

# Structures whose HU is drawn from a low-frequency texture field (tissue heterogeneity).
_TEXTURED = {
    Structure.FAT: 8.0,
    Structure.MUSCLE: 8.0,
    Structure.MEDIASTINUM: 10.0,
    Structure.ABDOMEN: 20.0,
    Structure.LIVER: 5.0,
    Structure.VERTEBRA: 40.0,
    Structure.STERNUM: 40.0,
    Structure.LUNG: 15.0,
}


@dataclass
class PhantomResult:
    """What :func:`generate_phantom` returns with ``return_labels=True``."""

    volume: Volume
    labels: np.ndarray  # uint8 (D, H, W) structure codes, same grid as the volume


# ---------------------------------------------------------------------------------------------
# Anatomy parameters (drawn once per seed; all lengths in mm, body frame)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Anatomy:
    cx: float  # body centre in the scanner (world) frame
    cy: float
    cz: float
    angle: float  # in-plane rotation (rad)
    A: float  # body half-width (left-right)
    Ba: float  # anterior half-depth
    Bp: float  # posterior half-depth
    p: float  # superellipse exponent of the body outline
    skin: float
    fat: float
    fat_lat: float
    muscle: float
    muscle_back: float
    rib_zone: float
    z_apex: float  # lung apex height
    dome_left: float
    dome_right: float
    heart_c: np.ndarray
    heart_axes: np.ndarray
    heart_rot: np.ndarray
    y_spine: float  # vertebral body centre (AP) at z = 0
    kyphosis: float
    spine_rx: float
    spine_ry: float
    vert_height: float  # vertebral body + disc
    disc: float
    z_t1: float  # centre of the first thoracic vertebra
    z_carina: float
    rib_r: float
    rib_drop: float
    noise_sd: float
    table: bool
    table_gap: float
    hu: dict[Structure, float]


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    u = rng.uniform
    A = u(135.0, 168.0)
    Ba = u(92.0, 115.0)
    Bp = u(95.0, 118.0)
    dome_right = u(-80.0, -50.0)
    dome_left = dome_right - u(8.0, 22.0)
    z_apex = u(120.0, 150.0)
    heart_scale = u(0.88, 1.12)
    heart_axes = np.array([u(58.0, 68.0), u(42.0, 50.0), u(44.0, 52.0)]) * heart_scale
    yaw = math.radians(u(-45.0, -25.0))  # long axis towards anterior-left
    pitch = math.radians(u(-25.0, -10.0))  # and inferior
    cyaw, syaw, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rz = np.array([[cyaw, -syaw, 0.0], [syaw, cyaw, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    heart_c = np.array([u(12.0, 30.0), -Ba * u(0.18, 0.32), dome_left + u(45.0, 58.0)])
    spine_ry = u(14.0, 18.0)
    y_spine = Bp - u(55.0, 68.0)
    vert_height = u(25.0, 29.0)
    z_t1 = z_apex + u(10.0, 30.0)
    hu = {s: float(m + (rng.normal() * sd if sd > 0 else 0.0)) for s, (m, sd) in _BASE_HU.items()}
    return _Anatomy(
        cx=u(-12.0, 12.0),
        cy=u(-18.0, 6.0),
        cz=u(-12.0, 12.0),
        angle=math.radians(u(-6.0, 6.0)),
        A=A,
        Ba=Ba,
        Bp=Bp,
        p=u(2.1, 2.6),
        skin=u(1.5, 2.5),
        fat=u(3.0, 14.0),
        fat_lat=u(0.2, 0.8),
        muscle=u(5.0, 9.0),
        muscle_back=u(22.0, 35.0),
        rib_zone=u(9.0, 13.0),
        z_apex=z_apex,
        dome_left=dome_left,
        dome_right=dome_right,
        heart_c=heart_c,
        heart_axes=heart_axes,
        heart_rot=rz @ ry,
        y_spine=y_spine,
        kyphosis=u(4.0, 14.0),
        spine_rx=u(19.0, 24.0),
        spine_ry=spine_ry,
        vert_height=vert_height,
        disc=u(5.0, 7.5),
        z_t1=z_t1,
        z_carina=heart_c[2] + u(55.0, 75.0),
        rib_r=u(4.0, 5.5),
        rib_drop=u(35.0, 60.0),
        noise_sd=u(8.0, 22.0),
        table=bool(rng.random() < 0.8),
        table_gap=u(1.0, 4.0),
        hu=hu,
    )


# ---------------------------------------------------------------------------------------------
# Analytic fields in the body frame (x to the patient's left, y posterior, z superior; mm).
# They broadcast, so the same code serves the voxel grid and point clouds (tree growth).
# ---------------------------------------------------------------------------------------------
def _half_axes(an: _Anatomy, zb):
    """Body half-width and half-depths at height zb: the lower thorax is slightly wider."""
    taper = 1.0 - 0.07 * np.clip(zb, -175.0, 175.0) / 175.0
    return an.A * taper, an.Ba * taper, an.Bp * taper


def _body_norm(an: _Anatomy, xb, yb, zb):
    """Superellipse norm: < 1 inside the body outline."""
    a, ba, bp = _half_axes(an, zb)
    b = np.where(yb < 0, ba, bp)
    return ((np.abs(xb) / a) ** an.p + (np.abs(yb) / b) ** an.p) ** (1.0 / an.p)


def _wall(an: _Anatomy, ux, uy):
    """Thickness (mm) of skin, fat and muscle along the unit direction (ux, uy)."""
    fat = an.fat * (1.0 + an.fat_lat * ux * ux)
    muscle = an.muscle + an.muscle_back * np.clip(uy, 0.0, 1.0) ** 4 + 5.0 * np.clip(-uy, 0.0, 1.0)
    return an.skin, fat, muscle


def _dia_height(an: _Anatomy, xb, yb):
    """Diaphragm height: two domes (the right one higher), deep posterior costophrenic recesses."""
    xs = np.abs(xb)
    ud2 = ((xs - 0.35 * an.A) / (0.55 * an.A)) ** 2 + ((yb + 0.2 * an.Ba) / (0.85 * an.Bp)) ** 2
    ud2 = np.minimum(ud2, 1.6)
    w_left = 0.5 + 0.5 * np.tanh(xb / 30.0)
    dome = w_left * an.dome_left + (1.0 - w_left) * an.dome_right
    return dome - 42.0 * ud2


def _apex_height(an: _Anatomy, xb, yb):
    """Upper limit of the lungs: rounded apices."""
    u2 = ((np.abs(xb) - 0.45 * an.A) / (0.5 * an.A)) ** 2 + (yb / (0.95 * an.Bp)) ** 2
    return an.z_apex - 70.0 * u2


def _spine_y(an: _Anatomy, zb):
    """AP position of the vertebral bodies (thoracic kyphosis bows them posteriorly mid-chest)."""
    return an.y_spine + an.kyphosis * (1.0 - (np.clip(zb, -175.0, 175.0) / 150.0) ** 2)


def _medial_limit(an: _Anatomy, xb, yb, zb):
    """Half-width of the mediastinum at the lungs' medial border."""
    ys = _spine_y(an, zb)
    w = 0.5 + 0.5 * np.tanh((yb - (ys - an.spine_ry - 14.0)) / 6.0)  # 0 anterior .. 1 posterior
    # the descending aorta runs left of the spine: the left lung stays lateral of it
    post = np.where(xb > 0, an.spine_rx + 24.0, an.spine_rx + 7.0)
    # cardiac notch: the heart pushes the left lung's anterior-medial border outwards
    notch = np.where(xb > 0, 30.0 * np.exp(-(((zb - an.heart_c[2]) / 60.0) ** 2)), 0.0)
    return 9.0 + notch * (1.0 - w) + w * (post - 9.0)


def _region_fields(an: _Anatomy, xb, yb, zb):
    """depth below the skin (mm), direction, and the lung/diaphragm fields."""
    rho = np.sqrt(xb * xb + yb * yb) + 1e-6
    ux, uy = xb / rho, yb / rho
    r = np.maximum(_body_norm(an, xb, yb, zb), 1e-6)
    depth = rho * (1.0 / r - 1.0)
    return depth, ux, uy, r


def _in_lung(an: _Anatomy, xb, yb, zb):
    """Analytic lung membership (used for tree growth; the voxel map adds the heart etc.)."""
    depth, ux, uy, r = _region_fields(an, xb, yb, zb)
    skin, fat, muscle = _wall(an, ux, uy)
    cavity = (r < 1.0) & (depth > skin + fat + muscle + an.rib_zone)
    inside = cavity & (np.abs(xb) > _medial_limit(an, xb, yb, zb))
    inside &= (zb < _apex_height(an, xb, yb)) & (zb > _dia_height(an, xb, yb))
    # keep out of the pericardium
    rel = np.stack(np.broadcast_arrays(xb, yb, zb), -1) - an.heart_c
    loc = rel @ an.heart_rot
    inside &= np.sum((loc / (an.heart_axes + 8.0)) ** 2, axis=-1) > 1.0
    return inside


# ---------------------------------------------------------------------------------------------
# The voxel grid and rasterisation helpers
# ---------------------------------------------------------------------------------------------
class _Grid:
    """World coordinates (mm) of a cubic voxel grid centred on the field of view."""

    def __init__(self, n: int, spacing: float, an: _Anatomy):
        self.n = n
        self.sp = spacing
        self.o = -(n - 1) / 2.0 * spacing
        self.c = np.arange(n, dtype=np.float64) * spacing + self.o
        self.an = an
        ca, sa = math.cos(an.angle), math.sin(an.angle)
        self.ca, self.sa = ca, sa
        x = self.c[None, :]
        y = self.c[:, None]
        dx, dy = x - an.cx, y - an.cy
        self.xb = (ca * dx + sa * dy).astype(np.float32)[None]  # (1, H, W) body frame
        self.yb = (-sa * dx + ca * dy).astype(np.float32)[None]
        self.zb = (self.c - an.cz).astype(np.float32)[:, None, None]  # (D, 1, 1)

    def to_world(self, p: np.ndarray) -> np.ndarray:
        """Body-frame points (..., 3) -> world mm."""
        p = np.asarray(p, dtype=np.float64)
        x = self.an.cx + self.ca * p[..., 0] - self.sa * p[..., 1]
        y = self.an.cy + self.sa * p[..., 0] + self.ca * p[..., 1]
        return np.stack([x, y, p[..., 2] + self.an.cz], -1)

    def box(self, lo: np.ndarray, hi: np.ndarray):
        """Index slices (k, j, i) covering the world box [lo, hi] (x, y, z), or None if outside."""
        n, o, sp = self.n, self.o, self.sp
        i0 = [min(max(math.floor((float(v) - o) / sp), 0), n) for v in lo]
        i1 = [min(max(math.ceil((float(v) - o) / sp) + 1, 0), n) for v in hi]
        if any(b <= a for a, b in zip(i0, i1, strict=False)):
            return None
        return (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))

    def coords(self, sl):
        """World coordinates broadcastable over a box: (z (d,1,1), y (1,h,1), x (1,1,w))."""
        return (
            self.c[sl[0]][:, None, None],
            self.c[sl[1]][None, :, None],
            self.c[sl[2]][None, None, :],
        )

    def body_coords(self, sl):
        """Body-frame coordinates over a box (xb, yb: (1,h,w); zb: (d,1,1))."""
        return self.xb[:, sl[1], sl[2]], self.yb[:, sl[1], sl[2]], self.zb[sl[0]]


_MEMBER_CACHE: dict[tuple[int, ...], np.ndarray] = {}


def _member(labels: np.ndarray, codes) -> np.ndarray:
    """``_member(labels, codes)`` through a 256-entry lookup table (much cheaper on small boxes)."""
    key = tuple(sorted(int(c) for c in codes))
    table = _MEMBER_CACHE.get(key)
    if table is None:
        table = np.zeros(256, dtype=bool)
        table[list(key)] = True
        _MEMBER_CACHE[key] = table
    return table[labels]


def _capsule(grid: _Grid, a: np.ndarray, b: np.ndarray, radius: float, pad: float = 0.0):
    """Distance (mm) to the segment a-b (world frame) over its bounding box; (slices, dist) or None."""
    reach = radius + pad + grid.sp
    lo = np.minimum(a, b) - reach
    hi = np.maximum(a, b) + reach
    sl = grid.box(lo, hi)
    if sl is None:
        return None
    z, y, x = grid.coords(sl)
    ab = b - a
    L2 = float(ab @ ab)
    px, py, pz = x - a[0], y - a[1], z - a[2]
    if L2 < 1e-9:
        t = 0.0
    else:
        t = (px * (ab[0] / L2) + py * (ab[1] / L2)) + pz * (ab[2] / L2)
        np.clip(t, 0.0, 1.0, out=t)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    return sl, np.sqrt(dx * dx + dy * dy + dz * dz)


def _paint_tube(labels, grid, points, radius, label, only=None, radii=None):
    """Rasterise a polyline (world mm) as a chain of capsules with a crisp label."""
    for n in range(len(points) - 1):
        r = radius if radii is None else float(radii[n])
        res = _capsule(grid, points[n], points[n + 1], r)
        if res is None:
            continue
        sl, dist = res
        mask = dist <= r
        if only is not None:
            mask &= _member(labels[sl], only)
        labels[sl][mask] = label


def _soft_tube(occ, grid, a, b, radius):
    """Anti-aliased occupancy (0..1) of a thin capsule, max-combined into ``occ``.

    Vessels thinner than a voxel still add their partial volume (an area fraction), as in a real
    CT, instead of vanishing or turning into voxel-wide tubes.
    """
    r_eff = max(radius, 0.5 * grid.sp)
    res = _capsule(grid, a, b, r_eff)
    if res is None:
        return
    sl, dist = res
    val = (r_eff + 0.5 * grid.sp - dist) * (1.0 / grid.sp)
    np.clip(val, 0.0, 1.0, out=val)
    val *= (radius / r_eff) ** 2
    np.maximum(occ[sl], val, out=occ[sl], casting="unsafe")


def _ellipsoid_mask(grid: _Grid, center_b, axes, rot, sl=None):
    """Mask of a rotated ellipsoid given in the body frame, over its world bounding box."""
    cw = grid.to_world(center_b)
    reach = float(np.max(axes)) + grid.sp
    sl = grid.box(cw - reach, cw + reach) if sl is None else sl
    if sl is None:
        return None, None
    xb, yb, zb = grid.body_coords(sl)
    rel = [xb - center_b[0], yb - center_b[1], zb - center_b[2]]
    total = 0.0
    for col in range(3):
        loc = rel[0] * rot[0, col] + rel[1] * rot[1, col] + rel[2] * rot[2, col]
        total = total + (loc / axes[col]) ** 2
    return sl, total <= 1.0


# ---------------------------------------------------------------------------------------------
# Structure builders
# ---------------------------------------------------------------------------------------------
def _paint_trunk(labels: np.ndarray, grid: _Grid) -> None:
    """Body layers, pleural cavity, lungs, mediastinum and abdomen (full-grid fields)."""
    an = grid.an
    xb, yb, zb = grid.xb, grid.yb, grid.zb
    depth, ux, uy, r = _region_fields(an, xb, yb, zb)
    skin, fat, muscle = _wall(an, ux, uy)
    inside = r < 1.0
    l_fat = skin + fat
    l_mus = l_fat + muscle
    l_cav = l_mus + an.rib_zone
    labels[:] = Structure.AIR
    labels[inside] = Structure.SKIN
    labels[inside & (depth > skin)] = Structure.FAT
    labels[inside & (depth > l_fat)] = Structure.MUSCLE
    cavity = inside & (depth > l_cav)
    dia = _dia_height(an, xb, yb)
    below = zb <= dia
    labels[cavity] = Structure.MEDIASTINUM
    labels[cavity & below] = Structure.ABDOMEN
    apex = _apex_height(an, xb, yb)
    # above the lung apices: the thoracic inlet / lower neck is mostly muscle
    labels[cavity & (zb > np.maximum(apex, an.z_apex - 25.0)) & (np.abs(xb) > 20.0)] = Structure.MUSCLE
    lung = cavity & ~below & (zb < apex) & (np.abs(xb) > _medial_limit(an, xb, yb, zb))
    labels[lung] = Structure.LUNG


def _paint_table(labels: np.ndarray, grid: _Grid) -> None:
    """The scanner couch under the patient (scanner frame, not rotated with the body)."""
    an = grid.an
    if not an.table:
        return
    y_top = an.cy + an.Bp * (1.0 + 0.07) + an.table_gap  # posterior body surface at z ~ -175
    x = grid.c[None, :]
    y = grid.c[:, None]
    surface = y_top - 0.0015 * x * x  # a shallow cradle
    slab = (y >= surface) & (y <= surface + 7.0)
    rows = np.any(slab, axis=1)
    if not rows.any():
        return
    labels[:, slab] = Structure.TABLE


def _paint_abdomen(labels: np.ndarray, grid: _Grid, rng: np.random.Generator) -> None:
    """Liver under the right dome, spleen and stomach (with a gas bubble) under the left."""
    an = grid.an
    xb, yb, zb = grid.xb, grid.yb, grid.zb
    abd = labels == Structure.ABDOMEN
    if not abd.any():
        return
    dia = _dia_height(an, xb, yb)
    liver_edge = rng.uniform(10.0, 45.0)
    liver = abd & (xb < liver_edge - 0.35 * yb) & (zb > dia - rng.uniform(130.0, 170.0))
    labels[liver] = Structure.LIVER
    eye = np.eye(3)
    for label, c, axes in (
        (
            Structure.SPLEEN,
            np.array([0.62 * an.A, 0.45 * an.Bp, an.dome_left - 45.0]),
            np.array([28.0, 45.0, 50.0]) * rng.uniform(0.8, 1.15),
        ),
        (
            Structure.ABDOMEN,  # stomach, filled with fluid/food
            np.array([0.35 * an.A, -0.2 * an.Ba, an.dome_left - 40.0]),
            np.array([45.0, 38.0, 45.0]) * rng.uniform(0.8, 1.2),
        ),
    ):
        sl, mask = _ellipsoid_mask(grid, c, axes, eye)
        if sl is None:
            continue
        region = labels[sl]
        mask &= _member(region, (Structure.ABDOMEN, Structure.LIVER))
        region[mask] = label
        if label == Structure.ABDOMEN:  # supine: gas rises anteriorly (to negative y)
            _, ybs, _ = grid.body_coords(sl)
            level = c[1] - axes[1] * rng.uniform(0.45, 0.8)
            gas = mask & np.broadcast_to(ybs < level, mask.shape)
            region[gas] = Structure.BOWEL_GAS


def _paint_heart(labels: np.ndarray, grid: _Grid) -> None:
    an = grid.an
    for label, pad in ((Structure.MEDIASTINUM, 6.0), (Structure.HEART, 0.0)):
        sl, mask = _ellipsoid_mask(grid, an.heart_c, an.heart_axes + pad, an.heart_rot)
        if sl is None:
            continue
        xb, yb, zb = grid.body_coords(sl)
        mask &= zb > _dia_height(an, xb, yb) - 8.0
        mask &= _member(labels[sl], (Structure.LUNG, Structure.MEDIASTINUM, Structure.ABDOMEN))
        labels[sl][mask] = label


def _polyline(points, n_per_segment: int = 6) -> np.ndarray:
    """Densify a list of control points into a smooth-ish polyline (Catmull-Rom)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return pts
    ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        for t in np.linspace(0.0, 1.0, n_per_segment, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
                )
            )
    out.append(pts[-1])
    return np.asarray(out)


def _mediastinum_tubes(labels: np.ndarray, grid: _Grid, rng: np.random.Generator):
    """Aorta, pulmonary trunk, SVC, oesophagus, trachea and main bronchi. Returns the hila."""
    an = grid.an
    soft = (Structure.LUNG, Structure.MEDIASTINUM, Structure.MUSCLE, Structure.HEART, Structure.ABDOMEN)
    hc = an.heart_c
    top = 200.0
    ys_car = float(_spine_y(an, an.z_carina))
    ys_low = float(_spine_y(an, -200.0))
    z_arch = an.z_carina + rng.uniform(15.0, 25.0)
    r_aa = rng.uniform(13.0, 17.0)
    r_da = r_aa * rng.uniform(0.72, 0.85)
    ys_arch = float(_spine_y(an, z_arch))
    aorta = _polyline(
        [
            hc + np.array([-18.0, 8.0, 25.0]),
            [-12.0, hc[1] + 2.0, an.z_carina - 5.0],
            [-8.0, hc[1] + 6.0, z_arch - 10.0],
            [2.0, 0.5 * (hc[1] + ys_arch), z_arch + 12.0],
            [an.spine_rx + 4.0, ys_arch - an.spine_ry - 6.0, z_arch - 10.0],
            [an.spine_rx + 6.0, ys_car - 10.0, an.z_carina - 40.0],
            [an.spine_rx + 4.0, ys_low - 12.0, -200.0],
        ]
    )
    radii = np.linspace(r_aa, r_da, len(aorta))
    _paint_tube(labels, grid, grid.to_world(aorta), r_aa, Structure.AORTA, soft, radii)
    # superior vena cava, right of the ascending aorta, into the right atrium
    svc = _polyline([[-30.0, hc[1] + 6.0, top], [-28.0, hc[1] + 8.0, an.z_carina], hc + [-35.0, 15.0, 15.0]])
    _paint_tube(labels, grid, grid.to_world(svc), rng.uniform(8.0, 11.0), Structure.GREAT_VESSEL, soft)
    # pulmonary trunk and arteries to the hila
    bif = np.array([4.0, hc[1] + 22.0, an.z_carina - 18.0])
    hilum_l = np.array([0.36 * an.A, ys_car - 42.0, an.z_carina - 22.0])
    hilum_r = np.array([-0.34 * an.A, ys_car - 45.0, an.z_carina - 30.0])
    trunk = _polyline([hc + [18.0, -25.0, 30.0], [14.0, hc[1] + 5.0, an.z_carina - 25.0], bif])
    _paint_tube(labels, grid, grid.to_world(trunk), 13.0, Structure.GREAT_VESSEL, soft)
    for hil in (hilum_l, hilum_r):
        pa = _polyline([bif, 0.5 * (bif + hil) + [0.0, 0.0, 4.0], hil])
        _paint_tube(labels, grid, grid.to_world(pa), 9.5, Structure.GREAT_VESSEL, soft)
    # oesophagus: left-anterior of the spine, behind the trachea
    eso = _polyline(
        [
            [4.0, ys_car - an.spine_ry - 12.0, top],
            [8.0, ys_car - an.spine_ry - 14.0, 0.0],
            [20.0, -10.0, -90.0],
        ]
    )
    _paint_tube(labels, grid, grid.to_world(eso), rng.uniform(7.0, 9.0), Structure.ESOPHAGUS, soft)
    # trachea and main bronchi: wall first, then the lumen
    y_tr = ys_car - an.spine_ry - 30.0
    r_tr = rng.uniform(8.0, 10.0)
    carina = np.array([0.0, y_tr, an.z_carina])
    bronchus_r = carina + [-0.26 * an.A, -2.0, -25.0]
    bronchus_l = carina + [0.30 * an.A, 2.0, -42.0]
    airway_paths = [
        (_polyline([[0.0, y_tr - 6.0, top], [0.0, y_tr, an.z_carina + 40.0], carina]), r_tr),
        (_polyline([carina, bronchus_r]), 0.75 * r_tr),
        (_polyline([carina, bronchus_l]), 0.65 * r_tr),
    ]
    airway_soft = soft + (Structure.GREAT_VESSEL, Structure.ESOPHAGUS)
    for path, r in airway_paths:
        _paint_tube(labels, grid, grid.to_world(path), r + 2.2, Structure.AIRWAY_WALL, airway_soft)
    for path, r in airway_paths:
        _paint_tube(
            labels, grid, grid.to_world(path), r, Structure.AIRWAY, airway_soft + (Structure.AIRWAY_WALL,)
        )
    return {
        "artery": [(hilum_l, 8.0, +1), (hilum_r, 8.5, -1)],
        "vein": [
            (hc + [30.0, 30.0, 15.0], 6.5, +1),
            (hc + [-30.0, 35.0, 20.0], 6.5, -1),
        ],
        "airway": [(bronchus_l, 0.6 * r_tr, +1), (bronchus_r, 0.7 * r_tr, -1)],
    }


def _paint_spine(labels: np.ndarray, grid: _Grid) -> list[float]:
    """Vertebral bodies (cortical rim), discs, spinal canal, arches and processes."""
    an = grid.an
    bone_ok = (Structure.AIR, Structure.TABLE)
    ys0 = an.y_spine
    reach_y = (ys0 - an.spine_ry - an.kyphosis - 5.0, ys0 + an.kyphosis + 80.0)
    lo_b = np.array([-an.spine_rx - 60.0, reach_y[0], -250.0])
    hi_b = np.array([an.spine_rx + 60.0, reach_y[1], 250.0])
    corners = np.array(
        [[x, y, z] for x in (lo_b[0], hi_b[0]) for y in (lo_b[1], hi_b[1]) for z in (lo_b[2], hi_b[2])]
    )
    cw = grid.to_world(corners)
    sl = grid.box(cw.min(0), cw.max(0))
    if sl is None:
        return []
    xb, yb, zb = grid.body_coords(sl)
    ys = _spine_y(an, zb)
    region = labels[sl]
    inside_body = region != Structure.AIR
    ell = (xb / an.spine_rx) ** 2 + ((yb - ys) / an.spine_ry) ** 2
    phase = np.mod(zb - (an.z_t1 - an.vert_height / 2.0), an.vert_height)
    body_z = phase >= an.disc
    body = (ell <= 1.0) & body_z & inside_body
    rim_t = 2.0 / min(an.spine_rx, an.spine_ry)
    rim = body & ((ell >= (1.0 - rim_t) ** 2) | (phase < an.disc + 1.5) | (phase > an.vert_height - 1.5))
    region[(ell <= 1.0) & ~body_z & inside_body] = Structure.DISC
    region[body] = Structure.VERTEBRA
    region[rim] = Structure.CORTICAL_BONE
    # spinal canal and its bony ring (the arch) behind each body
    canal_y = ys + an.spine_ry + 10.0
    canal = (xb / 9.0) ** 2 + ((yb - canal_y) / 8.0) ** 2
    region[(canal <= 1.0) & inside_body] = Structure.SPINAL_CANAL
    arch = (canal > 1.0) & (((xb / 15.0) ** 2 + ((yb - canal_y) / 14.0) ** 2) <= 1.0) & (yb > ys) & body_z
    region[arch & inside_body & (region != Structure.VERTEBRA)] = Structure.BONE
    # spinous and transverse processes: one set per vertebra
    levels = []
    z = an.z_t1
    while z > -260.0:
        levels.append(z)
        z -= an.vert_height
    for zc in levels:
        if abs(zc) > 200.0:
            continue
        yc = float(_spine_y(an, zc)) + an.spine_ry + 10.0
        segs = [
            (np.array([0.0, yc + 10.0, zc]), np.array([0.0, yc + 38.0, zc - 18.0]), 4.0),
            (np.array([-6.0, yc, zc]), np.array([-30.0, yc + 6.0, zc + 2.0]), 4.5),
            (np.array([6.0, yc, zc]), np.array([30.0, yc + 6.0, zc + 2.0]), 4.5),
        ]
        for a, b, r in segs:
            res = _capsule(grid, grid.to_world(a), grid.to_world(b), r)
            if res is None:
                continue
            s2, dist = res
            reg = labels[s2]
            reg[(dist <= r) & ~_member(reg, bone_ok)] = Structure.BONE
    return levels


def _paint_ribcage(labels: np.ndarray, grid: _Grid, levels: list[float], rng: np.random.Generator) -> None:
    """Twelve rib pairs following the chest wall and sloping down anteriorly; sternum; clavicles."""
    an = grid.an
    keep_out = (Structure.AIR, Structure.TABLE, Structure.VERTEBRA, Structure.CORTICAL_BONE)
    for n, zc in enumerate(levels[:12]):
        phi_end = math.radians(158.0 if n < 7 else (140.0 - 12.0 * (n - 7) if n < 10 else 105.0))
        cartilage_from = phi_end - math.radians(28.0) if n < 10 else phi_end + 1.0
        drop = an.rib_drop * (0.7 + 0.06 * min(n, 6))
        for side in (1.0, -1.0):
            phis = np.linspace(math.radians(18.0), phi_end, 14)
            pts = []
            for phi in phis:
                f = (phi - phis[0]) / (phis[-1] - phis[0])
                z = zc + 6.0 - drop * f**1.3
                ux, uy = side * math.sin(phi), math.cos(phi)
                a, ba, bp = _half_axes(an, z)
                b = ba if uy < 0 else bp
                R = 1.0 / ((abs(ux) / a) ** an.p + (abs(uy) / b) ** an.p) ** (1.0 / an.p)
                skin, fat, muscle = _wall(an, ux, uy)
                d = R - (skin + fat + muscle + 0.5 * an.rib_zone)
                pts.append([ux * d, uy * d, z])
            pts = np.asarray(pts)
            pts[0, 0] = side * (an.spine_rx + 10.0)
            world = grid.to_world(pts)
            for k in range(len(world) - 1):
                label = Structure.CARTILAGE if phis[k] >= cartilage_from else Structure.RIB
                res = _capsule(grid, world[k], world[k + 1], an.rib_r)
                if res is None:
                    continue
                sl, dist = res
                reg = labels[sl]
                reg[(dist <= an.rib_r) & ~_member(reg, keep_out)] = label
    # sternum: a flat bar behind the anterior chest wall
    if levels:
        z_top, z_bot = levels[0] - 25.0, levels[min(8, len(levels) - 1)] - 10.0
        zs = np.linspace(z_top, z_bot, 8)
        pts = []
        for z in zs:
            _, ba, _ = _half_axes(an, z)
            skin, fat, muscle = _wall(an, 0.0, -1.0)
            pts.append([0.0, -(ba - skin - fat - muscle - 7.0), z])
        world = grid.to_world(np.asarray(pts))
        half_w = rng.uniform(13.0, 18.0)
        for k in range(len(world) - 1):
            for dx in (-0.5 * half_w, 0.0, 0.5 * half_w):
                off = grid.to_world(np.array([[dx, 0.0, 0.0]]))[0] - grid.to_world(np.zeros((1, 3)))[0]
                res = _capsule(grid, world[k] + off, world[k + 1] + off, 6.0)
                if res is None:
                    continue
                sl, dist = res
                reg = labels[sl]
                reg[(dist <= 6.0) & ~_member(reg, keep_out)] = Structure.STERNUM
        # clavicles from the manubrium towards the shoulders
        m = pts[0]
        for side in (1.0, -1.0):
            clav = _polyline(
                [
                    [side * 18.0, m[1] + 2.0, m[2] + 8.0],
                    [side * 0.45 * an.A, m[1] - 6.0, m[2] + 22.0],
                    [side * 0.85 * an.A, m[1] + 35.0, m[2] + 30.0],
                ],
                4,
            )
            world = grid.to_world(clav)
            for k in range(len(world) - 1):
                res = _capsule(grid, world[k], world[k + 1], 7.0)
                if res is None:
                    continue
                sl, dist = res
                reg = labels[sl]
                reg[(dist <= 7.0) & ~_member(reg, keep_out)] = Structure.BONE


def _grow_tree(
    an: _Anatomy,
    root: np.ndarray,
    radius: float,
    side: float,
    rng: np.random.Generator,
    max_gen: int,
    r_min: float,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A branching tree of segments (body frame) that stays inside the lung of ``side``.

    Each branch splits in two with Murray-like radius ratios; directions are the parent's turned
    by 12-60 degrees about a random perpendicular axis, pulled towards a random point of the lung
    so that the tree fills it, as bronchovascular trees do. A branch that would leave the lung is
    re-aimed (shorter) at a random lung point up to three times, then dropped. Grown one
    generation at a time with array maths (the per-branch Python loop was the phantom's hot spot).
    """
    box_lo = np.array([0.0 if side > 0 else -an.A, -an.Ba, an.dome_left - 70.0])
    box_hi = np.array([an.A if side > 0 else 0.0, an.Bp, an.z_apex])
    cand = rng.uniform(box_lo, box_hi, size=(800, 3))
    targets = cand[_in_lung(an, cand[:, 0], cand[:, 1], cand[:, 2])]
    if len(targets) == 0:
        return []

    def unit(v):
        return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-9)

    p0 = np.asarray(root, dtype=np.float64)[None]
    d = unit(targets[rng.integers(len(targets))][None] - p0)
    r = np.array([radius])
    segments: list[tuple[np.ndarray, np.ndarray, float]] = []
    for gen in range(max_gen):
        n = len(p0)
        if n == 0:
            break
        length = r * rng.uniform(5.0, 9.0, n)
        p1 = p0 + d * length[:, None]
        ok = np.ones(n, bool) if gen == 0 else _in_lung(an, p1[:, 0], p1[:, 1], p1[:, 2])
        for _ in range(3):
            bad = ~ok
            if not bad.any():
                break
            nb = int(bad.sum())
            d[bad] = unit(targets[rng.integers(len(targets), size=nb)] - p0[bad])
            length[bad] *= 0.7
            p1[bad] = p0[bad] + d[bad] * length[bad, None]
            ok[bad] = _in_lung(an, p1[bad, 0], p1[bad, 1], p1[bad, 2])
        p0, p1, d, r = p0[ok], p1[ok], d[ok], r[ok]
        segments.extend((a, b, float(rr)) for a, b, rr in zip(p0, p1, r, strict=False))
        if gen + 1 >= max_gen or len(p0) == 0:
            break
        n = len(p0)
        perp = unit(np.cross(d, rng.normal(size=(n, 3))))
        children_p, children_d, children_r = [], [], []
        for lo_ratio, hi_ratio, lo_ang, hi_ang, sign in (
            (0.72, 0.88, 12.0, 30.0, 1.0),
            (0.6, 0.8, 30.0, 60.0, -1.0),
        ):
            ratio = rng.uniform(lo_ratio, hi_ratio, n)
            ang = np.radians(rng.uniform(lo_ang, hi_ang, n)) * sign
            c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
            # Rodrigues rotation of d about perp (perp is orthogonal to d)
            dc = d * c + np.cross(perp, d) * s
            tgt = unit(targets[rng.integers(len(targets), size=n)] - p1)
            dc = unit(dc + 0.5 * tgt)
            rc = r * ratio
            keep = rc >= r_min
            children_p.append(p1[keep])
            children_d.append(dc[keep])
            children_r.append(rc[keep])
        p0 = np.concatenate(children_p)
        d = np.concatenate(children_d)
        r = np.concatenate(children_r)
    return segments


def _nodules(an: _Anatomy, rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """0-3 solid nodules (3-12 mm radius) at random lung positions; about half the seeds have none."""
    if rng.random() < 0.5:
        return []
    count = int(rng.integers(1, 4))
    cand = rng.uniform([-an.A, -an.Ba, an.dome_left - 40.0], [an.A, an.Bp, an.z_apex], size=(400, 3))
    cand = cand[_in_lung(an, cand[:, 0], cand[:, 1], cand[:, 2])]
    out = []
    for c in cand[:count]:
        out.append((c, float(rng.uniform(3.0, 12.0))))
    return out


# ---------------------------------------------------------------------------------------------
# HU synthesis
# ---------------------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Low-frequency random field (unit variance), generated coarse and interpolated up."""
    coarse = rng.standard_normal((cells, cells, cells)).astype(np.float32)
    field = ndimage.zoom(coarse, n / cells, order=1, mode="nearest", grid_mode=True)
    field = field[:n, :n, :n]
    if field.shape != (n, n, n):  # zoom rounding: pad by edge values
        field = np.pad(field, [(0, n - s) for s in field.shape], mode="edge")
    return field / max(float(field.std()), 1e-6)


def _ct_noise(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    """Correlated noise like a filtered back-projection: mostly in-plane, band-pass (no DC)."""
    white = rng.standard_normal((n, n, n), dtype=np.float32)
    fine = ndimage.gaussian_filter(white, sigma=(0.35, 0.75, 0.75), truncate=3.0)
    coarse = ndimage.gaussian_filter(fine, sigma=(0.0, 1.6, 1.6), truncate=3.0)
    band = fine - 0.6 * coarse
    band *= sd / max(float(band.std()), 1e-6)
    return band


def _render(n: int, spacing: float, final_spacing: float, an: _Anatomy, rng: np.random.Generator):
    """Labels and noise-free HU on an n^3 grid with the given spacing (mm).

    Branches thinner than a quarter of the final voxel are not grown: their partial volume is
    below the noise, and skipping them keeps small phantoms fast.
    """
    grid = _Grid(n, spacing, an)
    labels = np.zeros((n, n, n), dtype=np.uint8)
    _paint_trunk(labels, grid)
    _paint_table(labels, grid)
    _paint_abdomen(labels, grid, rng)
    _paint_heart(labels, grid)
    hila = _mediastinum_tubes(labels, grid, rng)
    levels = _paint_spine(labels, grid)
    _paint_ribcage(labels, grid, levels, rng)

    lung = labels == Structure.LUNG
    # trees inside the lungs: arteries and veins (soft occupancy), airways (wall + lumen)
    r_min = max(0.7, 0.25 * final_spacing)
    vessel_occ = np.zeros(labels.shape, dtype=np.float32)
    for kind in ("artery", "vein"):
        for root, r0, side in hila[kind]:
            segs = _grow_tree(an, root, r0, side, rng, max_gen=10, r_min=r_min)
            if not segs:
                continue
            ends = grid.to_world(np.array([[a, b] for a, b, _ in segs]))
            for (a, b), (_, _, r) in zip(ends, segs, strict=False):
                _soft_tube(vessel_occ, grid, a, b, r)
    wall_occ = np.zeros(labels.shape, dtype=np.float32)
    lumen_occ = np.zeros(labels.shape, dtype=np.float32)
    for root, r0, side in hila["airway"]:
        segs = _grow_tree(an, root, r0, side, rng, max_gen=4, r_min=max(1.0, r_min))
        ends = grid.to_world(np.array([[a, b] for a, b, _ in segs])) if segs else []
        for (wa, wb), (_, _, r) in zip(ends, segs, strict=False):
            _soft_tube(wall_occ, grid, wa, wb, r * 1.3 + 0.4)
            _soft_tube(lumen_occ, grid, wa, wb, r)
    vessel_occ *= lung
    wall_occ *= lung
    lumen_occ *= lung
    labels[vessel_occ >= 0.5] = Structure.VESSEL
    labels[(wall_occ >= 0.5) & lung] = Structure.AIRWAY_WALL
    labels[(lumen_occ >= 0.5) & lung] = Structure.AIRWAY

    nodule_occ = np.zeros(labels.shape, dtype=np.float32)
    for c, r in _nodules(an, rng):
        cw = grid.to_world(c)
        _soft_tube(nodule_occ, grid, cw, cw, r)
    nodule_occ *= lung
    labels[nodule_occ >= 0.5] = Structure.NODULE

    # HU: per-structure value + texture, then mix in the sub-voxel tubes
    lut = np.array([an.hu[Structure(i)] for i in range(len(Structure))], dtype=np.float32)
    hu = lut[labels]
    tex = _smooth_field(rng, n, 10)
    for struct, sd in _TEXTURED.items():
        m = labels == struct
        hu[m] += sd * tex[m]
    # supine lungs: dependent (posterior) parenchyma is denser
    yb_full = np.broadcast_to(grid.yb, labels.shape)
    lung_now = lung & ~(vessel_occ >= 0.5)
    hu[lung_now] += 45.0 * np.clip(yb_full[lung_now] / an.Bp, -1.0, 1.0)
    base = hu.copy()
    hu = base * (1.0 - vessel_occ) + an.hu[Structure.VESSEL] * vessel_occ
    hu = hu * (1.0 - wall_occ) + an.hu[Structure.AIRWAY_WALL] * wall_occ
    hu = hu * (1.0 - lumen_occ) + an.hu[Structure.AIRWAY] * lumen_occ
    hu = hu * (1.0 - nodule_occ) + an.hu[Structure.NODULE] * nodule_occ
    return labels, hu.astype(np.float32)


def default_spacing(size: int) -> float:
    """Isotropic spacing (mm) that gives the default 350 mm field of view."""
    return DEFAULT_FOV_MM / float(size)


def generate_phantom(
    seed: int,
    size: int = 64,
    spacing: float | None = None,
    *,
    return_labels: bool = False,
    noise: bool = True,
) -> Volume | PhantomResult:
    """One chest-CT phantom in HU (float32), deterministic for a given ``(seed, size, spacing)``.

    ``size``: cubic edge in voxels (32..256 is the intended range; 8..512 accepted).
    ``spacing``: isotropic voxel size in mm (default ``350 / size``: a 350 mm chest field of view).
    ``return_labels``: also return the structure label map (:class:`Structure` codes) as a
    :class:`PhantomResult`. ``noise=False`` leaves out the CT noise (handy for tests).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"phantom seed must be a non-negative integer, got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"phantom size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    size = int(size)
    sp = default_spacing(size) if spacing is None else float(spacing)
    if not math.isfinite(sp) or sp <= 0:
        raise ValueError(f"phantom spacing must be a positive number of mm, got {spacing!r}")

    rng = np.random.default_rng([int(seed), 0x5EED])
    an = _draw_anatomy(rng)
    factor = max(1, math.ceil(_SUPERSAMPLE_BELOW / size)) if size < _SUPERSAMPLE_BELOW else 1
    labels_f, hu_f = _render(size * factor, sp / factor, sp, an, rng)
    if factor > 1:
        hu = hu_f.reshape(size, factor, size, factor, size, factor).mean(axis=(1, 3, 5))
        labels = labels_f[factor // 2 :: factor, factor // 2 :: factor, factor // 2 :: factor].copy()
    else:
        hu, labels = hu_f, labels_f
    del hu_f, labels_f
    # scanner point spread function (partial volume at edges), then reconstruction noise
    hu = ndimage.gaussian_filter(hu, sigma=0.6 if factor == 1 else 0.35, truncate=3.0)
    noise_rng = np.random.default_rng([int(seed), 0x401CE])
    if noise:
        hu += _ct_noise(noise_rng, size, an.noise_sd)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    origin = (-(size - 1) / 2.0 * sp,) * 3
    meta = {
        "source": "prdit phantom",
        "seed": int(seed),
        "noise_sd_hu": round(an.noise_sd, 2) if noise else 0.0,
        "modality": "CT",
    }
    volume = Volume(hu.astype(np.float32, copy=False), (sp, sp, sp), origin, np.eye(3), meta)
    if return_labels:
        return PhantomResult(volume, labels)
    return volume
