"""I-Max projected flow: keep the low-frequency projection of the velocity on the straight line to the guidance.

G = the native result upsampled to the target size and encoded (posterior sample). With v_G = (x − G)/(σ + 1e-6),
P = Haar DWT low band of level L (a 2^L block mean, docs/methods/imax.md#projected-flow) and c_i = ½(1 + cos(π·i/N)) (step index, code):
    cosine_decay (README/demo default):  v ← v + c_i·P(v_G − v)
    cosine_shift (pipeline default):     v ← v + c_i·(v_G − v) + (1 − c_i)·P(v_G − v)
    constant:                            v ← v + P(v_G − v)
    disable:                             v unchanged
P is linear, so P(v_G) − P(v) = P(v_G − v): one projection per step. The paper prints α_t = 1 + 0.5·cos(πt),
which does not match the code (likely a typesetting error); the code's c_i is used. `scale` multiplies c_i
(1 = official); scale 0 is the unguided run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..checks import check_choice, check_weight
from ..flow.filters import haar_lowpass
from ..stage import Guide, GuideConfig, StageEnv, StepContext, require_previous, to_frame, velocity_from_x0

__all__ = ["ProjectedFlowConfig", "ProjectedFlowGuide"]

SCHEDULES = ("cosine_decay", "cosine_shift", "constant", "disable")


@dataclass
class ProjectedFlowConfig(GuideConfig):
    schedule: Literal["cosine_decay", "cosine_shift", "constant", "disable"] = "cosine_decay"
    dwt_level: int = 1
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice("guidance schedule", self.schedule, SCHEDULES)
        if self.dwt_level < 1:
            raise ValueError(f"dwt_level must be >= 1, got {self.dwt_level}")
        check_weight("scale", self.scale)

    def build(self, env: StageEnv) -> "ProjectedFlowGuide":
        require_previous(env, "projected flow (its guidance latent G)")
        return ProjectedFlowGuide(self, env.upsampled)


class ProjectedFlowGuide(Guide):
    name = "imax"

    def __init__(self, cfg: ProjectedFlowConfig, guidance_latent: torch.Tensor):
        self.cfg = cfg
        self.G = guidance_latent

    def coefficient(self, ctx: StepContext) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * ctx.step / ctx.n_steps))

    def correct(self, ctx: StepContext) -> torch.Tensor:
        cfg = self.cfg
        if cfg.schedule == "disable" or cfg.scale == 0:
            return ctx.v
        v = ctx.v
        G = to_frame(self.G, tuple(ctx.x.shape[-2:]))  # zero-padded on the official padded steps
        diff = velocity_from_x0(ctx.x, G, ctx.sigma) - v  # v_G − v
        low = haar_lowpass(diff, cfg.dwt_level)
        c = cfg.scale * self.coefficient(ctx)
        if cfg.schedule == "cosine_decay":
            return v + c * low
        if cfg.schedule == "cosine_shift":
            return v + c * diff + (cfg.scale - c) * low
        return v + cfg.scale * low
