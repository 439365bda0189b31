"""Euler sampling of a rectified flow with composable guides and a recorded trajectory.

For σ_i → σ_{i+1} of a schedule (shared/DESIGN.md, "the data flow"):
    x ← guide.before_model(ctx) for each guide           (e.g. DemoFusion/FreeScale skip residual)
    v  = velocity_fn(x, ctx)                               (the model, with its per-step patches)
    x̂0 = x − σ_i·v                                         (recorded raw, before any guide)
    v ← guide.correct(ctx) for each guide, in order        (HiFlow A_d/A_a, I-Max projection, …)
    x ← x + (σ_{i+1} − σ_i)·v
Every quantity that depends on the step is handed over in a `StepContext`; nothing counts calls.
Guides with state (HiFlow's previous velocities) keep it per stage between `begin` and `end`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch
from tqdm.auto import tqdm

__all__ = ["StepContext", "Trajectory", "Guide", "StepTimings", "SampleResult", "sample", "VelocityFn"]


@dataclass
class StepContext:
    """What a guide or a model patch may know about the current step."""

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


@dataclass
class Trajectory:
    """Raw model predictions of one stage, keyed by schedule index (never by float σ equality)."""

    sigmas: torch.Tensor
    x0: dict[int, torch.Tensor] = field(default_factory=dict)
    v: dict[int, torch.Tensor] = field(default_factory=dict)

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
        idx = self.indices
        return min(idx, key=lambda i: abs(float(self.sigmas[i]) - sigma))


class Guide:
    """A correction applied inside the sampler. Subclasses override what they need; defaults change nothing."""

    name = "guide"

    def begin(self, x: torch.Tensor, sigmas: torch.Tensor, start: int, stop: int) -> None:
        """Called once before the first step of a stage (reset per-stage state here)."""

    def before_model(self, ctx: StepContext) -> torch.Tensor:
        return ctx.x

    def correct(self, ctx: StepContext) -> torch.Tensor:
        assert ctx.v is not None
        return ctx.v

    def end(self, x: torch.Tensor) -> torch.Tensor:
        """Called after the last step; may transform the stage's final sample (DemoFusion's mean/std reset)."""
        return x


class GuideLike(Protocol):  # structural type for third-party guides
    def correct(self, ctx: StepContext) -> torch.Tensor: ...


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


@dataclass
class SampleResult:
    x: torch.Tensor
    trajectory: Trajectory
    timings: StepTimings


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def sample(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    start: int = 0,
    stop: int | None = None,
    guides: Iterable[Guide] = (),
    stage: int = 0,
    generator: torch.Generator | None = None,
    record: bool = True,
    record_velocity: bool = False,
    progress: bool | str = False,
) -> SampleResult:
    """Integrate dx/dσ = v from σ[start] to σ[stop] (default: the end of the schedule) with Euler steps.

    `x` must already be the state at σ[start]. Guides run in the given order. With `record`, the raw x̂0 of
    every step is kept (float32) for use as the next stage's reference.
    """
    n_total = sigmas.numel() - 1
    stop = n_total if stop is None else stop
    if not 0 <= start < stop <= n_total:
        raise ValueError(f"invalid step range [{start}, {stop}) for a schedule of {n_total} steps")
    guides = list(guides)
    x = x.to(torch.float32)
    traj = Trajectory(sigmas=sigmas)
    timings = StepTimings()
    for g in guides:
        g.begin(x, sigmas, start, stop)
    n_steps = stop - start
    desc = progress if isinstance(progress, str) else f"stage {stage}"
    for step, index in enumerate(tqdm(range(start, stop), desc=desc, disable=not progress, leave=False)):
        sigma, sigma_next = float(sigmas[index]), float(sigmas[index + 1])
        ctx = StepContext(stage, step, n_steps, index, sigma, sigma_next, x, generator=generator)
        t0 = time.perf_counter()
        for g in guides:
            ctx.x = g.before_model(ctx)
        _sync(x)
        t1 = time.perf_counter()
        v = velocity_fn(ctx.x, ctx).to(torch.float32)
        _sync(v)
        t2 = time.perf_counter()
        ctx.v = v
        ctx.x0_raw = ctx.x - sigma * v
        if record:
            traj.x0[index] = ctx.x0_raw
            if record_velocity:
                traj.v[index] = v
        for g in guides:
            ctx.v = g.correct(ctx)
        x = ctx.x + (sigma_next - sigma) * ctx.v
        _sync(x)
        t3 = time.perf_counter()
        timings.model.append(t2 - t1)
        timings.guides.append((t1 - t0) + (t3 - t2))
    for g in guides:
        x = g.end(x)
    return SampleResult(x=x, trajectory=traj, timings=timings)
