"""Text prompts for reference-world scenes and close-up views, and their parser.

Prompts are lowercase words separated by single spaces (no punctuation), so a
word-level tokenizer over :func:`vocabulary` covers every prompt.  Phrasing
varies deterministically: by default the variant is derived from
``scene.seed``; pass ``rng`` (Generator or int) to draw it instead.

Full-scene layout::

    <body> <mountains> [lake] [with <trees> and <house>] [ground] [sky] <time>
    "a red sun setting over snowy mountains by a lake with three pine trees
     and a small house on a green meadow with a few clouds at sunset"
"""

from __future__ import annotations

import re

import numpy as np

from ._noise import mix_seed
from .palette import BODY_COLORS
from .scene import Scene

__all__ = ["prompt_for", "closeup_prompt", "parse_prompt", "vocabulary", "COUNT_WORDS", "CLOSEUP_SUBJECTS"]

COUNT_WORDS = ("zero", "one", "two", "three", "four", "five")

_BODY = {
    "day": ("a {c} sun shining over", "a bright {c} sun above", "a {c} sun high over"),
    "sunset": ("a {c} sun setting over", "a {c} sun going down behind", "a low {c} sun over"),
    "night": ("a {c} moon glowing over", "a {c} moon rising over", "a {c} full moon above"),
}
_MOUNTAINS = {True: ("snowy mountains", "snow capped mountains"), False: ("mountains", "rocky mountains")}
_LAKE = ("by a lake", "beside a calm lake", "and a lake")
_HOUSE = ("a small house", "a wooden cabin", "a little cottage")
_GROUND = {
    "grass": ("on a green meadow", "on grassy hills", ""),
    "dry": ("on dry brown land", "on dry grass", ""),
    "snow": ("on snow covered ground", "in the snow"),
}
_SKY = {
    ("none", False): ("under a clear sky", ""),
    ("few", False): ("with a few clouds", "and some clouds"),
    ("many", False): ("under a cloudy sky", "with many clouds"),
    ("none", True): ("under a starry sky", "with bright stars"),
    ("few", True): ("with a few clouds and stars", "under stars and some clouds"),
    ("many", True): ("under a cloudy sky with a few stars", "with many clouds and stars"),
}
_TIME = {
    "day": ("in the daytime", "on a sunny day", "at midday"),
    "sunset": ("at sunset", "at dusk", "in the evening"),
    "night": ("at night", "late at night"),
}

#: Close-up subject -> phrasings ("{c}" is the sun/moon colour).
CLOSEUP_SUBJECTS: dict[str, tuple[str, ...]] = {
    "snowy_rock": ("close up of snowy mountain rock", "close up of a snowy mountain peak"),
    "rock": ("close up of mountain rock", "close up of a rocky mountain slope"),
    "pine": ("close up of a pine tree",),
    "oak": ("close up of an oak tree",),
    "ripples": ("close up of lake ripples", "close up of ripples on a lake"),
    "stars": ("close up of stars in the night sky",),
    "body_sun": ("close up of the {c} sun",),
    "body_moon": ("close up of the {c} moon",),
    "house": ("close up of a small house", "close up of a wooden cabin"),
    "clouds": ("close up of clouds",),
    "ground_grass": ("close up of green grass",),
    "ground_dry": ("close up of dry brown land",),
    "ground_snow": ("close up of snow covered ground",),
}

_TIME_WORDS = {
    "night": {"night", "moon"},
    "sunset": {"sunset", "setting", "dusk", "evening", "low"},
    "day": {"daytime", "sunny", "midday", "shining", "high"},
}


def _pick(options: tuple[str, ...], g: np.random.Generator) -> str:
    return options[int(g.integers(len(options)))]


def _gen(scene: Scene, rng: np.random.Generator | int | None, salt: int) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(mix_seed(scene.seed, salt))
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be None, an int or a numpy Generator, got {type(rng).__name__}")


def _trees_phrase(scene: Scene) -> str:
    parts = []
    for kind, n in scene.tree_counts.items():
        if n:
            parts.append(f"{COUNT_WORDS[n]} {kind} tree{'s' if n > 1 else ''}")
    return " and ".join(parts)


def prompt_for(scene: Scene, rng: np.random.Generator | int | None = None) -> str:
    """Natural-language prompt stating the scene's attributes (see module doc)."""
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a hiresflow.world.Scene, got {type(scene).__name__}")
    g = _gen(scene, rng, 101)
    body = _pick(_BODY[scene.time], g).format(c=scene.body.color).replace("a orange", "an orange")
    words = [body, _pick(_MOUNTAINS[scene.snowy], g)]
    if scene.lake is not None:
        words.append(_pick(_LAKE, g))
    extras = []
    if scene.trees:
        extras.append(_trees_phrase(scene))
    if scene.house is not None:
        extras.append(_pick(_HOUSE, g))
    if extras:
        words.append("with " + " and ".join(extras))
    words.append(_pick(_GROUND[scene.ground], g))
    words.append(_pick(_SKY[(scene.clouds, scene.stars)], g))
    words.append(_pick(_TIME[scene.time], g))
    return " ".join(w for w in words if w)


def closeup_prompt(subject: str, scene: Scene, rng: np.random.Generator | int | None = None) -> str:
    """Prompt for a zoomed view of ``subject`` (a key of :data:`CLOSEUP_SUBJECTS`)."""
    if subject not in CLOSEUP_SUBJECTS:
        raise ValueError(f"unknown close-up subject {subject!r}; use one of {sorted(CLOSEUP_SUBJECTS)}")
    night = scene.time == "night"
    if (subject in ("stars", "body_moon") and not night) or (subject == "body_sun" and night):
        raise ValueError(f"close-up subject {subject!r} does not exist at {scene.time}; pick another subject")
    g = _gen(scene, rng, 202)
    text = _pick(CLOSEUP_SUBJECTS[subject], g).format(c=scene.body.color)
    return f"{text} {_pick(_TIME[scene.time], g)}"


def _all_phrases() -> list[str]:
    out: list[str] = list(_LAKE) + list(_HOUSE) + ["with and tree trees"] + list(COUNT_WORDS)
    for d in (_BODY, _MOUNTAINS, _GROUND, _SKY, _TIME, CLOSEUP_SUBJECTS):
        for v in d.values():  # type: ignore[attr-defined]
            out.extend(v)
    out += [c for cs in BODY_COLORS.values() for c in cs] + ["pine", "oak"]
    return out


def vocabulary() -> list[str]:
    """Sorted list of every word any generated prompt (scene or close-up) can contain."""
    words = set()
    for p in _all_phrases():
        words.update(w for w in p.replace("{c}", " ").split() if w)
    return sorted(words)


# Words parse_prompt accepts beyond the training grammar (user phrasings, `hiresflow.world.heldout`); generation
# (prompt_for, closeup_prompt, vocabulary) never reads these.
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ONE_WORDS = frozenset({"a", "an", "single", "lone"})
_TREE_KIND_WORDS: dict[str, str] = {
    "pine": "pine", "pines": "pine", "fir": "pine", "firs": "pine", "evergreen": "pine", "evergreens": "pine",
    "conifer": "pine", "conifers": "pine", "spruce": "pine", "spruces": "pine", "oak": "oak", "oaks": "oak",
}
_TREE_NOUNS = frozenset({"tree", "trees"})
_TREE_ADJECTIVES = frozenset({
    "tall", "small", "tiny", "little", "big", "large", "young", "old", "leafy", "slender", "green", "lush", "short",
    "bushy", "huge", "giant",
})
_HOUSE_WORDS = frozenset({"house", "cabin", "cottage", "hut", "chalet", "farmhouse", "shack", "lodge"})
_LAKE_WORDS = frozenset({"lake", "pond", "tarn", "lakeside"})
_MOUNTAIN_NOUNS = frozenset({"mountains", "peaks", "peak", "summits", "ridges", "range", "alps"})
_MOUNTAIN_MODIFIERS = frozenset({"mountain", "distant", "tall", "towering", "huge", "jagged", "rocky"})
_SNOW_MODIFIERS = frozenset({"snowy", "capped", "topped", "snowcapped", "frosted"})
_SNOW_AFTER = frozenset({"capped", "topped", "covered", "dusted"})
_COLOR_WORDS: dict[str, str] = {
    **{c: c for cs in BODY_COLORS.values() for c in cs},
    "golden": "yellow", "crimson": "red", "scarlet": "red", "silver": "white", "silvery": "white",
}
_MORE_TIME_WORDS = {
    "night": frozenset({"midnight", "nighttime", "moonlight", "moonlit"}),
    "sunset": frozenset({"twilight", "sundown"}),
    "day": frozenset({"noon", "afternoon", "daylight", "morning"}),
}
_MANY_CLOUD_WORDS = frozenset({"cloudy", "many", "overcast"})
_HEAVY_CLOUD_WORDS = frozenset({"heavy", "thick", "dense", "grey", "gray", "storm"})
_CLOUD_NOUNS = frozenset({"cloud", "clouds"})
_NEGATIONS = frozenset({"no", "without", "not"})
_STAR_WORDS = frozenset({"stars", "starry", "starlit", "star"})


def _count_before(tokens: list[str], i: int) -> int | None:
    """The count stated before ``tokens[i]`` (a tree word), skipping up to two size adjectives: a number word, a
    digit string, "a"/"an"/"single"/"lone" (1), "pair of"/"couple of" (2) or "no" (0); None if there is none."""
    k, skipped = i - 1, 0
    while k >= 0 and tokens[k] in _TREE_ADJECTIVES and skipped < 2:
        k, skipped = k - 1, skipped + 1
    if k < 0:
        return None
    w = tokens[k]
    if w in _NUMBER_WORDS:
        return _NUMBER_WORDS.index(w)
    if w.isdigit():
        return int(w)
    if w in _ONE_WORDS:
        return 1
    if w == "of" and k > 0 and tokens[k - 1] in ("pair", "couple"):
        return 2
    return 0 if w == "no" else None


def _normalize(text: str) -> str:
    """Lowercase words and digits separated by single spaces (punctuation and hyphens become spaces; "closeup" and
    a leading "a close up" read as "close up")."""
    norm = " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())
    norm = re.sub(r"\bcloseup\b", "close up", norm)
    return norm[2:] if norm.startswith("a close up") else norm


def _tree_counts(tok: list[str]) -> dict[str | None, int]:
    """Trees stated per kind (``None``: a tree of no stated kind): "<count> [adjectives] <kind> tree(s)",
    "<count> [adjectives] <kind>(s)" ("3 tall pines", "a lone fir") and "<count> tree(s)"."""
    counts: dict[str | None, int] = {"pine": 0, "oak": 0, None: 0}
    for i, w in enumerate(tok):
        if w in _TREE_NOUNS:
            kind = _TREE_KIND_WORDS.get(tok[i - 1]) if i > 0 else None
            j = i - 1 if kind else i
        elif w in _TREE_KIND_WORDS and (i + 1 == len(tok) or tok[i + 1] not in _TREE_NOUNS):
            kind, j = _TREE_KIND_WORDS[w], i
        else:
            continue
        counts[kind] += _count_before(tok, j) or 0
    return counts


def _snowy_mountains(tok: list[str]) -> bool:
    """A mountain noun with a snow modifier before it ("snowy peaks", "snow capped mountains", "a snowy mountain
    range") or "capped/topped/covered/dusted with/in snow" after it."""
    for i, w in enumerate(tok):
        if w not in _MOUNTAIN_NOUNS:
            continue
        k = i - 1
        if k >= 0 and tok[k] in _MOUNTAIN_MODIFIERS and k - 1 >= 0 and tok[k - 1] in _SNOW_MODIFIERS:
            return True
        if k >= 0 and tok[k] in _SNOW_MODIFIERS:
            return True
        if i + 1 < len(tok) and tok[i + 1] in _SNOW_AFTER and "snow" in tok[i + 2 : i + 5]:
            return True
    return False


def _cloud_level(tok: list[str]) -> str:
    """``many`` for "cloudy"/"many"/"overcast" or heavy/thick/dense/grey/storm (or "lots of") clouds, ``few`` for
    any other mention of clouds not negated ("no clouds", "without a cloud"), else ``none``."""
    mentions = [
        i for i, w in enumerate(tok)
        if w in _CLOUD_NOUNS and not (
            (i > 0 and tok[i - 1] in _NEGATIONS) or (i > 1 and tok[i - 2] in _NEGATIONS and tok[i - 1] in ("a", "any"))
        )
    ]
    heavy = any(i > 0 and (tok[i - 1] in _HEAVY_CLOUD_WORDS or tok[max(0, i - 2) : i] == ["lots", "of"])
                for i in mentions)
    if set(tok) & _MANY_CLOUD_WORDS or heavy:
        return "many"
    return "few" if mentions else "none"


def parse_prompt(text: str) -> dict[str, object]:
    """Recover the attributes a prompt states.

    Returns a dict with ``kind`` (``"scene"`` or ``"closeup"``), ``time``,
    ``body`` (sun/moon), ``color``, ``trees`` with ``pine``/``oak`` counts,
    ``house``, ``lake``, ``snowy``, ``clouds`` and ``stars``; close-ups also
    carry ``subject``.  Tree counts read "<count word> [pine|oak] tree(s)" and
    "a/an [pine|oak] tree".  Unknown words are ignored, absent facts read as
    none/zero/False (``None`` for unknowable ones).

    Besides the training grammar (:func:`prompt_for`, :func:`closeup_prompt`) it
    reads the phrasings of :func:`hiresflow.world.heldout.heldout_prompt` and
    similar user wording: any word order, punctuation and hyphens
    ("snow-capped", "close-up"), counts as digits ("3 pine trees") or number
    words up to ten, "a single"/"a lone"/"a pair of", size adjectives between
    count and tree ("two tall oaks"), tree synonyms (fir, evergreen, conifer,
    spruce for pine; plural nouns "pines", "oaks"), house synonyms (hut, chalet,
    farmhouse, ...), "pond"/"tarn" for the lake, "peaks"/"summits"/"mountain
    range" for the mountains (snowy when "snowy"/"snow capped"/"topped with
    snow"), colour synonyms (golden, crimson, silvery) before or just after the
    sun/moon, more time words (noon, afternoon, twilight, sundown, midnight) and
    cloud wording ("overcast", "heavy clouds", "no clouds", "cloudless").
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    norm = _normalize(text)
    tok = norm.split()
    words = set(tok)
    out: dict[str, object] = {"kind": "closeup" if norm.startswith("close up") else "scene"}
    body = "moon" if "moon" in words else ("sun" if "sun" in words else None)
    out["body"] = body
    color = None
    if body is not None:
        i = tok.index(body)
        near = list(reversed(tok[max(0, i - 3) : i])) + tok[i + 1 : i + 3]  # before the body first, then after
        color = next((_COLOR_WORDS[w] for w in near if w in _COLOR_WORDS), None)
    out["color"] = color
    time = None
    for t in ("night", "sunset", "day"):  # night words win over "low"/"high"
        if words & (_TIME_WORDS[t] | _MORE_TIME_WORDS[t]):
            time = t
            break
    out["time"] = time
    counts = _tree_counts(tok)
    out["pine"], out["oak"] = counts["pine"], counts["oak"]
    out["trees"] = counts["pine"] + counts["oak"] + counts[None]
    out["house"] = bool(words & _HOUSE_WORDS)
    out["lake"] = bool(words & _LAKE_WORDS)
    out["snowy"] = _snowy_mountains(tok) or ("snowy" in words and out["kind"] == "closeup")
    out["clouds"] = _cloud_level(tok)
    out["stars"] = bool(words & _STAR_WORDS)
    if out["kind"] == "closeup":
        out["subject"] = _closeup_subject(norm)
    return out


def _closeup_subject(text: str) -> str | None:
    for subject, phrases in CLOSEUP_SUBJECTS.items():
        for p in phrases:
            head = p.split("{c}")[0].strip()
            if text.startswith(head) and (("{c}" in p) or text[len(head) :].startswith(" ") or text == head):
                if "{c}" in p:
                    tail = p.split("{c}")[1].strip()
                    if tail not in text:
                        continue
                return subject
    return None
