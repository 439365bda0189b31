"""A tiny random-weight Qwen-Image pipeline (diffusers `QwenImagePipeline`), built fully offline.

`tiny_pipeline(seed)` returns a genuine `QwenImagePipeline` whose components have the architecture of
Qwen/Qwen-Image shrunk to a few hundred thousand parameters (≈ 440 k); `NATIVE` is its native size.

Kept as in the real checkpoint (the hub's `transformer/config.json`, `vae/config.json`,
`scheduler/scheduler_config.json`; tests/models/data/real_configs/qwenimage.json):

* classes and wiring: `QwenImagePipeline` with `Qwen2_5_VLForConditionalGeneration` (text encoder: the pipeline
  reads the last hidden state of its language model and drops the first `prompt_template_encode_start_idx` = 34
  tokens of the chat template), `QwenImageTransformer2DModel` (dual-stream MMDiT, `QwenEmbedRope(scale_rope=True)`),
  `AutoencoderKLQwenImage` (causal 3-D VAE with a frame axis) and `FlowMatchEulerDiscreteScheduler`;
* the transformer's layout: `patch_size` 2 with 2×2 packing (`in_channels` 64 = 4 × 16), `out_channels` 16,
  no guidance embedding, three rotary axes (frame, row, column) in the real proportion 2 : 7 : 7 of the head
  dimension (real (16, 56, 56) of 128, here (4, 14, 14) of 32), `joint_attention_dim` = the text encoder's width;
* the VAE: 16 latent channels (`z_dim`), `dim_mult` (1, 2, 4, 4) with `temperal_downsample` (False, True, True)
  (spatial factor 8 = 2 ** 3), no attention scales, the published per-channel `latents_mean` / `latents_std`;
* the scheduler: Qwen-Image's config (dynamic exponential shift, base/max shift 0.5/0.9 at 256/8192 image
  tokens, `shift_terminal` 0.02, 1000 training steps);
* the text encoder's shape rules: Qwen2.5-VL's multimodal RoPE (`mrope_section` over a head dimension's
  halves, real (16, 24, 24) of 64, here (1, 1, 2) of 4), grouped key/value heads, untied `lm_head`, a vision
  tower (unused by text-to-image, but part of the class);
* the tokenizer's chat format: the pipeline's template prefix
  `<|im_start|>system\\nDescribe the image by detailing … background:<|im_end|>\\n<|im_start|>user\\n` encodes to
  exactly 34 tokens, as with the real byte-level BPE (one token per word, punctuation mark, newline and special
  token), so the pipeline's drop index removes precisely the template; special tokens `<|endoftext|>` (padding),
  `<|im_start|>`, `<|im_end|>`.

Shrunk: transformer 1 layer of 2 heads × 32 (real 60 layers of 24 × 128); Qwen2.5-VL language model 32 wide ×
2 layers, 4 query / 2 key-value heads of 8 (real 3584 × 28, 28/4 heads of 128), vision tower 1 block of 16
(real 32 × 1280); a word-level vocabulary of a few hundred words (real byte-level BPE, 151,665 tokens); VAE
`base_dim` 4 with 1 residual block per level (real 96, 2). Native size 80 px: 5 × 5 packed tokens, an odd grid
like the real 1328 px (83 × 83 tokens), so the centred RoPE positions of odd grids are exercised at the native
size (real 1328 px; the pipeline itself defaults to 1024 px, so pass `height`/`width`).

Weights are deterministic: each component is initialised inside `torch.random.fork_rng()` after a seed derived
from (`seed`, component name), as `hiresflow.models.tiny` does. Overrides are per-component dicts merged over the
defaults, e.g. `tiny_pipeline(transformer={"num_layers": 1})`; the tokenizer takes only `model_max_length`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                       QwenImageTransformer2DModel)
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from .tiny import _component_seed
from .tokenizers import DEFAULT_VOCAB, normalize_vocab

__all__ = ["NATIVE", "TEMPLATE_WORDS", "SPECIAL_TOKENS", "build_qwen_tokenizer", "tiny_configs", "tiny_pipeline"]

NATIVE: int = 80

UNK, PAD, IM_START, IM_END = "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, IM_START, IM_END)
NEWLINE = "\n"

#: The words of QwenImagePipeline's prompt template (`prompt_template_encode`), so the template is in-vocabulary.
TEMPLATE_WORDS: tuple[str, ...] = tuple(
    "system user assistant describe the image by detailing color shape size texture quantity text spatial "
    "relationships of objects and background".split())

# Words (with hyphens/apostrophes inside), a newline on its own, or one punctuation / symbol character; other
# whitespace is dropped. Byte-level BPE gives the template the same count: one token per word, mark and newline.
_PATTERN = r"[\p{L}\p{N}]+(?:[-'][\p{L}\p{N}]+)*|\n|[^\s\p{L}\p{N}]"

_TRANSFORMER: dict[str, Any] = dict(
    patch_size=2,
    out_channels=16,
    num_layers=1,  # real 60
    attention_head_dim=32,  # real 128
    num_attention_heads=2,  # real 24
    guidance_embeds=False,
    axes_dims_rope=(4, 14, 14),  # real (16, 56, 56): frame, row, column; sums to attention_head_dim
)
_VAE: dict[str, Any] = dict(
    base_dim=4,  # real 96
    z_dim=16,
    dim_mult=(1, 2, 4, 4),
    num_res_blocks=1,  # real 2
    attn_scales=(),
    temperal_downsample=(False, True, True),
    dropout=0.0,
)  # latents_mean / latents_std: the class defaults, which are the published Qwen-Image values
_TEXT: dict[str, Any] = dict(
    hidden_size=32,  # real 3584
    intermediate_size=64,  # real 18944
    num_hidden_layers=2,  # real 28
    num_attention_heads=4,  # real 28
    num_key_value_heads=2,  # real 4
    max_position_embeddings=2048,  # real 128000
    rms_norm_eps=1e-6,
    hidden_act="silu",
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
)
_VISION: dict[str, Any] = dict(
    depth=1,  # real 32
    hidden_size=16,  # real 1280
    intermediate_size=32,  # real 3420
    num_heads=2,  # real 16
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[0],  # real [7, 15, 23, 31]
)
_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
    base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    invert_sigmas=False, stochastic_sampling=False,
)
_COMPONENTS = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")


def build_qwen_tokenizer(vocab=None, model_max_length: int = 32768) -> PreTrainedTokenizerFast:
    """Word-level stand-in for Qwen2Tokenizer: `<unk>` = 0, the words, `\\n`, then `<|endoftext|>` (padding),
    `<|im_start|>`, `<|im_end|>` as special tokens (never split, never lower-cased). No BOS/EOS is added, as
    with Qwen2's tokenizer. `vocab` defaults to DEFAULT_VOCAB; the template words are always included."""
    words = normalize_vocab(list(DEFAULT_VOCAB if vocab is None else vocab) + list(TEMPLATE_WORDS),
                            reserved=(UNK,) + SPECIAL_TOKENS)
    ids = {UNK: 0, **{w: i + 1 for i, w in enumerate(words)}}
    ids[NEWLINE] = len(ids)
    for s in SPECIAL_TOKENS:
        ids[s] = len(ids)
    backend = Tokenizer(models.WordLevel(vocab=ids, unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PATTERN), behavior="removed", invert=True)
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK, pad_token=PAD, eos_token=IM_END,
                                  model_max_length=int(model_max_length), padding_side="right",
                                  truncation_side="right", model_input_names=["input_ids", "attention_mask"])
    got = {s: tok.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
    if got != {s: ids[s] for s in SPECIAL_TOKENS} or len(tok) != len(ids):
        raise RuntimeError(f"unexpected tokenizer layout: {got} (len {len(tok)})")
    return tok


def _check_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from .tiny import check_overrides

    return check_overrides("Qwen-Image", _COMPONENTS, overrides)


def tiny_configs(tokenizer: PreTrainedTokenizerFast, **overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The component configs (text_encoder as {"text_config", "vision_config", ...}, transformer, vae, scheduler)
    for `tokenizer`; dependent fields (vocabulary size, special ids, the transformer's text width and input
    channels) are derived unless given."""
    ov = _check_overrides(overrides)
    te = dict(ov.get("text_encoder", {}))
    text = {**_TEXT, "vocab_size": len(tokenizer), "bos_token_id": None,
            "eos_token_id": tokenizer.convert_tokens_to_ids(IM_END), "pad_token_id": tokenizer.pad_token_id,
            **te.pop("text_config", {})}
    vision = {**_VISION, "out_hidden_size": text["hidden_size"], **te.pop("vision_config", {})}
    n = len(tokenizer)  # the image/video ids lie outside the vocabulary: text prompts never contain them
    text_encoder = {"text_config": text, "vision_config": vision, "image_token_id": n, "video_token_id": n + 1,
                    "vision_start_token_id": n + 2, "vision_end_token_id": n + 3, "tie_word_embeddings": False,
                    **te}
    vae = {**_VAE, **ov.get("vae", {})}
    transformer = {**_TRANSFORMER, "in_channels": 4 * int(vae["z_dim"]), "joint_attention_dim": text["hidden_size"],
                   **ov.get("transformer", {})}
    if sum(transformer["axes_dims_rope"]) != transformer["attention_head_dim"]:
        raise ValueError(f"axes_dims_rope {tuple(transformer['axes_dims_rope'])} must sum to attention_head_dim "
                         f"{transformer['attention_head_dim']}")
    return {"text_encoder": text_encoder, "transformer": transformer, "vae": vae,
            "scheduler": {**_SCHEDULER, **ov.get("scheduler", {})}}


def tiny_pipeline(seed: int = 0, **overrides: Mapping[str, Any]) -> QwenImagePipeline:
    """A tiny random `QwenImagePipeline` (module docstring); same `seed` and overrides → bit-identical weights,
    the global RNG untouched. All modules in eval mode on the CPU, float32."""
    ov = _check_overrides(overrides)
    tokenizer = build_qwen_tokenizer(**ov.get("tokenizer", {}))
    cfg = tiny_configs(tokenizer, **{k: v for k, v in ov.items() if k != "tokenizer"})
    builders = {
        "text_encoder": lambda c: Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**c)),
        "transformer": lambda c: QwenImageTransformer2DModel(**c),
        "vae": lambda c: AutoencoderKLQwenImage(**{k: list(v) if isinstance(v, tuple) else v for k, v in c.items()}),
    }
    parts: dict[str, Any] = {"tokenizer": tokenizer,
                             "scheduler": FlowMatchEulerDiscreteScheduler(**cfg["scheduler"])}
    with torch.random.fork_rng(devices=[]):
        for name, build in builders.items():
            torch.manual_seed(_component_seed(seed, name))
            parts[name] = build(cfg[name]).eval()
    return QwenImagePipeline(**parts)
