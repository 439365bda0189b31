"""Offline word-level tokenizers for tiny / embedded text-to-image pipelines.

Real Stable Diffusion / SDXL / SD3 / Flux checkpoints ship a byte-level BPE CLIP tokenizer (49,408 tokens) and a
SentencePiece T5 tokenizer (32,128 tokens). Neither can be built without downloading their vocabularies, so the
tiny pipelines in :mod:`hiresflow.models.tiny` use *word-level* tokenizers built from a plain word list with the
`tokenizers` library instead:

* model: ``WordLevel`` (one id per word; anything else maps to the unknown token),
* normaliser: NFC + lowercase,
* pre-tokeniser: splits on whitespace and isolates punctuation, but keeps hyphenated / apostrophised words
  together (``"close-up"``, ``"o'clock"``), see :data:`WORD_PATTERN`,
* post-processor: ``<bos> $A <eos>`` (CLIP style) or ``$A </s>`` (T5 style), so truncation keeps the end token,
* padding token and ``model_max_length`` stored in ``tokenizer_config.json``.

Both are wrapped as :class:`transformers.PreTrainedTokenizerFast`. That is deliberate: in transformers 5 the
model-specific classes (``CLIPTokenizer`` = ``CLIPTokenizerFast``, ``T5Tokenizer`` = ``T5TokenizerFast``) rebuild
their own BPE / Unigram backend in ``__init__`` and only take the vocabulary out of ``tokenizer.json``, so a
word-level ``tokenizer.json`` saved under those class names does *not* survive ``from_pretrained``. The generic
class (``TokenizersBackend`` in transformers 5, ``PreTrainedTokenizerFast`` in 4.x) loads ``tokenizer.json``
verbatim. Diffusers skips the type check for ``tokenizer*`` components when loading a pipeline, and the pipelines
only use the generic tokenizer API (``__call__`` with ``padding="max_length"``, ``truncation``,
``return_overflowing_tokens``, ``return_length``; ``batch_decode``; ``tokenize``; ``added_tokens_encoder``;
``model_max_length``), so these tokenizers are drop-in replacements.

Id layout (chosen so both transformers CLIP pooling paths pick the end token):

* CLIP style: ``0 = <unk>``, ``1..n`` = words, ``n+1 = <|startoftext|>``, ``n+2 = <|endoftext|>`` (= eos = pad,
  as in openai/clip-vit-large-patch14). The eos token has the highest id, so the legacy ``argmax(input_ids)``
  pooling (text configs with ``eos_token_id == 2``, e.g. Flux's) and the new first-``eos_token_id`` pooling agree.
  ``<unk>`` is a separate token so an unknown word is never mistaken for the end of the prompt.
* T5 style: ``0 = <pad>``, ``1 = </s>``, ``2 = <unk>`` (as in T5), ``3..n+2`` = words; no sentinel tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = [
    "CLIP_BOS",
    "CLIP_EOS",
    "CLIP_UNK",
    "DEFAULT_VOCAB",
    "T5_EOS",
    "T5_PAD",
    "T5_UNK",
    "WORD_PATTERN",
    "WordTokenizers",
    "build_clip_word_tokenizer",
    "build_t5_word_tokenizer",
    "build_word_tokenizers",
    "make_tokenizer_config_portable",
    "normalize_vocab",
]

CLIP_UNK = "<unk>"
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
T5_PAD = "<pad>"
T5_EOS = "</s>"
T5_UNK = "<unk>"

#: Pre-tokeniser pattern: runs of letters/digits optionally joined by single ``-`` or ``'`` (``close-up``,
#: ``don't``), or a single punctuation / symbol character. Everything else (whitespace) is dropped.
WORD_PATTERN = r"[\p{L}\p{N}]+(?:[-'][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]"

_DEFAULT_WORDS = """
a an the of in on at by with over under above below near behind beside between through into onto from to
and or but not no without for as under up down out off far
is are was were be being been has have had do does made
this that these those it its his her their our my your one two three four five many few some all every
very more most much small big large huge tiny tall short long wide narrow high low deep shallow old new young
ancient modern bright dark light soft hard warm cold hot cool wet dry calm quiet loud wild gentle quiet
beautiful pretty ugly clean dirty empty full open closed rough smooth sharp blurry clear foggy misty hazy
cloudy sunny rainy snowy stormy windy frozen icy golden silver wooden stone glass metal plastic paper
red orange yellow green blue purple pink brown black white gray grey colorful pale vivid
sun moon star stars sky cloud clouds rain snow fog mist storm wind lightning rainbow sunrise sunset dawn dusk
night day morning evening noon twilight midnight winter spring summer autumn fall season
mountain mountains hill hills valley canyon cliff cliffs rock rocks boulder cave volcano desert dune dunes
plain plains meadow field fields grass flower flowers garden forest woods jungle tree trees pine pines oak
palm leaf leaves branch branches bush moss fern
lake lakes river rivers stream creek waterfall pond sea ocean beach shore coast island bay wave waves water
ice glacier snowfield reflection reflections
house houses home cabin cottage hut castle tower church temple bridge road street path trail fence wall
window door roof city town village building buildings skyscraper lighthouse harbor boat ship sail train car
bicycle
person people man woman child boy girl friend family crowd face eyes hair hand hands portrait
dog dogs cat cats bird birds horse horses cow sheep deer fox wolf bear fish butterfly owl eagle
apple bread cup table chair bed book lamp clock candle fire smoke
photo photograph picture painting drawing sketch illustration render art artwork style watercolor oil
close-up closeup landscape panorama view scene shot wide-angle macro aerial detailed realistic
photorealistic cinematic dramatic highly detail details quality resolution sharp focus bokeh lens camera
light lighting shadow shadows glow sunlight moonlight starlight
standing sitting walking running flying swimming sleeping looking reading
""".split()

#: Default vocabulary: a few hundred common (mostly landscape / photography) English words plus punctuation.
DEFAULT_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(_DEFAULT_WORDS + [str(d) for d in range(10)] + list(",.!?:;'\"()-"))
)


class WordTokenizers(NamedTuple):
    """The two tokenizers built from one word list (a tuple, so ``clip, t5 = build_word_tokenizers(...)`` works)."""

    clip: PreTrainedTokenizerFast
    t5: PreTrainedTokenizerFast


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # invert=True: the pattern describes the pieces to keep; the rest (whitespace) is removed.
    return pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])


def normalize_vocab(vocab: Iterable[str] | None, reserved: Iterable[str] = ()) -> list[str]:
    """Lowercase, strip and de-duplicate ``vocab`` (order kept); ``None`` gives :data:`DEFAULT_VOCAB`.

    Raises ``ValueError`` for an entry the normaliser + pre-tokeniser cannot produce as one piece (it would
    never be emitted, e.g. ``"two words"`` or ``"..."``) or one that clashes with a special token.
    """
    if isinstance(vocab, str):
        raise TypeError("vocab must be an iterable of words, not a single string")
    words = list(DEFAULT_VOCAB if vocab is None else vocab)
    reserved = set(reserved)
    probe = Tokenizer(models.WordLevel(vocab={"<unk>": 0}, unk_token="<unk>"))
    probe.normalizer = _normalizer()
    probe.pre_tokenizer = _pre_tokenizer()
    out: dict[str, None] = {}
    for raw in words:
        word = probe.normalizer.normalize_str(str(raw).strip())
        if not word:
            continue
        if word in reserved:
            raise ValueError(f"vocab entry {raw!r} clashes with a special token")
        pieces = [p for p, _ in probe.pre_tokenizer.pre_tokenize_str(word)]
        if pieces != [word]:
            raise ValueError(f"vocab entry {raw!r} is split by the pre-tokenizer into {pieces}; it can never be output")
        out[word] = None
    if not out:
        raise ValueError("vocab is empty")
    return list(out)


def _word_level(vocab: dict[str, int], unk: str) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = _pre_tokenizer()
    # No decoder: tokenizers joins decoded tokens with single spaces, which is right for word-level.
    return tok


def build_clip_word_tokenizer(
    vocab: Iterable[str] | None = None, model_max_length: int = 77
) -> PreTrainedTokenizerFast:
    """CLIP-style word-level tokenizer: ``<|startoftext|> words <|endoftext|>``, padded with ``<|endoftext|>``.

    Ids: ``<unk>`` = 0, words = 1..n in ``vocab`` order, ``<|startoftext|>`` = n+1, ``<|endoftext|>`` = n+2
    (highest id, like real CLIP). Use ``len(tok)`` as the text model's ``vocab_size`` and
    ``tok.eos_token_id`` / ``tok.bos_token_id`` / ``tok.pad_token_id`` for its config.
    """
    words = normalize_vocab(vocab, reserved=(CLIP_UNK, CLIP_BOS, CLIP_EOS))
    ids = {CLIP_UNK: 0, **{w: i + 1 for i, w in enumerate(words)}}
    ids[CLIP_BOS] = len(ids)
    ids[CLIP_EOS] = len(ids)
    backend = _word_level(ids, CLIP_UNK)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A:0 {CLIP_EOS}",
        pair=f"{CLIP_BOS} $A:0 {CLIP_EOS} $B:1 {CLIP_EOS}",
        special_tokens=[(CLIP_BOS, ids[CLIP_BOS]), (CLIP_EOS, ids[CLIP_EOS])],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=CLIP_UNK,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        pad_token=CLIP_EOS,
        model_max_length=int(model_max_length),
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
    _check_layout(tok, {CLIP_UNK: 0, CLIP_BOS: len(ids) - 2, CLIP_EOS: len(ids) - 1}, len(ids))
    return tok


def build_t5_word_tokenizer(
    vocab: Iterable[str] | None = None, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """T5-style word-level tokenizer: ``words </s>``, padded with ``<pad>``; no bos, no sentinel tokens.

    Ids: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2 (T5's layout), words = 3..n+2 in ``vocab`` order.
    """
    words = normalize_vocab(vocab, reserved=(T5_PAD, T5_EOS, T5_UNK))
    ids = {T5_PAD: 0, T5_EOS: 1, T5_UNK: 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = _word_level(ids, T5_UNK)
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {T5_EOS}", pair=f"$A:0 {T5_EOS} $B:1 {T5_EOS}", special_tokens=[(T5_EOS, ids[T5_EOS])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=T5_UNK,
        eos_token=T5_EOS,
        pad_token=T5_PAD,
        model_max_length=int(model_max_length),
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
    _check_layout(tok, {T5_PAD: 0, T5_EOS: 1, T5_UNK: 2}, len(ids))
    return tok


def _check_layout(tok: PreTrainedTokenizerFast, expected: dict[str, int], size: int) -> None:
    # Special tokens are already in the WordLevel vocab, so wrapping must not append duplicates.
    got = {t: tok.convert_tokens_to_ids(t) for t in expected}
    if got != expected or len(tok) != size:
        raise RuntimeError(f"unexpected tokenizer layout: {got} (len {len(tok)}), expected {expected} (len {size})")


def build_word_tokenizers(
    vocab: Iterable[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    clip_max_length: int = 77,
    t5_max_length: int = 512,
) -> WordTokenizers:
    """Build the CLIP-style and T5-style word-level tokenizers for one word list.

    Args:
        vocab: words (any case; lowercased, de-duplicated). ``None`` uses :data:`DEFAULT_VOCAB`.
        out_dir: if given, save them with ``save_pretrained`` to ``out_dir/"clip"`` and ``out_dir/"t5"``
            (reload with ``transformers.PreTrainedTokenizerFast.from_pretrained`` or ``AutoTokenizer``).
        clip_max_length: ``model_max_length`` of the CLIP tokenizer (77 as in every CLIP text encoder).
        t5_max_length: ``model_max_length`` of the T5 tokenizer (512 as in T5; the pipelines pass their own
            ``max_sequence_length`` explicitly: Flux 512, SD3 256).
    """
    words = normalize_vocab(vocab)
    pair = WordTokenizers(
        clip=build_clip_word_tokenizer(words, model_max_length=clip_max_length),
        t5=build_t5_word_tokenizer(words, model_max_length=t5_max_length),
    )
    if out_dir is not None:
        out = Path(out_dir)
        for sub, tok in (("clip", pair.clip), ("t5", pair.t5)):
            tok.save_pretrained(out / sub)
            make_tokenizer_config_portable(out / sub)
    return pair


def make_tokenizer_config_portable(tokenizer_dir: str | os.PathLike[str]) -> bool:
    """Rewrite ``tokenizer_class: TokenizersBackend`` (transformers 5's name for the generic fast tokenizer) in a
    saved ``tokenizer_config.json`` to ``PreTrainedTokenizerFast``, which loads in transformers 4.x and 5.x alike.
    Returns whether the file was changed."""
    config_file = Path(tokenizer_dir) / "tokenizer_config.json"
    if not config_file.is_file():
        return False
    config = json.loads(config_file.read_text())
    if config.get("tokenizer_class") != "TokenizersBackend":
        return False
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return True
