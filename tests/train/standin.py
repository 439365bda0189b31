"""A tiny stand-in for ``hiresflow.world`` (same two functions the trainers use), fast and deterministic."""

from __future__ import annotations

import numpy as np

COLORS = {"red": (220, 60, 40), "yellow": (240, 210, 60), "white": (240, 240, 240), "blue": (60, 90, 200)}
WORDS = ["a", "sun", "moon", "over", "mountains", "lake", "snowy", "close-up", "of", "trees", *COLORS]


def vocabulary() -> list[str]:
    return list(WORDS)


def _view(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    yy, xx = np.mgrid[0:size, 0:size] / size
    name = list(COLORS)[rng.integers(len(COLORS))]
    sky = np.array(COLORS[name], float)
    img = (sky[None, None] * (0.6 + 0.4 * yy[..., None])).astype(float)
    cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.15)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (255, 240, 180)
    ridge = 0.6 + 0.15 * np.sin(xx * rng.uniform(5, 15) + rng.uniform(0, 6))
    img[yy > ridge] = (90, 80, 70)
    img += rng.normal(0, 4, img.shape)
    body = "moon" if rng.random() < 0.5 else "sun"
    return img.clip(0, 255).astype(np.uint8), f"a {name} {body} over mountains"


def dataset_batch(seed: int, batch: int, size: int):
    rng = np.random.default_rng(seed)
    views = [_view(rng, size) for _ in range(batch)]
    return np.stack([v[0] for v in views]), [v[1] for v in views]
