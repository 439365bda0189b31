import json

import numpy as np
import pytest

from hiresflow.world import Scene, sample_scene
from hiresflow.world.geometry import body_box, boxes_overlap, house_box, tree_box
from hiresflow.world.palette import BODY_COLORS


def test_sample_scene_is_deterministic():
    assert sample_scene(7) == sample_scene(7)
    assert sample_scene(np.random.default_rng(3)) == sample_scene(np.random.default_rng(3))
    assert sample_scene(7) != sample_scene(8)


def test_dict_round_trip_is_json_friendly():
    for i in range(20):
        s = sample_scene(i)
        d = json.loads(json.dumps(s.to_dict()))
        assert Scene.from_dict(d) == s


def test_sampled_scenes_are_well_formed():
    times = set()
    for i in range(200):
        s = sample_scene(i)
        times.add(s.time)
        assert s.body.kind == ("moon" if s.time == "night" else "sun")
        assert s.body.color in BODY_COLORS[s.time]
        assert 1 <= len(s.mountains) <= 3 and len(s.trees) <= 5
        assert s.stars == (s.time == "night")
        assert (s.clouds == "none") == (len(s.cloud_shapes) == 0)
        boxes = [tree_box(t) for t in s.trees] + ([house_box(s.house)] if s.house else []) + [body_box(s.body)]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert not boxes_overlap(boxes[a], boxes[b], 0.03), (i, a, b)
    assert times == {"day", "sunset", "night"}


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_bad_rng_raises_one_line(bad):
    with pytest.raises(ValueError) as e:
        sample_scene(bad)
    assert "\n" not in str(e.value)


def test_invalid_scene_dict_raises():
    d = sample_scene(0).to_dict()
    d["time"] = "noon"
    with pytest.raises(ValueError):
        Scene.from_dict(d)
    with pytest.raises(ValueError):
        Scene.from_dict({"time": "day"})
