"""A Plan is plain data: the stages of a cascade, each with its size, σ grid, initialisation and guides.

Recipes (`hiresflow.recipes`) build Plans with the published defaults; `hiresflow.runner.run_plan` executes them.
`Plan.to_dict()` is written into every image's metadata and every benchmark report, and
`Plan.from_dict(plan.to_dict()) == plan`: a saved image's plan re-runs exactly. The hooks a stage carries (guide,
patch and denoiser configs) are the stage protocol's, `hiresflow.stage`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .checks import check_choice, check_fraction, check_number
from .flow.schedule import validate_steps
from .stage import DenoiserConfig, GuideConfig, PatchConfig

__all__ = ["ScheduleSpec", "SharpenSpec", "CfmUpsampleSpec", "InitSpec", "Stage", "Plan", "UpscaleSpec"]


INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
CLAMPS = ("none", "decoded", "all")
VAE_TILING = ("auto", "diffusers", "always", "never")


@dataclass
class ScheduleSpec:
    """The σ grid of a stage and the part of it that runs.

    steps: grid size N (the grid has N+1 values ending in 0).
    shift / mu: static or exponential time shift; both None = the model's own rule.
    shift_size: "stage" computes the model's rule (Flux dynamic μ) from the stage size, "native" from the
        native size — the official HiFlow behaviour (its resolution shift is a no-op, docs/methods/hiflow.md#cascade-and-schedule).
    start: first grid index run (steps before it are skipped, as in SDEdit/HiFlow/FreeScale restarts);
        start = steps runs no σ step at all: the stage's result is its initialisation (a pure upsampling stage,
        e.g. the CFM stage of the `cfm` recipe).
    tau: alternatively, start at the grid index whose σ is nearest to τ ∈ (0, 1].
    """

    steps: int
    shift: float | None = None
    mu: float | None = None
    shift_size: Literal["stage", "native"] = "stage"
    start: int = 0
    tau: float | None = None

    def __post_init__(self) -> None:
        validate_steps(self.steps)
        if self.tau is not None:
            check_fraction("tau", self.tau)
        if self.shift is not None:
            check_number("shift", self.shift, minimum=0, inclusive=False)
        if self.mu is not None:
            check_number("mu", self.mu)
        check_choice("shift_size", self.shift_size, ("stage", "native"))
        if isinstance(self.start, bool) or not isinstance(self.start, int):
            raise ValueError(f"start must be an integer grid index, got {self.start!r}")
        if not 0 <= self.start <= self.steps:
            raise ValueError(f"start index {self.start} must lie in [0, {self.steps}] for a {self.steps}-step grid")


@dataclass
class SharpenSpec:
    """Unsharp mask x' = (1+a)x − a·blur_σ(x), σ ~ U(sigma_range) from the run's generator."""

    amount: float = 1.0
    kernel_size: int = 3
    sigma_range: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        check_number("sharpen amount", self.amount, minimum=0)
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1 \
                or self.kernel_size % 2 == 0:
            raise ValueError(f"sharpen kernel_size must be a positive odd integer, got {self.kernel_size!r}")
        lo, hi = (tuple(self.sigma_range) + (None, None))[:2]
        if not (check_number("sharpen sigma", lo, minimum=0, inclusive=False) <=
                check_number("sharpen sigma", hi, minimum=0, inclusive=False)):
            raise ValueError(f"sharpen sigma_range must be (low, high) with 0 < low <= high, got {self.sigma_range!r}")


SOLVERS = ("euler", "midpoint", "rk4")


@dataclass
class CfmUpsampleSpec:
    """Bring the previous stage's latent to this stage with a trained CFM latent upsampler (hiresflow.cfm)
    instead of resizing: the clean PSU condition, the noise-augmented source and `nfe` evaluations of `solver`
    from t = 0 to t = 1 (docs/methods/cfm.md). `model` is an embedded upsampler name (e.g. "cfm-x2") or a folder.
    """

    model: str = "cfm-x2"
    solver: Literal["euler", "midpoint", "rk4"] = "euler"
    nfe: int = 10

    def __post_init__(self) -> None:
        from .cfm.solver import solver_steps

        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"CFM upsampler must be an embedded name such as 'cfm-x2' or a folder, got {self.model!r}")
        check_choice("CFM solver", self.solver, SOLVERS)
        solver_steps(self.solver, self.nfe)


@dataclass
class InitSpec:
    """How a stage gets its first sample.

    start_from: "noise" (pure noise at σ_start), "upsampled" (the previous stage's result upsampled, noised to
        σ_start with fresh noise — SDEdit/HiFlow-official), or "reference_x0" (the previous stage's raw x̂0 at
        the same schedule index, upsampled and noised — HiFlow paper's A_i).
    space: "pixel" (decode → resize → [sharpen] → encode) or "latent" (resize the latent).
    encode: "mode" or "sample" of the VAE posterior (I-Max and FreeScale sample, HiFlow takes the mode).
    clamp: which pixel images are clamped to [0, 1] before re-encoding — "none" (the official HiFlow, I-Max and
        FreeScale pipelines encode the decoder's and the bicubic/sharpening overshoot), "decoded" (DiffuseHigh:
        only the decoded image, through diffusers' postprocess), "all" (decoded, resized and sharpened).
    upsampler: a `CfmUpsampleSpec` replaces the resize (and sharpening) of "upsampled" by the CFM latent
        upsampler; the result is then noised to σ_start as usual (HiFlow with init=cfm, or the `cfm` recipe).
    """

    start_from: Literal["noise", "upsampled", "reference_x0"] = "noise"
    space: Literal["pixel", "latent"] = "pixel"
    interpolation: Literal["bicubic", "bilinear", "nearest", "lanczos"] = "bicubic"
    sharpen: SharpenSpec | None = None
    encode: Literal["mode", "sample"] = "mode"
    clamp: Literal["none", "decoded", "all"] = "all"
    upsampler: CfmUpsampleSpec | None = None

    def __post_init__(self) -> None:
        if self.upsampler is not None and self.start_from != "upsampled":
            raise ValueError("a CFM upsampler needs start_from='upsampled'")
        check_choice("init start_from", self.start_from, ("noise", "upsampled", "reference_x0"))
        check_choice("space", self.space, ("pixel", "latent"))
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("encode", self.encode, ("mode", "sample"))
        check_choice("clamp", self.clamp, CLAMPS)


@dataclass
class Stage:
    size: tuple[int, int]  # (height, width) in pixels
    schedule: ScheduleSpec
    init: InitSpec = field(default_factory=InitSpec)
    guides: list[GuideConfig] = field(default_factory=list)  # run in this order (hiresflow.guides)
    guidance: float | None = None  # Flux guidance / CFG scale; None = model default
    denoiser: DenoiserConfig | None = None  # None = one global model call; else e.g. DemoFusion's MultiViewConfig
    patches: list[PatchConfig] = field(default_factory=list)  # nested by PatchOrder (hiresflow.patches)
    name: str = ""
    vae_tiling: Literal["auto", "diffusers", "always", "never"] = "auto"  # VaeCodec.tiling for this stage

    def __post_init__(self) -> None:
        check_choice("vae_tiling", self.vae_tiling, VAE_TILING)


@dataclass
class UpscaleSpec:
    """Resize the last stage's image to `size` in pixel space (the `upscale` baseline)."""

    size: tuple[int, int]
    interpolation: Literal["bicubic", "lanczos", "bilinear", "nearest"] = "bicubic"

    def __post_init__(self) -> None:
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)


@dataclass
class Plan:
    recipe: str
    stages: list[Stage]
    upscale: UpscaleSpec | None = None
    params: dict = field(default_factory=dict)

    @property
    def target_size(self) -> tuple[int, int]:
        return self.upscale.size if self.upscale else self.stages[-1].size

    def to_dict(self) -> dict:
        def conv(obj):
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                d = {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
                return {"type": type(obj).__name__, **d}
            if isinstance(obj, (list, tuple)):
                return [conv(o) for o in obj]
            if isinstance(obj, dict):
                return {k: conv(v) for k, v in obj.items()}
            return obj

        return conv(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        """Rebuild a plan from `to_dict()` output (e.g. an image's JSON sidecar or PNG metadata)."""
        if not isinstance(data, dict) or data.get("type") != "Plan":
            raise ValueError("not a hiresflow plan: expected a dict with type 'Plan' (the 'plan' field of an "
                             "image's metadata)")
        return _from_data(data, config_types())


def config_types() -> dict[str, type]:
    """Every dataclass a plan may hold, by class name: the plan specs and all guide, patch and denoiser configs."""
    from . import guides, patches  # noqa: F401 - imports every config class

    out: dict[str, type] = {c.__name__: c for c in (Plan, Stage, ScheduleSpec, SharpenSpec, InitSpec, UpscaleSpec,
                                                          CfmUpsampleSpec)}
    todo = [GuideConfig, PatchConfig, DenoiserConfig]
    while todo:
        base = todo.pop()
        for c in base.__subclasses__():
            todo.append(c)
            if dataclasses.is_dataclass(c):
                if out.get(c.__name__, c) is not c:
                    raise TypeError(f"two plan config classes are named {c.__name__}; rename one")
                out[c.__name__] = c
    return out


def _typed(value, hint):
    """JSON lists back to tuples where the field is a tuple (dataclass equality is type-sensitive)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _typed(value, arg)
        return value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0]) for v in value)
        return tuple(_typed(v, a) for v, a in zip(value, args)) if args else tuple(value)
    return value


def _from_data(obj, types: dict[str, type]):
    if isinstance(obj, list):
        return [_from_data(o, types) for o in obj]
    if not isinstance(obj, dict):
        return obj
    if "type" not in obj:
        return {k: _from_data(v, types) for k, v in obj.items()}
    name = obj["type"]
    cls = types.get(name)
    if cls is None:
        raise ValueError(f"unknown plan component {name!r}; this hiresflow version cannot re-run that plan")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, val in obj.items():
        if key == "type":
            continue
        if key not in names:
            raise ValueError(f"{name} has no field {key!r}; this hiresflow version cannot re-run that plan")
        kwargs[key] = _typed(_from_data(val, types), hints.get(key))
    return cls(**kwargs)
