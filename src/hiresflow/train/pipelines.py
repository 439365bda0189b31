"""Pipeline skeletons of the embedded models: frozen random text encoders + word tokenizers over the world's
vocabulary, the trained shared VAE, a fresh denoiser and the scheduler config.

A skeleton is saved once per run (``<run>/skeleton/``) and reloaded on resume and export, so a run keeps its
exact text encoders even if the builders in :mod:`hiresflow.models.tiny` change later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CLIP_CONFIG",
    "T5_CONFIG",
    "MAX_TOKENS",
    "FLUX_TRANSFORMER_CONFIG",
    "SD_UNET_CONFIG",
    "build_skeleton",
    "save_pipeline",
    "load_pipeline_folder",
    "denoiser_of",
]

MAX_TOKENS = 48  # world prompts have up to ~38 words (+ bos/eos)
CLIP_CONFIG: dict[str, Any] = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                                   projection_dim=64)
T5_CONFIG: dict[str, Any] = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)

FLUX_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=1,
    num_layers=3,  # double-stream blocks
    num_single_layers=5,
    attention_head_dim=32,
    num_attention_heads=4,  # inner width 128
    axes_dims_rope=(8, 12, 12),
    guidance_embeds=False,  # plain classifier-free guidance against the empty prompt
)
# Our own σ grids use the scheduler's static `shift`; the model is trained at one native size (64 px).
FLUX_SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)

SD_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16,  # latent px -> 64 px images with the factor-4 VAE
    block_out_channels=(64, 96, 128),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=4,  # diffusers' legacy name: number of heads
    norm_num_groups=32,
)


def denoiser_of(kind: str) -> str:
    return "transformer" if kind == "flux" else "unet"


def build_skeleton(kind: str, vocab: list[str], vae_dir: str | Path | None, *, seed: int = 0,
                   denoiser: dict | None = None, vae_config: dict | None = None):
    """A ``FluxPipeline`` (kind ``flux``) or ``StableDiffusionPipeline`` (kind ``sd``) with the trained VAE from
    ``vae_dir`` (or a random one of ``vae_config`` when ``None``, for tests), random frozen text encoders from
    ``seed`` and a freshly initialised denoiser (config ``denoiser`` over the defaults)."""
    from diffusers import AutoencoderKL, FluxPipeline, StableDiffusionPipeline

    from ..models.tiny import tiny_pipeline
    from .vae import VAE_CONFIG

    if vae_dir is not None:
        vae = AutoencoderKL.from_pretrained(str(vae_dir), torch_dtype=torch.float32, local_files_only=True)
    else:
        from .vae import build_vae

        vae = build_vae(vae_config, seed)
    vcfg = {k: v for k, v in dict(vae.config).items() if k in VAE_CONFIG or k in ("use_quant_conv", "use_post_quant_conv")}
    tok = {"model_max_length": MAX_TOKENS}
    if kind == "flux":
        overrides = dict(tokenizer=tok, tokenizer_2=tok, text_encoder=CLIP_CONFIG, text_encoder_2=T5_CONFIG,
                         vae=vcfg, transformer=dict(FLUX_TRANSFORMER_CONFIG, **(denoiser or {})),
                         scheduler=FLUX_SCHEDULER_CONFIG)
    elif kind == "sd":
        vcfg = dict(vcfg, shift_factor=None)  # StableDiffusionPipeline ignores shift_factor: keep it unused
        overrides = dict(tokenizer=tok, text_encoder=CLIP_CONFIG, vae=vcfg,
                         unet=dict(SD_UNET_CONFIG, **(denoiser or {})))
    else:
        raise ValueError(f"unknown kind {kind!r}; expected 'flux' or 'sd'")
    pipe = tiny_pipeline(kind, vocab, seed, **overrides)
    comps = dict(pipe.components)
    if kind == "sd":
        vae.register_to_config(shift_factor=None)
        comps.pop("image_encoder", None)
    comps["vae"] = vae.eval()
    if kind == "flux":
        comps.pop("image_encoder", None)
        comps.pop("feature_extractor", None)
        new = FluxPipeline(**{k: comps[k] for k in ("scheduler", "vae", "text_encoder", "tokenizer",
                                                    "text_encoder_2", "tokenizer_2", "transformer")})
    else:
        new = StableDiffusionPipeline(**{k: comps[k] for k in ("vae", "text_encoder", "tokenizer", "unet",
                                                               "scheduler")},
                                      safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for name, m in new.components.items():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False).eval()
    new.set_progress_bar_config(disable=True)
    return new


def save_pipeline(pipe, out: str | Path, native_size: int, dtype: torch.dtype | None = None,
                  extra_meta: dict | None = None) -> Path:
    """``save_pretrained`` (safetensors, optionally cast to ``dtype``), portable tokenizer class names and
    ``hiresflow.json``."""
    from ..models.tiny import make_tokenizer_class_portable

    out = Path(out)
    if dtype is not None:
        pipe = _cast_copy(pipe, dtype)
    pipe.save_pretrained(out, safe_serialization=True)
    if dtype is not None:
        run_in_float32(out)
    make_tokenizer_class_portable(out)
    meta = {"native_size": int(native_size), **(extra_meta or {})}
    (out / "hiresflow.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def run_in_float32(folder: str | Path) -> None:
    """Name float32 as the dtype in every component config of ``folder`` (transformers records the dtype of the
    saved weights, and its ``from_pretrained`` then loads them in it by default): weights stored in fp16 then load
    as float32 with plain diffusers/transformers too, as hiresflow runs them."""
    for cfg in Path(folder).glob("*/config.json"):
        data = json.loads(cfg.read_text())
        keys = [k for k in ("dtype", "torch_dtype") if data.get(k) in ("float16", "bfloat16")]
        if keys:
            data.update({k: "float32" for k in keys})
            cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _cast_copy(pipe, dtype: torch.dtype):
    import copy

    comps = {}
    for name, c in pipe.components.items():
        comps[name] = copy.deepcopy(c).to(dtype) if isinstance(c, torch.nn.Module) else c
    return type(pipe)(**comps) if "safety_checker" not in comps else type(pipe)(
        **{k: v for k, v in comps.items() if k not in ("safety_checker", "feature_extractor", "image_encoder")},
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def load_pipeline_folder(path: str | Path, dtype: torch.dtype = torch.float32):
    """A pipeline folder through the library's loader (`hiresflow.models.loading.load_pipeline`: weight checks,
    components shared with another embedded folder), in ``dtype``, progress bars off."""
    from ..models.loading import load_pipeline

    pipe, _ = load_pipeline(str(Path(path)), dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
