"""Guide invariants on a tiny random Flux pipeline: weight 0 ⇒ bit-identical to the unguided run, etc."""

import copy

import pytest
import torch

from hiresflow.flow.filters import butterworth_lowpass
from hiresflow.flow.resize import resize_latent
from hiresflow.guides.demofusion import MultiViewConfig
from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan

PROMPT = "a red sun setting over snowy mountains"


@pytest.fixture(scope="module")
def flux(tiny_flux):
    m = wrap_pipeline(tiny_flux, "tiny", native=64)
    m.default_steps = 6
    return m


def run(model, plan, seed=0):
    return run_plan(model, plan, PROMPT, seed=seed)


def unguided(plan):
    q = copy.deepcopy(plan)
    for st in q.stages:
        st.guides = []
    return q


HIFLOW = dict(base_steps=6, stage_steps=(4,))
NO_PATCHES = dict(ntk=1.0, proportional_attention=False, shifted_patches=False)


def test_hiflow_zero_weights_is_the_unguided_run(flux):
    p = build_plan("hiflow", flux, scale=2, alpha=0.0, beta=0.0, **HIFLOW)
    assert torch.equal(run(flux, p).stages[-1].latent, run(flux, unguided(p)).stages[-1].latent)
    p2 = build_plan("hiflow", flux, scale=2, direction=False, acceleration=False, **HIFLOW)
    assert torch.equal(run(flux, p2).stages[-1].latent, run(flux, unguided(p2)).stages[-1].latent)


def test_hiflow_zero_weights_with_official_init_equals_sdedit(flux):
    p = build_plan("hiflow", flux, scale=2, alpha=0.0, beta=0.0, **HIFLOW, **NO_PATCHES)
    q = build_plan("sdedit", flux, scale=2, steps=6, start=2, sharpen=True, shift_size="native", clamp_init="none",
                   stage_guidance=p.stages[1].guidance)
    a, b = run(flux, p), run(flux, q)
    assert a.stages[1].sigmas[a.stages[1].start] == b.stages[1].sigmas[b.stages[1].start]
    assert torch.equal(a.image, b.image)


def test_hiflow_direction_pulls_low_band_toward_reference(flux):
    guided = run(flux, build_plan("hiflow", flux, scale=2, beta=0.0, **HIFLOW))
    plain = run(flux, build_plan("hiflow", flux, scale=2, alpha=0.0, beta=0.0, **HIFLOW))
    ref = resize_latent(plain.stages[0].latent, guided.stages[1].latent.shape[-2:])

    def low_dist(res):
        return float((butterworth_lowpass(res.stages[1].latent - ref)).pow(2).mean())

    assert low_dist(guided) < low_dist(plain)
    assert not torch.equal(guided.image, plain.image)


def test_imax_scale_zero_and_disable_are_unguided(flux):
    base = dict(steps=4, hires_steps=4)
    plan = build_plan("imax", flux, scale=2, **base)
    ref = run(flux, unguided(plan)).image
    zero = copy.deepcopy(plan)
    zero.stages[1].guides[0].scale = 0.0
    off = copy.deepcopy(plan)
    off.stages[1].guides[0].schedule = "disable"
    assert torch.equal(run(flux, zero).image, ref)
    assert torch.equal(run(flux, off).image, ref)
    assert not torch.equal(run(flux, plan).image, ref)


def test_skip_residual_weight_zero_is_unguided(flux):
    plan = build_plan("freescale", flux, scale=2, steps=6)
    zero = copy.deepcopy(plan)
    zero.stages[1].guides[0].weight = 0.0
    assert torch.equal(run(flux, zero).image, run(flux, unguided(plan)).image)
    assert not torch.equal(run(flux, plan).image, run(flux, zero).image)


def test_diffusehigh_zero_steps_is_unguided(flux):
    plan = build_plan("diffusehigh", flux, scale=2, steps=6, dwt_steps=0)
    assert torch.equal(run(flux, plan).image, run(flux, unguided(plan)).image)


def test_single_view_without_jitter_equals_the_global_call(flux):
    plan = build_plan("demofusion", flux, scale=2, steps=4, skip_residual=False, mean_std_reset=False)
    single = copy.deepcopy(plan)
    single.stages[1].denoiser = MultiViewConfig(view_size=1024, jitter=False, dilated=False)
    none = copy.deepcopy(plan)
    none.stages[1].denoiser = None
    assert torch.equal(run(flux, single).image, run(flux, unguided(none)).image)


@pytest.mark.slow
def test_hiflow_variants_run(flux):
    for kw in (dict(init="paper"), dict(weight_schedule="sigma"), dict(filter="dwt"),
               dict(reference_space="pixel"), dict(shift_size="stage"), dict(initialization=False)):
        res = run(flux, build_plan("hiflow", flux, scale=4, base_steps=6, stage_steps=(4, 2), **kw))
        assert res.image.shape[-2:] == (256, 256) and torch.isfinite(res.image).all(), kw
        assert len(res.stages) == 3
