"""Adapter for diffusers `ChromaPipeline` (Chroma1: FLUX.1-schnell's MMDiT without guidance embedding, T5 only).

Facts read from diffusers 0.42.1 (`pipelines/chroma/pipeline_chroma.py`, `models/transformers/transformer_chroma.py`):

- Latents: the FLUX.1 layout — VAE factor 2^(levels − 1) = 8, 16 latent channels, 2×2 packing into tokens of
  4·16 = 64 channels (`_pack_latents`, `transformer.config.in_channels // 4`), so `pack_latents`/`unpack_latents`
  and the image position ids (0, r, c) of `hiresflow.models.flux` apply unchanged. VAE normalisation
  z = (E(x) − shift_factor)·scaling_factor (FLUX.1's VAE: 0.1159 / 0.3611), read from the VAE config.
- σ rule: `sigmas = linspace(1, 1/N, N)`, μ = `calculate_shift(image_seq_len, …)` from the scheduler config
  (base/max image seq len, base/max shift), passed to `FlowMatchEulerDiscreteScheduler.set_timesteps`, which uses
  μ only when `use_dynamic_shifting` is set (else its static `shift`): exactly `DiTFlowModel.schedule`.
- Timestep: the pipeline calls the transformer with `timestep = t/1000`, t = 1000·σ (float32, cast to the latent
  dtype), and the transformer multiplies by 1000 again; its output is the flow velocity v = ε − x0 (the Euler step
  x ← x + (σ_next − σ)·v), our convention — no sign change.
- Guidance: no guidance embedding (the distilled modulation approximator sees timestep 0-guidance only), so true
  classifier-free guidance with a negative prompt (default ""), two transformer calls per step,
  v = v_neg + w·(v_pos − v_neg), applied only when w > 1 (`do_classifier_free_guidance`); pipeline default w = 5,
  35 steps.
- Text: T5 only (`encode_prompt` → embeddings, text ids (0, 0, 0), attention mask; no pooled vector). The T5
  tokens are encoded with the tokenizer's mask, then every padding token except the first is masked
  (`mask = arange(T) <= n_tokens`, in the text encoder's dtype). The pipeline extends that mask by ones over the
  image tokens (`_prepare_attention_mask`, a float/bool concatenation → float), and each block turns it into
  mask_q·mask_k, which diffusers' attention adds to the logits (a float mask): the adapter builds the same tensor
  per call (`attention_mask`) so every patch sees the pipeline's own masking.
- Native size: `default_sample_size` 128 × VAE factor 8 = 1024² (Chroma1-HD), overridable by `native=`.
- RoPE: `FluxPosEmbed(theta=10000, axes_dims_rope)`, (16, 56, 56) on Chroma1, ids (index, row, column): the FLUX.1
  adapter's `rope_axes` / `rope_applied` apply unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .base import LatentGeometry, VaeCodec
from .flux import FluxFlowModel, image_ids, pack_latents, unpack_latents

__all__ = ["ChromaFlowModel", "ChromaCond"]


@dataclass
class ChromaCond:
    """One prompt's T5 embeddings [B, T, D], text ids [T, 3] and text attention mask [B, T] (the pipeline's:
    real tokens and the first padding token 1, the rest 0), with the negative prompt's likewise."""

    prompt_embeds: torch.Tensor
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    negative: "ChromaCond | None" = None


class ChromaFlowModel(FluxFlowModel):
    """Chroma on the FLUX.1 adapter's latent layout and RoPE, with the pipeline's T5 mask and true CFG."""

    family = "chroma"
    guidance_kind = "cfg"
    default_guidance = 5.0  # ChromaPipeline.__call__ default
    default_steps = 35  # ChromaPipeline.__call__ default
    pipeline_classes = ("ChromaPipeline", "ChromaImg2ImgPipeline", "ChromaInpaintPipeline")

    def __init__(self, pipe, name: str = "chroma", max_sequence_length: int | None = None):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        native = int(getattr(pipe, "default_sample_size", 128)) * vae_scale
        patch = 2  # ChromaPipeline._pack_latents: 2×2 latent pixels per token
        channels = int(self.transformer.config.in_channels) // (patch * patch)
        self.geometry = LatentGeometry(channels=channels, vae_scale=vae_scale, patch=patch, native=(native, native))
        self.codec = VaeCodec(pipe.vae)
        self._read_scheduler(pipe.scheduler.config, default_shift=1.0)
        self.embedded_guidance = False
        self.max_sequence_length = max_sequence_length or min(512, int(pipe.tokenizer.model_max_length))
        self.text_len = self.max_sequence_length
        self.cfg_calls = 2

    @classmethod
    def handles(cls, pipe) -> bool:
        """Chroma pipelines: one of `pipeline_classes`, or any `Chroma*Pipeline` around a
        `ChromaTransformer2DModel`."""
        transformer = getattr(pipe, "transformer", None)
        return type(pipe).__name__ in cls.pipeline_classes or (
            type(pipe).__name__.startswith("Chroma") and type(transformer).__name__ == "ChromaTransformer2DModel")

    @classmethod
    def patch_types(cls):
        """FLUX.1's patches except windowed attention, whose processor drops Chroma's text mask."""
        from ..patches.windowed_attention import WindowedAttentionConfig

        return tuple(t for t in super().patch_types() if t is not WindowedAttentionConfig)

    def toolkit_patches(self, toolkit) -> list:
        """As FLUX.1 (text duplication with grid ids and the mask repeated per copy, shifted patches, NTK/PI or
        a RoPE extrapolation, proportional attention on the rotary tables); windowed attention is refused."""
        if toolkit.windowed_attention is not None:
            raise ValueError("windowed attention is not available for chroma models: its attention processor "
                             "ignores Chroma's T5 padding mask; leave windowed_attention unset")
        return super().toolkit_patches(toolkit)

    # ------------------------------------------------------------ text

    @torch.no_grad()
    def _encode_both(self, prompt, negative_prompt) -> ChromaCond:
        pe, ids, mask, npe, nids, nmask = self.pipe.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt, device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, max_sequence_length=self.max_sequence_length,
        )
        return ChromaCond(pe, ids, mask, negative=ChromaCond(npe, nids, nmask))

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> ChromaCond:
        """The pipeline's own `encode_prompt` (negative prompt "" by default, as the pipeline)."""
        return self._encode_both(prompt, negative_prompt or "")

    def encode_prompts(self, prompts: list[str]) -> ChromaCond:
        cond = self._encode_both(list(prompts), [""] * len(prompts))
        return replace(cond, negative=None)

    def duplicate_text(self, cond: ChromaCond, kh: int, kw: int, tile: tuple[int, int]) -> ChromaCond:
        """I-Max layout as FLUX.1 (copy (i, j) with text ids offset to its native tile's origin); each copy keeps
        its own padding mask, so the joint mask is the prompt's mask repeated kh·kw times."""
        from ..patches.text_dup import duplicate_flux_text

        pe, ids = duplicate_flux_text(cond.prompt_embeds, cond.text_ids, kh, kw, tile)
        neg = self.duplicate_text(cond.negative, kh, kw, tile) if cond.negative is not None else None
        return replace(cond, prompt_embeds=pe, text_ids=ids, text_mask=cond.text_mask.repeat(1, kh * kw),
                       negative=neg)

    # ------------------------------------------------------------ model call

    @staticmethod
    def attention_mask(cond: ChromaCond, batch: int, image_tokens: int) -> torch.Tensor:
        """[B, T + N]: the text mask followed by ones over the image tokens, concatenated as
        `ChromaPipeline._prepare_attention_mask` does (a bool block joined to the text mask's float dtype)."""
        text = cond.text_mask.expand(batch, -1) if cond.text_mask.shape[0] == 1 else cond.text_mask
        ones = torch.ones(batch, image_tokens, device=text.device, dtype=torch.bool)
        return torch.cat([text, ones], dim=1)

    def _timestep(self, sigma, batch: int) -> torch.Tensor:
        """σ as the pipeline hands it over: t = 1000·σ in float32 (the scheduler's timesteps), cast to the latent
        dtype, divided by 1000."""
        if isinstance(sigma, torch.Tensor):
            t = sigma.to(device=self.device, dtype=torch.float32) * 1000
        else:
            t = torch.full((batch,), float(sigma), device=self.device, dtype=torch.float32) * 1000
        return t.to(self.dtype) / 1000

    def _call(self, x, sigma, cond: ChromaCond, guidance=None) -> torch.Tensor:
        """One transformer call on unpacked latents; `sigma` a float or a per-sample tensor [B]."""
        b, _, h, w = x.shape
        p = self.geometry.patch
        tokens = pack_latents(x.to(self.dtype), p)
        ids = image_ids(h // p, w // p, self.device, self.dtype)
        pe = cond.prompt_embeds.expand(b, -1, -1) if cond.prompt_embeds.shape[0] == 1 else cond.prompt_embeds
        mask = self.attention_mask(cond, b, tokens.shape[1])
        out = self.transformer(
            hidden_states=tokens, timestep=self._timestep(sigma, b), encoder_hidden_states=pe.to(self.dtype),
            txt_ids=cond.text_ids, img_ids=ids, attention_mask=mask, return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w, p)

    @torch.no_grad()
    def velocity(self, x, sigma, cond: ChromaCond, *, guidance=None, ctx=None):
        """v = v_neg + w·(v_pos − v_neg) when w > 1 (two calls), else the prompt's v alone (the pipeline's
        `do_classifier_free_guidance`)."""
        v = self._call(x, sigma, cond)
        scale = float(guidance if guidance is not None else self.default_guidance)
        if cond.negative is not None and scale > 1.0:
            v_neg = self._call(x, sigma, cond.negative)
            v = v_neg + scale * (v - v_neg)
        return v
