"""Adapter for diffusers `ZImagePipeline` (Z-Image, Z-Image-Turbo): a single-stream DiT with a Qwen3 text encoder.

Every fact below is read from diffusers 0.42's `pipelines/z_image/pipeline_z_image.py` (the pipeline) and
`models/transformers/transformer_z_image.py` (the transformer):

- Latents: [B, 16, H/8, W/8] (`transformer.in_channels`, VAE factor 2^(levels−1)); the transformer takes a *list*
  of per-image latents [C, F=1, h, w] and patchifies 2×2 itself (`patch_size=2, f_patch_size=1`, its forward's
  defaults, which the pipeline uses); sizes must be multiples of 16 px (`vae_scale_factor * 2`).
- VAE: FLUX.1's AutoencoderKL, z = (E(x) − shift_factor)·scaling_factor (the pipeline decodes z/scaling + shift),
  i.e. `VaeCodec`.
- Time: the scheduler's timestep is t = 1000·σ (float32) and the transformer is called with (1000 − t)/1000 = 1 − σ
  (it embeds t_scale·(1 − σ)); its output u is the *negative* flow velocity: the pipeline steps the scheduler
  with −u. So v = ε − x0 = −u.
- Guidance (true CFG, one batched call of [cond…, uncond…] with the caption lists joined): u = u_c + w·(u_c − u_u)
  (w = `guidance_scale`, CFG on when w > 0, so w = 0 is the plain conditional model); optional renormalisation
  (`cfg_normalization` c > 0: per image, u scaled down to ‖u‖ = c·‖u_c‖ when larger) and truncation
  (`cfg_truncation` τ: w = 0 on steps with (1000 − t)/1000 > τ). Defaults as the pipeline's: w = 5, c off, τ = 1
  (never truncates), 50 steps; Z-Image-Turbo's model card runs w = 0 and 9 steps, which the adapter takes for a
  model named "…turbo…" (a folder's hiresflow.json may set either).
- σ grid: linspace(1, 1/N, N), shifted by the scheduler config (Turbo: static shift 3; with
  `use_dynamic_shifting`, μ from `calculate_shift` on the token count (H/16)·(W/16)) — DiTFlowModel's rule.
- Text: `pipe.encode_prompt` renders the chat template, pads to `max_sequence_length` (512) and keeps the
  unpadded rows of Qwen3's second-to-last hidden state: a list of [T_i, D] per prompt (T_i varies).
- Native size: 1024² (the pipeline's `height = height or 1024`).
- RoPE (`RopeEmbedder(theta=256, axes_dims=(32, 48, 48), axes_lens)`): ids are (sequence, row, column). The
  caption of padded length T_p = ⌈T/32⌉·32 sits at (1…T_p, 0, 0); image token (r, c) at (T_p + 1, r, c); padding
  rows at (0, 0, 0) (`patchify_and_embed`, `_pad_with_ids`). The stock embedder precomputes complex tables
  polar(1, n·ω) for n < axes_lens only; `ZImageRope` computes them for the positions a call uses, with each
  axis' frequencies from a `FrequencyTransform` (bit-equal to stock for `StockRope`). The sequence axis is never
  extrapolated and stays stock under every transform (on FLUX.1 the NTK/PI RoPE also scales its index axis, but
  every id there is 0; Z-Image's carries the caption order, which no resolution method means to change).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..patches.base import ModulePatch, PatchConfig, PatchOrder, swapped
from ..patches.rope_frequencies import AxisFrequencies, FrequencyTransform, RopeAxis, RopeCall, StockRope, \
    base_frequencies
from .base import LatentGeometry, VaeCodec
from .dit import DiTFlowModel

__all__ = ["ZImageFlowModel", "ZImageCond", "ZImageRope", "ZImageProportionalAttentionConfig", "SEQ_MULTI_OF",
           "NATIVE"]

SEQ_MULTI_OF = 32  # transformer_z_image.SEQ_MULTI_OF: caption and image token runs are padded to this multiple
NATIVE = 1024  # ZImagePipeline.__call__: height = height or 1024


def padded(n: int) -> int:
    """n rounded up to a multiple of SEQ_MULTI_OF (the transformer's `_pad_with_ids`)."""
    return n + (-n) % SEQ_MULTI_OF


@dataclass
class ZImageCond:
    """The pipeline's caption features: one [T, D] tensor per prompt (unpadded), and the negative prompt's.
    `copies` = (k_h, k_w) and `tile` (token rows, columns of a native tile) when the caption is duplicated
    (I-Max text duplication, `duplicate_caption_ids`): each tensor then holds k_h·k_w copies of one caption."""

    prompt_embeds: list[torch.Tensor]
    negative: list[torch.Tensor] | None = None
    copies: tuple[int, int] = (1, 1)
    tile: tuple[int, int] = (0, 0)


def duplicate_caption_ids(cap_ids: torch.Tensor, img_ids: torch.Tensor, copy_len: int, copies: tuple[int, int],
                          tile: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids of a caption of k = k_h·k_w copies of `copy_len` tokens (I-Max's layout, Z-Image form).

    One caption of T tokens sits at (1…T, 0, 0) and the image at (T_p + 1, r, c), T_p = T padded to 32. Copy
    (i, j) goes to (1…T, tile_r·i, tile_c·j): the origin of native tile (i, j) — as FLUX.1's copies get text ids at
    their tile's origin — at the sequence positions of one caption, so each copy keeps one caption's offset to the
    image along the sequence axis and sees the tokens of its tile where one caption sees the native image. The
    padding rows after the last copy continue its positions (as the stock padding continues the caption); the
    image's sequence position is one caption's T_p + 1. `cap_ids`, `img_ids`: the stock ids of one item."""
    kh, kw = copies
    k = kh * kw
    cap, img = cap_ids.clone(), img_ids.clone()
    q = torch.arange(k * copy_len, device=cap.device)
    c = q // copy_len
    cap[: k * copy_len, 0] = (q % copy_len + 1).to(cap.dtype)
    cap[: k * copy_len, 1] = (tile[0] * (c // kw)).to(cap.dtype)
    cap[: k * copy_len, 2] = (tile[1] * (c % kw)).to(cap.dtype)
    pad = padded(k * copy_len) - k * copy_len
    if pad:
        rest = torch.arange(pad, device=cap.device)
        cap[k * copy_len: k * copy_len + pad, 0] = (copy_len + 1 + rest).to(cap.dtype)
        cap[k * copy_len: k * copy_len + pad, 1] = tile[0] * (kh - 1)
        cap[k * copy_len: k * copy_len + pad, 2] = tile[1] * (kw - 1)
    image_rows = img[:, 0] != 0  # the image's padding rows are (0, 0, 0)
    img[image_rows, 0] = padded(copy_len) + 1
    return cap, img


@dataclass(frozen=True)
class ZImageRope:
    """Drop-in for diffusers' `RopeEmbedder.__call__`: ids [S, 3] (int) → complex64 [S, Σd/2].

    Per axis i the table polar(m_i, n·ω_i) for n = 0 … max id, from float64 angles cast to float32 and
    `torch.polar`, as `RopeEmbedder.precompute_freqs_cis` computes it on the CPU, then indexed by the ids on their
    device. ω_i and the cos/sin multiplier m_i come from `transform.frequencies(axes, call)` (the sequence axis,
    `native_len` None, always stock); `call` is the model call's `RopeCall`, bound by the adapter for each
    transformer call (positions per axis over caption and image, text + image tokens, the step's σ), so that the
    caption and the image tables of one call — the transformer asks for them separately — agree. With
    `train_tokens`, every table is multiplied by √m, m = √(ln L / ln L_train) (L = call.seq_len): proportional
    attention, q·k → m·q·k in every layer."""

    axes: tuple[RopeAxis, ...]
    transform: FrequencyTransform
    sigma: float | None = None
    train_tokens: int | None = None
    call: RopeCall | None = None

    def _call_info(self, ids: torch.Tensor) -> RopeCall:
        lengths = tuple(int(v) + 1 for v in ids.amax(dim=0).tolist())
        return RopeCall(lengths=lengths, seq_len=int(ids.shape[0]), sigma=self.sigma)

    def frequencies(self, call: RopeCall) -> list[AxisFrequencies]:
        out = self.transform.frequencies(list(self.axes), call)
        return [AxisFrequencies(base_frequencies(a.dim, a.theta)) if a.native_len is None else f
                for a, f in zip(self.axes, out)]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        call = self.call if self.call is not None else self._call_info(ids)
        sizes = [int(v) + 1 for v in ids.amax(dim=0).tolist()]
        tables = []
        for i, freq in enumerate(self.frequencies(call)):
            pos = torch.arange(sizes[i], dtype=torch.float64)
            angles = torch.outer(pos, freq.omega.to(torch.float64)).float()
            radius = torch.ones_like(angles) if freq.mscale == 1.0 else torch.full_like(angles, freq.mscale)
            table = torch.polar(radius, angles).to(torch.complex64).to(ids.device)
            tables.append(table[ids[:, i]])
        out = torch.cat(tables, dim=-1)
        if self.train_tokens is not None:
            from ..patches.attention import proportional_multiplier

            out = out * math.sqrt(proportional_multiplier(call.seq_len, self.train_tokens))
        return out


@dataclass
class ZImageProportionalAttentionConfig(PatchConfig):
    """Proportional attention on Z-Image: softmax scale √(log_{L_train} L / d) instead of 1/√d, with L = caption +
    image tokens of the call and L_train = the same at the native size, applied as a factor √m on the rotary
    tables (every query and key, every layer — the refiners included, whose keys are one modality only)."""

    what: ClassVar[str] = "proportional attention (Z-Image rotary form)"
    train_tokens: int | None = None  # None: one caption + the native image tokens

    def build(self, env) -> "ZImageProportionalAttentionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        train = self.train_tokens or (model.text_tokens(env.cond) +
                                      (g.native[0] // g.multiple) * (g.native[1] // g.multiple))
        return ZImageProportionalAttentionPatch(model, train)


class ZImageProportionalAttentionPatch(ModulePatch):
    name = "proportional_attention"
    order = PatchOrder.ATTENTION_SCALE  # wraps whatever rotary embedding (stock or transformed) is in place

    def __init__(self, model: "ZImageFlowModel", train_tokens: int):
        self.model, self.train_tokens = model, train_tokens

    @contextmanager
    def applied(self, x, ctx):
        tr = self.model.transformer
        current = tr.rope_embedder
        if isinstance(current, ZImageRope):
            new = replace(current, train_tokens=self.train_tokens)
        else:
            new = ZImageRope(tuple(self.model.rope_axes()), StockRope(), ctx.sigma, self.train_tokens)
        with swapped(tr, "rope_embedder", new):
            yield


class ZImageFlowModel(DiTFlowModel):
    family = "zimage"
    guidance_kind = "cfg"
    pipeline_classes = ("ZImagePipeline", "ZImageImg2ImgPipeline")

    def __init__(self, pipe, name: str = "zimage", max_sequence_length: int = 512,
                 cfg_normalization: float = 0.0, cfg_truncation: float = 1.0):
        self.pipe = pipe
        self.name = name
        self.transformer = pipe.transformer
        cfg = self.transformer.config
        if 2 not in tuple(cfg.all_patch_size) or 1 not in tuple(cfg.all_f_patch_size):
            raise ValueError(f"{name!r}: ZImagePipeline calls its transformer with patch 2 × 2 × 1, which this "
                             f"transformer (all_patch_size={list(cfg.all_patch_size)}) lacks")
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.patch = 2
        self.geometry = LatentGeometry(channels=int(cfg.in_channels), vae_scale=vae_scale, patch=self.patch,
                                       native=(NATIVE, NATIVE))
        self.codec = VaeCodec(pipe.vae)
        self._read_scheduler(pipe.scheduler.config, default_shift=1.0)
        turbo = "turbo" in str(name).lower()
        self.default_guidance = 0.0 if turbo else 5.0
        self.default_steps = 9 if turbo else 50
        self.max_sequence_length = int(max_sequence_length)
        self.text_len = self.max_sequence_length
        self.cfg_normalization = float(cfg_normalization)
        self.cfg_truncation = float(cfg_truncation)
        self.cfg_calls = 1
        self.cfg_batch = 2 if self.default_guidance > 0 else 1

    # ------------------------------------------------------------ text

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> ZImageCond:
        pe, ne = self.pipe.encode_prompt(prompt=prompt, device=self.device, do_classifier_free_guidance=True,
                                         negative_prompt=negative_prompt or None,
                                         max_sequence_length=self.max_sequence_length)
        return ZImageCond(list(pe), list(ne))

    def text_tokens(self, cond: ZImageCond) -> int:
        """Caption tokens of one copy of the prompt (unpadded; the pipeline keeps every token of the chat-rendered
        prompt)."""
        return int(cond.prompt_embeds[0].shape[0]) // (cond.copies[0] * cond.copies[1])

    # ------------------------------------------------------------ what the family supports

    @classmethod
    def patch_types(cls):
        from ..patches.rope import RopeExtrapolationConfig, RopeScalingConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from ..patches.text_dup import TextDuplicationConfig
        from ..patches.ultraimage import UltraImageRopeConfig

        return (TextDuplicationConfig, ShiftedPatchesConfig, RopeScalingConfig, RopeExtrapolationConfig,
                UltraImageRopeConfig, ZImageProportionalAttentionConfig)

    def toolkit_patches(self, toolkit) -> list:
        """Text duplication (copies at their native tile's origin, `duplicate_caption_ids`), shifted patches, the
        RoPE extrapolation (`rope`: PI/NTK/YaRN, DyPE) or else the NTK/PI RoPE, and proportional attention on the
        rotary tables. Windowed attention (a FLUX.1 joint-attention processor) is refused with one line."""

        if toolkit.windowed_attention is not None:
            raise ValueError(f"windowed attention replaces FLUX.1's joint attention processor and has no {self.family} "
                             f"form; switch it off (windowed_attention=None)")
        out = self.rotary_toolkit_patches(toolkit, ZImageProportionalAttentionConfig)
        return out

    def duplicate_text(self, cond: ZImageCond, kh: int, kw: int, tile: tuple[int, int]) -> ZImageCond:
        """k_h·k_w copies of each caption (and of the negative one), laid out by `duplicate_caption_ids` at every
        transformer call."""
        if cond.copies != (1, 1):
            raise ValueError("the caption is already duplicated; apply text duplication once")
        k = kh * kw
        neg = [e.repeat(k, 1) for e in cond.negative] if cond.negative is not None else None
        return ZImageCond([e.repeat(k, 1) for e in cond.prompt_embeds], neg, (kh, kw), tuple(tile))

    def rope_axes(self) -> list[RopeAxis]:
        """(sequence, rows, columns): `axes_dims` columns each, base `rope_theta`; the sequence axis (caption
        order, the image's offset after it) never extrapolates, rows and columns span the native token grid
        (64 × 64 at 1024²)."""
        cfg = self.transformer.config
        g = self.geometry
        lengths = (None, g.native[0] // g.multiple, g.native[1] // g.multiple)
        return [RopeAxis(int(d), float(cfg.rope_theta), lengths[i] if i < 3 else None)
                for i, d in enumerate(cfg.axes_dims)]

    @contextmanager
    def rope_applied(self, transform, sigma):
        with swapped(self.transformer, "rope_embedder", ZImageRope(tuple(self.rope_axes()), transform, sigma)):
            yield

    # ------------------------------------------------------------ cost

    def _dims(self) -> tuple[int, int, int]:
        """(width `dim`, joint layers + one refiner depth (the two refiners split the sequence), parameters)."""
        cfg = self.transformer.config
        params = sum(p.numel() for p in self.transformer.parameters())
        return int(cfg.dim), int(cfg.n_layers) + int(cfg.n_refiner_layers), params

    # ------------------------------------------------------------ denoising

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    def _rope_call(self, captions: list[torch.Tensor], rows: int, cols: int, k: int, sigma: float | None) -> RopeCall:
        """What a transform sees for one transformer call: the sequence axis up to the image's position after the
        longest padded caption, the token grid, one sequence's text (all copies) + image tokens, the step's σ."""
        seq = padded(max(int(c.shape[0]) // k for c in captions)) + 2
        return RopeCall(lengths=(seq, rows, cols), seq_len=int(captions[0].shape[0]) + rows * cols, sigma=sigma)

    @contextmanager
    def _caption_layout(self, copy_lens: list[int], copies: tuple[int, int], tile: tuple[int, int]):
        """For duplicated captions: the transformer's `patchify_and_embed` with the ids of
        `duplicate_caption_ids` for the block (an instance attribute over the class's method, removed after)."""
        if copies == (1, 1):
            yield
            return
        tr = self.transformer
        stock = tr.patchify_and_embed

        def patchify_and_embed(all_image, all_cap_feats, patch_size, f_patch_size):
            out = list(stock(all_image, all_cap_feats, patch_size, f_patch_size))
            img_ids, cap_ids = out[3], out[4]
            for i, n in enumerate(copy_lens):
                cap_ids[i], img_ids[i] = duplicate_caption_ids(cap_ids[i], img_ids[i], n, copies, tile)
            return tuple(out)

        tr.patchify_and_embed = patchify_and_embed
        try:
            yield
        finally:
            del tr.patchify_and_embed

    def _call(self, x: torch.Tensor, sigma: float, captions: list[torch.Tensor], copies: tuple[int, int] = (1, 1),
              tile: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """The raw transformer output u (float32, [B, C, h, w]) for latents x [B, C, h, w] and one caption per row
        (each of copies[0]·copies[1] copies), at timestep (1000 − 1000·σ)/1000 in float32 as the pipeline has it."""
        b, _, h, w = x.shape
        k = copies[0] * copies[1]
        t = torch.tensor(sigma, dtype=torch.float32) * 1000  # scheduler.timesteps = sigmas * num_train_timesteps
        t = ((1000 - t) / 1000).expand(b).to(self.device)
        latents = list(x.to(device=self.device, dtype=self.dtype).unsqueeze(2).unbind(dim=0))
        caps = [c.to(device=self.device, dtype=self.dtype) for c in captions]
        emb = self.transformer.rope_embedder
        bound = replace(emb, call=self._rope_call(caps, h // self.patch, w // self.patch, k, emb.sigma)) \
            if isinstance(emb, ZImageRope) else emb
        with swapped(self.transformer, "rope_embedder", bound), \
                self._caption_layout([int(c.shape[0]) // k for c in caps], copies, tile):
            out = self.transformer(latents, t, caps, patch_size=self.patch, f_patch_size=1, return_dict=False)[0]
        return torch.stack([o.float() for o in out], dim=0).squeeze(2)

    def guidance_at(self, sigma: float, guidance: float | None) -> float:
        """The step's CFG scale: `guidance` (default the model's), 0 where `cfg_truncation` cuts it (the pipeline's
        t_norm = (1000 − t)/1000 > τ, float32)."""
        w = self.default_guidance if guidance is None else float(guidance)
        t = torch.tensor(sigma, dtype=torch.float32) * 1000
        t_norm = float((1000 - t) / 1000)
        if w > 0 and self.cfg_truncation <= 1 and t_norm > self.cfg_truncation:
            return 0.0
        return w

    @torch.no_grad()
    def velocity(self, x, sigma, cond: ZImageCond, *, guidance=None, ctx=None):
        b = x.shape[0]
        w = self.guidance_at(sigma, guidance)
        pos = cond.prompt_embeds if len(cond.prompt_embeds) == b else [cond.prompt_embeds[0]] * b
        if w <= 0 or cond.negative is None:
            return -self._call(x, sigma, pos, cond.copies, cond.tile)
        neg = cond.negative if len(cond.negative) == b else [cond.negative[0]] * b
        out = self._call(torch.cat([x, x]), sigma, pos + neg, cond.copies, cond.tile)
        u_c, u_u = out[:b], out[b:]
        u = u_c + w * (u_c - u_u)
        if self.cfg_normalization > 0:
            rows = []
            for j in range(b):
                limit = torch.linalg.vector_norm(u_c[j]) * self.cfg_normalization
                norm = torch.linalg.vector_norm(u[j])
                rows.append(u[j] * (limit / norm) if norm > limit else u[j])
            u = torch.stack(rows)
        return -u
