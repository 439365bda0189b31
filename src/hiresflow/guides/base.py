"""What a guide config sees when the runner builds its guide for a stage, and shared helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..flow.sampler import Guide, StepTimings, Trajectory

__all__ = ["StageEnv", "StageResult", "resize_latent", "resize_image", "cosine_factor", "GuideConfig"]


def resize_latent(z: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Interpolate a latent [B, C, h, w] to `size` (h', w'); bicubic/bilinear without corner alignment."""
    if tuple(z.shape[-2:]) == tuple(size):
        return z
    if mode == "lanczos":
        mode = "bicubic"  # lanczos exists for images only (PIL); latents use bicubic
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(z.float(), size=size, mode=mode, **kwargs)


def resize_image(img: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize images [B, 3, H, W] in [0, 1]; 'lanczos' goes through PIL per image, others through torch."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    if mode == "lanczos":
        import numpy as np
        from PIL import Image

        out = []
        for im in img:
            arr = (im.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
            pil = Image.fromarray(arr).resize((size[1], size[0]), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255)
        return torch.stack(out).to(img.device)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(img.float(), size=size, mode=mode, **kwargs).clamp(0, 1)


def cosine_factor(time_fraction: float) -> float:
    """cf(t) = ½·(1 + cos(π·(T − t)/T)) with t/T = `time_fraction`: 1 at pure noise, 0 at data.

    DemoFusion/FreeScale evaluate it on the scheduler's timestep value (unet_methods.md §0); flow models pass σ,
    DDPM models their fractional timestep / 1000 (`FlowModel.time_fraction`).
    """
    return 0.5 * (1.0 + math.cos(math.pi * (1.0 - time_fraction)))


@dataclass
class StageResult:
    """Everything a later stage (or the caller) may need from a finished stage."""

    index: int
    size: tuple[int, int]
    latent: torch.Tensor
    image: torch.Tensor | None
    trajectory: Trajectory
    sigmas: torch.Tensor
    start: int
    timings: StepTimings = field(default_factory=StepTimings)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class StageEnv:
    """The runner's view of a stage, handed to guide configs and denoisers when they are built."""

    model: Any  # FlowModel
    index: int
    stage: Any  # plan.Stage
    sigmas: torch.Tensor
    start: int
    stop: int
    shape: tuple[int, int, int, int]
    generator: torch.Generator
    noise: torch.Tensor  # ε of this stage's initialisation (shared by skip residuals)
    cond: Any
    previous: StageResult | None = None
    first: StageResult | None = None  # the native stage
    upsampled: torch.Tensor | None = None  # previous result brought to this stage's latent size
    upsampled_image: torch.Tensor | None = None  # the same in pixels, when upsampled in pixel space

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    def noised(self, z: torch.Tensor, index: int) -> torch.Tensor:
        """(1 − σ_k)·z + σ_k·ε on this stage's grid and noise (DemoFusion's noise_latents[k])."""
        s = float(self.sigmas[index])
        return (1 - s) * z + s * self.noise


class GuideConfig:
    """Base for guide configs: plain dataclasses that build a fresh `Guide` per stage."""

    def build(self, env: StageEnv) -> Guide:  # pragma: no cover - interface
        raise NotImplementedError
