"""Adapter for diffusers FLUX.2: `Flux2Pipeline` ([dev]) and `Flux2KleinPipeline` ([klein] 4B / 9B).

Every fact below is read from diffusers 0.42 `pipelines/flux2/pipeline_flux2.py`, `pipeline_flux2_klein.py`,
`models/transformers/transformer_flux2.py` and `models/autoencoders/autoencoder_kl_flux2.py`.

Latents. `AutoencoderKLFlux2` encodes to 32 channels at 1/8 of the image side; the pipeline patchifies them 2×2
(`_patchify_latents`: channel order (c, py, px)) to 128 channels at 1/16 and normalises each of those 128
channels with the VAE's batch-norm running statistics, z = (patchify(E(x)) − μ_bn) / √(σ²_bn + ε_bn)
(`_encode_vae_image`; decoding inverts it before `_unpatchify_latents`). Its noise is drawn directly in that
128-channel space (`prepare_latents`), and the transformer (`patch_size` 1) takes one token per 128-channel pixel.
Our unpacked latent is therefore the normalised 128-channel grid [B, 128, H/16, W/16] with patch 1
(`LatentGeometry(channels=128, vae_scale=16, patch=1)`), not the 32-channel grid with patch 2: the batch norm is
per (channel, py, px), so on the 32-channel grid neighbouring latent pixels carry different normalisations and
a spatial resize or blend (every recipe's upsampling, DemoFusion's views, HiFlow's references) would mix
statistics; on the 128-channel grid the normalisation is a per-channel affine map, which commutes with any
interpolation whose weights sum to 1, and packing is a plain reshape — exactly invertible
(`Flux2Codec.normalise` / `denormalise`), and the same noise tensor as the pipeline's `latents=`.

Positions. Image token (r, c) has id (t, h, w, l) = (0, r, c, 0) (`_prepare_latent_ids`); text token l has
(0, 0, 0, l) for every one of the `max_sequence_length` positions — FLUX.2 drops no template or padding tokens
(`_prepare_text_ids`). `Flux2PosEmbed` embeds the image ids and the text ids in two calls and concatenates
[text; image]; the rows are independent, so the adapter passes the joint table [text; image] as `img_ids` and an
empty `txt_ids` (`_JointRows` answers the empty call), which gives the same table bit for bit and lets every
rotary patch see the whole sequence in one call, as on FLUX.1 (its positions per axis, its length).
RoPE: 4 axes of `axes_dims_rope` = (32, 32, 32, 32) columns, θ = `rope_theta` = 2000, frequencies in float64,
cos/sin interleaved; axes h and w extrapolate (native length = native side / 16 tokens, 64 at 1024²), t and l
never do and stay stock under every transform (`SpatialAxesOnly`): FLUX.1's NTK/PI RoPE of the HiFlow and I-Max
codes scales its index axis too, but every FLUX.1 id is 0 there, whereas FLUX.2's l axis carries the text order,
which no resolution method means to change.

Time and velocity. The scheduler's timestep is 1000·σ and the pipeline calls the transformer with timestep/1000,
i.e. σ (the transformer multiplies by 1000 again); its output is the flow velocity v = ε − x0
(`FlowMatchEulerDiscreteScheduler.step`: x ← x + (σ_next − σ)·v), our convention unchanged.

σ rule. σ_i = linspace(1, 1/N, N) shifted by the scheduler (dynamic shifting: exponential time shift with μ, or
the config's static `shift` without it), then 0, where μ = `compute_empirical_mu(image_seq_len, N)` — FLUX.2's
rule, not FLUX.1's `calculate_shift` (`empirical_mu` below; it depends on the step count below 4300 tokens).

Guidance. [dev]: a guidance-distilled embedding; the pipeline passes guidance_scale (default 4.0) to every call,
no classifier-free guidance. [klein]: no embedding (`guidance=None`); true CFG v = v_neg + w·(v − v_neg) against
the empty prompt when w > 1 and the pipeline's `is_distilled` is False (base models, default w = 4);
step-distilled models (`is_distilled` True) run one call and ignore w (4 steps, the published setting).

Text. `encode_prompt` is the pipeline's own (Mistral3 hidden layers 10, 20, 30 for [dev]; Qwen3 layers 9, 18, 27
for [klein], each stacked to 3× the text width); `max_sequence_length` = min(512, the tokenizer's
`model_max_length`), 512 being the pipelines' default.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from ..flow.schedule import flow_sigmas
from ..patches.rope_frequencies import AxisFrequencies, FrequencyTransform, base_frequencies
from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel

__all__ = ["Flux2FlowModel", "Flux2Cond", "Flux2Codec", "SpatialAxesOnly", "empirical_mu", "patchify", "unpatchify",
           "latent_ids"]


def patchify(raw: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] → [B, 4C, h/2, w/2], channel order (c, py, px) (`Flux2Pipeline._patchify_latents`)."""
    b, c, h, w = raw.shape
    x = raw.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unpatchify(z: torch.Tensor) -> torch.Tensor:
    """Inverse of `patchify` (`Flux2Pipeline._unpatchify_latents`)."""
    b, c, h, w = z.shape
    x = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


def latent_ids(rows: int, cols: int, device=None) -> torch.Tensor:
    """Ids (0, r, c, 0) of a rows×cols token grid in row-major order, [rows·cols, 4] int64
    (`Flux2Pipeline._prepare_latent_ids`)."""
    return torch.cartesian_prod(torch.arange(1), torch.arange(rows), torch.arange(cols),
                                torch.arange(1)).to(device)


def empirical_mu(image_seq_len: int, num_steps: int) -> float:
    """FLUX.2's μ (`compute_empirical_mu`, from BFL's flux2 `sampling.py`): two lines in the token count L,
    μ₂₀₀(L) = 1.6927e-4·L + 0.45667 and μ₁₀(L) = 8.7381e-5·L + 1.89833, interpolated linearly in the step count N
    (μ₁₀ at N = 10, μ₂₀₀ at N = 200) for L ≤ 4300; above 4300 tokens μ = μ₂₀₀(L) for every N."""
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    return float(a * num_steps + (m_200 - 200.0 * a))


class Flux2Codec(VaeCodec):
    """Images in [0, 1] ↔ normalised 128-channel latents: z = (patchify(E(x)) − μ_bn)/√(σ²_bn + ε_bn) and back
    (`Flux2Pipeline._encode_vae_image` and the decode at the end of `__call__`). Encodes take the posterior mode
    as the pipeline does (or a sample); tiling as `VaeCodec` (the image side is 16 × the latent side)."""

    def __init__(self, vae, tile_above: int | None = 2048):
        super().__init__(vae, tile_above)
        self.scaling, self.shift = 1.0, 0.0  # FLUX.2's VAE has no scaling/shift factor: the batch norm replaces it

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(like.device,
                                                                                                 like.dtype)
        return mean, std

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        z = patchify(raw)
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised 128-channel latents → the raw 32-channel latents the VAE decodes."""
        mean, std = self._stats(z)
        return unpatchify(z * std + mean)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        vae = self.vae
        self._tiling(max(z.shape[-2:]) * self.factor * 2)
        raw = self.denormalise(z.float()).to(device=vae.device, dtype=vae.dtype)
        if self.mode == "always" and hasattr(vae, "tiled_decode"):
            img = vae.tiled_decode(raw).sample
        else:
            img = vae.decode(raw).sample
        img = (img.float() + 1) / 2
        return img.clamp(0, 1) if clamp else img


class SpatialAxesOnly(FrequencyTransform):
    """`inner`'s frequencies on the axes that extrapolate (h, w), the stock ones on the others (t, l)."""

    name: ClassVar[str] = "spatial-only"

    def __init__(self, inner: FrequencyTransform):
        self.inner = inner
        self.needs_sigma = inner.needs_sigma

    def frequencies(self, axes, call):
        out = self.inner.frequencies(axes, call)
        return [f if a.native_len is not None else AxisFrequencies(base_frequencies(a.dim, a.theta))
                for a, f in zip(axes, out)]


class _JointRows(nn.Module):
    """Wraps whatever rotary embedder is in place for one transformer call that receives the joint id table as
    `img_ids` and an empty `txt_ids`: the joint call goes to the embedder, the empty one returns empty tables of
    the same width (so patches see one call over the whole sequence)."""

    def __init__(self, inner: nn.Module, width: int):
        super().__init__()
        self.inner, self.width = inner, width

    def forward(self, ids: torch.Tensor):
        if ids.shape[0] == 0:
            empty = torch.zeros(0, self.width, device=ids.device, dtype=torch.float32)
            return empty, empty
        return self.inner(ids)


@dataclass
class Flux2Cond:
    prompt_embeds: torch.Tensor  # [B, T, 3·text width]
    text_ids: torch.Tensor  # [T, 4] (0, 0, 0, l); I-Max copies offset in h and w
    negative: "Flux2Cond | None" = None


class Flux2FlowModel(DiTFlowModel):
    """FLUX.2 [dev] (`Flux2Pipeline`) and [klein] (`Flux2KleinPipeline`); `variant` says which, read from the
    pipeline class, and the klein pipeline's `is_distilled` decides true CFG (module docstring)."""

    family = "flux2"
    pipeline_classes = ("Flux2Pipeline", "Flux2KleinPipeline")
    default_steps = 50  # both pipelines' num_inference_steps default

    def __init__(self, pipe, name: str = "flux2", max_sequence_length: int | None = None):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        vae = pipe.vae
        patch = tuple(getattr(vae.config, "patch_size", (2, 2)))
        if patch != (2, 2) or int(self.transformer.config.in_channels) != 4 * int(vae.config.latent_channels):
            raise ValueError(f"{name!r}: FLUX.2 needs a VAE with a 2x2 latent patch whose {vae.config.latent_channels}"
                             f"·4 channels match the transformer's in_channels ({self.transformer.config.in_channels});"
                             f" load a matching FLUX.2 folder")
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        native = int(getattr(pipe, "default_sample_size", 128)) * vae_scale  # the pipelines' 1024 px default
        self.geometry = LatentGeometry(channels=int(self.transformer.config.in_channels), vae_scale=2 * vae_scale,
                                       patch=1, native=(native, native))
        self.codec = Flux2Codec(vae)
        self._read_scheduler(pipe.scheduler.config, default_shift=3.0)
        self.time_shift_type = str(pipe.scheduler.config.get("time_shift_type", "exponential"))
        self.variant = "klein" if type(pipe).__name__ == "Flux2KleinPipeline" else "dev"
        if self.variant == "dev":
            self.distilled = False
            self.embedded_guidance = bool(self.transformer.config.guidance_embeds)
            self.true_cfg = False
        else:
            self.distilled = bool(pipe.config.get("is_distilled", False))
            self.embedded_guidance = False  # the klein pipeline always passes guidance=None
            self.true_cfg = not self.distilled
        self.guidance_kind = "embedded" if self.embedded_guidance else ("cfg" if self.true_cfg else "none")
        self.default_guidance = 4.0 if self.guidance_kind != "none" else None  # the pipelines' guidance_scale
        if self.distilled:
            self.default_steps = 4  # step-distilled [klein] (BFL's model card setting)
        tok = getattr(pipe.tokenizer, "tokenizer", pipe.tokenizer)  # [dev]'s processor wraps its tokenizer
        self.max_sequence_length = max_sequence_length or min(512, int(getattr(tok, "model_max_length", 512)))
        self.text_len = self.max_sequence_length
        self.cfg_calls = 2 if self.true_cfg else 1

    # ------------------------------------------------------------ text

    @torch.no_grad()
    def _encode(self, prompt) -> Flux2Cond:
        pe, text_ids = self.pipe.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                               max_sequence_length=self.max_sequence_length)
        return Flux2Cond(pe, text_ids[0])

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> Flux2Cond:
        """The pipeline's `encode_prompt`; with true CFG also the negative (the klein pipeline's is "")."""
        cond = self._encode(prompt)
        if self.true_cfg:
            cond.negative = self._encode(negative_prompt)
        return cond

    def encode_prompts(self, prompts: list[str]) -> Flux2Cond:
        return self._encode(list(prompts))

    def duplicate_text(self, cond: Flux2Cond, kh: int, kw: int, tile: tuple[int, int]) -> Flux2Cond:
        """I-Max's layout on FLUX.2's ids: copy (i, j) of the text sequence gets ids (0, tile_h·i, tile_w·j, l),
        the origin of its native tile in h and w with its own sequence positions l (FLUX.1's copies get
        (0, tile_h·i, tile_w·j) the same way)."""
        from ..patches.text_dup import duplicate_flux_text

        pe, ids = duplicate_flux_text(cond.prompt_embeds, cond.text_ids, kh, kw, tile)
        neg = self.duplicate_text(cond.negative, kh, kw, tile) if cond.negative is not None else None
        return replace(cond, prompt_embeds=pe, text_ids=ids, negative=neg)

    # ------------------------------------------------------------ σ grid

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """Explicit `mu`/`shift` win; otherwise the pipeline's rule: μ = `empirical_mu(tokens of size, steps)`
        through the scheduler's time shift (exponential e^μ/(e^μ + 1/σ − 1), or linear μ/(μ + 1/σ − 1)) with
        dynamic shifting, else its static shift."""
        if mu is None and shift is None:
            if not self.dynamic_shift:
                return flow_sigmas(steps, shift=self.static_shift)
            m = empirical_mu(self.image_seq_len(size), steps)
            if self.time_shift_type == "linear":
                return flow_sigmas(steps, shift=m)
            return flow_sigmas(steps, mu=m)
        return flow_sigmas(steps, shift=shift, mu=mu)

    # ------------------------------------------------------------ patches

    @classmethod
    def patch_types(cls):
        from ..patches.attention import ProportionalAttentionConfig
        from ..patches.rope import RopeExtrapolationConfig, RopeScalingConfig
        from ..patches.text_dup import TextDuplicationConfig
        from ..patches.ultraimage import UltraImageRopeConfig

        return (TextDuplicationConfig, RopeScalingConfig, RopeExtrapolationConfig, ProportionalAttentionConfig,
                UltraImageRopeConfig)

    def toolkit_patches(self, toolkit) -> list:
        """Text duplication (I-Max layout on the 4-axis ids), the RoPE extrapolation (`rope`: DyPE, YaRN, NTK, PI)
        or else the NTK/PI RoPE, and proportional attention on the rotary tables (every table row scaled by √m:
        the adapter's joint-table call makes the row count the key length). Shifted patchification has no FLUX.2
        form and is left out: the transformer's patch is 1 token, and shifting the VAE's 2×2 patch by one
        32-channel pixel would move values across batch-norm channels with other statistics. Windowed attention
        (FLUX.1's attention processor) is refused with one line."""
        from ..patches.attention import ProportionalAttentionConfig

        if toolkit.windowed_attention is not None:
            raise ValueError(f"windowed attention replaces FLUX.1's attention processor and has no FLUX.2 form; "
                             f"{self.name!r} is {self.family}: leave windowed_attention unset")
        out = self.rotary_toolkit_patches(toolkit, ProportionalAttentionConfig, shifted_patches=False)
        return out

    def rope_axes(self) -> list:
        """(t, h, w, l): h and w span the native token grid (64 × 64 at 1024²); t (reference-image index) and l
        (text position) never extrapolate. Read from the transformer config (`axes_dims_rope`, `rope_theta`)."""
        from ..patches.rope_frequencies import RopeAxis

        cfg = self.transformer.config
        g = self.geometry
        lengths = (None, g.native[0] // g.multiple, g.native[1] // g.multiple, None)
        dims = [int(d) for d in cfg.axes_dims_rope]
        if len(dims) != 4:
            raise ValueError(f"FLUX.2 has 4 RoPE axes (t, h, w, l); this transformer has {len(dims)}")
        return [RopeAxis(d, float(cfg.rope_theta), lengths[i]) for i, d in enumerate(dims)]

    @contextmanager
    def rope_applied(self, transform, sigma):
        """`RotaryAxesEmbed` (`Flux2PosEmbed`'s output format: cos, sin [S, Σd] float32, interleaved) with
        `transform`'s frequencies on h and w (t and l stock), over the joint [text; image] table of the call."""
        from ..patches.base import swapped
        from ..patches.rope import RotaryAxesEmbed

        embed = RotaryAxesEmbed(self.rope_axes(), SpatialAxesOnly(transform), sigma)
        with swapped(self.transformer, "pos_embed", embed):
            yield

    # ------------------------------------------------------------ calls

    def _call(self, x: torch.Tensor, sigma, cond: Flux2Cond, guidance) -> torch.Tensor:
        """One transformer call on normalised latents [B, 128, h, w] (`_pack_latents`: row-major tokens)."""
        from ..patches.base import swapped

        b, c, h, w = x.shape
        tokens = x.to(self.dtype).reshape(b, c, h * w).permute(0, 2, 1)
        ids = torch.cat([cond.text_ids.to(self.device), latent_ids(h, w, self.device)])
        if isinstance(sigma, torch.Tensor):
            t = sigma.to(device=self.device, dtype=self.dtype)
        else:
            t = torch.full((b,), float(sigma), device=self.device, dtype=self.dtype)
        g = None
        if self.embedded_guidance:
            g = torch.full((b,), float(guidance if guidance is not None else self.default_guidance),
                           device=self.device, dtype=torch.float32)
        pe = cond.prompt_embeds.expand(b, -1, -1) if cond.prompt_embeds.shape[0] == 1 else cond.prompt_embeds
        width = sum(int(d) for d in self.transformer.config.axes_dims_rope)
        with swapped(self.transformer, "pos_embed", _JointRows(self.transformer.pos_embed, width)):
            out = self.transformer(hidden_states=tokens, encoder_hidden_states=pe.to(self.dtype), timestep=t,
                                   img_ids=ids, txt_ids=ids[:0], guidance=g, return_dict=False)[0]
        return out.float().permute(0, 2, 1).reshape(b, c, h, w)

    @torch.no_grad()
    def velocity(self, x, sigma, cond: Flux2Cond, *, guidance=None, ctx=None):
        v = self._call(x, sigma, cond, guidance)
        scale = float(guidance if guidance is not None else (self.default_guidance or 1.0))
        if self.true_cfg and cond.negative is not None and scale > 1.0:
            v_neg = self._call(x, sigma, cond.negative, None)
            v = v_neg + scale * (v - v_neg)
        return v

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer
