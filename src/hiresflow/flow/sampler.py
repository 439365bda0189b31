"""Euler sampling of a rectified flow with composable guides and a recorded trajectory.

The step order (guides before the model, the model call, raw x̂0 recorded, guides correct v, Euler step) is the
stage protocol's, stated once in `hiresflow.stage`. Every quantity that depends on the step is handed over in a
`StepContext`; nothing counts calls. Guides with state (HiFlow's previous velocities) keep it per stage between
`begin` and `end`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from ..stage import Guide, StepContext, StepTimings, Trajectory, VelocityFn, to_frame

__all__ = ["StepContext", "Trajectory", "Guide", "StepTimings", "SampleResult", "sample", "VelocityFn"]


@dataclass
class SampleResult:
    x: torch.Tensor
    trajectory: Trajectory
    timings: StepTimings
    stopped_at: int | None = None  # the step after which `on_step` asked to stop (None: ran to the end)


StepCallback = Callable[[StepContext, torch.Tensor], "dict | None"]
"""on_step(ctx, x_next) after each Euler step: None/{} continues; {"latents": t} replaces x_next; {"stop": True}
ends the stage after this step (hiresflow.api turns this into diffusers' `callback_on_step_end`)."""


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
    progress: bool | str = False,
    on_step: StepCallback | None = None,
) -> SampleResult:
    """Integrate dx/dσ = v from σ[start] to σ[stop] (default: the end of the schedule) with Euler steps.

    `x` must already be the state at σ[start]. Guides run in the given order. With `record`, the raw x̂0 of
    every step is kept (float32) for use as the next stage's reference. `on_step` (see `StepCallback`) may
    replace the sample after a step or stop the stage early.
    """
    n_total = sigmas.numel() - 1
    stop = n_total if stop is None else stop
    if not 0 <= start < stop <= n_total:
        raise ValueError(f"invalid step range [{start}, {stop}) for a schedule of {n_total} steps")
    guides = list(guides)
    x = x.to(torch.float32)
    shape = x.shape
    traj = Trajectory(sigmas=sigmas)
    timings = StepTimings()
    for g in guides:
        g.begin(x, sigmas, start, stop)
    n_steps = stop - start
    desc = progress if isinstance(progress, str) else f"stage {stage}"
    stopped_at = None
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
        if v.shape[-2:] != ctx.x.shape[-2:]:  # the step runs in another frame (padded sample)
            ctx.x = to_frame(ctx.x, tuple(v.shape[-2:]))
        ctx.v = v
        ctx.x0_raw = ctx.x - sigma * v
        if record:
            traj.x0[index] = ctx.x0_raw
        for g in guides:
            ctx.v = g.correct(ctx)
        x = ctx.x + (sigma_next - sigma) * ctx.v
        _sync(x)
        t3 = time.perf_counter()
        timings.model.append(t2 - t1)
        timings.guides.append((t1 - t0) + (t3 - t2))
        if on_step is not None:
            x, stop_now = _apply_callback(on_step, ctx, x)
            if stop_now:
                stopped_at = step
                break
    if x.shape != shape:  # a stage ending on a padded step: back to the stage's frame
        x = to_frame(x, tuple(shape[-2:]))
    for g in guides:
        x = g.end(x)
    return SampleResult(x=x, trajectory=traj, timings=timings, stopped_at=stopped_at)


def _apply_callback(on_step: StepCallback, ctx: StepContext, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Run the step callback; returns the (possibly replaced) sample and whether to stop."""
    out = on_step(ctx, x)
    if out is None:
        return x, False
    if not isinstance(out, dict):
        raise TypeError(f"the step callback must return a dict (or None), got {type(out).__name__}; "
                        f"e.g. return {{}} to continue or {{'stop': True}} to end the run")
    unknown = sorted(set(out) - {"latents", "stop"})
    if unknown:
        raise ValueError(f"the step callback returned unknown keys {', '.join(map(repr, unknown))}; "
                         f"return 'latents' and/or 'stop'")
    if out.get("latents") is not None:
        new = out["latents"]
        if not isinstance(new, torch.Tensor) or tuple(new.shape) != tuple(x.shape):
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(f"the step callback's 'latents' must be a tensor of shape {tuple(x.shape)}, got {got}")
        if not bool(torch.isfinite(new).all()):
            raise ValueError("the step callback's 'latents' contain NaN or inf; return finite latents")
        x = new.to(device=x.device, dtype=torch.float32)
    return x, bool(out.get("stop", False))
