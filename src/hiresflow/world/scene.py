"""Scene description of the procedural reference world and its sampler.

A :class:`Scene` is a frozen, JSON-friendly description of one landscape in
world coordinates (``y`` down, canonical content inside the unit square).  It
holds no pixels: :func:`hiresflow.world.render` draws it at any resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .geometry import (
    Box,
    body_box,
    boxes_overlap,
    house_box,
    lake_bottom,
    PROFILE_AXIS,
    ridge,
    tree_box,
)
from .palette import BODY_COLORS, TIMES

__all__ = [
    "Body",
    "Mountains",
    "Lake",
    "Tree",
    "House",
    "Cloud",
    "Scene",
    "sample_scene",
    "TREE_KINDS",
    "CLOUD_LEVELS",
    "GROUNDS",
    "MAX_TREES",
]

TREE_KINDS = ("pine", "oak")
CLOUD_LEVELS = ("none", "few", "many")
GROUNDS = ("grass", "dry", "snow")
MAX_TREES = 5


@dataclass(frozen=True)
class Body:
    """The single sun (day, sunset) or moon (night): a disc of ``radius`` at (x, y)."""

    kind: str
    color: str
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class Mountains:
    """One mountain range; ``top`` is the highest ridge ``y``, ``snowline`` the snow limit.

    ``layer`` is 0 for the farthest range and grows towards the viewer.
    """

    seed: int
    layer: int
    top: float
    amplitude: float
    roughness: float
    snowline: float


@dataclass(frozen=True)
class Lake:
    """A lake hanging below the horizon: half-ellipse of ``half_width`` x ``depth``."""

    cx: float
    half_width: float
    depth: float


@dataclass(frozen=True)
class Tree:
    """A ``pine`` or ``oak`` tree standing at (x, base) with total ``height``."""

    kind: str
    x: float
    base: float
    height: float


@dataclass(frozen=True)
class House:
    """A small house: walls ``width`` x ``height`` standing on (x, base), red roof on top."""

    x: float
    base: float
    width: float
    height: float


@dataclass(frozen=True)
class Cloud:
    """A cloud centred at (x, y) of the given extent; ``seed`` shapes its puffs."""

    x: float
    y: float
    width: float
    height: float
    seed: int


@dataclass(frozen=True)
class Scene:
    """Everything that defines one landscape (no pixels).

    Attributes mirror what prompts talk about: ``time`` (day/sunset/night), the
    sun or moon ``body``, ``mountains`` (far to near), ``snowy`` caps, optional
    ``lake`` and ``house``, ``trees`` (far to near), ``clouds`` level with
    their ``cloud_shapes``, ``stars`` and ``ground`` texture.  ``horizon`` is
    the world ``y`` where the ground (or lake) meets the mountains; ``seed``
    drives the procedural shapes (ridgelines, stars).
    """

    time: str
    body: Body
    horizon: float
    mountains: tuple[Mountains, ...]
    snowy: bool
    lake: Lake | None
    trees: tuple[Tree, ...]
    house: House | None
    clouds: str
    cloud_shapes: tuple[Cloud, ...]
    stars: bool
    ground: str
    seed: int

    def __post_init__(self) -> None:
        if self.time not in TIMES:
            raise ValueError(f"time must be one of {TIMES}, got {self.time!r}")
        want = "moon" if self.time == "night" else "sun"
        if self.body.kind != want or self.body.color not in BODY_COLORS[self.time]:
            raise ValueError(
                f"a {self.time} scene needs a {want} coloured one of {BODY_COLORS[self.time]}, "
                f"got a {self.body.color} {self.body.kind}"
            )
        if not 1 <= len(self.mountains) <= 3:
            raise ValueError(f"a scene needs 1-3 mountain ranges, got {len(self.mountains)}")
        if len(self.trees) > MAX_TREES or any(t.kind not in TREE_KINDS for t in self.trees):
            raise ValueError(f"trees must be at most {MAX_TREES} of kinds {TREE_KINDS}")
        if self.clouds not in CLOUD_LEVELS or self.ground not in GROUNDS:
            raise ValueError(f"clouds must be in {CLOUD_LEVELS} and ground in {GROUNDS}")

    @property
    def tree_counts(self) -> dict[str, int]:
        """Number of trees of each kind."""
        return {k: sum(t.kind == k for t in self.trees) for k in TREE_KINDS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (nested dicts/lists of str, int, float, bool, None)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scene":
        """Inverse of :meth:`to_dict` (lists are turned back into tuples)."""
        try:
            return cls(
                time=d["time"],
                body=Body(**d["body"]),
                horizon=float(d["horizon"]),
                mountains=tuple(Mountains(**m) for m in d["mountains"]),
                snowy=bool(d["snowy"]),
                lake=Lake(**d["lake"]) if d.get("lake") else None,
                trees=tuple(Tree(**t) for t in d["trees"]),
                house=House(**d["house"]) if d.get("house") else None,
                clouds=d["clouds"],
                cloud_shapes=tuple(Cloud(**c) for c in d["cloud_shapes"]),
                stars=bool(d["stars"]),
                ground=d["ground"],
                seed=int(d["seed"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a Scene dict ({e}); build it with Scene.to_dict()") from None


# --------------------------------------------------------------------------- sampling


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def _sample_mountains(g: np.random.Generator, horizon: float, snowy: bool) -> tuple[Mountains, ...]:
    n = int(g.integers(1, 4))
    out = []
    for i in range(n):
        d = i / (n - 1) if n > 1 else 0.5  # 0 far .. 1 near
        layer = int(round(d * 2))
        top = float(g.uniform(0.17, 0.25) + 0.15 * d)
        amp = float(g.uniform(0.18, 0.28) * (1.0 - 0.4 * d))
        amp = min(amp, horizon - 0.05 - top)
        frac = float(g.uniform(0.35, 0.65))
        m = Mountains(
            seed=int(g.integers(0, 2**31)),
            layer=layer,
            top=top,
            amplitude=amp,
            roughness=float(g.uniform(0.006, 0.012)),
            snowline=-1.0,
        )
        if snowy:  # snow on the upper part of the peaks actually present in view
            prof = ridge(m, PROFILE_AXIS, detail=False)[PROFILE_AXIS.n // 6 : -PROFILE_AXIS.n // 6]
            lo, hi = float(prof.min()), float(prof.max())
            m = dataclasses.replace(m, snowline=lo + frac * (hi - lo))
        out.append(m)
    return tuple(out)


def _front_profile(mountains: tuple[Mountains, ...]) -> np.ndarray:
    """Highest ridge ``y`` over all ranges on :data:`PROFILE_AXIS` (with a detail margin)."""
    return np.min([ridge(m, PROFILE_AXIS) for m in mountains], axis=0) - 0.004


def _profile_at(profile: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    return np.interp(x, PROFILE_AXIS.centres(), profile)


def _visible_fraction(body: Body, profile: np.ndarray) -> tuple[float, int]:
    """Fraction of the disc not hidden by mountains, and its number of visible pieces."""
    n = 40
    t = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    xs = body.x + body.radius * t
    ys = body.y + body.radius * t
    top = _profile_at(profile, xs)
    disc = t[:, None] ** 2 + t[None, :] ** 2 <= 1.0
    vis = disc & (ys[:, None] < top[None, :])
    _, pieces = ndimage.label(vis)
    return float(vis.sum() / max(disc.sum(), 1)), int(pieces)


def _sample_body(g: np.random.Generator, time: str, mountains: tuple[Mountains, ...]) -> Body:
    kind = "moon" if time == "night" else "sun"
    color = str(g.choice(BODY_COLORS[time]))
    profile = _front_profile(mountains)
    for _ in range(60):
        x = float(g.uniform(0.14, 0.86))
        if time == "sunset":
            r = float(g.uniform(0.05, 0.08))
            rid = float(_profile_at(profile, np.linspace(x - r, x + r, 9)).min())
            y = float(rid + r * g.uniform(-0.9, 0.1))
            need = 0.55
        elif time == "day":
            r = float(g.uniform(0.045, 0.07))
            y = float(g.uniform(0.10, 0.26))
            need = 0.97
        else:
            r = float(g.uniform(0.04, 0.065))
            y = float(g.uniform(0.09, 0.26))
            need = 0.97
        if y - r < 0.04:
            continue
        b = Body(kind, color, x, y, r)
        frac, pieces = _visible_fraction(b, profile)
        if frac >= need and pieces == 1:
            return b
    return Body(kind, color, 0.5, 0.12, 0.05)  # always above every ridge (top >= 0.17)


def _sample_clouds(g: np.random.Generator, level: str, body: Body) -> tuple[Cloud, ...]:
    n = {"none": 0, "few": int(g.integers(1, 3)), "many": int(g.integers(4, 7))}[level]
    out: list[Cloud] = []
    for _ in range(40 * max(n, 1)):
        if len(out) == n:
            break
        w = float(g.uniform(0.16, 0.34))
        h = w * float(g.uniform(0.22, 0.34))
        c = Cloud(float(g.uniform(-0.05, 1.05)), float(g.uniform(0.05, 0.30)), w, h, int(g.integers(0, 2**31)))
        # keep clear of the sun/moon and its glow
        dx = (c.x - body.x) / (c.width * 0.6 + body.radius * 1.8 + 0.02)
        dy = (c.y - body.y) / (c.height * 0.7 + body.radius * 1.8 + 0.02)
        if dx * dx + dy * dy < 1.0:
            continue
        if any(abs(c.x - o.x) < 0.5 * (c.width + o.width) * 0.8 and abs(c.y - o.y) < 0.06 for o in out):
            continue
        out.append(c)
    return tuple(out)


def _lake_max_bottom(lake: Lake | None, x0: float, x1: float, horizon: float) -> np.ndarray:
    """Lowest point (largest ``y``) of the lake's near shore over ``[x0, x1]``."""
    if lake is None:
        return np.full(np.shape(x0), -np.inf)
    return lake_bottom(lake, np.clip(lake.cx, x0, x1), horizon)


def _place_trees(
    g: np.random.Generator, n: int, horizon: float, lake: Lake | None, placed: list[Box]
) -> list[Tree]:
    """Greedy non-overlapping placement of ``n`` trees from a batch of random candidates."""
    k = 96
    base = g.uniform(horizon + 0.06, 0.98, k)
    x = g.uniform(0.06, 0.94, k)
    kinds = g.integers(0, len(TREE_KINDS), k)
    t = (base - horizon) / (1.0 - horizon)
    height = np.maximum(0.13, (0.13 + 0.15 * t) * g.uniform(0.9, 1.15, k))
    trees: list[Tree] = []
    for i in range(k):
        if len(trees) == n:
            break
        tr = Tree(TREE_KINDS[int(kinds[i])], float(x[i]), float(base[i]), float(height[i]))
        box = tree_box(tr)
        if box[1] < 0.0 or box[3] > 1.0:
            continue
        if tr.base <= float(_lake_max_bottom(lake, box[1], box[3], horizon)) + 0.03:
            continue
        if any(boxes_overlap(box, p, 0.035) for p in placed):
            continue
        trees.append(tr)
        placed.append(box)
    return sorted(trees, key=lambda tr: tr.base)


def sample_scene(rng: np.random.Generator | int) -> Scene:
    """Draw a random, well-formed :class:`Scene` (deterministic given the seed/Generator).

    Layout guarantees used by the detectors: the sun/moon is at least 55 %
    visible in one piece, trees, house and sun never overlap (gaps >= 0.03
    world units, i.e. ~2 px at 64 px), clouds keep clear of the sun, and every
    tree/house stands on land in front of the lake.
    """
    g = as_generator(rng)
    time = str(g.choice(TIMES, p=(0.45, 0.3, 0.25)))
    snowy = bool(g.random() < 0.6)
    ground = "snow" if snowy and g.random() < 0.25 else str(g.choice(("grass", "grass", "dry")))
    has_lake = bool(g.random() < 0.55)
    horizon = float(g.uniform(0.58, 0.65) if has_lake else g.uniform(0.6, 0.7))
    mountains = _sample_mountains(g, horizon, snowy)
    body = _sample_body(g, time, mountains)
    lake = None
    if has_lake:
        lake = Lake(float(g.uniform(0.25, 0.75)), float(g.uniform(0.28, 0.6)), float(g.uniform(0.08, 0.15)))
    level = str(g.choice(CLOUD_LEVELS, p=(0.35, 0.4, 0.25)))
    clouds = _sample_clouds(g, level, body)
    if not clouds:
        level = "none"

    placed: list[Box] = [body_box(body)]
    house = None
    if g.random() < 0.4:
        for _ in range(30):
            w = float(g.uniform(0.12, 0.16))
            base = float(g.uniform(horizon + 0.08, 0.95))
            hs = House(float(g.uniform(0.1, 0.9)), base, w, w * float(g.uniform(0.5, 0.62)))
            box = house_box(hs)
            on_land = base > float(_lake_max_bottom(lake, box[1], box[3], horizon)) + 0.03
            if on_land and not any(boxes_overlap(box, p, 0.04) for p in placed):
                house = hs
                placed.append(box)
                break

    trees = _place_trees(g, int(g.integers(0, MAX_TREES + 1)), horizon, lake, placed)

    return Scene(
        time=time,
        body=body,
        horizon=horizon,
        mountains=mountains,
        snowy=snowy,
        lake=lake,
        trees=tuple(trees),
        house=house,
        clouds=level,
        cloud_shapes=clouds,
        stars=time == "night",
        ground=ground,
        seed=int(g.integers(0, 2**31)),
    )
