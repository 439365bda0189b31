"""Tiny random-weight SD3.5 `StableDiffusion3Pipeline`s, built offline (`hiresflow.models.loading`'s
"random-tiny-sd35": the medium shape).

Built by `hiresflow.models.tiny.tiny_pipeline("sd3", transformer=...)`, so everything but the transformer flags is
the tiny SD3 pipeline (two CLIPs with projection + T5, 16-channel VAE with SD3's 1.5305/0.0609 normalisation,
flow-match scheduler with static shift 3.0 — SD3.5 keeps SD3's text encoders, VAE and scheduler). The flags are
SD3.5's (transformer configs of stabilityai/stable-diffusion-3.5-medium and -large;
tests/models/data/real_configs/sd35.json):

* medium: `qk_norm="rms_norm"`, dual attention (a second, image-only attention `attn2`) in the first 13 of 24
  blocks → here in block 0 of 2; `pos_embed_max_size` 384 patches = 6 × the native 64-patch side → 48 = 6 × 8;
* large: `qk_norm="rms_norm"`, no dual attention; `pos_embed_max_size` 192 = 3 × 64 → 24 = 3 × 8.

Shrunk as the tiny SD3 (2 blocks of 2 heads × 16, real 24 × 24 × 64 / 38 × 38 × 64; native 128 px, real 1024 px;
`sample_size` 16, real 128). Deterministic weights per (`seed`, component) as `hiresflow.models.tiny`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NATIVE", "MEDIUM", "LARGE", "VARIANTS", "tiny_pipeline"]

NATIVE: int = 128  # px; transformer sample_size 16 latent pixels

MEDIUM: dict[str, Any] = dict(
    num_layers=2,  # real 24
    dual_attention_layers=(0,),  # real (0, …, 12): the first 13 of 24 blocks
    qk_norm="rms_norm",
    pos_embed_max_size=48,  # real 384 patches = 6 × the native 64-patch side
)
LARGE: dict[str, Any] = dict(
    num_layers=2,  # real 38
    dual_attention_layers=(),
    qk_norm="rms_norm",
    pos_embed_max_size=24,  # real 192 patches = 3 × the native 64-patch side
)
VARIANTS: dict[str, dict[str, Any]] = {"medium": MEDIUM, "large": LARGE}


def tiny_pipeline(seed: int = 0, variant: str = "medium", **overrides: Mapping[str, Any]):
    """A tiny SD3.5-`variant`-shaped `StableDiffusion3Pipeline` ("medium" or "large"); `overrides` as
    `hiresflow.models.tiny.tiny_pipeline` (per component), the transformer's merged over the variant's flags."""
    from .tiny import tiny_pipeline as build

    if variant not in VARIANTS:
        raise ValueError(f"unknown SD3.5 variant {variant!r}; use one of {', '.join(VARIANTS)}")
    transformer = {**VARIANTS[variant], **dict(overrides.pop("transformer", {}))}
    return build("sd3", seed=seed, transformer=transformer, **overrides)
