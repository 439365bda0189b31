"""Widen a trained tiny pipeline's word-level vocabulary without changing what it already knows.

A warm start (`--init-from`) keeps the start model's tokenizers and frozen text encoders, so a training source
with new words (e.g. the widened caption grammar `hiresflow.world.varied`) would map them to ``<unk>``.
`extend_vocabulary` adds the missing words to every word-level tokenizer of the pipeline and grows each text
encoder's token embedding to match:

* old tokens keep their embedding rows (moved to their new ids: CLIP's ``<|startoftext|>``/``<|endoftext|>`` sit
  after the words, so they shift; T5's specials come first and stay), so a caption made only of old words encodes
  to exactly the same tensors as before, and the denoiser's learned conditioning stays valid;
* each new word gets a row drawn from N(0, s²) with s the standard deviation of the existing rows (the encoders
  are random and frozen, so this is the same kind of vector the old words have), from an explicit generator.

The new text encoder is rebuilt from its config with the new ``vocab_size`` and special-token ids (CLIP pools its
output at ``eos_token_id``, which moves), and loads the remapped state dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.tokenizers import (
    CLIP_BOS,
    T5_EOS,
    build_clip_word_tokenizer,
    build_t5_word_tokenizer,
    normalize_vocab,
)

__all__ = ["VocabExtension", "extend_vocabulary", "pipeline_words"]

#: (tokenizer, text encoder) attribute pairs of the tiny pipelines
_PAIRS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"), ("tokenizer_3", "text_encoder_3"))


@dataclass(frozen=True)
class VocabExtension:
    added: tuple[str, ...]  # the words added, in their new id order
    encoders: tuple[str, ...]  # the text encoders that grew


def _kind(tok) -> str | None:
    if tok.bos_token == CLIP_BOS:
        return "clip"
    if tok.eos_token == T5_EOS and tok.bos_token is None:
        return "t5"
    return None


def _words(tok) -> list[str]:
    """The tokenizer's words in id order, without its special tokens."""
    specials = set(tok.all_special_tokens)
    return [w for w, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) if w not in specials]


def pipeline_words(pipe) -> list[str]:
    """The word list of the pipeline's first word-level tokenizer (all of them share it in the tiny pipelines)."""
    for tok_name, _ in _PAIRS:
        tok = getattr(pipe, tok_name, None)
        if tok is not None and _kind(tok):
            return _words(tok)
    raise ValueError(f"{type(pipe).__name__} has no word-level tokenizer of hiresflow's tiny models")


def _grow_encoder(encoder, old_tok, new_tok, generator: torch.Generator):
    """A copy of ``encoder`` whose token embedding follows ``new_tok``'s ids (old rows moved, new rows drawn)."""
    emb = encoder.get_input_embeddings().weight.detach()
    old_vocab, new_vocab = old_tok.get_vocab(), new_tok.get_vocab()
    rows = torch.randn((len(new_vocab), emb.shape[1]), generator=generator, dtype=torch.float32)
    rows = (rows * emb.float().std()).to(emb.dtype)
    for token, old_id in old_vocab.items():
        rows[new_vocab[token]] = emb[old_id]
    config = encoder.config.to_dict()
    config.update(vocab_size=len(new_vocab))
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        token = getattr(new_tok, key[: -len("_id")], None)  # bos_token, eos_token, pad_token
        if key in config and token is not None:
            config[key] = new_vocab[token]
    if "decoder_start_token_id" in config and new_tok.pad_token is not None:
        config["decoder_start_token_id"] = new_vocab[new_tok.pad_token]
    grown = type(encoder)(type(encoder.config).from_dict(config))
    state = dict(encoder.state_dict())
    for k, v in list(state.items()):  # the embedding and its tied copies (T5's shared / encoder.embed_tokens)
        if v.shape == emb.shape and torch.equal(v, emb):
            state[k] = rows
    grown.load_state_dict(state, strict=True)
    return grown.to(dtype=emb.dtype).eval().requires_grad_(False)


def extend_vocabulary(pipe, words, *, seed: int = 0) -> VocabExtension:
    """Add to ``pipe`` (in place) the words of ``words`` its word-level tokenizers lack; see the module docstring.
    Returns what was added (nothing when every word is known)."""
    want = normalize_vocab(words)
    base = pipeline_words(pipe)
    missing = [w for w in want if w not in set(base)]
    if not missing:
        return VocabExtension((), ())
    new_words = base + missing
    grown = []
    for k, (tok_name, enc_name) in enumerate(_PAIRS):
        tok, enc = getattr(pipe, tok_name, None), getattr(pipe, enc_name, None)
        kind = _kind(tok) if tok is not None else None
        if kind is None or enc is None:
            continue
        build = build_clip_word_tokenizer if kind == "clip" else build_t5_word_tokenizer
        new_tok = build(new_words, model_max_length=tok.model_max_length)
        gen = torch.Generator().manual_seed(int(seed) * 10 + k)
        pipe.register_modules(**{tok_name: new_tok, enc_name: _grow_encoder(enc, tok, new_tok, gen)})
        grown.append(enc_name)
    return VocabExtension(tuple(missing), tuple(grown))
