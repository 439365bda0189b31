"""A tiny random-weight Z-Image pipeline (diffusers `ZImagePipeline`), built fully offline.

`tiny_pipeline(seed)` returns a genuine `ZImagePipeline` whose components have the architecture of
Z-Image / Z-Image-Turbo (Tongyi-MAI) shrunk to a few hundred thousand parameters; `NATIVE` is its native size.

Kept as in the real checkpoint (the hub's `model_index.json`, `transformer/config.json`, `vae/config.json`,
`scheduler/scheduler_config.json`; tests/models/data/real_configs/zimage.json):

* classes and wiring: `ZImagePipeline` with `Qwen3Model` (text encoder; the pipeline reads its second-to-last
  hidden state), `ZImageTransformer2DModel` (single-stream DiT: noise refiner on the image tokens, context refiner
  on the caption tokens, then joint blocks), `AutoencoderKL` and `FlowMatchEulerDiscreteScheduler`;
* the transformer's layout: patch 2 (`all_patch_size` (2,), `all_f_patch_size` (1,)), 16 latent channels, qk-norm,
  `rope_theta` 256, `t_scale` 1000, three rotary axes in the real proportion 2 : 3 : 3 of the head dimension
  (real (32, 48, 48) of 128, here (4, 6, 6) of 16), `cap_feat_dim` = the text encoder's width;
* the VAE: FLUX.1's AutoencoderKL layout (4 levels, factor 8, 16 latent channels, no quant convs,
  `scaling_factor` 0.3611, `shift_factor` 0.1159);
* the scheduler: Z-Image-Turbo's config (shift 3.0, no dynamic shifting, 1000 training steps);
* the tokenizer's chat format: the pipeline renders every prompt with `apply_chat_template(..., 
  add_generation_prompt=True, enable_thinking=True)` and keeps *every* token of it (it drops only the padding), so
  the tiny tokenizer carries a Qwen3-style template (`<|im_start|>user … <|im_end|> <|im_start|>assistant`) that
  renders offline, with the special tokens `<|im_start|>`, `<|im_end|>`, `<|endoftext|>` (padding), `<think>`,
  `</think>`.

Shrunk: transformer 2 heads × 16 (real 30 × 128), 2 joint layers and 1 refiner layer each (real 30 and 2); the
rotary tables' `axes_lens` (1536, 32, 32) (real (1536, 512, 512): 8× the native token grid on the spatial axes,
kept at 8× the tiny native 4 × 4 grid, so that stock sampling works up to 8× and hiresflow's embedder is needed
beyond); Qwen3 32 wide × 2 layers, 2 query heads and 1 key/value head of 16 (real 2560 × 36, 32/8 heads of 128);
a word-level vocabulary of a few hundred words (real byte-level BPE, 151,936 tokens); VAE channels
(8, 16, 32, 32) with 1 resnet per block (real (128, 256, 512, 512), 2). The transformer's timestep MLP keeps its
hard-coded 256 → 1024 hidden width (diffusers' `TimestepEmbedder(mid_size=1024)`), most of the parameters.
Native size 64 px (4 × 4 tokens; real 1024 px).

Weights are deterministic: each component is initialised inside `torch.random.fork_rng()` after a seed derived
from (`seed`, component name), as `hiresflow.models.tiny` does. Overrides are per-component dicts merged over the
defaults, e.g. `tiny_pipeline(transformer={"n_layers": 1})`; the tokenizer takes only `model_max_length`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from .tiny import _component_seed
from .tokenizers import DEFAULT_VOCAB, _word_level, normalize_vocab

__all__ = ["NATIVE", "CHAT_TEMPLATE", "SPECIAL_TOKENS", "tiny_configs", "build_chat_tokenizer", "tiny_pipeline"]

NATIVE: int = 64

UNK, PAD, IM_START, IM_END, THINK, END_THINK = "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", \
    "<think>", "</think>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, IM_START, IM_END, THINK, END_THINK)

# Qwen3's chat format for the messages ZImagePipeline renders (one user turn, a generation prompt): with
# enable_thinking=True (what the pipeline passes) nothing follows "<|im_start|>assistant\n"; with False, Qwen3
# appends an empty think block.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif -%}"
    "{%- endif -%}"
)
CHAT_WORDS = ("user", "assistant", "system")

_TRANSFORMER: dict[str, Any] = dict(
    all_patch_size=(2,),
    all_f_patch_size=(1,),
    in_channels=16,
    dim=32,  # real 3840
    n_layers=2,  # real 30
    n_refiner_layers=1,  # real 2
    n_heads=2,  # real 30
    n_kv_heads=2,  # real 30
    norm_eps=1e-5,
    qk_norm=True,
    rope_theta=256.0,
    t_scale=1000.0,
    axes_dims=(4, 6, 6),  # real (32, 48, 48); sums to the head dim
    axes_lens=(1536, 32, 32),  # real (1536, 512, 512)
)
_TEXT_ENCODER: dict[str, Any] = dict(
    hidden_size=32,  # real 2560
    intermediate_size=64,  # real 9728
    num_hidden_layers=2,  # real 36
    num_attention_heads=2,  # real 32
    num_key_value_heads=1,  # real 8
    head_dim=16,  # real 128
    hidden_act="silu",
    max_position_embeddings=1024,  # real 40960
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
    attention_dropout=0.0,
)
_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 32, 32),  # real (128, 256, 512, 512)
    layers_per_block=1,  # real 2
    act_fn="silu",
    norm_num_groups=4,  # real 32
    mid_block_add_attention=True,
    latent_channels=16,
    sample_size=NATIVE,  # real 1024
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    force_upcast=True,
)
_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
_COMPONENTS = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")


def build_chat_tokenizer(vocab=None, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Word-level tokenizer with Qwen3's chat special tokens and `CHAT_TEMPLATE`; padding `<|endoftext|>`, no
    bos/eos added around the text (as Qwen's tokenizer). Ids: `<unk>` 0, words 1..n, then `SPECIAL_TOKENS`."""
    words = normalize_vocab(list(DEFAULT_VOCAB if vocab is None else vocab) + list(CHAT_WORDS),
                            reserved=(UNK, *SPECIAL_TOKENS))
    ids = {UNK: 0, **{w: i + 1 for i, w in enumerate(words)}}
    for tok in SPECIAL_TOKENS:
        ids[tok] = len(ids)
    backend = _word_level(ids, UNK)
    # matched before the pre-tokenizer splits off "<", "|", ...: the ids above are reused, nothing is appended
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=UNK, pad_token=PAD, eos_token=IM_END,
        additional_special_tokens=[IM_START, THINK, END_THINK], model_max_length=int(model_max_length),
        padding_side="right", truncation_side="right", model_input_names=["input_ids", "attention_mask"],
        chat_template=CHAT_TEMPLATE,
    )
    if len(tok) != len(ids) or tok.convert_tokens_to_ids(PAD) != ids[PAD]:
        raise RuntimeError(f"unexpected tokenizer layout (len {len(tok)}, expected {len(ids)})")
    return tok


def _check_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from .tiny import check_overrides

    return check_overrides("zimage", _COMPONENTS, overrides)


def tiny_configs(tokenizer: PreTrainedTokenizerFast, **overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The component configs (text encoder vocabulary and padding id, and the transformer's caption width, derived
    from the tokenizer and the text encoder unless overridden)."""
    ov = _check_overrides(overrides)
    te = {**_TEXT_ENCODER, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
          "eos_token_id": tokenizer.eos_token_id, **ov.get("text_encoder", {})}
    vae = {**_VAE, **ov.get("vae", {})}
    tr = {**_TRANSFORMER, "in_channels": vae["latent_channels"], "cap_feat_dim": te["hidden_size"],
          **ov.get("transformer", {})}
    if sum(tr["axes_dims"]) != tr["dim"] // tr["n_heads"]:
        raise ValueError(f"axes_dims {tr['axes_dims']} must sum to the head dim dim/n_heads = {tr['dim'] // tr['n_heads']}")
    return {"text_encoder": te, "transformer": tr, "vae": vae, "scheduler": {**_SCHEDULER, **ov.get("scheduler", {})}}


def tiny_pipeline(seed: int = 0, **overrides: Mapping[str, Any]) -> ZImagePipeline:
    """A tiny random `ZImagePipeline` (module docstring); the same `seed` gives bit-identical weights and the
    global torch RNG is left untouched. Modules are in eval mode, float32, on the CPU. The pipeline's own default
    size is 1024 px: pass `height=width=NATIVE` when calling it."""
    ov = _check_overrides(overrides)
    tokenizer = build_chat_tokenizer(**ov.get("tokenizer", {}))
    cfg = tiny_configs(tokenizer, **{k: v for k, v in ov.items() if k != "tokenizer"})
    modules: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        for name, build in (("text_encoder", lambda c: Qwen3Model(Qwen3Config(**c))),
                            ("transformer", lambda c: ZImageTransformer2DModel(**c)),
                            ("vae", lambda c: AutoencoderKL(**c))):
            torch.manual_seed(_component_seed(seed, name))
            modules[name] = build(cfg[name]).eval()
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**cfg["scheduler"]), tokenizer=tokenizer,
                          **modules)
