"""Step caching per stage: parsing, the stage boundary, what a cached run changes, one-line refusals."""

from __future__ import annotations

import pytest
import torch

from hiresflow.caching import CacheSpec, parse_cache


def test_parse_names_values_and_stages():
    assert parse_cache("first-block:0.08") == CacheSpec("first-block", 0.08, "high")
    assert parse_cache("fbc") == CacheSpec("first-block", 0.08, "high")
    assert parse_cache("taylorseer:5@all") == CacheSpec("taylorseer", 5, "all")
    assert parse_cache("magcache:0.1@2,1") == CacheSpec("magcache", 0.1, (1, 2))
    assert parse_cache("pab:3").describe() == "pab:3@high"
    assert CacheSpec("first-block", 0.1).applies_to(1) and not CacheSpec("first-block", 0.1).applies_to(0)


@pytest.mark.parametrize("text, words", [("warp-cache:1", "unknown cache"), ("first-block:abc", "not a number"),
                                         ("first-block:-1", "positive"), ("taylorseer:2.5", "whole number"),
                                         ("first-block:0.1@top", "stages must be"), ("", "needs a name")])
def test_bad_cache_specs_are_one_line(text, words):
    with pytest.raises(ValueError) as err:
        parse_cache(text)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def flux():
    from hiresflow.models.loading import load_model

    return load_model("tiny-flux", device="cpu")


@pytest.fixture(scope="module")
def hiflow_plan(flux):
    from hiresflow.recipes import build_plan

    return build_plan("hiflow", flux, scale=2, base_steps=8, stage_steps=8)


def _hooks(module: torch.nn.Module) -> int:
    return sum(len(getattr(m, "_diffusers_hook").hooks) for m in module.modules() if hasattr(m, "_diffusers_hook"))


def test_cache_lives_for_its_stages_only(flux, hiflow_plan):
    from hiresflow.runner import run_plan

    ref = run_plan(flux, hiflow_plan, "a red house by a lake", seed=0)
    out = run_plan(flux, hiflow_plan, "a red house by a lake", seed=0, cache=parse_cache("first-block:0.5"))
    assert not flux.denoiser.is_cache_enabled and _hooks(flux.denoiser) == 0
    # the native stage is not cached: its latent and trajectory (HiFlow's reference x̂0) are the uncached ones
    assert torch.equal(out.stages[0].latent, ref.stages[0].latent)
    assert "cache" not in out.stages[0].extra
    info = out.stages[1].extra["cache"]
    assert info["calls"] == 2 * (hiflow_plan.stages[1].schedule.steps - out.stages[1].start)  # CFG: 2 calls a step
    assert 0 < info["computed"] < info["calls"]
    assert not torch.equal(out.stages[1].latent, ref.stages[1].latent)
    # a threshold no step stays under computes every block: the cached run is the uncached one, bit for bit
    exact = run_plan(flux, hiflow_plan, "a red house by a lake", seed=0, cache=parse_cache("first-block:1e-12"))
    assert torch.equal(exact.image, ref.image)
    assert exact.stages[1].extra["cache"]["computed"] == exact.stages[1].extra["cache"]["calls"]


def test_taylorseer_and_a_failed_stage_remove_the_hooks(flux, hiflow_plan):
    from hiresflow.runner import run_plan

    out = run_plan(flux, hiflow_plan, "a lake", seed=1, cache=parse_cache("taylorseer:2@all"))
    assert all("cache" in st.extra for st in out.stages)
    with pytest.raises(ValueError, match="one cache per model"):  # two CFG calls per step
        run_plan(flux, hiflow_plan, "a lake", seed=1, cache=parse_cache("pab:2"))
    assert not flux.denoiser.is_cache_enabled and _hooks(flux.denoiser) == 0


def test_unet_and_magcache_refusals(flux, tiny_sd):
    from hiresflow.models.loading import wrap_pipeline
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    sd = wrap_pipeline(tiny_sd, name="tiny-sd")
    plan = build_plan("hiflow", sd, scale=2, base_steps=4, stage_steps=4)
    with pytest.raises(ValueError) as err:
        run_plan(sd, plan, "a lake", cache=parse_cache("first-block"))
    assert "has none; drop --cache" in str(err.value) and "\n" not in str(err.value)
    from hiresflow.caching import check_cache

    check_cache(flux, parse_cache("magcache"))  # the flux family has diffusers' FLUX.1 ratios
    sd3 = type("M", (), {"denoiser": flux.denoiser, "family": "sd3", "name": "x"})()
    with pytest.raises(ValueError, match="FLUX.1 only"):
        check_cache(sd3, parse_cache("magcache"))


def test_cli_cache_bad_inputs(tmp_path):
    from typer.testing import CliRunner

    from hiresflow.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", "a lake", "--cache", "warp:1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.startswith("error: unknown cache")
    res = runner.invoke(app, ["generate", "a lake", "--model", "tiny-sd", "--cache", "first-block", "--scale", "2",
                              "--out", str(tmp_path)])
    assert res.exit_code == 2 and "drop --cache" in res.output and len(res.output.strip().splitlines()) == 1
