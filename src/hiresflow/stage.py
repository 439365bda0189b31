"""The stage protocol: every hook a method plugs into, and the one order they run in.

A `Plan` is a list of stages (`hiresflow.plan.Stage`). For each stage the runner creates a `StageEnv` and builds
from the stage's configs (plain dataclasses, so a plan prints and round-trips as JSON):

    guides    GuideConfig.build(env)          → Guide      corrections inside the sampler
    patches   PatchConfig.build(env)          → ModelPatch reversible changes of the model for one call
    denoiser  DenoiserConfig.build(env, call) → Denoiser   how a velocity is assembled from model calls

One step i of a stage (σ_i → σ_{i+1}), always in this order:

    1. x ← guide.before_model(ctx)        each guide, in plan order           (skip residuals)
    2. v  = denoiser(x, ctx)              default: one model call             (DemoFusion: views + dilated)
          a model call = the stage's patches around model.velocity(x, σ_i, cond), nested by `PatchOrder`:
          INPUT outermost … LAYERS innermost, ties in plan order; when v comes back in another frame (the
          official shifted patchification pads the sample on even steps) x moves to v's frame (`to_frame`)
    3. x̂0_raw = x − σ_i·v                 recorded in the stage's `Trajectory` (the next stage's reference)
    4. v ← guide.correct(ctx)             each guide, in plan order           (HiFlow, I-Max, DiffuseHigh)
    5. x ← x + (σ_{i+1} − σ_i)·v
    after the last step: x ← guide.end(x) each guide, in plan order           (DemoFusion's mean/std reset)

Everything that depends on the step reaches a hook through the `StepContext` (stage, step, σ_i, …); no hook
counts calls. The formulas of each method: docs/methods/.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models.base import FlowModel
    from .plan import Stage

__all__ = [
    "StepContext", "VelocityFn", "Trajectory", "StepTimings", "StageEnv", "StageResult",
    "Guide", "GuideConfig", "PatchOrder", "PatchFn", "ModelPatch", "PatchConfig", "Denoiser", "DenoiserConfig",
    "velocity_from_x0", "require_previous", "to_frame", "X0_EPS",
]

X0_EPS = 1e-6  # the official codes' guard in v = (x − x̂0)/(σ + ε)


# ---------------------------------------------------------------- one step


@dataclass
class StepContext:
    """What a guide, a denoiser or a model patch may know about the current step."""

    stage: int
    step: int  # 0-based index among the steps this stage runs (the official codes' i)
    n_steps: int  # number of steps this stage runs (N_s)
    index: int  # index of σ_i in the full schedule
    sigma: float
    sigma_next: float
    x: torch.Tensor
    v: torch.Tensor | None = None
    x0_raw: torch.Tensor | None = None
    generator: torch.Generator | None = None

    @property
    def x0(self) -> torch.Tensor:
        """x̂0 of the current (possibly corrected) velocity: x − σ·v."""
        assert self.v is not None, "x0 is defined after the model call"
        return self.x - self.sigma * self.v


VelocityFn = Callable[[torch.Tensor, StepContext], torch.Tensor]


def to_frame(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring t [..., h, w] to the spatial `size` of the current frame by zero-padding or cropping equally on
    each side (the frame changes on the official shifted-patchification steps: the sample itself is padded)."""
    dh, dw = size[0] - t.shape[-2], size[1] - t.shape[-1]
    if dh == 0 and dw == 0:
        return t
    if dh >= 0 and dw >= 0:
        return torch.nn.functional.pad(t, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    if dh <= 0 and dw <= 0:
        return t[..., -dh // 2: t.shape[-2] - (-dh - (-dh) // 2), -dw // 2: t.shape[-1] - (-dw - (-dw) // 2)]
    raise ValueError(f"cannot bring a {tuple(t.shape[-2:])} tensor to frame {tuple(size)}")


def velocity_from_x0(x: torch.Tensor, x0: torch.Tensor, sigma: float, eps: float = X0_EPS) -> torch.Tensor:
    """v = (x − x̂0)/(σ + ε): the velocity that lands on x̂0 (inverse of x̂0 = x − σ·v, guarded at σ → 0)."""
    return (x - x0) / (sigma + eps)


@dataclass
class Trajectory:
    """Raw model predictions of one stage, keyed by schedule index (never by float σ equality)."""

    sigmas: torch.Tensor
    x0: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def indices(self) -> list[int]:
        return sorted(self.x0)

    def x0_at(self, index: int) -> torch.Tensor:
        if index not in self.x0:
            raise KeyError(
                f"the reference trajectory has no step at schedule index {index} "
                f"(recorded: {self.indices[:3]}…{self.indices[-3:]}); stages must share the σ grid"
            )
        return self.x0[index]

    def nearest_index(self, sigma: float) -> int:
        """Recorded index whose σ is closest to `sigma` (for stages on a different grid)."""
        return min(self.indices, key=lambda i: abs(float(self.sigmas[i]) - sigma))


@dataclass
class StepTimings:
    """Wall seconds per step spent in the model call and in guides (CPU: synchronous; CUDA: synchronised)."""

    model: list[float] = field(default_factory=list)
    guides: list[float] = field(default_factory=list)

    @property
    def model_total(self) -> float:
        return sum(self.model)

    @property
    def guides_total(self) -> float:
        return sum(self.guides)


# ---------------------------------------------------------------- one stage


@dataclass
class StageResult:
    """Everything a later stage (or the caller) may need from a finished stage."""

    index: int
    size: tuple[int, int]
    latent: torch.Tensor
    image: torch.Tensor | None  # decoded, in [0, 1]
    trajectory: Trajectory
    sigmas: torch.Tensor
    start: int
    timings: StepTimings = field(default_factory=StepTimings)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    image_unclamped: torch.Tensor | None = None  # the same decode before clamping (official init paths)


@dataclass
class StageEnv:
    """The runner's view of a stage, handed to every config's `build`."""

    model: "FlowModel"
    index: int
    stage: "Stage"
    sigmas: torch.Tensor
    start: int
    stop: int
    shape: tuple[int, int, int, int]
    generator: torch.Generator
    noise: torch.Tensor  # ε of this stage's initialisation (shared by skip residuals)
    cond: Any  # the model's encoded prompt; read it through the model (e.g. `model.text_tokens(cond)`)
    previous: StageResult | None = None
    first: StageResult | None = None  # the native stage
    upsampled: torch.Tensor | None = None  # previous result brought to this stage's latent size
    upsampled_image: torch.Tensor | None = None  # the same in pixels, when upsampled in pixel space

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    def noised(self, z: torch.Tensor, index: int) -> torch.Tensor:
        """(1 − σ_k)·z + σ_k·ε on this stage's grid and noise (DemoFusion's noise_latents[k])."""
        s = float(self.sigmas[index])
        return (1 - s) * z + s * self.noise


def require_previous(env: StageEnv, what: str) -> StageResult:
    """The previous stage's result, or a one-line error saying `what` belongs on a cascade stage."""
    if env.previous is None or env.upsampled is None:
        raise ValueError(f"{what} needs a previous stage; put it on a cascade stage, not the first")
    return env.previous


# ---------------------------------------------------------------- guides


class Guide:
    """A correction inside the sampler. Subclasses override what they need; the defaults change nothing."""

    name = "guide"

    def begin(self, x: torch.Tensor, sigmas: torch.Tensor, start: int, stop: int) -> None:
        """Once before the first step of the stage (reset per-stage state here)."""

    def before_model(self, ctx: StepContext) -> torch.Tensor:
        """Step 1: may move x before the model sees it."""
        return ctx.x

    def correct(self, ctx: StepContext) -> torch.Tensor:
        """Step 4: the corrected velocity (ctx.v is the velocity after the earlier guides)."""
        assert ctx.v is not None
        return ctx.v

    def end(self, x: torch.Tensor) -> torch.Tensor:
        """After the last step: may transform the stage's final sample."""
        return x


class GuideConfig:
    """Base of guide configs: plain dataclasses that build a fresh `Guide` per stage."""

    def build(self, env: StageEnv) -> Guide:  # pragma: no cover - interface
        raise NotImplementedError


# ---------------------------------------------------------------- model patches


class PatchOrder(enum.IntEnum):
    """Where a patch sits in the nest around one model call (lower = outer)."""

    INPUT = 0  # changes what the model is called on: text duplication, shifted patchification
    EMBEDDING = 1  # replaces positional embeddings: NTK/PI RoPE, SD3 position extension
    ATTENTION_SCALE = 2  # rescales attention logits around the embedding: proportional attention
    ATTENTION = 3  # replaces attention processors: windowed attention, MSW-MSA, scale fusion
    LAYERS = 4  # replaces convolutions, samplers or block outputs: RAU-Net, dilated convolution, FreeU


PatchFn = Callable[[torch.Tensor, StepContext, Any], torch.Tensor]


class ModelPatch:
    """A reversible change of the model: `wrap(fn)` returns fn'(x, ctx, cond) that applies it for one call."""

    name = "patch"
    order: PatchOrder = PatchOrder.INPUT

    def wrap(self, fn: PatchFn) -> PatchFn:  # pragma: no cover - interface
        raise NotImplementedError


class PatchConfig:
    """Base of patch configs (plain dataclasses): `build(env)` → a `ModelPatch` for one stage."""

    def build(self, env: StageEnv) -> ModelPatch:  # pragma: no cover - interface
        raise NotImplementedError


# ---------------------------------------------------------------- denoisers


class Denoiser(Protocol):
    """Assembles the stage's velocity from model calls: v = denoiser(x, ctx)."""

    def __call__(self, x: torch.Tensor, ctx: StepContext) -> torch.Tensor: ...


class DenoiserConfig:
    """Base of denoiser configs: `build(env, call)` → a `Denoiser`, `call(x, ctx)` being one patched model call."""

    def build(self, env: StageEnv, call: VelocityFn) -> Denoiser:  # pragma: no cover - interface
        raise NotImplementedError
