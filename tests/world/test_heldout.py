"""Held-out phrasings: same attributes as the training prompts, phrasings the training grammar never produces."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from hiresflow.world import (
    closeup_prompt,
    heldout_prompt,
    parse_prompt,
    prompt_for,
    sample_scene,
    vocabulary,
)
from hiresflow.world.heldout import HELDOUT_FRAMES, MAX_TOKENS
from hiresflow.world.prompts import _BODY, CLOSEUP_SUBJECTS

ROOT = Path(__file__).resolve().parents[2]
TOKENS = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")  # the embedded tokenizers' word split
SCENES = [sample_scene(i) for i in range(300)]


def _sha(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_training_prompts_are_pinned():
    """prompt_for, closeup_prompt and vocabulary give the bytes they gave before parse_prompt was widened (running
    benchmarks and the embedded models' training draw their prompts from them)."""
    assert _sha([prompt_for(s) for s in SCENES]) == "249793458608e95fc67face2dff5c12eaf371952fa71467db645d6215bd457d7"
    assert _sha([prompt_for(s, i) for i, s in enumerate(SCENES)]) == (
        "9d1cb65d85e360c7a8a8c955060f4aa6e49ee4c06f18be2225293b704d9d12a4")
    g = np.random.default_rng(7)
    assert _sha([prompt_for(s, g) for s in SCENES]) == "55cf3fbb2ccdcfdae815a73a79c263adcc34f2cd031980dd147061a2330c4b08"
    rng = np.random.default_rng(0)  # benchmarks/native_quality.py's 200 scenes at --seed 0
    assert _sha([prompt_for(sample_scene(rng)) for _ in range(200)]) == (
        "b1ba79a15f9ce366c406c370ec0d22292aa529ff25376d17bbf859e9492875ab")
    closeups = []
    for i, s in enumerate(SCENES[:60]):
        night = s.time == "night"
        for subject in CLOSEUP_SUBJECTS:
            if (subject in ("stars", "body_moon") and not night) or (subject == "body_sun" and night):
                continue
            closeups += [closeup_prompt(subject, s), closeup_prompt(subject, s, i)]
    assert len(closeups) == 1352
    assert _sha(closeups) == "525ed98a5b118fe5643a311bbd34edb87d6ea47baa172eb5878ea04e2dc7cea0"
    assert _sha(vocabulary()) == "8eb806a13570ecbfb2ba98beb9651e458a22334694b755d4789ec3d35a3a5194"
    assert prompt_for(SCENES[0]) == ("a red sun setting over snow capped mountains by a lake with one oak tree in "
                                     "the snow under a clear sky in the evening")


def test_heldout_parses_like_training():
    """Every key parse_prompt returns agrees between the held-out and the training prompt of a scene."""
    g = np.random.default_rng(5)
    for i, s in enumerate(SCENES):
        want = parse_prompt(prompt_for(s))
        for rng in (i, None, g):
            p = heldout_prompt(s, rng)
            assert parse_prompt(p) == want, p


def test_heldout_agrees_with_the_scene():
    for s in SCENES[:100]:
        a = parse_prompt(heldout_prompt(s))
        assert (a["time"], a["body"], a["color"]) == (s.time, s.body.kind, s.body.color)
        assert (a["pine"], a["oak"], a["trees"]) == (s.tree_counts["pine"], s.tree_counts["oak"], len(s.trees))
        assert (a["house"], a["lake"], a["snowy"]) == (s.house is not None, s.lake is not None, s.snowy)
        assert (a["clouds"], a["stars"], a["kind"]) == (s.clouds, s.stars, "scene")


def test_heldout_is_deterministic_and_varied():
    s = SCENES[3]
    assert heldout_prompt(s) == heldout_prompt(s)
    assert heldout_prompt(s, 5) == heldout_prompt(s, np.random.default_rng(5))
    assert len({heldout_prompt(s, k) for k in range(30)}) > 20


def test_heldout_phrasings_are_never_training_phrasings():
    vocab = set(vocabulary())
    openings = {b.split("{c}")[0].strip() for bs in _BODY.values() for b in bs}  # "a", "a bright", "a low"
    for i, s in enumerate(SCENES):
        training = {prompt_for(s, k) for k in range(24)} | {prompt_for(s)}
        for rng in (i, None):
            p = heldout_prompt(s, rng)
            assert p not in training
            assert not any(p.startswith(f"{o} {s.body.color}") for o in openings), p  # never opens with the body
            assert set(p.replace(",", " ").split()) - vocab, p  # at least one word the training grammar lacks
            assert len(TOKENS.findall(p)) <= MAX_TOKENS, p
            assert p == p.lower() and "  " not in p and not p.endswith(",")


def test_heldout_covers_the_listed_variations():
    texts = [heldout_prompt(s, i) for i, s in enumerate(SCENES)]
    joined = " ".join(texts)
    assert re.search(r"\b[2-5] (tall |small |young |slender |old |leafy )?(pine|fir|evergreen|conifer|oak)", joined)
    for word in ("cottage", "hut", "peaks", "pond", "evergreen", "fir", "tiny", "golden", "crimson", "overcast"):
        assert re.search(rf"\b{word}\b", joined), word
    assert sum(t.startswith(f) for t in texts for f in HELDOUT_FRAMES if f) > 100
    body_late = [t for t in texts if re.search(r"\b(pines?|firs?|oaks?|trees?|evergreens?|conifers?)\b.*\b(sun|moon)\b", t)]
    assert len(body_late) > 50  # trees named before the sun/moon


def test_parse_prompt_reads_user_phrasings():
    p = parse_prompt("A landscape photo of 3 tall pine trees, two oaks and a tiny hut by a pond, snow-capped peaks, "
                     "a golden sun at noon, no clouds")
    assert (p["pine"], p["oak"], p["trees"], p["house"], p["lake"], p["snowy"]) == (3, 2, 5, True, True, True)
    assert (p["body"], p["color"], p["time"], p["clouds"], p["stars"]) == ("sun", "yellow", "day", "none", False)
    p = parse_prompt("wide view of a lone fir and a pair of evergreens under an overcast sky, the moon glowing pale")
    assert (p["pine"], p["oak"], p["clouds"], p["color"], p["time"], p["snowy"]) == (3, 0, "many", "pale", "night",
                                                                                     False)
    p = parse_prompt("at sundown: a crimson sun behind peaks topped with snow, heavy clouds, starlit")
    assert (p["time"], p["color"], p["snowy"], p["clouds"], p["stars"]) == ("sunset", "red", True, "many", True)
    assert parse_prompt("close-up of a pine tree at night")["subject"] == "pine"
    assert parse_prompt("A close-up of the red sun at dusk")["kind"] == "closeup"
    assert parse_prompt("rocky mountains in the snow under a yellow sun")["snowy"] is False  # snowy ground only


def test_heldout_bad_inputs():
    with pytest.raises(ValueError, match="Scene"):
        heldout_prompt("a scene")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rng"):
        heldout_prompt(SCENES[0], rng="x")  # type: ignore[arg-type]


def _native_quality():
    key = "hiresflow_benchmarks_native_quality"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / "native_quality.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


def _record(model: str, fid: float, tree_acc: float, **extra) -> dict:
    world = {"dup_rate": 0.3, "count_acc": 0.4, "tree_acc": tree_acc, "house_acc": 0.5, "attr_acc": 1.0,
             "time_acc": 1.0, "color_acc": 0.5}
    return {"model": model, "n": 200, "steps": 30, "guidance": 4.0, "fid": fid, "kid": 0.08, "kid_std": 0.005,
            "fid_truth_half_vs_half": 97.0, "fid_n_half": 100, "world": world, **extra}


def test_native_quality_tables_keep_heldout_records_apart():
    """The quality table ranks training-phrasing records only; a held-out record NAME-heldout is compared with the
    training record NAME (not with another record of the same model, such as tiny-flux-v1)."""
    nq = _native_quality()
    train = {"tiny-flux": _record("tiny-flux", 150.0, 0.5), "tiny-flux-v1": _record("tiny-flux", 160.0, 0.45),
             "tiny-sd": _record("tiny-sd", 300.0, 0.2)}
    both = {**train, "tiny-flux-heldout": _record("tiny-flux", 140.0, 0.6, phrasing="heldout")}
    tables = nq.tables(both)
    assert tables["quality"] == nq.tables(train)["quality"] and list(nq.tables(train)) == ["quality"]
    rows = tables["phrasing-tiny-flux-heldout"].splitlines()
    assert rows[0] == "| metric | training phrasing | held-out phrasing | relative change |"
    assert "| tree count exact ↑ | 50 % | 60 % | +20.0 % |" in rows
    assert "| FID ↓ | 150.0 | 140.0 | -6.7 % |" in rows
    with pytest.raises(ValueError, match="no training-phrasing record"):
        nq.tables({"x-heldout": _record("x", 1.0, 0.1, phrasing="heldout")})
    rec = nq.phrasing_record("heldout", ["a sun", "3 firs, a hut"])
    assert rec["phrasing"] == "heldout" and rec["prompts_with_oov_word"] == 0.5 and rec["oov_word_rate"] == 0.5


def test_phrasing_record_counts_against_the_models_own_vocabulary():
    """A widened (v3) tokenizer knows words the world's training grammar lacks: the OOV rate is the model's."""
    nq = _native_quality()
    rec = nq.phrasing_record("heldout", ["3 firs, a hut"], vocab={"a", "3", "firs", "hut"})
    assert rec["oov_word_rate"] == 0.0 and rec["prompts_with_oov_word"] == 0.0

    class NotTiny:  # a model whose pipeline has no word-level tokenizer falls back to the world's vocabulary
        pipe = object()

    assert nq.model_vocabulary(NotTiny()) == set(nq.vocabulary())
