"""A Plan is plain data: the stages of a cascade, each with its size, σ grid, initialisation and guides.

Recipes (`hiresflow.recipes`) build Plans with the published defaults; `hiresflow.runner.run_plan` executes them.
`Plan.to_dict()` is written into every image's metadata and every benchmark report, and
`Plan.from_dict(plan.to_dict()) == plan`: a saved image's plan re-runs exactly. The hooks a stage carries (guide,
patch and denoiser configs) are the stage protocol's, `hiresflow.stage`.

`Plan.from_dict` treats its input as untrusted (a plan read from someone's PNG): the JSON's shape is bounded
(`check_json_shape`: nesting depth, list and string lengths, value count), every field is checked against its
dataclass type (names, types, tuple lengths, Literal choices, component classes where a guide, patch or denoiser
goes), a plan needs 1…`MAX_STAGES` stages of positive size, and every failure is a one-line ValueError naming the
field (`plan.stages[1].schedule.start: …`). Fields that name a file or folder carry `FILE_FIELD` metadata;
`Plan.named_files()` lists them (a re-run from a record loads only embedded ones unless trusted).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Literal

from .checks import check_choice, check_fraction, check_number
from .flow.schedule import validate_steps
from .stage import DenoiserConfig, GuideConfig, PatchConfig

__all__ = ["ScheduleSpec", "SharpenSpec", "CfmUpsampleSpec", "InitSpec", "Stage", "Plan", "UpscaleSpec",
           "check_json_shape", "FILE_FIELD", "MAX_STAGES"]

FILE_FIELD = {"names_a_file": True}  # dataclass field metadata: the value is a name or a path that gets loaded
MAX_DEPTH = 16  # a plan nests about 7 levels deep (plan, stages, stage, init, sharpen, sigma_range, value)
MAX_ITEMS = 1024  # per list or object
MAX_STRING = 4096
MAX_VALUES = 100_000
MAX_STAGES = 64


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

    model: str = field(default="cfm-x2", metadata=FILE_FIELD)
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
    upscaler: a learned super-resolution model of `hiresflow.upscalers` (e.g. "realesrgan-x4plus") replaces the
        pixel resize: one pass of the model, then `interpolation` to the exact stage size (the `anchored` recipe).
    """

    start_from: Literal["noise", "upsampled", "reference_x0"] = "noise"
    space: Literal["pixel", "latent"] = "pixel"
    interpolation: Literal["bicubic", "bilinear", "nearest", "lanczos"] = "bicubic"
    sharpen: SharpenSpec | None = None
    encode: Literal["mode", "sample"] = "mode"
    clamp: Literal["none", "decoded", "all"] = "all"
    upsampler: CfmUpsampleSpec | None = None
    upscaler: str | None = None

    def __post_init__(self) -> None:
        if self.upsampler is not None and self.start_from != "upsampled":
            raise ValueError("a CFM upsampler needs start_from='upsampled'")
        if self.upscaler is not None:
            from .upscalers import check_upscaler

            check_upscaler(self.upscaler)
            if self.space != "pixel" or self.upsampler is not None:
                raise ValueError("a learned upscaler enlarges pixels: use space='pixel' and no CFM upsampler")
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
    """Resize the last stage's image to `size` in pixel space (the `upscale` baseline).

    upscaler: None = `interpolation` alone; else a learned super-resolution model of `hiresflow.upscalers`
        (e.g. "realesrgan-x4plus"), one pass, its output then fitted to `size` with `interpolation`.
    vae_roundtrip: pass the enlarged image through the model's VAE once (encode, posterior mode; decode) — no
        sampling: the baseline that shows what re-rendering through the VAE alone does to an enlargement.
    """

    size: tuple[int, int]
    interpolation: Literal["bicubic", "lanczos", "bilinear", "nearest"] = "bicubic"
    upscaler: str | None = None
    vae_roundtrip: bool = False

    def __post_init__(self) -> None:
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if self.upscaler is not None:
            from .upscalers import check_upscaler

            check_upscaler(self.upscaler)


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
    def from_dict(cls, data: dict, where: str = "plan") -> "Plan":
        """Rebuild a plan from `to_dict()` output (e.g. an image's JSON sidecar or PNG metadata), checked as
        untrusted data (module doc): one-line ValueErrors naming the field, `where` its root."""
        if not isinstance(data, dict) or data.get("type") != "Plan":
            raise ValueError("not a hiresflow plan: expected a dict with type 'Plan' (the 'plan' field of an "
                             "image's metadata)")
        check_json_shape(data, where)
        plan = _build(data, Plan, where, config_types())
        if not plan.stages:
            raise ValueError(f"{where}.stages: a plan needs at least one stage")
        if len(plan.stages) > MAX_STAGES:
            raise ValueError(f"{where}.stages: {len(plan.stages)} stages; a plan has at most {MAX_STAGES}")
        sizes = [(f"{where}.stages[{i}].size", st.size) for i, st in enumerate(plan.stages)]
        if plan.upscale is not None:
            sizes.append((f"{where}.upscale.size", plan.upscale.size))
        for name, (h, w) in sizes:
            if h <= 0 or w <= 0:
                raise ValueError(f"{name}: sides must be positive, got {w}x{h}")
        return plan

    def named_files(self) -> list[tuple[str, str]]:
        """(field path, value) of every field that names a file or folder to load (`FILE_FIELD` metadata)."""
        found: list[tuple[str, str]] = []

        def walk(obj, path):
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                for f in dataclasses.fields(obj):
                    value = getattr(obj, f.name)
                    if f.metadata.get("names_a_file") and isinstance(value, str):
                        found.append((f"{path}.{f.name}", value))
                    else:
                        walk(value, f"{path}.{f.name}")
            elif isinstance(obj, (list, tuple)):
                for i, o in enumerate(obj):
                    walk(o, f"{path}[{i}]")

        walk(self, "plan")
        return found


def check_json_shape(data, where: str = "plan", max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS,
                     max_string: int | None = MAX_STRING, max_values: int = MAX_VALUES) -> None:
    """Bound untrusted JSON data before anything interprets it (iteratively: no recursion to exhaust): nesting
    depth, items per list or object, string length, total values; keys must be strings. One-line ValueError
    naming the place."""
    stack = [(data, where, 1)]
    count = 0
    while stack:
        obj, path, depth = stack.pop()
        if len(path) > 80:
            path = f"{path[:50]}…{path[-20:]}"
        count += 1
        if count > max_values:
            raise ValueError(f"{where} holds more than {max_values} values; not a hiresflow record")
        if depth > max_depth:
            raise ValueError(f"{path}: nested deeper than {max_depth} levels; not a hiresflow record")
        if isinstance(obj, (dict, list)) and len(obj) > max_items:
            raise ValueError(f"{path}: {len(obj)} items, more than {max_items}; not a hiresflow record")
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise ValueError(f"{path}: keys must be strings, got {k!r:.40}")
                stack.append((v, f"{path}.{k[:40]}", depth + 1))
        elif isinstance(obj, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj))
        elif isinstance(obj, str):
            if max_string is not None and len(obj) > max_string:
                raise ValueError(f"{path}: a string of {len(obj)} characters, more than {max_string}")
        elif obj is not None and not isinstance(obj, (bool, int, float)):
            raise ValueError(f"{path}: {type(obj).__name__} is not JSON data")


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


def _bad(path: str, what: str, value) -> ValueError:
    shown = repr(value) if not isinstance(value, (dict, list)) else f"{'an object' if isinstance(value, dict) else 'a list'}"
    return ValueError(f"{path}: must be {what}, got {shown[:60]}")


_NONE = type(None)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# field type -> (accepts a JSON value, the type in words); an int stays an int where a float goes (round trip)
_SCALARS = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (_is_number, "a finite number"),
    str: (lambda v: isinstance(v, str), "a string"),
    dict: (lambda v: isinstance(v, dict), "an object"),
}


def _convert(value, hint, path: str, types: dict[str, type]):
    """`value` (JSON data) checked against the dataclass field type `hint`: lists back to tuples, objects with a
    "type" to their component class; anything else the type does not allow is a ValueError naming `path`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None:
            if _NONE in args:
                return None
            raise _bad(path, " or ".join(_what(a) for a in args), value)
        arms = [a for a in args if a is not _NONE]
        first = None
        for arm in arms:
            try:
                return _convert(value, arm, path, types)
            except ValueError as err:
                first = first or err
        if len(arms) == 1:
            raise first
        raise _bad(path, " or ".join(_what(a) for a in args), value)
    if origin is Literal:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in args:
            return value
        raise _bad(path, "one of " + ", ".join(repr(a) for a in args), value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(path, _what(hint), value)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else typing.Any
            return tuple(_convert(v, item, f"{path}[{i}]", types) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{path}: must be {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]", types) for i, (v, a) in enumerate(zip(value, args)))
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise _bad(path, _what(hint), value)
        item = args[0] if args else typing.Any
        return [_convert(v, item, f"{path}[{i}]", types) for i, v in enumerate(value)]
    scalar = _SCALARS.get(dict if origin is dict else hint)
    if scalar is not None:
        accepts, what = scalar
        if not accepts(value):
            raise _bad(path, what, value)
        return value
    if isinstance(hint, type) and hint is not object:
        return _build(value, hint, path, types)
    if isinstance(value, dict) and isinstance(value.get("type"), str):  # untyped field holding a component
        return _build(value, object, path, types)
    return value


def _what(hint) -> str:
    """A type in words, for errors."""
    origin = typing.get_origin(hint)
    if hint is _NONE:
        return "null"
    if origin is tuple or hint is tuple:
        args = typing.get_args(hint)
        return f"a list of {len(args)} values" if args and args[-1] is not Ellipsis else "a list"
    if origin is list or hint is list:
        return "a list"
    if hint in _SCALARS:
        return _SCALARS[hint][1]
    return f"a {getattr(hint, '__name__', str(hint))}"


def _build(obj, base: type, path: str, types: dict[str, type]):
    """A plan component from its {"type": name, field: value, …} object, where a `base` must stand."""
    if not isinstance(obj, dict):
        raise _bad(path, f"an object ({base.__name__})" if base is not object else "an object", obj)
    name = obj.get("type")
    if not isinstance(name, str):
        raise _bad(f"{path}.type", "the name of a plan component", name)
    cls = types.get(name)
    if cls is None:
        raise ValueError(f"{path}: unknown plan component {name[:40]!r}; this hiresflow version cannot re-run that "
                         f"plan")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in obj if key != "type" and key not in fields]
    if unknown:
        raise ValueError(f"{path}: {name} has no field {unknown[0][:40]!r}; this hiresflow version cannot re-run "
                         f"that plan")
    if not issubclass(cls, base):
        raise ValueError(f"{path}: a {name} cannot stand where a {base.__name__} goes")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _convert(val, hints.get(key, typing.Any), f"{path}.{key}", types)
              for key, val in obj.items() if key != "type"}
    missing = [f for f in fields if f not in kwargs and fields[f].default is dataclasses.MISSING
               and fields[f].default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{path}: {name} needs {', '.join(repr(m) for m in missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, ArithmeticError) as err:
        raise ValueError(f"{path}: {err}") from None
