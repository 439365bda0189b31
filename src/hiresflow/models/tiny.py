"""Tiny random-weight diffusers pipelines, built fully offline.

``tiny_flux_pipeline``, ``tiny_sd_pipeline``, ``tiny_sdxl_pipeline`` and ``tiny_sd3_pipeline`` return genuine
diffusers pipelines (``FluxPipeline``, ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``,
``StableDiffusion3Pipeline``) whose components have the *architecture* of the real model families (same classes,
block types, latent channels, VAE downsampling factor 8, text-conditioning wiring, scheduler configs) but are
shrunk to a few hundred thousand parameters in total. They serve as test fixtures and as the skeleton of small
embedded models trained later. Nothing is downloaded: the tokenizers are word-level ones built from a word list
(:mod:`hiresflow.models.tokenizers`).

Weights are random and deterministic: every component is initialised inside ``torch.random.fork_rng()`` after
``torch.manual_seed(f(seed, component_name))``, so the same ``seed`` gives bit-identical weights, the global RNG
state is left untouched, and overriding one component's config does not change the others' weights.

What matches the real families and what is shrunk
-------------------------------------------------

Kept as in the real checkpoints (FLUX.1-dev, SD 1.5, SDXL base 1.0, SD3 medium):

* component classes and pipeline wiring; ``model_index.json`` is a normal diffusers folder;
* VAE: 4 ``DownEncoderBlock2D``/``UpDecoderBlock2D`` levels (spatial factor 8), mid-block attention, latent
  channels (16 for Flux/SD3, 4 for SD/SDXL), ``scaling_factor``/``shift_factor`` (Flux 0.3611/0.1159,
  SD3 1.5305/0.0609, SD 0.18215, SDXL 0.13025), ``use_quant_conv``/``use_post_quant_conv`` (off for Flux/SD3);
* Flux transformer: ``patch_size`` 1 with 2x2 latent packing (``in_channels`` = 4 x 16 = 64), ``guidance_embeds``,
  3-axis RoPE whose ``axes_dims_rope`` sum to the head dim, ``joint_attention_dim`` = T5 width,
  ``pooled_projection_dim`` = CLIP width;
* SD3 transformer: ``patch_size`` 2, ``caption_projection_dim`` = inner dim, ``joint_attention_dim`` = T5 width
  (>= sum of the two CLIP widths, which SD3 zero-pads into it), ``pooled_projection_dim`` = sum of the two CLIP
  projection dims, no dual attention / qk-norm (SD3.0, not 3.5);
* UNets: the SD 1.5 / SDXL block pattern (cross-attention in the high-res blocks for SD, in the low-res blocks
  for SDXL), SDXL ``addition_embed_type="text_time"`` with ``projection_class_embeddings_input_dim`` =
  text_encoder_2 projection dim + 6 x ``addition_time_embed_dim``, ``use_linear_projection`` for SDXL,
  ``cross_attention_dim`` = CLIP width (SD) or sum of both CLIP widths (SDXL);
* text encoders: CLIP (quick_gelu for CLIP-L, gelu for OpenCLIP bigG) with 77 positions, T5 v1.1 style
  (gated-gelu, 32 relative-attention buckets, max distance 128, untied embeddings);
* schedulers: Flux ``FlowMatchEulerDiscreteScheduler`` with the FLUX.1-dev config (shift 3.0, dynamic
  shifting, base/max shift 0.5/1.15, base/max image seq len 256/4096); SD3 flow-match shift 3.0; SD
  ``DDIMScheduler`` and SDXL ``EulerDiscreteScheduler`` with the SD betas (scaled_linear 0.00085-0.012,
  steps_offset 1, epsilon prediction, "leading" spacing).

Shrunk: all widths/depths (CLIP 32 wide x 2 layers; T5 32 wide, 64 for SD3 (see above), x 2 layers; Flux
1 double + 1 single block of 2 heads x 16; SD3 2 blocks of 2 heads x 16; UNets (32, 64) channels with 1 resnet per
block; VAE channels (8, 16, 32, 32) with 1 resnet per block and 4 norm groups), SDXL time embed dim 8 (real 256),
SD3 ``pos_embed_max_size`` 32 patches (real 192; allows up to 512 px), vocabularies (word-level, ~400 words), and
native resolutions: SD 64 px (UNet ``sample_size`` 8; real 512), SDXL/SD3 128 px (``sample_size`` 16; real 1024).
``FluxPipeline`` hard-codes a default of 1024 px, so pass ``height``/``width`` explicitly for the tiny Flux.

Overrides
---------

Every builder accepts ``**overrides`` keyed by pipeline component name, each a dict merged over the default
config of that component, e.g. ``tiny_flux_pipeline(transformer={"num_layers": 2}, vae={"layers_per_block": 2})``.
Tokenizer entries take only ``{"model_max_length": n}``. Dependent fields (text encoder ``vocab_size``,
``max_position_embeddings``, special-token ids; transformer/UNet conditioning widths and latent channels) are
derived from the final configs unless given explicitly.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
)

from .tokenizers import (
    build_clip_word_tokenizer,
    build_t5_word_tokenizer,
    make_tokenizer_config_portable,
    normalize_vocab,
)

__all__ = [
    "KINDS",
    "PIPELINE_CLASSES",
    "Kind",
    "count_parameters",
    "load_tiny_pipeline",
    "make_tokenizer_class_portable",
    "pipeline_state_dict",
    "save_tiny_pipeline",
    "tiny_configs",
    "tiny_flux_pipeline",
    "tiny_pipeline",
    "tiny_sd3_pipeline",
    "tiny_sd_pipeline",
    "tiny_sdxl_pipeline",
]

Kind = Literal["flux", "sd", "sdxl", "sd3"]
KINDS: tuple[str, ...] = ("flux", "sd", "sdxl", "sd3")
PIPELINE_CLASSES: dict[str, type[DiffusionPipeline]] = {
    "flux": FluxPipeline,
    "sd": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
    "sd3": StableDiffusion3Pipeline,
}

# --------------------------------------------------------------------------------------------------------------
# Default component configs (the "shrunk" values are commented with the real ones).
# --------------------------------------------------------------------------------------------------------------

_SD_BETAS = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    prediction_type="epsilon",
    timestep_spacing="leading",
)

_VAE_BASE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,  # 4 levels -> factor 8, as in all four families
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 32, 32),  # real (128, 256, 512, 512)
    layers_per_block=1,  # real 2
    act_fn="silu",
    norm_num_groups=4,  # real 32
    mid_block_add_attention=True,
    force_upcast=True,
)

_VAE: dict[str, dict[str, Any]] = {
    "flux": dict(_VAE_BASE, latent_channels=16, sample_size=128, scaling_factor=0.3611, shift_factor=0.1159,
                 use_quant_conv=False, use_post_quant_conv=False),
    "sd3": dict(_VAE_BASE, latent_channels=16, sample_size=128, scaling_factor=1.5305, shift_factor=0.0609,
                use_quant_conv=False, use_post_quant_conv=False),
    "sd": dict(_VAE_BASE, latent_channels=4, sample_size=64, scaling_factor=0.18215, shift_factor=None,
               use_quant_conv=True, use_post_quant_conv=True),
    "sdxl": dict(_VAE_BASE, latent_channels=4, sample_size=128, scaling_factor=0.13025, shift_factor=None,
                 use_quant_conv=True, use_post_quant_conv=True),
}

# CLIP ViT-L/14 text tower (SD 1.5, SDXL text_encoder, SD3 text_encoder, Flux text_encoder): 768 x 12, 12 heads.
_CLIP_L: dict[str, Any] = dict(
    hidden_size=32,  # real 768
    intermediate_size=128,  # real 3072 (4x)
    num_hidden_layers=2,  # real 12
    num_attention_heads=4,  # real 12
    projection_dim=32,  # real 768
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
)
# OpenCLIP ViT-bigG/14 text tower (SDXL / SD3 text_encoder_2): 1280 x 32, 20 heads, gelu.
_CLIP_G: dict[str, Any] = dict(_CLIP_L, hidden_act="gelu")  # real 1280 wide, 5120 ffn, 32 layers, 20 heads
# T5 v1.1 XXL encoder (Flux text_encoder_2, SD3 text_encoder_3): 4096 wide, 64 heads x 64, ffn 10240, 24 layers.
_T5: dict[str, Any] = dict(
    d_model=32,  # real 4096
    d_kv=8,  # real 64
    d_ff=64,  # real 10240
    num_layers=2,  # real 24
    num_heads=4,  # real 64
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.0,  # real 0.1 (training only)
    layer_norm_epsilon=1e-6,
    initializer_factor=1.0,
    feed_forward_proj="gated-gelu",
    is_encoder_decoder=False,
    use_cache=False,
    tie_word_embeddings=False,
)
# SD3 zero-pads the concatenated CLIP-L + CLIP-G hidden states (768 + 1280) to the T5 width (4096), so T5 must be
# at least as wide as both CLIPs together: 64 here.
_T5_SD3: dict[str, Any] = dict(_T5, d_model=64, d_kv=16, d_ff=128)

_FLUX_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1,
    num_layers=1,  # real 19 double-stream blocks
    num_single_layers=1,  # real 38 single-stream blocks
    attention_head_dim=16,  # real 128
    num_attention_heads=2,  # real 24
    guidance_embeds=True,  # FLUX.1-dev (guidance-distilled)
    axes_dims_rope=(4, 6, 6),  # real (16, 56, 56); must sum to attention_head_dim
)
_SD3_TRANSFORMER: dict[str, Any] = dict(
    sample_size=16,  # real 128 (latent px) -> native 128 px image
    patch_size=2,
    num_layers=2,  # real 24
    attention_head_dim=16,  # real 64
    num_attention_heads=2,  # real 24
    pos_embed_max_size=32,  # real 192
    dual_attention_layers=(),
    qk_norm=None,
)
_SD_UNET: dict[str, Any] = dict(
    sample_size=8,  # real 64 -> native 64 px image (real 512)
    block_out_channels=(32, 64),  # real (320, 640, 1280, 1280)
    layers_per_block=1,  # real 2
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),  # real 3x CrossAttnDown + Down
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),  # real Up + 3x CrossAttnUp
    attention_head_dim=2,  # real 8 (diffusers' legacy name: number of heads)
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
)
_SDXL_UNET: dict[str, Any] = dict(
    sample_size=16,  # real 128 -> native 128 px image (real 1024)
    block_out_channels=(32, 64),  # real (320, 640, 1280)
    layers_per_block=1,  # real 2
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # real Down + 2x CrossAttnDown
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4),  # real (5, 10, 20) heads
    transformer_layers_per_block=1,  # real (1, 2, 10)
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,  # real 256
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
)
_SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "flux": (FlowMatchEulerDiscreteScheduler, dict(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)),
    "sd3": (FlowMatchEulerDiscreteScheduler, dict(num_train_timesteps=1000, shift=3.0)),
    "sd": (DDIMScheduler, dict(_SD_BETAS, clip_sample=False, set_alpha_to_one=False)),
    "sdxl": (EulerDiscreteScheduler, dict(_SD_BETAS, interpolation_type="linear", use_karras_sigmas=False)),
}

# Components per kind: name -> (role, class); role picks the default config / tokenizer.
_LAYOUT: dict[str, dict[str, tuple[str, type]]] = {
    "flux": {
        "tokenizer": ("clip_tok", PreTrainedTokenizerFast),
        "tokenizer_2": ("t5_tok", PreTrainedTokenizerFast),
        "text_encoder": ("clip_l", CLIPTextModel),
        "text_encoder_2": ("t5", T5EncoderModel),
        "vae": ("vae", AutoencoderKL),
        "transformer": ("flux", FluxTransformer2DModel),
        "scheduler": ("scheduler", FlowMatchEulerDiscreteScheduler),
    },
    "sd": {
        "tokenizer": ("clip_tok", PreTrainedTokenizerFast),
        "text_encoder": ("clip_l", CLIPTextModel),
        "vae": ("vae", AutoencoderKL),
        "unet": ("sd_unet", UNet2DConditionModel),
        "scheduler": ("scheduler", DDIMScheduler),
    },
    "sdxl": {
        "tokenizer": ("clip_tok", PreTrainedTokenizerFast),
        "tokenizer_2": ("clip_tok", PreTrainedTokenizerFast),
        "text_encoder": ("clip_l", CLIPTextModel),
        "text_encoder_2": ("clip_g", CLIPTextModelWithProjection),
        "vae": ("vae", AutoencoderKL),
        "unet": ("sdxl_unet", UNet2DConditionModel),
        "scheduler": ("scheduler", EulerDiscreteScheduler),
    },
    "sd3": {
        "tokenizer": ("clip_tok", PreTrainedTokenizerFast),
        "tokenizer_2": ("clip_tok", PreTrainedTokenizerFast),
        "tokenizer_3": ("t5_tok", PreTrainedTokenizerFast),
        "text_encoder": ("clip_l", CLIPTextModelWithProjection),
        "text_encoder_2": ("clip_g", CLIPTextModelWithProjection),
        "text_encoder_3": ("t5", T5EncoderModel),
        "vae": ("vae", AutoencoderKL),
        "transformer": ("sd3", SD3Transformer2DModel),
        "scheduler": ("scheduler", FlowMatchEulerDiscreteScheduler),
    },
}
# Which tokenizer feeds which text encoder.
_TOKENIZER_OF = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2", "text_encoder_3": "tokenizer_3"}


def _check_kind(kind: str) -> str:
    if kind not in PIPELINE_CLASSES:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; expected one of {KINDS}")
    return kind


def check_overrides(kind: str, components: Iterable[str], overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-component config overrides of a tiny `kind` pipeline, checked: known component names, mappings, and
    only `model_max_length` for tokenizers (shared by every tiny builder)."""
    out: dict[str, dict[str, Any]] = {}
    components = list(components)
    for name, value in overrides.items():
        if name not in components:
            raise TypeError(f"unknown override {name!r} for a tiny {kind} pipeline; components: {sorted(components)}")
        if not isinstance(value, Mapping):
            raise TypeError(f"override {name!r} must be a mapping of config values, got {type(value).__name__}")
        if name.startswith("tokenizer") and set(value) - {"model_max_length"}:
            raise TypeError(f"tokenizer override {name!r} accepts only 'model_max_length'")
        out[name] = dict(value)
    return out


def _check_overrides(kind: str, overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return check_overrides(kind, _LAYOUT[kind], overrides)


def _merge(defaults: Mapping[str, Any], user: Mapping[str, Any], derived: Mapping[str, Any] | None = None) -> dict:
    """defaults < derived < user (derived values only where the user gave none)."""
    return {**defaults, **(derived or {}), **user}


def _build_tokenizers(kind: str, words: list[str], ov: dict[str, dict[str, Any]]) -> dict[str, PreTrainedTokenizerFast]:
    toks = {}
    for name, (role, _) in _LAYOUT[kind].items():
        if role == "clip_tok":
            toks[name] = build_clip_word_tokenizer(words, **{"model_max_length": 77, **ov.get(name, {})})
        elif role == "t5_tok":
            toks[name] = build_t5_word_tokenizer(words, **{"model_max_length": 512, **ov.get(name, {})})
    return toks


def _text_encoder_config(kind: str, role: str, tok: PreTrainedTokenizerFast, user: dict[str, Any]) -> dict:
    if role == "t5":
        derived = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id)
        return _merge(_T5_SD3 if kind == "sd3" else _T5, user, derived)
    defaults = _CLIP_L if role == "clip_l" else _CLIP_G
    # eos_token_id must be the real eos id (not the legacy 2) so CLIPTextTransformer pools at the first eos;
    # the eos id is also the highest id, so the legacy argmax pooling would agree.
    derived = dict(vocab_size=len(tok), max_position_embeddings=tok.model_max_length,
                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return _merge(defaults, user, derived)


def _configs_from_tokenizers(kind: str, toks: Mapping[str, PreTrainedTokenizerFast],
                             ov: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    layout = _LAYOUT[kind]
    cfg: dict[str, dict[str, Any]] = {}
    for name, (role, _) in layout.items():
        if name.startswith("text_encoder"):
            cfg[name] = _text_encoder_config(kind, role, toks[_TOKENIZER_OF[name]], ov.get(name, {}))
    cfg["vae"] = _merge(_VAE[kind], ov.get("vae", {}))
    latent = cfg["vae"]["latent_channels"]
    te, te2, te3 = cfg.get("text_encoder"), cfg.get("text_encoder_2"), cfg.get("text_encoder_3")
    if kind == "flux":
        cfg["transformer"] = _merge(_FLUX_TRANSFORMER, ov.get("transformer", {}), dict(
            in_channels=4 * latent,  # 2x2 packed latents
            out_channels=None,
            joint_attention_dim=te2["d_model"],
            pooled_projection_dim=te["hidden_size"],  # CLIPTextModel pooler_output (not projected)
        ))
        t = cfg["transformer"]
        if sum(t["axes_dims_rope"]) != t["attention_head_dim"]:
            raise ValueError(f"axes_dims_rope {t['axes_dims_rope']} must sum to attention_head_dim "
                             f"{t['attention_head_dim']}")
    elif kind == "sd3":
        heads, head_dim = (ov.get("transformer", {}).get(k, _SD3_TRANSFORMER[k])
                           for k in ("num_attention_heads", "attention_head_dim"))
        cfg["transformer"] = _merge(_SD3_TRANSFORMER, ov.get("transformer", {}), dict(
            in_channels=latent,
            out_channels=latent,
            joint_attention_dim=te3["d_model"],
            caption_projection_dim=heads * head_dim,
            pooled_projection_dim=te["projection_dim"] + te2["projection_dim"],
        ))
        if te3["d_model"] < te["hidden_size"] + te2["hidden_size"]:
            raise ValueError("SD3 zero-pads the concatenated CLIP hidden states to the T5 width: text_encoder_3 "
                             "d_model must be >= text_encoder hidden_size + text_encoder_2 hidden_size")
    elif kind == "sd":
        cfg["unet"] = _merge(_SD_UNET, ov.get("unet", {}), dict(
            in_channels=latent, out_channels=latent, cross_attention_dim=te["hidden_size"]))
    elif kind == "sdxl":
        time_dim = ov.get("unet", {}).get("addition_time_embed_dim", _SDXL_UNET["addition_time_embed_dim"])
        cfg["unet"] = _merge(_SDXL_UNET, ov.get("unet", {}), dict(
            in_channels=latent,
            out_channels=latent,
            cross_attention_dim=te["hidden_size"] + te2["hidden_size"],  # penultimate hidden states, concatenated
            # pooled text_embeds of text_encoder_2 + 6 micro-conditioning ids (orig size, crop, target size)
            projection_class_embeddings_input_dim=te2["projection_dim"] + 6 * time_dim,
        ))
    cfg["scheduler"] = _merge(_SCHEDULERS[kind][1], ov.get("scheduler", {}))
    return cfg


def tiny_configs(kind: Kind, vocab: Iterable[str] | None = None, **overrides: Mapping[str, Any]) -> dict[str, dict]:
    """The component configs a tiny pipeline of ``kind`` would be built with (no weights are created).

    Keys are component names (``vae``, ``text_encoder``, ..., ``transformer``/``unet``, ``scheduler``); tokenizers
    are not included (their config is the vocab plus ``model_max_length``).
    """
    _check_kind(kind)
    ov = _check_overrides(kind, overrides)
    toks = _build_tokenizers(kind, normalize_vocab(vocab), ov)
    return _configs_from_tokenizers(kind, toks, ov)


def _component_seed(seed: int, name: str) -> int:
    return (int(seed) * 0x9E3779B97F4A7C15 + zlib.crc32(name.encode())) % (2**63 - 1)


def _instantiate(cls: type, config: dict[str, Any]) -> Any:
    if cls in (CLIPTextModel, CLIPTextModelWithProjection):
        return cls(CLIPTextConfig(**config))
    if cls is T5EncoderModel:
        return cls(T5Config(**config))
    return cls(**config)


def tiny_pipeline(kind: Kind, vocab: Iterable[str] | None = None, seed: int = 0, *,
                  dtype: torch.dtype = torch.float32, **overrides: Mapping[str, Any]) -> DiffusionPipeline:
    """Build a tiny random pipeline of ``kind`` (``"flux"``, ``"sd"``, ``"sdxl"`` or ``"sd3"``).

    Args:
        kind: pipeline family.
        vocab: word list for the word-level tokenizers (default :data:`~hiresflow.models.tokenizers.DEFAULT_VOCAB`).
        seed: weight seed; the same seed (and configs) gives bit-identical weights. The global torch RNG is not
            touched.
        dtype: dtype of the model weights (built in float32, then cast).
        **overrides: per-component config overrides, see the module docstring.

    All modules are returned in ``eval()`` mode on the CPU.
    """
    _check_kind(kind)
    ov = _check_overrides(kind, overrides)
    toks = _build_tokenizers(kind, normalize_vocab(vocab), ov)
    configs = _configs_from_tokenizers(kind, toks, ov)
    components: dict[str, Any] = dict(toks)
    with torch.random.fork_rng(devices=[]):
        for name, (_, cls) in _LAYOUT[kind].items():
            if name in toks:
                continue
            if name == "scheduler":
                components[name] = cls(**configs[name])
                continue
            torch.manual_seed(_component_seed(seed, name))
            module = _instantiate(cls, configs[name]).eval()
            if dtype != torch.float32:
                module = module.to(dtype)
            components[name] = module
    if kind == "flux":
        return FluxPipeline(**components)
    if kind == "sd":
        return StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    if kind == "sdxl":
        return StableDiffusionXLPipeline(**components, force_zeros_for_empty_prompt=True, add_watermarker=False)
    return StableDiffusion3Pipeline(**components)


def tiny_flux_pipeline(vocab: Iterable[str] | None = None, seed: int = 0, **overrides: Any) -> FluxPipeline:
    """Tiny FLUX.1-dev-like ``FluxPipeline`` (CLIP-L + T5 text encoders, guidance-embedded MMDiT, 16-ch VAE).

    Native size 128 px (8 x 8 packed tokens), but ``FluxPipeline`` defaults to 1024 px: pass ``height``/``width``.
    Height/width must be multiples of 16 (VAE factor 8 x 2x2 packing).
    """
    return tiny_pipeline("flux", vocab, seed, **overrides)  # type: ignore[return-value]


def tiny_sd_pipeline(vocab: Iterable[str] | None = None, seed: int = 0, **overrides: Any) -> StableDiffusionPipeline:
    """Tiny SD-1.5-like ``StableDiffusionPipeline`` (CLIP-L, epsilon UNet, 4-ch VAE, DDIM); no safety checker.

    Native size 64 px (UNet ``sample_size`` 8). Height/width must be multiples of 16 (VAE 8 x one UNet downsample).
    """
    return tiny_pipeline("sd", vocab, seed, **overrides)  # type: ignore[return-value]


def tiny_sdxl_pipeline(
    vocab: Iterable[str] | None = None, seed: int = 0, **overrides: Any
) -> StableDiffusionXLPipeline:
    """Tiny SDXL-base-like ``StableDiffusionXLPipeline`` (CLIP-L + bigG-style CLIP with projection, text_time UNet).

    Native size 128 px (UNet ``sample_size`` 16). Height/width must be multiples of 16. No watermarker.
    """
    return tiny_pipeline("sdxl", vocab, seed, **overrides)  # type: ignore[return-value]


def tiny_sd3_pipeline(vocab: Iterable[str] | None = None, seed: int = 0, **overrides: Any) -> StableDiffusion3Pipeline:
    """Tiny SD3-medium-like ``StableDiffusion3Pipeline`` (2 CLIPs with projection + T5, MMDiT, 16-ch VAE).

    Native size 128 px (transformer ``sample_size`` 16); up to 512 px with ``pos_embed_max_size`` 32.
    Height/width must be multiples of 16 (VAE 8 x patch 2).
    """
    return tiny_pipeline("sd3", vocab, seed, **overrides)  # type: ignore[return-value]


def load_tiny_pipeline(path: str | os.PathLike[str], kind: Kind | None = None, **kwargs: Any) -> DiffusionPipeline:
    """Reload a saved (tiny) pipeline strictly offline (``local_files_only=True``).

    With ``kind`` the specific pipeline class is used, otherwise ``DiffusionPipeline`` dispatches on
    ``model_index.json``.
    """
    cls = PIPELINE_CLASSES[_check_kind(kind)] if kind is not None else DiffusionPipeline
    kwargs.setdefault("local_files_only", True)
    return cls.from_pretrained(os.fspath(path), **kwargs)


def save_tiny_pipeline(kind: Kind, path: str | os.PathLike[str], vocab: Iterable[str] | None = None, seed: int = 0,
                       *, verify: bool = False, **overrides: Any) -> Path:
    """Build ``tiny_pipeline(kind, vocab, seed, **overrides)`` and write it as a diffusers folder (safetensors).

    The folder reloads offline with ``DiffusionPipeline.from_pretrained(path)`` or e.g.
    ``FluxPipeline.from_pretrained(path, local_files_only=True)`` (see :func:`load_tiny_pipeline`).
    Tokenizers are recorded as ``PreTrainedTokenizerFast`` (see :func:`make_tokenizer_class_portable`).
    With ``verify=True`` it is reloaded and every weight compared bit for bit (``RuntimeError`` on a mismatch).
    Returns ``Path(path)``.
    """
    pipe = tiny_pipeline(kind, vocab, seed, **overrides)
    out = Path(path)
    pipe.save_pretrained(out, safe_serialization=True)
    make_tokenizer_class_portable(out)
    if verify:
        reloaded = load_tiny_pipeline(out, kind)
        a, b = pipeline_state_dict(pipe), pipeline_state_dict(reloaded)
        bad = sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))
        if bad:
            raise RuntimeError(f"reloaded tiny {kind} pipeline differs in {len(bad)} tensors, e.g. {bad[:5]}")
    return out


def make_tokenizer_class_portable(path: str | os.PathLike[str]) -> None:
    """Record the word-level tokenizers of a saved pipeline folder as ``PreTrainedTokenizerFast``.

    transformers 5 names the generic tokenizer class ``TokenizersBackend`` when saving (in ``model_index.json`` and
    ``tokenizer*/tokenizer_config.json``); that name does not exist in transformers 4.x, whereas
    ``PreTrainedTokenizerFast`` loads in both (it is an alias of ``TokenizersBackend`` in 5.x). Called by
    :func:`save_tiny_pipeline`; call it again after ``pipe.save_pretrained`` of a loaded or trained pipeline.
    """
    root = Path(path)
    index_file = root / "model_index.json"
    index = json.loads(index_file.read_text())
    changed = False
    for name, entry in index.items():
        if isinstance(entry, list) and entry == ["transformers", "TokenizersBackend"]:
            index[name] = ["transformers", "PreTrainedTokenizerFast"]
            changed = True
            make_tokenizer_config_portable(root / name)
    if changed:
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _modules(pipe: DiffusionPipeline) -> dict[str, torch.nn.Module]:
    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def pipeline_state_dict(pipe: DiffusionPipeline) -> dict[str, torch.Tensor]:
    """All weights of a pipeline as one flat dict ``"<component>.<param>" -> tensor`` (for comparisons)."""
    return {f"{name}.{k}": v for name, m in _modules(pipe).items() for k, v in m.state_dict().items()}


def count_parameters(pipe: DiffusionPipeline) -> dict[str, int]:
    """Parameter count per torch component, plus ``"total"``."""
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in _modules(pipe).items()}
    counts["total"] = sum(counts.values())
    return counts

