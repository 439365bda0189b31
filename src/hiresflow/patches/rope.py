"""RoPE frequency scaling for Flux transformers: NTK-aware base scaling with an optional position-interpolation floor.

Per axis of dimension d, k = 0..d/2−1, base θ (10 000 for Flux):
    ω_k^NTK = (θ·ntk)^(−2k/d)                                   (NTK-aware scaling of the base)
    ω_k^PI  = θ^(−2k/d) / s_L,   s_L = √((L − T)/N_native)       (position interpolation)
    I-Max (pi_floor=True):  ω_k = max(ω_k^NTK, ω_k^PI)  — high-frequency dims follow NTK, low ones are floored at PI
    HiFlow (pi_floor=False): ω_k = ω_k^NTK
L = total id length (all text copies + image tokens), T = one text copy, N_native = image tokens at the native size;
at 1024² FLUX this is I-Max's s_L = √((L − 512)/4096) (docs/methods/dit-toolkit.md#ntk-and-pi-rope). cos/sin are interleaved as diffusers' Flux
embedding does (`repeat_interleave_real`). ntk = 1 without floor reproduces the stock frequencies.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import ModulePatch, PatchConfig, PatchOrder, swapped

__all__ = ["RopeScalingConfig", "ScaledFluxPosEmbed", "rope_frequencies"]


def rope_frequencies(dim: int, theta: float, ntk: float = 1.0, pi_scale: float | None = None) -> torch.Tensor:
    """ω_k for k = 0..dim/2−1 (float64)."""
    exponent = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    w = 1.0 / (theta * ntk) ** exponent
    if pi_scale is not None and pi_scale > 1:
        w = torch.maximum(w, 1.0 / theta**exponent / pi_scale)
    return w


class ScaledFluxPosEmbed(nn.Module):
    """Drop-in replacement for diffusers' `FluxPosEmbed` with scaled frequencies."""

    def __init__(self, theta: float, axes_dim, ntk: float, pi_floor: bool, text_tokens: int, native_tokens: int):
        super().__init__()
        self.theta, self.axes_dim = theta, list(axes_dim)
        self.ntk, self.pi_floor = float(ntk), pi_floor
        self.text_tokens, self.native_tokens = int(text_tokens), int(native_tokens)

    def pi_scale(self, seq_len: int) -> float | None:
        if not self.pi_floor:
            return None
        return math.sqrt(max(seq_len - self.text_tokens, 1) / self.native_tokens)

    def forward(self, ids: torch.Tensor):
        pos = ids.to(torch.float64)
        s = self.pi_scale(ids.shape[0])
        cos, sin = [], []
        for i, d in enumerate(self.axes_dim):
            w = rope_frequencies(d, self.theta, self.ntk, s).to(ids.device)
            ang = torch.outer(pos[:, i], w)
            cos.append(ang.cos().repeat_interleave(2, dim=1).float())
            sin.append(ang.sin().repeat_interleave(2, dim=1).float())
        return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


@dataclass
class RopeScalingConfig(PatchConfig):
    """NTK factor (official 10 for both HiFlow and I-Max) and I-Max's PI floor (HiFlow: off)."""

    what: ClassVar[str] = "NTK/PI RoPE scaling"
    ntk: float = 10.0
    pi_floor: bool = False

    def __post_init__(self) -> None:
        if not self.ntk >= 1:
            raise ValueError(f"ntk factor must be >= 1, got {self.ntk!r}; 1 leaves RoPE unchanged")

    def build(self, env) -> "RopePatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        native_tokens = (g.native[0] // g.multiple) * (g.native[1] // g.multiple)
        return RopePatch(self, model.transformer, model.text_tokens(env.cond), native_tokens)


class RopePatch(ModulePatch):
    name = "rope"
    order = PatchOrder.EMBEDDING

    def __init__(self, cfg: RopeScalingConfig, transformer, text_tokens: int, native_tokens: int):
        pe = transformer.pos_embed
        self.transformer = transformer
        self.module = ScaledFluxPosEmbed(pe.theta, pe.axes_dim, cfg.ntk, cfg.pi_floor, text_tokens, native_tokens)

    @contextmanager
    def applied(self, x, ctx):
        with swapped(self.transformer, "pos_embed", self.module):
            yield
