"""Adapter for diffusers `StableDiffusion3Pipeline` (MMDiT with a learned/cropped 2-D positional embedding).

SD3 is a rectified flow in our convention: the transformer is called with timestep 1000·σ and predicts
v = ε − x0 on unpacked latents [B, 16, h, w] (it patchifies internally, patch 2). Classifier-free guidance is
one batched call: v = v_u + w·(v_c − v_u). σ grids (`SD3FlowModel.schedule`): the pipeline passes no `sigmas`, so
`FlowMatchEulerDiscreteScheduler.set_timesteps(N)` spaces N values linearly from σ_max = 1 to the scheduler's
smallest training σ (σ_min = shift(1/1000) = 0.002994 at shift 3) and shifts them again — static shift (3.0 on
SD3 and SD3.5), or the dynamic μ rule when the config enables it — then appends 0.

SD3.5 (large, medium, large-turbo) runs on the same pipeline and adapter: its transformer config adds QK RMS-norm
(`qk_norm="rms_norm"`, large and medium) and, on medium, a second image-only attention in the first 13 blocks
(`dual_attention_layers`); both live inside `SD3Transformer2DModel`, so nothing here depends on them (the SD3
patches find every attention, `attn2` included, and scale the q-norm output). The pipeline's skip-layer guidance
(`skip_guidance_layers`, recommended [7, 8, 9] on SD3.5 medium) is `SkipLayerGuidance`, off by default as in the
pipeline:  v = v_u + w·(v_c − v_u) + s·(v_c − v_skip),  v_skip the prompt's velocity with the listed blocks skipped,
at step i of N when N·start < i < N·stop and w > 1 (`StableDiffusion3Pipeline.__call__`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..flow.schedule import exponential_shift, flux_mu, static_shift, validate_steps
from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel

__all__ = ["SD3FlowModel", "SD3Cond", "SkipLayerGuidance"]


@dataclass(frozen=True)
class SkipLayerGuidance:
    """The SD3 pipeline's skip-layer guidance: `layers` (transformer block indices, the pipeline's
    `skip_guidance_layers`), `scale`, `start`, `stop` (fractions of the step count; pipeline defaults 2.8, 0.01,
    0.2). Active at step i of N when N·start < i < N·stop, strictly, as the pipeline compares."""

    layers: tuple[int, ...]
    scale: float = 2.8
    start: float = 0.01
    stop: float = 0.2

    def __post_init__(self) -> None:
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else (self.layers,)
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers):
            raise ValueError(f"skip-layer guidance layers must be block indices >= 0, e.g. (7, 8, 9), got "
                             f"{self.layers!r}")
        object.__setattr__(self, "layers", layers)
        for name in ("scale", "start", "stop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"skip-layer guidance {name} must be a finite number, got {v!r}")

    def active(self, step: int, steps: int) -> bool:
        """Whether step `step` (0-based) of a `steps`-step schedule takes the skip-layer call."""
        return steps * self.start < step < steps * self.stop


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

    def __init__(self, pipe, name: str = "sd3", native: int | None = None, max_sequence_length: int = 256,
                 skip_layer_guidance: SkipLayerGuidance | None = None):
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
        self.train_timesteps = int(pipe.scheduler.config.get("num_train_timesteps", 1000))
        tok3 = getattr(pipe, "tokenizer_3", None)
        self.max_sequence_length = min(max_sequence_length, int(tok3.model_max_length)) if tok3 is not None \
            else max_sequence_length
        self.text_len = self.max_sequence_length + 77  # T5 tokens joined to the CLIP tokens
        self.cfg_batch = 2
        self.skip_layer_guidance = skip_layer_guidance

    def sigma_min(self, shift: float | None) -> float:
        """The smallest training σ of a `FlowMatchEulerDiscreteScheduler` with this config and static `shift`
        (None: dynamic shifting, no shift at construction), computed as its __init__ does, in float32."""
        t = torch.tensor(1.0, dtype=torch.float32) / self.train_timesteps
        if shift is not None:
            t = shift * t / (1 + (shift - 1) * t)
        return float(t.item())

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """The pipeline's grid: t = linspace(1, σ_min, N), then the static shift s·t/(1 + (s − 1)·t) or the dynamic
        μ shift, then 0. Explicit `shift`/`mu` win over the scheduler config and are read as a scheduler built
        with them (σ_min then follows that shift; dynamic μ: σ_min = 1/1000)."""
        validate_steps(steps)
        if shift is not None and mu is not None:
            raise ValueError("give either shift or mu, not both")
        if mu is None and shift is None:
            if self.dynamic_shift:
                mu = flux_mu(self.image_seq_len(size), self.shift_config)
            else:
                shift = self.static_shift
        lo = self.sigma_min(None if mu is not None else shift)
        t = torch.linspace(1.0, lo, steps, dtype=torch.float64) if steps > 1 else torch.ones(1, dtype=torch.float64)
        t = exponential_shift(t, mu) if mu is not None else static_shift(t, shift)
        return torch.cat([t, t.new_zeros(1)])

    @property
    def skip_layer_guidance(self) -> SkipLayerGuidance | None:
        """Skip-layer guidance (SD3.5), None (default) for off; set it on a loaded model to switch it on."""
        return self._slg

    @skip_layer_guidance.setter
    def skip_layer_guidance(self, slg: SkipLayerGuidance | None) -> None:
        if slg is not None:
            if not isinstance(slg, SkipLayerGuidance):
                raise ValueError(f"skip_layer_guidance must be a SkipLayerGuidance or None, got {type(slg).__name__}")
            n = int(self.transformer.config.num_layers)
            bad = [i for i in slg.layers if i >= n]
            if bad:
                raise ValueError(f"skip-layer guidance layers {bad} out of range: {self.name!r} has {n} transformer "
                                 f"blocks (0..{n - 1})")
        self._slg = slg

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
        v = v_u + scale * (v_c - v_u)
        slg = self.skip_layer_guidance
        # the pipeline's i and N: the step's index in the full σ grid and the grid's step count
        if slg is not None and scale > 1 and ctx is not None and \
                slg.active(ctx.index, ctx.index - ctx.step + ctx.n_steps):
            v_skip = self.transformer(hidden_states=x.to(self.dtype), timestep=t[:b],
                                      encoder_hidden_states=cond.prompt_embeds.expand(b, -1, -1).to(self.dtype),
                                      pooled_projections=cond.pooled.expand(b, -1).to(self.dtype),
                                      skip_layers=list(slg.layers), return_dict=False)[0].float()
            v = v + (v_c - v_skip) * slg.scale
        return v
