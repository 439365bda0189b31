"""FreeScale's restrained dilated convolution: the deep 3×3 convs run dilated in the early steps of a stage.

On the convs of `UNetRoles.dilated_convs` — the downsampler into the deepest level, the deepest down block's
resnet conv1/conv2 and the mid block's resnet conv1/conv2 (SDXL: exactly the official nine,
`down_blocks.1.downsamplers.0.conv`, `down_blocks.2.resnets.{0,1}.conv{1,2}`, `mid_block.resnets.{0,1}.conv{1,2}`;
no up-block conv) — set dilation = padding = d, same weights, so every output keeps its size:
out = ⌊(H + 2d − d·(3 − 1) − 1)/stride⌋ + 1.

    d = stage width // native width      (official: target_width // 1024 on SDXL; hiresflow's native stage keeps
                                           the target's aspect ratio, so this is the scale of the cascade stage)
    active while the schedule index < int(tau·N)   (official dilate_tau = 35, an absolute index of the 50-step
                                                    grid, i.e. tau = 0.7; the official value does not follow N)
Restored after every model call (the official code resets the attributes after each step).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from .base import ModulePatch, PatchConfig, PatchOrder
from .unet_tools import conv_geometry

__all__ = ["DilatedConvConfig", "DilatedConvPatch", "stage_dilation"]


def stage_dilation(stage_size: tuple[int, int], native_size: tuple[int, int]) -> int:
    """d = stage width // native width, at least 1."""
    return max(1, int(stage_size[1]) // int(native_size[1]))


@dataclass
class DilatedConvConfig(PatchConfig):
    """dilation: None = stage width // native width; tau: fraction of the stage's σ grid (by schedule index)."""

    what: ClassVar[str] = "restrained dilated convolution"
    dilation: int | None = None
    tau: float = 0.7

    def __post_init__(self) -> None:
        if self.dilation is not None and not (isinstance(self.dilation, int) and self.dilation >= 1):
            raise ValueError(f"dilation must be a positive integer (1 = off) or unset, got {self.dilation!r}")
        if not (isinstance(self.tau, (int, float)) and 0 <= self.tau <= 1):
            raise ValueError(f"dilated conv tau must lie in [0, 1] (fraction of the steps), got {self.tau!r}")

    def build(self, env) -> "DilatedConvPatch":
        model = env.model
        model.check_patch(self)
        native = env.first.size if env.first is not None else model.geometry.native
        d = self.dilation or stage_dilation(env.stage.size, native)
        stop = int(self.tau * (len(env.sigmas) - 1))
        return DilatedConvPatch([m for _, m in model.unet_roles.dilated_convs()], d, stop)


class DilatedConvPatch(ModulePatch):
    name = "dilated_conv"
    order = PatchOrder.LAYERS

    def __init__(self, convs, dilation: int, stop_index: int):
        self.convs, self.dilation, self.stop_index = convs, dilation, stop_index

    def active(self, ctx) -> bool:
        return self.dilation > 1 and ctx.index < self.stop_index

    @contextmanager
    def applied(self, x, ctx):
        d = self.dilation
        with conv_geometry(self.convs, padding=(d, d), dilation=(d, d)):
            yield
