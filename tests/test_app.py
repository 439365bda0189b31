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


def test_run_job_refuses_an_upscale_smaller_than_the_image(tmp_path):
    Image.fromarray((np.random.default_rng(1).random((150, 200, 3)) * 255).astype(np.uint8)).save(tmp_path / "big.png")
    cfg = AppConfig(model="random-tiny-flux", out=tmp_path / "out", device="cpu")
    with pytest.raises(ValueError, match=r"the 200x150 image at scale 2 would give 128x96 .*; use scale 3.2 or "
                                         r"more to keep at least the input's pixels$"):
        run_job(ModelCache("cpu"), cfg, "upscale", "a lake", "", "random-tiny-flux", "sdedit", "", 2, 0,
                str(tmp_path / "big.png"), "renoise", "steps = 2")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_progress_shows_in_one_place_and_an_error_leaves_the_outputs(tmp_path):
    """Gradio marks only an event's progress targets (`show_progress_on`) with the progress bar and, on an error,
    with the error state; outputs outside them keep their values. So: one target, the status line, no output."""
    gr = pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[app]'")
    from hiresflow.app import build_app

    demo = build_app(AppConfig(model="random-tiny-flux", out=tmp_path / "out", device="cpu"))
    config = demo.get_config_file()
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    events = {elem[dep["targets"][0][0]]: dep for dep in config["dependencies"]}
    run = events["run"]
    assert [elem[i] for i in run["outputs"]] == ["compare", "result", "download", "info"]
    assert [elem[i] for i in run["show_progress_on"]] == ["status"]
    assert {events["mode"]["show_progress"], events["method"]["show_progress"]} == {"hidden"}

    job = next(fn for fn in demo.fns.values() if fn.name == "job").fn
    with pytest.raises(gr.Error, match="size 100x130 is not a positive multiple"):  # raised: no outputs sent
        job("generate", "a lake", "", "random-tiny-flux", "hiflow", "100x130", 4, 0, None, "inversion", "")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
