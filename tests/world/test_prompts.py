import re

import numpy as np
import pytest

from hiresflow.world import closeup_prompt, parse_prompt, prompt_for, sample_scene, sample_view, vocabulary
from hiresflow.world.palette import BODY_COLORS
from hiresflow.world.prompts import CLOSEUP_SUBJECTS

WORDS = re.compile(r"^[a-z]+( [a-z]+)*$")


def test_prompt_parse_round_trip():
    for i in range(300):
        s = sample_scene(i)
        for rng in (None, i):
            p = prompt_for(s, rng)
            assert WORDS.match(p), p
            a = parse_prompt(p)
            want = {
                "kind": "scene",
                "time": s.time,
                "body": s.body.kind,
                "color": s.body.color,
                "trees": len(s.trees),
                "pine": s.tree_counts["pine"],
                "oak": s.tree_counts["oak"],
                "house": s.house is not None,
                "lake": s.lake is not None,
                "snowy": s.snowy,
                "clouds": s.clouds,
                "stars": s.stars,
            }
            assert {k: a[k] for k in want} == want, p


def test_prompts_are_deterministic_and_varied():
    s = sample_scene(3)
    assert prompt_for(s) == prompt_for(s)
    assert prompt_for(s, 5) == prompt_for(s, np.random.default_rng(5))
    assert len({prompt_for(s, k) for k in range(30)}) > 3


def test_counts_are_words():
    texts = [prompt_for(sample_scene(i)) for i in range(100)]
    assert any("three pine trees" in t or "three oak trees" in t for t in texts)
    assert not any(ch.isdigit() for t in texts for ch in t)


@pytest.mark.slow
def test_vocabulary_covers_every_prompt():
    vocab = vocabulary()
    assert vocab == sorted(set(vocab))
    vs = set(vocab)
    words = set()
    for i in range(400):
        words.update(prompt_for(sample_scene(i), i).split())
    g = np.random.default_rng(1)
    for _ in range(60):
        words.update(sample_view(g, 16)[1].split())
    night, day = _scene_at("night"), _scene_at("day")
    for subject in CLOSEUP_SUBJECTS:
        s = night if subject in ("stars", "body_moon") else day
        for k in range(6):
            p = closeup_prompt(subject, s, k)
            assert WORDS.match(p)
            words.update(p.split())
    words.update(c for cs in BODY_COLORS.values() for c in cs)
    assert words <= vs, words - vs


def _scene_at(time):
    return next(s for s in map(sample_scene, range(100)) if s.time == time)


def test_closeup_prompts_parse():
    for time in ("day", "sunset", "night"):
        s = _scene_at(time)
        for subject in CLOSEUP_SUBJECTS:
            needs_night = subject in ("stars", "body_moon")
            if subject.startswith(("stars", "body")) and needs_night != (time == "night"):
                with pytest.raises(ValueError):
                    closeup_prompt(subject, s)
                continue
            for k in range(3):
                a = parse_prompt(closeup_prompt(subject, s, k))
                assert a["kind"] == "closeup" and a["subject"] == subject and a["time"] == time
                if subject.startswith("body"):
                    assert a["color"] == s.body.color


def test_bad_inputs():
    with pytest.raises(ValueError):
        parse_prompt(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        closeup_prompt("dragon", sample_scene(0))
    with pytest.raises(ValueError):
        prompt_for(sample_scene(0), rng="x")  # type: ignore[arg-type]
