"""Held-out phrasings of reference-world scene prompts, for testing how models follow unseen wording.

:func:`heldout_prompt` states exactly the attributes :func:`~hiresflow.world.prompts.prompt_for` states (time of
day, sun/moon and its colour, pine and oak counts, house, lake, snowy mountains, cloud level, stars), and
:func:`~hiresflow.world.prompts.parse_prompt` reads both into the same attributes, but its phrasings are never
produced by the training grammar:

* **word order**: a prompt never opens with the sun/moon (every training prompt does); it opens with a framing
  prefix, the trees and house, the mountains or the time of day, and the sun/moon comes later;
* **framing prefixes**: "wide view of", "a landscape photo of", "a painting of", ...;
* **counts** as digits ("3 pine trees"), number words, "a single"/"a lone"/"a pair of", with optional size
  adjectives ("2 tall firs", "a tiny house");
* **synonyms**: fir/evergreen/conifer and plural "pines"/"oaks" for trees; hut/chalet/farmhouse for the house;
  "pond" for the lake; "peaks"/"summits"/"mountain range" for the mountains ("snow-capped peaks", "peaks topped
  with snow"); golden/crimson/silvery for the colours; noon/afternoon/twilight/sundown/midnight for the time;
  "overcast", "heavy clouds", "cloudless", "star-filled" for the sky;
* **punctuation**: commas and hyphenated words, where the training prompts have bare lowercase words.

Every held-out prompt has at least one word outside :func:`~hiresflow.world.prompts.vocabulary` (its time-of-day
phrase always does), so it differs from every training prompt in its words, not only in their order.

Prompts stay within 46 words and punctuation marks, so a 48-token text encoder (begin and end tokens included)
never truncates them.  Deterministic given ``rng`` (a numpy Generator or an int); without one the draw is derived
from ``scene.seed`` (with a salt of its own, so it is independent of ``prompt_for``'s draw).
"""

from __future__ import annotations

import re

import numpy as np

from .prompts import COUNT_WORDS, _gen
from .scene import Scene

__all__ = ["HELDOUT_FRAMES", "MAX_TOKENS", "heldout_prompt"]

#: Most words and punctuation marks in a held-out prompt (a 48-token encoder keeps them all, begin and end included).
MAX_TOKENS = 46

#: Framing prefixes ("" = none): how users often open a prompt; the training grammar never uses them.
HELDOUT_FRAMES = (
    "wide view of", "a wide shot of", "a landscape photo of", "a photo of", "a painting of", "panorama of",
    "an illustration of", "",
)

_TREE_NOUNS = {
    "pine": (("pine tree", "pine", "fir", "fir tree", "evergreen", "evergreen tree", "conifer"),
             ("pine trees", "pines", "firs", "fir trees", "evergreens", "evergreen trees", "conifers")),
    "oak": (("oak tree", "oak"), ("oak trees", "oaks")),
}
_TREE_SIZES = {"pine": ("tall", "small", "young", "slender"), "oak": ("tall", "small", "old", "leafy")}
_HOUSE_SIZES = ("tiny", "small", "little", "wooden", "")
_HOUSE_NOUNS = ("house", "cottage", "hut", "cabin", "chalet", "farmhouse")
_LAKE = ("by a pond", "next to a small pond", "beside a mountain lake", "near a still pond", "on the shore of a lake")
_MOUNTAINS = {
    True: ("snowy peaks", "snow-capped peaks", "white-capped peaks", "peaks topped with snow",
           "a snowy mountain range", "snowy summits"),
    False: ("rocky peaks", "bare peaks", "jagged peaks", "a mountain range", "grey peaks", "distant peaks"),
}
_BEFORE_MOUNTAINS = ("below", "in front of", "against", "at the foot of")
_COLORS = {"yellow": ("yellow", "golden"), "red": ("red", "crimson"), "white": ("white", "silvery"),
           "orange": ("orange",), "pale": ("pale",)}
_BODY = {
    "sun": ("under a {c} sun", "beneath a big {c} sun", "with a {c} sun in the sky", "lit by a {c} sun",
            "with the sun glowing {c}"),
    "moon": ("under a {c} moon", "beneath a round {c} moon", "lit by a {c} moon", "with the moon glowing {c}",
             "under a {c} crescent moon"),
}
_SKY = {
    ("none", False): ("with a cloudless sky", "under clear skies", ""),
    ("few", False): ("with scattered clouds", "with a couple of light clouds", "with some wispy clouds"),
    ("many", False): ("under an overcast sky", "with heavy clouds", "with lots of clouds", "with thick clouds"),
    ("none", True): ("with a star-filled sky", "under a sky full of stars", "with twinkling stars"),
    ("few", True): ("with scattered clouds and stars", "with twinkling stars between wispy clouds"),
    ("many", True): ("under an overcast sky with a few stars", "with heavy clouds and a few stars"),
}
_TIME = {
    "day": ("at noon", "in the afternoon", "in broad daylight", "on a bright morning"),
    "sunset": ("at twilight", "at sundown", "around sundown", "as twilight falls"),
    "night": ("at midnight", "in the middle of the night", "on a dark night", "by moonlight"),
}
_GROUND = {
    "grass": ("in a green valley", "on a grassy field", "over green fields"),
    "dry": ("on parched brown earth", "in a dry valley", "on dusty land"),
    "snow": ("on snowy ground", "in deep snow", "in a snowy field"),
}


def _pick(options: tuple[str, ...], g: np.random.Generator) -> str:
    return options[int(g.integers(len(options)))]


def _article(phrase: str) -> str:
    """``phrase`` with a leading "a" turned into "an" before a vowel ("an oak", "an evergreen")."""
    words = phrase.split(" ")
    if len(words) > 1 and words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def _trees(kind: str, n: int, g: np.random.Generator) -> str:
    """``n`` trees of ``kind``: a count (digits, words, "a single", "a pair of"), maybe a size, a synonym noun."""
    size = _pick(_TREE_SIZES[kind], g) + " " if g.random() < 0.35 else ""
    noun = _pick(_TREE_NOUNS[kind][n > 1], g)
    if n == 1:
        count = _pick(("a", "a single", "a lone", "one", "1"), g)
    elif n == 2:
        count = _pick(("2", "two", "a pair of"), g)
    else:
        count = _pick((str(n), COUNT_WORDS[n]), g)
    return _article(f"{count} {size}{noun}")


def _subjects(scene: Scene, g: np.random.Generator) -> str | None:
    """The trees and the house as one noun phrase ("3 firs, an oak and a tiny hut"), None without either."""
    parts = [_trees(kind, n, g) for kind, n in scene.tree_counts.items() if n]
    if len(parts) > 1 and g.random() < 0.5:
        parts.reverse()  # oaks before pines: an order the training grammar never uses
    if scene.house is not None:
        size = _pick(_HOUSE_SIZES, g)
        house = _article(f"a {size} {_pick(_HOUSE_NOUNS, g)}".replace("  ", " "))
        parts.insert(int(g.integers(len(parts) + 1)), house)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _body(scene: Scene, g: np.random.Generator) -> str:
    """The sun/moon with its colour (or a synonym of it) as a prepositional phrase."""
    color = _pick(_COLORS[scene.body.color], g)
    return _pick(_BODY[scene.body.kind], g).format(c=color).replace(" a orange", " an orange")


def heldout_prompt(scene: Scene, rng: np.random.Generator | int | None = None) -> str:
    """A prompt for ``scene`` in a phrasing the training grammar never produces (see the module docstring).

    ``parse_prompt`` reads the same attributes from it as from ``prompt_for(scene)``; ``rng`` (Generator or int)
    draws the phrasing, ``None`` derives it from ``scene.seed``.
    """
    if not isinstance(scene, Scene):
        # ValueError as prompt_for raises for the same mistake
        raise ValueError(f"scene must be a hiresflow.world.Scene, got {type(scene).__name__}")  # noqa: TRY004
    g = _gen(scene, rng, 303)
    frame = _pick(HELDOUT_FRAMES, g)
    subjects = _subjects(scene, g)
    lake = _pick(_LAKE, g) if scene.lake is not None else ""
    mountains = _pick(_MOUNTAINS[scene.snowy], g)
    body = _body(scene, g)
    sky = _pick(_SKY[(scene.clouds, scene.stars)], g)
    time = _pick(_TIME[scene.time], g)
    ground = _pick(_GROUND[scene.ground], g) if g.random() < 0.4 else ""
    before = _pick(_BEFORE_MOUNTAINS, g)
    order = int(g.integers(4))
    text = _assemble(order, frame, subjects, lake, mountains, body, sky, time, ground, before)
    if _n_tokens(text) > MAX_TOKENS:  # the longest draws (both tree kinds, house, lake, long sky): drop the extras
        text = _assemble(order, "", subjects, lake, mountains, body, sky, time, "", before)
    return text


def _n_tokens(text: str) -> int:
    """Words (hyphenated ones count once) and punctuation marks, as a word-level tokenizer splits them."""
    return len(re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]", text))


def _assemble(order: int, frame: str, subjects: str | None, lake: str, mountains: str, body: str, sky: str,
              time: str, ground: str, before: str) -> str:
    """The clauses in one of four orders, none of which opens with the sun/moon."""
    if order == 0 and subjects:  # trees and house first, then the mountains behind them, the sky last
        clauses = [subjects, lake, ground, f"{before} {mountains},", body, sky, time]
    elif order == 1 and subjects:  # the time of day first (no framing prefix then)
        frame = ""
        clauses = [time + ",", subjects, lake, f"{before} {mountains}", body, sky]
    elif order == 2:  # the mountains first, the sun/moon, then the trees and house
        clauses = [mountains, lake, body, sky, time + ("," if subjects else ""),
                   f"with {subjects} in the foreground" if subjects else ""]
    else:  # the mountains, then the trees and house, then the sky and the time of day
        clauses = [mountains, lake, f"with {subjects}" if subjects else "", ground, body, sky, time]
    return " ".join(c for c in [frame, *clauses] if c).rstrip(",")
