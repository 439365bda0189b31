"""FreeScale's region-aware detail control: a mask makes the skip residual's cosine exponent per pixel.

    c1(x, y) = cf(t)^(m(x, y)·cosine_scale + (1 − m(x, y))·cosine_scale_bg)

m is the mask image (white = region with more detail) read as grayscale, binarised at 0.5 and resized to the
latent with nearest neighbours, as the official `imgen` pipeline does. A larger exponent makes c1 decay faster,
so the masked region leaves the upsampled image sooner and gains new detail. Official settings: cosine_scale 3,
cosine_scale_bg 0.5 (README: foreground 2–3, background 0.5–1). The official pipeline also replaces the native
stage by an input image; here the mask applies to whatever the cascade generated.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["load_region_mask", "mask_exponent"]


@lru_cache(maxsize=8)
def _read(path: str) -> torch.Tensor:
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"mask {path!r} is not a file; pass an image path, e.g. --set mask=mask.png")
    try:
        img = Image.open(p).convert("L")
    except Exception as err:  # noqa: BLE001 - any decoder failure is the same user error
        raise ValueError(f"cannot read mask {path!r} as an image ({type(err).__name__})") from None
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(1, 1, img.height, img.width)
    return (t.float() / 255 > 0.5).float()


def load_region_mask(path: str, size: tuple[int, int]) -> torch.Tensor:
    """The binary mask [1, 1, h, w] of `path` at latent size `size` (nearest)."""
    return F.interpolate(_read(str(path)), size=tuple(size), mode="nearest")


def mask_exponent(mask: torch.Tensor, cosine_scale: float, cosine_scale_bg: float) -> torch.Tensor:
    """m·cosine_scale + (1 − m)·cosine_scale_bg."""
    return mask * cosine_scale + (1 - mask) * cosine_scale_bg
