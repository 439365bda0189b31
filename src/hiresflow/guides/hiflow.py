"""HiFlow flow-aligned guidance: direction (A_d) and acceleration (A_a) alignment to a virtual reference flow.

Reference flow: x̂0_ref(σ_i) = Φ(x̂0_low(σ_i)), the previous stage's *raw* prediction at the same schedule index,
upsampled (Φ = bicubic on latents, official; or decode→resize→encode, option "pixel").
Per step i of N_s (docs/methods/hiflow.md#formulas, all in float32):
    A_d: x̂0 ← x̂0 + α_i·LP(x̂0_ref − x̂0)     (= the paper's LP(x̂0_ref) − LP(x̂0), one FFT by linearity)
    v = (x − x̂0)/(σ + 1e-6),  v_ref = (x − x̂0_ref)/(σ + 1e-6)
    A_a (i > 0): v ← v + β_i·[(v_prev + v_ref − v_ref,prev) − v]
         i.e. (v − v_prev) ← (1−β_i)(v − v_prev) + β_i(v_ref − v_ref,prev): the paper's â = a + β(a_ref − a)
         with the time difference cancelled because both flows share the σ grid.
Weights: official linear in the step index, α_i = α·(N_s − i)/N_s; "sigma" gives α·σ_i/τ (the paper's α_t = t/τ
as quoted by a port — unverified). LP: Butterworth FFT (n = 4, D = 0.2) or Haar DWT level L ("dwt").
The initialisation A_i is an `InitSpec` of the stage (official: upsampled final image, paper: reference x̂0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..checks import check_choice, check_weight
from ..flow.filters import butterworth_lowpass, haar_lowpass
from ..flow.resize import resize_image, resize_latent
from ..stage import Guide, GuideConfig, StageEnv, StepContext, require_previous, to_frame, velocity_from_x0

__all__ = ["HiFlowConfig", "HiFlowGuide", "ReferenceFlow"]


class ReferenceFlow:
    """x̂0_ref at a schedule index, brought to the current latent size (cached per index)."""

    def __init__(self, env: StageEnv, space: str = "latent", interpolation: str = "bicubic"):
        require_previous(env, "HiFlow guidance")
        self.env, self.space, self.interpolation = env, space, interpolation
        self.traj = env.previous.trajectory
        self._cache: tuple[int, torch.Tensor] | None = None

    def index_for(self, index: int, sigma: float) -> int:
        """Same schedule index when the grids agree there (official), else the recorded step of nearest σ."""
        if index in self.traj.x0 and abs(float(self.traj.sigmas[index]) - sigma) < 1e-9:
            return index
        return self.traj.nearest_index(sigma)

    def at(self, index: int, sigma: float, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The reference at the current frame `size` (default: the stage's latent size; the official shifted
        patchification stretches it over the padded frame)."""
        j = self.index_for(index, sigma)
        size = tuple(size or self.env.latent_size)
        if self._cache is not None and self._cache[0] == (j, size):
            return self._cache[1]
        low = self.traj.x0_at(j)
        if self.space == "pixel":
            model = self.env.model
            img = resize_image(model.decode(low), (size[0] * model.geometry.vae_scale,
                                                   size[1] * model.geometry.vae_scale), self.interpolation)
            ref = model.encode(img).to(low.device)
        else:
            ref = resize_latent(low, size, self.interpolation)
        self._cache = ((j, size), ref)
        return ref


@dataclass
class HiFlowConfig(GuideConfig):
    alpha: float = 1.0
    beta: float = 0.5
    direction: bool = True
    acceleration: bool = True
    weight_schedule: Literal["step", "sigma"] = "step"
    filter: Literal["butterworth", "dwt"] = "butterworth"
    order: int = 4
    cutoff: float = 0.2
    dwt_level: int = 1
    reference_space: Literal["latent", "pixel"] = "latent"
    reference_interpolation: Literal["bicubic", "bilinear"] = "bicubic"

    def __post_init__(self) -> None:
        check_weight("alpha", self.alpha)
        check_weight("beta", self.beta)
        check_choice("weight_schedule ('step' official, 'sigma' σ/τ as a port quotes the paper)", self.weight_schedule, ("step", "sigma"))
        check_choice("filter", self.filter, ("butterworth", "dwt"))
        check_choice("reference_space", self.reference_space, ("latent", "pixel"))
        check_choice("reference_interpolation", self.reference_interpolation, ("bicubic", "bilinear"))

    def build(self, env: StageEnv) -> "HiFlowGuide":
        return HiFlowGuide(self, env)


class HiFlowGuide(Guide):
    name = "hiflow"

    def __init__(self, cfg: HiFlowConfig, env: StageEnv):
        self.cfg = cfg
        self.alpha = cfg.alpha if cfg.direction else 0.0
        self.beta = cfg.beta if cfg.acceleration else 0.0
        self.active = self.alpha > 0 or self.beta > 0
        self.reference = ReferenceFlow(env, cfg.reference_space, cfg.reference_interpolation) if self.active else None
        self.tau = float(env.sigmas[env.start])
        self.v_prev: torch.Tensor | None = None
        self.v_ref_prev: torch.Tensor | None = None

    def begin(self, x, sigmas, start, stop) -> None:
        self.v_prev = self.v_ref_prev = None

    def weight(self, ctx: StepContext) -> float:
        if self.cfg.weight_schedule == "step":
            return (ctx.n_steps - ctx.step) / ctx.n_steps
        return ctx.sigma / self.tau

    def lowpass(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.filter == "dwt":
            return haar_lowpass(x, self.cfg.dwt_level)
        return butterworth_lowpass(x, self.cfg.order, self.cfg.cutoff)

    def correct(self, ctx: StepContext) -> torch.Tensor:
        if not self.active:
            return ctx.v
        w = self.weight(ctx)
        a, b = self.alpha * w, self.beta * w
        ref = self.reference.at(ctx.index, ctx.sigma, tuple(ctx.x.shape[-2:]))
        x = ctx.x
        x0 = ctx.x0
        if a > 0:
            x0 = x0 + a * self.lowpass(ref - x0)
        v = velocity_from_x0(x, x0, ctx.sigma)
        v_ref = velocity_from_x0(x, ref, ctx.sigma)
        if b > 0 and self.v_prev is not None:
            frame = tuple(v.shape[-2:])  # the previous step may have run in the other (padded) frame
            v_prev, v_ref_prev = to_frame(self.v_prev, frame), to_frame(self.v_ref_prev, frame)
            v = v + b * ((v_prev + v_ref - v_ref_prev) - v)
        self.v_prev, self.v_ref_prev = v, v_ref
        return v
