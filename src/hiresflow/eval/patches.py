"""Patch protocol for FID_patch / KID_patch / IS_patch (evaluation.md §3.2, after CFM's `fmboost/metrics.py`).

Protocol used by this project:

- K crops per image (default K = 4), each of the base model's **native** size (64 px for the embedded models,
  1024 for FLUX/SDXL, 512 for SD 1.5), taken 1:1 from the full-resolution image — no resize before cropping, so
  the metric sees the high-frequency detail that the whole-image 299² thumbnail hides. Each crop then goes through
  the same Inception preprocessing as a whole image (resized to 299²).
- Crop anchors (top, left) are drawn uniformly from {0 … H − h} × {0 … W − w} by a numpy Generator seeded with
  (seed, H, W): the same spec gives the same crops on every run and every machine.
- Paired evaluation: the generated image i and its reference i (the ground-truth render of the same scene at the
  same size) are cropped at the **same** anchors, so patch metrics compare like with like. Because the anchors
  depend only on (seed, size, image index), every method evaluated at one size is cropped at the same places.
- An image exactly the crop size gives one crop (K identical crops would only repeat it).
- n reported with a patch metric: n images and n·K crops.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["crop_anchors", "take_crops", "crops_of"]


def _pair(crop: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(crop, (int, np.integer)):
        return int(crop), int(crop)
    c = tuple(int(v) for v in crop)
    if len(c) != 2:
        raise ValueError(f"crop must be an int or (height, width), got {crop!r}")
    return c  # type: ignore[return-value]


def crop_anchors(n: int, size: tuple[int, int], crop: int | Sequence[int], k: int = 4,
                 seed: int | np.random.Generator = 0) -> np.ndarray:
    """int64 anchors [n, k', 2] of (top, left) for n images of `size` = (H, W); k' = 1 when crop == size.

    With an int seed the generator is `np.random.default_rng([seed, H, W])`.
    """
    if n < 0 or k < 1:
        raise ValueError(f"need n >= 0 images and k >= 1 crops, got n={n}, k={k}")
    h, w = int(size[0]), int(size[1])
    ch, cw = _pair(crop)
    if ch < 1 or cw < 1 or ch > h or cw > w:
        raise ValueError(f"crop {cw}x{ch} does not fit in images of {w}x{h}; use a crop at most the image size")
    if (ch, cw) == (h, w):
        return np.zeros((n, 1, 2), np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng([int(seed), h, w])
    tops = rng.integers(0, h - ch + 1, size=(n, k))
    lefts = rng.integers(0, w - cw + 1, size=(n, k))
    return np.stack([tops, lefts], axis=-1).astype(np.int64)


def take_crops(image: np.ndarray, anchors: np.ndarray, crop: int | Sequence[int]) -> list[np.ndarray]:
    """Crops of one (H, W, C) array at anchors [k, 2]."""
    ch, cw = _pair(crop)
    h, w = image.shape[:2]
    out = []
    for top, left in np.asarray(anchors).reshape(-1, 2):
        if top < 0 or left < 0 or top + ch > h or left + cw > w:
            raise ValueError(f"crop at ({top}, {left}) of {cw}x{ch} leaves the {w}x{h} image; regenerate the anchors")
        out.append(image[top:top + ch, left:left + cw])
    return out


def crops_of(images: Sequence[np.ndarray], anchors: np.ndarray, crop: int | Sequence[int]) -> list[np.ndarray]:
    """All crops of a list of images, image-major ([img0 crop0, img0 crop1, …])."""
    if len(images) != len(anchors):
        raise ValueError(f"{len(images)} images but anchors for {len(anchors)}; compute anchors for this set")
    return [c for im, a in zip(images, anchors) for c in take_crops(im, a, crop)]
