"""The one model interface every method works against: a rectified flow in an unpacked latent space.

A `FlowModel` exposes
- `velocity(x, σ, cond, guidance=…, ctx=…)`: v = ε − x0 for latents x of shape [B, C, h, w] (packing, CFG and
  DDPM rescaling happen inside the adapter),
- `schedule(steps, size, …)`: the model's σ grid for a stage size, computed by `hiresflow.flow.schedule`,
- `encode` / `decode` between images in [0, 1] ([B, 3, H, W]) and normalised latents,
- `geometry`: latent channels, VAE factor, patch size and native resolution, used to validate sizes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from ..flow.sampler import StepContext

__all__ = ["LatentGeometry", "FlowModel", "VaeCodec", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (or a single 'N' for a square) → (height, width)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        if len(parts) == 1:
            n = int(parts[0])
            return n, n
        if len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
            return h, w
    except ValueError:
        pass
    raise ValueError(f"cannot read size {text!r}; write it as WIDTHxHEIGHT, e.g. 2048x1024")


@dataclass(frozen=True)
class LatentGeometry:
    """Latent layout of a model: pixels per latent pixel, latent pixels per token, channels, native size."""

    channels: int
    vae_scale: int = 8
    patch: int = 1
    native: tuple[int, int] = (1024, 1024)  # (height, width) in pixels

    @property
    def multiple(self) -> int:
        """Image sides must be divisible by this many pixels."""
        return self.vae_scale * self.patch

    def validate(self, height: int, width: int) -> None:
        m = self.multiple
        if height <= 0 or width <= 0 or height % m or width % m:
            raise ValueError(
                f"size {width}x{height} is not a positive multiple of {m} px (this model's latent multiple); "
                f"use e.g. {max(m, round(width / m) * m)}x{max(m, round(height / m) * m)}"
            )

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        self.validate(height, width)
        return self.channels, height // self.vae_scale, width // self.vae_scale

    def round_size(self, height: float, width: float) -> tuple[int, int]:
        """Nearest valid size (at least one multiple)."""
        m = self.multiple
        return max(m, int(round(height / m)) * m), max(m, int(round(width / m)) * m)


class VaeCodec:
    """Images in [0, 1] ↔ normalised latents z = (E(x) − shift)·scale for a diffusers AutoencoderKL.

    Uses diffusers' own tiling (`enable_tiling`) above `tile_above` pixels per side.
    """

    def __init__(self, vae, tile_above: int | None = 2048):
        self.vae = vae
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        self.tile_above = tile_above

    def _tiling(self, side: int) -> None:
        if self.tile_above is None or not hasattr(self.vae, "enable_tiling"):
            return
        if side > self.tile_above:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        """Posterior mode (default) or a sample drawn from `generator`, normalised."""
        vae = self.vae
        self._tiling(max(images.shape[-2:]))
        x = (images * 2 - 1).to(device=vae.device, dtype=vae.dtype)
        dist = vae.encode(x).latent_dist
        if sample:
            noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
            z = dist.mean.float() + dist.std.float() * noise.to(dist.mean.device)
        else:
            z = dist.mode().float()
        return (z - self.shift) * self.scaling

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        self._tiling(max(z.shape[-2:]) * 8)
        img = vae.decode((z / self.scaling + self.shift).to(device=vae.device, dtype=vae.dtype)).sample
        return ((img.float() + 1) / 2).clamp(0, 1)


class FlowModel(ABC):
    """Adapter base. Subclasses implement `encode_prompt`, `velocity` and `schedule`."""

    name: str = "model"
    family: str = "generic"
    geometry: LatentGeometry
    codec: VaeCodec
    default_steps: int = 30
    default_guidance: float | None = None
    guidance_kind: str = "none"  # "embedded" (Flux guidance vector), "cfg" or "none"

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> Any:
        """Encode once; the result is passed back to `velocity` at every step."""

    @abstractmethod
    def velocity(
        self,
        x: torch.Tensor,
        sigma: float,
        cond: Any,
        *,
        guidance: float | None = None,
        ctx: StepContext | None = None,
    ) -> torch.Tensor:
        """Flow velocity v = ε − x0 (float32) for latents x [B, C, h, w] at noise level σ."""

    @abstractmethod
    def schedule(
        self,
        steps: int,
        size: tuple[int, int],
        *,
        shift: float | None = None,
        mu: float | None = None,
    ) -> torch.Tensor:
        """σ grid (N+1 values ending in 0) for a stage of pixel `size` = (H, W)."""

    def time_fraction(self, sigma: float) -> float:
        """The model's own time t/T for σ (σ itself for flow models; timestep/1000 for DDPM models)."""
        return sigma

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        return self.codec.encode(images, generator, sample)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(latents)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Standard normal noise drawn on the CPU from `generator` (same seed ⇒ same bytes on any device)."""
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    def describe(self) -> dict:
        g = self.geometry
        return {
            "name": self.name,
            "family": self.family,
            "latent_channels": g.channels,
            "vae_scale": g.vae_scale,
            "patch": g.patch,
            "native_size": list(g.native),
            "guidance_kind": self.guidance_kind,
        }
