"""The `hidiffusion` and full `freescale` recipes: plans, defaults, DiT behaviour, detail-control mask, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hiresflow.cli import app
from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.plan import Plan
from hiresflow.recipes import build_plan, recipe_params
from hiresflow.runner import run_plan

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sd_model():
    return load_model("tiny-sd", device="cpu")


def _types(stage):
    return [type(p).__name__ for p in stage.patches]


def test_hidiffusion_plan(tiny_sd_model):
    plan = build_plan("hidiffusion", tiny_sd_model, scale=4)
    (st,) = plan.stages
    assert st.size == (256, 256) and st.schedule.steps == 50 and st.schedule.start == 0
    assert _types(st) == ["RAUNetConfig", "MSWMSAConfig"]
    assert _types(build_plan("hidiffusion", tiny_sd_model, scale=2, msw_msa=False).stages[0]) == ["RAUNetConfig"]
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_freescale_full_and_cascade_only(tiny_sd_model, tmp_path):
    plan = build_plan("freescale", tiny_sd_model, scale=4)
    assert _types(plan.stages[0]) == ["FreeUConfig"]  # FreeU on every stage, as the official scripts
    for st in plan.stages[1:]:
        assert _types(st) == ["DilatedConvConfig", "ScaleFusionConfig", "FreeUConfig"]
        assert st.schedule.start == 15 and st.guides[0].cosine_scale == 2.0
    assert [p.b1 for p in plan.stages[1].patches if hasattr(p, "b1")] == [1.1]
    cascade = build_plan("freescale", tiny_sd_model, scale=4, internals=False)
    assert all(not st.patches for st in cascade.stages)
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 0).save(mask)
    masked = build_plan("freescale", tiny_sd_model, scale=2, mask=str(mask))
    assert masked.stages[1].guides[0].cosine_scale == 3.0 and masked.stages[1].guides[0].mask == str(mask)
    assert Plan.from_dict(json.loads(json.dumps(masked.to_dict()))) == masked


@pytest.mark.slow
def test_region_mask_changes_only_where_it_is_set(tiny_sd_model, tmp_path):
    """cosine_scale = cosine_scale_bg makes the mask irrelevant; a half mask changes the run."""
    mask = tmp_path / "half.png"
    img = Image.new("L", (64, 64), 0)
    img.paste(255, (0, 0, 32, 64))
    img.save(mask)
    kw = dict(steps=4, internals=False)
    plain = run_plan(tiny_sd_model, build_plan("freescale", tiny_sd_model, scale=2, cosine_scale=2.0, **kw), "a lake",
                     seed=1).image
    same = run_plan(tiny_sd_model, build_plan("freescale", tiny_sd_model, scale=2, cosine_scale=2.0,
                                              cosine_scale_bg=2.0, mask=str(mask), **kw), "a lake", seed=1).image
    half = run_plan(tiny_sd_model, build_plan("freescale", tiny_sd_model, scale=2, mask=str(mask), **kw), "a lake",
                    seed=1).image
    assert torch.allclose(plain, same, atol=1e-6) and not torch.allclose(plain, half, atol=1e-3)
    with pytest.raises(ValueError, match="is not a file"):
        build_plan("freescale", tiny_sd_model, scale=2, mask=str(tmp_path / "missing.png"))


def test_dit_models(tiny_flux):
    flux = wrap_pipeline(tiny_flux, "tiny", native=64)
    with pytest.raises(ValueError, match="are U-Net methods; 'tiny' is a flux transformer") as err:
        build_plan("hidiffusion", flux, scale=2)
    assert "\n" not in str(err.value)
    plan = build_plan("freescale", flux, scale=2)  # cascade only: the internals are U-Net patches
    assert all(not st.patches for st in plan.stages)
    from hiresflow.patches.rau_net import RAUNetConfig

    env = type("E", (), {"model": flux})()
    with pytest.raises(ValueError, match="RAU-Net applies to sd models; 'tiny' is flux"):
        RAUNetConfig().build(env)


def test_recipes_cli_lists_every_parameter():
    res = runner.invoke(app, ["recipes"])
    assert {"hidiffusion", "freescale"} <= {line.split()[0] for line in res.output.strip().splitlines()}
    for name in ("hidiffusion", "freescale"):
        res = runner.invoke(app, ["recipes", "--params", name])
        assert res.exit_code == 0
        for key in recipe_params(name):
            assert f"{key} = " in res.output, (name, key)


@pytest.mark.slow
@pytest.mark.parametrize("method,steps,scale", [("hidiffusion", "steps=3", 4), ("freescale", "steps=4", 2)])
def test_generate_on_tiny_sd(tmp_path, method, steps, scale):
    res = runner.invoke(app, ["generate", "a yellow sun over green hills", "--model", "tiny-sd", "--method", method,
                              "--scale", str(scale), "--out", str(tmp_path), "--set", steps, "--quiet"])
    assert res.exit_code == 0, res.output
    final = [p for p in tmp_path.iterdir() if p.suffix == ".png" and "native" not in p.name]
    assert len(final) == 1 and Image.open(final[0]).size == (64 * scale, 64 * scale)
