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


def _count_before(tokens: list[str], i: int) -> int | None:
    if i > 0 and tokens[i - 1] in COUNT_WORDS:
        return COUNT_WORDS.index(tokens[i - 1])
    return None


def parse_prompt(text: str) -> dict[str, object]:
    """Recover the attributes a prompt states.

    Returns a dict with ``kind`` (``"scene"`` or ``"closeup"``), ``time``,
    ``body`` (sun/moon), ``color``, ``trees`` with ``pine``/``oak`` counts,
    ``house``, ``lake``, ``snowy``, ``clouds`` and ``stars``; close-ups also
    carry ``subject``.  Tree counts read "<count word> [pine|oak] tree(s)" and
    "a/an [pine|oak] tree".  Unknown words are ignored, absent facts read as
    none/zero/False (``None`` for unknowable ones).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    tok = text.lower().split()
    words = set(tok)
    out: dict[str, object] = {"kind": "closeup" if text.lower().startswith("close up") else "scene"}
    body = "moon" if "moon" in words else ("sun" if "sun" in words else None)
    out["body"] = body
    color = None
    if body is not None:
        i = tok.index(body)
        colors = {c for cs in BODY_COLORS.values() for c in cs}
        for w in reversed(tok[max(0, i - 3) : i]):
            if w in colors:
                color = w
                break
    out["color"] = color
    time = None
    for t in ("night", "sunset", "day"):  # night words win over "low"/"high"
        if words & _TIME_WORDS[t]:
            time = t
            break
    out["time"] = time
    counts = {"pine": 0, "oak": 0, None: 0}
    for i, w in enumerate(tok):
        if w not in ("tree", "trees"):
            continue
        kind = tok[i - 1] if i > 0 and tok[i - 1] in ("pine", "oak") else None
        j = i - 1 if kind else i
        n = _count_before(tok, j)
        if n is None and j > 0 and tok[j - 1] in ("a", "an", "single", "lone"):
            n = 1
        counts[kind] += n or 0
    out["pine"], out["oak"] = counts["pine"], counts["oak"]
    out["trees"] = counts["pine"] + counts["oak"] + counts[None]
    out["house"] = bool(words & {"house", "cabin", "cottage"})
    out["lake"] = "lake" in words
    out["snowy"] = any(
        tok[i] == "mountains" and i > 0 and tok[i - 1] in ("snowy", "capped") for i in range(len(tok))
    ) or ("snowy" in words and out["kind"] == "closeup")
    if "cloudy" in words or "many" in words:
        out["clouds"] = "many"
    elif "clouds" in words:
        out["clouds"] = "few"
    else:
        out["clouds"] = "none"
    out["stars"] = bool(words & {"stars", "starry"})
    if out["kind"] == "closeup":
        out["subject"] = _closeup_subject(text.lower())
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
