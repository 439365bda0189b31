"""Adapter for diffusers `QwenImagePipeline` (Qwen-Image): packed 2×2 latents, centred 3-axis RoPE, true CFG
with norm renormalisation, a causal 3-D VAE with per-channel latent statistics.

Facts, each from diffusers 0.42 (`pipelines/qwenimage/pipeline_qwenimage.py` unless stated):

- latents: the VAE's `z_dim` (16) channels at 1/`vae_scale_factor` (2 ** len(temperal_downsample) = 8) of the
  image, one frame; `_pack_latents` packs 2×2 patches as FLUX does ([B, C, h, w] → [B, (h/2)(w/2), 4C], channel
  order (C, py, px)); `img_shapes` = [(1, h/2, w/2)] per sample tells the transformer the token grid.
- flow convention: the scheduler's timesteps are t = 1000·σ (float32), the transformer is called with t/1000
  and predicts v = ε − x0, and `FlowMatchEulerDiscreteScheduler.step` moves x ← x + (σ_next − σ)·v: exactly
  hiresflow's frame, so the adapter passes σ through the same float32 arithmetic (σ·1000 → dtype → /1000).
- σ rule: t_i = linspace(1, 1/N, N); μ = `calculate_shift`(image tokens; base/max_image_seq_len,
  base/max_shift of the scheduler config, Qwen-Image 256/8192, 0.5/0.9); σ = e^μ / (e^μ + 1/t − 1) (the
  scheduler's exponential `time_shift`; "linear": μ / (μ + 1/t − 1)); then, when the config has
  `shift_terminal` (Qwen-Image 0.02), `stretch_shift_to_terminal`:
  σ ← 1 − (1 − σ)·(1 − terminal)/(1 − σ_N−1), so the last evaluated σ is the terminal value; a final 0 is
  appended (`schedule`).
- guidance: true classifier-free guidance when `true_cfg_scale` > 1 and a negative prompt is given, two
  transformer calls and the pipeline's renormalisation on the packed tokens (norms over the last, channel axis):
  comb = v_neg + s·(v_cond − v_neg), v = comb·‖v_cond‖/‖comb‖. The transformer's `guidance_embeds` path is a
  placeholder in diffusers (QwenTimestepProjEmbeddings takes no guidance), so guidance-distilled checkpoints are
  refused. Defaults: `true_cfg_scale` 4.0 (the pipeline's default), 50 steps (its default).
- text: the pipeline's own `encode_prompt` (Qwen2.5-VL last hidden state, the first 34 template tokens dropped,
  unpadded per prompt, `max_sequence_length` 512 as `__call__`'s default).
- VAE: `AutoencoderKLQwenImage` on [B, 3, 1, H, W]; z = (E(x) − latents_mean)·(1/latents_std) (img2img's
  `_encode_vae_image`), decode x = D(z / (1/latents_std) + latents_mean)[:, :, 0] (`__call__`'s decode path).
- RoPE (`transformer_qwenimage.QwenEmbedRope(scale_rope=True)`, θ = 10000, axes (frame, row, column) of
  `axes_dims_rope` columns, complex tables): image token (f, r, c) of an F×H×W grid has positions
  (f, r − ⌈H/2⌉, c − ⌈W/2⌉) — rows/columns centred, the first half negative; text token j has position
  max(⌊H/2⌋, ⌊W/2⌋) + j on all three axes. Native size: Qwen-Image's published 1328² (the model card's 1:1
  resolution; the pipeline's `default_sample_size` 128 gives 1024² only as a call default), 83 × 83 tokens.

`QwenRotaryEmbed` reproduces that embedder with each axis' frequencies (and cos/sin multiplier) from a
`FrequencyTransform` (`hiresflow.patches.rope_frequencies`); with `StockRope` its tables are the stock tables bit
for bit. Text rows under a transform: text keeps its stock positions and takes each axis' transformed frequencies
like every image row, so every relative angle between two tokens on an axis stays (Δ position)·ω′ — the
transform acts on one coordinate system, text and image alike (YaRN's mscale included).

Not provided (one-line refusals): text duplication (I-Max) — Qwen-Image's text has no tile origin to copy to
(FLUX text sits at the image's origin, Qwen-Image text on the diagonal past the centred grid's far corner, so
I-Max's grid-origin layout has no counterpart); windowed attention and UltraImage's attention concentration
(FLUX attention processors). `QwenImage21Pipeline` is a different model (single-stream block-causal transformer,
text positions interleaved on the frame axis, Qwen3-VL processor, `AutoencoderKLQwenImage21` at factor 16) and is
not wrapped here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..flow.schedule import flow_sigmas, flux_mu, static_shift
from ..patches.base import ModulePatch, PatchConfig, PatchOrder, swapped
from ..patches.rope_frequencies import AxisFrequencies, FrequencyTransform, RopeAxis, RopeCall, base_frequencies
from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel
from .flux import pack_latents, unpack_latents

__all__ = ["QwenImageFlowModel", "QwenImageCond", "QwenImageCodec", "QwenRotaryEmbed",
           "QwenProportionalAttentionConfig", "QWEN_IMAGE_NATIVE"]

QWEN_IMAGE_NATIVE = 1328  # Qwen/Qwen-Image model card, aspect ratio table: "1:1": (1328, 1328)
STOCK_TABLE_LEN = 4096  # QwenEmbedRope: pos_index = arange(4096), neg_index = −4096 … −1


@dataclass
class QwenImageCond:
    prompt_embeds: torch.Tensor  # [1, T, D]
    mask: torch.Tensor | None = None  # [1, T] or None (the pipeline drops an all-ones mask)
    negative: "QwenImageCond | None" = None


# ---------------------------------------------------------------- VAE


class QwenImageCodec(VaeCodec):
    """Images in [0, 1] ↔ normalised latents for `AutoencoderKLQwenImage`: z = (E(x) − mean)·(1/std) per
    channel (`scaling` = 1/latents_std, `shift` = latents_mean, as tensors [1, C, 1, 1]), the frame axis added
    for the VAE and removed after it. Tiling as `VaeCodec` (the VAE's own `enable_tiling`, `tiled_encode`,
    `tiled_decode`; its tiles are 256 px with a 192 px stride)."""

    def __init__(self, vae, tile_above: int | None = 2048):
        self.vae = vae
        self.mode = "auto"
        cfg = vae.config
        c = int(cfg.z_dim)
        self.shift = torch.tensor(cfg.latents_mean).view(1, c, 1, 1)
        self.scaling = 1.0 / torch.tensor(cfg.latents_std).view(1, c, 1, 1)
        self.tile_above = tile_above
        self.factor = 2 ** len(cfg.temperal_downsample)

    def decode_bytes(self, height: int, width: int) -> int:
        """≈ 8 float maps of the decoder's full-resolution level (`base_dim`·`dim_mult[0]` channels; one
        256² tile when tiling is on), the `VaeCodec` estimate with this VAE's channel count."""
        cfg = self.vae.config
        c0 = int(cfg.base_dim) * int(cfg.dim_mult[0])
        area = height * width
        if self.tile_above is not None and max(height, width) > self.tile_above:
            tile = int(getattr(self.vae, "tile_sample_min_height", 256))
            area = min(area, tile * int(getattr(self.vae, "tile_sample_min_width", tile)))
        return 8 * area * c0 * 4

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.shift.to(raw.device, raw.dtype)) * self.scaling.to(raw.device, raw.dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        vae = self.vae
        self._tiling(max(images.shape[-2:]))
        x = (images * 2 - 1).to(device=vae.device, dtype=vae.dtype)[:, :, None]
        if self.mode == "always":
            dist = DiagonalGaussianDistribution(vae.tiled_encode(x))
        else:
            dist = vae.encode(x).latent_dist
        return self.normalise(self.posterior_latent(dist, generator, sample)[:, :, 0])

    @torch.no_grad()
    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Images in [0, 1]; the VAE clamps its output to [−1, 1] itself, so `clamp=False` changes nothing."""
        vae = self.vae
        self._tiling(max(z.shape[-2:]) * self.factor)
        zz = z / self.scaling.to(z.device, z.dtype) + self.shift.to(z.device, z.dtype)
        zz = zz.to(device=vae.device, dtype=vae.dtype)[:, :, None]
        img = vae.tiled_decode(zz).sample if self.mode == "always" else vae.decode(zz).sample
        img = (img[:, :, 0].float() + 1) / 2
        return img.clamp(0, 1) if clamp else img


# ---------------------------------------------------------------- RoPE


def stock_omega(dim: int, theta) -> torch.Tensor:
    """ω_j in float32 exactly as `QwenEmbedRope.rope_params`: 1 / θ^(arange(0, d, 2).float() / d)."""
    return 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))


def axis_omega(axis: RopeAxis, freq: AxisFrequencies, theta) -> torch.Tensor:
    """A transform's float64 ω as the float32 vector the Qwen tables are built from: frequencies equal to the
    stock float64 ω take the stock float32 value (bit-exact stock tables), the others ω.float()."""
    w = freq.omega.to(torch.float64).cpu()
    return torch.where(w == base_frequencies(axis.dim, axis.theta), stock_omega(axis.dim, theta), w.float())


def polar_tables(omega: torch.Tensor, mscale: float, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) complex64 tables [length, d/2] of one axis, computed as `QwenEmbedRope` computes its
    own (same index tensors, torch.outer in float32, torch.polar on the CPU); mscale multiplies cos and sin."""
    pos = torch.arange(length)
    neg = torch.arange(length).flip(0) * -1 - 1
    out = []
    for index in (pos, neg):
        angles = torch.outer(index, omega)
        table = torch.polar(torch.ones_like(angles), angles)
        out.append(table if mscale == 1.0 else table * mscale)
    return out[0], out[1]


class QwenRotaryEmbed(nn.Module):
    """`QwenEmbedRope`-compatible embedder (forward(video_fhw, device, max_txt_seq_len) → (image freqs
    [S_img, Σd/2], text freqs [T, Σd/2]), complex64) whose per-axis frequencies come from `transform` for the
    call's σ. The call it describes: lengths = (frames, rows, columns) of the image grid (the extent of the
    centred positions), seq_len = image + text tokens. `cache`: the adapter's table cache (by frequencies)."""

    def __init__(self, stock: nn.Module, axes: list[RopeAxis], transform: FrequencyTransform,
                 sigma: float | None = None, cache: "OrderedDict | None" = None):
        super().__init__()
        self.axes, self.transform, self.sigma = list(axes), transform, sigma
        self.theta, self.scale_rope = stock.theta, bool(stock.scale_rope)
        self.cache = cache if cache is not None else OrderedDict()

    def _tables(self, i: int, freq: AxisFrequencies, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        omega = axis_omega(self.axes[i], freq, self.theta)
        key = (i, omega.numpy().tobytes(), float(freq.mscale), length, str(device))
        if key not in self.cache:
            self.cache[key] = tuple(t.to(device) for t in polar_tables(omega, float(freq.mscale), length))
            while len(self.cache) > 24:
                self.cache.popitem(last=False)
        return self.cache[key]

    def forward(self, video_fhw, device=None, max_txt_seq_len=None):
        if max_txt_seq_len is None:
            raise ValueError("`max_txt_seq_len` must be provided.")
        if isinstance(video_fhw, list):  # the stock layout: per sample a list of (frame, height, width)
            video_fhw = video_fhw[0]
        shapes = [tuple(int(v) for v in s) for s in (video_fhw if isinstance(video_fhw, list) else [video_fhw])]
        text = int(max_txt_seq_len)
        half = (lambda n: n // 2) if self.scale_rope else (lambda n: n)
        top = max(max(half(h), half(w)) for _, h, w in shapes)  # the stock max_vid_index
        call = RopeCall(lengths=(max(i + f for i, (f, _, _) in enumerate(shapes)), max(h for _, h, _ in shapes),
                                 max(w for _, _, w in shapes)),
                        seq_len=sum(f * h * w for f, h, w in shapes) + text, sigma=self.sigma)
        length = max(STOCK_TABLE_LEN, top + text, call.lengths[0], call.lengths[1], call.lengths[2])
        tables = [self._tables(i, f, length, device) for i, f in enumerate(self.transform.frequencies(self.axes, call))]
        video = [self._video(tables, f, h, w, idx) for idx, (f, h, w) in enumerate(shapes)]
        txt = torch.cat([pos[top: top + text] for pos, _ in tables], dim=1)
        return torch.cat(video, dim=0), txt

    def _video(self, tables, frame: int, height: int, width: int, idx: int) -> torch.Tensor:
        """`QwenEmbedRope._compute_video_freqs` on these tables."""
        (fp, _), (hp, hn), (wp, wn) = tables
        freqs_frame = fp[idx: idx + frame].view(frame, 1, 1, -1).expand(frame, height, width, -1)
        if self.scale_rope:
            fh = torch.cat([hn[hn.shape[0] - (height - height // 2):], hp[: height // 2]], dim=0)
            fw = torch.cat([wn[wn.shape[0] - (width - width // 2):], wp[: width // 2]], dim=0)
        else:
            fh, fw = hp[:height], wp[:width]
        fh = fh.view(1, height, 1, -1).expand(frame, height, width, -1)
        fw = fw.view(1, 1, width, -1).expand(frame, height, width, -1)
        return torch.cat([freqs_frame, fh, fw], dim=-1).reshape(frame * height * width, -1).clone().contiguous()


# ---------------------------------------------------------------- proportional attention (rotary form)


def _multiplier(key_len: int, train_len: int) -> float:
    from ..patches.attention import proportional_multiplier

    return proportional_multiplier(key_len, train_len)


class _QwenScaledRotary(nn.Module):
    """Wraps the Qwen embedder in place: both complex tables × √m, m = √(ln L / ln L_train), L = image + text
    rows of the call — every query and key × √m, so q·k × m in every joint block (the FLUX rotary form of
    `hiresflow.patches.attention`)."""

    def __init__(self, inner: nn.Module, train_len: int):
        super().__init__()
        self.inner, self.train_len = inner, train_len

    def forward(self, video_fhw, device=None, max_txt_seq_len=None):
        vid, txt = self.inner(video_fhw, device=device, max_txt_seq_len=max_txt_seq_len)
        r = math.sqrt(_multiplier(vid.shape[0] + txt.shape[0], self.train_len))
        return vid * r, txt * r


@dataclass
class QwenProportionalAttentionConfig(PatchConfig):
    """Proportional attention on Qwen-Image: softmax scale √(log_{L_train} L / d) through the rotary tables.
    L_train = text tokens + native image tokens (83² at 1328²) unless `train_tokens` is given."""

    what: ClassVar[str] = "proportional attention (Qwen-Image rotary form)"
    train_tokens: int | None = None

    def build(self, env) -> "QwenProportionalAttentionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        train = self.train_tokens or (model.text_tokens(env.cond) +
                                      (g.native[0] // g.multiple) * (g.native[1] // g.multiple))
        return QwenProportionalAttentionPatch(model.transformer, train)


class QwenProportionalAttentionPatch(ModulePatch):
    name = "proportional_attention"
    order = PatchOrder.ATTENTION_SCALE  # wraps whatever rotary embedder (stock or transformed) is in place

    def __init__(self, transformer, train_tokens: int):
        self.transformer, self.train_tokens = transformer, train_tokens

    @contextmanager
    def applied(self, x, ctx):
        with swapped(self.transformer, "pos_embed", _QwenScaledRotary(self.transformer.pos_embed, self.train_tokens)):
            yield


# ---------------------------------------------------------------- the adapter


class QwenImageFlowModel(DiTFlowModel):
    family = "qwenimage"
    guidance_kind = "cfg"
    default_guidance = 4.0  # QwenImagePipeline.__call__(true_cfg_scale=4.0)
    default_steps = 50  # QwenImagePipeline.__call__(num_inference_steps=50)
    pipeline_classes = ("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline")

    def __init__(self, pipe, name: str = "qwenimage", max_sequence_length: int = 512):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        cfg = self.transformer.config
        if bool(getattr(cfg, "guidance_embeds", False)):
            raise ValueError(f"{name!r}: guidance-distilled Qwen-Image transformers (guidance_embeds=True) have no "
                             f"guidance embedder in diffusers' QwenImageTransformer2DModel; use a true-CFG checkpoint")
        if type(self.transformer.pos_embed).__name__ != "QwenEmbedRope":
            raise ValueError(f"{name!r}: this transformer uses {type(self.transformer.pos_embed).__name__}, not the "
                             f"text-to-image QwenEmbedRope; use a Qwen-Image text-to-image checkpoint")
        self._stock_rope = self.transformer.pos_embed
        vae = pipe.vae
        channels = int(vae.config.z_dim)
        if int(cfg.in_channels) != 4 * channels:
            raise ValueError(f"{name!r}: transformer in_channels {cfg.in_channels} is not 4 × the VAE's z_dim "
                             f"{channels} (2×2 packing); the pipeline's components do not match")
        vae_scale = int(getattr(pipe, "vae_scale_factor", 2 ** len(vae.temperal_downsample)))
        self.geometry = LatentGeometry(channels=channels, vae_scale=vae_scale, patch=int(cfg.patch_size),
                                       native=(QWEN_IMAGE_NATIVE, QWEN_IMAGE_NATIVE))
        self.codec = QwenImageCodec(vae)
        sc = pipe.scheduler.config
        self._read_scheduler(sc, default_shift=1.0)
        self.shift_terminal = sc.get("shift_terminal", None)
        self.time_shift_type = str(sc.get("time_shift_type", "exponential"))
        self.num_train_timesteps = int(sc.get("num_train_timesteps", 1000))
        self.max_sequence_length = int(max_sequence_length)
        self.text_len = self.max_sequence_length  # an upper bound: Qwen-Image's text is not padded
        self.cfg_calls = 2
        self._rope_cache: OrderedDict = OrderedDict()

    @classmethod
    def handles(cls, pipe) -> bool:
        return type(pipe).__name__ in cls.pipeline_classes and \
            type(getattr(pipe, "transformer", None)).__name__ == "QwenImageTransformer2DModel"

    # ------------------------------------------------------------ σ grid

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """The pipeline's σ grid (module docstring): explicit `mu`/`shift` win over the dynamic μ of `size`; the
        scheduler's terminal stretch follows every shift, as `set_timesteps` applies it after either kind."""
        if mu is None and shift is None:
            if self.dynamic_shift:
                mu = flux_mu(self.image_seq_len(size), self.shift_config)
            else:
                shift = self.static_shift
        if mu is not None and self.time_shift_type == "linear":
            sig = flow_sigmas(steps)
            sig[:-1] = static_shift(sig[:-1], mu)  # μ / (μ + 1/t − 1)
        else:
            sig = flow_sigmas(steps, shift=shift, mu=mu)
        one_minus = 1 - sig[:-1]
        if self.shift_terminal and one_minus[-1] > 0:  # one step (σ = 1 only): diffusers divides 0 by 0 here
            sig[:-1] = 1 - one_minus / (one_minus[-1] / (1 - float(self.shift_terminal)))
        return sig

    # ------------------------------------------------------------ text

    @torch.no_grad()
    def _encode(self, prompt) -> QwenImageCond:
        pe, mask = self.pipe.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                           max_sequence_length=self.max_sequence_length)
        return QwenImageCond(pe, mask)

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> QwenImageCond:
        """The prompt and the negative prompt (for true CFG; the official examples pass " ")."""
        cond = self._encode(prompt)
        cond.negative = self._encode(negative_prompt)
        return cond

    def encode_prompts(self, prompts: list[str]) -> QwenImageCond:
        return self._encode(list(prompts))

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    # ------------------------------------------------------------ RoPE and the DiT toolkit

    @classmethod
    def patch_types(cls):
        from ..patches.rope import RopeExtrapolationConfig, RopeScalingConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.ultraimage import UltraImageRopeConfig

        return (ShiftedPatchesConfig, RopeScalingConfig, RopeExtrapolationConfig, QwenProportionalAttentionConfig,
                UltraImageRopeConfig)

    def rope_axes(self) -> list:
        """(frame, row, column) axes of `axes_dims_rope` columns, θ = the embedder's theta (10000). The frame
        axis is never extrapolated (one frame; text positions run along it); rows and columns span the native
        token grid (83 × 83 at 1328²)."""
        pe = self._stock_rope
        g = self.geometry
        lengths = (None, g.native[0] // g.multiple, g.native[1] // g.multiple)
        return [RopeAxis(int(d), float(pe.theta), lengths[i]) for i, d in enumerate(pe.axes_dim)]

    @contextmanager
    def rope_applied(self, transform, sigma):
        embed = QwenRotaryEmbed(self._stock_rope, self.rope_axes(), transform, sigma, self._rope_cache)
        with swapped(self.transformer, "pos_embed", embed):
            yield

    def toolkit_patches(self, toolkit) -> list:
        """Shifted patches, NTK/PI RoPE or a RoPE extrapolation (DyPE, YaRN, …) through `rope_applied`, and
        proportional attention on the rotary tables. Text duplication and windowed attention are refused."""

        if toolkit.text_duplication:
            self.duplicate_text(None, 1, 1, (1, 1))
        if toolkit.windowed_attention is not None:
            raise ValueError("windowed attention replaces FLUX attention processors and has no Qwen-Image form; "
                             "switch it off (windowed_attention=None)")
        out = self.rotary_toolkit_patches(toolkit, QwenProportionalAttentionConfig)
        return out

    def duplicate_text(self, cond, kh, kw, tile):
        raise ValueError("text duplication is not defined for Qwen-Image: its text sits on the RoPE diagonal past "
                         "the centred image grid, with no tile origin to copy it to; switch it off "
                         "(text_duplication=False)")

    # ------------------------------------------------------------ the velocity

    def _timestep(self, sigma: float, b: int) -> torch.Tensor:
        """The pipeline's timestep: t = float32(σ)·1000 (scheduler.timesteps), cast to the latents' dtype, / 1000."""
        t = torch.tensor(float(sigma), dtype=torch.float32) * self.num_train_timesteps
        return t.to(self.device).expand(b).to(self.dtype) / self.num_train_timesteps

    def _call(self, x: torch.Tensor, sigma: float, cond: QwenImageCond, branch: str = "cond") -> torch.Tensor:
        """One transformer call on unpacked latents x [B, C, h, w]; returns the packed output [B, N, 4C]."""
        b, _, h, w = x.shape
        p = self.geometry.patch
        tokens = pack_latents(x.to(self.dtype), p)
        pe = cond.prompt_embeds.expand(b, -1, -1) if cond.prompt_embeds.shape[0] == 1 else cond.prompt_embeds
        mask = cond.mask
        if mask is not None and mask.shape[0] == 1:
            mask = mask.expand(b, -1)
        context = getattr(self.transformer, "cache_context", None)
        with context(branch) if context is not None else nullcontext():
            return self.transformer(
                hidden_states=tokens, timestep=self._timestep(sigma, b), guidance=None,
                encoder_hidden_states_mask=mask, encoder_hidden_states=pe.to(self.dtype),
                img_shapes=[[(1, h // p, w // p)]] * b, return_dict=False,
            )[0]

    @torch.no_grad()
    def velocity(self, x, sigma, cond: QwenImageCond, *, guidance=None, ctx=None):
        """v = ε − x0; with guidance s > 1 and a negative prompt, the pipeline's renormalised true CFG."""
        h, w = x.shape[-2:]
        scale = self.default_guidance if guidance is None else float(guidance)
        out = self._call(x, sigma, cond, "cond")
        if cond.negative is not None and scale > 1:
            neg = self._call(x, sigma, cond.negative, "uncond")
            comb = neg + scale * (out - neg)
            out = comb * (torch.norm(out, dim=-1, keepdim=True) / torch.norm(comb, dim=-1, keepdim=True))
        return unpack_latents(out.float(), h, w, self.geometry.patch)
