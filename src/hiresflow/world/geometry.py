"""Shape definitions shared by the sampler, the renderer and the view cropper.

World coordinates: ``y`` grows downwards, ``x`` to the right; the canonical
scene lives in the unit square ``[0, 1] x [0, 1]``.  Boxes are
``(y0, x0, y1, x1)`` tuples in world units.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._noise import Axis, fbm1d, mix_seed

__all__ = [
    "Box",
    "ridge",
    "ridge_pair",
    "ridge_at",
    "PROFILE_AXIS",
    "lake_bottom",
    "tree_box",
    "canopy_box",
    "house_box",
    "roof_box",
    "body_box",
    "boxes_overlap",
    "PINE_TIERS",
    "OAK_BLOBS",
]

Box = tuple[float, float, float, float]

#: Pine canopy tiers as (apex offset, bottom offset, half-width), in tree heights above the base.
PINE_TIERS = ((1.00, 0.58, 0.19), (0.80, 0.34, 0.25), (0.58, 0.10, 0.31))
#: Oak canopy blobs as (dx, height above base, radius), in tree heights.
OAK_BLOBS = ((0.0, 0.62, 0.28), (-0.17, 0.52, 0.19), (0.17, 0.52, 0.19), (0.05, 0.78, 0.19))


def ridge_pair(m: "object", axis: Axis) -> tuple[np.ndarray, np.ndarray]:
    """Smooth and detailed ridgeline ``y`` of a mountain range at each pixel of ``axis``.

    A ridged coarse profile gives sharp peaks (the smooth, resolution-free
    line); fractal detail is added down to the pixel scale, so large renders
    get rocky, jagged ridges.
    """
    shape = np.zeros(axis.n, np.float32)
    for o, (base, wgt) in enumerate(((0.42, 0.6), (0.2, 0.28), (0.1, 0.12))):
        n = fbm1d(axis, mix_seed(m.seed, 11 + o), base=base, persistence=0.5, max_octaves=1)
        shape += wgt * (1.0 - np.minimum(np.abs(n) * 0.8, 1.0)) ** 2
    smooth = m.top + m.amplitude * (1.0 - shape**1.4)
    detail = fbm1d(axis, mix_seed(m.seed, 20), base=0.08, persistence=0.6)
    return smooth, smooth + m.roughness * detail


def ridge(m: "object", axis: Axis, detail: bool = True) -> np.ndarray:
    """World ``y`` of the ridgeline at each pixel of ``axis`` (``detail=False``: smooth line)."""
    smooth, full = ridge_pair(m, axis)
    return full if detail else smooth


#: Fixed sampling used for layout decisions (cached weights, 0.003 world units).
PROFILE_AXIS = Axis(512, -0.25, 1.5 / 512)


@lru_cache(maxsize=64)
def _profile(m: "object") -> np.ndarray:
    p = ridge(m, PROFILE_AXIS)
    p.setflags(write=False)
    return p


def ridge_at(m: "object", x: np.ndarray | float) -> np.ndarray:
    """Ridgeline ``y`` at world ``x`` from a cached fine profile (for layout checks)."""
    return np.interp(x, PROFILE_AXIS.centres(), _profile(m))


def lake_bottom(lake: "object", x: np.ndarray | float, horizon: float) -> np.ndarray:
    """World ``y`` of the near shore of the lake at ``x`` (== horizon outside it)."""
    u = (np.asarray(x, np.float64) - lake.cx) / lake.half_width
    return horizon + lake.depth * np.sqrt(np.clip(1.0 - u * u, 0.0, None))


def canopy_box(t: "object") -> Box:
    """Bounding box of a tree's crown (the part detectors count)."""
    h = t.height
    if t.kind == "pine":
        hw = max(w for _, _, w in PINE_TIERS) * h
        return (t.base - h, t.x - hw, t.base - PINE_TIERS[-1][1] * h, t.x + hw)
    x0 = min(dx - r for dx, _, r in OAK_BLOBS) * h
    x1 = max(dx + r for dx, _, r in OAK_BLOBS) * h
    y0 = max(cy + r for _, cy, r in OAK_BLOBS) * h
    y1 = min(cy - r for _, cy, r in OAK_BLOBS) * h
    return (t.base - y0, t.x + x0, t.base - y1, t.x + x1)


def tree_box(t: "object") -> Box:
    """Bounding box of a whole tree (crown and trunk)."""
    y0, x0, _, x1 = canopy_box(t)
    return (y0, x0, t.base, x1)


def house_box(hs: "object") -> Box:
    """Bounding box of the house (walls, roof with overhang, chimney)."""
    w = hs.width
    return (hs.base - hs.height - 0.42 * w, hs.x - 0.6 * w, hs.base, hs.x + 0.6 * w)


def roof_box(hs: "object") -> Box:
    """Bounding box of the roof triangle."""
    w = hs.width
    return (hs.base - hs.height - 0.42 * w, hs.x - 0.6 * w, hs.base - hs.height, hs.x + 0.6 * w)


def body_box(b: "object") -> Box:
    """Bounding box of the sun/moon disc."""
    return (b.y - b.radius, b.x - b.radius, b.y + b.radius, b.x + b.radius)


def boxes_overlap(a: Box, b: Box, margin: float = 0.0) -> bool:
    """True when two boxes, each grown by ``margin``, intersect."""
    return not (
        a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    )
