"""DiffuseHigh structure guidance: for the first k steps after re-noising, swap the low band of x̂0.

x̂0 ← x̂0 − LP(x̂0) + LP(G), then v = (x − x̂0)/(σ + 1e-6), where G is the upsampled, sharpened previous image
(docs/methods/diffusehigh.md#structure-guidance). space="pixel" (official): decode x̂0 (clamped, as diffusers'
postprocess), swap the DWT low band in pixels, re-encode (mode); the swapped image is not clamped
(`clamp_swapped=True` clamps it). space="latent": the same on latents (no VAE round trip per step).
LP: `wavelet="db4"` (official: Daubechies-4, level 1, symmetric extension, through PyWavelets) or "haar" (the
2^L block mean, vectorised in torch); on smooth latents the two swaps differ by about 10 % per stage.
The official code forms the step from the swapped x̂0 without the 1e-6 guard; at σ ≥ 1e-3 they agree to 0.1 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..checks import check_choice
from ..flow.filters import WAVELETS, wavelet_lowpass
from ..stage import Guide, GuideConfig, StageEnv, StepContext, require_previous, velocity_from_x0

__all__ = ["StructureGuidanceConfig", "StructureGuide"]


@dataclass
class StructureGuidanceConfig(GuideConfig):
    steps: int = 5
    level: int = 1
    space: Literal["pixel", "latent"] = "pixel"
    wavelet: Literal["db4", "haar"] = "db4"
    clamp_swapped: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"dwt steps must be >= 0, got {self.steps}")
        if self.level < 1:
            raise ValueError(f"DWT level must be >= 1, got {self.level}")
        check_choice("space", self.space, ("pixel", "latent"))
        check_choice("wavelet", self.wavelet, WAVELETS)

    def build(self, env: StageEnv) -> "StructureGuide":
        require_previous(env, "structure guidance")
        return StructureGuide(self, env)


class StructureGuide(Guide):
    name = "diffusehigh"

    def __init__(self, cfg: StructureGuidanceConfig, env: StageEnv):
        self.cfg, self.env = cfg, env
        if cfg.space == "pixel":
            img = env.upsampled_image
            if img is None:
                img = env.model.decode(env.upsampled)
            self.low = self.lowpass(img.float())
        else:
            self.low = self.lowpass(env.upsampled)

    def lowpass(self, x: torch.Tensor) -> torch.Tensor:
        return wavelet_lowpass(x, self.cfg.wavelet, self.cfg.level)

    def correct(self, ctx: StepContext) -> torch.Tensor:
        if ctx.step >= self.cfg.steps:
            return ctx.v
        x0 = ctx.x0
        if self.cfg.space == "pixel":
            model = self.env.model
            img = model.decode(x0)
            img = img - self.lowpass(img) + self.low
            if self.cfg.clamp_swapped:
                img = img.clamp(0, 1)
            x0 = model.encode(img).to(x0.device)
        else:
            x0 = x0 - self.lowpass(x0) + self.low
        return velocity_from_x0(ctx.x, x0, ctx.sigma)
