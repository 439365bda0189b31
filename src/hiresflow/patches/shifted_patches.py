"""Shifted patchification (I-Max / HiFlow "swin" padding): on even steps the 2×2 patch grid moves by one latent pixel.

Official code: on even steps the *sample* is zero-padded by one latent pixel per side and the position ids
rebuilt; odd steps crop it back — which needs an even step count (an odd count ends the stage padded) and
stretches the reference over the padded frame. hiresflow pads only the model input: on even steps
v = crop(model(pad₀(x))). The interior velocity is what the official code computes on that step (its border
values are discarded at the next crop anyway), but the sample, the guides and the reference never leave the
unpadded grid — so any step count works and the reference stays aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from .base import ModelPatch, PatchConfig, PatchOrder

__all__ = ["ShiftedPatchesConfig"]


@dataclass
class ShiftedPatchesConfig(PatchConfig):
    what: ClassVar[str] = "shifted patchification"
    pad: int = 1  # latent pixels per side; 1 shifts a 2×2 patch grid by half a patch
    every: int = 2  # shift on steps with step % every == 0

    def __post_init__(self) -> None:
        if self.pad < 1 or self.every < 1:
            raise ValueError(f"shifted patches need pad >= 1 and every >= 1, got pad={self.pad}, every={self.every}")

    def build(self, env) -> "ShiftedPatches":
        env.model.check_patch(self)
        if (2 * self.pad) % env.model.geometry.patch:
            raise ValueError(f"pad {self.pad} must keep the latent divisible by the patch size {env.model.geometry.patch}")
        return ShiftedPatches(self.pad, self.every)


class ShiftedPatches(ModelPatch):
    name = "shifted_patches"
    order = PatchOrder.INPUT

    def __init__(self, pad: int, every: int):
        self.pad, self.every = pad, every

    def wrap(self, fn):
        p = self.pad

        def patched(x, ctx, cond):
            if ctx.step % self.every:
                return fn(x, ctx, cond)
            v = fn(F.pad(x, (p, p, p, p)), ctx, cond)
            return v[..., p:-p, p:-p]

        return patched
