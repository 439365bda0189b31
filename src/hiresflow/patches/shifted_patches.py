"""Shifted patchification (I-Max / HiFlow "swin" padding): on even steps the 2×2 patch grid moves by one latent pixel.

frame="sample" (the official code, the default): on even steps the *sample* is zero-padded by one latent pixel per side and
the position ids rebuilt; odd steps crop it back. The guidance then runs on the padded frame: HiFlow stretches
its reference over it and filters it there, I-Max pads its guidance latent and runs the Haar projection on the
padded grid (blocks one pixel off), and the Euler step is taken padded. The patch returns the velocity in the
padded frame and the sampler moves the sample with it (`hiresflow.stage.to_frame`). A stage that ends on a padded
step (an odd step count) is cropped back — the official code would return an image 16 px larger.
frame="model" (hiresflow's default until 2026-12-07): only the model input is padded, v = crop(model(pad₀(x))). The raw interior
velocity equals the official one, but the sample, the guides and the reference never leave the unpadded grid,
so any step count works and the reference stays aligned; guided velocities differ from the official ones on
padded steps (by about 10 % for I-Max).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch.nn.functional as F

from ..checks import check_choice
from .base import ModelPatch, PatchConfig, PatchOrder

__all__ = ["ShiftedPatchesConfig"]


@dataclass
class ShiftedPatchesConfig(PatchConfig):
    what: ClassVar[str] = "shifted patchification"
    pad: int = 1  # latent pixels per side; 1 shifts a 2×2 patch grid by half a patch
    every: int = 2  # shift on steps with step % every == 0
    frame: Literal["model", "sample"] = "sample"

    def __post_init__(self) -> None:
        if self.pad < 1 or self.every < 1:
            raise ValueError(f"shifted patches need pad >= 1 and every >= 1, got pad={self.pad}, every={self.every}")
        check_choice("shift_frame", self.frame, ("model", "sample"))

    def build(self, env) -> "ShiftedPatches":
        env.model.check_patch(self)
        if (2 * self.pad) % env.model.geometry.patch:
            raise ValueError(f"pad {self.pad} must keep the latent divisible by the patch size {env.model.geometry.patch}")
        return ShiftedPatches(self.pad, self.every, self.frame,
                              env.latent_size if self.frame == "sample" else None)


class ShiftedPatches(ModelPatch):
    name = "shifted_patches"
    order = PatchOrder.INPUT

    def __init__(self, pad: int, every: int, frame: str = "sample", size: tuple[int, int] | None = None):
        self.pad, self.every, self.frame, self.size = pad, every, frame, size

    def wrap(self, fn):
        p = self.pad
        if self.frame == "sample":
            return self._wrap_sample(fn)

        def patched(x, ctx, cond):
            if ctx.step % self.every:
                return fn(x, ctx, cond)
            v = fn(F.pad(x, (p, p, p, p)), ctx, cond)
            return v[..., p:-p, p:-p]

        return patched

    def _wrap_sample(self, fn):
        p = self.pad

        def patched(x, ctx, cond):
            padded = tuple(x.shape[-2:]) != tuple(self.size)
            if ctx.step % self.every == 0:
                return fn(x if padded else F.pad(x, (p, p, p, p)), ctx, cond)  # v in the padded frame
            return fn(x[..., p:-p, p:-p] if padded else x, ctx, cond)  # back in the stage's frame

        return patched
