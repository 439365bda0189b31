"""Reference-world metrics: perfect on ground-truth renders, sensitive to duplicated suns and wrong prompts."""

from __future__ import annotations

import numpy as np
import pytest

from hiresflow.eval.world_metrics import WORLD_METRICS, check_world_image, world_scores
from hiresflow.world import prompt_for, render, sample_scene


@pytest.fixture(scope="module")
def world():
    scenes = [sample_scene(np.random.default_rng([0, i])) for i in range(12)]
    return scenes, [prompt_for(s) for s in scenes]


@pytest.mark.parametrize("size", [64, 128])
def test_ground_truth_renders_score_perfectly(world, size):
    scenes, prompts = world
    scores, checks = world_scores([render(s, size, size) for s in scenes], prompts)
    assert set(scores) == set(WORLD_METRICS)
    assert scores["dup_rate"].value == 0.0
    for k in ("count_acc", "tree_acc", "house_acc", "attr_acc", "time_acc", "color_acc"):
        assert scores[k].value == 1.0, k
    assert scores["count_acc"].n == 12 and len(checks) == 12


def test_a_second_sun_is_a_duplication(world):
    scenes, prompts = world
    i = next(k for k, s in enumerate(scenes) if s.time != "night")
    img = render(scenes[i], 128, 128).copy()
    yy, xx = np.mgrid[:128, :128]
    body = scenes[i].body
    # paste a copy of the disc region mirrored to the other side of the sky
    cy, cx, r = int(body.y * 128), int(body.x * 128), int(body.radius * 128) + 2
    x2 = 128 - cx if abs(128 - 2 * cx) > 2 * r + 4 else (cx + 3 * r) % 128
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[np.roll(disc, x2 - cx, axis=1)] = img[disc]
    c = check_world_image(img, prompts[i])
    assert c.detected["suns"] == 2 and c.duplicated


def test_wrong_prompt_lowers_agreement_and_non_world_prompts_are_not_scored(world):
    scenes, prompts = world
    imgs = [render(s, 64, 64) for s in scenes]
    shifted = prompts[1:] + prompts[:1]
    scores, _ = world_scores(imgs, shifted)
    assert scores["count_acc"].value < 1.0 or scores["attr_acc"].value < 1.0
    none, _ = world_scores(imgs[:2], ["a cat on a sofa", "a portrait"])
    assert all(not s.computed for s in none.values())
    with pytest.raises(ValueError, match="one prompt per image"):
        world_scores(imgs[:2], prompts[:1])
