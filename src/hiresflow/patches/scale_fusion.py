"""FreeScale's scale fusion: self-attention = low frequencies of local attention + high frequencies of global.

In every transformer block's self-attention (`attn1` of `UNetRoles.all_transformers`, down, mid and up), on a
cascade stage s times the native size:

    local  = average over overlapping windows of the native token grid of that level (window = feature map ×
             native size / stage size, aspect kept), stride = half a window, each window jittered by up to
             window/8 (interior windows ±, the first only towards the border, the last only inwards) on a map
             zero-padded by window/8 — padded tokens take part, as in the official code;
    global = ordinary self-attention over all tokens;
    out    = G(local) + (global − G(global)),    G = Gaussian blur, kernel 2·s − 1, σ = 1, s = ⌊stage/native⌋.

`gaussian="3d"` (default, the official code): G is a 3-D blur over (H, W, channels) with zero padding — it also
mixes neighbouring channels, which have no order. `gaussian="2d"`: a spatial blur per channel (the paper's
description of a frequency split). The official `fast_mode` (dilated global attention) is not offered.
Jitter comes from a generator seeded by the stage seed, the step and the block index (official: Python's
`random`). Windows covering the whole map (the native stage) leave attention unchanged.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import ModulePatch, PatchConfig, PatchOrder
from .unet_tools import TemporaryHooks, derived_seed, feature_grids, swapped_processors

__all__ = ["ScaleFusionConfig", "ScaleFusionPatch", "gaussian_blur", "axis_windows", "fuse"]

GAUSSIAN_MODES = ("3d", "2d")


def _kernel1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur_axis(x: torch.Tensor, dim: int, k: torch.Tensor) -> torch.Tensor:
    moved = x.movedim(dim, -1)
    shape = moved.shape
    y = F.conv1d(moved.reshape(-1, 1, shape[-1]), k.view(1, 1, -1), padding=k.numel() // 2)
    return y.reshape(shape).movedim(-1, dim)


def gaussian_blur(x: torch.Tensor, size: int, sigma: float = 1.0, mode: str = "3d") -> torch.Tensor:
    """x: [B, H, W, C]. Separable Gaussian with zero padding over (H, W) and, for mode "3d", C as well — the
    official `conv3d` with the product kernel, computed as three 1-D passes."""
    if size <= 1:
        return x
    k = _kernel1d(size, sigma, x.dtype, x.device)
    dims = (1, 2, 3) if mode == "3d" else (1, 2)
    for d in dims:
        x = _blur_axis(x, d, k)
    return x


def fuse(local: torch.Tensor, glob: torch.Tensor, size: int, sigma: float = 1.0, mode: str = "3d") -> torch.Tensor:
    """G(local) + (global − G(global)) on [B, H, W, C] maps."""
    return gaussian_blur(local, size, sigma, mode) + (glob - gaussian_blur(glob, size, sigma, mode))


def axis_windows(length: int, window: int, jitter: bool = True):
    """Window starts along one axis (in coordinates of the map padded by r = window // 8 on both sides) and r.

    Views: n = ⌊(L − w)/stride − 10⁻⁶⌋ + 2 starts at k·stride (stride = w // 2), the last moved back to end at L;
    jitter ∈ [−r, r] inside, [−r, 0] for a first window that does not reach the end, [0, r] for a last one."""
    window = min(window, length)
    stride = max(window // 2, 1)
    n = int((length - window) / stride - 1e-6) + 2 if length > window else 1
    r = window // 8 if jitter else 0
    return [min(i * stride, length - window) for i in range(n)], window, r


def _jitter(start: int, window: int, length: int, r: int, gen: torch.Generator) -> int:
    if r == 0:
        return 0
    end = start + window
    lo, hi = (-r, r) if (start != 0 and end != length) else (-r, 0) if (start == 0 and end != length) else \
        (0, r) if (start != 0 and end == length) else (0, 0)
    if lo == hi:
        return 0
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


class ScaleFusedAttention:
    """Processor wrapper computing local (windowed) and global self-attention with the block's own processor."""

    def __init__(self, inner, patch: "ScaleFusionPatch", transformer: int, block: int):
        self.inner, self.patch, self.transformer, self.block = inner, patch, transformer, block

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        glob = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            return glob
        p = self.patch
        H, W = p.grids[self.transformer]
        if H * W != hidden_states.shape[1]:  # a window of another patch (MSW-MSA): leave it global
            return glob
        wh = max(1, round(H * p.native_latent[0] / p.latent[0]))
        ww = max(1, round(W * p.native_latent[1] / p.latent[1]))
        if wh >= H and ww >= W:
            return glob
        B, N, C = hidden_states.shape
        gen = torch.Generator().manual_seed(derived_seed(p.seed, "scale_fusion", p.step, self.block))
        hs, wh, rh = axis_windows(H, wh, p.cfg.jitter)
        ws, ww, rw = axis_windows(W, ww, p.cfg.jitter)
        x = hidden_states.view(B, H, W, C)
        xp = F.pad(x, (0, 0, rw, rw, rh, rh))
        views = []
        for h0 in hs:
            for w0 in ws:
                jw = _jitter(w0, ww, W, rw, gen)  # official order: w jitter, then h jitter, per view
                jh = _jitter(h0, wh, H, rh, gen)
                views.append((h0 + jh + rh, w0 + jw + rw))
        win = torch.cat([xp[:, a:a + wh, b:b + ww].reshape(B, wh * ww, C) for a, b in views])
        out = self.inner(attn, win, None, attention_mask, temb, **kwargs).view(len(views), B, wh, ww, -1)
        value = torch.zeros(B, H + 2 * rh, W + 2 * rw, out.shape[-1], dtype=out.dtype, device=out.device)
        count = torch.zeros(1, H + 2 * rh, W + 2 * rw, 1, dtype=out.dtype, device=out.device)
        for v, (a, b) in enumerate(views):
            value[:, a:a + wh, b:b + ww] += out[v]
            count[:, a:a + wh, b:b + ww] += 1
        value, count = value[:, rh:rh + H, rw:rw + W], count[:, rh:rh + H, rw:rw + W]
        local = torch.where(count > 0, value / count.clamp(min=1), value)
        fused = fuse(local, glob.view(B, H, W, -1), p.kernel, p.cfg.sigma, p.cfg.gaussian)
        return fused.reshape(B, H * W, -1)


@dataclass
class ScaleFusionConfig(PatchConfig):
    """gaussian: "3d" (official, blurs across channels too) or "2d" (spatial only); sigma: the blur's σ (1);
    jitter: random window jitter (official on)."""

    what: ClassVar[str] = "scale fusion"
    gaussian: str = "3d"
    sigma: float = 1.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.gaussian not in GAUSSIAN_MODES:
            raise ValueError(f"scale fusion gaussian must be '3d' (official) or '2d', got {self.gaussian!r}")
        if not (isinstance(self.sigma, (int, float)) and self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"scale fusion sigma must be a positive number, got {self.sigma!r}")

    def build(self, env) -> "ScaleFusionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        native = env.first.size if env.first is not None else g.native
        s = max(1, max(int(env.stage.size[0]) // int(native[0]), int(env.stage.size[1]) // int(native[1])))
        native_latent = (native[0] // g.vae_scale, native[1] // g.vae_scale)
        return ScaleFusionPatch(self, model.unet_roles.all_transformers(), native_latent, 2 * s - 1,
                                int(env.generator.initial_seed()))


class ScaleFusionPatch(ModulePatch):
    name = "scale_fusion"
    order = PatchOrder.ATTENTION

    def __init__(self, cfg: ScaleFusionConfig, transformers, native_latent, kernel: int, seed: int):
        self.cfg, self.transformers, self.native_latent = cfg, list(transformers), native_latent
        self.kernel, self.seed = kernel, seed
        self.attns = [(ti, blk.attn1) for ti, t in enumerate(self.transformers) for blk in t.transformer_blocks]
        self.grids: dict[int, tuple[int, int]] = {}
        self.latent = native_latent
        self.step = 0

    def active(self, ctx) -> bool:
        return True

    @contextmanager
    def applied(self, x, ctx):
        self.latent, self.step = tuple(x.shape[-2:]), ctx.step
        if self.latent[0] <= self.native_latent[0] and self.latent[1] <= self.native_latent[1]:
            yield
            return
        index = {id(t): i for i, t in enumerate(self.transformers)}
        pairs = [(attn, lambda old, _t=ti, _b=b: ScaleFusedAttention(old, self, _t, _b))
                 for b, (ti, attn) in enumerate(self.attns)]
        with TemporaryHooks() as hooks, swapped_processors(pairs):
            feature_grids(hooks, self.transformers, lambda t, hw: self.grids.__setitem__(index[id(t)], hw))
            yield
