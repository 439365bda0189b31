"""Adapter for diffusers `FluxPipeline`: packed 2×2 latent tokens, RoPE position ids, guidance embedding.

Flux is already a rectified flow in our convention (the transformer is called with timestep σ and predicts
v = ε − x0), so the adapter only packs/unpacks latents and builds the position ids:
image token (r, c) of the packed grid gets id (0, r, c); text tokens get (0, 0, 0) (diffusers layout).
Models without a guidance embedding get true classifier-free guidance against the empty prompt instead.
Training (`training_loss`): rectified flow, x_σ = (1−σ)·x0 + σ·ε, target v = ε − x0, σ = sigmoid(m + s·n) with
n ~ N(0, 1) (logit-normal), through the same transformer call as sampling.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn.functional as F

from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel

__all__ = ["FluxFlowModel", "FluxCond", "pack_latents", "unpack_latents", "image_ids"]


def pack_latents(x: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """[B, C, h, w] → [B, (h/p)(w/p), C·p·p] in diffusers' channel order (C, py, px)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpack_latents(tokens: torch.Tensor, h: int, w: int, patch: int = 2) -> torch.Tensor:
    """Inverse of `pack_latents` for a latent of spatial size h×w."""
    b, n, d = tokens.shape
    c = d // (patch * patch)
    x = tokens.view(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


@lru_cache(maxsize=32)
def _image_ids(rows: int, cols: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3).to(device=device, dtype=dtype)


def image_ids(rows: int, cols: int, device, dtype=torch.float32) -> torch.Tensor:
    """Position ids (0, r, c) of a rows×cols packed token grid, [rows·cols, 3]."""
    return _image_ids(int(rows), int(cols), str(device), dtype)


@dataclass
class FluxCond:
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor
    negative: "FluxCond | None" = None


class FluxFlowModel(DiTFlowModel):
    family = "flux"

    def __init__(self, pipe, name: str = "flux", max_sequence_length: int | None = None):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        latent_ch = pipe.vae.config.latent_channels
        native = int(getattr(pipe, "default_sample_size", 128)) * vae_scale
        self.geometry = LatentGeometry(channels=latent_ch, vae_scale=vae_scale, patch=2, native=(native, native))
        self.codec = VaeCodec(pipe.vae)
        self._read_scheduler(pipe.scheduler.config, default_shift=1.0)
        self.embedded_guidance = bool(self.transformer.config.guidance_embeds)
        self.guidance_kind = "embedded" if self.embedded_guidance else "cfg"
        self.default_guidance = 3.5 if self.embedded_guidance else 1.0
        self.max_sequence_length = max_sequence_length or min(512, int(pipe.tokenizer_2.model_max_length))
        self.text_len = self.max_sequence_length
        self.cfg_calls = 1 if self.embedded_guidance else 2

    @torch.no_grad()
    def _encode(self, prompt: str) -> FluxCond:
        pe, pooled, text_ids = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=self.device, num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        return FluxCond(pe, pooled, text_ids)

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> FluxCond:
        cond = self._encode(prompt)
        if not self.embedded_guidance:
            cond.negative = self._encode(negative_prompt)
        return cond

    pipeline_classes = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxControlNetPipeline")

    @classmethod
    def handles(cls, pipe) -> bool:
        """FLUX.1 pipelines (any `Flux*Pipeline` around a `FluxTransformer2DModel`; FLUX.2 has its own adapter)."""
        transformer = getattr(pipe, "transformer", None)
        return type(pipe).__name__.startswith("Flux") and type(transformer).__name__ == "FluxTransformer2DModel"

    @classmethod
    def patch_types(cls):
        from ..patches.attention import ProportionalAttentionConfig
        from ..patches.rope import RopeExtrapolationConfig, RopeScalingConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.text_dup import TextDuplicationConfig
        from ..patches.ultraimage import UltraImageAttentionConfig, UltraImageRopeConfig
        from ..patches.windowed_attention import WindowedAttentionConfig

        return (TextDuplicationConfig, ShiftedPatchesConfig, RopeScalingConfig, RopeExtrapolationConfig,
                ProportionalAttentionConfig, WindowedAttentionConfig, UltraImageRopeConfig, UltraImageAttentionConfig)

    def rope_axes(self) -> list:
        """Flux ids are (index, row, column): the index axis (text ids, I-Max's copies) is never extrapolated;
        rows and columns span the native latent grid in tokens (64 × 64 for FLUX.1 at 1024², the official DyPE's
        hard-coded `base_resolution // patch_size`; here read from the model's native size)."""
        from ..patches.rope_frequencies import RopeAxis

        pe = self.transformer.pos_embed
        g = self.geometry
        lengths = (None, g.native[0] // g.multiple, g.native[1] // g.multiple)
        return [RopeAxis(int(d), float(pe.theta), lengths[i] if i < 3 else None) for i, d in enumerate(pe.axes_dim)]

    @contextmanager
    def rope_applied(self, transform, sigma):
        from ..patches.base import swapped
        from ..patches.rope import RotaryAxesEmbed

        with swapped(self.transformer, "pos_embed", RotaryAxesEmbed(self.rope_axes(), transform, sigma)):
            yield

    def toolkit_patches(self, toolkit) -> list:
        """Every switch: text duplication (grid ids), shifted patches, NTK/PI RoPE, proportional attention on
        the rotary tables, windowed attention (told whether the tables carry the proportional scale)."""
        from ..patches.attention import ProportionalAttentionConfig
        from ..patches.windowed_attention import WindowedAttentionConfig

        out = self.rotary_toolkit_patches(toolkit, ProportionalAttentionConfig)
        if toolkit.windowed_attention is not None:
            out.append(WindowedAttentionConfig(start=toolkit.windowed_attention,
                                               proportional=toolkit.proportional_attention))
        return out

    def duplicate_text(self, cond: FluxCond, kh: int, kw: int, tile: tuple[int, int]) -> FluxCond:
        """I-Max layout: copy (i, j) carries text ids offset to its native tile's origin (tile·(i, j))."""
        from ..patches.text_dup import duplicate_flux_text

        pe, ids = duplicate_flux_text(cond.prompt_embeds, cond.text_ids, kh, kw, tile)
        neg = self.duplicate_text(cond.negative, kh, kw, tile) if cond.negative is not None else None
        return replace(cond, prompt_embeds=pe, text_ids=ids, negative=neg)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    def encode_prompts(self, prompts: list[str]) -> FluxCond:
        with torch.no_grad():
            pe, pooled, text_ids = self.pipe.encode_prompt(
                prompt=list(prompts), prompt_2=None, device=self.device, num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length)
        return FluxCond(pe, pooled, text_ids)

    def training_loss(self, z0, cond: FluxCond, generator, *, logit_mean: float = 0.0, logit_std: float = 1.0,
                      **_) -> torch.Tensor:
        """‖v_θ(x_σ, σ) − (ε − x0)‖² with σ = sigmoid(logit_mean + logit_std·n), n ~ N(0, 1)."""
        b = z0.shape[0]
        eps = torch.randn(z0.shape, generator=generator)
        sigma = torch.sigmoid(logit_mean + logit_std * torch.randn((b,), generator=generator))
        s = sigma.view(b, 1, 1, 1)
        x = (1 - s) * z0 + s * eps
        out = self._call(x, sigma, cond, None)
        return F.mse_loss(out, eps - z0)

    def _call(self, x, sigma, cond: FluxCond, guidance) -> torch.Tensor:
        """One transformer call on unpacked latents; `sigma` a float or a per-sample tensor [B]."""
        b, _, h, w = x.shape
        p = self.geometry.patch
        tokens = pack_latents(x.to(self.dtype), p)
        ids = image_ids(h // p, w // p, self.device, x.dtype if x.dtype.is_floating_point else torch.float32)
        if isinstance(sigma, torch.Tensor):
            t = sigma.to(device=self.device, dtype=self.dtype)
        else:
            t = torch.full((b,), sigma, device=self.device, dtype=self.dtype)
        g = None
        if self.embedded_guidance:
            g = torch.full((b,), float(guidance if guidance is not None else self.default_guidance),
                           device=self.device, dtype=torch.float32)
        pe = cond.prompt_embeds.expand(b, -1, -1) if cond.prompt_embeds.shape[0] == 1 else cond.prompt_embeds
        pooled = cond.pooled.expand(b, -1) if cond.pooled.shape[0] == 1 else cond.pooled
        out = self.transformer(
            hidden_states=tokens, timestep=t, guidance=g, pooled_projections=pooled.to(self.dtype),
            encoder_hidden_states=pe.to(self.dtype), txt_ids=cond.text_ids, img_ids=ids.to(self.dtype),
            return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w, p)

    @torch.no_grad()
    def velocity(self, x, sigma, cond: FluxCond, *, guidance=None, ctx=None):
        v = self._call(x, sigma, cond, guidance)
        scale = guidance if guidance is not None else self.default_guidance
        if not self.embedded_guidance and cond.negative is not None and scale != 1.0:
            v_neg = self._call(x, sigma, cond.negative, None)
            v = v_neg + scale * (v - v_neg)
        return v
