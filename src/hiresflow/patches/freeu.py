"""FreeU (Si et al., CVPR 2024), as FreeScale's official scripts always enable it (b1 1.1, b2 1.2, s1 0.6, s2 0.4).

Before each up-block resnet, whose input is cat([backbone h, skip r]):

    h[:, :C_h/2] ← b·h[:, :C_h/2]                                  (amplify half the backbone channels)
    r ← IFFT(FFT(r) · mask),  mask = s on the centred 2×2 lowest frequencies, 1 elsewhere   (damp the skip's low band)

`mode="channels"` (default; the official FreeU code that FreeScale ships): (b1, s1) where the backbone has the
widest channel count of the U-Net (1280 on SD/SDXL), (b2, s2) where it has the next (640) — which also catches the
first pair of the following up block. `mode="blocks"`: diffusers' `enable_freeu`, (b1, s1) in up block 0 and
(b2, s2) in up block 1, every pair. b = s = 1 switches a stage off (up to FFT round-off).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import ModulePatch, PatchConfig, PatchOrder
from .unet_tools import TemporaryHooks

__all__ = ["FreeUConfig", "FreeUPatch", "fourier_filter", "freeu_factors"]

MODES = ("channels", "blocks")


def fourier_filter(x: torch.Tensor, scale: float, threshold: int = 1) -> torch.Tensor:
    """Scale the centred (2·threshold)² low-frequency box of x's 2-D spectrum by `scale` (computed in float32)."""
    dtype = x.dtype
    f = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    H, W = f.shape[-2:]
    mask = torch.ones(H, W, device=x.device)
    ch, cw = H // 2, W // 2
    mask[max(ch - threshold, 0):ch + threshold, max(cw - threshold, 0):cw + threshold] = scale
    f = torch.fft.ifftshift(f * mask, dim=(-2, -1))
    return torch.fft.ifftn(f, dim=(-2, -1)).real.to(dtype)


def freeu_factors(roles, cfg: "FreeUConfig") -> list[tuple]:
    """(resnet, backbone channels, b, s) for every up pair FreeU touches."""
    widths = roles.widths
    out = []
    for j, i, res, ch in roles.up_pairs():
        if cfg.mode == "channels":
            bs = (cfg.b1, cfg.s1) if ch == widths[0] else (cfg.b2, cfg.s2) if len(widths) > 1 and ch == widths[1] \
                else None
        else:
            bs = (cfg.b1, cfg.s1) if j == 0 else (cfg.b2, cfg.s2) if j == 1 else None
        if bs is not None:
            out.append((res, ch) + bs)
    return out


@dataclass
class FreeUConfig(PatchConfig):
    what: ClassVar[str] = "FreeU"
    b1: float = 1.1
    b2: float = 1.2
    s1: float = 0.6
    s2: float = 0.4
    mode: str = "channels"

    def __post_init__(self) -> None:
        for name in ("b1", "b2", "s1", "s2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
                raise ValueError(f"FreeU {name} must be a non-negative number (1 = unchanged), got {v!r}")
        if self.mode not in MODES:
            raise ValueError(f"FreeU mode must be 'channels' (official) or 'blocks' (diffusers), got {self.mode!r}")

    def build(self, env) -> "FreeUPatch":
        env.model.check_patch(self)
        return FreeUPatch(freeu_factors(env.model.unet_roles, self))


class FreeUPatch(ModulePatch):
    name = "freeu"
    order = PatchOrder.LAYERS

    def __init__(self, factors):
        self.factors = factors

    @contextmanager
    def applied(self, x, ctx):
        with TemporaryHooks() as hooks:
            for res, ch, b, s in self.factors:
                def pre(module, args, _ch=ch, _b=b, _s=s):
                    z = args[0]
                    h, r = z[:, :_ch], z[:, _ch:]
                    half = _ch // 2
                    h = torch.cat([h[:, :half] * _b, h[:, half:]], dim=1)
                    return (torch.cat([h, fourier_filter(r, _s)], dim=1),) + tuple(args[1:])
                hooks.pre(res, pre)
            yield
