import numpy as np
import pytest

from hiresflow.world import dataset_batch, render, sample_view
from hiresflow.world.views import ZOOMS


def test_sample_view_contract_and_determinism():
    a = sample_view(np.random.default_rng(9), 32)
    b = sample_view(np.random.default_rng(9), 32)
    assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1] and a[2] == b[2]
    img, prompt, scene, view = a
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and isinstance(prompt, str)
    assert view["kind"] in ("full", "closeup")


@pytest.mark.slow
def test_view_mix_and_closeup_windows():
    g = np.random.default_rng(0)
    kinds, subjects = [], set()
    for _ in range(150):
        img, prompt, scene, view = sample_view(g, 16)
        kinds.append(view["kind"])
        if view["kind"] == "closeup":
            subjects.add(view["subject"])
            y0, x0, y1, x1 = view["window"]
            side = 1 / view["zoom"]
            assert view["zoom"] in ZOOMS and np.isclose(y1 - y0, side) and np.isclose(x1 - x0, side)
            assert prompt.startswith("close up of ")
            assert img.tobytes() == render(scene, 16, 16, view["seed"], window=view["window"]).tobytes()
        else:
            assert not prompt.startswith("close up")
    frac = kinds.count("full") / len(kinds)
    assert 0.55 <= frac <= 0.75, frac
    assert {"ripples", "pine", "stars"} <= subjects or len(subjects) >= 6, subjects


def test_dataset_batch():
    x, p = dataset_batch(3, 8, 32)
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8 and len(p) == 8
    y, q = dataset_batch(3, 8, 32)
    assert x.tobytes() == y.tobytes() and p == q
    with pytest.raises(ValueError):
        dataset_batch(0, 0, 32)
    with pytest.raises(ValueError):
        dataset_batch(0, 2, 4)
