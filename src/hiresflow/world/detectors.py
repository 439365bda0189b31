"""Pixel-level detectors for reference-world images at any resolution.

They read a uint8 ``(H, W, 3)`` image and count the objects a prompt talks
about: sun/moon discs (a duplication detector), trees, houses, and the time of
day.  They rely on the colour rules documented in :mod:`.palette`, on
connected components (``scipy.ndimage.label``, 8-connected) and on area
thresholds relative to ``min(H, W) ** 2`` (one squared world unit), so the
same thresholds work at 64 px and 2048 px, square or not.  They are exact on
ground-truth renders of sampled scenes and tolerate mild noise and blur: the
image is lightly smoothed first (Gaussian sigma 0.5 px, plus a 3x3 median
from 96 px up) and tiny specks are ignored.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .palette import BODY_COLORS, BODY_RGB

__all__ = [
    "detect_suns",
    "detect_trees",
    "detect_houses",
    "detect_time_of_day",
    "detect_body_color",
    "attributes",
    "MIN_AREA",
]

#: Minimum component areas, as fractions of ``min(H, W) ** 2``.
MIN_AREA = {"sun": 0.0015, "tree": 0.0009, "roof": 0.0009}
_EIGHT = np.ones((3, 3), bool)


def _check_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be a (H, W, 3) numpy array, got shape {shape}; use np.asarray(img)")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"image must be at least 8x8 pixels, got {image.shape[:2]}; upsample it first")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    return image


def _prep(image: np.ndarray) -> np.ndarray:
    """float32 channels after light denoising (3x3 median from 96 px, Gaussian 0.5 px)."""
    img = _check_image(image)
    if min(img.shape[:2]) >= 96:
        img = ndimage.median_filter(img, size=(3, 3, 1), mode="nearest")
    return ndimage.gaussian_filter(img.astype(np.float32), sigma=(0.5, 0.5, 0), mode="nearest", truncate=2.0)


def _sun_mask(f: np.ndarray) -> np.ndarray:
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (f.max(axis=2) >= 215.0) & (r >= b + 12.0) & (r >= 190.0)


def _tree_mask(f: np.ndarray) -> np.ndarray:
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (g >= 1.45 * r + 6.0) & (g >= 1.1 * b + 4.0) & (g >= 16.0)


def _roof_mask(f: np.ndarray) -> np.ndarray:
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (r >= 2.0 * g + 4.0) & (r >= 2.0 * b + 4.0) & (r >= 40.0) & (f.max(axis=2) < 215.0)


def _components(mask: np.ndarray, min_frac: float) -> tuple[np.ndarray, list[int]]:
    """Labels and the ids of components of at least ``min_frac * min(H, W)**2`` pixels."""
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return lab, []
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    thr = min_frac * min(mask.shape) ** 2
    return lab, [i for i in range(1, n + 1) if sizes[i] >= thr]


def _suns(f: np.ndarray) -> tuple[np.ndarray, list[int]]:
    return _components(_sun_mask(f), MIN_AREA["sun"])


def detect_suns(image: np.ndarray) -> int:
    """Number of sun/moon discs (bright warm-white blobs); 1 on a well-formed image."""
    return len(_suns(_prep(image))[1])


def detect_trees(image: np.ndarray) -> int:
    """Number of tree crowns (green blobs, pine or oak)."""
    return len(_components(_tree_mask(_prep(image)), MIN_AREA["tree"])[1])


def _houses(f: np.ndarray) -> int:
    lab, keep = _components(_roof_mask(f), MIN_AREA["roof"])
    if not keep:
        return 0
    slab, suns = _suns(f)
    if suns:  # the rim of a red sun over rock is roof-coloured: ignore blobs touching a sun
        near = ndimage.binary_dilation(np.isin(slab, suns), structure=_EIGHT, iterations=2)
        touching = set(np.unique(lab[near]).tolist())
        keep = [i for i in keep if i not in touching]
    return len(keep)


def detect_houses(image: np.ndarray) -> int:
    """Number of houses (red roofs)."""
    return _houses(_prep(image))


def _time(f: np.ndarray) -> str:
    top = f[: max(2, f.shape[0] // 3)]
    r, g, b = top[..., 0], top[..., 1], top[..., 2]
    mx = top.max(axis=2)
    night = int((mx < 100).sum())
    day = int(((b > r + 50) & (g > r + 15) & (mx >= 100)).sum())
    sunset = int((((r > g + 20) | ((b > g + 30) & (r > g + 10))) & (mx >= 80)).sum())
    return max((day, "day"), (sunset, "sunset"), (night, "night"))[1]


def detect_time_of_day(image: np.ndarray) -> str:
    """``"day"``, ``"sunset"`` or ``"night"`` from the sky colours in the top third."""
    return _time(_prep(image))


def _body_color(f: np.ndarray, time: str) -> str | None:
    lab, keep = _suns(f)
    if not keep:
        return None
    sizes = [(int((lab == i).sum()), i) for i in keep]
    core = ndimage.binary_erosion(lab == max(sizes)[1], structure=_EIGHT)
    if core.sum() < 3:
        core = lab == max(sizes)[1]
    mean = f[core].mean(axis=0)
    mean = mean / max(float(mean.max()), 1.0)
    kind = "moon" if time == "night" else "sun"
    names = BODY_COLORS[time]
    d = [float(((BODY_RGB[(kind, n)] / BODY_RGB[(kind, n)].max() - mean) ** 2).sum()) for n in names]
    return names[int(np.argmin(d))]


def detect_body_color(image: np.ndarray) -> str | None:
    """Colour name of the (largest) sun/moon disc, or ``None`` when there is none."""
    f = _prep(image)
    return _body_color(f, _time(f))


def attributes(image: np.ndarray) -> dict[str, object]:
    """All detections: ``time``, ``body`` (sun/moon), ``body_color``, ``suns``, ``trees``, ``houses``."""
    f = _prep(image)
    time = _time(f)
    return {
        "time": time,
        "body": "moon" if time == "night" else "sun",
        "body_color": _body_color(f, time),
        "suns": len(_suns(f)[1]),
        "trees": len(_components(_tree_mask(f), MIN_AREA["tree"])[1]),
        "houses": _houses(f),
    }
