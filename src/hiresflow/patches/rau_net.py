"""RAU-Net (HiDiffusion, Zhang et al. ECCV 2024): shrink the deep features in early steps so objects do not repeat.

Four mechanisms on a diffusers U-Net, found by role (`hiresflow.models.unet_roles`), active for one model call:

    (a) resolution-aware downsampler: the stride-2 3×3 conv run with the same weights as stride 4, dilation 2,
        padding 2 — out = ⌈H/4⌉ instead of ⌈H/2⌉ (out = ⌊(H + 2·2 − 2·(3−1) − 1)/4⌋ + 1);
    (b) pooled down block: after the first (resnet, attention) pair, avg-pool 2×2 with ceil mode (⌈H/2⌉); the skip
        of that pair is the pooled map and the rest of the block runs on it;
    (c) restoring up block: in the mirrored up block, bicubic back to the exact pre-pool size after the pair that
        reads the last pooled skip;
    (d) every upsampler interpolates (nearest) to the exact size of the skip that follows it. The official code
        gets this by inflating `num_upsamplers`; here each upsampler is handed that skip's size — so any aspect
        ratio and odd sizes run without a size mismatch and without silent resampling.

Which mechanism runs when (N = steps the stage runs, i = ctx.step; T1 = int(t1·N), T2 = int(t2·N)):

| layout | (a) conv ×4 | (b)+(c) pool/bicubic |
|---|---|---|
| sd15 (SD 1.x/2.x, tiny-sd v2 and v1) | i < T1 | i < T2 |
| sdxl | i < T2 | i < T1 |
| sdxl aggressive | i < int(8/50·N) | int(8/50·N) ≤ i < T1 |
| sdxl turbo | — | i < T1 |

t1/t2 from the official table by target size: below 4× the model's native size on either side (SD1.5 < 2048 px,
SDXL < 4096 px: the official latent < 256 / < 512) t1 = 0.4, t2 = 0; at ≥ 4× on both sides t1 = 0.7, t2 = 0.3;
Turbo t1 = 0.5; SDXL with a ControlNet below 4× t1 = 0.5. The aggressive schedule is the official default for SDXL
below 4× (not for inpainting or Playground checkpoints, recognised by name as the official code does).

Differences from the official code, on purpose: the step is `ctx.step` of the StepContext — the official code
counts forward calls per module, which desyncs after an error, with separate cond/uncond calls or with a second
pipeline of another step count; the aggressive flag is decided per stage (the official global is never reset);
the size row is decided relative to the model's native size (identical on SD1.5/SD2.1-base/SDXL).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from .base import ModulePatch, PatchConfig, PatchOrder
from .unet_tools import TemporaryHooks, conv_geometry, replace_output

__all__ = ["RAUNetConfig", "RAUNetPatch", "rau_thresholds", "rau_schedule", "AGGRESSIVE_STEPS"]

THRESHOLDS = {False: (0.4, 0.0), True: (0.7, 0.3)}  # large target (≥ 4× native on both sides) → (T1, T2)
TURBO_T1 = 0.5
CONTROLNET_SDXL = (0.5, 0.0)
AGGRESSIVE_STEPS = 8 / 50


def rau_thresholds(layout: str, large: bool, turbo: bool = False, controlnet: bool = False) -> tuple[float, float]:
    """(t1, t2) ratios of the official table."""
    if turbo:
        return TURBO_T1, 0.0
    if layout == "sdxl" and controlnet and not large:
        return CONTROLNET_SDXL
    return THRESHOLDS[bool(large)]


def rau_schedule(layout: str, step: int, n_steps: int, t1: float, t2: float, aggressive: bool = False,
                 turbo: bool = False) -> tuple[bool, bool]:
    """(conv ×4 on, pool/bicubic on) at 0-based step `step` of `n_steps` (the table in the module docstring)."""
    T1, T2 = int(n_steps * t1), int(n_steps * t2)
    if turbo:
        return False, step < T1
    if layout == "sd15":
        return step < T1, step < T2
    if aggressive:
        a = int(AGGRESSIVE_STEPS * n_steps)
        return step < a, a <= step < T1
    return step < T2, step < T1


@dataclass
class RAUNetConfig(PatchConfig):
    """t1/t2: switching ratios (None: the official table by target size); aggressive / turbo: None = official
    choice (aggressive for SDXL below 4×; turbo when the model name says so)."""

    what: ClassVar[str] = "RAU-Net"
    t1: float | None = None
    t2: float | None = None
    aggressive: bool | None = None
    turbo: bool | None = None

    def __post_init__(self) -> None:
        for name in ("t1", "t2"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1):
                raise ValueError(f"RAU-Net {name} must lie in [0, 1] (a fraction of the steps), got {v!r}; "
                                 f"or leave it unset for the official table")

    def build(self, env) -> "RAUNetPatch":
        model = env.model
        model.check_patch(self)
        roles = model.unet_roles
        h, w = env.stage.size
        nh, nw = model.geometry.native
        large = h >= 4 * nh and w >= 4 * nw
        name = str(model.name).lower()
        turbo = ("turbo" in name) if self.turbo is None else bool(self.turbo)
        t1, t2 = rau_thresholds(roles.layout, large, turbo, getattr(model, "has_controlnet", False))
        t1 = t1 if self.t1 is None else float(self.t1)
        t2 = t2 if self.t2 is None else float(self.t2)
        if self.aggressive is None:
            aggressive = roles.layout == "sdxl" and not large and not turbo and \
                "inpainting" not in name and "playground" not in name
        else:
            aggressive = bool(self.aggressive)
        return RAUNetPatch(roles, t1, t2, aggressive, turbo)


class RAUNetPatch(ModulePatch):
    name = "rau_net"
    order = PatchOrder.LAYERS

    def __init__(self, roles, t1: float, t2: float, aggressive: bool, turbo: bool):
        self.roles, self.t1, self.t2, self.aggressive, self.turbo = roles, t1, t2, aggressive, turbo

    def parts(self, ctx) -> tuple[bool, bool]:
        conv, pool = rau_schedule(self.roles.layout, ctx.step, ctx.n_steps, self.t1, self.t2, self.aggressive,
                                  self.turbo)
        return conv and self.roles.conv_down is not None, pool

    def active(self, ctx) -> bool:
        return any(self.parts(ctx))

    @contextmanager
    def applied(self, x, ctx):
        conv_on, pool_on = self.parts(ctx)
        roles = self.roles
        with TemporaryHooks() as hooks, ExitStack() as stack:
            exact_upsampling(hooks, roles)
            if conv_on:
                stack.enter_context(conv_geometry([roles.conv_down], stride=(4, 4), padding=(2, 2), dilation=(2, 2)))
            if pool_on:
                state: dict = {}

                def pool(module, args, out):
                    def f(h):
                        state["size"] = tuple(h.shape[-2:])
                        return F.avg_pool2d(h, kernel_size=2, ceil_mode=True)
                    return replace_output(out, f)

                def restore(module, args, out):
                    return replace_output(out, lambda h: F.interpolate(h, size=state["size"], mode="bicubic"))

                hooks.post(roles.pool_after, pool)
                hooks.post(roles.restore_after, restore)
            yield


def exact_upsampling(hooks: TemporaryHooks, roles) -> None:
    """(d): record every skip's size as the down path makes it; each upsampler interpolates to the size of the
    skip that follows it (what diffusers does by itself only for sizes that are not multiples of 2^levels)."""
    unet = roles.unet
    skips: list[tuple[int, int]] = []

    def after_conv_in(module, args, out):
        skips.clear()
        skips.append(tuple(out.shape[-2:]))

    def after_down(module, args, out):
        skips.extend(tuple(r.shape[-2:]) for r in out[1])

    hooks.post(unet.conv_in, after_conv_in)
    for block in unet.down_blocks:
        hooks.post(block, after_down)
    consumed = 0
    for j, up in enumerate(unet.up_blocks):
        consumed += len(up.resnets)
        if not getattr(up, "upsamplers", None):
            continue

        def before_upsampler(module, args, kwargs, _c=consumed):
            size = skips[len(skips) - _c - 1]
            kw = {k: v for k, v in kwargs.items() if k != "output_size"}
            return (args[0],), {**kw, "output_size": size}

        hooks.pre(up.upsamplers[0], before_upsampler, with_kwargs=True)
