"""Coupling Flow Matching (CFM): the coupling, the noise augmentation and the straight path.

Source: "Boosting Latent Diffusion with Flow Matching" (Fischer, Gui, Ma, Stracke, Baumann, Ommer; ECCV 2024),
eq. 7–9, and the official CompVis/fm-boosting training code (``fmboost/flow.py``, ``fmboost/trainer.py``).

Time convention (paper and code): t ∈ [0, 1], **t = 0 is the source** (the upsampled low-resolution latent,
noise-augmented), **t = 1 the target** (the high-resolution latent). This is the opposite of the σ convention of
the rest of hiresflow (σ = 1 noise); convert at the boundary, never inside this module.

Formulas (σ_min = 0 reproduces the official code, which has no σ_min; the paper allows σ_min smoothing in the
convention of Lipman et al. 2023)::

    x_t = t·x1 + (1 − (1 − σ_min)·t)·x0          (straight path)
    u_t = x1 − (1 − σ_min)·x0                     (target velocity, constant along the path)
    L   = E_t,x0,x1 ‖v_θ(x_t, t, z) − u_t‖²        (t ~ U(0, 1), mean squared error)

Noise augmentation of the source only (official code: cosine VP schedule with 1000 steps)::

    x0 = sqrt(ᾱ)·PSU(z_lr) + sqrt(1 − ᾱ)·ε,   ᾱ = sigmoid(logSNR(u)),  logSNR(u) = −2·log(tan(π·u/2)),
    u = t_aug / 999  (t_aug = 400 → ᾱ ≈ 0.654)

The condition z is the *clean* upsampled latent, concatenated channel-wise with x_t.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["COUPLINGS", "OBJECTIVES", "cosine_alpha_bar", "augment_source", "path_sample", "target_velocity",
           "latent_upsample", "sample_times"]

#: How the low-resolution latent is brought to the target size: pixel-space upsampling (decode → bilinear
#: resize → encode, the official default "PSU") or plain latent interpolation.
COUPLINGS = ("psu", "bilinear", "nearest")
#: Training objectives on the same network: coupling FM (CFM), FM from Gaussian noise, one-shot L2 regression.
OBJECTIVES = ("cfm", "fm", "regression")

AUG_STEPS = 1000


def cosine_alpha_bar(t_aug: int, steps: int = AUG_STEPS) -> float:
    """ᾱ of the cosine VP schedule at integer index ``t_aug`` ∈ [0, steps): sigmoid(−2·log tan(π·u/2)),
    u = t_aug/(steps − 1) (official ``fmboost`` augmentation; ≈ cos²(π·u/2)). ``t_aug = 0`` gives exactly 1."""
    if isinstance(t_aug, bool) or not isinstance(t_aug, int) or not 0 <= t_aug < steps:
        raise ValueError(f"noise augmentation index must be an integer in [0, {steps}), got {t_aug!r}")
    if t_aug == 0:
        return 1.0
    u = t_aug / (steps - 1)
    log_snr = -2.0 * math.log(math.tan(math.pi * u / 2))
    return 1.0 / (1.0 + math.exp(-log_snr))


def augment_source(x: torch.Tensor, t_aug: int, generator: torch.Generator | None) -> torch.Tensor:
    """x0 = sqrt(ᾱ)·x + sqrt(1 − ᾱ)·ε (ε from ``generator``); identity at ``t_aug = 0``."""
    a = cosine_alpha_bar(t_aug)
    if a == 1.0:
        return x
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return math.sqrt(a) * x + math.sqrt(1.0 - a) * eps


def _bcast(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() else t


def path_sample(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float, sigma_min: float = 0.0) -> torch.Tensor:
    """x_t = t·x1 + (1 − (1 − σ_min)·t)·x0 (t per batch element or a scalar; t = 0 → x0, t = 1 → x1 + σ_min·x0)."""
    tt = _bcast(t, x1)
    return tt * x1 + (1 - (1 - sigma_min) * tt) * x0


def target_velocity(x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """u_t = d x_t / dt = x1 − (1 − σ_min)·x0 (independent of t)."""
    return x1 - (1 - sigma_min) * x0


def sample_times(batch: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ U(0, 1) per element (official: uniform, no logit-normal weighting)."""
    return torch.rand(batch, generator=generator)


def latent_upsample(z: torch.Tensor, size: tuple[int, int], mode: Literal["bilinear", "nearest"]) -> torch.Tensor:
    """Plain latent interpolation (the official ``bilinear`` / ``nearest`` alternatives to PSU)."""
    if mode == "nearest":
        return F.interpolate(z, size=size, mode="nearest")
    return F.interpolate(z, size=size, mode="bilinear", align_corners=False, antialias=False)
