"""Varied training captions: the widened caption grammar for the v3 embedded models.

:func:`varied_prompt` states exactly the attributes :func:`~hiresflow.world.prompts.prompt_for` states, and
:func:`~hiresflow.world.prompts.parse_prompt` reads both into the same attributes (tested on every scene kind),
in the ways users phrase prompts that the fixed grammar never produces:

* **word orders**: the sun/moon first (as the fixed grammar), the time of day first, or the trees and house first;
* **framing**: "a view of", "a picture of", "a wide landscape with", ...;
* **counts** as digits ("3 pine trees") and number words, "a single"/"a lone"/"a pair of", with size adjectives
  ("2 tall firs", "a tiny hut");
* **synonyms**: fir/evergreen/conifer and plural "pines"/"oaks"; hut/chalet/farmhouse; pond; peaks/summits/mountain
  range; golden/crimson/silvery; noon/afternoon/twilight/sundown/midnight; overcast/heavy/cloudless skies.

**Held out stays held out.** The held-out test phrasings (:mod:`hiresflow.world.heldout`, measured by
``benchmarks/native_quality.py --phrasing heldout``) share these content words, so a model trained on varied
captions knows the words and the test measures *phrasing*, not vocabulary; but their constructions stay unseen:
varied captions have no commas, no hyphens, none of the held-out framing prefixes
(:data:`~hiresflow.world.heldout.HELDOUT_FRAMES`), never place the mountains with "below"/"in front of"/"against"/
"at the foot of" and never say "in the foreground". On top of that, :func:`training_prompt` redraws any caption
equal to one of the held-out test captions (:func:`heldout_captions`), so none of them is ever a training caption.

Every caption is lowercase words and digits separated by single spaces (a word-level tokenizer over
:func:`varied_vocabulary` covers it) and at most :data:`~hiresflow.world.heldout.MAX_TOKENS` words.
Deterministic given ``rng`` (a numpy Generator or an int); without one the draw is derived from ``scene.seed``.
"""

from __future__ import annotations

import functools

import numpy as np

from .heldout import (
    _COLORS,
    _TREE_NOUNS,
    _TREE_SIZES,
    MAX_TOKENS,
    _article,
    _trees,
    heldout_prompt,
)
from .prompts import COUNT_WORDS, _gen, _pick, prompt_for, vocabulary
from .scene import Scene, sample_scene

__all__ = ["VARIED_FRAMES", "varied_prompt", "training_prompt", "heldout_captions", "varied_vocabulary"]

#: Framing prefixes of the varied captions ("" = none); none of them is a held-out framing prefix.
VARIED_FRAMES = ("a view of", "a picture of", "an image of", "a scene of", "a wide landscape with", "")

_BODY_NP = {"sun": ("a {c} sun", "a big {c} sun", "the {c} sun", "a round {c} sun"),
            "moon": ("a {c} moon", "a round {c} moon", "the {c} moon", "a {c} crescent moon", "a {c} full moon")}
_OVER = ("over", "above", "shining over", "hanging above")
_MOUNTAINS = {
    True: ("snowy peaks", "snow capped peaks", "snowy summits", "a snowy mountain range", "peaks topped with snow",
           "snowy mountains"),
    False: ("rocky peaks", "bare peaks", "jagged peaks", "a mountain range", "grey peaks", "distant mountains"),
}
_NEAR_MOUNTAINS = ("near", "beneath", "under", "among")
_LAKE = ("by a pond", "beside a small lake", "near a still pond", "next to a lake", "with a lake")
_HOUSE_SIZES = ("tiny", "small", "little", "wooden", "old", "")
_HOUSE_NOUNS = ("house", "cottage", "hut", "cabin", "chalet", "farmhouse")
_GROUND = {
    "grass": ("in a green valley", "on a grassy field", "on a green meadow", ""),
    "dry": ("on parched brown earth", "in a dry valley", "on dry brown land", ""),
    "snow": ("on snowy ground", "in deep snow", "in a snowy field"),
}
_SKY = {
    ("none", False): ("under clear skies", "with a cloudless sky", ""),
    ("few", False): ("with scattered clouds", "with some wispy clouds", "with a few clouds"),
    ("many", False): ("under an overcast sky", "with heavy clouds", "with thick clouds", "under a cloudy sky"),
    ("none", True): ("under a sky full of stars", "with twinkling stars", "under a starry sky"),
    ("few", True): ("with scattered clouds and stars", "with a few clouds and twinkling stars"),
    ("many", True): ("under an overcast sky with a few stars", "with heavy clouds and a few stars"),
}
_TIME = {
    "day": ("at noon", "in the afternoon", "in broad daylight", "on a bright morning", "in the daytime", "at midday"),
    "sunset": ("at twilight", "at sundown", "at dusk", "in the evening", "at sunset"),
    "night": ("at midnight", "late at night", "on a dark night", "by moonlight", "at night"),
}


def _subjects(scene: Scene, g: np.random.Generator) -> str | None:
    """The trees and the house joined by "and" (no commas), in a drawn order; None without either."""
    parts = [_trees(kind, n, g) for kind, n in scene.tree_counts.items() if n]
    if len(parts) > 1 and g.random() < 0.5:
        parts.reverse()
    if scene.house is not None:
        house = _article(" ".join(w for w in ("a", _pick(_HOUSE_SIZES, g), _pick(_HOUSE_NOUNS, g)) if w))
        parts.insert(int(g.integers(len(parts) + 1)), house)
    return " and ".join(parts) if parts else None


def _assemble(order: int, frame: str, body: str, mountains: str, lake: str, subjects: str | None, ground: str,
              sky: str, time: str, over: str, near: str) -> str:
    """The clauses in one of three orders: sun/moon first, time first, trees and house first."""
    with_subjects = f"with {subjects}" if subjects else ""
    if order == 1:  # the time of day first, no framing prefix, no comma
        clauses = [time, body, over, mountains, lake, with_subjects, ground, sky]
    elif order == 2 and subjects:  # the trees and house first, the mountains behind them, the sky last
        clauses = [frame, subjects, lake, ground, near, mountains, "under", body, sky, time]
    else:  # the sun/moon first, as the fixed grammar, with the varied words
        clauses = [frame, body, over, mountains, lake, with_subjects, ground, sky, time]
    return " ".join(c for c in clauses if c)


def varied_prompt(scene: Scene, rng: np.random.Generator | int | None = None) -> str:
    """A caption for ``scene`` in the widened training grammar (see the module docstring)."""
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a hiresflow.world.Scene, got {type(scene).__name__}")  # noqa: TRY004
    g = _gen(scene, rng, 404)
    frame = _pick(VARIED_FRAMES, g)
    color = _pick(_COLORS[scene.body.color], g)
    body = _article(_pick(_BODY_NP[scene.body.kind], g).format(c=color))
    mountains = _pick(_MOUNTAINS[scene.snowy], g)
    lake = _pick(_LAKE, g) if scene.lake is not None else ""
    subjects = _subjects(scene, g)
    ground = _pick(_GROUND[scene.ground], g) if g.random() < 0.5 else ""
    sky = _pick(_SKY[(scene.clouds, scene.stars)], g)
    time = _pick(_TIME[scene.time], g)
    over, near = _pick(_OVER, g), _pick(_NEAR_MOUNTAINS, g)
    order = int(g.integers(3))
    text = _assemble(order, frame, body, mountains, lake, subjects, ground, sky, time, over, near)
    if len(text.split()) > MAX_TOKENS:  # the longest draws: drop the framing prefix and the ground
        text = _assemble(order, "", body, mountains, lake, subjects, "", sky, time, over, near)
    return text


@functools.cache
def heldout_captions(n: int = 200, seed: int = 0) -> frozenset[str]:
    """The held-out test captions of ``benchmarks/native_quality.py --phrasing heldout --n N --seed SEED``: the
    held-out phrasing of the first ``n`` scenes drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return frozenset(heldout_prompt(sample_scene(rng)) for _ in range(n))


def training_prompt(scene: Scene, g: np.random.Generator, varied_fraction: float = 0.5) -> str:
    """A training caption: :func:`varied_prompt` with probability ``varied_fraction``, else the fixed grammar's
    :func:`prompt_for`; a varied caption equal to a held-out test caption is redrawn (it never is in practice, the
    constructions differ, but the guarantee is exact)."""
    if not 0.0 <= varied_fraction <= 1.0:
        raise ValueError(f"varied_fraction must lie in [0, 1], got {varied_fraction!r}")
    if g.random() >= varied_fraction:
        return prompt_for(scene, g)
    held = heldout_captions()
    for _ in range(16):
        text = varied_prompt(scene, g)
        if text not in held:
            return text
    return prompt_for(scene, g)


def _varied_phrases() -> list[str]:
    out: list[str] = [*VARIED_FRAMES, *_OVER, *_NEAR_MOUNTAINS, *_LAKE, *_HOUSE_SIZES, *_HOUSE_NOUNS, "with and an under"]
    out += [w for v in _COLORS.values() for w in v] + [p for v in _BODY_NP.values() for p in v]
    out += [str(k) for k in range(len(COUNT_WORDS))] + list(COUNT_WORDS) + ["a single lone pair of"]
    for table in (_MOUNTAINS, _GROUND, _SKY, _TIME, _TREE_SIZES):
        out += [p for v in table.values() for p in v]
    out += [p for v in _TREE_NOUNS.values() for forms in v for p in forms]
    return out


def varied_vocabulary() -> list[str]:
    """Sorted words of the fixed grammar (:func:`~hiresflow.world.prompts.vocabulary`) and the varied captions."""
    words = set(vocabulary())
    for p in _varied_phrases():
        words.update(w for w in p.replace("{c}", " ").split() if w)
    return sorted(words)
