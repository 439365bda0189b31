"""σ schedules for rectified-flow sampling, computed here rather than read from scheduler objects.

Convention (diffusers Flux): σ runs from 1 (noise) to 0 (data), x_σ = (1−σ)·x0 + σ·ε.
A schedule is a 1-D float64 tensor of N+1 values, strictly decreasing, ending in 0: step i goes σ_i → σ_{i+1}.

Why computed here: the official I-Max pipeline sets its time shift by writing a scheduler *config* value, which
diffusers ≥ 0.32 no longer reads after construction; HiFlow sets `use_dynamic_shifting` on the scheduler *object*,
which its pinned diffusers never reads (the scheduler reads its config) — so HiFlow's released grids always used
the base μ, and its τ = 0.783 / 0.612 depend on that (docs/methods/README.md#design-habits). Grids built by these functions are what they say they are
on every diffusers version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "FluxShiftConfig",
    "linear_times",
    "static_shift",
    "exponential_shift",
    "flux_mu",
    "flow_sigmas",
    "resolution_shift",
    "validate_steps",
]


MAX_STEPS = 10_000  # far beyond any published setting (1000-step DDPM grids included)


def validate_steps(steps: int, what: str = "steps") -> int:
    """Return `steps` if it is a positive int of at most MAX_STEPS, else raise a one-line ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{what} must be a positive integer, got {steps!r}; pass e.g. {what}=30")
    if steps > MAX_STEPS:
        raise ValueError(f"{what}={steps} is more than {MAX_STEPS} steps; sampling would run for days — "
                         f"pass e.g. {what}=30")
    return steps


def linear_times(steps: int) -> torch.Tensor:
    """The unshifted diffusers Flux grid t_i = linspace(1, 1/N, N), i = 0..N−1 (no trailing 0)."""
    validate_steps(steps)
    return torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)


def static_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Static time shift σ' = s·σ / (1 + (s − 1)·σ) (SD3 paper eq. 23; I-Max's t_extra in σ form).

    s = 1 is the identity; s > 1 spends more steps at high noise, as needed for more pixels.
    """
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}; use 1.0 for no shift")
    return shift * t / (1.0 + (shift - 1.0) * t)


def exponential_shift(t: torch.Tensor, mu: float) -> torch.Tensor:
    """Flux dynamic shift σ' = e^μ / (e^μ + 1/σ − 1) (diffusers `_time_shift_exponential`, exponent 1).

    Equal to `static_shift(t, e^μ)`; kept separate because the Flux pipeline is parameterised by μ.
    """
    if mu > 50:  # e^μ overflows float64 near μ = 710: the stable form 1 / (1 + e^−μ·(1/t − 1))
        return 1.0 / (1.0 + math.exp(-mu) * (1.0 / t - 1.0))
    return static_shift(t, math.exp(mu))


@dataclass(frozen=True)
class FluxShiftConfig:
    """Constants of the Flux dynamic shift μ(L) = m·L + b, linear in the image token count L.

    Defaults are FLUX.1-dev's scheduler config: μ = 0.5 at 256 tokens, 1.15 at 4096 tokens (1024² px).
    """

    base_seq_len: int = 256
    max_seq_len: int = 4096
    base_shift: float = 0.5
    max_shift: float = 1.15


def flux_mu(image_seq_len: int, config: FluxShiftConfig = FluxShiftConfig()) -> float:
    """μ for `image_seq_len` packed image tokens (diffusers `calculate_shift`, extrapolated linearly)."""
    slope = (config.max_shift - config.base_shift) / (config.max_seq_len - config.base_seq_len)
    return config.base_shift + slope * (image_seq_len - config.base_seq_len)


def flow_sigmas(steps: int, *, shift: float | None = None, mu: float | None = None) -> torch.Tensor:
    """N+1 σ values: linear_times(N) shifted (static `shift` or exponential `mu`, not both) then a final 0.

    >>> [round(float(s), 3) for s in flow_sigmas(30, mu=1.15)[[14, 20]]]   # HiFlow's 2K / 4K τ
    [0.783, 0.612]
    """
    if shift is not None and mu is not None:
        raise ValueError("give either shift or mu, not both")
    t = linear_times(steps)
    if mu is not None:
        t = exponential_shift(t, mu)
    elif shift is not None:
        t = static_shift(t, shift)
    return torch.cat([t, t.new_zeros(1)])


def resolution_shift(base_shift: float, scale: float, factor: float = 1.0) -> float:
    """Resolution-aware static shift s = factor · base_shift · scale for a linear upscale `scale`.

    With base_shift = 1 and factor = 1.5 this is I-Max's Flux rule s* = 1.5·s (paper §3.2; its official code
    uses the fixed value 6 instead, = 1.5·4 at 4K). The SD3 paper's √(pixel ratio) rule is factor = 1.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}; pass the linear upscale factor (e.g. 4 for 4x)")
    return factor * base_shift * scale


def cosine_factor(time_fraction: float) -> float:
    """cf(t) = ½·(1 + cos(π·(T − t)/T)) with t/T = `time_fraction`: 1 at pure noise, 0 at data.

    DemoFusion and FreeScale evaluate it on the scheduler's timestep value (docs/methods/demofusion.md#formulas); flow
    models pass σ, DDPM models their fractional timestep / 1000 (`FlowModel.time_fraction`).
    """
    return 0.5 * (1.0 + math.cos(math.pi * (1.0 - time_fraction)))
