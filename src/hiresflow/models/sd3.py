"""Adapter for diffusers `StableDiffusion3Pipeline` (MMDiT with a learned/cropped 2-D positional embedding).

SD3 is a rectified flow in our convention: the transformer is called with timestep 1000·σ and predicts
v = ε − x0 on unpacked latents [B, 16, h, w] (it patchifies internally, patch 2). Classifier-free guidance is
one batched call: v = v_u + w·(v_c − v_u). σ grids: the scheduler's static shift (3.0 for SD3-medium), or its
dynamic μ rule when the config enables it, computed by `hiresflow.flow.schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel

__all__ = ["SD3FlowModel", "SD3Cond"]


@dataclass
class SD3Cond:
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor
    pooled: torch.Tensor
    negative_pooled: torch.Tensor


class SD3FlowModel(DiTFlowModel):
    family = "sd3"
    guidance_kind = "cfg"
    default_guidance = 7.0
    default_steps = 28

    def __init__(self, pipe, name: str = "sd3", native: int | None = None, max_sequence_length: int = 256):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        cfg = self.transformer.config
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        side = native or int(cfg.sample_size) * vae_scale
        self.geometry = LatentGeometry(channels=int(cfg.in_channels), vae_scale=vae_scale, patch=int(cfg.patch_size),
                                       native=(side, side))
        self.codec = VaeCodec(pipe.vae)
        self._read_scheduler(pipe.scheduler.config, default_shift=3.0)
        tok3 = getattr(pipe, "tokenizer_3", None)
        self.max_sequence_length = min(max_sequence_length, int(tok3.model_max_length)) if tok3 is not None \
            else max_sequence_length
        self.text_len = self.max_sequence_length + 77  # T5 tokens joined to the CLIP tokens
        self.cfg_batch = 2

    pipeline_classes = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline")

    @classmethod
    def handles(cls, pipe) -> bool:
        return type(pipe).__name__.startswith("StableDiffusion3") and hasattr(pipe, "transformer")

    @classmethod
    def patch_types(cls):
        from ..patches.sd3 import SD3PositionConfig, SD3ProportionalAttentionConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.text_dup import TextDuplicationConfig

        return (TextDuplicationConfig, ShiftedPatchesConfig, SD3PositionConfig, SD3ProportionalAttentionConfig)

    def toolkit_patches(self, toolkit) -> list:
        """Text duplication (plain repetition), shifted patches, the positional-table extension (always: grids
        beyond pos_embed_max_size fail otherwise) and proportional attention as query scaling. SD3 has no RoPE,
        so `ntk`, `pi_floor` and windowed attention have no SD3 form and are ignored; a RoPE extrapolation
        (`rope`: DyPE, YaRN, …) is refused with one line, since it is asked for by name."""
        from ..patches.sd3 import SD3PositionConfig, SD3ProportionalAttentionConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.text_dup import TextDuplicationConfig

        if toolkit.rope is not None:
            self.rope_axes()  # one line: SD3 has learned absolute positions, no RoPE
        out: list = []
        if toolkit.text_duplication:
            out.append(TextDuplicationConfig())
        if toolkit.shifted_patches:
            out.append(ShiftedPatchesConfig(frame=toolkit.shift_frame))
        out.append(SD3PositionConfig())
        if toolkit.proportional_attention:
            out.append(SD3ProportionalAttentionConfig())
        return out

    def duplicate_text(self, cond: SD3Cond, kh: int, kw: int, tile: tuple[int, int]) -> SD3Cond:
        """Plain repetition of the joint text sequence (SD3 has no text position ids)."""
        from dataclasses import replace

        k = kh * kw
        return replace(cond, prompt_embeds=cond.prompt_embeds.repeat(1, k, 1),
                       negative_embeds=cond.negative_embeds.repeat(1, k, 1))

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> SD3Cond:
        pe, ne, pooled, npooled = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompt or None,
            max_sequence_length=self.max_sequence_length,
        )
        return SD3Cond(pe, ne, pooled, npooled)

    @torch.no_grad()
    def velocity(self, x, sigma, cond: SD3Cond, *, guidance=None, ctx=None):
        b = x.shape[0]
        scale = self.default_guidance if guidance is None else float(guidance)
        text = torch.cat([cond.negative_embeds.expand(b, -1, -1), cond.prompt_embeds.expand(b, -1, -1)])
        pooled = torch.cat([cond.negative_pooled.expand(b, -1), cond.pooled.expand(b, -1)])
        t = torch.full((2 * b,), 1000.0 * sigma, device=self.device, dtype=self.dtype)
        out = self.transformer(hidden_states=torch.cat([x, x]).to(self.dtype), timestep=t,
                               encoder_hidden_states=text.to(self.dtype), pooled_projections=pooled.to(self.dtype),
                               return_dict=False)[0].float()
        v_u, v_c = out.chunk(2)
        return v_u + scale * (v_c - v_u)
