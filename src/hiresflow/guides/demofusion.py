"""DemoFusion's denoiser for progressive phases: MultiDiffusion local views + dilated global sampling.

In the flow frame every path is a velocity (an Euler step is linear in v, so averaging denoised views equals
averaging their velocities on a shared σ grid; docs/methods/demofusion.md#local-path, #global-path):
- local: views of the native latent size, stride = half a view (rounded down to the patch size), each shifted by a random integer jitter of at
  most J = (view − stride)/4 over a canvas zero-padded by J; official (`jitter_mode="outward"`): interior views
  move in [−J, J], the first view of an axis only outward [−J, 0], the last only outward [0, J], a view spanning
  the axis not at all — so every latent pixel stays covered; "symmetric" moves every view in [−J, J];
  per-pixel average of the view velocities;
- global (c2): zero-pad to a multiple of s (official: at the top/left, `dilated_pad="top_left"`), take the s²
  interleaved sub-latents x[:, :, i::s, j::s] of a Gaussian-filtered copy (σ_blur = sigma·c3,
  c3 = 0.99·cf^c3_scale + 0.01, kernel 2s − 1, zero padding as the official F.conv2d — `blur_padding="reflect"`
  is the alternative — re-standardised to the unfiltered mean/std), and scatter their velocities back; the
  step applies to the unfiltered sample. (For ε-prediction U-Nets the official code applies the ε predicted at
  the blurred input to the unblurred sample; in the flow frame hiresflow applies the velocity instead, which
  differs by (σ' − σ)·(x_u − x_b)/(1 − σ), weighted by c2 — docs/methods/demofusion.md#global-path.)
- v = (1 − c2)·v_local + c2·v_global, c2 = cf^c2_scale.
Phase end: mean/std of the latent reset to those of the native result (`MeanStdResetConfig`).
All jitter comes from the run's generator. SDXL's per-view crop conditioning is not passed (the adapter
conditions every view on its own size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_weight
from ..flow.filters import gaussian_blur
from ..flow.schedule import cosine_factor
from ..stage import DenoiserConfig, Guide, GuideConfig, StageEnv, StepContext, VelocityFn

__all__ = ["MultiViewConfig", "MeanStdResetConfig", "view_origins"]


def default_stride(view: int, patch: int) -> int:
    """Half a view (official), rounded down to the patch size so that views start on token boundaries
    (Qwen-Image at 1328²: view 166 latent px → stride 82, not 83)."""
    return max(patch, (view // 2) // patch * patch)


def view_origins(length: int, view: int, stride: int) -> list[int]:
    """Regular origins covering [0, length) with windows of `view`, the last one flush with the end."""
    if length <= view:
        return [0]
    starts = list(range(0, length - view + 1, stride))
    if starts[-1] != length - view:
        starts.append(length - view)
    return starts


@dataclass
class MultiViewConfig(DenoiserConfig):
    view_size: int | None = None  # latent pixels; None = the model's native latent size
    stride: int | None = None  # None = half a view
    jitter: bool = True
    view_batch: int = 16
    dilated: bool = True
    c2_scale: float = 1.0
    c3_scale: float = 1.0
    sigma: float = 1.0
    jitter_mode: Literal["outward", "symmetric"] = "outward"
    blur_padding: Literal["zeros", "reflect"] = "zeros"
    dilated_pad: Literal["top_left", "bottom_right"] = "top_left"

    def __post_init__(self) -> None:
        check_choice("jitter_mode", self.jitter_mode, ("outward", "symmetric"))
        check_choice("blur_padding", self.blur_padding, ("zeros", "reflect"))
        check_choice("dilated_pad", self.dilated_pad, ("top_left", "bottom_right"))
        check_weight("c2_scale", self.c2_scale)
        check_weight("c3_scale", self.c3_scale)
        check_weight("sigma", self.sigma)
        if self.view_batch < 1:
            raise ValueError(f"view_batch must be >= 1, got {self.view_batch}")

    def call_sizes(self, model, latent_hw: tuple[int, int]) -> list[tuple[tuple[int, int], int, int]]:
        """Per step: (latent size of a call, batch rows, number of calls) — the local views in batches of
        `view_batch`, and the s² dilated sub-latents (hiresflow.resources)."""
        g = model.geometry
        native = min(g.native) // g.vae_scale
        view = min(self.view_size or native, *latent_hw)
        stride = min(self.stride or default_stride(view, g.patch), view)
        n_views = len(view_origins(latent_hw[0], view, stride)) * len(view_origins(latent_hw[1], view, stride))
        out = [((view, view), min(self.view_batch, n_views), math.ceil(n_views / self.view_batch))]
        s = max(1, round(max(latent_hw) / native))
        if self.dilated and s > 1:
            sub = (math.ceil(latent_hw[0] / s), math.ceil(latent_hw[1] / s))
            out.append((sub, min(self.view_batch, s * s), math.ceil(s * s / self.view_batch)))
        return out

    def build(self, env: StageEnv, call: VelocityFn) -> "MultiViewDenoiser":
        return MultiViewDenoiser(self, env, call)


class MultiViewDenoiser:
    """Callable velocity_fn(x, ctx) implementing the local + global paths."""

    def __init__(self, cfg: MultiViewConfig, env: StageEnv, base_velocity: VelocityFn):
        self.cfg, self.env, self.base = cfg, env, base_velocity
        geo = env.model.geometry
        p = geo.patch
        native_latent = min(geo.native) // geo.vae_scale
        self.view = cfg.view_size or native_latent
        self.stride = cfg.stride or default_stride(self.view, p)
        if self.view % p or self.stride % p:
            raise ValueError(f"view size {self.view} and stride {self.stride} must be multiples of the patch size {p}")
        self.patch = p
        h, w = env.latent_size
        self.factor = max(1, round(max(h, w) / native_latent))

    def _batched(self, xs: list[torch.Tensor], ctx: StepContext) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        n = self.cfg.view_batch
        for i in range(0, len(xs), n):
            chunk = xs[i : i + n]
            if all(c.shape == chunk[0].shape for c in chunk):
                out.extend(self.base(torch.cat(chunk), ctx).split([c.shape[0] for c in chunk]))
            else:
                out.extend(self.base(c, ctx) for c in chunk)
        return out

    def local(self, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        h, w = x.shape[-2:]
        view = min(self.view, h, w)
        view -= view % self.patch
        stride = min(self.stride, view)
        J = (view - stride) // 4 if self.cfg.jitter else 0
        J -= J % self.patch
        canvas = F.pad(x, (J, J, J, J)) if J else x
        acc = torch.zeros_like(canvas)
        cnt = torch.zeros_like(canvas[:, :1])
        boxes = []
        ys, xs = view_origins(h, view, stride), view_origins(w, view, stride)
        for oy in ys:
            for ox in xs:
                dy = dx = 0
                if J:
                    dy = self._jitter(oy, ys, h, view, J)
                    dx = self._jitter(ox, xs, w, view, J)
                boxes.append((oy + J + dy, ox + J + dx))
        crops = [canvas[..., y : y + view, x0 : x0 + view] for y, x0 in boxes]
        vs = self._batched(crops, ctx)
        for (y, x0), v in zip(boxes, vs):
            acc[..., y : y + view, x0 : x0 + view] += v
            cnt[..., y : y + view, x0 : x0 + view] += 1
        out = acc / cnt.clamp(min=1)
        return out[..., J : J + h, J : J + w] if J else out

    def _jitter(self, origin: int, origins: list[int], length: int, view: int, J: int) -> int:
        """A random shift (multiple of the patch size) of one view along one axis."""
        p = self.patch
        lo, hi = -J // p, J // p
        if self.cfg.jitter_mode == "outward":
            if view >= length:
                return 0
            if origin == origins[0]:
                hi = 0
            elif origin == origins[-1]:
                lo = 0
        return int(torch.randint(lo, hi + 1, (1,), generator=self.env.generator)) * p

    def dilated(self, x: torch.Tensor, ctx: StepContext, cf: float) -> torch.Tensor:
        s = self.factor
        h, w = x.shape[-2:]
        m = s * self.patch
        ph, pw = (-h) % m, (-w) % m
        top = self.cfg.dilated_pad == "top_left"
        pad = (pw, 0, ph, 0) if top else (0, pw, 0, ph)
        xp = F.pad(x, pad) if (ph or pw) else x
        c3 = 0.99 * cf**self.cfg.c3_scale + 0.01
        if self.cfg.sigma > 0 and s > 1:
            blurred = gaussian_blur(xp, 2 * s - 1, self.cfg.sigma * c3, padding=self.cfg.blur_padding)
            blurred = (blurred - blurred.mean()) / blurred.std() * xp.std() + xp.mean()
        else:
            blurred = xp
        subs = [blurred[..., i::s, j::s] for i in range(s) for j in range(s)]
        vs = self._batched(subs, ctx)
        out = torch.zeros_like(xp)
        k = 0
        for i in range(s):
            for j in range(s):
                out[..., i::s, j::s] = vs[k]
                k += 1
        return out[..., ph:, pw:] if top else out[..., :h, :w]

    def __call__(self, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        cf = cosine_factor(self.env.model.time_fraction(ctx.sigma))
        v_local = self.local(x, ctx)
        if not self.cfg.dilated or self.factor == 1:
            return v_local
        c2 = cf**self.cfg.c2_scale
        return (1 - c2) * v_local + c2 * self.dilated(x, ctx, cf)


@dataclass
class MeanStdResetConfig(GuideConfig):
    """x ← (x − mean(x))/std(x)·std_anchor + mean_anchor at the end of a phase (anchor = native result)."""

    enabled: bool = True

    def build(self, env: StageEnv) -> Guide:
        anchor = env.first.latent if env.first is not None else None
        return _MeanStdReset(anchor if self.enabled else None)


class _MeanStdReset(Guide):
    name = "mean_std_reset"

    def __init__(self, anchor: torch.Tensor | None):
        self.anchor = anchor

    def end(self, x: torch.Tensor) -> torch.Tensor:
        if self.anchor is None:
            return x
        return (x - x.mean()) / x.std() * self.anchor.std() + self.anchor.mean()
