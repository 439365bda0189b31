"""Skip residual (DemoFusion c1, FreeScale's tailored self-cascade): pull x toward the noised upsampled result.

Before each model call at schedule index k:  x ← (1 − c1)·x + c1·((1 − σ_k)·z_up + σ_k·ε),
c1 = weight · cf(t_k)^cosine_scale, cf(t) = ½(1 + cos(π(T − t)/T)) (docs/methods/demofusion.md#skip-residual, docs/methods/freescale.md#tailored-self-cascade).
DemoFusion uses cosine_scale 3 (latent-space upsampling, all steps rerun); FreeScale 2 (pixel-space upsampling,
restart at 30 % of the steps). z_up and ε are the stage's own upsampled result and initial noise.
With `mask` (an image path), the exponent is per pixel — FreeScale's region-aware detail control
(`hiresflow.guides.region_mask`): c1 = weight · cf^(m·cosine_scale + (1 − m)·cosine_scale_bg).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_weight
from ..flow.schedule import cosine_factor
from ..stage import Guide, GuideConfig, StageEnv, StepContext, require_previous

__all__ = ["SkipResidualConfig", "SkipResidualGuide"]


@dataclass
class SkipResidualConfig(GuideConfig):
    cosine_scale: float = 3.0
    weight: float = 1.0
    mask: str | None = None
    cosine_scale_bg: float = 0.5

    def __post_init__(self) -> None:
        check_weight("cosine_scale", self.cosine_scale)
        check_weight("weight", self.weight)
        check_weight("cosine_scale_bg", self.cosine_scale_bg)
        if self.mask is not None:
            from .region_mask import load_region_mask

            load_region_mask(self.mask, (8, 8))  # fail at plan time with a one-line error

    def build(self, env: StageEnv) -> "SkipResidualGuide":
        require_previous(env, "the skip residual")
        return SkipResidualGuide(self, env)


class SkipResidualGuide(Guide):
    name = "skip_residual"

    def __init__(self, cfg: SkipResidualConfig, env: StageEnv):
        self.cfg, self.env = cfg, env
        self.exponent: torch.Tensor | float = float(cfg.cosine_scale)
        if cfg.mask is not None:
            from .region_mask import load_region_mask, mask_exponent

            m = load_region_mask(cfg.mask, env.latent_size).to(env.noise.device)
            self.exponent = mask_exponent(m, cfg.cosine_scale, cfg.cosine_scale_bg)

    def before_model(self, ctx: StepContext) -> torch.Tensor:
        if self.cfg.weight == 0:
            return ctx.x
        cf = cosine_factor(self.env.model.time_fraction(ctx.sigma))
        c1 = self.cfg.weight * (cf ** self.exponent if isinstance(self.exponent, float) else
                                torch.as_tensor(cf, dtype=torch.float32) ** self.exponent)
        return (1 - c1) * ctx.x + c1 * self.env.noised(self.env.upsampled, ctx.index)
