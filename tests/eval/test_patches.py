"""Patch cropping: deterministic, in bounds, shared between paired sets."""

from __future__ import annotations

import numpy as np
import pytest

from hiresflow.eval.patches import crop_anchors, crops_of, take_crops


def test_anchors_are_deterministic_and_in_bounds():
    a = crop_anchors(10, (256, 192), 64, k=4, seed=7)
    assert a.shape == (10, 4, 2)
    assert np.array_equal(a, crop_anchors(10, (256, 192), 64, k=4, seed=7))
    assert not np.array_equal(a, crop_anchors(10, (256, 192), 64, k=4, seed=8))
    assert a[..., 0].min() >= 0 and a[..., 0].max() <= 256 - 64
    assert a[..., 1].min() >= 0 and a[..., 1].max() <= 192 - 64


def test_anchors_of_a_prefix_do_not_depend_on_the_generator_state_elsewhere():
    rng = np.random.default_rng(0)
    rng.normal(size=100)  # unrelated draws from another generator
    assert np.array_equal(crop_anchors(3, (128, 128), 64, 2, seed=1), crop_anchors(3, (128, 128), 64, 2, seed=1))


def test_paired_crops_cover_the_same_pixels():
    rng = np.random.default_rng(1)
    gen = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    ref = [g.copy() for g in gen]
    anchors = crop_anchors(3, (128, 128), 64, 4, seed=0)
    cg, cr = crops_of(gen, anchors, 64), crops_of(ref, anchors, 64)
    assert len(cg) == 12 and all(c.shape == (64, 64, 3) for c in cg)
    assert all(np.array_equal(x, y) for x, y in zip(cg, cr))
    top, left = anchors[1, 2]
    assert np.array_equal(cg[1 * 4 + 2], gen[1][top:top + 64, left:left + 64])


def test_crop_equal_to_size_gives_one_crop_and_errors():
    assert crop_anchors(5, (64, 64), 64, 4).shape == (5, 1, 2)
    with pytest.raises(ValueError, match="does not fit"):
        crop_anchors(1, (64, 64), 128)
    with pytest.raises(ValueError, match="leaves"):
        take_crops(np.zeros((32, 32, 3)), np.array([[0, 10]]), 32)
    with pytest.raises(ValueError, match="anchors for"):
        crops_of([np.zeros((64, 64, 3))], crop_anchors(2, (64, 64), 32), 32)
