"""Named methods: each builds a Plan with the published defaults (docs/methods/), every part switchable.

`build_plan(name, model, scale=4)` or `build_plan(name, model, size=(H, W))`; keyword overrides are the recipe
function's parameters (`hiresflow recipes --params NAME` lists them; the CLI takes `--set key=value`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .guides.demofusion import MeanStdResetConfig, MultiViewConfig
from .guides.diffusehigh import StructureGuidanceConfig
from .guides.hiflow import HiFlowConfig
from .guides.imax import ProjectedFlowConfig
from .guides.skip_residual import SkipResidualConfig
from .models.base import FlowModel, LatentGeometry
from .flow.schedule import resolution_shift, validate_steps
from .checks import check_fraction, check_number
from .plan import CfmUpsampleSpec, InitSpec, Plan, ScheduleSpec, SharpenSpec, Stage, UpscaleSpec

__all__ = ["Recipe", "RECIPES", "build_plan", "resolve_sizes", "cascade_sizes", "recipe_params"]


# ---------------------------------------------------------------- sizes


def _size_pair(name: str, size) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise ValueError(f"{name} must be two integers (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def resolve_sizes(
    geometry: LatentGeometry, scale: float | None = None, size: tuple[int, int] | None = None,
    native: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(native, target) sizes. `size` wins over `scale` (which is then ignored): the native stage keeps the
    target's aspect ratio at the model's native pixel count (I-Max rounds the factor instead, which distorts
    aspect ratios; docs/methods/imax.md#paper-vs-official-code), never a pass below the native size. `native`
    (with `size` only) pins the native stage, e.g. to an upscaled image's size."""
    nh, nw = geometry.native
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number >= 1, got {scale!r}; e.g. --scale 4")
    if native is not None and size is None:
        raise ValueError("native= pins the native stage of a given size=; pass size too")
    if size is not None:
        h, w = _size_pair("size", size)
        geometry.validate(h, w)
        if native is not None:
            native = _size_pair("native", native)
            geometry.validate(*native)
            if native[0] > h or native[1] > w:
                raise ValueError(f"target {w}x{h} is smaller than the native stage {native[1]}x{native[0]}")
            return native, (h, w)
        k = math.sqrt(h * w / (nh * nw))
        if k < 1:
            raise ValueError(f"target {w}x{h} is smaller than the native {nw}x{nh}; pick a larger --size")
        native = geometry.round_size(h / k, w / k)
        return native, (h, w)
    if scale is None:
        raise ValueError("give --scale K or --size WxH")
    if not isinstance(scale, (int, float)) or scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale!r}; e.g. --scale 4")
    target = (int(round(nh * scale)), int(round(nw * scale)))
    geometry.validate(*target)
    return (nh, nw), target


def cascade_sizes(geometry: LatentGeometry, native, target, ratio: float = 2.0, additive: bool = False):
    """Intermediate stage sizes from native (excluded) to target (included).

    ratio=2: ×2, ×4, … (HiFlow / FreeScale self-cascade); additive=True: +1 native per stage (DemoFusion's phases,
    DiffuseHigh's 2048 → 3072 → 4096).
    """
    nh, nw = native
    th, tw = target
    k_total = max(th / nh, tw / nw)
    sizes = []
    k = 2.0 if additive else ratio
    while k < k_total - 1e-9:
        sizes.append(geometry.round_size(nh * k, nw * k))
        k = k + 1 if additive else k * ratio
    sizes.append((th, tw))
    out = []
    for s in sizes:  # drop duplicates from rounding
        if not out or s != out[-1]:
            out.append(s)
    return out


def _stages(model: FlowModel, native, target, stage_sizes, additive: bool = False) -> list[tuple[int, int]]:
    """The cascade's stage sizes: `stage_sizes` as given (validated, growing, ending at the target), else the
    recipe's own progression."""
    if stage_sizes is None:
        return cascade_sizes(model.geometry, native, target, additive=additive)
    sizes = [(int(s[0]), int(s[1])) for s in stage_sizes]
    if not sizes or sizes[-1] != tuple(target):
        raise ValueError(f"stage_sizes must end at the target size {target[1]}x{target[0]} (given as (H, W) pairs)")
    prev = native
    for h, w in sizes:
        model.geometry.validate(h, w)
        if h * w <= prev[0] * prev[1]:
            raise ValueError(f"stage_sizes must grow stage by stage; {w}x{h} is not larger than {prev[1]}x{prev[0]}")
        prev = (h, w)
    return sizes


def _steps(model: FlowModel, steps: int | None) -> int:
    """The given step count (validated) or the model's default."""
    return model.default_steps if steps is None else validate_steps(steps)


def _per_stage(values, j: int, name: str = "value"):
    """values may be a scalar or a non-empty list (indexed per cascade stage, the last repeated)."""
    if isinstance(values, (list, tuple)):
        if not values:
            raise ValueError(f"{name} is an empty list; give one value, or one per cascade stage, e.g. {name}=[16, 10]")
        return values[min(j, len(values) - 1)]
    return values


def _native_stage(model: FlowModel, native, steps: int | None, shift: float | None = None,
                  guidance: float | None = None) -> Stage:
    return Stage(size=native, schedule=ScheduleSpec(steps=_steps(model, steps), shift=shift),
                 guidance=guidance, name="native")


def dit_patches(model: FlowModel, **switches) -> list:
    """The DiT inference toolkit for a high-resolution stage, as the model's family implements it
    (`FlowModel.toolkit_patches`; switches are the fields of `hiresflow.patches.toolkit.DiTToolkit`). A RoPE
    extrapolation (`rope`) on a family without RoPE — SD3, the U-Nets — is refused with one line."""
    from .patches.toolkit import DiTToolkit

    if switches.get("rope") is not None:
        model.rope_axes()
    return model.toolkit_patches(DiTToolkit(**switches))


DYPE_METHODS = ("pi", "ntk", "yarn")


def dype_rope(dype: bool, method: str = "yarn", version: str = "official", lambda_s: float = 2.0,
              lambda_t: float = 2.0, attention_scale: bool = True, clamp: str = "official"):
    """The RoPE patch of the DyPE options (None when `dype` is off): DyPE over `method`
    (`hiresflow.patches.rope.RopeExtrapolationConfig`)."""
    from .patches.rope import RopeExtrapolationConfig

    if not isinstance(dype, bool):
        raise ValueError(f"dype must be True or False, got {dype!r}")
    if not dype:
        return None
    return RopeExtrapolationConfig(method=method, dype=True, version=version, lambda_s=lambda_s,
                                   lambda_t=lambda_t, attention_scale=attention_scale, clamp=clamp)


def _time_shift(time_shift: str) -> str:
    """DyPE's time shift as a `ScheduleSpec.shift_size`: "official" = the model's σ rule at the native size for
    every stage (the official pipeline fixes FLUX.1's μ at max_shift = 1.15, which is FLUX.1's rule at its native
    1024²), "stage" = the rule at the stage's own size (stock diffusers)."""
    if time_shift not in ("official", "stage"):
        raise ValueError(f"time_shift must be 'official' (the native size's schedule) or 'stage', got {time_shift!r}")
    return "native" if time_shift == "official" else "stage"


def _embedded(model: FlowModel, values):
    """Official per-stage Flux guidance values apply to models with a Flux guidance embedding only."""
    return values if model.guidance_kind == "embedded" else None


# ---------------------------------------------------------------- recipes


def direct(model: FlowModel, native, target, steps: int | None = None, shift: float | None = None,
           guidance: float | None = None) -> Plan:
    """Plain sampling at the target size (the failure case every method starts from)."""
    st = Stage(size=target, schedule=ScheduleSpec(steps=_steps(model, steps), shift=shift),
               guidance=guidance, name="direct")
    return Plan("direct", [st])


def upscale(model: FlowModel, native, target, steps: int | None = None, interpolation: str = "bicubic",
            guidance: float | None = None, upscaler: str | None = None, vae_roundtrip: bool = False) -> Plan:
    """Native generation, then bicubic or Lanczos resize of the image. `upscaler=NAME` runs a learned
    super-resolution model first (Real-ESRGAN, `hiresflow.upscalers.UPSCALERS`, e.g. "realesrgan-x4plus"; the
    optional extra `hiresflow[sr]`): one pass of the model, its output then fitted to the target with
    `interpolation` (docs/methods/upscalers.md). `vae_roundtrip=True` then encodes and decodes the enlargement once
    with the model's VAE, no sampling (the baseline of docs/methods/anchored.md: what the VAE alone adds)."""
    if interpolation not in ("bicubic", "lanczos", "bilinear", "nearest"):
        raise ValueError(f"interpolation must be bicubic, lanczos, bilinear or nearest, got {interpolation!r}")
    if upscaler is not None:
        from .upscalers import require

        require(upscaler)  # a bad name or a missing package fails before the native image is sampled
    if not isinstance(vae_roundtrip, bool):
        raise ValueError(f"vae_roundtrip must be true or false, got {vae_roundtrip!r}")
    return Plan("upscale", [_native_stage(model, native, steps, guidance=guidance)],
                upscale=UpscaleSpec(target, interpolation, upscaler, vae_roundtrip))


def sdedit(model: FlowModel, native, target, steps: int | None = None, tau: float = 0.6,
           start: int | None = None, space: str = "pixel", interpolation: str = "bicubic", sharpen: bool = False, encode: str = "mode",
           guidance: float | None = None, stage_guidance: float | None = None,
           shift_size: str = "stage", clamp_init: str = "all") -> Plan:
    """Hires fix: upsample the native result (pixels or latent), noise to σ ≈ τ, denoise at the target size.

    `start` (a grid index) replaces τ when given, e.g. to match HiFlow's official grid exactly. The image path
    works on [0, 1] images like an 8-bit hires fix (`clamp_init="all"`)."""
    check_fraction("tau", tau)
    n = _steps(model, steps)
    sched = ScheduleSpec(steps=n, tau=None, start=start, shift_size=shift_size) if start is not None \
        else ScheduleSpec(steps=n, tau=tau, shift_size=shift_size)
    hi = Stage(size=target, schedule=sched,
               init=InitSpec("upsampled", space, interpolation, SharpenSpec() if sharpen else None, encode,
                             clamp_init),
               guidance=stage_guidance, name="sdedit")
    return Plan("sdedit", [_native_stage(model, native, n, guidance=guidance), hi])


HIFLOW_STEPS = (16, 10)
HIFLOW_ALPHA = (1.0, 0.25)
HIFLOW_BETA = (0.5, 0.5)
HIFLOW_FLUX_GUIDANCE = (4.5, 6.0)


def hiflow(model: FlowModel, native, target, base_steps: int = 30, stage_steps=HIFLOW_STEPS,
           alpha=HIFLOW_ALPHA, beta=HIFLOW_BETA, init: str = "official", direction: bool = True,
           acceleration: bool = True, initialization: bool = True, weight_schedule: str = "step",
           filter: str = "butterworth", order: int = 4, cutoff: float = 0.2, dwt_level: int = 1,
           reference_space: str = "latent", shift_size: str = "native", guidance: float | None = None,
           stage_guidance=None, ntk: float = 10.0, pi_floor: bool = False, proportional_attention: bool = True,
           text_duplication: bool = False, shifted_patches: bool = True, shift_frame: str = "sample",
           windowed_attention: float | None = None, stage_sizes=None, clamp_init: str = "none",
           official_vae_tiling: bool = False, cfm_model: str = "cfm-x2", cfm_solver: str = "euler",
           cfm_nfe: int = 10, dype: bool = False, dype_method: str = "yarn", dype_version: str = "official",
           dype_attention_scale: bool = True) -> Plan:
    """HiFlow cascade (×2, ×4, …) with A_i, A_d, A_a; official defaults (docs/methods/hiflow.md#parameters-and-defaults).

    Every stage runs the last N_s entries of the base `base_steps` grid computed at the native size (official;
    τ = 0.783 / 0.612 for N_s = 16 / 10 on Flux-dev); shift_size="stage" recomputes the grid per stage.
    init="official" noises the upsampled, sharpened final image (VAE mode); init="paper" noises the reference
    x̂0 at τ; init="cfm" noises the CFM latent upsample of the previous stage (`cfm_model`, `cfm_solver`,
    `cfm_nfe`; docs/methods/cfm.md) instead of the sharpened bicubic upsample. initialization=False drops A_i: the stage starts from pure noise over the full grid.
    Model side (DiT families, docs/methods/dit-toolkit.md#defaults-per-recipe): NTK×10 without PI floor,
    proportional attention and shifted patchification on every cascade stage; text duplication off (as the
    released script). `shift_frame="sample"` (default, official) pads the sample itself on even steps, so the
    guidance runs on the padded frame; "model" pads only the model input (hiresflow's default until 2026-12-07,
    docs/faithfulness.md).
    Fidelity options: `clamp_init` ("none" official: the decoded, resized and sharpened image is encoded with its
    overshoot; "decoded"/"all" clamp); `official_vae_tiling=True` tiles every cascade stage's VAE work with
    diffusers' tiling as the official pipeline does after its native pass (off by default: on small VAEs the
    tile seams alone move results by 20+ dB).
    `dype=True` (recipe `dype+hiflow`) puts DyPE (`dype_method`, default YaRN, `dype_version`) on the RoPE of every
    cascade stage in place of the NTK RoPE (`ntk`, `pi_floor` are then unused); the schedule stays HiFlow's.
    """
    rope = dype_rope(dype, dype_method, dype_version, attention_scale=dype_attention_scale)
    if init not in ("official", "paper", "cfm"):
        raise ValueError(f"init must be 'official', 'paper' or 'cfm', got {init!r}")
    for name, values in (("alpha", alpha), ("beta", beta), ("cutoff", cutoff), ("ntk", ntk)):
        for v in (values if isinstance(values, (list, tuple)) else [values]):
            check_number(name, v)  # every listed value, also those of stages this size does not reach
    if stage_guidance is None:
        stage_guidance = _embedded(model, HIFLOW_FLUX_GUIDANCE)
    stages = [_native_stage(model, native, base_steps, guidance=guidance)]
    for j, size in enumerate(_stages(model, native, target, stage_sizes)):
        n_s = validate_steps(_per_stage(stage_steps, j, "stage_steps"), "stage_steps")
        if not 0 < n_s <= base_steps:
            raise ValueError(f"stage_steps must lie in [1, base_steps={base_steps}], got {n_s}")
        if initialization:
            sched = ScheduleSpec(steps=base_steps, shift_size=shift_size, start=base_steps - n_s)
            if init == "official":
                ini = InitSpec("upsampled", "pixel", "bicubic", SharpenSpec(), "mode", clamp_init)
            elif init == "cfm":  # the CFM upsample replaces the sharpened bicubic upsample, then re-noised
                _check_cfm(model, cfm_model)
                ini = InitSpec("upsampled", "pixel", "bicubic", None, "mode", clamp_init,
                               upsampler=CfmUpsampleSpec(cfm_model, cfm_solver, cfm_nfe))
            else:
                ini = InitSpec("reference_x0", "latent", "bicubic")
        else:
            sched = ScheduleSpec(steps=base_steps, shift_size=shift_size)
            ini = InitSpec("noise")
        g = HiFlowConfig(alpha=check_number("alpha", _per_stage(alpha, j, "alpha")), beta=check_number("beta", _per_stage(beta, j, "beta")), direction=direction,
                         acceleration=acceleration, weight_schedule=weight_schedule, filter=filter, order=order,
                         cutoff=check_number("cutoff", _per_stage(cutoff, j, "cutoff")), dwt_level=dwt_level, reference_space=reference_space)
        patches = dit_patches(model, ntk=check_number("ntk", _per_stage(ntk, j, "ntk")), pi_floor=pi_floor,
                              proportional_attention=proportional_attention, text_duplication=text_duplication,
                              shifted_patches=shifted_patches, shift_frame=shift_frame,
                              windowed_attention=windowed_attention, rope=rope)
        stages.append(Stage(size=size, schedule=sched, init=ini, guides=[g],
                            guidance=_per_stage(stage_guidance, j, "stage_guidance"), patches=patches,
                            name=f"hiflow{j + 1}", vae_tiling="diffusers" if official_vae_tiling else "auto"))
    return Plan("dype+hiflow" if dype else "hiflow", stages)


def imax(model: FlowModel, native, target, steps: int = 30, hires_steps: int = 30, shift: float = 3.0,
         hires_shift: float | str = 6.0, schedule: str = "cosine_decay", dwt_level: int = 1,
         projection_scale: float = 1.0, guidance: float | None = None, hires_guidance: float | None = None,
         ntk: float = 10.0, pi_floor: bool = True, proportional_attention: bool = True,
         text_duplication: bool | None = None, shifted_patches: bool = True, shift_frame: str = "sample",
         windowed_attention: float | None = None, clamp_init: str = "none", official_vae_tiling: bool = False,
         dype: bool = False, dype_method: str = "yarn", dype_version: str = "official",
         dype_attention_scale: bool = True) -> Plan:
    """I-Max: native pass, then one pass at the target from pure noise with projected flow toward the upsampled
    native result (README defaults: 30/30 steps, shifts 3/6, cosine_decay, DWT level 1, posterior sample).
    Model side on the high-resolution pass (docs/methods/dit-toolkit.md#defaults-per-recipe): NTK×10 with the PI floor, proportional attention, text
    duplication with grid ids, shifted patchification. hires_shift="auto" uses the paper's s* = 1.5·scale
    (the code's fixed 6 equals it at 4×). `shift_frame="sample"` (default, official): the padding of the sample
    (and of G), so the Haar projection runs on the padded grid; "model" pads only the model input. `clamp_init="none"` (official) encodes the upsampled native
    image with its overshoot; `official_vae_tiling=True` uses diffusers' tiled encode/decode for every VAE call
    as the official pipeline does, even at the native size. `dype=True` replaces the NTK/PI RoPE of the
    high-resolution pass by DyPE (`dype_method`, `dype_version`); I-Max's own time shift (`hires_shift`) stays.
    `text_duplication=None`: on where the family defines it (FLUX.1/.2, Chroma, Z-Image, SD3), off where its text
    positions have no tile origin (Qwen-Image); True insists (one-line refusal there)."""
    if text_duplication is None:
        from .patches.text_dup import TextDuplicationConfig

        text_duplication = issubclass(TextDuplicationConfig, model.patch_types())
    rope = dype_rope(dype, dype_method, dype_version, attention_scale=dype_attention_scale)
    if hires_guidance is None and model.guidance_kind == "embedded":
        hires_guidance = 7.0
    if hires_shift == "auto":
        hires_shift = resolution_shift(1.0, max(target[0] / native[0], target[1] / native[1]), factor=1.5)
    elif isinstance(hires_shift, str):
        raise ValueError(f"hires_shift must be a number or 'auto', got {hires_shift!r}")
    patches = dit_patches(model, ntk=ntk, pi_floor=pi_floor, proportional_attention=proportional_attention,
                          text_duplication=text_duplication, shifted_patches=shifted_patches,
                          shift_frame=shift_frame, windowed_attention=windowed_attention, rope=rope)
    return projected_flow_plan("imax", model, native, target, ScheduleSpec(steps=hires_steps, shift=hires_shift),
                               patches, steps=steps, shift=shift, guidance=guidance, hires_guidance=hires_guidance,
                               schedule=schedule, dwt_level=dwt_level, projection_scale=projection_scale,
                               clamp_init=clamp_init, official_vae_tiling=official_vae_tiling)


def projected_flow_plan(name: str, model: FlowModel, native, target, hires_schedule: ScheduleSpec, patches: list,
                        *, steps, shift, guidance, hires_guidance, schedule: str, dwt_level: int,
                        projection_scale: float, clamp_init: str, official_vae_tiling: bool) -> Plan:
    """I-Max's two passes, shared by `imax` and the methods built on its guided pass (`ultraimage`): the native
    pass, then the target from pure noise with the projected flow toward the upsampled native result (posterior
    sample), `patches` on the high-resolution pass; `official_vae_tiling` tiles every VAE call."""
    tiling = "always" if official_vae_tiling else "auto"
    hi = Stage(size=target, schedule=hires_schedule, patches=patches,
               init=InitSpec("noise", "pixel", "bicubic", None, "sample", clamp_init),
               guides=[ProjectedFlowConfig(schedule=schedule, dwt_level=dwt_level, scale=projection_scale)],
               guidance=hires_guidance, name=name, vae_tiling=tiling)
    native_stage = _native_stage(model, native, steps, shift=shift, guidance=guidance)
    native_stage.vae_tiling = tiling
    return Plan(name, [native_stage, hi])


def dype(model: FlowModel, native, target, steps: int | None = None, method: str = "yarn",
         version: str = "official", lambda_s: float = 2.0, lambda_t: float = 2.0, attention_scale: bool = True,
         clamp: str = "official", time_shift: str = "official", dynamic: bool = True,
         guidance: float | None = None) -> Plan:
    """DyPE: one pass at the target size from pure noise, the RoPE extrapolation scheduled by σ (official
    defaults: Dy-YaRN, κ = σ², mscale on; the native size's σ schedule, docs/methods/dype.md). `method="ntk"`
    is Dy-NTK, `"pi"` Dy-PI (a hiresflow extension); `version="legacy"` the 2025 Dy-YaRN; `clamp="clean"` the
    variant without the official code's low-σ ramp inversion; `time_shift="stage"` the stock diffusers shift at
    the target size. `dynamic=False` keeps the extrapolation static (plain PI / NTK / YaRN, the ablation of the
    schedule). The official run uses 28 steps and guidance 4.5 on FLUX.1-Krea-dev; here the model's own
    defaults unless given."""
    from .patches.rope import RopeExtrapolationConfig

    rope = dype_rope(True, method, version, lambda_s, lambda_t, attention_scale, clamp)
    if not isinstance(dynamic, bool):
        raise ValueError(f"dynamic must be True or False, got {dynamic!r}")
    if not dynamic:
        rope = RopeExtrapolationConfig(method=method, dype=False, attention_scale=attention_scale, clamp=clamp)
    model.rope_axes()  # one line for families without RoPE
    st = Stage(size=target, schedule=ScheduleSpec(steps=_steps(model, steps), shift_size=_time_shift(time_shift)),
               guidance=guidance, patches=[rope], name="dype")
    return Plan("dype", [st])


def dype_hiflow(model: FlowModel, native, target, **params) -> Plan:
    """HiFlow's cascade with DyPE on every high-resolution stage's RoPE (`hiflow(..., dype=True)`); every HiFlow
    and DyPE option of `hiflow` applies."""
    return hiflow(model, native, target, **{"dype": True, **params})


dype_hiflow.__signature__ = inspect.signature(hiflow).replace(parameters=[
    p.replace(default=True) if p.name == "dype" else p for p in inspect.signature(hiflow).parameters.values()])


def ultraimage(model: FlowModel, native, target, steps: int = 30, hires_steps: int = 30, shift: float = 3.0,
               hires_shift: float = 6.0, guided: bool = True, schedule: str = "cosine_decay", dwt_level: int = 1,
               projection_scale: float = 1.0, guidance: float | None = None, hires_guidance: float | None = None,
               rdfc: bool = True, freq_ids=None, train_scale: float = 2.0, correction: str = "riflex",
               riflex_scale: float = 0.85, rope_gate: str = "sequence", concentration: bool | None = None,
               lambda_min: float = 1.1, lambda_max: float = 1.3, gamma: float = 2.0, h_min: float = 0.44,
               h_max: float = 6.0, entropy_bounds: str = "fixed", mapping: str = "power", block: int = 128,
               measure_scale: str = "official", proportional_attention: bool = False,
               text_duplication: bool = False, shifted_patches: bool | None = None, shift_frame: str = "sample",
               clamp_init: str = "none", official_vae_tiling: bool = False) -> Plan:
    """UltraImage (docs/methods/ultraimage.md), defaults of the official FLUX code (`ultra-flux` base.yaml):
    the I-Max-guided pass at the target (native pass 30 steps, shift 3; target pass 30 steps, shift 6, projected
    flow `cosine_decay` at DWT level 1, guidance 7 on models with a Flux guidance embedding) whose model side is
    RDFC on the RoPE — the dominant frequency (period closest to `train_scale` × the native length; `freq_ids`
    lists indices instead) set to `riflex_scale`·2π/H (`correction="interpolate"`: divided by H/N) — and
    entropy-guided attention concentration: per layer and head λ from the attention entropy of the first step
    (power map, λ in [`lambda_min`, `lambda_max`], γ, fixed bounds [`h_min`, `h_max`]; `entropy_bounds="observed"`
    the paper's min/max), every later call attending with softmax(λ·q·kᵀ/√d). No NTK, no text duplication, no
    proportional attention (the official attention path ignores it), shifted patchification on the guided pass.
    `guided=False`: the direct extrapolation — one pass at the target from noise with the same model side and
    schedule, no native pass, no shifted patches (the official pipeline without a guidance schedule).
    `rdfc=False` / `concentration=False` drop either half (the paper's ablation); `concentration=None` (default)
    is on where the family implements it (FLUX.1, Chroma) and off elsewhere. The paper's own values:
    `riflex_scale=1`, `lambda_min=1.0`, `entropy_bounds="observed"`, `block=1` (token entropy, Eq. 10)."""
    from .patches.ultraimage import UltraImageAttentionConfig, UltraImageRopeConfig

    model.rope_axes()  # one line for families without RoPE
    if concentration is None:  # on where the family has it (FLUX.1's attention processors), else off
        from .patches.ultraimage import UltraImageAttentionConfig

        concentration = issubclass(UltraImageAttentionConfig, model.patch_types())
    for name, flag in (("guided", guided), ("rdfc", rdfc), ("concentration", concentration)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if shifted_patches is None:
        shifted_patches = guided  # the official pipeline shifts patches on its guided (super_imax) pass only
    rope = UltraImageRopeConfig(freq_ids=freq_ids, train_scale=train_scale, correction=correction,
                                riflex_scale=riflex_scale, gate=rope_gate) if rdfc else None
    attention = UltraImageAttentionConfig(lambda_min=lambda_min, lambda_max=lambda_max, gamma=gamma, h_min=h_min,
                                          h_max=h_max, bounds=entropy_bounds, mapping=mapping, block=block,
                                          measure_scale=measure_scale) if concentration else None
    if hires_guidance is None and model.guidance_kind == "embedded":
        hires_guidance = 7.0
    patches = dit_patches(model, proportional_attention=proportional_attention, text_duplication=text_duplication,
                          shifted_patches=shifted_patches, shift_frame=shift_frame)
    if rope is not None:
        patches.append(rope)
    if attention is not None:
        patches.append(attention)
    sched = ScheduleSpec(steps=validate_steps(hires_steps, "hires_steps"),
                         shift=check_number("hires_shift", hires_shift))
    if not guided:
        return Plan("ultraimage", [Stage(size=target, schedule=sched, patches=patches, guidance=hires_guidance,
                                         name="ultraimage")])
    return projected_flow_plan("ultraimage", model, native, target, sched, patches, steps=steps, shift=shift,
                               guidance=guidance, hires_guidance=hires_guidance, schedule=schedule,
                               dwt_level=dwt_level, projection_scale=projection_scale, clamp_init=clamp_init,
                               official_vae_tiling=official_vae_tiling)


def demofusion(model: FlowModel, native, target, steps: int | None = None, c1_scale: float = 3.0,
               c2_scale: float = 1.0, c3_scale: float = 1.0, sigma: float = 1.0, view_stride: int | None = None,
               view_batch: int = 16, jitter: bool = True, dilated: bool = True, skip_residual: bool = True,
               mean_std_reset: bool = True, guidance: float | None = None, stage_sizes=None,
               jitter_mode: str = "outward", blur_padding: str = "zeros", dilated_pad: str = "top_left") -> Plan:
    """DemoFusion progressive phases (+1 native per phase), latent bicubic upsampling, all steps rerun per phase,
    skip residual (c1), dilated sampling (c2), Gaussian filter (c3), MultiDiffusion views, mean/std reset.
    Official view jitter (edge views only outward), zero-padded Gaussian and top/left padding of the dilated
    path; `jitter_mode="symmetric"`, `blur_padding="reflect"`, `dilated_pad="bottom_right"` are the
    alternatives (docs/methods/demofusion.md#paper-vs-official-code)."""
    n = _steps(model, steps)
    stages = [_native_stage(model, native, n, guidance=guidance)]
    for j, size in enumerate(_stages(model, native, target, stage_sizes, additive=True)):
        guides = [SkipResidualConfig(c1_scale, 1.0 if skip_residual else 0.0), MeanStdResetConfig(mean_std_reset)]
        den = MultiViewConfig(stride=view_stride, jitter=jitter, view_batch=view_batch, dilated=dilated,
                              c2_scale=c2_scale, c3_scale=c3_scale, sigma=sigma, jitter_mode=jitter_mode,
                              blur_padding=blur_padding, dilated_pad=dilated_pad)
        stages.append(Stage(size=size, schedule=ScheduleSpec(steps=n), init=InitSpec("upsampled", "latent"),
                            guides=guides, guidance=guidance, denoiser=den, name=f"phase{j + 2}"))
    return Plan("demofusion", stages)


def unet_patches(model: FlowModel, strict: bool = True, **switches) -> list:
    """The U-Net methods' patches for a stage, as the model's family implements them (`FlowModel.unet_patches`;
    switches are the fields of `hiresflow.patches.unet_toolkit.UNetToolkit`)."""
    from .patches.unet_toolkit import UNetToolkit

    return model.unet_patches(UNetToolkit(**switches), strict=strict)


def hidiffusion(model: FlowModel, native, target, steps: int | None = None, rau_net: bool = True,
                msw_msa: bool = True, t1: float | None = None, t2: float | None = None,
                aggressive: bool | None = None, turbo: bool | None = None, window_shift: int | None = None,
                odd_windows: str = "resize", shift: float | None = None, guidance: float | None = None) -> Plan:
    """HiDiffusion: one pass at the target size from pure noise with RAU-Net and MSW-MSA (U-Net models only).

    RAU-Net thresholds from the official table (t1/t2 = 0.4/0 below 4× native, 0.7/0.3 at ≥ 4×; SDXL's aggressive
    schedule below 4×; Turbo 0.5), MSW-MSA on the top attention blocks with the seeded random diagonal shift
    (`window_shift=k` fixes it); either switch turns its part off. Steps: the model's default (50 on SD).
    The official README samples with DDIM η = 1; hiresflow's sampler is deterministic DDIM (η = 0)."""
    patches = unet_patches(model, strict=True, rau_net=rau_net, rau_t1=t1, rau_t2=t2, aggressive=aggressive,
                           turbo=turbo, msw_msa=msw_msa, window_shift=window_shift, odd_windows=odd_windows)
    st = Stage(size=target, schedule=ScheduleSpec(steps=_steps(model, steps), shift=shift), patches=patches,
               guidance=guidance, name="hidiffusion")
    return Plan("hidiffusion", [st])


def freescale(model: FlowModel, native, target, steps: int | None = None, restart: float = 0.3,
              cosine_scale: float | None = None, guidance: float | None = None, stage_sizes=None,
              internals: bool = True, dilated_conv: bool = True, dilation: int | None = None,
              dilate_tau: float = 0.7, scale_fusion: bool = True, gaussian: str = "3d", freeu: bool = True,
              b1: float = 1.1, b2: float = 1.2, s1: float = 0.6, s2: float = 0.4, freeu_mode: str = "channels",
              mask: str | None = None, cosine_scale_bg: float = 0.5, clamp_init: str = "none") -> Plan:
    """FreeScale: tailored self-cascade (×2, ×4) with its U-Net internals, official defaults.

    Cascade: pixel-space upsampling with a posterior sample, restart at int(restart·N), skip residual with
    cf^cosine_scale (2; 3 when a `mask` is given, the official detail-control setting). Internals on U-Net models:
    restrained dilated convolution (d = stage width // native width, schedule index < int(dilate_tau·N)), scale
    fusion in every self-attention (3-D Gaussian as the official code; gaussian="2d" spatial only), FreeU
    (b1 1.1, b2 1.2, s1 0.6, s2 0.4, on every stage including the native one, as the official scripts).
    `mask=PATH`: region-aware detail control, exponent m·cosine_scale + (1 − m)·cosine_scale_bg per pixel.
    `internals=False` is the cascade alone (the previous recipe); DiT models (Flux, SD3) always run the cascade
    alone, since the internals are U-Net patches. `clamp_init="none"` (official) encodes the upsampled image with
    its bicubic overshoot."""
    if not 0 <= restart < 1:
        raise ValueError(f"restart must lie in [0, 1), got {restart!r}; e.g. restart=0.3")
    if cosine_scale is None:
        cosine_scale = 3.0 if mask else 2.0
    n = _steps(model, steps)
    on = bool(internals)
    native_patches = unet_patches(model, strict=False, freeu=on and freeu, b1=b1, b2=b2, s1=s1, s2=s2,
                                  freeu_mode=freeu_mode)
    stages = [Stage(size=native, schedule=ScheduleSpec(steps=n), guidance=guidance, patches=native_patches,
                    name="native")]
    for j, size in enumerate(_stages(model, native, target, stage_sizes)):
        patches = unet_patches(model, strict=False, dilated_conv=on and dilated_conv, dilation=dilation,
                               dilate_tau=dilate_tau, scale_fusion=on and scale_fusion, gaussian=gaussian,
                               freeu=on and freeu, b1=b1, b2=b2, s1=s1, s2=s2, freeu_mode=freeu_mode)
        stages.append(Stage(size=size, schedule=ScheduleSpec(steps=n, start=int(restart * n)),
                            init=InitSpec("upsampled", "pixel", "bicubic", None, "sample", clamp_init),
                            guides=[SkipResidualConfig(cosine_scale, mask=mask, cosine_scale_bg=cosine_scale_bg)],
                            guidance=guidance, patches=patches, name=f"freescale{j + 1}"))
    return Plan("freescale", stages)


def diffusehigh(model: FlowModel, native, target, steps: int | None = None, noising: float = 0.3,
                dwt_steps: int = 5, dwt_level: int = 1, space: str = "pixel", sharpen: bool = True,
                guidance: float | None = None, stage_guidance: float | None = None, stage_sizes=None,
                wavelet: str = "db4", clamp_init: str = "decoded", clamp_swapped: bool = False) -> Plan:
    """DiffuseHigh: +1 native per stage; upsample + sharpen the image, re-noise to the last int(noising·N)
    steps (15 of 50), swap the DWT low band (official Daubechies-4; `wavelet="haar"`) of x̂0 for the first
    `dwt_steps` steps. Official clamps: the decoded images only (`clamp_init="decoded"`), not the swapped one.
    `stage_guidance` sets the CFG of the high-resolution stages (the official SDXL script uses 10 against 5 at
    the native stage; None = the model's default)."""
    check_fraction("noising", noising)
    n = _steps(model, steps)
    k = max(1, min(n, round(noising * n)))
    stages = [_native_stage(model, native, n, guidance=guidance)]
    for j, size in enumerate(_stages(model, native, target, stage_sizes, additive=True)):
        stages.append(Stage(size=size, schedule=ScheduleSpec(steps=n, start=n - k),
                            init=InitSpec("upsampled", "pixel", "bicubic", SharpenSpec() if sharpen else None, "mode",
                                          clamp_init),
                            guides=[StructureGuidanceConfig(dwt_steps, dwt_level, space, wavelet, clamp_swapped)],
                            guidance=guidance if stage_guidance is None else stage_guidance,
                            name=f"diffusehigh{j + 1}"))
    return Plan("diffusehigh", stages)


def _check_cfm(model: FlowModel, name: str) -> None:
    """Refuse, before anything is sampled, a CFM upsampler trained on another latent space (one line)."""
    from .cfm.stage import attach_upsampler
    from .quiet import quiet_libraries

    with quiet_libraries():  # diffusers' loading notes are not for the user
        attach_upsampler(model, name)


def anchored(model: FlowModel, native, target, steps: int | None = None, upscaler: str = "auto",
             noising: float = 0.3, dwt_steps: int | None = None, dwt_level: int = 1, wavelet: str = "db4",
             guide_space: str = "pixel", sharpen: bool | None = None, dype: bool | str = "auto", dype_method: str = "yarn",
             guidance: float | None = None, stage_guidance: float | None = None) -> Plan:
    """hiresflow's own recipe (docs/methods/anchored.md), built from the pieces that measured best on the
    reference world: the native pass; one jump to the target through a learned super-resolution model
    (`upscaler`, Real-ESRGAN x4plus; "auto" = it when the `sr` extra is installed, else DiffuseHigh's bicubic +
    sharpening; None = bicubic); re-noise to the last int(`noising`·N) steps; DiffuseHigh's structure guidance
    (the DWT low band of x̂0 replaced by the enlargement's for the first `dwt_steps` steps — None: every re-run
    step —, `dwt_level`, `wavelet`; `guide_space="pixel"` decodes x̂0 and re-encodes the swapped image on every
    guided step as DiffuseHigh does, "latent" swaps the bands of the latents and skips the VAE); DyPE on the RoPE of that pass (`dype`: "auto" = on for families with a
    rotary embedding). One pass at the target, so its time is the native pass + int(noising·N) target steps +
    one SR pass. Defaults (noising 0.3, every step guided) chosen on the tuning set of
    benchmarks/specs/anchored-tuning.yaml, disjoint from the reported benches.

    With every re-run step guided, the last step's swap fixes the output: its low band is the enlargement's and its
    high band is what the VAE decodes from the re-encoded swap. On the embedded tiny-flux, whose VAE re-renders
    that fine band from the low band, the result equals `upscale(upscaler=..., vae_roundtrip=True)` (the
    enlargement through the VAE once, no sampling) to ~0.1 of an 8-bit level; `dwt_steps` < int(noising·N) leaves
    the last steps to the model (docs/methods/anchored.md, "What the target pass adds")."""
    check_fraction("noising", noising)
    if upscaler == "auto":
        from .upscalers import unavailable_reason

        upscaler = "realesrgan-x4plus" if unavailable_reason() is None else None
    elif upscaler is not None:
        from .upscalers import require

        require(upscaler)  # a bad name or a missing package fails before anything is sampled
    if sharpen is None:
        sharpen = upscaler is None
    if dype == "auto":
        try:
            model.rope_axes()
            dype = True
        except ValueError:
            dype = False
    rope = dype_rope(dype, dype_method)
    if rope is not None:
        model.rope_axes()  # one line for families without RoPE
    n = _steps(model, steps)
    k = max(1, min(n, round(noising * n)))
    if dwt_steps is None:
        dwt_steps = k
    elif isinstance(dwt_steps, bool) or not isinstance(dwt_steps, int) or dwt_steps < 0:
        raise ValueError(f"dwt_steps must be an integer >= 0 (or None: every re-run step), got {dwt_steps!r}")
    hi = Stage(size=target, schedule=ScheduleSpec(steps=n, start=n - k),
               init=InitSpec("upsampled", "pixel", "bicubic", SharpenSpec() if sharpen else None, "mode", "decoded",
                             upscaler=upscaler),
               guides=[StructureGuidanceConfig(dwt_steps, dwt_level, guide_space, wavelet, False)] if dwt_steps else [],
               guidance=guidance if stage_guidance is None else stage_guidance,
               patches=[rope] if rope is not None else [], name="anchored")
    return Plan("anchored", [_native_stage(model, native, n, guidance=guidance), hi])


def cfm(model: FlowModel, native, target, steps: int | None = None, nfe: int = 10, solver: str = "euler",
        upsampler: str = "cfm-x2", guidance: float | None = None, factor: int = 2) -> Plan:
    """Coupling Flow Matching (docs/methods/cfm.md): native generation, then one trained ×`factor` CFM latent
    upsampler stage per ×`factor` (×4 = two ×2 stages), then decode. A CFM stage runs no σ step
    (`ScheduleSpec(start=steps)`): its result is the upsampler's output (`InitSpec.upsampler`); `nfe`
    evaluations of `solver` (euler, midpoint, rk4) from the noise-augmented PSU source. Works with models that
    share the upsampler's VAE (the embedded tiny-flux and tiny-sd)."""
    k_h, k_w = target[0] / native[0], target[1] / native[1]
    k = round(math.log(max(k_h, k_w), factor)) if max(k_h, k_w) >= 1 else 0
    if k < 1 or k_h != k_w or abs(factor ** k - k_h) > 1e-9:
        raise ValueError(f"the cfm recipe upsamples ×{factor} per stage; {target[1]}x{target[0]} is not a power "
                         f"of {factor} times the native {native[1]}x{native[0]} (use --scale {factor} or "
                         f"{factor * factor})")
    spec = CfmUpsampleSpec(upsampler, solver, nfe)
    _check_cfm(model, upsampler)
    stages = [_native_stage(model, native, steps, guidance=guidance)]
    for j in range(k):
        size = (native[0] * factor ** (j + 1), native[1] * factor ** (j + 1))
        stages.append(Stage(size=size, schedule=ScheduleSpec(steps=1, start=1),
                            init=InitSpec("upsampled", "pixel", "bicubic", None, "mode", "all", upsampler=spec),
                            name=f"cfm{j + 1}"))
    return Plan("cfm", stages)


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Recipe:
    name: str
    fn: Callable[..., Plan]
    summary: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("direct", direct, "sample directly at the target size (baseline)"),
        Recipe("upscale", upscale, "native image resized with bicubic, Lanczos or Real-ESRGAN (baseline)"),
        Recipe("sdedit", sdedit, "hires fix: upsample, re-noise to tau, denoise at the target size"),
        Recipe("hiflow", hiflow, "HiFlow cascade: flow-aligned init, direction and acceleration guidance"),
        Recipe("imax", imax, "I-Max projected flow toward the upsampled native result"),
        Recipe("dype", dype, "DyPE: one pass at the target, RoPE extrapolation scheduled by the step's sigma (DiTs)"),
        Recipe("dype+hiflow", dype_hiflow, "HiFlow cascade with DyPE on every high-resolution stage's RoPE"),
        Recipe("ultraimage", ultraimage, "UltraImage: dominant-frequency RoPE and entropy-guided attention on "
                                         "I-Max's guided pass (DiTs with RoPE)"),
        Recipe("demofusion", demofusion, "DemoFusion phases: skip residual, dilated sampling, local views"),
        Recipe("freescale", freescale, "FreeScale self-cascade with dilated conv, scale fusion and FreeU (U-Nets)"),
        Recipe("hidiffusion", hidiffusion, "HiDiffusion: RAU-Net and MSW-MSA in one pass at the target (U-Nets)"),
        Recipe("diffusehigh", diffusehigh, "DiffuseHigh: re-noise and DWT low-band structure guidance"),
        Recipe("anchored", anchored, "hiresflow's own: SR enlargement, re-noise, DWT low-band anchoring, DyPE "
                                     "(one pass at the target)"),
        Recipe("cfm", cfm, "trained Coupling Flow Matching latent upsampler, ×2 per stage (few ODE steps)"),
    ]
}


# The fewest steps that still run every stage, guide and patch of each recipe: smoke runs on tiny models (the
# tests, `benchmarks/support_matrix.py`), not a quality setting.
SMOKE_STEPS: dict[str, dict] = {
    "direct": dict(steps=3),
    "upscale": dict(steps=3),
    "sdedit": dict(steps=4),
    "hiflow": dict(base_steps=4, stage_steps=(2, 2)),
    "imax": dict(steps=3, hires_steps=3),
    "dype": dict(steps=3),
    "dype+hiflow": dict(base_steps=4, stage_steps=(2, 2)),
    "ultraimage": dict(steps=3, hires_steps=3),
    "demofusion": dict(steps=2, view_batch=64),
    "freescale": dict(steps=4),
    "hidiffusion": dict(steps=3),
    "diffusehigh": dict(steps=4, dwt_steps=2),
    "anchored": dict(steps=4, dwt_steps=1),
    "cfm": dict(steps=2, nfe=2),
}


def recipe_params(name: str) -> dict[str, object]:
    fn = _get(name).fn
    sig = inspect.signature(fn)
    return {k: p.default for k, p in list(sig.parameters.items())[3:]}


def _plain(obj):
    """Parameters as JSON sees them (tuples → lists), so a plan's params survive its round trip unchanged."""
    if isinstance(obj, (list, tuple)):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)} (see `hiresflow recipes`)")
    return RECIPES[name]


def build_plan(name: str, model: FlowModel, *, scale: float | None = None, size: Sequence[int] | None = None,
               native: Sequence[int] | None = None, **params) -> Plan:
    """Build the named recipe's Plan for `model` at `scale` (×native) or `size` = (H, W); `size` wins over
    `scale` (the native stage stays at the model's native pixel count); `native` = (H, W) pins the native stage
    of a `size` (`resolve_sizes`)."""
    if not isinstance(name, str):
        raise TypeError(f"recipe name must be a string such as 'hiflow', got {type(name).__name__}")
    if not isinstance(model, FlowModel):
        raise TypeError(f"model must be a hiresflow FlowModel (from hiresflow.models.loading.load_model or "
                        f"wrap_pipeline), got {type(model).__name__}")
    recipe = _get(name)
    valid = recipe_params(name)
    if params.get("stage_sizes") and size is None and scale is None:
        size = tuple(params["stage_sizes"][-1])
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"recipe {name!r} has no parameter {', '.join(unknown)}; "
                         f"list them with `hiresflow recipes --params {name}`")
    if size is not None:
        scale = None  # size wins
    native, target = resolve_sizes(model.geometry, scale, tuple(size) if size is not None else None,
                                   tuple(native) if native is not None else None)
    plan = recipe.fn(model, native, target, **params)
    plan.params = _plain({"scale": scale, "size": list(target), **{k: params.get(k, v) for k, v in valid.items()}})
    for st in plan.stages:
        model.geometry.validate(*st.size)
        for patch in st.patches:  # a patch the family cannot take is refused now, not after the native pass
            model.check_patch(patch)
    return plan
