"""CFM latent upsampler: coupling formulas on known values, solvers, the shipped checkpoint, the stage, errors,
plan round trip and a tiny resumable `train cfm` run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hiresflow.cfm.coupling import augment_source, cosine_alpha_bar, path_sample, target_velocity
from hiresflow.cfm.model import CfmMeta, CfmUpsampler, build_unet, load_upsampler
from hiresflow.cfm.solver import integrate, solver_steps
from hiresflow.cfm.upsample import upsample
from hiresflow.models.loading import EMBEDDED_DIR, load_model
from hiresflow.plan import CfmUpsampleSpec, Plan
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan

SHIPPED = EMBEDDED_DIR / "cfm-x2"
needs_shipped = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="cfm-x2 not in this build")


def test_path_and_target_velocity_known_values():
    x0, x1 = torch.full((2, 4, 2, 2), 1.0), torch.full((2, 4, 2, 2), 3.0)
    t = torch.tensor([0.0, 0.25])
    xt = path_sample(x0, x1, t)
    assert torch.equal(xt[0], x0[0]) and torch.allclose(xt[1], torch.full((4, 2, 2), 1.5))
    assert torch.allclose(path_sample(x0, x1, 1.0), x1)
    assert torch.allclose(target_velocity(x0, x1), torch.full_like(x0, 2.0))
    # σ_min = 0.1: x_t = t·x1 + (1 − 0.9 t)·x0 = 0.75 + 0.775; u = x1 − 0.9·x0 = 2.1
    assert torch.allclose(path_sample(x0, x1, 0.25, sigma_min=0.1), torch.full_like(x0, 1.525))
    assert torch.allclose(target_velocity(x0, x1, sigma_min=0.1), torch.full_like(x0, 2.1))
    # the velocity is d x_t / dt along the path
    d = (path_sample(x0, x1, 0.6, 0.1) - path_sample(x0, x1, 0.2, 0.1)) / 0.4
    assert torch.allclose(d, target_velocity(x0, x1, 0.1))


def test_noise_augmentation_schedule_and_determinism():
    assert cosine_alpha_bar(0) == 1.0
    a = cosine_alpha_bar(400)
    assert a == pytest.approx(0.654, abs=2e-3) and a == pytest.approx(math.cos(math.pi * 400 / 999 / 2) ** 2, abs=1e-3)
    x = torch.ones(1, 4, 3, 3)
    assert augment_source(x, 0, None) is x
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    y1, y2 = augment_source(x, 400, g1), augment_source(x, 400, g2)
    assert torch.equal(y1, y2)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(y1, math.sqrt(a) * x + math.sqrt(1 - a) * eps)
    with pytest.raises(ValueError, match="augmentation index"):
        cosine_alpha_bar(1000)


def test_solvers_on_known_flows():
    x0 = torch.ones(1, 1, 1, 1)
    assert float(integrate(lambda x, t: x, x0, "euler", 1)) == pytest.approx(2.0)
    assert float(integrate(lambda x, t: x, x0, "midpoint", 2)) == pytest.approx(2.5)
    assert float(integrate(lambda x, t: x, x0, "rk4", 4)) == pytest.approx(1 + 1 + 1 / 2 + 1 / 6 + 1 / 24)
    assert float(integrate(lambda x, t: x, x0, "rk4", 40)) == pytest.approx(math.e, rel=1e-6)
    for solver in ("euler", "midpoint", "rk4"):  # constant velocity: exact in any step count
        assert float(integrate(lambda x, t: torch.full_like(x, 3.0), x0, solver, 4)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="multiple of 4 for rk4"):
        solver_steps("rk4", 6)
    with pytest.raises(ValueError, match="solver must be one of"):
        CfmUpsampleSpec(solver="heun")


@needs_shipped
def test_shipped_checkpoint_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    up = load_upsampler(SHIPPED)
    assert up.meta.scale == 2 and up.meta.objective == "cfm" and up.meta.coupling == "psu"
    assert up.meta.t_aug == 400 and up.unet.config.in_channels == 8 and up.unet.dtype == torch.float32
    assert up.meta.training.get("steps", 0) > 0
    assert json.loads((SHIPPED / "config.json").read_text())["out_channels"] == 4


@pytest.fixture(scope="module")
def flux():
    return load_model("tiny-flux", device="cpu")


@needs_shipped
def test_one_nfe_stage_runs_and_changes_the_latent(flux):
    plan = build_plan("cfm", flux, scale=2, steps=3, nfe=1)
    res = run_plan(flux, plan, "a yellow sun over a lake", seed=3)
    assert res.image.shape == (1, 3, 128, 128) and torch.isfinite(res.image).all()
    lo, hi = res.stages
    assert hi.latent.shape[-2:] == (32, 32) and hi.extra["cfm_nfe"] == 1
    bilinear = torch.nn.functional.interpolate(lo.latent, size=(32, 32), mode="bilinear")
    assert float((hi.latent - bilinear).abs().mean()) > 1e-3
    again = run_plan(flux, plan, "a yellow sun over a lake", seed=3)
    assert torch.equal(again.image, res.image)  # same seed ⇒ same bytes


@needs_shipped
def test_wrong_scale_and_shape_give_one_line_errors(flux, tiny_flux):
    with pytest.raises(ValueError, match="power of 2") as e:
        build_plan("cfm", flux, scale=3)
    assert "\n" not in str(e.value)
    up = load_upsampler(SHIPPED)
    with pytest.raises(ValueError, match=r"expects a latent \[B,4,h,w\]"):
        upsample(up, torch.zeros(4, 16, 16), flux.codec.vae)
    plan = build_plan("cfm", flux, scale=4, steps=2, nfe=1)
    plan.stages[2].size = (192, 192)  # ×1.5 instead of ×2
    with pytest.raises(ValueError, match="upsamples ×2 per stage") as e:
        run_plan(flux, plan, "a lake", seed=0)
    assert "\n" not in str(e.value)
    from hiresflow.models.loading import wrap_pipeline

    other = wrap_pipeline(tiny_flux, "flux", native=64)  # random weights: another VAE
    with pytest.raises(ValueError, match="another VAE"):
        run_plan(other, build_plan("cfm", other, scale=2, steps=2, nfe=1), "a lake", seed=0)


def test_cfm_configs_round_trip(flux):
    for plan in (build_plan("cfm", flux, scale=4, nfe=4, solver="rk4"),
                 build_plan("hiflow", flux, scale=4, init="cfm", cfm_nfe=2, cfm_solver="midpoint")):
        again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
        assert again == plan and again.stages[-1].init.upsampler == plan.stages[-1].init.upsampler
    assert plan.stages[-1].init.upsampler == CfmUpsampleSpec("cfm-x2", "midpoint", 2)


def test_untrained_model_is_the_identity_on_the_source():
    up = CfmUpsampler(build_unet(dict(block_out_channels=(8, 16, 16), norm_num_groups=8, attention_head_dim=8,
                                      sample_size=8)), CfmMeta(coupling="bilinear", t_aug=0))
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    out = upsample(up, z, None, nfe=2)  # zero output conv: v = 0
    assert torch.allclose(out, torch.nn.functional.interpolate(z, size=(8, 8), mode="bilinear"))


@pytest.mark.slow
def test_tiny_train_cfm_resumes(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "train" / "standin.py"
    module_spec = importlib.util.spec_from_file_location("cfm_standin", path)
    standin = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(standin)
    from hiresflow.train.cfm import CfmOptions, train_cfm
    from hiresflow.train.common import TrainSpec

    cfg = dict(block_out_channels=(8, 16, 16), norm_num_groups=8, attention_head_dim=8)

    def spec(**kw):
        return TrainSpec(name="cfm", runs=str(tmp_path), steps=4, batch=2, threads=1, warmup=1, sample_every=2,
                         log_every=1, progress=False, **kw)

    opts = CfmOptions(native=16, cache_n=6, val_n=2, val_nfe=1, chunk=6, config=cfg)
    first = train_cfm(spec(stop_after=2), opts, standin)
    assert first["interrupted"] and first["step"] == 2
    done = train_cfm(spec(), opts, standin)
    assert done["step"] == 4 and not done["interrupted"]
    up = load_upsampler(tmp_path / "cfm" / "upsampler")
    assert up.meta.training["steps"] == 4 and up.meta.native_latent == 4
    log = [json.loads(l) for l in (tmp_path / "cfm" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert any("val_psnr" in r for r in log) and "psu_psnr" in log[0]
