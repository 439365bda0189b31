"""Multi-scale training views: full scenes and zoomed close-ups with matching prompts.

A close-up renders a sub-window of world coordinates directly at the output
size, so a 64 px close-up at zoom 8 carries the detail of a 512 px render.
This teaches small models what the world looks like at every scale.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .geometry import body_box, canopy_box, house_box, lake_bottom, ridge_at
from .prompts import closeup_prompt, prompt_for
from .render import check_size, render
from .scene import Scene, as_generator, sample_scene

__all__ = ["sample_view", "dataset_batch", "FULL_FRACTION", "ZOOMS"]

#: Probability that a view is the full scene.
FULL_FRACTION = 0.65
ZOOMS = (2, 4, 8)


def _window(cy: float, cx: float, zoom: int) -> tuple[float, float, float, float]:
    half = 0.5 / zoom
    return (cy - half, cx - half, cy + half, cx + half)


def _zoom_for(extent: float, g: np.random.Generator) -> int:
    """Largest zoom whose window still holds ``extent`` (with a margin), sometimes one less."""
    z = 2
    while z * 2 <= 8 and 1.0 / (z * 2) >= 1.25 * extent:
        z *= 2
    if z > 2 and g.random() < 0.3:
        z //= 2
    return z


def _front_ridge(scene: Scene, x: float) -> float:
    return min(float(ridge_at(m, x)) for m in scene.mountains)


def _rock_centre(scene: Scene, g: np.random.Generator, snowy: bool, zoom: int) -> tuple[float, float] | None:
    for _ in range(20):
        x = float(g.uniform(0.1, 0.9))
        m = scene.mountains[int(g.integers(len(scene.mountains)))]
        r = float(ridge_at(m, x))
        nearer = [mm for mm in scene.mountains if mm.layer > m.layer]
        if snowy:
            if m.snowline <= r + 0.01:
                continue
            y = float(g.uniform(r + 0.01, m.snowline))
        else:
            lo = max(r + 0.02, m.snowline + 0.02) if m.snowline > 0 else r + 0.02
            hi = min(lo + 0.12, scene.horizon - 0.04)
            y = float(g.uniform(lo, hi)) if lo < hi else -1.0
            if y < 0:
                continue
        if any(float(ridge_at(mm, x)) < y for mm in nearer):
            continue
        b = scene.body
        if abs(y - b.y) < b.radius + 0.5 / zoom and abs(x - b.x) < b.radius + 0.5 / zoom:
            continue  # keep the sun out of a rock close-up
        return y, x
    return None


def _candidates(scene: Scene, g: np.random.Generator) -> list[tuple[str, float, float, int]]:
    """(subject, centre y, centre x, zoom) for each close-up this scene supports.

    Internally the last field is an extent to fit (> 0), a fixed zoom (< 0) or
    0 for "any texture zoom".
    """
    out: list[tuple[str, float, float, float]] = []
    b = scene.body
    out.append(("body_moon" if b.kind == "moon" else "body_sun", b.y, b.x, 4.0 * b.radius))
    for kind in ("pine", "oak"):
        trees = [t for t in scene.trees if t.kind == kind]
        if trees:
            t = trees[int(g.integers(len(trees)))]
            y0, x0, y1, x1 = canopy_box(t)
            out.append((kind, 0.5 * (y0 + t.base), t.x, t.height))
    if scene.house is not None:
        y0, x0, y1, x1 = house_box(scene.house)
        out.append(("house", 0.5 * (y0 + y1), 0.5 * (x0 + x1), 1.3 * (x1 - x0)))
    if scene.lake is not None:
        lk = scene.lake
        x = float(lk.cx + lk.half_width * g.uniform(-0.5, 0.5))
        bottom = float(lake_bottom(lk, x, scene.horizon))
        out.append(("ripples", float(g.uniform(scene.horizon, bottom)), x, 0.0))
    for snowy in ((True, False) if scene.snowy else (False,)):
        zoom = int(g.choice(ZOOMS))
        c = _rock_centre(scene, g, snowy, zoom)
        if c is not None:
            out.append(("snowy_rock" if snowy else "rock", c[0], c[1], -zoom))
    if scene.cloud_shapes:
        c = scene.cloud_shapes[int(g.integers(len(scene.cloud_shapes)))]
        if 0.0 < c.x < 1.0:
            out.append(("clouds", c.y, c.x, c.width))
    if scene.stars:
        top = min(_front_ridge(scene, x) for x in (0.2, 0.5, 0.8))
        for _ in range(10):
            y, x = float(g.uniform(0.04, max(0.05, top - 0.1))), float(g.uniform(0.1, 0.9))
            clear = all(abs(x - c.x) > 0.6 * c.width + 0.07 or abs(y - c.y) > c.height + 0.07 for c in scene.cloud_shapes)
            if clear and (y - b.y) ** 2 + (x - b.x) ** 2 > (b.radius + 0.15) ** 2:
                out.append(("stars", y, x, -int(g.choice(ZOOMS[1:]))))
                break
    for _ in range(10):
        y, x = float(g.uniform(scene.horizon + 0.08, 0.97)), float(g.uniform(0.08, 0.92))
        busy = [canopy_box(t) for t in scene.trees] + ([house_box(scene.house)] if scene.house else [])
        busy.append(body_box(b))
        if scene.lake is not None and y < float(lake_bottom(scene.lake, x, scene.horizon)) + 0.07:
            continue
        if all(not (bb[0] - 0.07 < y < bb[2] + 0.07 and bb[1] - 0.07 < x < bb[3] + 0.07) for bb in busy):
            out.append((f"ground_{scene.ground}", y, x, 0.0))
            break
    return [
        (sub, cy, cx, int(-e) if e < 0 else (_zoom_for(e, g) if e > 0 else int(g.choice(ZOOMS[1:]))))
        for sub, cy, cx, e in out
    ]


def sample_view(
    rng: np.random.Generator | int, size: int = 64, full_fraction: float = FULL_FRACTION,
    caption: Callable[[Scene, np.random.Generator], str] = prompt_for,
) -> tuple[np.ndarray, str, Scene, dict[str, Any]]:
    """Sample a scene and one view of it.

    Returns ``(image, prompt, scene, view)``: a uint8 ``size x size x 3``
    image, its prompt, the scene, and ``view = {"kind": "full" | "closeup",
    "subject", "zoom", "window", "seed"}``.  A fraction ``full_fraction`` of views
    (65 % by default) are full scenes; the rest are close-ups (zoom 2, 4 or 8) of the sun/moon, a tree, the house,
    lake ripples, rock, clouds, stars or ground. ``caption(scene, rng)`` writes a full scene's prompt (default: the
    fixed grammar, :func:`prompt_for`; :func:`hiresflow.world.phrasing.training_prompt` for varied captions).
    """
    if not 0.0 <= full_fraction <= 1.0:
        raise ValueError(f"full_fraction must lie in [0, 1], got {full_fraction!r}")
    g = as_generator(rng)
    size = check_size("size", size)
    scene = sample_scene(g)
    tex_seed = int(g.integers(0, 2**31))
    if g.random() < full_fraction:
        image = render(scene, size, size, tex_seed)
        view = {"kind": "full", "subject": None, "zoom": 1, "window": None, "seed": tex_seed}
        return image, caption(scene, g), scene, view
    cands = _candidates(scene, g)
    subject, cy, cx, zoom = cands[int(g.integers(len(cands)))]
    window = _window(cy, cx, zoom)
    image = render(scene, size, size, tex_seed, window=window)
    view = {"kind": "closeup", "subject": subject, "zoom": zoom, "window": window, "seed": tex_seed}
    return image, closeup_prompt(subject, scene, g), scene, view


def dataset_batch(seed: int, batch: int, size: int = 64, full_fraction: float = FULL_FRACTION,
                  caption: Callable[[Scene, np.random.Generator], str] = prompt_for) -> tuple[np.ndarray, list[str]]:
    """``batch`` views from one seed: uint8 ``(batch, size, size, 3)`` and their prompts; ``full_fraction`` of
    them full scenes (captioned by ``caption``), the rest close-ups."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    g = as_generator(seed)
    size = check_size("size", size)
    images = np.empty((int(batch), size, size, 3), np.uint8)
    prompts = []
    for i in range(int(batch)):
        images[i], p, _, _ = sample_view(g, size, full_fraction, caption)
        prompts.append(p)
    return images, prompts
