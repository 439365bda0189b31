"""RoPE extrapolation (PI, NTK, YaRN) and DyPE: against vectors of the official formulas (kept as data), the
reference's stated numbers and identities, on the real Flux embedder (bit-equal to stock at the native size),
through the patch with σ read from the step, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hiresflow.flow.sampler import StepContext
from hiresflow.flow.schedule import flow_sigmas
from hiresflow.models.loading import wrap_pipeline
from hiresflow.patches.base import compose_patches
from hiresflow.patches.rope import RopeExtrapolationConfig, RotaryAxesEmbed
from hiresflow.patches.rope_frequencies import (DyPERope, NTKRope, PositionInterpolation, RopeAxis, RopeCall,
                                                StockRope, YaRNRope, base_frequencies, correction_range,
                                                yarn_mscale)
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan, stage_sigmas

VECTORS = json.loads((Path(__file__).parent / "data" / "dype_vectors.json").read_text())
FLUX_AXIS = RopeAxis(56, 10000.0, 64)  # FLUX.1's row/column axis at 1024²


def _omega(axis, n, sigma, transform):
    return transform.axis(axis, n, RopeCall((1, n, n), n * n, sigma))


def _transform(case):
    if case["method"] == "ntk":
        return DyPERope("ntk") if case["dype"] else NTKRope()
    return DyPERope("yarn", case["version"]) if case["dype"] else YaRNRope()


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: f"d{c['d']}-n{c['n']}-s{c['sigma']:.3f}-{c['method']}"
                         f"{'-dype-' + c['version'] if c['dype'] else ''}")
def test_frequencies_match_the_official_formulas(case):
    axis = RopeAxis(case["d"], case["theta"], case["L"])
    got = _omega(axis, case["n"], case["sigma"], _transform(case))
    assert torch.allclose(got.omega, torch.tensor(case["omega"], dtype=torch.float64), rtol=1e-12, atol=0)
    assert got.mscale == pytest.approx(case["mscale"], rel=1e-15)


def test_the_reference_numbers():
    """docs/methods/dype.md §3: θ', ramp ranges, mscale, and which dims are base / linear at each σ."""
    d = 56
    for s, theta_prime in ((2, 20520.09), (4, 42107.41)):
        w = _omega(FLUX_AXIS, 64 * s, None, NTKRope()).omega
        assert w[1].item() == pytest.approx(theta_prime ** (-2 / d), rel=1e-6)
    assert correction_range(1.25, 0.75, d, 1e4, 64) == (6, 8)
    assert correction_range(16, 2, d, 1e4, 64) == (0, 5)
    assert yarn_mscale(2) == pytest.approx(1.0693147, abs=1e-7) and yarn_mscale(4) == pytest.approx(1.1386294, abs=1e-7)
    base = base_frequencies(d, 1e4)

    def regimes(sigma, s=4):
        w = _omega(FLUX_AXIS, 64 * s, sigma, DyPERope()).omega
        as_base = [j for j in range(28) if torch.isclose(w[j], base[j], rtol=1e-12)]
        linear = [j for j in range(28) if torch.isclose(w[j], base[j] / s, rtol=1e-12)]
        return max(as_base, default=-1), min(linear, default=None)

    assert regimes(0.5)[0] == 2 and regimes(0.25)[0] == 7
    assert regimes(0.104721) == (12, 22)
    static = _omega(FLUX_AXIS, 128, None, YaRNRope()).omega  # j=0 base, 5–6 NTK, ≥8 linear
    ntk = _omega(FLUX_AXIS, 128, None, NTKRope()).omega
    assert static[0] == base[0] and torch.allclose(static[5:7], ntk[5:7], rtol=1e-12)
    assert torch.allclose(static[8:], base[8:] / 2, rtol=1e-12)


def test_identities():
    for n in (64, 32):  # at or below the native length every method is the stock frequency set, exactly
        for t in (PositionInterpolation(), NTKRope(), YaRNRope(), DyPERope("yarn"), DyPERope("ntk"),
                  DyPERope("pi"), DyPERope("yarn", "legacy")):
            got = _omega(FLUX_AXIS, n, 0.5, t)
            assert torch.equal(got.omega, base_frequencies(56, 1e4)) and got.mscale == 1.0
    static_yarn = _omega(FLUX_AXIS, 256, None, YaRNRope()).omega
    assert torch.equal(_omega(FLUX_AXIS, 256, 1.0, DyPERope("yarn")).omega, static_yarn)
    assert torch.equal(_omega(FLUX_AXIS, 256, 2 ** -0.5, DyPERope("yarn", "legacy")).omega, static_yarn)
    assert torch.allclose(_omega(FLUX_AXIS, 256, 2 ** -0.5, DyPERope("ntk")).omega,
                          _omega(FLUX_AXIS, 256, None, NTKRope()).omega, rtol=1e-15)
    assert torch.equal(_omega(FLUX_AXIS, 256, 0.0, DyPERope("ntk")).omega, base_frequencies(56, 1e4))
    assert torch.equal(_omega(FLUX_AXIS, 256, 0.0, DyPERope("pi")).omega, base_frequencies(56, 1e4))


def test_low_sigma_quirk_official_and_the_clean_variant():
    """Official clamp: stock ω near σ ≈ 0.008, pure linear interpolation below ≈ 0.0067, ZeroDivisionError at 0;
    the clean variant stays at the stock frequencies down to σ = 0 (mscale kept)."""
    base = base_frequencies(56, 1e4)
    assert torch.allclose(_omega(FLUX_AXIS, 256, 0.008, DyPERope()).omega, base, rtol=1e-12)
    assert torch.allclose(_omega(FLUX_AXIS, 256, 0.005, DyPERope()).omega, base / 4, rtol=1e-12)
    with pytest.raises(ZeroDivisionError):
        _omega(FLUX_AXIS, 256, 0.0, DyPERope())
    for sigma in (0.005, 0.0):
        clean = _omega(FLUX_AXIS, 256, sigma, DyPERope(clamp="clean"))
        assert torch.allclose(clean.omega, base, rtol=1e-12) and clean.mscale == yarn_mscale(4)


def test_time_shift_is_the_official_28_step_grid():
    """FLUX.1's rule at its native 1024² (μ = max_shift = 1.15) gives the official DyPE σ for 28 steps."""
    official = [1.000000, 0.988409, 0.976222, 0.963394, 0.949873, 0.935599, 0.920509, 0.904531, 0.887583,
                0.869576, 0.850406, 0.829956, 0.808096, 0.784672, 0.759511, 0.732413, 0.703145, 0.671435,
                0.636964, 0.599357, 0.558163, 0.512844, 0.462748, 0.407078, 0.344849, 0.274828, 0.195455,
                0.104721, 0.0]
    assert torch.allclose(flow_sigmas(28, mu=1.15).double(), torch.tensor(official, dtype=torch.float64), atol=2e-6)


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "tiny", native=64)


def _ids(h, w, text=5):
    grid = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(float(h)), torch.arange(float(w)), indexing="ij"),
                       -1).reshape(-1, 3)
    return torch.cat([torch.zeros(text, 3), grid])


def test_embedder_is_the_stock_embedder_bit_for_bit(flux):
    stock = flux.transformer.pos_embed
    axes = flux.rope_axes()
    n = axes[1].native_len
    for transform in (StockRope(), DyPERope(), YaRNRope(), NTKRope(), PositionInterpolation()):
        for ids in (_ids(n, n), _ids(n // 2, n)):  # native size and below: stock
            got = RotaryAxesEmbed(axes, transform, sigma=0.7)(ids)
            assert all(torch.equal(a, b) for a, b in zip(got, stock(ids)))
    ids = _ids(2 * n, 4 * n)  # beyond: stock with the stock transform only
    assert all(torch.equal(a, b) for a, b in zip(RotaryAxesEmbed(axes, StockRope())(ids), stock(ids)))


def test_mscale_scales_the_row_and_column_columns_of_every_row(flux):
    axes = flux.rope_axes()
    n = axes[1].native_len
    ids = _ids(2 * n, 4 * n)
    cos, sin = RotaryAxesEmbed(axes, YaRNRope())(ids)
    plain, _ = RotaryAxesEmbed(axes, YaRNRope(attention_scale=False))(ids)
    d0, d1 = axes[0].dim, axes[1].dim
    assert torch.equal(cos[:, :d0], plain[:, :d0])  # index axis untouched
    assert torch.allclose(cos[:5, d0:d0 + d1], plain[:5, d0:d0 + d1] * yarn_mscale(2))  # text rows too
    assert torch.allclose(cos[:, d0 + d1:], plain[:, d0 + d1:] * yarn_mscale(4))  # per-axis factor


def _ctx(sigma):
    return StepContext(stage=0, step=0, n_steps=4, index=0, sigma=sigma, sigma_next=sigma / 2, x=None)


def test_patch_reads_sigma_from_the_step_and_restores_the_model(flux):
    cond = flux.encode_prompt("a red sun over a lake")
    # Dy-NTK: continuous in σ (the tiny axes, d = 6 over 4 native positions, leave the Dy-YaRN ramps in place)
    patch = RopeExtrapolationConfig(method="ntk").build(type("Env", (), {"model": flux, "cond": cond})())
    seen = []

    def probe(x, ctx, c):
        seen.append(flux.transformer.pos_embed(_ids(16, 16))[0])
        return x

    fn = compose_patches(probe, [patch])
    x = torch.zeros(1, 4, 32, 32)
    fn(x, _ctx(0.9), cond)
    fn(x, _ctx(0.2), cond)
    fn(x, _ctx(0.9), cond)
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])  # σ decides, calls are not counted
    assert type(flux.transformer.pos_embed).__name__ == "FluxPosEmbed"

    def boom(x, ctx, c):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        compose_patches(boom, [patch])(x, _ctx(0.5), cond)
    assert type(flux.transformer.pos_embed).__name__ == "FluxPosEmbed"


@pytest.mark.parametrize("recipe,kw", [("dype", {}), ("dype+hiflow", dict(base_steps=4, stage_steps=[2])),
                                       ("imax", dict(steps=3, hires_steps=3, dype=True))])
def test_recipes_run_and_use_the_native_schedule(flux, recipe, kw):
    plan = build_plan(recipe, flux, scale=2, **({"steps": 3} if recipe == "dype" else {}), **kw)
    assert any(isinstance(p, RopeExtrapolationConfig) for p in plan.stages[-1].patches)
    res = run_plan(flux, plan, "a house by a lake", seed=0)
    assert res.image.shape[-1] == 128 and torch.isfinite(res.image).all()
    if recipe == "dype":
        sig, _ = stage_sigmas(flux, plan.stages[0], (64, 64))
        assert torch.equal(sig, flux.schedule(3, (64, 64)))
        assert plan.stages[0].schedule.shift_size == "native"


def test_dype_at_the_native_size_is_direct_sampling(flux):
    """n ≤ L on every axis: the DyPE pass is plain sampling, byte for byte."""
    a = run_plan(flux, build_plan("dype", flux, scale=1, steps=3), "a lake", seed=1)
    b = run_plan(flux, build_plan("direct", flux, scale=1, steps=3), "a lake", seed=1)
    assert torch.equal(a.image, b.image)


def test_bad_input(flux, tiny_sd, tiny_sd3):
    with pytest.raises(ValueError, match="rope method must be one of 'pi', 'ntk', 'yarn', got 'rope'"):
        RopeExtrapolationConfig(method="rope")
    with pytest.raises(ValueError, match="lambda_s must be a finite number > 0"):
        RopeExtrapolationConfig(lambda_s=-1)
    with pytest.raises(ValueError, match="lambda_t must be a finite number > 0"):
        RopeExtrapolationConfig(lambda_t=math.nan)
    with pytest.raises(ValueError, match="DyPE version must be one of"):
        build_plan("dype", flux, scale=2, version="2024")
    with pytest.raises(ValueError, match="clamp must be one of"):
        build_plan("dype", flux, scale=2, clamp="tight")
    with pytest.raises(ValueError, match="time_shift must be"):
        build_plan("dype", flux, scale=2, time_shift="late")
    with pytest.raises(ValueError, match="dype must be True or False"):
        build_plan("hiflow", flux, scale=2, dype="yes")
    for pipe, kind in ((tiny_sd, "sd"), (tiny_sd3, "sd3")):
        model = wrap_pipeline(pipe, kind, native=64 if kind == "sd" else 128)
        for recipe, kw in (("dype", {}), ("hiflow", {"dype": True}), ("imax", {"dype": True})):
            with pytest.raises(ValueError, match="without a rotary position embedding"):
                build_plan(recipe, model, scale=2, **kw)
