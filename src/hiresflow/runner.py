"""Execute a Plan on a FlowModel: stage by stage, init → guided Euler sampling → decode.

The hooks and the order they run in within a step are the stage protocol's (`hiresflow.stage`).

Randomness: stage s draws its noise (and any sharpening σ, posterior sample or view jitter) from its own
`torch.Generator` seeded with `stage_seed(seed, s)`, on the CPU, so a seed gives the same bytes on every run
and a stage's randomness does not depend on how many numbers an earlier stage consumed. Seeds are integers in
0…2⁶⁴−1, and distinct seeds give distinct stage seeds (the derivation is a bijection for each stage).
A stage whose latent or image is not finite stops the run with an error naming the stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .flow.filters import random_unsharp_mask
from .flow.resize import resize_image, resize_latent
from .flow.sampler import SampleResult, StepCallback, sample
from .models.base import FlowModel
from .patches.base import compose_patches
from .plan import Plan, Stage
from .checks import check_seed, check_type
from .quiet import encode_prompt
from .stage import StageEnv, StageResult, StepTimings, Trajectory

__all__ = ["RunResult", "run_plan", "stage_seed", "stage_sigmas"]


_M64 = 2**64 - 1


def stage_seed(seed: int, stage: int) -> int:
    """Independent, reproducible 64-bit seed per stage: splitmix64's finaliser (a bijection on 64-bit integers)
    of seed + stage·φ·2⁶⁴, so two seeds never share a stage seed."""
    z = (int(seed) + 0x9E3779B97F4A7C15 * (int(stage) + 1)) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _check_finite(t: torch.Tensor | None, what: str, stage: int, stage_obj: Stage) -> None:
    if t is not None and not bool(torch.isfinite(t).all()):
        raise FloatingPointError(
            f"stage {stage} ({stage_obj.name or 'unnamed'}, {stage_obj.size[1]}x{stage_obj.size[0]}) produced a "
            f"non-finite {what}; lower the guidance or weights of that stage, or run it in float32")


@dataclass
class RunResult:
    plan: Plan
    stages: list[StageResult]
    image: torch.Tensor  # final image [B, 3, H, W] in [0, 1]
    seconds: float
    info: dict = field(default_factory=dict)

    @property
    def native(self) -> StageResult:
        return self.stages[0]


def stage_sigmas(model: FlowModel, stage: Stage, native_size: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """σ grid of a stage and the index it starts at."""
    spec = stage.schedule
    size = native_size if spec.shift_size == "native" else stage.size
    sigmas = model.schedule(spec.steps, size, shift=spec.shift, mu=spec.mu)
    start = spec.start
    if spec.tau is not None:
        start = int(torch.argmin((sigmas[:-1] - spec.tau).abs()))
    return sigmas, start


def _upsample(model: FlowModel, prev: StageResult, stage: Stage, shape, gen: torch.Generator, info: dict,
              index: int = 0):
    """Bring the previous stage's result to this stage: returns (latent, pixel image or None)."""
    init = stage.init
    h, w = stage.size
    if init.upsampler is not None:  # trained CFM latent upsampler instead of a resize (hiresflow.cfm)
        from .cfm.stage import cfm_init_latent

        return cfm_init_latent(model, prev.latent, prev.size, (h, w), init.upsampler, gen, info,
                               stage=index), None
    if init.space == "latent":
        return resize_latent(prev.latent, shape[-2:], init.interpolation), None
    if init.clamp == "none":
        img = prev.image_unclamped if prev.image_unclamped is not None else model.decode(prev.latent, clamp=False)
    else:
        img = prev.image if prev.image is not None else model.decode(prev.latent)
    if init.upscaler is not None:  # learned super-resolution, then the exact size (hiresflow.upscalers)
        from .upscalers import super_resolve

        img = super_resolve(img.clamp(0, 1), (h, w), init.upscaler, init.interpolation)
        info["upscaler"] = init.upscaler
    else:
        img = resize_image(img, (h, w), init.interpolation, clamp=init.clamp == "all")
    if init.sharpen is not None:
        s = init.sharpen
        img, used = random_unsharp_mask(img, gen, s.sigma_range, s.kernel_size, s.amount)
        if init.clamp == "all":
            img = img.clamp(0, 1)
        info["sharpen_sigma"] = used
    z = model.encode(img, generator=gen, sample=init.encode == "sample").to(model.device)
    return z, img


def _initial_sample(stage: Stage, s: int, prev: StageResult | None, up, noise, sigma0: float, start: int, shape):
    mode = stage.init.start_from
    if mode == "noise" or prev is None:
        if mode != "noise":
            raise ValueError(f"stage {s} starts from {mode!r} but has no previous stage; use start_from='noise'")
        return sigma0 * noise  # x0 unknown: the prior sample at σ_start (exact for σ_start = 1)
    if mode == "upsampled":
        return (1 - sigma0) * up + sigma0 * noise
    j = start if start in prev.trajectory.x0 else prev.trajectory.nearest_index(sigma0)
    ref = resize_latent(prev.trajectory.x0_at(j), shape[-2:], stage.init.interpolation)
    return (1 - sigma0) * ref + sigma0 * noise


def _run_stage(model: FlowModel, plan: Plan, s: int, results: list[StageResult], cond, seed: int,
               needs_image: bool, progress: bool, on_step: StepCallback | None = None, cache=None) -> StageResult:
    """Initialise, build the stage's hooks (stage protocol), sample, decode. `cache`: a
    `hiresflow.caching.CacheSpec`; its hooks live for this stage's sampling only."""
    stage = plan.stages[s]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(stage_seed(seed, s))
    C, h, w = model.geometry.latent_shape(*stage.size)
    shape = (1, C, h, w)
    sigmas, start = stage_sigmas(model, stage, plan.stages[0].size)
    noise = model.noise(shape, gen)
    prev = results[-1] if results else None
    info: dict = {}
    up = up_img = None
    if prev is not None:
        up, up_img = _upsample(model, prev, stage, shape, gen, info, index=s)
    sigma0 = float(sigmas[start])
    x = _initial_sample(stage, s, prev, up, noise, sigma0, start, shape)
    env = StageEnv(model=model, index=s, stage=stage, sigmas=sigmas, start=start, stop=sigmas.numel() - 1,
                   shape=shape, generator=gen, noise=noise, cond=cond, previous=prev,
                   first=results[0] if results else None, upsampled=up, upsampled_image=up_img)
    guides = [g.build(env) for g in stage.guides]

    from .caching import stage_cache

    cached = stage_cache(cache, model, s, sigmas.numel() - 1 - start)

    def core(xx, ctx, c):
        if cached is not None:
            cached.step(ctx)
        return model.velocity(xx, ctx.sigma, c, guidance=stage.guidance, ctx=ctx)

    patched = compose_patches(core, [p.build(env) for p in stage.patches])

    def model_call(xx, ctx):  # one patched model call
        return patched(xx, ctx, cond)

    velocity_fn = stage.denoiser.build(env, model_call) if stage.denoiser is not None else model_call
    desc = f"{plan.recipe} stage {s} {stage.size[1]}x{stage.size[0]}"
    if start == sigmas.numel() - 1:  # no σ step: the stage's result is its initialisation (pure upsampling)
        out = SampleResult(x=x.to(torch.float32), trajectory=Trajectory(sigmas=sigmas), timings=StepTimings())
    elif cached is not None:
        with cached:
            out = sample(velocity_fn, x, sigmas, start=start, guides=guides, stage=s, generator=gen,
                         progress=desc if progress else False, on_step=on_step)
        info["cache"] = cached.summary()
    else:
        out = sample(velocity_fn, x, sigmas, start=start, guides=guides, stage=s, generator=gen,
                     progress=desc if progress else False, on_step=on_step)
    _check_finite(out.x, "latent", s, stage)
    if out.stopped_at is not None:
        info["stopped_at_step"] = out.stopped_at
    raw = model.decode(out.x, clamp=False) if needs_image else None
    _check_finite(raw, "image", s, stage)
    info["sigma_start"] = sigma0
    return StageResult(index=s, size=stage.size, latent=out.x, image=None if raw is None else raw.clamp(0, 1),
                       image_unclamped=raw, trajectory=out.trajectory, sigmas=sigmas, start=start,
                       timings=out.timings, seconds=time.perf_counter() - t0, extra=info)


def run_plan(
    model: FlowModel,
    plan: Plan,
    prompt: str,
    *,
    seed: int = 0,
    negative_prompt: str = "",
    progress: bool = False,
    decode_all: bool = True,
    on_stage: Callable[[StageResult], Any] | None = None,
    on_step: StepCallback | None = None,
    native: StageResult | None = None,
    cache=None,
) -> RunResult:
    """Run every stage of `plan` for one prompt; returns per-stage results and the final image.

    `on_step(ctx, x_next)` runs after every Euler step of every stage (`hiresflow.flow.sampler.StepCallback`): it
    may replace the sample or stop the run; a stopped run decodes the stage it stopped in, runs no later stage
    and records `info["stopped"] = {"stage": s, "step": k}` (its image is that stage's, at that stage's size).
    `native`: a finished first stage supplied by the caller (an encoded user image with its reference
    trajectory, `hiresflow.upscale`); stage 0 of the plan is then not sampled.
    `cache`: a `hiresflow.caching.CacheSpec` (diffusers' step-cache hooks on the stages it selects, enabled and
    removed per stage)."""
    check_type("model", model, FlowModel, "a hiresflow FlowModel (from load_model or wrap_pipeline)")
    check_type("plan", plan, Plan, "a hiresflow Plan (from build_plan or Plan.from_dict)")
    check_type("prompt", prompt, str, "a string")
    check_type("negative_prompt", negative_prompt, str, "a string")
    check_seed(seed)
    if cache is not None:
        from .caching import CacheSpec, check_cache

        check_type("cache", cache, CacheSpec, "a hiresflow.caching.CacheSpec (from parse_cache)")
        check_cache(model, cache)
    if not plan.stages:
        raise ValueError("the plan has no stages; build it with hiresflow.recipes.build_plan")
    for st in plan.stages:
        model.geometry.validate(*st.size)
    t_start = time.perf_counter()
    cond = encode_prompt(model, prompt, negative_prompt)  # one note for a truncated prompt, not the libraries' echo
    results: list[StageResult] = []
    info: dict = {}
    if native is not None:
        check_type("native", native, StageResult, "a StageResult (from hiresflow.upscale.native_from_image)")
        if tuple(native.size) != tuple(plan.stages[0].size):
            raise ValueError(f"the supplied native stage is {native.size[1]}x{native.size[0]} but the plan's first "
                             f"stage is {plan.stages[0].size[1]}x{plan.stages[0].size[0]}; build the plan for it")
        results.append(native)
        if on_stage is not None:
            on_stage(native)
    for s, stage in enumerate(plan.stages):
        if s < len(results):
            continue
        last = s == len(plan.stages) - 1
        needs_image = decode_all or last or plan.stages[s + 1].init.space == "pixel"
        with model.codec.tiling(stage.vae_tiling):
            res = _run_stage(model, plan, s, results, cond, seed, needs_image, progress, on_step, cache)
        stopped = "stopped_at_step" in res.extra
        if stopped and res.image is None:
            res.image = model.decode(res.latent)
        results.append(res)
        if on_stage is not None:
            on_stage(res)
        # older trajectories are not needed by later stages; drop them to bound memory
        if len(results) >= 2:
            results[-2].trajectory.x0.clear()
        if stopped:
            info["stopped"] = {"stage": s, "step": res.extra["stopped_at_step"]}
            break
    final = results[-1].image
    if plan.upscale is not None and "stopped" not in info:
        if plan.upscale.upscaler is not None:
            from .upscalers import super_resolve

            final = super_resolve(final, plan.upscale.size, plan.upscale.upscaler, plan.upscale.interpolation)
        else:
            final = resize_image(final, plan.upscale.size, plan.upscale.interpolation)
        if plan.upscale.vae_roundtrip:
            final = model.decode(model.encode(final))
    return RunResult(plan=plan, stages=results, image=final, seconds=time.perf_counter() - t_start, info=info)
