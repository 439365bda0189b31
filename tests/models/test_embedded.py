"""The embedded tiny-flux loads offline, generates with every recipe, and broken weights give clear errors."""

import shutil

import pytest
import torch

from hiresflow.models.loading import EMBEDDED_DIR, load_model
from hiresflow.recipes import RECIPES, build_plan
from hiresflow.runner import run_plan

FAST = {"direct": dict(steps=4), "upscale": dict(steps=4), "sdedit": dict(steps=6), "imax": dict(steps=4, hires_steps=4),
        "hiflow": dict(base_steps=6, stage_steps=(3, 2)), "demofusion": dict(steps=3, view_batch=64),
        "freescale": dict(steps=5), "diffusehigh": dict(steps=5, dwt_steps=2)}

pytestmark = pytest.mark.skipif(not (EMBEDDED_DIR / "tiny-flux" / "model_index.json").is_file(),
                                reason="embedded tiny-flux not in this build")


@pytest.fixture(scope="module")
def tiny_flux_model():
    return load_model("tiny-flux", device="cpu")


def test_card_and_native_generation(tiny_flux_model):
    m = tiny_flux_model
    assert m.geometry.native == (64, 64) and m.family == "flux" and m.default_guidance == 4.0
    plan = build_plan("direct", m, scale=1, steps=4)
    img = run_plan(m, plan, "a red sun setting over snowy mountains by a lake", seed=0).image
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all() and float(img.std()) > 0.02


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_at_4x(tiny_flux_model, recipe):
    plan = build_plan(recipe, tiny_flux_model, scale=4, **FAST[recipe])
    img = run_plan(tiny_flux_model, plan, "a white moon over a lake at night", seed=1).image
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


def test_missing_or_corrupt_weights_name_the_file(tmp_path):
    folder = tmp_path / "tf"
    shutil.copytree(EMBEDDED_DIR / "tiny-flux", folder)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt weight file .*transformer.*diffusion_pytorch_model.safetensors") as e:
        load_model(str(folder), device="cpu")
    assert "\n" not in str(e.value)
    weights.unlink()
    with pytest.raises(ValueError, match="missing weights: .*transformer has no .safetensors"):
        load_model(str(folder), device="cpu")
