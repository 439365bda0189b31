"""The one model interface every method works against: a rectified flow in an unpacked latent space.

A `FlowModel` exposes
- `velocity(x, σ, cond, guidance=…, ctx=…)`: v = ε − x0 for latents x of shape [B, C, h, w] (packing, CFG and
  DDPM rescaling happen inside the adapter),
- `schedule(steps, size, …)`: the model's σ grid for a stage size, computed by `hiresflow.flow.schedule`,
- `encode` / `decode` between images in [0, 1] ([B, 3, H, W]) and normalised latents,
- `geometry`: latent channels, VAE factor, patch size and native resolution, used to validate sizes.

An adapter owns its family: it declares the patch configs it supports (`patch_types`) and maps the
family-neutral DiT toolkit switches to them (`toolkit_patches`), answers the family-specific questions patches
ask (`text_tokens`, `duplicate_text`), and gives training its forward pass and loss (`denoiser`,
`encode_prompts`, `training_loss`). Adding a model family touches its adapter, its tiny builder and a test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..stage import PatchConfig, StepContext

__all__ = ["LatentGeometry", "FlowModel", "VaeCodec", "parse_size", "adapter_classes", "supported_pipelines",
           "FAMILY_MODULES"]


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

    Uses diffusers' own tiling (`enable_tiling`) above `tile_above` pixels per side, for encode and decode alike
    (decode measures the image side as latent side × the VAE's own factor, 4 for the embedded VAE, 8 for SD/Flux).
    """

    TILING_MODES = ("auto", "diffusers", "always", "never")

    def __init__(self, vae, tile_above: int | None = 2048):
        self.vae = vae
        self.mode = "auto"
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        self.tile_above = tile_above
        self.factor = 2 ** (len(getattr(vae.config, "block_out_channels", (0, 0, 0, 0))) - 1)

    def decode_bytes(self, height: int, width: int) -> int:
        """Peak bytes of one decode at height×width px (≈ 8 float maps of the first decoder level; one tile when
        tiling is on — hiresflow.resources)."""
        cfg = self.vae.config
        c0 = int(getattr(cfg, "block_out_channels", (128,))[0])
        area = height * width
        if self.tile_above is not None and max(height, width) > self.tile_above:
            tile = int(getattr(self.vae, "tile_sample_min_size", 0) or getattr(cfg, "sample_size", 512) or 512)
            area = min(area, tile * tile)
        return 8 * area * c0 * 4

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents (posterior mode or sample) → the normalised latents the denoiser sees."""
        return (raw - self.shift) * self.scaling

    @contextmanager
    def tiling(self, mode: str = "auto") -> Iterator[None]:
        """Tiling for the encodes and decodes inside the block:
        "auto" (hiresflow): diffusers' tiling above `tile_above` px per side;
        "diffusers": `enable_tiling()` — diffusers tiles whatever exceeds its own tile size (the official HiFlow
            pipeline after its native pass);
        "always": diffusers' tiled_encode / tiled_decode even below the tile size (the official I-Max pipeline);
        "never": no tiling."""
        if mode not in self.TILING_MODES:
            raise ValueError(f"vae_tiling must be one of {', '.join(self.TILING_MODES)}, got {mode!r}")
        old = self.mode
        self.mode = mode
        try:
            yield
        finally:
            self.mode = old
            if old != "diffusers" and hasattr(self.vae, "disable_tiling"):
                self.vae.disable_tiling()

    def _tiling(self, side: int) -> None:
        if not hasattr(self.vae, "enable_tiling"):
            return
        if self.mode == "diffusers" or self.mode == "always":
            self.vae.enable_tiling()
        elif self.mode == "never" or self.tile_above is None:
            self.vae.disable_tiling()
        elif side > self.tile_above:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        """Posterior mode (default) or a sample drawn from `generator`, normalised."""
        vae = self.vae
        self._tiling(max(images.shape[-2:]))
        x = (images * 2 - 1).to(device=vae.device, dtype=vae.dtype)
        if self.mode == "always" and hasattr(vae, "_tiled_encode"):
            from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

            dist = DiagonalGaussianDistribution(vae._tiled_encode(x))
        else:
            dist = vae.encode(x).latent_dist
        return self.normalise(self.posterior_latent(dist, generator, sample))

    @staticmethod
    def posterior_latent(dist, generator: torch.Generator | None, sample: bool) -> torch.Tensor:
        """The posterior's mode, or mean + std·ε with ε drawn on the CPU from `generator` (float32)."""
        if not sample:
            return dist.mode().float()
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
        return dist.mean.float() + dist.std.float() * noise.to(dist.mean.device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Images in [0, 1] (clamp=False keeps the decoder's overshoot, as the official pipelines' raw decodes)."""
        vae = self.vae
        self._tiling(max(z.shape[-2:]) * self.factor)
        zz = (z / self.scaling + self.shift).to(device=vae.device, dtype=vae.dtype)
        if self.mode == "always" and hasattr(vae, "tiled_decode"):
            img = vae.tiled_decode(zz).sample
        else:
            img = vae.decode(zz).sample
        img = (img.float() + 1) / 2
        return img.clamp(0, 1) if clamp else img


class FlowModel(ABC):
    """Adapter base. Subclasses implement `encode_prompt`, `velocity` and `schedule`."""

    name: str = "model"
    family: str = "generic"
    geometry: LatentGeometry
    codec: VaeCodec
    default_steps: int = 30
    default_guidance: float | None = None
    guidance_kind: str = "none"  # "embedded" (Flux guidance vector), "cfg" or "none"
    pipeline_classes: tuple[str, ...] = ()  # the diffusers pipeline classes this adapter wraps (by class name)

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
        """Flow velocity v = ε − x0 (float32) for latents x [B, C, h, w] at noise level σ. `ctx` (the step) is
        for step-dependent conditioning — the SD adapter's ControlNet ends at a fraction of the steps."""

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

    # ------------------------------------------------------------ what the family supports

    @classmethod
    def handles(cls, pipe) -> bool:
        """Whether this adapter wraps the diffusers pipeline object `pipe` (default: its class is one of
        `pipeline_classes`)."""
        return type(pipe).__name__ in cls.pipeline_classes

    @classmethod
    def patch_types(cls) -> tuple[type[PatchConfig], ...]:
        """The patch configs this family implements (none by default)."""
        return ()

    def check_patch(self, config: PatchConfig) -> None:
        """One-line error when `config` is not a patch of this model's family."""
        if isinstance(config, self.patch_types()):
            return
        families = sorted({c.family for c in adapter_classes() if isinstance(config, c.patch_types())})
        what = getattr(config, "what", type(config).__name__)
        raise ValueError(f"{what} applies to {'/'.join(families) or 'no'} models; {self.name!r} is {self.family}; "
                         f"switch it off for this model")

    def toolkit_patches(self, toolkit) -> list[PatchConfig]:
        """This family's patch configs for the DiT toolkit switches (`hiresflow.patches.toolkit.DiTToolkit`)."""
        return []

    def rotary_toolkit_patches(self, toolkit, proportional: type[PatchConfig],
                               shifted_patches: bool = True) -> list[PatchConfig]:
        """The DiT toolkit's part shared by the rotary families, in the order they nest: text duplication, shifted
        patches (when the family has them), the RoPE transform (`toolkit.rope`: DyPE/YaRN/PI/NTK; else I-Max's
        NTK/PI when ntk ≠ 1 or pi_floor), proportional attention as the family's `proportional` config. A family
        refuses what it lacks before calling this (one line)."""
        from ..patches.rope import RopeScalingConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.text_dup import TextDuplicationConfig

        out: list[PatchConfig] = []
        if toolkit.text_duplication:
            out.append(TextDuplicationConfig())
        if toolkit.shifted_patches and shifted_patches:
            out.append(ShiftedPatchesConfig(frame=toolkit.shift_frame))
        if toolkit.rope is not None:
            out.append(toolkit.rope)
        elif toolkit.ntk != 1.0 or toolkit.pi_floor:
            out.append(RopeScalingConfig(ntk=toolkit.ntk, pi_floor=toolkit.pi_floor))
        if toolkit.proportional_attention:
            out.append(proportional())
        return out

    def unet_patches(self, toolkit, strict: bool = True) -> list[PatchConfig]:
        """This family's patch configs for the U-Net method switches (`hiresflow.patches.unet_toolkit.UNetToolkit`).

        Families without a U-Net: no patches when nothing is switched on or `strict` is False (FreeScale then
        runs its cascade only), else a one-line error."""
        if toolkit.empty or not strict:
            return []
        raise ValueError(f"RAU-Net, MSW-MSA, dilated convolution, scale fusion and FreeU are U-Net methods; "
                         f"{self.name!r} is a {self.family} transformer; use hiflow, imax or another recipe")

    def rope_axes(self) -> list:
        """The rotary embedding's axes (`hiresflow.patches.rope_frequencies.RopeAxis`: columns, base, positions
        at the native size). Families without RoPE refuse the RoPE options with one line."""
        raise ValueError(f"{self.name!r} is a {self.family} model without a rotary position embedding, so "
                         f"DyPE and the RoPE extrapolation options do not apply to it; switch them off (dype=False)")

    @contextmanager
    def rope_applied(self, transform, sigma: float | None) -> Iterator[None]:
        """For one model call: the family's rotary embedding with `transform`'s frequencies at step σ
        (`hiresflow.patches.rope`), the stock embedding back afterwards, also after an error."""
        self.rope_axes()  # the one-line refusal of families without RoPE
        raise NotImplementedError(f"{self.family} declares RoPE axes but no embedder swap")
        yield  # pragma: no cover

    def text_tokens(self, cond: Any) -> int:
        """Length of one copy of the encoded text sequence."""
        return int(cond.prompt_embeds.shape[1])

    def duplicate_text(self, cond: Any, kh: int, kw: int, tile: tuple[int, int]) -> Any:
        """The conditioning with its text sequence repeated kh·kw times (I-Max text duplication)."""
        raise ValueError(f"text duplication is not defined for {self.family} models; switch it off")

    # ------------------------------------------------------------ cost (hiresflow.resources)

    def call_bytes(self, latent_hw: tuple[int, int], text_copies: int = 1) -> int:
        """Peak activation bytes of one denoiser call on a latent of `latent_hw`."""
        raise NotImplementedError

    def call_flops(self, latent_hw: tuple[int, int], text_copies: int = 1) -> float:
        """Floating-point operations of one velocity evaluation (all CFG branches) on a latent of `latent_hw`."""
        raise NotImplementedError

    # ------------------------------------------------------------ training

    @property
    def denoiser(self) -> torch.nn.Module:
        """The trainable network (transformer or U-Net)."""
        raise NotImplementedError

    def encode_prompts(self, prompts: list[str]) -> Any:
        """A batch of prompts as one conditioning with batch dimension len(prompts) (no negative branch)."""
        raise NotImplementedError

    def training_loss(self, z0: torch.Tensor, cond: Any, generator: torch.Generator, **options) -> torch.Tensor:
        """The family's denoising loss on normalised clean latents z0 (gradients flow into `denoiser`)."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss")

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        return self.codec.encode(images, generator, sample)

    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        return self.codec.decode(latents, clamp=clamp)

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


# The modules of `hiresflow.models` that hold the built-in adapters; a new family adds its module here.
FAMILY_MODULES: tuple[str, ...] = ("flux", "sd", "sd3", "chroma", "zimage", "flux2", "qwenimage")


def adapter_classes() -> list[type[FlowModel]]:
    """Every adapter class of the built-in families (imported on demand)."""
    import importlib

    for module in FAMILY_MODULES:
        importlib.import_module(f"{__package__}.{module}")  # registers the subclasses

    out, todo = [], list(FlowModel.__subclasses__())
    while todo:
        c = todo.pop()
        todo.extend(c.__subclasses__())
        if "family" in c.__dict__:
            out.append(c)
    return out


def supported_pipelines() -> list[str]:
    """The diffusers pipeline class names some adapter wraps, sorted."""
    return sorted({name for c in adapter_classes() for name in c.pipeline_classes})
