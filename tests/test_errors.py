"""Bad input gets a one-line ValueError that says what to do."""

import pytest

from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.plan import ScheduleSpec
from hiresflow.recipes import build_plan


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "tiny", native=64)


def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=(100, 128)), "multiple of 16"),
    (dict(size=(32, 32)), "smaller than the native"),
    (dict(scale=0.5), "scale must be >= 1"),
    (dict(scale=2, steps=0), "positive integer"),
    (dict(scale=2, steps=-4), "positive integer"),
    (dict(scale=2, tau=0.0), r"tau must lie in \(0, 1\]"),
    (dict(scale=2, tau=1.5), r"tau must lie in \(0, 1\]"),
])
def test_sdedit_inputs(flux, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        build_plan("sdedit", flux, **kwargs)
    one_line(e)


@pytest.mark.parametrize("recipe,kwargs,match", [
    ("hiflow", dict(alpha=-1.0), "alpha must be a non-negative"),
    ("hiflow", dict(beta=[0.5, -0.1]), "beta must be a non-negative"),
    ("hiflow", dict(init="magic"), "init must be 'official', 'paper' or 'cfm'"),
    ("hiflow", dict(stage_steps=(40,)), "stage_steps must lie"),
    ("imax", dict(projection_scale=-1.0), "scale must be a non-negative"),
    ("imax", dict(schedule="cosine"), "guidance schedule must be one of"),
    ("demofusion", dict(c1_scale=-3.0), "cosine_scale must be a non-negative"),
    ("freescale", dict(restart=1.5), "restart must lie"),
    ("diffusehigh", dict(noising=0.0), "noising must lie"),
    ("hiflow", dict(gamma=1.0), "has no parameter gamma"),
])
def test_recipe_parameters(flux, recipe, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        build_plan(recipe, flux, scale=4, **kwargs)
    one_line(e)


def test_unknown_recipe(flux):
    with pytest.raises(ValueError, match="unknown recipe 'hyperflow'; choose one of") as e:
        build_plan("hyperflow", flux, scale=2)
    one_line(e)


def test_schedule_spec_validation():
    with pytest.raises(ValueError, match="start index"):
        ScheduleSpec(steps=10, start=11)  # start == steps is a stage with no σ step (pure upsampling)


def test_unknown_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="cannot load model 'nobody/no-such-model'") as e:
        load_model("nobody/no-such-model", device="cpu")
    one_line(e)
    with pytest.raises(ValueError, match="not a diffusers pipeline folder") as e:
        load_model(str(tmp_path), device="cpu")
    one_line(e)
