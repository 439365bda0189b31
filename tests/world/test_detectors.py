import numpy as np
import pytest
from scipy import ndimage

from hiresflow.world import (
    attributes,
    detect_houses,
    detect_suns,
    detect_time_of_day,
    detect_trees,
    render,
    sample_scene,
)
from hiresflow.world.geometry import body_box


def _truth(s):
    houses = int(s.house is not None)
    return {"time": s.time, "suns": 1, "trees": len(s.trees), "houses": houses, "body_color": s.body.color}


def _check(img, s):
    a = attributes(img)
    return {k: (a[k], v) for k, v in _truth(s).items() if a[k] != v}


@pytest.mark.slow
def test_exact_on_200_scenes_at_64px():
    bad = {i: d for i in range(200) if (d := _check(render(sample_scene(i), 64, 64), sample_scene(i)))}
    assert not bad, bad


SIZES = [
    (256, 256, range(200, 206)),
    (512, 512, (300, 301)),
    (96, 160, range(400, 412)),
    (160, 96, range(500, 512)),
    (64, 112, range(600, 620)),
]


@pytest.mark.slow
@pytest.mark.parametrize("h,w,seeds", SIZES)
def test_exact_at_other_sizes(h, w, seeds):
    bad = {i: d for i in seeds if (d := _check(render(sample_scene(i), h, w), sample_scene(i)))}
    assert not bad, bad


def test_robust_to_mild_noise_and_blur():
    g = np.random.default_rng(0)
    wrong = 0
    for i in range(700, 760):
        s = sample_scene(i)
        img = render(s, 64, 64).astype(np.float64)
        if i % 2:
            img = img + g.normal(0.0, 3.0, img.shape)
        else:
            img = ndimage.gaussian_filter(img, (0.4, 0.4, 0))
        a = attributes(np.clip(img + 0.5, 0, 255).astype(np.uint8))
        wrong += any(a[k] != v for k, v in _truth(s).items() if k != "body_color")
    assert wrong <= 2, wrong


def _sky_copy_of_sun(s, img):
    """Paste the sun/moon disc patch into free sky on the other side: a duplicated sun."""
    h = img.shape[0]
    y0, x0, y1, x1 = (int(round(v * h)) for v in body_box(s.body))
    patch = img[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1].copy()
    dx = int(round((0.5 - s.body.x) * 2 * h))
    out = img.copy()
    out[y0 - 1 : y1 + 1, x0 - 1 + dx : x1 + 1 + dx] = patch
    return out


def test_sun_duplication_is_counted():
    done = 0
    for i in range(40):
        s = sample_scene(i)
        if s.time == "sunset" or abs(s.body.x - 0.5) < 0.25 or s.cloud_shapes:
            continue
        img = render(s, 128, 128)
        assert detect_suns(img) == 1
        assert detect_suns(_sky_copy_of_sun(s, img)) == 2, i
        done += 1
    assert done >= 3


def test_individual_detectors_and_attributes_keys():
    s = sample_scene(1)
    img = render(s, 96, 96)
    a = attributes(img)
    assert set(a) == {"time", "body", "body_color", "suns", "trees", "houses"}
    assert detect_time_of_day(img) == a["time"] and detect_trees(img) == a["trees"]
    assert detect_houses(img) == a["houses"] and detect_suns(img) == a["suns"]
    assert attributes(img.astype(np.float32) / 255.0)["trees"] == a["trees"]


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((32, 32), np.uint8), [[1, 2, 3]]])
def test_bad_images_raise_one_line(bad):
    with pytest.raises(ValueError) as e:
        attributes(bad)
    assert "\n" not in str(e.value)
