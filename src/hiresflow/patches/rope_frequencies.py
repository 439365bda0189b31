"""RoPE extrapolation as a transform of the frequencies, family-neutral: PI, NTK, YaRN (NTK-by-parts) and DyPE.

A model family describes its rotary embedding as axes (`RopeAxis`: columns d, base θ, positions at the native
size L; axes that never extrapolate — Flux's index/text axis — have L = None). A `FrequencyTransform` turns one
axis into its frequencies ω_j (j = 0 … d/2−1, float64) and a multiplier of that axis' cos/sin (YaRN's mscale),
given the call (`RopeCall`: the positions n along each axis, the sequence length and the step's σ). Each family's
embedder (`hiresflow.patches.rope`) only lays the angles n·ω out in its own format, so every method below acts on
every RoPE family.

Notation: e_j = 2j/d; s = n/L (the extrapolation factor of an axis, n = its largest position + 1); σ the flow
sigma of the step (1 noise → 0 data, the shifted grid value the model is called at).

- stock            ω_j = 1 / θ^{e_j}   (exactly diffusers' `get_1d_rotary_pos_embed` in float64)
- PI               ω_j = ω_j^base / s                            (position interpolation)
- NTK              ω_j = 1 / (θ·f)^{e_j},  f = s^{d/(d−2)}        (NTK-aware base scaling, DyPE's static NTK)
- YaRN (DyPE's code, two stages of NTK-by-parts; f(r) = d·ln(L/(2πr)) / (2 ln θ) is the dimension whose
  wavelength fits r rotations in the *native* length L; ramp ρ(r_fast, r_slow)_j = clip((j − lo)/(hi − lo), 0, 1)
  with lo = max(0, ⌊f(r_fast)⌋), hi = min(⌈f(r_slow)⌉, d−1, d/2), computed in float32):
      ω¹ = ω^lin·ρ(β0, β1) + ω^ntk·(1 − ρ(β0, β1))      then      ω = ω¹·ρ(γ0, γ1) + ω^base·(1 − ρ(γ0, γ1)),
  defaults β = (1.25, 0.75), γ = (16, 2); attention temperature mscale = 1 + 0.1·ln s multiplies the axis' cos
  and sin (so that axis' share of every q·k by mscale²), constant in time, text rows included.
- DyPE (Issachar, Yariv et al., arXiv 2510.20766; official code guyyariv/DyPE, `flux/transformer_flux.py`) makes
  the extrapolation follow the diffusion's spectral progression — strong early (low frequencies settle first),
  none at the end:
      Dy-NTK   f(σ) = max(1, (s^{d/(d−2)})^{λ_s·σ^{λ_t}})  with λ_s = λ_t = 2 (official: the exponent 2σ²);
               σ = 1/√2 is static NTK, σ → 0 stock RoPE;
      Dy-YaRN  `version="official"` (the code since 2026-02-24): β0, β1, γ0, γ1 multiplied by κ = σ^{λ_t};
               σ = 1 is static YaRN, smaller σ moves both ramps to higher j (more dims back to the base);
               `version="legacy"` (2025-11 to 2026-02): each raised to the power λ_s·σ^{λ_t} (σ = 1/√2 static);
      Dy-PI    s(σ) = max(1, s^{λ_s·σ^{λ_t}}) — a hiresflow extension with Dy-NTK's schedule (the official code
               has Dy-NTK and Dy-YaRN only).
  An axis is transformed only when n > L (decided per axis, as the official code does).

Where the official code has quirks they are kept under the official name and a clean variant is offered
(`clamp`): "official" clamps hi to d−1 before d/2 and never bounds lo, so below σ ≈ 0.024 (stage 1) and
σ ≈ 0.0067 (stage 2) the ramp inverts and Dy-YaRN falls to pure linear interpolation, and σ = 0 divides by zero;
"clean" bounds lo and hi to [0, d/2] and reads σ = 0 as the σ → 0 limit (stock frequencies). No official run
reaches those σ (28 steps end at σ = 0.1045). Reference: docs/methods/dype.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..checks import check_choice

__all__ = ["RopeAxis", "RopeCall", "AxisFrequencies", "FrequencyTransform", "StockRope", "PositionInterpolation",
           "NTKRope", "YaRNRope", "DyPERope", "IMaxNTKRope", "base_frequencies", "correction_range",
           "linear_ramp", "yarn_mscale", "METHODS"]

METHODS = ("pi", "ntk", "yarn")
Clamp = Literal["official", "clean"]


@dataclass(frozen=True)
class RopeAxis:
    """One rotary axis: `dim` columns (d/2 frequencies), base `theta`, `native_len` positions at the native size
    (None: an axis that is never extrapolated, such as Flux's index axis of text ids)."""

    dim: int
    theta: float
    native_len: int | None


@dataclass(frozen=True)
class RopeCall:
    """What a transform may read for one model call: positions per axis (max id + 1), rows of the id table,
    the step's σ (None outside a sampling step: transforms that need it refuse)."""

    lengths: tuple[int, ...]
    seq_len: int
    sigma: float | None = None


@dataclass(frozen=True)
class AxisFrequencies:
    omega: torch.Tensor  # [d/2] float64
    mscale: float = 1.0  # multiplies this axis' cos and sin


def base_frequencies(dim: int, theta: float) -> torch.Tensor:
    """ω_j = 1/θ^{2j/d}, float64, computed exactly as diffusers' `get_1d_rotary_pos_embed` does."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim))


def correction_dimension(rotations: float, dim: int, theta: float, length: int) -> float:
    """f(r) = d·ln(L/(2πr)) / (2 ln θ): the (fractional) dimension index whose wavelength fits r rotations in L."""
    return dim * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(theta))


def correction_range(fast: float, slow: float, dim: int, theta: float, length: int,
                     clamp: Clamp = "official") -> tuple[float, float]:
    """(lo, hi) of the ramp between the dimensions of `fast` and `slow` rotations.

    official: lo = max(0, ⌊f(fast)⌋), hi = min(⌈f(slow)⌉, d−1), then hi = min(hi, d/2) (lo is not bounded above);
    clean: both bounded to [0, d/2], and a non-positive rotation count means "no dimension" (lo = hi = d/2)."""
    half = dim // 2
    if clamp == "clean":
        if fast <= 0 or slow <= 0:
            return float(half), float(half)
        lo = min(max(0, math.floor(correction_dimension(fast, dim, theta, length))), half)
        hi = min(max(0, math.ceil(correction_dimension(slow, dim, theta, length))), half)
        return float(lo), float(hi)
    lo = max(0, math.floor(correction_dimension(fast, dim, theta, length)))
    hi = min(math.ceil(correction_dimension(slow, dim, theta, length)), dim - 1)
    return float(lo), float(min(hi, half))


def linear_ramp(lo: float, hi: float, n: int) -> torch.Tensor:
    """ρ_j = clip((j − lo)/(hi − lo), 0, 1) for j < n, in float32 as the official code computes it (hi nudged by
    0.001 when lo == hi), returned as float64."""
    if lo == hi:
        hi += 0.001
    ramp = (torch.arange(n, dtype=torch.float32) - lo) / (hi - lo)
    return torch.clamp(ramp, 0, 1).to(torch.float64)


def yarn_mscale(s: float) -> float:
    """YaRN's attention temperature on cos/sin: 1 + 0.1·ln s for s > 1, else 1."""
    return 1.0 + 0.1 * math.log(s) if s > 1 else 1.0


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class FrequencyTransform:
    """Frequencies of one axis for one call; `identity_at_native` transforms leave an axis with n ≤ L stock."""

    name: ClassVar[str] = "transform"
    needs_sigma: ClassVar[bool] = False

    def axis(self, axis: RopeAxis, n: int, call: RopeCall) -> AxisFrequencies:  # pragma: no cover - interface
        raise NotImplementedError

    def frequencies(self, axes: list[RopeAxis], call: RopeCall) -> list[AxisFrequencies]:
        """Every axis of one call, in the embedder's order (default: `axis` per axis with its n). Transforms that
        need an axis' place in the table (UltraImage's per-axis target length) override this."""
        return [self.axis(a, n, call) for a, n in zip(axes, call.lengths)]

    def scale(self, axis: RopeAxis, n: int) -> float | None:
        """s = n/L when this axis extrapolates (n > L), else None (the axis stays stock)."""
        if axis.native_len is None or n <= axis.native_len:
            return None
        return n / axis.native_len

    def _sigma(self, call: RopeCall) -> float:
        if call.sigma is None:
            raise ValueError(f"{self.name} reads the step's sigma; it runs inside a sampling step only")
        return float(call.sigma)


@dataclass(frozen=True)
class StockRope(FrequencyTransform):
    """The model's own frequencies (the identity transform)."""

    name: ClassVar[str] = "stock"

    def axis(self, axis, n, call):
        return AxisFrequencies(base_frequencies(axis.dim, axis.theta))


@dataclass(frozen=True)
class PositionInterpolation(FrequencyTransform):
    """ω = ω^base / s on every extrapolating axis."""

    name: ClassVar[str] = "pi"

    def axis(self, axis, n, call):
        w = base_frequencies(axis.dim, axis.theta)
        s = self.scale(axis, n)
        return AxisFrequencies(w if s is None else w / s)


@dataclass(frozen=True)
class NTKRope(FrequencyTransform):
    """NTK-aware base scaling θ' = θ·s^{d/(d−2)} per extrapolating axis (DyPE's static `ntk`)."""

    name: ClassVar[str] = "ntk"

    def axis(self, axis, n, call):
        s = self.scale(axis, n)
        if s is None:
            return AxisFrequencies(base_frequencies(axis.dim, axis.theta))
        return AxisFrequencies(base_frequencies(axis.dim, axis.theta * s ** (axis.dim / (axis.dim - 2))))


def yarn_frequencies(axis: RopeAxis, s: float, beta: tuple[float, float], gamma: tuple[float, float],
                     clamp: Clamp = "official") -> torch.Tensor:
    """The two-stage NTK-by-parts blend of the module docstring for extrapolation factor s."""
    d, theta, length = axis.dim, axis.theta, axis.native_len
    w_base = base_frequencies(d, theta)
    w_lin = w_base / s
    w_ntk = base_frequencies(d, theta * s ** (d / (d - 2)))
    rho1 = linear_ramp(*correction_range(beta[0], beta[1], d, theta, length, clamp), d // 2)
    w1 = w_lin * rho1 + w_ntk * (1 - rho1)
    rho2 = linear_ramp(*correction_range(gamma[0], gamma[1], d, theta, length, clamp), d // 2)
    return w1 * rho2 + w_base * (1 - rho2)


@dataclass(frozen=True)
class YaRNRope(FrequencyTransform):
    """Static YaRN as the DyPE code implements it (two-stage NTK-by-parts + mscale on cos/sin)."""

    name: ClassVar[str] = "yarn"
    beta: tuple[float, float] = (1.25, 0.75)
    gamma: tuple[float, float] = (16.0, 2.0)
    attention_scale: bool = True
    clamp: Clamp = "official"

    def __post_init__(self):
        check_choice("clamp", self.clamp, ("official", "clean"))
        for name, pair in (("beta", self.beta), ("gamma", self.gamma)):
            if len(pair) != 2:
                raise ValueError(f"{name} must be two rotation counts (fast, slow), got {pair!r}")
            for v in pair:
                _check_positive(name, v)

    def axis(self, axis, n, call):
        s = self.scale(axis, n)
        if s is None:
            return AxisFrequencies(base_frequencies(axis.dim, axis.theta))
        w = yarn_frequencies(axis, s, self.beta, self.gamma, self.clamp)
        return AxisFrequencies(w, yarn_mscale(s) if self.attention_scale else 1.0)


@dataclass(frozen=True)
class DyPERope(FrequencyTransform):
    """DyPE over a base method (`pi`, `ntk` or `yarn`): the extrapolation scheduled by the step's σ.

    `lambda_s`, `lambda_t`: the schedule's exponents (official: 2 and 2). `version` picks Dy-YaRN's κ form
    ("official": multiply by σ^λ_t, the code since 2026-02-24; "legacy": raise to λ_s·σ^λ_t); Dy-NTK and Dy-PI
    always use the exponent form. YaRN's β, γ, mscale and `clamp` as in `YaRNRope`."""

    name: ClassVar[str] = "dype"
    needs_sigma: ClassVar[bool] = True
    method: str = "yarn"
    version: Literal["official", "legacy"] = "official"
    lambda_s: float = 2.0
    lambda_t: float = 2.0
    beta: tuple[float, float] = (1.25, 0.75)
    gamma: tuple[float, float] = (16.0, 2.0)
    attention_scale: bool = True
    clamp: Clamp = "official"

    def __post_init__(self):
        check_choice("DyPE method", self.method, METHODS)
        check_choice("DyPE version", self.version, ("official", "legacy"))
        _check_positive("lambda_s", self.lambda_s)
        _check_positive("lambda_t", self.lambda_t)
        YaRNRope(self.beta, self.gamma, self.attention_scale, self.clamp)  # validates the shared fields

    def exponent(self, sigma: float) -> float:
        """λ_s·σ^λ_t: the power the static scale is raised to (Dy-NTK, Dy-PI, legacy Dy-YaRN)."""
        return self.lambda_s * sigma ** self.lambda_t

    def axis(self, axis, n, call):
        sigma = self._sigma(call)
        s = self.scale(axis, n)
        d, theta = axis.dim, axis.theta
        if s is None:
            return AxisFrequencies(base_frequencies(d, theta))
        if self.method == "ntk":
            f = max(1.0, (s ** (d / (d - 2))) ** self.exponent(sigma))
            return AxisFrequencies(base_frequencies(d, theta * f))
        if self.method == "pi":
            return AxisFrequencies(base_frequencies(d, theta) / max(1.0, s ** self.exponent(sigma)))
        if self.version == "official":
            kappa = sigma ** self.lambda_t
            beta, gamma = tuple(b * kappa for b in self.beta), tuple(g * kappa for g in self.gamma)
        else:
            p = self.exponent(sigma)
            beta, gamma = tuple(b ** p for b in self.beta), tuple(g ** p for g in self.gamma)
        w = yarn_frequencies(axis, s, beta, gamma, self.clamp)
        return AxisFrequencies(w, yarn_mscale(s) if self.attention_scale else 1.0)


@dataclass(frozen=True)
class IMaxNTKRope(FrequencyTransform):
    """The NTK/PI RoPE of the HiFlow and I-Max codes: a fixed NTK factor on every axis, ω = 1/(θ·ntk)^{e_j},
    optionally floored at position interpolation with one sequence-wide factor (I-Max):
    ω = max(ω^NTK, ω^base/s_L), s_L = √((L_seq − T)/N_native) (L_seq = id rows, T = one text copy, N_native =
    image tokens at the native size). Every axis is scaled, at any size, as the official codes do; ntk = 1 without
    the floor is stock."""

    name: ClassVar[str] = "imax-ntk"
    ntk: float = 10.0
    pi_floor: bool = False
    text_tokens: int = 0
    native_tokens: int = 1

    def pi_scale(self, seq_len: int) -> float | None:
        if not self.pi_floor:
            return None
        return math.sqrt(max(seq_len - self.text_tokens, 1) / self.native_tokens)

    def axis(self, axis, n, call):
        w = 1.0 / (axis.theta * self.ntk) ** (torch.arange(0, axis.dim, 2, dtype=torch.float64) / axis.dim)
        s = self.pi_scale(call.seq_len)
        if s is not None and s > 1:
            w = torch.maximum(w, base_frequencies(axis.dim, axis.theta) / s)
        return AxisFrequencies(w)
