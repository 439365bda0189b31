"""The Python API in diffusers' call style: `hiresflow.generate(pipe_or_id, prompt, method=..., scale=...)`.

    import hiresflow
    out = hiresflow.generate("tiny-flux", "a red sun over snowy mountains", method="hiflow", scale=4, seed=0)
    out.images[0]           # PIL image at the target size; out.native_images[0] at the native size
    out.plan, out.timings   # the Plan that ran and wall seconds per stage

`pipe_or_id` is a diffusers pipeline the caller already loaded (with its LoRA, offloading hooks, fp16/bf16
weights), a hiresflow `FlowModel`, or a name / folder / hub id for `hiresflow.models.loading.load_model`. A
pipeline is only read: hiresflow's model patches are installed for one model call and removed after it, and
nothing is moved to another device or dtype (tests/test_api.py checks dtype, device, attention processors and
forward methods before and after a run).

The command line's resource guard runs here too (`hiresflow.resources`): before a model named by a string loads
(the output's memory floor) and on the plan before any model call (memory and time estimate); a job beyond this
machine raises `hiresflow.resources.ResourceLimitError`, a ValueError whose one line names the numbers, and
`allow_large=True` runs it anyway. `size` wins over `scale`. The HIRESFLOW_* variables are checked at the start of
each call (`hiresflow.settings`); a prompt longer than the text encoders read gives one warning on the `hiresflow`
logger with the dropped token counts.

`progress="auto"` (the default) draws tqdm bars only when stderr is a terminal, as the command line does, so
scripts whose stderr goes to a pipe or a log file get none; True or False force bars on or off.

`callback_on_step_end(step_info) -> dict | None` runs after every sampling step of every stage with a
`StepInfo` (stage, step, σ, latents, x̂0 …). Returning {"stop": True} ends the run cleanly after that step (the
stage it stopped in is decoded and returned; `out.stopped` says where); {"latents": tensor} replaces the latents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .checks import check_type
from .plan import Plan
from .runner import RunResult
from .stage import StepContext

__all__ = ["StepInfo", "GenerationOutput", "generate", "as_model"]


@dataclass
class StepInfo:
    """What `callback_on_step_end` sees after one step (latents are the sample at `sigma_next`)."""

    stage: int
    stage_name: str
    n_stages: int
    step: int  # 0-based within the stage
    n_steps: int
    sigma: float  # σ of the step's start
    sigma_next: float  # σ the latents are at now
    latents: torch.Tensor  # [1, C, h, w] float32 (the frame the stage samples in)
    x0: torch.Tensor | None  # the model's raw x̂0 prediction of this step

    @property
    def progress(self) -> float:
        """Fraction of this stage done (0…1)."""
        return (self.step + 1) / self.n_steps


@dataclass
class GenerationOutput:
    """What `generate` returns: PIL images, the plan that ran, timings, and the full `RunResult`."""

    images: list[Image.Image]
    native_images: list[Image.Image]
    plan: Plan
    timings: dict[str, Any]
    result: RunResult
    stopped: dict | None = None  # {"stage": s, "step": k} when the callback stopped the run
    extra: dict = field(default_factory=dict)


def as_model(pipe_or_id, device: str | None = None, dtype: torch.dtype | None = None, native: int | None = None):
    """A hiresflow FlowModel for a loaded diffusers pipeline (wrapped, untouched), a FlowModel, or a name."""
    from .models.base import FlowModel
    from .models.loading import load_model, wrap_pipeline

    if isinstance(pipe_or_id, FlowModel):
        return pipe_or_id
    if _is_name(pipe_or_id):
        return load_model(str(pipe_or_id), device=device, dtype=dtype)
    if hasattr(pipe_or_id, "components"):  # a diffusers pipeline
        if device is not None or dtype is not None:
            raise ValueError("device/dtype apply to models hiresflow loads; move your pipeline yourself "
                             "(pipe.to(...)) before passing it")
        name = str(getattr(getattr(pipe_or_id, "config", None), "_name_or_path", "") or type(pipe_or_id).__name__)
        return wrap_pipeline(pipe_or_id, name=name, native=native)
    raise TypeError(f"pipe_or_id must be a diffusers pipeline, a hiresflow FlowModel or a model name, "
                    f"got {type(pipe_or_id).__name__}")


def _is_name(pipe_or_id) -> bool:
    return isinstance(pipe_or_id, (str, bytes)) or hasattr(pipe_or_id, "__fspath__")


def _size_pair(size) -> tuple[int, int] | None:
    """`size` as (H, W) when it is two positive integers (anything else is left to build_plan's error)."""
    try:
        h, w = size
    except (TypeError, ValueError):
        return None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w))
    return (h, w) if ok else None


def _preflight(pipe_or_id, device, allow_large: bool, **target) -> None:
    """The resource guard's check before a model given by name loads (`hiresflow.resources.preflight`)."""
    if not _is_name(pipe_or_id):
        return  # a loaded model: the plan's full check below is as fast
    import os

    from .models.loading import check_device
    from .resources import API, preflight

    preflight(os.fsdecode(pipe_or_id), check_device(device), allow=allow_large, spelling=API, **target)


def _step_callback(callback: Callable[[StepInfo], dict | None], plan: Plan):
    def on_step(ctx: StepContext, x: torch.Tensor):
        st = plan.stages[ctx.stage]
        info = StepInfo(stage=ctx.stage, stage_name=st.name, n_stages=len(plan.stages), step=ctx.step,
                        n_steps=ctx.n_steps, sigma=ctx.sigma, sigma_next=ctx.sigma_next, latents=x,
                        x0=ctx.x0_raw)
        return callback(info)

    return on_step


def timings_of(result: RunResult) -> dict[str, Any]:
    """Wall seconds of the run and per stage (model calls and guides separately)."""
    return {"seconds": result.seconds,
            "stages": [{"name": result.plan.stages[st.index].name, "size": [st.size[1], st.size[0]],
                        "seconds": st.seconds, "model_seconds": st.timings.model_total,
                        "guide_seconds": st.timings.guides_total} for st in result.stages]}


def generate(
    pipe_or_id,
    prompt: str,
    *,
    method: str = "hiflow",
    scale: float | None = None,
    size: Sequence[int] | None = None,
    seed: int = 0,
    negative_prompt: str = "",
    callback_on_step_end: Callable[[StepInfo], dict | None] | None = None,
    progress: bool | str = "auto",
    device: str | None = None,
    dtype: torch.dtype | None = None,
    native: int | None = None,
    plan: Plan | None = None,
    allow_large: bool = False,
    max_memory: str | int | None = None,
    cache: str | None = None,
    **recipe_params,
) -> GenerationOutput:
    """Generate one high-resolution image with recipe `method` at `scale` (× native) or `size` = (H, W).

    `recipe_params` are the recipe's parameters (`hiresflow recipes --params hiflow`), e.g. `base_steps=16`.
    `native` overrides the native size of a wrapped pipeline (pixels per side); `plan` runs a ready Plan instead
    of building one. Default: 4× the native size; `size` wins over `scale` (the native pass stays at the model's
    native size, with the target's aspect ratio). `progress`: "auto" (bars only on a terminal), True or False.

    Before the model loads and again on the plan, before any model call, the resource guard
    (`hiresflow.resources`) refuses a job beyond this machine's free memory or time limit with
    `hiresflow.resources.ResourceLimitError` (a ValueError); `allow_large=True` runs it anyway.

    `max_memory` ("24GB", or bytes): the memory plan (`hiresflow.memory_plan`) picks the cheapest diffusers
    mechanisms (VAE tiling, offloading, layerwise casting) whose predicted peak fits, applies them to the pipeline
    (which they change in place) and replaces the guard's memory check; nothing fitting is a one-line ValueError.
    `cache` ("first-block:0.08", `hiresflow.caching`): diffusers step caching on the high-resolution stages."""
    from .quiet import resolve_progress
    from .recipes import build_plan
    from .resources import API, check_resources
    from .runner import run_plan
    from .output import to_pil
    from .settings import load

    load()
    if callback_on_step_end is not None and not callable(callback_on_step_end):
        raise TypeError("callback_on_step_end must be a function step_info -> dict (or None)")
    progress = resolve_progress(progress)
    t0 = time.perf_counter()
    if plan is not None:
        check_type("plan", plan, Plan, "a hiresflow Plan (from build_plan or Plan.from_dict)")
        if recipe_params or scale is not None or size is not None:
            raise ValueError("plan= runs a ready plan; drop scale, size and recipe parameters")
    if size is not None:
        scale = None  # size wins: the native pass stays at the model's native size
    elif scale is None and plan is None:
        scale = 4.0
    target = plan.target_size if plan is not None else _size_pair(size) if size is not None else None
    _preflight(pipe_or_id, device, allow_large, size=target, scale=scale)
    model = as_model(pipe_or_id, device=device, dtype=dtype, native=native)
    if plan is None:
        plan = build_plan(method, model, scale=scale, size=tuple(size) if size is not None else None,
                          **recipe_params)
    cache_spec = None
    if cache is not None:
        from .caching import check_cache, parse_cache

        cache_spec = parse_cache(cache)
        check_cache(model, cache_spec)
    memory = None
    if max_memory is not None:
        from .memory_plan import apply_memory_plan

        memory = apply_memory_plan(model, plan, max_memory)
    check_resources(plan, model, allow=allow_large, spelling=API, memory_checked=memory is not None)
    on_step = _step_callback(callback_on_step_end, plan) if callback_on_step_end is not None else None
    result = run_plan(model, plan, prompt, seed=seed, negative_prompt=negative_prompt, progress=progress,
                      on_step=on_step, cache=cache_spec)
    native_img = result.stages[0].image if result.stages[0].image is not None else model.decode(result.stages[0].latent)
    timings = timings_of(result)
    timings["wall_seconds"] = time.perf_counter() - t0
    return GenerationOutput(images=[to_pil(result.image)], native_images=[to_pil(native_img)], plan=plan,
                            timings=timings, result=result, stopped=result.info.get("stopped"),
                            extra={"model": model, "memory_plan": memory})
