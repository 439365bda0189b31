"""Fast checks of hiresflow.train on a tiny stand-in world: steps run, losses are finite, an interrupted and
resumed run equals an uninterrupted one bit for bit, export loads offline and generates."""

from __future__ import annotations

import json

import pytest
import standin
import torch
from safetensors.torch import load_file

from hiresflow.train.common import ConfigMismatch, TrainSpec, lr_at, step_seed
from hiresflow.train.diffusion import DiffusionOptions, train_diffusion
from hiresflow.train.vae import VaeOptions, train_vae, vae_batch

TINY_VAE = VaeOptions(crop=32, sizes=(32, 48), config=dict(block_out_channels=(8, 16, 16), norm_num_groups=4))
TINY_DENOISER = {
    "flux": dict(num_layers=1, num_single_layers=1, num_attention_heads=2, attention_head_dim=16,
                 axes_dims_rope=(4, 6, 6)),
    "sd": dict(block_out_channels=(32, 32, 32), attention_head_dim=2),
}


def _spec(runs, name, steps=4, **kw):
    kw = {"batch": 2, "warmup": 1, "threads": 1, "sample_every": 0, "progress": False, "ckpt_every_s": 1e9, **kw}
    return TrainSpec(name=name, runs=str(runs), steps=steps, **kw)


def _opts(kind, vae_dir=None):
    return DiffusionOptions(kind=kind, vae=vae_dir, vae_config=TINY_VAE.config, cache_n=8, size=32,
                            preview_steps=2, denoiser=TINY_DENOISER[kind])


def _tensors(run_dir):
    return load_file(str(run_dir / "ckpt.safetensors"))


def _assert_same(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not bad, bad[:5]
    la = [json.loads(l) for l in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (b / "log.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert strip(la) == strip(lb)


def test_same_seed_same_batches():
    a = vae_batch(standin, 3, 5, 2, 32, (32, 48))
    b = vae_batch(standin, 3, 5, 2, 32, (32, 48))
    c = vae_batch(standin, 4, 5, 2, 32, (32, 48))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert step_seed(0, 1) != step_seed(0, 2) != step_seed(1, 1)


def test_lr_schedule():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100) == pytest.approx(0.1)


@pytest.mark.slow
def test_vae_trains_resumes_identically(tmp_path):
    full = train_vae(_spec(tmp_path / "a", "vae", log_every=1), TINY_VAE, standin, stats_n=8)
    assert full["step"] == 4 and (tmp_path / "a/vae/vae/config.json").is_file()
    cfg = json.loads((tmp_path / "a/vae/vae/config.json").read_text())
    assert cfg["scaling_factor"] > 0 and cfg["scaling_factor"] != 1.0
    part = train_vae(_spec(tmp_path / "b", "vae", log_every=1, stop_after=2), TINY_VAE, standin, stats_n=8)
    assert part["step"] == 2 and part["interrupted"]
    assert json.loads((tmp_path / "b/vae/state.json").read_text())["step"] == 2
    rest = train_vae(_spec(tmp_path / "b", "vae", log_every=1), TINY_VAE, standin, stats_n=8)
    assert rest["step"] == 4
    _assert_same(tmp_path / "a/vae", tmp_path / "b/vae")
    rows = [json.loads(l) for l in (tmp_path / "a/vae/log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "loss" in r)


def test_resume_refuses_other_config(tmp_path):
    train_vae(_spec(tmp_path, "vae", steps=1), TINY_VAE, standin, stats_n=8)
    with pytest.raises(ConfigMismatch, match="batch"):
        train_vae(_spec(tmp_path, "vae", steps=2, batch=3), TINY_VAE, standin, stats_n=8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flux", "sd"])
def test_diffusion_trains_resumes_identically(tmp_path, kind):
    full = train_diffusion(_spec(tmp_path / "a", kind, log_every=1), _opts(kind), standin)
    assert full["step"] == 4 and torch.isfinite(torch.tensor(full["final_loss"]))
    train_diffusion(_spec(tmp_path / "b", kind, log_every=1, stop_after=3), _opts(kind), standin)
    assert json.loads((tmp_path / f"b/{kind}/state.json").read_text())["step"] == 3
    train_diffusion(_spec(tmp_path / "b", kind, log_every=1), _opts(kind), standin)
    _assert_same(tmp_path / f"a/{kind}", tmp_path / f"b/{kind}")


@pytest.mark.slow
def test_cli_train_and_export_loads_offline(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hiresflow.models.loading import load_model
    from hiresflow.train.cli import app
    from hiresflow.train.export import check_folder

    monkeypatch.chdir(tmp_path)
    r = CliRunner()
    common = ["--runs", "runs", "--threads", "1", "--source", "standin", "--sample-every", "2"]
    res = r.invoke(app, ["vae", "--steps", "2", "--batch", "2", "--channels", "8,16,16", "--groups", "4",
                         "--sizes", "64", *common])
    assert res.exit_code == 0, res.output
    tf = json.dumps(TINY_DENOISER["flux"])
    un = json.dumps(TINY_DENOISER["sd"])
    for cmd, extra in (("flux", ["--transformer", tf]), ("sd", ["--unet", un])):
        res = r.invoke(app, [cmd, "--steps", "2", "--batch", "2", "--cache-n", "4", *extra, *common])
        assert res.exit_code == 0, res.output
    assert list((tmp_path / "runs/flux/samples").glob("*.png"))
    res = r.invoke(app, ["export", "--runs", "runs", "--out", "embedded"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "embedded/TRAINING.md").read_text()
    assert "hiresflow train flux" in md and "## vae" in md
    for name in ("tiny-flux", "tiny-sd"):
        folder = tmp_path / "embedded" / name
        assert json.loads((folder / "hiresflow.json").read_text())["native_size"] == 64
        model = load_model(str(folder), device="cpu")
        assert model.geometry.native == (64, 64) and model.geometry.vae_scale == 4
        img = check_folder(folder, steps=2)
        assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()
        # stored as fp16, but plain from_pretrained (no dtype) loads float32 too: the configs name float32
        from diffusers import DiffusionPipeline

        plain = DiffusionPipeline.from_pretrained(str(folder))
        assert {next(m.parameters()).dtype for m in plain.components.values()
                if isinstance(m, torch.nn.Module)} == {torch.float32}
    # exporting one model later (its sibling's run folder gone) keeps the sibling's record in TRAINING.md
    import shutil

    flux_section = md.split("## flux", 1)[1].split("## sd", 1)[0]
    shutil.rmtree(tmp_path / "runs" / "flux")
    with open(tmp_path / "embedded/TRAINING.md", "a") as f:  # a record of another model (e.g. an upsampler)
        f.write("\n## cfm-x2\n\nits record\n")
    res = r.invoke(app, ["export", "--runs", "runs", "--out", "embedded", "--flux", ""])
    assert res.exit_code == 0, res.output
    md2 = (tmp_path / "embedded/TRAINING.md").read_text()
    assert "## vae" in md2 and "## sd" in md2 and flux_section.strip() in md2
    assert "## cfm-x2\n\nits record" in md2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flux", "sd"])
def test_warm_start_continues_from_the_given_pipeline(tmp_path, kind):
    """--init-from: the run starts from the other pipeline's denoiser weights and keeps its other components."""
    from hiresflow.train.diffusion import load_trained_pipeline
    from hiresflow.train.export import export_run
    from hiresflow.train.pipelines import denoiser_of

    train_diffusion(_spec(tmp_path, "base", steps=3), _opts(kind), standin)
    base = tmp_path / "base-export"
    export_run(tmp_path / "base", base, dtype="fp32", compare=False, version=1)
    opts = DiffusionOptions(kind=kind, vae=None, cache_n=8, size=32, preview_steps=2, init_from=str(base))
    train_diffusion(_spec(tmp_path, "warm", steps=2, stop_after=1), opts, standin)  # skeleton = init
    pipe0, _ = load_trained_pipeline(tmp_path / "base")
    from hiresflow.train.pipelines import load_pipeline_folder

    skel = load_pipeline_folder(tmp_path / "warm" / "skeleton")
    for comp in ("vae", "text_encoder", denoiser_of(kind)):
        a, b = getattr(pipe0, comp).state_dict(), getattr(skel, comp).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), comp
    other = DiffusionOptions(kind=kind, vae=None, cache_n=8, size=32, preview_steps=2, init_from=str(tmp_path / "x"))
    with pytest.raises(ConfigMismatch, match="init_from"):  # resuming from another start model is refused
        train_diffusion(_spec(tmp_path, "warm", steps=2), other, standin)
    res = train_diffusion(_spec(tmp_path, "warm", steps=2), opts, standin)
    assert res["step"] == 2 and torch.isfinite(torch.tensor(res["final_loss"]))
    card = tmp_path / "warm-export"
    export_run(tmp_path / "warm", card, dtype="fp32", compare=False, version=2)
    meta = json.loads((card / "hiresflow.json").read_text())
    assert meta["version"] == 2 and meta["init_from"] == str(base)


def test_warm_start_refuses_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        DiffusionOptions(kind="flux", init_from="tiny-flux-v1", denoiser={"num_layers": 1})
    with pytest.raises(ValueError, match="neither an embedded model"):
        train_diffusion(_spec(tmp_path, "w"), DiffusionOptions(kind="flux", vae=None, init_from=str(tmp_path)),
                        standin)
    with pytest.raises(ValueError, match="not a sd pipeline"):
        train_diffusion(_spec(tmp_path, "w2"), DiffusionOptions(kind="sd", vae=None, init_from="tiny-flux-v1"),
                        standin)


def test_scheduler_overrides_refused_with_one_line_errors():
    for kind, sched, match in [
        ("flux", {"prediction_type": "v_prediction"}, "flux trainer"),
        ("sd", {"beta_end": 0.02}, "not supported"),
        ("sd", {"prediction_type": "v"}, "prediction_type must be one of"),
        ("sd", {"rescale_betas_zero_snr": 1}, "rescale_betas_zero_snr must be one of"),
        ("sd", {"rescale_betas_zero_snr": True}, "needs v-prediction"),
    ]:
        with pytest.raises(ValueError, match=match) as err:
            DiffusionOptions(kind=kind, vae=None, scheduler=sched)
        assert "\n" not in str(err.value)


def test_zero_terminal_snr_table_is_finite():
    """ᾱ_T = 0 (zero-terminal SNR) becomes 2⁻²⁴ as in diffusers' Euler schedulers: σ_max < 1 and the last
    training timestep is reachable from it."""
    from diffusers import DDIMScheduler

    from hiresflow.flow.parameterization import DDPMFlow

    sc = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                       set_alpha_to_one=False, rescale_betas_zero_snr=True, prediction_type="v_prediction")
    assert float(sc.alphas_cumprod[-1]) == 0.0
    flow = DDPMFlow(sc.alphas_cumprod.clone(), "v_prediction")
    assert float(flow.alphas_cumprod[-1]) == 2.0**-24 and 0.999 < flow.sigma_max < 1
    assert flow.timestep(flow.sigma_max) == 999.0
    x_t, out = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    assert torch.isfinite(flow.velocity(out, x_t, flow.sigma_max)).all()


@pytest.mark.slow
def test_sd_trains_with_v_prediction_and_zero_terminal_snr(tmp_path):
    """--scheduler: the skeleton's scheduler carries the overrides, the loss targets v, and the trained model
    samples finite images through hiresflow's sampler from σ_max ≈ 1."""
    from hiresflow.train.diffusion import load_trained_pipeline, preview
    from hiresflow.train.pipelines import load_pipeline_folder

    sched = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
    opts = _opts("sd")
    opts.scheduler = sched
    res = train_diffusion(_spec(tmp_path, "vpred", steps=3), opts, standin)
    assert res["step"] == 3 and torch.isfinite(torch.tensor(res["final_loss"]))
    cfg = load_pipeline_folder(tmp_path / "vpred" / "skeleton").scheduler.config
    assert {k: cfg[k] for k in sched} == sched
    pipe, state = load_trained_pipeline(tmp_path / "vpred")
    assert state["config"]["extra"]["scheduler"] == sched
    img = preview(pipe, ["a red sun over a lake"], steps=3, size=32)
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()


def test_latent_cache_of_one_source_never_serves_another(tmp_path):
    """A cache's metadata names a non-default source: the same path rebuilt for another caption grammar."""
    from types import SimpleNamespace

    from hiresflow.train.data import build_latent_cache
    from hiresflow.train.diffusion import _default_cache_path
    from hiresflow.train.vae import build_vae

    vae = build_vae(TINY_VAE.config, 0)

    def shouting(seed, batch, size, **kw):
        imgs, prompts = standin.dataset_batch(seed, batch, size, **kw)
        return imgs, [p.upper() for p in prompts]

    other = SimpleNamespace(__name__="tests.shouting", vocabulary=standin.vocabulary, dataset_batch=shouting)
    path = tmp_path / "latents.safetensors"
    a = build_latent_cache(path, vae, standin, n=4, size=32, seed=0, progress=False)
    b = build_latent_cache(path, vae, other, n=4, size=32, seed=0, progress=False)
    assert a.meta["source"] == "standin" and b.meta["source"] == "tests.shouting"
    assert b.prompts == [p.upper() for p in a.prompts]
    spec, opts = _spec(tmp_path, "x"), _opts("flux")
    assert _default_cache_path(spec, opts, "d").name == "latents-32px-8-s0-d.safetensors"
    assert _default_cache_path(spec, opts, "d", other).name == "latents-32px-8-shouting-s0-d.safetensors"
