"""ControlNet conditioning for the SD adapter, added so that U-Net patches that resize features still fit.

`SDFlowModel.set_control(image, scale, end)` on a `StableDiffusionControlNetPipeline` (or the SDXL one): at every
step with step < end·N the ControlNet runs on the same batched (uncond, cond) input as the U-Net, on the control
image resized (bicubic) to the stage's pixel size, and its residuals are added to the U-Net's skips as the up
blocks read them and to the mid block's output. With stock feature sizes this is exactly diffusers' own addition;
when a patch changed a skip's size (RAU-Net) the residual is bicubic-resized to it first — what the official
HiDiffusion ControlNet pipeline does. HiDiffusion runs ControlNet for the first 60 % of the steps at about 1024 px
(end = 0.6); the default here is all steps.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from ..patches.unet_tools import TemporaryHooks

__all__ = ["ControlSpec", "residuals_added", "resized_to"]


@dataclass
class ControlSpec:
    image: torch.Tensor  # [1, 3, H, W] in [0, 1]
    scale: float = 1.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.image.shape[1] != 3:
            raise ValueError(f"control image must be [1, 3, H, W] in [0, 1], got shape {tuple(self.image.shape)}")
        if not 0 <= self.end <= 1:
            raise ValueError(f"control end must lie in [0, 1] (fraction of the steps), got {self.end!r}")

    def active(self, step: int | None, n_steps: int | None) -> bool:
        return step is None or not n_steps or step < self.end * n_steps


def resized_to(r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """r bicubic-resized to like's spatial size (unchanged when they already match)."""
    if r.shape[-2:] == like.shape[-2:]:
        return r
    return F.interpolate(r, size=like.shape[-2:], mode="bicubic")


@contextmanager
def residuals_added(unet, down: tuple[torch.Tensor, ...], mid: torch.Tensor | None) -> Iterator[None]:
    """Add ControlNet residuals to the skips each up block reads and to the mid block output, for one call."""
    total = len(down)
    with TemporaryHooks() as hooks:
        consumed = 0
        for up in unet.up_blocks:
            n = len(up.resnets)
            lo, hi = total - consumed - n, total - consumed
            consumed += n

            def pre(module, args, kwargs, _lo=lo, _hi=hi):
                res = kwargs["res_hidden_states_tuple"]
                kwargs = dict(kwargs)
                kwargs["res_hidden_states_tuple"] = tuple(s + resized_to(r, s) for s, r in zip(res, down[_lo:_hi]))
                return args, kwargs

            hooks.pre(up, pre, with_kwargs=True)
        if mid is not None and unet.mid_block is not None:
            hooks.post(unet.mid_block, lambda m, a, out: out + resized_to(mid, out))
        yield
