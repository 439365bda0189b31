"""RoPE patches for every rotary family: one embedder, frequencies from a `FrequencyTransform`.

A family's adapter says what its rotary embedding is (`FlowModel.rope_axes`: axes with columns, base and native
length) and how to put an embedder with other frequencies in place for one call (`FlowModel.rope_applied`); the
maths lives once in `hiresflow.patches.rope_frequencies`. Two patch configs use it:

- `RopeScalingConfig(ntk, pi_floor)`: the NTK/PI RoPE of the HiFlow and I-Max codes (`IMaxNTKRope`): per axis of
  dimension d, k = 0..d/2−1, base θ (10 000 for Flux): ω_k^NTK = (θ·ntk)^(−2k/d); with I-Max's floor
  ω_k = max(ω_k^NTK, θ^(−2k/d)/s_L), s_L = √((L − T)/N_native) (L = all id rows, T = one text copy, N_native =
  image tokens at the native size; at 1024² FLUX this is I-Max's s_L = √((L − 512)/4096),
  docs/methods/dit-toolkit.md#ntk-and-pi-rope). ntk = 1 without floor is the stock embedding.
- `RopeExtrapolationConfig(method, dype, …)`: PI, NTK or YaRN per axis from the axis' own extrapolation factor,
  static or scheduled by the step's σ (DyPE); docs/methods/dype.md.

`RotaryAxesEmbed` keeps diffusers' `FluxPosEmbed` contract (ids [S, axes] → cos, sin [S, Σd] float32, each
frequency's cos/sin interleaved) and, with the stock transform, its exact bytes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..checks import check_choice
from .base import ModulePatch, PatchConfig, PatchOrder
from .rope_frequencies import (METHODS, DyPERope, FrequencyTransform, IMaxNTKRope, NTKRope, PositionInterpolation,
                               RopeAxis, RopeCall, YaRNRope)

__all__ = ["RopeScalingConfig", "RopeExtrapolationConfig", "RotaryAxesEmbed", "RopePatch", "rope_frequencies"]


def rope_frequencies(dim: int, theta: float, ntk: float = 1.0, pi_scale: float | None = None) -> torch.Tensor:
    """ω_k for k = 0..dim/2−1 (float64) of the HiFlow/I-Max NTK RoPE with an optional PI floor at `pi_scale`."""
    exponent = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    w = 1.0 / (theta * ntk) ** exponent
    if pi_scale is not None and pi_scale > 1:
        w = torch.maximum(w, 1.0 / theta**exponent / pi_scale)
    return w


class RotaryAxesEmbed(nn.Module):
    """`FluxPosEmbed`-compatible rotary embedding whose per-axis frequencies (and cos/sin multipliers) come from
    `transform` for the call's σ. Positions per axis are max(ids[:, i]) + 1, over text and image rows alike."""

    def __init__(self, axes: list[RopeAxis], transform: FrequencyTransform, sigma: float | None = None):
        super().__init__()
        self.axes, self.transform, self.sigma = list(axes), transform, sigma

    def call_info(self, ids: torch.Tensor) -> RopeCall:
        # one device-to-host read per call for all axes (the lengths decide each axis' frequencies on the host)
        lengths = tuple(int(v) + 1 for v in ids[:, : len(self.axes)].amax(dim=0).tolist())
        return RopeCall(lengths=lengths, seq_len=int(ids.shape[0]), sigma=self.sigma)

    def forward(self, ids: torch.Tensor):
        pos = ids.float()  # as diffusers: integer positions, exact in float32; the angles are float64
        call = self.call_info(ids)
        cos, sin = [], []
        for i, freq in enumerate(self.transform.frequencies(self.axes, call)):
            angles = torch.outer(pos[:, i], freq.omega.to(ids.device))
            c = angles.cos().repeat_interleave(2, dim=1).float()
            s = angles.sin().repeat_interleave(2, dim=1).float()
            if freq.mscale != 1.0:
                c, s = c * freq.mscale, s * freq.mscale
            cos.append(c)
            sin.append(s)
        return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


class RopePatch(ModulePatch):
    """Puts the model's RoPE embedder with `transform`'s frequencies in place for one call, σ from the step."""

    name = "rope"
    order = PatchOrder.EMBEDDING

    def __init__(self, model, transform: FrequencyTransform):
        self.model, self.transform = model, transform

    @contextmanager
    def applied(self, x, ctx):
        with self.model.rope_applied(self.transform, ctx.sigma):
            yield


@dataclass
class RopeScalingConfig(PatchConfig):
    """NTK factor (official 10 for both HiFlow and I-Max) and I-Max's PI floor (HiFlow: off)."""

    what: ClassVar[str] = "NTK/PI RoPE scaling"
    ntk: float = 10.0
    pi_floor: bool = False

    def __post_init__(self) -> None:
        if not self.ntk >= 1:
            raise ValueError(f"ntk factor must be >= 1, got {self.ntk!r}; 1 leaves RoPE unchanged")

    def build(self, env) -> RopePatch:
        model = env.model
        model.check_patch(self)
        g = model.geometry
        native_tokens = (g.native[0] // g.multiple) * (g.native[1] // g.multiple)
        return RopePatch(model, IMaxNTKRope(float(self.ntk), bool(self.pi_floor), model.text_tokens(env.cond),
                                            native_tokens))


@dataclass
class RopeExtrapolationConfig(PatchConfig):
    """Per-axis RoPE extrapolation: `method` "pi", "ntk" or "yarn" from each axis' factor s = n/L, static
    (`dype=False`) or scheduled by the step's σ (`dype=True`, DyPE; official defaults: YaRN base, κ = σ²,
    λ_s = λ_t = 2, β = (1.25, 0.75), γ = (16, 2), mscale on, the official clamp). Formulas:
    `hiresflow.patches.rope_frequencies`."""

    what: ClassVar[str] = "RoPE extrapolation (PI / NTK / YaRN, DyPE)"
    method: str = "yarn"
    dype: bool = True
    version: str = "official"
    lambda_s: float = 2.0
    lambda_t: float = 2.0
    attention_scale: bool = True
    clamp: str = "official"

    def __post_init__(self) -> None:
        check_choice("rope method", self.method, METHODS)
        if not isinstance(self.dype, bool):
            raise ValueError(f"dype must be True or False, got {self.dype!r}")
        self.transform()  # every other field is checked by the transform it builds

    def transform(self) -> FrequencyTransform:
        if self.dype:
            return DyPERope(self.method, self.version, self.lambda_s, self.lambda_t,
                            attention_scale=self.attention_scale, clamp=self.clamp)
        if self.method == "yarn":
            return YaRNRope(attention_scale=self.attention_scale, clamp=self.clamp)
        return NTKRope() if self.method == "ntk" else PositionInterpolation()

    def build(self, env) -> RopePatch:
        env.model.check_patch(self)
        return RopePatch(env.model, self.transform())
