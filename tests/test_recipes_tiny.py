"""Every recipe on tiny random Flux, SD, SDXL and SD3 pipelines at 2×, 4× and a non-square size."""

import pytest
import torch

from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import RECIPES, SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh", "anchored")}
SIZES = {"2x": dict(scale=2), "4x": dict(scale=4), "wide": dict(size=(128, 192))}


@pytest.fixture(scope="module")
def models(tiny_flux, tiny_sd, tiny_sdxl, tiny_sd3):
    return {name: wrap_pipeline(p, name, native=64) for name, p in
            (("flux", tiny_flux), ("sd", tiny_sd), ("sdxl", tiny_sdxl), ("sd3", tiny_sd3))}


def test_registry_has_the_field():
    assert {"direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh"} <= set(RECIPES)


@pytest.mark.parametrize("size", [s if s == "2x" else pytest.param(s, marks=pytest.mark.slow) for s in SIZES])
@pytest.mark.parametrize("recipe", list(FAST))
@pytest.mark.parametrize("family", ["flux", "sd", "sdxl", "sd3"])
def test_recipe_runs(models, family, recipe, size):
    model = models[family]
    plan = build_plan(recipe, model, **SIZES[size], **FAST[recipe])
    res = run_plan(model, plan, "three pine trees by a lake at night", seed=4)
    h, w = plan.target_size
    assert res.image.shape == (1, 3, h, w)
    assert torch.isfinite(res.image).all()
    if size == "wide":
        assert (h, w) == (128, 192)
    for st in res.stages:
        model.geometry.validate(*st.size)


@pytest.mark.parametrize("recipe", ["hiflow", pytest.param("demofusion", marks=pytest.mark.slow),
                                    pytest.param("imax", marks=pytest.mark.slow)])
def test_deterministic_per_seed(models, recipe):
    model = models["flux"]
    plan = build_plan(recipe, model, scale=2, **FAST[recipe])
    a = run_plan(model, plan, "a house", seed=11).image
    b = run_plan(model, plan, "a house", seed=11).image
    c = run_plan(model, plan, "a house", seed=12).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_plan_serialises(models):
    import json

    plan = build_plan("hiflow", models["flux"], scale=4)
    d = plan.to_dict()
    text = json.dumps(d)
    assert '"HiFlowConfig"' in text and d["stages"][1]["schedule"]["start"] == 30 - 16
    assert [s["size"] for s in d["stages"]] == [[64, 64], [128, 128], [256, 256]]


def test_hiflow_official_tau_on_a_flux_dev_sized_grid(tiny_flux):
    """At FLUX.1-dev's native 1024² the official stages start at τ = 0.783 (2K, 16 steps) and 0.612 (4K, 10)."""
    from hiresflow.runner import stage_sigmas

    model = wrap_pipeline(tiny_flux, "dev-sized", native=1024)
    plan = build_plan("hiflow", model, scale=4)
    taus = []
    for st in plan.stages[1:]:
        sig, start = stage_sigmas(model, st, plan.stages[0].size)
        taus.append(round(float(sig[start]), 3))
    assert taus == [0.783, 0.612]
    fixed = build_plan("hiflow", model, scale=4, shift_size="stage")  # the "fixed" per-stage μ
    sig, start = stage_sigmas(model, fixed.stages[2], fixed.stages[0].size)
    assert float(sig[start]) > 0.612


def test_load_model_from_folder_reads_native_size(tiny_flux_dir, tmp_path):
    import json
    import shutil

    from hiresflow.models.loading import load_model

    folder = tmp_path / "m"
    shutil.copytree(tiny_flux_dir, folder)
    (folder / "hiresflow.json").write_text(json.dumps({"native_size": 96}))
    model = load_model(str(folder), device="cpu")
    assert model.geometry.native == (96, 96) and model.family == "flux"
    plan = build_plan("sdedit", model, scale=2, steps=3)
    assert plan.target_size == (192, 192)


@pytest.mark.parametrize("recipe", ["hiflow", "freescale", "demofusion", "diffusehigh"])
def test_explicit_stage_sizes_non_square(models, recipe):
    model = models["flux"]
    sizes = [(96, 128), (128, 192)]
    plan = build_plan(recipe, model, stage_sizes=sizes, **FAST[recipe])
    assert [st.size for st in plan.stages[1:]] == sizes
    assert plan.stages[0].size == (48, 80)  # native keeps the target's aspect ratio
    res = run_plan(model, plan, "a lake", seed=0)
    assert res.image.shape[-2:] == (128, 192)
    with pytest.raises(ValueError, match="must grow"):
        build_plan(recipe, model, stage_sizes=[(128, 192), (96, 128), (128, 192)])
    with pytest.raises(ValueError, match="must end at the target"):
        build_plan(recipe, model, size=(256, 256), stage_sizes=sizes)


def test_anchored_guide_space_latent_skips_the_vae_and_bad_values_are_one_line(models):
    model = models["flux"]
    calls = {"decode": 0}
    vae = model.codec.vae
    original = vae.decode

    def counting(*a, **k):
        calls["decode"] += 1
        return original(*a, **k)

    plans = {space: build_plan("anchored", model, scale=2, upscaler=None, guide_space=space, **FAST["anchored"])
             for space in ("pixel", "latent")}
    counts = {}
    vae.decode = counting
    try:
        for space, plan in plans.items():
            calls["decode"] = 0
            res = run_plan(model, plan, "a lake", seed=1)
            counts[space] = calls["decode"]
            assert torch.isfinite(res.image).all()
    finally:
        vae.decode = original
    guided = plans["pixel"].stages[1].guides[0].steps
    assert counts["pixel"] - counts["latent"] == guided > 0  # one x̂0 decode per guided step, none on the latents
    with pytest.raises(ValueError, match="space must be one of") as err:
        build_plan("anchored", model, scale=2, guide_space="pixels")
    assert "\n" not in str(err.value)
