"""Proportional attention for Flux: softmax scale √(log_{L_train}(L) / d_head) instead of 1/√d_head.

L = key length (text tokens, duplicated copies included, + image tokens); L_train = the same count at the native
size (4608 = 512 + 4096 for FLUX.1-dev at 1024²). The logits are multiplied by m = √(ln L / ln L_train); hiresflow
applies it by scaling the rotary cos/sin tables by √m, which scales every query and key by √m in every joint and
single block (q·k → m·q·k) — exactly the proportional scale, without replacing attention processors.
m = 1 at the native size.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import ModulePatch, PatchConfig, PatchOrder, swapped

__all__ = ["ProportionalAttentionConfig", "proportional_multiplier"]


def proportional_multiplier(key_len: int, train_len: int) -> float:
    """m = √(ln L / ln L_train): the factor on q·k/√d."""
    if key_len < 2 or train_len < 2:
        raise ValueError("proportional attention needs sequence lengths >= 2")
    return math.sqrt(math.log(key_len) / math.log(train_len))


class _ScaledRotary(nn.Module):
    def __init__(self, inner: nn.Module, train_len: int):
        super().__init__()
        self.inner, self.train_len = inner, train_len

    def forward(self, ids: torch.Tensor):
        cos, sin = self.inner(ids)
        r = math.sqrt(proportional_multiplier(ids.shape[0], self.train_len))
        return cos * r, sin * r


@dataclass
class ProportionalAttentionConfig(PatchConfig):
    what: ClassVar[str] = "proportional attention (rotary form)"
    train_tokens: int | None = None  # None: text tokens + native image tokens

    def build(self, env) -> "ProportionalAttentionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        train = self.train_tokens or (model.text_tokens(env.cond) +
                                      (g.native[0] // g.multiple) * (g.native[1] // g.multiple))
        return ProportionalAttentionPatch(model.transformer, train)


class ProportionalAttentionPatch(ModulePatch):
    name = "proportional_attention"
    order = PatchOrder.ATTENTION_SCALE  # wraps whatever rotary embedding (stock or NTK-scaled) is in place

    def __init__(self, transformer, train_tokens: int):
        self.transformer, self.train_tokens = transformer, train_tokens

    @contextmanager
    def applied(self, x, ctx):
        wrapper = _ScaledRotary(self.transformer.pos_embed, self.train_tokens)
        with swapped(self.transformer, "pos_embed", wrapper):
            yield
