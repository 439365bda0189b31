"""Running an upsampler: the coupling's source latent, its condition and the ODE solve (all in CFM space).

Inference follows the official training setup: the condition z is the clean upsampled latent; the CFM source
is z noise-augmented at the model's ``t_aug`` (fresh ε from the caller's generator); naive FM starts from pure
Gaussian noise; the regression baseline is one evaluation at t = 0 on the un-augmented z (x̂1 = z + f(z, 0, z)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .coupling import augment_source, latent_upsample
from .model import CfmUpsampler, from_cfm_space, to_cfm_space
from .solver import integrate

__all__ = ["psu", "condition", "source", "upsample"]


@torch.no_grad()
def psu(z_raw: torch.Tensor, vae, size: tuple[int, int]) -> torch.Tensor:
    """Pixel-space upsampling of a *raw* latent: E(bilinear(D(z))) with the posterior mode (raw latent out).
    Decoded pixels are clamped to [−1, 1] before resizing (the range of the training images)."""
    scale = getattr(vae.config, "downsample_factor", None) or 2 ** (len(vae.config.block_out_channels) - 1)
    img = vae.decode(z_raw.to(vae.dtype)).sample.float().clamp(-1, 1)
    img = F.interpolate(img, size=(size[0] * scale, size[1] * scale), mode="bilinear", align_corners=False,
                        antialias=False)
    return vae.encode(img.to(vae.dtype)).latent_dist.mode().float()


@torch.no_grad()
def condition(up: CfmUpsampler, z_lr: torch.Tensor, vae, size: tuple[int, int]) -> torch.Tensor:
    """The clean upsampled latent (CFM space) of a low-resolution latent ``z_lr`` (CFM space)."""
    if up.meta.coupling == "psu":
        if vae is None:
            raise ValueError("the PSU coupling needs the VAE")
        return to_cfm_space(psu(from_cfm_space(z_lr, up.meta), vae, size), up.meta)
    return latent_upsample(z_lr, size, up.meta.coupling)  # type: ignore[arg-type]


def source(up: CfmUpsampler, z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """x0 of the ODE: augmented condition (CFM), Gaussian noise (FM) or the condition itself (regression)."""
    obj = up.meta.objective
    if obj == "fm":
        return torch.randn(z.shape, generator=generator, dtype=z.dtype)
    if obj == "regression":
        return z
    return augment_source(z, up.meta.t_aug, generator)


@torch.no_grad()
def upsample(up: CfmUpsampler, z_lr: torch.Tensor, vae, *, solver: str = "euler", nfe: int = 10,
             generator: torch.Generator | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
    """×``up.meta.scale`` latent (CFM space) from ``z_lr`` [B,4,h,w] (CFM space).

    The one-line errors: a 4-D latent with the model's channel count is required."""
    c = up.unet.config.out_channels
    if z_lr.dim() != 4 or z_lr.shape[1] != c:
        raise ValueError(f"CFM upsampler expects a latent [B,{c},h,w], got shape {tuple(z_lr.shape)}")
    size = (z_lr.shape[-2] * up.meta.scale, z_lr.shape[-1] * up.meta.scale)
    floor = 2 ** (len(up.unet.config.block_out_channels) - 1)
    if size[0] % floor or size[1] % floor:
        raise ValueError(f"CFM output latent {size[1]}x{size[0]} must be a multiple of {floor} on each side")
    z = condition(up, z_lr, vae, size) if cond is None else cond
    x0 = source(up, z, generator)
    if up.meta.objective == "regression":
        return x0 + up.velocity(x0, 0.0, z)
    return integrate(lambda x, t: up.velocity(x, t, z), x0, solver, nfe)
