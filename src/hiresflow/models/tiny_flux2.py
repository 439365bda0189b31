"""Tiny random-weight FLUX.2 pipelines ([dev] and [klein]), built fully offline.

``tiny_pipeline()`` returns a genuine ``diffusers.Flux2Pipeline`` (FLUX.2 [dev]) and ``tiny_klein_pipeline()`` a
genuine ``Flux2KleinPipeline`` (FLUX.2 [klein]), each shrunk to a few hundred thousand parameters; they are test
fixtures and plumbing demos (``load_model("random-tiny-flux2")``, ``"random-tiny-flux2-klein"``).

Kept from the real checkpoints (diffusers 0.42 ``scripts/convert_flux2_to_diffusers.py`` and the class defaults):

* classes and wiring: ``Flux2Transformer2DModel``, ``AutoencoderKLFlux2``, ``FlowMatchEulerDiscreteScheduler``,
  ``Mistral3ForConditionalGeneration`` (a Mistral language model with a Pixtral vision tower) for [dev],
  ``Qwen3ForCausalLM`` for [klein]; the klein pipeline's ``is_distilled`` flag (default False: the true-CFG base
  model; ``tiny_klein_pipeline(is_distilled=True)`` for the step-distilled one);
* VAE: 4 ``DownEncoderBlock2D``/``UpDecoderBlock2D`` levels (factor 8), 32 latent channels, quant convs, the
  2×2 patch BatchNorm (128 channels, eps 1e-4) whose running statistics normalise the patchified latents —
  here set to deterministic non-trivial values (mean ≈ ±0.3, var in [0.5, 2]) so that tests see the
  normalisation act;
* transformer: ``patch_size`` 1 on 128 = 32·2·2 input channels, 4 RoPE axes (t, h, w, l) of equal width summing
  to the head dim, ``rope_theta`` 2000, SwiGLU ``mlp_ratio`` 3, ``joint_attention_dim`` = 3 × the text model's
  width (the pipelines stack three hidden layers: (10, 20, 30) for [dev], (9, 18, 27) for [klein], so the
  text models keep at least 30 / 27 layers), ``guidance_embeds`` True for [dev], False for [klein];
* scheduler: the FLUX.1-dev flow-match config the conversion script copies (shift 3, dynamic shifting, base/max
  shift 0.5/1.15, base/max image seq len 256/4096) — the pipelines pass their own μ (`compute_empirical_mu`);
* tokenizers: chat templates of the same shape as the real ones, applied by the pipelines' own code —
  [dev]: ``<s>[SYSTEM_PROMPT]…[/SYSTEM_PROMPT][INST]…[/INST]`` with the content as typed parts, applied batched
  with ``padding="max_length"``; [klein]: ``<|im_start|>user … <|im_end|> <|im_start|>assistant <think> </think>``
  (``enable_thinking=False``), tokenised with ``padding="max_length"``. FLUX.2 drops no template tokens: every
  one of the ``max_sequence_length`` positions (template, prompt, padding) reaches the transformer with text id
  (0, 0, 0, l), so the templates need no particular token count.

Shrunk: transformer 1 double + 1 single block of 2 heads × 32 (real [dev] 8 + 48 blocks of 48 × 128; [klein]
4B 5 + 20 of 24 × 128), RoPE axes (8, 8, 8, 8) (real (32, 32, 32, 32)); text models 16 wide (real Mistral Small
5120 × 40 layers, Qwen3-4B 2560 × 36) with exactly 30 / 27 layers; Pixtral vision tower 16 wide × 1 layer;
VAE channels (8, 16, 32, 32), 1 resnet per block, 4 norm groups (real (128, 256, 512, 512), 2, 32); word-level
vocabularies of a few hundred words with ``model_max_length`` 64 (the adapter then encodes 64 text tokens;
real tokenizers allow far more and the pipelines use 512); native size 64 px (4 × 4 tokens; real 1024 px).
The pipelines hard-code a 1024 px default, so pass ``height``/``width`` when calling them.

Weights are deterministic: each component is built inside ``torch.random.fork_rng()`` after
``torch.manual_seed(f(seed, component name))`` (as ``hiresflow.models.tiny``), so the global RNG is untouched.
``**overrides`` maps a component name to a dict merged over its default config (``transformer``, ``vae``,
``text_encoder`` — the text model's config —, ``scheduler``; ``tokenizer`` takes ``{"model_max_length": n}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline, \
    Flux2Transformer2DModel
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from .tiny import _component_seed
from .tokenizers import DEFAULT_VOCAB, _word_level, normalize_vocab

__all__ = ["NATIVE", "tiny_pipeline", "tiny_klein_pipeline", "mistral_chat_tokenizer", "qwen_chat_tokenizer"]

NATIVE: int = 64  # px; 4 × 4 transformer tokens (VAE factor 8 × the 2×2 latent patch)
TEXT_LENGTH = 64  # tokenizer model_max_length (the adapter encodes min(512, this) tokens)

_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1,
    in_channels=128,  # 32 latent channels × 2×2 patch
    num_layers=1,  # real [dev] 8, [klein] 4B 5, 9B 8
    num_single_layers=1,  # real [dev] 48, [klein] 4B 20, 9B 24
    attention_head_dim=32,  # real 128
    num_attention_heads=2,  # real [dev] 48, [klein] 4B 24, 9B 32
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(8, 8, 8, 8),  # real (32, 32, 32, 32); sums to the head dim
    rope_theta=2000,
    eps=1e-6,
)
_VAE: dict[str, Any] = dict(
    block_out_channels=(8, 16, 32, 32),  # real (128, 256, 512, 512)
    layers_per_block=1,  # real 2
    norm_num_groups=4,  # real 32
    latent_channels=32,
    sample_size=128,  # real 1024 (diffusers' tile size)
    batch_norm_eps=1e-4,
    patch_size=(2, 2),
)
_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                  max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
_MISTRAL: dict[str, Any] = dict(
    hidden_size=16,  # real 5120
    intermediate_size=32,  # real 32768
    num_hidden_layers=30,  # real 40; the pipeline reads hidden states 10, 20, 30
    num_attention_heads=2,  # real 32
    num_key_value_heads=1,  # real 8
    head_dim=8,  # real 128
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
_PIXTRAL: dict[str, Any] = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=56, patch_size=14)  # real 1024 × 24 layers, 1540 px, patch 14
_QWEN3: dict[str, Any] = dict(
    hidden_size=16,  # real 4B 2560, 9B 4096
    intermediate_size=32,  # real 9728
    num_hidden_layers=27,  # real 36; the pipeline reads hidden states 9, 18, 27
    num_attention_heads=2,  # real 32
    num_key_value_heads=1,  # real 8
    head_dim=8,  # real 128
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,  # Qwen3-4B ties its embeddings
)

_ROLE_WORDS = ("system", "user", "assistant")  # chat-template role names, appended to the word list

# Mistral's control tokens (Mistral Small 3.x keeps <unk>, <s>, </s> at 0, 1, 2) and its chat template's shape.
_MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]",
                     "<pad>")
_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text')"
    " | join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)
# Qwen's tokens (pad = <|endoftext|>) and the Qwen3 template with enable_thinking=False's empty think block.
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
_QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def _chat_tokenizer(specials: tuple[str, ...], words: Iterable[str] | None, template: str, max_length: int,
                    **tokens: str) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (specials first, then the words) with a chat template; specials match verbatim."""
    base = list(DEFAULT_VOCAB if words is None else words)
    vocab = normalize_vocab(base + [w for w in _ROLE_WORDS if w not in base], reserved=specials)
    ids = {t: i for i, t in enumerate(specials)}
    ids.update({w: len(specials) + i for i, w in enumerate(w for w in vocab if w not in ids)})
    backend = _word_level(ids, specials[0] if "unk_token" not in tokens else tokens["unk_token"])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=int(max_length), padding_side="right",
                                  truncation_side="right", model_input_names=["input_ids", "attention_mask"],
                                  **tokens)
    tok.chat_template = template
    if len(tok) != len(ids):
        raise RuntimeError(f"chat tokenizer has {len(tok)} tokens, expected {len(ids)}")
    return tok


def mistral_chat_tokenizer(words: Iterable[str] | None = None, max_length: int = TEXT_LENGTH):
    """[dev]'s tokenizer stand-in: Mistral's special-token layout and chat-template shape, word-level vocabulary."""
    return _chat_tokenizer(_MISTRAL_SPECIALS, words, _MISTRAL_TEMPLATE, max_length, unk_token="<unk>",
                           bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def qwen_chat_tokenizer(words: Iterable[str] | None = None, max_length: int = TEXT_LENGTH):
    """[klein]'s tokenizer stand-in: Qwen's special tokens and the Qwen3 chat template (thinking off)."""
    return _chat_tokenizer(("<unk>",) + _QWEN_SPECIALS, words, _QWEN_TEMPLATE, max_length, unk_token="<unk>",
                           eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _overrides(overrides: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    bad = sorted(set(overrides) - set(allowed))
    if bad:
        raise ValueError(f"unknown tiny FLUX.2 component(s) {', '.join(bad)}; override one of {', '.join(allowed)}")
    return {k: dict(v) for k, v in overrides.items()}


def _seeded(seed: int, name: str, build):
    torch.manual_seed(_component_seed(seed, name))
    return build().eval()


def _vae(seed: int, config: dict[str, Any]) -> AutoencoderKLFlux2:
    vae = _seeded(seed, "vae", lambda: AutoencoderKLFlux2(**config))
    g = torch.Generator().manual_seed(_component_seed(seed, "vae.bn"))
    n = vae.bn.running_mean.numel()
    vae.bn.running_mean.copy_(0.3 * (2 * torch.rand(n, generator=g) - 1))
    vae.bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
    return vae


def _mistral3(vocab_size: int, tok: PreTrainedTokenizerFast, text: dict[str, Any]):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    config = Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=vocab_size, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **text),
        vision_config=dict(model_type="pixtral", **_PIXTRAL),
        image_token_index=tok.convert_tokens_to_ids("[IMG]"), tie_word_embeddings=False,
    )
    return Mistral3ForConditionalGeneration(config)


def _qwen3(vocab_size: int, tok: PreTrainedTokenizerFast, text: dict[str, Any]):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab_size, pad_token_id=tok.pad_token_id,
                                        eos_token_id=tok.eos_token_id, **text))


def _build(kind: str, vocab, seed: int, ov: dict[str, dict[str, Any]], **pipe_kwargs):
    klein = kind == "klein"
    tok_cfg = ov.get("tokenizer", {})
    max_length = int(tok_cfg.pop("model_max_length", TEXT_LENGTH))
    if tok_cfg:
        raise ValueError(f"the tiny FLUX.2 tokenizer takes only model_max_length, got {sorted(tok_cfg)}")
    tok = (qwen_chat_tokenizer if klein else mistral_chat_tokenizer)(vocab, max_length)
    text = {**(_QWEN3 if klein else _MISTRAL), **ov.get("text_encoder", {})}
    transformer = {**_TRANSFORMER, "guidance_embeds": not klein,
                   "joint_attention_dim": 3 * int(text["hidden_size"]), **ov.get("transformer", {})}
    with torch.random.fork_rng(devices=[]):
        components = dict(
            tokenizer=tok,
            scheduler=FlowMatchEulerDiscreteScheduler(**{**_SCHEDULER, **ov.get("scheduler", {})}),
            vae=_vae(seed, {**_VAE, **ov.get("vae", {})}),
            text_encoder=_seeded(seed, "text_encoder",
                                 lambda: (_qwen3 if klein else _mistral3)(len(tok), tok, text)),
            transformer=_seeded(seed, "transformer", lambda: Flux2Transformer2DModel(**transformer)),
        )
    if klein:
        return Flux2KleinPipeline(**components, **pipe_kwargs)
    return Flux2Pipeline(**components)


def tiny_pipeline(seed: int = 0, vocab: Iterable[str] | None = None, **overrides: Mapping[str, Any]) -> Flux2Pipeline:
    """A tiny FLUX.2 [dev] ``Flux2Pipeline`` (Mistral3 text encoder, guidance-embedded transformer), on the CPU in
    float32 and eval mode; `overrides` as the module docstring says."""
    ov = _overrides(overrides, ("transformer", "vae", "text_encoder", "scheduler", "tokenizer"))
    return _build("dev", vocab, seed, ov)


def tiny_klein_pipeline(seed: int = 0, vocab: Iterable[str] | None = None, *, is_distilled: bool = False,
                        **overrides: Mapping[str, Any]) -> Flux2KleinPipeline:
    """A tiny FLUX.2 [klein] ``Flux2KleinPipeline`` (Qwen3 text encoder, no guidance embedding; true CFG unless
    `is_distilled`), on the CPU in float32 and eval mode."""
    ov = _overrides(overrides, ("transformer", "vae", "text_encoder", "scheduler", "tokenizer"))
    return _build("klein", vocab, seed, ov, is_distilled=bool(is_distilled))
