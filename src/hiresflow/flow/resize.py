"""Resizing latents and images between stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize_latent", "resize_image"]


def resize_latent(z: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Interpolate a latent [B, C, h, w] to `size` (h', w'); bicubic/bilinear without corner alignment."""
    if tuple(z.shape[-2:]) == tuple(size):
        return z
    if mode == "lanczos":
        mode = "bicubic"  # lanczos exists for images only (PIL); latents use bicubic
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(z.float(), size=size, mode=mode, **kwargs)


def resize_image(img: torch.Tensor, size: tuple[int, int], mode: str = "bicubic", clamp: bool = True) -> torch.Tensor:
    """Resize images [B, 3, H, W] in [0, 1]; 'lanczos' goes through PIL per image (8-bit, so always clamped),
    others through torch (bicubic overshoot kept when clamp=False, as the official pipelines do)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    if mode == "lanczos":
        import numpy as np
        from PIL import Image

        out = []
        for im in img:
            arr = (im.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
            pil = Image.fromarray(arr).resize((size[1], size[0]), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255)
        return torch.stack(out).to(img.device)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(img.float(), size=size, mode=mode, **kwargs)
    return out.clamp(0, 1) if clamp else out
