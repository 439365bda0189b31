"""A Plan is plain data: the stages of a cascade, each with its size, σ grid, initialisation and guides.

Recipes (`hiresflow.recipes`) build Plans with the published defaults; `hiresflow.runner.run_plan` executes them.
`Plan.to_dict()` is written into every image's metadata and every benchmark report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ScheduleSpec", "SharpenSpec", "InitSpec", "Stage", "Plan", "UpscaleSpec", "check_fraction", "check_weight"]


def check_fraction(name: str, value: float) -> float:
    """τ-like values must lie in (0, 1]."""
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}; e.g. {name}=0.6")
    return float(value)


def check_weight(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}; use 0 to switch it off")
    return float(value)


@dataclass
class ScheduleSpec:
    """The σ grid of a stage and the part of it that runs.

    steps: grid size N (the grid has N+1 values ending in 0).
    shift / mu: static or exponential time shift; both None = the model's own rule.
    shift_size: "stage" computes the model's rule (Flux dynamic μ) from the stage size, "native" from the
        native size — the official HiFlow behaviour (its resolution shift is a no-op, hiflow.md §3.2).
    start: first grid index run (steps before it are skipped, as in SDEdit/HiFlow/FreeScale restarts).
    tau: alternatively, start at the grid index whose σ is nearest to τ ∈ (0, 1].
    """

    steps: int
    shift: float | None = None
    mu: float | None = None
    shift_size: Literal["stage", "native"] = "stage"
    start: int = 0
    tau: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.tau is not None:
            check_fraction("tau", self.tau)
        if not 0 <= self.start < self.steps:
            raise ValueError(f"start index {self.start} must lie in [0, {self.steps}) for a {self.steps}-step grid")


@dataclass
class SharpenSpec:
    """Unsharp mask x' = (1+a)x − a·blur_σ(x), σ ~ U(sigma_range) from the run's generator."""

    amount: float = 1.0
    kernel_size: int = 3
    sigma_range: tuple[float, float] = (0.1, 2.0)


@dataclass
class InitSpec:
    """How a stage gets its first sample.

    start_from: "noise" (pure noise at σ_start), "upsampled" (the previous stage's result upsampled, noised to
        σ_start with fresh noise — SDEdit/HiFlow-official), or "reference_x0" (the previous stage's raw x̂0 at
        the same schedule index, upsampled and noised — HiFlow paper's A_i).
    space: "pixel" (decode → resize → [sharpen] → encode) or "latent" (resize the latent).
    encode: "mode" or "sample" of the VAE posterior (I-Max and FreeScale sample, HiFlow takes the mode).
    """

    start_from: Literal["noise", "upsampled", "reference_x0"] = "noise"
    space: Literal["pixel", "latent"] = "pixel"
    interpolation: Literal["bicubic", "bilinear", "nearest", "lanczos"] = "bicubic"
    sharpen: SharpenSpec | None = None
    encode: Literal["mode", "sample"] = "mode"


@dataclass
class Stage:
    size: tuple[int, int]  # (height, width) in pixels
    schedule: ScheduleSpec
    init: InitSpec = field(default_factory=InitSpec)
    guides: list[Any] = field(default_factory=list)  # guide configs (hiresflow.guides.*Config)
    guidance: float | None = None  # Flux guidance / CFG scale; None = model default
    denoiser: Any = None  # None = one global model call; else e.g. DemoFusion's MultiViewConfig
    patches: list[Any] = field(default_factory=list)  # model patch configs (hiresflow.patches.*Config)
    name: str = ""


@dataclass
class UpscaleSpec:
    """Resize the last stage's image to `size` in pixel space (the `upscale` baseline)."""

    size: tuple[int, int]
    interpolation: Literal["bicubic", "lanczos", "bilinear", "nearest"] = "bicubic"


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
