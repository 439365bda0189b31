"""UltraImage: the dominant-frequency RoPE correction and the entropy-guided attention concentration against
vectors of the official formulas (computed independently from the `ultra-flux` code's semantics in plain
float64 and kept here as data), identities (stock at the native size, λ = 1 is stock attention, bit for bit),
reversibility of the patches, the recipe on the tiny Flux at 2×, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hiresflow.models.loading import wrap_pipeline
from hiresflow.patches.base import compose_patches
from hiresflow.patches.rope import RotaryAxesEmbed
from hiresflow.patches.rope_frequencies import RopeAxis, RopeCall, base_frequencies
from hiresflow.patches.ultraimage import (UltraImageAttentionConfig, UltraImageRope, block_entropy,
                                          dominant_frequency, focus_factors)
from hiresflow.plan import Plan
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan
from hiresflow.stage import StepContext

FLUX_AXIS = RopeAxis(56, 10000.0, 64)  # FLUX.1's row/column axis at 1024²

# ω of the official `riflex` (ultra-flux rope.py) with base.yaml's freq_id [9], length 225 (3600²), scale 0.85
FLUX_3600 = [
    1.0, 0.719685673001152, 0.5179474679231212, 0.37275937203149406, 0.2682695795279726, 0.193069772888325,
    0.13894954943731377, 0.1, 0.07196856730011521, 0.023736477827122883, 0.0372759372031494, 0.02682695795279726,
    0.019306977288832506, 0.013894954943731375, 0.01, 0.007196856730011521, 0.005179474679231213,
    0.003727593720314942, 0.0026826957952797246, 0.0019306977288832496, 0.0013894954943731374, 0.001,
    0.0007196856730011521, 0.0005179474679231213, 0.00037275937203149417, 0.00026826957952797245,
    0.00019306977288832496, 0.00013894954943731373]
# the embedded tiny-flux's axis (d = 12, 8 native positions) at 4×: dominant k = 0, length 32
TINY_256 = [0.16689710972195776, 0.2154434690031884, 0.0464158883361278, 0.01, 0.0021544346900318843,
            0.0004641588833612777]
# the official Qwen-Image branch (`multi_inter`, freq_id [8, 9], linear factor 4096/1328), computed in float32
QWEN_4096 = [
    1.0, 0.7196856737136841, 0.5179474353790283, 0.3727593719959259, 0.2682695686817169, 0.19306977093219757,
    0.13894954323768616, 0.10000000149011612, 0.023333555087447166, 0.01679283007979393, 0.03727593645453453,
    0.02682695910334587, 0.019306976348161697, 0.013894956558942795, 0.009999999776482582, 0.007196858059614897,
    0.005179473198950291, 0.003727593459188938, 0.002682696096599102, 0.001930698286741972, 0.0013894952135160565,
    0.0010000000474974513, 0.0007196858059614897, 0.0005179473082534969, 0.00037275932845659554,
    0.00026826959219761193, 0.00019306980539113283, 0.0001389495300827548]
# mean block entropy of q = 2 sin(1 + 0.37 n), k = 2 cos(0.5 + 0.23 n) (n = 0…39 over [1, 2, 5, 4]): the
# official zero-padded 128-row pooling, here with blocks of 1, 2 and 4 rows
ENTROPY = {1: [0.6603988942294265, 0.5310907649675378], 2: [0.6463267246409509, 0.9250595346924312],
           4: [0.5665516163916928, 0.6781146195703702]}
H = [0.0, 0.44, 1.0, 2.5, 6.0, 7.0]
LAMBDA_POWER = [1.3329071994203199, 1.3, 1.2617411107085554, 1.1792531442471923, 1.1, 1.1064696444283424]
LAMBDA_LINEAR = [1.3, 1.3, 1.2798561151079137, 1.2258992805755398, 1.1, 1.1]
# the Qwen branch's constants: λ ∈ [1.0, 1.3], H ∈ [0.04, 6.25]
LAMBDA_QWEN = [1.3038771811088552, 1.2625973379386528, 1.2144157389904082, 1.1093957851991878,
               1.0004862034897741, 1.0043758314079676]


def _call(n, text=512):
    return RopeCall((1, n, n), text + n * n, None)


def test_frequencies_match_the_official_formulas():
    flux = UltraImageRope(text_tokens=512, native_tokens=4096)
    assert torch.equal(flux.axis(FLUX_AXIS, 225, _call(225)).omega, torch.tensor(FLUX_3600, dtype=torch.float64))
    tiny = UltraImageRope(text_tokens=48, native_tokens=64)
    got = tiny.axis(RopeAxis(12, 10000.0, 8), 32, RopeCall((1, 32, 32), 48 + 1024, None)).omega
    assert torch.equal(got, torch.tensor(TINY_256, dtype=torch.float64))
    qwen = UltraImageRope(freq_ids=(8, 9), train_scale=1.0, correction="interpolate", native_tokens=83 * 83)
    got = qwen.axis(RopeAxis(56, 10000.0, 83), 256, RopeCall((1, 256, 256), 256 * 256, None)).omega
    assert torch.allclose(got, torch.tensor(QWEN_4096, dtype=torch.float64), rtol=1e-6, atol=0)  # official: float32


def test_dominant_frequency_is_the_official_choice():
    periods = 2 * math.pi / base_frequencies(56, 1e4)
    assert periods[9].item() == pytest.approx(121.31, abs=0.01) and periods[8].item() == pytest.approx(87.30, abs=0.01)
    assert dominant_frequency(FLUX_AXIS, 128) == 9  # FLUX.1: 2048² top training size, base.yaml freq_id [9]
    assert dominant_frequency(FLUX_AXIS, 64) == 7  # its 1024² native alone would pick 7
    assert dominant_frequency(RopeAxis(56, 1e4, 83), 83) == 8  # Qwen-Image 1328p: the paper's first k
    assert dominant_frequency(RopeAxis(12, 1e4, 8), 16) == 0  # the embedded tiny-flux
    assert UltraImageRope(native_tokens=1).corrected(FLUX_AXIS) == (9,)


def test_identities():
    base = base_frequencies(56, 1e4)
    t = UltraImageRope(text_tokens=512, native_tokens=4096)
    for n in (64, 32):  # at or below the native sequence: the stock frequencies, exactly
        assert torch.equal(t.axis(FLUX_AXIS, n, _call(n)).omega, base)
    assert torch.equal(t.axis(RopeAxis(16, 1e4, None), 300, _call(300)).omega, base_frequencies(16, 1e4))
    w = t.axis(FLUX_AXIS, 128, _call(128)).omega  # 2×: only the dominant frequency moves, period 128/0.85
    assert torch.equal(torch.cat([w[:9], w[10:]]), torch.cat([base[:9], base[10:]]))
    assert 2 * math.pi / w[9].item() == pytest.approx(128 / 0.85, rel=1e-14)
    paper = UltraImageRope(riflex_scale=1.0, native_tokens=4096, text_tokens=512)  # Eq. 8: period exactly H
    assert 2 * math.pi / paper.axis(FLUX_AXIS, 200, _call(200)).omega[9].item() == pytest.approx(200, rel=1e-14)
    # gates: the official sequence gate moves a non-extrapolating axis too; the axis gate leaves it
    wide = RopeCall((1, 64, 256), 512 + 64 * 256, None)
    assert not torch.equal(t.axis(FLUX_AXIS, 64, wide).omega, base)
    assert torch.equal(UltraImageRope(gate="axis", native_tokens=1).axis(FLUX_AXIS, 64, wide).omega, base)
    # interpolation never raises a frequency (s ≤ 1 keeps it)
    inter = UltraImageRope(correction="interpolate", gate="axis", native_tokens=1)
    assert torch.equal(inter.axis(FLUX_AXIS, 100, _call(100)).omega, base)  # 100 < 2·64


def test_embedder_is_stock_at_the_native_size_and_keeps_the_stage_length(tiny_flux):
    flux = wrap_pipeline(tiny_flux, "tiny", native=64)
    stock = flux.transformer.pos_embed
    axes = flux.rope_axes()
    n = axes[1].native_len

    def ids(h, w, text=512):
        grid = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(float(h)), torch.arange(float(w)),
                                          indexing="ij"), -1).reshape(-1, 3)
        return torch.cat([torch.zeros(text, 3), grid])

    t = UltraImageRope(text_tokens=512, native_tokens=n * n, lengths=(None, 2 * n, 2 * n))
    got = RotaryAxesEmbed(axes, t)(ids(n, n))
    assert all(torch.equal(a, b) for a, b in zip(got, stock(ids(n, n))))
    # a padded call (shifted patches: 2n + 1 positions) still uses the stage's length 2n (official `length`)
    cos, _ = RotaryAxesEmbed(axes, t)(ids(2 * n + 1, 2 * n + 1))
    d0, k = axes[0].dim, 0  # tiny test axes: d = 6 over 4 positions, dominant k = 0
    col = d0 + 2 * k
    row1 = 512 + 2 * n + 1  # image token (row 1, column 0)
    assert cos[row1, col].item() == pytest.approx(math.cos(0.85 * 2 * math.pi / (2 * n)), abs=1e-7)


def test_entropy_and_focus_factors_match_the_official_formulas():
    n = torch.arange(40, dtype=torch.float64).reshape(1, 2, 5, 4)
    q, k = 2 * torch.sin(1 + 0.37 * n), 2 * torch.cos(0.5 + 0.23 * n)
    for block, want in ENTROPY.items():
        assert torch.allclose(block_entropy(q, k, block).double(), torch.tensor([want], dtype=torch.float64),
                              atol=1e-6)
        small = block_entropy(q, k, block, max_elements=1)  # chunked over query rows: the same numbers
        assert torch.allclose(small, block_entropy(q, k, block), atol=1e-7)
    uniform = block_entropy(torch.zeros(1, 1, 300, 8), torch.randn(1, 1, 300, 8), 128)
    assert uniform.item() == pytest.approx(math.log(3), abs=1e-6)  # 384 padded rows: 3 blocks, equal mass
    h = torch.tensor(H, dtype=torch.float64)
    assert torch.allclose(focus_factors(h), torch.tensor(LAMBDA_POWER, dtype=torch.float64), rtol=1e-14)
    assert torch.allclose(focus_factors(h, mapping="linear"), torch.tensor(LAMBDA_LINEAR, dtype=torch.float64),
                          rtol=1e-14)
    assert torch.allclose(focus_factors(h, 1.0, 1.3, 2.0, 0.04, 6.25), torch.tensor(LAMBDA_QWEN,
                                                                                     dtype=torch.float64), rtol=1e-14)
    observed = UltraImageAttentionConfig(bounds="observed", lambda_min=1.0).factors(h, (0.0, 7.0))
    assert observed[0].item() == pytest.approx(1.3) and observed[-1].item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "tiny", native=64)


def _state(model):
    t = model.transformer
    return ({k: v.clone() for k, v in t.state_dict().items()}, type(t.pos_embed).__name__,
            {type(p).__name__ for p in t.attn_processors.values()})


def _same(a, b):
    return a[1:] == b[1:] and a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def _ctx(step, x):
    return StepContext(stage=1, step=step, n_steps=4, index=step, sigma=1.0 - 0.2 * step, sigma_next=0.8 - 0.2 * step,
                       x=x)


def test_attention_patch_measures_at_the_first_step_and_restores_the_model(flux):
    cond = flux.encode_prompt("a red sun over a lake")
    env = type("Env", (), {"model": flux, "cond": cond})()
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    before = _state(flux)

    def core(xx, ctx, c):
        return flux.velocity(xx, ctx.sigma, c, ctx=ctx)

    ref = core(x, _ctx(0, x), cond)
    unit = UltraImageAttentionConfig(lambda_min=1.0, lambda_max=1.0).build(env)
    assert torch.equal(compose_patches(core, [unit])(x, _ctx(0, x), cond), ref)  # λ = 1: stock attention
    patch = UltraImageAttentionConfig().build(env)
    fn = compose_patches(core, [patch])
    v0 = fn(x, _ctx(0, x), cond)
    layers = len(flux.transformer.attn_processors)
    assert sorted(patch.state.lambdas) == [(0, i) for i in range(layers)]
    heads = flux.transformer.config.num_attention_heads
    lam = torch.stack(list(patch.state.lambdas.values()))
    assert lam.shape == (layers, 1, heads) and ((lam >= 1.1) & (lam <= 1.34)).all()
    assert not torch.equal(v0, ref)
    first = dict(patch.state.entropy)
    fn(x + 1, _ctx(1, x), cond)  # a later step reuses the first step's λ: no new measurement
    assert all(torch.equal(first[key], patch.state.entropy[key]) for key in first)
    fn(x + 1, _ctx(0, x), cond)  # a first step measures again (a new stage)
    assert any(not torch.equal(first[key], patch.state.entropy[key]) for key in first)
    assert _same(before, _state(flux))

    def two_calls(xx, ctx, c):  # true CFG calls the transformer twice per velocity: one λ set per call
        return core(xx, ctx, c) + core(xx * 0.5, ctx, c)

    patch = UltraImageAttentionConfig().build(env)
    compose_patches(two_calls, [patch])(x, _ctx(0, x), cond)
    assert {c for c, _ in patch.state.lambdas} == {0, 1}

    def boom(xx, ctx, c):
        core(xx, ctx, c)
        raise RuntimeError("model failed")

    for step in (0, 1):
        with pytest.raises(RuntimeError, match="model failed"):
            compose_patches(boom, [patch])(x, _ctx(step, x), cond)
    assert _same(before, _state(flux))


def test_recipe_runs_at_2x_and_leaves_the_model_bit_identical(flux):
    before = _state(flux)
    plan = build_plan("ultraimage", flux, scale=2, steps=3, hires_steps=3)
    hi = plan.stages[-1]
    kinds = [type(p).__name__ for p in hi.patches]
    assert kinds == ["ShiftedPatchesConfig", "UltraImageRopeConfig", "UltraImageAttentionConfig"]
    assert hi.guidance == 7.0 and hi.schedule.shift == 6.0 and plan.stages[0].schedule.shift == 3.0
    assert Plan.from_dict(plan.to_dict()) == plan
    res = run_plan(flux, plan, "a house by a lake", seed=0)
    assert res.image.shape[-1] == 128 and torch.isfinite(res.image).all()
    direct = build_plan("ultraimage", flux, scale=2, hires_steps=3, guided=False)
    assert len(direct.stages) == 1 and [type(p).__name__ for p in direct.stages[0].patches] == [
        "UltraImageRopeConfig", "UltraImageAttentionConfig"]
    assert torch.isfinite(run_plan(flux, direct, "a house by a lake", seed=0).image).all()
    paper = build_plan("ultraimage", flux, scale=2, steps=2, hires_steps=2, riflex_scale=1.0, lambda_min=1.0,
                       entropy_bounds="observed", block=1, freq_ids=[0, 1])
    assert paper.stages[-1].patches[1].freq_ids == (0, 1)
    assert torch.isfinite(run_plan(flux, paper, "a house by a lake", seed=0).image).all()
    assert _same(before, _state(flux))


def test_at_the_native_size_rdfc_alone_is_direct_sampling(flux):
    a = run_plan(flux, build_plan("ultraimage", flux, scale=1, hires_steps=3, guided=False, concentration=False),
                 "a lake", seed=1)
    b = run_plan(flux, build_plan("direct", flux, scale=1, steps=3, shift=6.0, guidance=7.0), "a lake", seed=1)
    assert torch.equal(a.image, b.image)


def test_bad_input(flux, tiny_sd, tiny_sd3):
    for pipe, kind in ((tiny_sd, "sd"), (tiny_sd3, "sd3")):
        model = wrap_pipeline(pipe, kind, native=64 if kind == "sd" else 128)
        with pytest.raises(ValueError, match="without a rotary position embedding"):
            build_plan("ultraimage", model, scale=2)
    before = _state(flux)
    cases = [
        (dict(freq_ids=[7]), "freq_ids \\[7\\] out of range: this rotary axis has 3 frequencies"),
        (dict(freq_ids=[]), "freq_ids must be a non-empty list"),
        (dict(freq_ids=[-1]), "freq_ids must be a non-empty list"),
        (dict(correction="ntk"), "correction must be one of 'riflex', 'interpolate'"),
        (dict(rope_gate="always"), "rope gate must be one of"),
        (dict(riflex_scale=0), "riflex_scale must be a finite number > 0"),
        (dict(train_scale=math.nan), "train_scale must be a finite number > 0"),
        (dict(lambda_min=1.3, lambda_max=1.1), "lambda_max must be >= lambda_min"),
        (dict(gamma=-2), "gamma must be a finite number > 0"),
        (dict(h_min=6.0, h_max=0.44), "h_max must be > h_min"),
        (dict(entropy_bounds="paper"), "entropy bounds must be one of 'fixed', 'observed'"),
        (dict(mapping="exp"), "mapping must be one of 'power', 'linear'"),
        (dict(block=0), "block must be an integer >= 1"),
        (dict(measure_scale="none"), "measure_scale must be one of"),
        (dict(guided="yes"), "guided must be True or False"),
        (dict(hires_shift="auto"), "hires_shift must be a finite number"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            plan = build_plan("ultraimage", flux, scale=2, steps=1, hires_steps=1, **kw)
            run_plan(flux, plan, "a lake", seed=0)
    with pytest.raises(ValueError, match="is undefined for gamma=0.5"):
        focus_factors(torch.tensor([7.0]), gamma=0.5)
    assert _same(before, _state(flux))
