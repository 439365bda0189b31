"""DiT toolkit patches on a tiny random Flux: formulas, layouts, reversibility, and generation with all on."""

import math

import pytest
import torch

from hiresflow.flow.sampler import StepContext
from hiresflow.models.loading import wrap_pipeline
from hiresflow.patches.attention import ProportionalAttentionConfig, proportional_multiplier
from hiresflow.patches.base import compose_patches
from hiresflow.patches.rope import RopeScalingConfig, RotaryAxesEmbed, rope_frequencies
from hiresflow.patches.rope_frequencies import IMaxNTKRope
from hiresflow.patches.shifted_patches import ShiftedPatchesConfig
from hiresflow.patches.text_dup import TextDuplicationConfig, duplicate_flux_text
from hiresflow.patches.windowed_attention import WindowedAttentionConfig, WindowedFluxAttnProcessor
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "tiny", native=64)


class Env:  # the part of StageEnv that patch configs read
    def __init__(self, model, cond):
        self.model, self.cond = model, cond


def test_rope_frequencies_by_hand():
    w = rope_frequencies(8, 10000.0, ntk=10.0)
    assert torch.allclose(w, torch.tensor([1.0, 1e5 ** (-2 / 8), 1e5 ** (-4 / 8), 1e5 ** (-6 / 8)], dtype=torch.float64))
    floored = rope_frequencies(8, 10000.0, ntk=10.0, pi_scale=4.0)
    pi = torch.tensor([1e4 ** (-k / 8) / 4 for k in (0, 2, 4, 6)], dtype=torch.float64)
    assert torch.allclose(floored, torch.maximum(w, pi))
    # I-Max crossover: dims with 2k/d > ln(s)/ln(ntk) take the PI value
    d = 56
    k2d = torch.arange(0, d, 2, dtype=torch.float64) / d
    ff = rope_frequencies(d, 1e4, 10.0, 4.0)
    takes_pi = torch.isclose(ff, 1e4 ** (-k2d) / 4)
    assert torch.equal(takes_pi, k2d >= math.log(4) / math.log(10))


def test_scaled_pos_embed_reduces_to_stock(flux):
    stock = flux.transformer.pos_embed
    ids = torch.cat([torch.zeros(5, 3), torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(6.), torch.arange(7.),
                                                                      indexing="ij"), -1).reshape(-1, 3)])
    ours = RotaryAxesEmbed(flux.rope_axes(), IMaxNTKRope(ntk=1.0, pi_floor=False, text_tokens=5, native_tokens=42))
    for a, b in zip(stock(ids), ours(ids)):
        assert torch.allclose(a, b, atol=1e-6)
    # PI floor inactive at the native size (s_L = 1)
    floored = IMaxNTKRope(ntk=1.0, pi_floor=True, text_tokens=5, native_tokens=42)
    assert floored.pi_scale(47) == 1.0


def test_proportional_multiplier():
    assert proportional_multiplier(4608, 4608) == 1.0
    assert proportional_multiplier(16896, 4608) ** 2 == pytest.approx(1.154, abs=1e-3)  # FLUX 2K (docs/methods/dit-toolkit.md#proportional-attention)
    assert proportional_multiplier(66048, 4608) ** 2 == pytest.approx(1.316, abs=1e-3)  # FLUX 4K
    assert proportional_multiplier(73728, 4608) ** 2 == pytest.approx(1.329, abs=1e-3)  # 4K with 16 text copies


def test_text_ids_layout():
    emb = torch.arange(6.0).view(1, 3, 2)
    ids = torch.zeros(3, 3)
    e2, i2 = duplicate_flux_text(emb, ids, 2, 2, (64, 64))
    assert e2.shape == (1, 12, 2) and torch.equal(e2[:, 3:6], emb)
    origins = [tuple(i2[k * 3, 1:].tolist()) for k in range(4)]
    assert origins == [(0.0, 0.0), (0.0, 64.0), (64.0, 0.0), (64.0, 64.0)]


def _ctx(step=0, n=4):
    return StepContext(stage=1, step=step, n_steps=n, index=step, sigma=0.6, sigma_next=0.5, x=None)


ALL = [TextDuplicationConfig(), ShiftedPatchesConfig(frame="model"), RopeScalingConfig(ntk=10.0, pi_floor=True),
       ProportionalAttentionConfig(), WindowedAttentionConfig(start=0.0)]


@pytest.mark.slow
def test_patches_change_the_call_and_removal_restores_bit_identical(flux):
    cond = flux.encode_prompt("a red sun over snowy mountains")
    x = torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0))

    def core(xx, ctx, c):
        return flux.velocity(xx, ctx.sigma, c)

    before = core(x, _ctx(), cond)
    state = {k: v.clone() for k, v in flux.transformer.state_dict().items()}
    procs = dict(flux.transformer.attn_processors)
    for cfg in ALL:
        fn = compose_patches(core, [cfg.build(Env(flux, cond))])
        patched = fn(x, _ctx(step=1), cond)  # odd step: windows shifted; shifted patches idle
        if not isinstance(cfg, ShiftedPatchesConfig):
            assert not torch.equal(patched, before), cfg
        assert torch.equal(core(x, _ctx(), cond), before), cfg  # removed after the call
    fn = compose_patches(core, [c.build(Env(flux, cond)) for c in ALL])
    assert torch.isfinite(fn(x, _ctx(step=0), cond)).all()
    assert torch.equal(core(x, _ctx(), cond), before)
    assert type(flux.transformer.pos_embed).__name__ == "FluxPosEmbed"
    assert {k: type(v) for k, v in flux.transformer.attn_processors.items()} == {k: type(v) for k, v in procs.items()}
    assert all(torch.equal(v, state[k]) for k, v in flux.transformer.state_dict().items())


def test_removal_after_an_error_restores(flux):
    cond = flux.encode_prompt("a lake")
    cfg = RopeScalingConfig(ntk=10.0)

    def boom(xx, ctx, c):
        raise RuntimeError("model failed")

    fn = compose_patches(boom, [cfg.build(Env(flux, cond))])
    with pytest.raises(RuntimeError):
        fn(torch.zeros(1, 16, 8, 8), _ctx(), cond)
    assert type(flux.transformer.pos_embed).__name__ == "FluxPosEmbed"


def test_single_window_equals_global_attention(flux):
    """With one window covering the grid and no shift, the windowed processor computes stock attention."""
    cond = flux.encode_prompt("three pine trees")
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    ref = flux.velocity(x, 0.5, cond)
    original = flux.transformer.attn_processors
    flux.transformer.set_attn_processor(WindowedFluxAttnProcessor((8, 8), (8, 8), (0, 0), proportional=False))
    try:
        out = flux.velocity(x, 0.5, cond)
    finally:
        flux.transformer.set_attn_processor(dict(original))
    assert torch.allclose(out, ref, atol=1e-5)
    # a non-divisible grid (padding + mask) still runs
    flux.transformer.set_attn_processor(WindowedFluxAttnProcessor((9, 8), (4, 3), (2, 1), proportional=True))
    try:
        assert torch.isfinite(flux.velocity(torch.randn(1, 16, 18, 16), 0.5, cond)).all()
    finally:
        flux.transformer.set_attn_processor(dict(original))


@pytest.mark.parametrize("recipe,kw", [
    ("imax", dict(steps=3, hires_steps=3, windowed_attention=0.5)),
    ("hiflow", dict(base_steps=5, stage_steps=(3, 3), text_duplication=True, pi_floor=True, windowed_attention=0.0)),
])
@pytest.mark.parametrize("scale", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_generation_with_every_patch_on(flux, recipe, kw, scale):
    plan = build_plan(recipe, flux, scale=scale, **kw)
    names = {type(p).__name__ for p in plan.stages[-1].patches}
    assert {"RopeScalingConfig", "ProportionalAttentionConfig", "TextDuplicationConfig", "ShiftedPatchesConfig",
            "WindowedAttentionConfig"} <= names
    res = run_plan(flux, plan, "a house by a lake at sunset", seed=0)  # odd step counts: any count works
    assert res.image.shape[-1] == 64 * scale and torch.isfinite(res.image).all()


def test_invalid_patch_settings(flux, tiny_sd):
    with pytest.raises(ValueError, match="ntk factor must be >= 1"):
        RopeScalingConfig(ntk=0.5)
    with pytest.raises(ValueError, match="start must lie in"):
        WindowedAttentionConfig(start=2.0)
    with pytest.raises(ValueError, match="pad >= 1"):
        ShiftedPatchesConfig(pad=0)
    sd = wrap_pipeline(tiny_sd, "sd", native=64)
    with pytest.raises(ValueError, match=r"applies to \S*flux\S* models; .sd. is sd"):
        RopeScalingConfig().build(Env(sd, sd.encode_prompt("a lake")))
    with pytest.raises(ValueError, match="ntk factor"):
        build_plan("hiflow", flux, scale=2, ntk=0.1)
