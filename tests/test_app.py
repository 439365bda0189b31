"""The app's job function without a browser: upscale mode, advanced-parameter parsing, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hiresflow.app import AppConfig, ModelCache, param_text, parse_param_text, run_job


def test_param_text_round_trips_and_only_changes_apply():
    text = param_text("hiflow")
    assert "base_steps = 30" in text and parse_param_text("hiflow", text) == {}
    assert parse_param_text("hiflow", "base_steps = 4\nstage_steps = [2]\n# note") == {"base_steps": 4,
                                                                                     "stage_steps": [2]}
    with pytest.raises(ValueError, match="line 1: recipe 'hiflow' has no parameter 'nope'"):
        parse_param_text("hiflow", "nope = 1")
    with pytest.raises(ValueError, match="line 2: write key = value"):
        parse_param_text("hiflow", "base_steps = 4\nbogus")


def test_run_job_upscale_mode_writes_the_png_with_its_source(tmp_path):
    Image.fromarray((np.random.default_rng(0).random((40, 72, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    cfg = AppConfig(model="random-tiny-flux", out=tmp_path / "out", device="cpu")
    cache = ModelCache("cpu")
    warnings = []
    res = run_job(cache, cfg, "upscale", "a lake", "", "random-tiny-flux", "sdedit", "", 2, 1,
                  str(tmp_path / "in.png"), "renoise", "steps = 3", warn=warnings.append)
    w, h = res["native"].size
    assert res["image"].size == (2 * w, 2 * h) and w > h
    record = json.loads(Image.open(res["png"]).text["hiresflow"])
    assert record["upscale"]["source"] == "in.png" and record["recipe"] == "sdedit"
    assert warnings and "no reference trajectory" in warnings[0]
    with pytest.raises(ValueError, match="upload an image"):
        run_job(cache, cfg, "upscale", "a lake", "", "random-tiny-flux", "hiflow", "", 2, 0, None, "renoise", "")
    with pytest.raises(ValueError, match="write a prompt"):
        run_job(cache, cfg, "generate", " ", "", "random-tiny-flux", "hiflow", "", 2, 0, None, "renoise", "")
