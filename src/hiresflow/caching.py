"""Step caching as a per-stage run option: diffusers' cache hooks, enabled for one stage and removed after it.

    --cache first-block:0.08          FirstBlockCache, threshold 0.08, on every stage after the first (default)
    --cache taylorseer:4@all          TaylorSeer, a full step every 4 steps, on every stage
    --cache magcache:0.06@1,2         MagCache (FLUX.1 ratios), stages 1 and 2

Kinds (diffusers 0.42 `diffusers.hooks`, enabled with `ModelMixin.enable_cache`, `CacheMixin` in cache_utils.py):

- `first-block` (`FirstBlockCacheConfig(threshold)`): the first block always runs; when its residual changed by
  less than `threshold` (relative mean absolute difference to the last full step), every later block is skipped and
  the last full step's residual of the remaining blocks is added to the first block's output;
- `taylorseer` (`TaylorSeerCacheConfig(cache_interval)`): blocks run in full every `cache_interval` steps after 3
  warm-up steps; in between their outputs are a first-order Taylor extrapolation of the last full outputs;
- `magcache` (`MagCacheConfig(threshold)`): skips blocks while the accumulated error predicted from the model's
  per-step magnitude ratios stays below `threshold`; the ratios are checkpoint-specific and diffusers ships them for
  FLUX.1 only (`FLUX_MAG_RATIOS`), so this kind is offered for the flux family;
- `pab` (`PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range)`): attention outputs reused for
  N − 1 of every N calls while 100 < t < 800;
- `faster` (`FasterCacheConfig(spatial_attention_block_skip_range)`): attention outputs extrapolated from the last
  two computed ones for t < 681 (run with `is_guidance_distilled=True`: hiresflow's adapters make the CFG branches
  themselves, so FasterCache's own unconditional-branch skipping does not apply).

Stage boundary: the hooks are enabled when a stage starts and `disable_cache()` removes them, with their state,
when it ends (also after an error); a cache never sees two stages. Within a stage every denoiser call is given a
diffusers `CacheContext` named by its position in the step and its token count ("call0-4608"): the two calls of
true CFG, DemoFusion's views and the two frames of the official shifted patchification each keep their own state,
so a step is only ever compared with the same call of an earlier step. `pab` and `faster` keep a single state per
model in diffusers, so they refuse a stage that makes more than one call per step or changes its token count.

What a cached step returns: the velocity of the cached network (first block computed, the rest from the cache), and
x̂0 = x − σ·v from it, exactly as a pipeline with the same hook would. The guides that need each step's x̂0 of the
*reference* (HiFlow's A_d and A_a read the previous stage's recorded x̂0) get exact ones with the default stage
selection, because the native stage is never cached unless asked (`@all`); on the cached stage the guides correct
the cached velocity as they would an uncached one.

U-Net families have no cache hooks in diffusers (`UNet2DConditionModel` is not a `CacheMixin`): one-line error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

__all__ = ["CacheSpec", "StageCache", "CACHE_KINDS", "parse_cache", "check_cache", "denoiser_of"]


def denoiser_of(model) -> torch.nn.Module:
    """The adapter's transformer or U-Net (`FlowModel.denoiser`, else its `transformer` / `unet` attribute: not every
    adapter exposes the training property)."""
    try:
        return model.denoiser
    except NotImplementedError:
        den = getattr(model, "transformer", None) or getattr(model, "unet", None)
        if den is None:
            raise ValueError(f"{model.name!r} exposes no denoiser module; its adapter needs a `denoiser` property")
        return den


# kind -> (aliases, default value, what the value is, value must be an integer >= 1)
CACHE_KINDS: dict[str, tuple[tuple[str, ...], float, str, bool]] = {
    "first-block": (("fbc", "first-block-cache"), 0.08, "threshold", False),
    "taylorseer": (("taylor",), 4, "cache interval (steps)", True),
    "magcache": (("mag",), 0.06, "threshold", False),
    "pab": (("pyramid-attention-broadcast",), 2, "attention skip range (calls)", True),
    "faster": (("fastercache", "faster-cache"), 2, "attention skip range (calls)", True),
}
SINGLE_STATE = ("pab", "faster")  # diffusers keeps one state per model for these


def _kind(name: str) -> str:
    low = name.strip().lower()
    for kind, (aliases, *_rest) in CACHE_KINDS.items():
        if low == kind or low in aliases:
            return kind
    raise ValueError(f"unknown cache {name[:40]!r}; use one of {', '.join(CACHE_KINDS)} "
                     f"(e.g. --cache first-block:0.08)")


@dataclass(frozen=True)
class CacheSpec:
    """One cache kind with its value, on the stages `stages` selects: "high" (every stage after the first),
    "all", or a tuple of stage indices."""

    kind: str
    value: float
    stages: str | tuple[int, ...] = "high"

    def __post_init__(self) -> None:
        _, _, what, integer = CACHE_KINDS[_kind(self.kind)]
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
            raise ValueError(f"{self.kind} {what} must be a positive number, got {v!r}")
        if integer and (float(v) != int(v) or v < 1):
            raise ValueError(f"{self.kind} {what} must be a whole number >= 1, got {v!r}")

    def applies_to(self, stage: int) -> bool:
        if self.stages == "all":
            return True
        if self.stages == "high":
            return stage > 0
        return stage in self.stages

    def describe(self) -> str:
        where = self.stages if isinstance(self.stages, str) else ",".join(map(str, self.stages))
        value = f"{self.value:g}"
        return f"{self.kind}:{value}@{where}"


def parse_cache(text: str) -> CacheSpec:
    """NAME[:VALUE][@STAGES], STAGES = high (default), all, or comma-separated stage indices."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("--cache needs a name such as first-block:0.08")
    body, _, where = text.strip().partition("@")
    name, _, raw = body.partition(":")
    kind = _kind(name)
    default = CACHE_KINDS[kind][1]
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"--cache {text[:40]!r}: {raw[:20]!r} is not a number; write e.g. {kind}:{default:g}") from None
    if CACHE_KINDS[kind][3] and value == int(value):
        value = int(value)
    stages: str | tuple[int, ...] = "high"
    if where:
        if where in ("high", "all"):
            stages = where
        elif re.fullmatch(r"\d+(,\d+)*", where):
            stages = tuple(sorted({int(s) for s in where.split(",")}))
        else:
            raise ValueError(f"--cache {text[:40]!r}: stages must be high, all or indices like 1,2; got {where[:20]!r}")
    return CacheSpec(kind, value, stages)


def check_cache(model, spec: CacheSpec) -> None:
    """One-line ValueError when `model`'s denoiser cannot carry `spec` (before anything runs)."""
    den = denoiser_of(model)
    if not hasattr(den, "enable_cache"):
        raise ValueError(f"{spec.kind} caching needs a diffusers transformer with cache hooks; {model.name!r} is a "
                         f"{model.family} model whose {type(den).__name__} has none; drop --cache")
    if spec.kind == "magcache" and model.family != "flux":
        raise ValueError(f"magcache needs magnitude ratios calibrated for the checkpoint and diffusers ships them for "
                         f"FLUX.1 only; {model.name!r} is {model.family}; use first-block or taylorseer")


def _config(spec: CacheSpec, model, n_steps: int, timestep):
    from diffusers.hooks import (FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig,
                                 PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig)

    if spec.kind == "first-block":
        return FirstBlockCacheConfig(threshold=float(spec.value))
    if spec.kind == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=int(spec.value), disable_cache_before_step=3, max_order=1,
                                     taylor_factors_dtype=denoiser_of(model).dtype)
    if spec.kind == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return MagCacheConfig(threshold=float(spec.value), num_inference_steps=max(n_steps, 1),
                              mag_ratios=FLUX_MAG_RATIOS)
    if spec.kind == "pab":
        return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=int(spec.value),
                                               spatial_attention_timestep_skip_range=(100, 800),
                                               current_timestep_callback=timestep)
    return FasterCacheConfig(spatial_attention_block_skip_range=int(spec.value),
                             spatial_attention_timestep_skip_range=(-1, 681), current_timestep_callback=timestep,
                             attention_weight_callback=lambda _module: 0.5, is_guidance_distilled=True)


def _probe_module(den: torch.nn.Module) -> torch.nn.Module | None:
    """A Linear inside the last transformer block (its attention's when it has one): it runs only when that block
    (or its attention) is computed, not taken from the cache."""
    last = None
    for child in den.children():
        if isinstance(child, torch.nn.ModuleList) and len(child):
            last = child[-1]
    if last is None:
        return None
    scope = getattr(last, "attn", last)
    return next((m for m in scope.modules() if isinstance(m, torch.nn.Linear)), None)


class StageCache:
    """The cache of one stage: `with StageCache(spec, model, stage, n_steps):` enables the hooks; `step(ctx)` is called
    before each model call with the sampler's step; leaving removes the hooks and their state."""

    def __init__(self, spec: CacheSpec, model, stage: int, n_steps: int):
        check_cache(model, spec)
        self.spec, self.model, self.stage, self.n_steps = spec, model, stage, n_steps
        self.calls = self.computed = 0
        self._step, self._ordinal, self._sigma, self._tokens = -1, 0, 1.0, None
        self._handles: list = []

    def _timestep(self) -> float:
        return 1000.0 * float(self.model.time_fraction(self._sigma))

    def step(self, ctx) -> None:
        """Called before each model call: a new sampler step restarts the call numbering."""
        if ctx.step != self._step:
            self._step, self._ordinal, self._sigma = ctx.step, 0, float(ctx.sigma)

    def _before_call(self, module, args, kwargs):
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        hs = kwargs.get("hidden_states", args[0] if args else None)
        tokens = tuple(hs.shape[1:]) if isinstance(hs, torch.Tensor) else ()
        if self.spec.kind in SINGLE_STATE and (self._ordinal > 0 or (self._tokens not in (None, tokens))):
            raise ValueError(f"{self.spec.kind} keeps one cache per model in diffusers, but stage {self.stage} makes "
                             f"more than one model call per step (true CFG, views or a changing frame); use "
                             f"first-block or taylorseer")
        self._tokens = tokens
        name = f"call{self._ordinal}-{'x'.join(map(str, tokens))}"
        self._ordinal += 1
        self.calls += 1
        _set_cache_context(module, CacheContext(name, step_index=self._step, num_inference_steps=self.n_steps,
                                                sigma=self._sigma, timestep=self._timestep()))

    def _computed(self, *_):
        self.computed += 1

    def __enter__(self) -> "StageCache":
        den = denoiser_of(self.model)
        den.enable_cache(_config(self.spec, self.model, self.n_steps, self._timestep))
        try:
            self._handles.append(den.register_forward_pre_hook(self._before_call, with_kwargs=True))
            probe = _probe_module(den)
            if probe is not None:
                self._handles.append(probe.register_forward_hook(self._computed))
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        from diffusers.hooks.hooks import _set_cache_context

        for h in self._handles:
            h.remove()
        self._handles.clear()
        den = denoiser_of(self.model)
        if getattr(den, "is_cache_enabled", False):
            _set_cache_context(den, None)
            den.disable_cache()

    def summary(self) -> dict:
        """{"cache": spec, "calls": model calls, "computed": calls whose last block ran in full}."""
        return {"cache": self.spec.describe(), "calls": self.calls, "computed": self.computed}


def stage_cache(spec: CacheSpec | None, model, stage: int, n_steps: int) -> StageCache | None:
    """The StageCache of `stage` when `spec` selects it, else None."""
    if spec is None or not spec.applies_to(stage):
        return None
    return StageCache(spec, model, stage, n_steps)
