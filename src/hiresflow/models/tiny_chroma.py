"""Tiny random-weight `ChromaPipeline`, built fully offline (`hiresflow.models.loading`'s "random-tiny-chroma").

Kept from Chroma1-HD (diffusers `ChromaPipeline` / `ChromaTransformer2DModel`; real values in
tests/models/data/real_configs/chroma.json):

* the component classes and wiring: `ChromaTransformer2DModel`, FLUX.1's `AutoencoderKL`, one `T5EncoderModel`
  (T5 v1.1 style: gated-gelu, 32 relative-attention buckets) with its tokenizer, `FlowMatchEulerDiscreteScheduler`;
  no image encoder (optional components left empty, as the published folder);
* latent layout: 16 latent channels, VAE factor 8 (4 levels), FLUX.1's `scaling_factor`/`shift_factor`
  0.3611/0.1159, no quant convs; `patch_size` 1 with 2×2 packing (`in_channels` = 4·16 = 64);
* the transformer's structure: double- and single-stream blocks, three RoPE axes (index, row, column) with
  θ = 10 000 whose dims sum to the head dim, `joint_attention_dim` = T5 width, the distilled-guidance approximator
  with `approximator_num_channels` 64 (its input is the 16-channel timestep, guidance and modulation-index
  embeddings, so 64 is structural) and a modulation vector per block;
* scheduler: FLUX.1-dev's flow-match config (shift 3.0, dynamic shifting with μ from 0.5 at 256 image tokens to
  1.15 at 4096), which `ChromaPipeline` feeds with its own `calculate_shift` μ;
* T5 sequence: 512 tokens (`ChromaPipeline`'s `max_sequence_length` default and maximum).

Shrunk: transformer 1 double + 1 single block of 2 heads × 16 (real 19 + 38 blocks of 24 × 128), RoPE axes
(4, 6, 6) (real (16, 56, 56)), approximator 2 layers × 32 (real 5 × 5120); VAE channels (8, 16, 32, 32), one
resnet per level, 4 norm groups (real (128, 256, 512, 512), 2 resnets, 32 groups); T5 32 wide × 2 layers (real
4096 × 24); a word-level tokenizer of ~400 words (`hiresflow.models.tokenizers`) instead of T5's SentencePiece
vocabulary; native size 64 px (4 × 4 packed tokens) instead of 1024 px — `ChromaPipeline` itself still defaults to
1024 px, so pass `height`/`width` when calling it directly. About 0.34 M parameters (0.26 M of them the VAE).

Weights are deterministic: each component is initialised inside `torch.random.fork_rng()` after a seed derived
from (`seed`, component name), as `hiresflow.models.tiny` does, so the global RNG is untouched and overriding one
component's config leaves the others' weights as they were. `**overrides` maps a component name ("transformer",
"vae", "text_encoder", "scheduler"; "tokenizer" takes only `model_max_length`) to config values merged over the
defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["NATIVE", "tiny_configs", "tiny_pipeline"]

NATIVE: int = 64  # px; 8 × 8 latent, 4 × 4 tokens

_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1,
    num_layers=1,  # real 19
    num_single_layers=1,  # real 38
    attention_head_dim=16,  # real 128
    num_attention_heads=2,  # real 24
    axes_dims_rope=(4, 6, 6),  # real (16, 56, 56); sums to attention_head_dim
    approximator_num_channels=64,  # real 64 (structural: 4 × 16-channel embeddings)
    approximator_hidden_dim=32,  # real 5120
    approximator_layers=2,  # real 5
)
_COMPONENTS = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")


def tiny_configs(**overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The component configs `tiny_pipeline` builds from (no weights); "tokenizer" is {"model_max_length": n}."""
    from .tiny import tiny_configs as flux_configs

    for name, value in overrides.items():
        if name not in _COMPONENTS:
            raise TypeError(f"unknown override {name!r} for a tiny chroma pipeline; components: {list(_COMPONENTS)}")
        if not isinstance(value, Mapping):
            raise TypeError(f"override {name!r} must be a mapping of config values, got {type(value).__name__}")
        if name == "tokenizer" and set(value) - {"model_max_length"}:
            raise TypeError("tokenizer override accepts only 'model_max_length'")
    tok = {"model_max_length": 512, **overrides.get("tokenizer", {})}
    # FLUX.1's tiny VAE, T5 and scheduler are Chroma's (same VAE, same T5 family, same scheduler config)
    flux = flux_configs("flux", tokenizer_2=tok, text_encoder_2=dict(overrides.get("text_encoder", {})),
                        vae=dict(overrides.get("vae", {})), scheduler=dict(overrides.get("scheduler", {})))
    t5, vae = flux["text_encoder_2"], flux["vae"]
    transformer = {**_TRANSFORMER, "in_channels": 4 * vae["latent_channels"], "out_channels": None,
                   "joint_attention_dim": t5["d_model"], **overrides.get("transformer", {})}
    heads_dim = transformer["attention_head_dim"]
    if sum(transformer["axes_dims_rope"]) != heads_dim:
        raise ValueError(f"axes_dims_rope {tuple(transformer['axes_dims_rope'])} must sum to attention_head_dim "
                         f"{heads_dim}")
    return {"tokenizer": tok, "text_encoder": t5, "vae": vae, "transformer": transformer,
            "scheduler": flux["scheduler"]}


def tiny_pipeline(seed: int = 0, **overrides: Mapping[str, Any]):
    """A tiny random `ChromaPipeline` (module docstring), all modules in eval mode on the CPU, float32."""
    from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    from .tiny import _component_seed
    from .tokenizers import build_t5_word_tokenizer, normalize_vocab

    cfg = tiny_configs(**overrides)
    tokenizer = build_t5_word_tokenizer(normalize_vocab(None), **cfg["tokenizer"])
    builders = {
        "text_encoder": lambda c: T5EncoderModel(T5Config(**c)),
        "vae": lambda c: AutoencoderKL(**c),
        "transformer": lambda c: ChromaTransformer2DModel(**c),
    }
    modules = {}
    with torch.random.fork_rng(devices=[]):
        for name, build in builders.items():
            torch.manual_seed(_component_seed(seed, name))
            modules[name] = build(cfg[name]).eval()
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**cfg["scheduler"]), tokenizer=tokenizer,
                          image_encoder=None, feature_extractor=None, **modules)
