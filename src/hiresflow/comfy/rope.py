"""The RoPE family and proportional attention on ComfyUI's FLUX position embedder (`diffusion_model.pe_embedder`).

ComfyUI's `EmbedND` (comfy/ldm/flux/layers.py, `rope` in comfy/ldm/flux/math.py) maps position ids [B, S, axes]
to rotation matrices [B, 1, S, Σd/2, 2, 2] = [[cos θ, −sin θ], [sin θ, cos θ]] per frequency, θ = n·ω_j, axes
concatenated; attention applies them as q' = R·q on each (even, odd) pair. `ComfyRotaryEmbed` lays out the
frequencies of any `hiresflow.patches.rope_frequencies.FrequencyTransform` (PI, NTK, YaRN, DyPE, I-Max's NTK/PI)
in that format, the axis' mscale multiplying its matrices, so the maths is the library's, once
(`hiresflow.patches.rope`). Positions per axis are max(ids) + 1 over text and image rows, as there.

Proportional attention multiplies every rotation matrix by √m, m = √(ln L / ln L_train) (L = ids per row), which
scales each q and k by √m and each logit by m (`hiresflow.patches.attention`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from ..patches.attention import proportional_multiplier
from ..patches.base import ModulePatch, PatchConfig, PatchOrder, swapped
from ..patches.rope_frequencies import FrequencyTransform, RopeAxis, RopeCall

__all__ = ["ComfyRotaryEmbed", "ComfyProportionalAttentionConfig", "rope_axes_of", "StepSigma"]


def rope_axes_of(embedder, native_tokens: tuple[int, int]) -> list[RopeAxis]:
    """The axes of an `EmbedND` (axes_dim, theta): index axis never extrapolated, rows and columns spanning the
    native token grid."""
    lengths = (None, int(native_tokens[0]), int(native_tokens[1]))
    return [RopeAxis(int(d), float(embedder.theta), lengths[i] if i < 3 else None)
            for i, d in enumerate(embedder.axes_dim)]


class StepSigma:
    """Where a ModelPatcher-installed embedder reads the step's σ: set by a unet wrapper before each call."""

    def __init__(self) -> None:
        self.sigma: float | None = None


class ComfyRotaryEmbed(nn.Module):
    """`EmbedND`-compatible embedder with `transform`'s frequencies at σ (a float, or a `StepSigma` read per call)."""

    def __init__(self, axes: list[RopeAxis], transform: FrequencyTransform, sigma: "float | StepSigma | None"):
        super().__init__()
        self.axes, self.transform, self.sigma = list(axes), transform, sigma
        self.theta = axes[0].theta if axes else 10000.0
        self.axes_dim = [a.dim for a in self.axes]

    def _sigma(self) -> float | None:
        return self.sigma.sigma if isinstance(self.sigma, StepSigma) else self.sigma

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = len(self.axes)
        lengths = tuple(int(v) + 1 for v in ids[0, :, :n].amax(dim=0).tolist())
        call = RopeCall(lengths=lengths, seq_len=int(ids.shape[1]), sigma=self._sigma())
        pos = ids.to(torch.float64)
        parts = []
        for i, freq in enumerate(self.transform.frequencies(self.axes, call)):
            angles = pos[..., i, None] * freq.omega.to(ids.device)  # [B, S, d/2] in float64
            c, s = angles.cos(), angles.sin()
            rot = torch.stack([c, -s, s, c], dim=-1).reshape(*angles.shape, 2, 2)
            if freq.mscale != 1.0:
                rot = rot * freq.mscale
            parts.append(rot.float())
        return torch.cat(parts, dim=-3).unsqueeze(1)


class _ScaledEmbed(nn.Module):
    def __init__(self, inner: nn.Module, train_len: int):
        super().__init__()
        self.inner, self.train_len = inner, train_len
        self.theta, self.axes_dim = getattr(inner, "theta", 10000), getattr(inner, "axes_dim", [])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner(ids) * math.sqrt(proportional_multiplier(int(ids.shape[1]), self.train_len))


@dataclass
class ComfyProportionalAttentionConfig(PatchConfig):
    """Proportional attention on a ComfyUI FLUX-class model (the library's rotary form, ComfyUI's embedder)."""

    what: ClassVar[str] = "proportional attention (rotary form)"
    train_tokens: int | None = None  # None: text tokens + native image tokens

    def build(self, env) -> "ComfyProportionalAttention":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        train = self.train_tokens or (model.text_tokens(env.cond)
                                      + (g.native[0] // g.multiple) * (g.native[1] // g.multiple))
        return ComfyProportionalAttention(model.diffusion_model, train)


class ComfyProportionalAttention(ModulePatch):
    name = "proportional_attention"
    order = PatchOrder.ATTENTION_SCALE  # wraps whatever embedder (stock or a RoPE patch's) is in place

    def __init__(self, diffusion_model, train_tokens: int):
        self.diffusion_model, self.train_tokens = diffusion_model, train_tokens

    @contextmanager
    def applied(self, x, ctx) -> Iterator[None]:
        dm = self.diffusion_model
        with swapped(dm, "pe_embedder", _ScaledEmbed(dm.pe_embedder, self.train_tokens)):
            yield
