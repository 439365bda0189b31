"""User images of any Pillow mode as 8-bit RGB with their true range.

Pillow's own ``convert("RGB")`` clips wide modes instead of scaling them (a 16-bit grayscale PNG becomes 99 %
white) and drops alpha onto black. `to_rgb` converts every mode Pillow opens:

| mode | conversion |
|---|---|
| ``RGB``, ``L``, ``1``, ``RGBX``, ``YCbCr``, ``LAB``, ``HSV``, ``CMYK`` | Pillow's colour conversion (already 8-bit) |
| ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` | 16-bit: v·255/65535, rounded |
| ``I`` (32-bit integer) | 16-bit range (v·255/65535) when every value lies in 0…65535, else min…max → 0…255 |
| ``F`` (32-bit float) | [0, 1] → ×255 when every value lies there, [0, 255] as is, else min…max → 0…255 |
| ``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``, ``P`` with transparency | composited over `background` (white by default) |
| ``P`` | palette expanded |
| several frames (GIF, APNG, TIFF) | the first frame; `frame_count` says how many there were |

Values are rounded half to even (numpy's ``rint``). Non-finite floats are an error naming the image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_rgb", "frame_count", "WHITE"]

WHITE = (255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "LA", "PA", "La", "RGBa")


def frame_count(img: Image.Image) -> int:
    """Frames in a (possibly animated or multi-page) image; 1 for a still."""
    return int(getattr(img, "n_frames", 1) or 1)


def _to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - lo) * 255.0 / (hi - lo) if hi > lo else np.zeros(values.shape)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _wide_to_l(img: Image.Image) -> Image.Image:
    """A single-channel wide image (16-bit, 32-bit int or float) as 8-bit L, with the range the table states."""
    a = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        return Image.fromarray(_to_uint8(a.astype(np.uint32), 0, 65535), "L")
    if img.mode == "F":
        if not np.isfinite(a).all():
            raise ValueError("the image holds non-finite (NaN or infinite) pixel values; save it with finite values")
        if a.size and a.min() >= 0 and a.max() <= 1:
            return Image.fromarray(_to_uint8(a, 0, 1), "L")
        if a.size and a.min() >= 0 and a.max() <= 255:
            return Image.fromarray(_to_uint8(a, 0, 255), "L")
    elif a.size and a.min() >= 0 and a.max() <= 65535:  # mode I
        return Image.fromarray(_to_uint8(a, 0, 65535), "L")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    return Image.fromarray(_to_uint8(a, lo, hi), "L")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """8-bit RGB of the current frame of `img`, with the range and alpha handling of the module table."""
    if frame_count(img) > 1:
        img.seek(0)
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return _wide_to_l(img).convert("RGB")
    if mode == "La":  # premultiplied grayscale + alpha, which Pillow does not convert: un-premultiply it here
        la = np.asarray(img).astype(np.float64)
        alpha = la[..., 1]
        lum = np.where(alpha > 0, la[..., 0] * 255.0 / np.maximum(alpha, 1), 0)
        img = Image.fromarray(np.dstack([np.clip(np.rint(lum), 0, 255), alpha]).astype(np.uint8)).convert("LA")
        mode = "LA"
    if mode == "P" and "transparency" in img.info or mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")
