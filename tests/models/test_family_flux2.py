"""FLUX.2 [dev] and [klein] (diffusers Flux2Pipeline / Flux2KleinPipeline) on the tiny random models of
hiresflow.models.tiny_flux2: loading, faithfulness to the pipelines' own sampling loops (σ rule, embedded guidance,
true CFG, the batch-norm latent codec), the rotary embedder (bit-equal to stock, transforms, one joint call), the
toolkit's patches and every applicable recipe at 2× (4× marked slow)."""

import json

import pytest
import torch

from hiresflow.models.flux2 import Flux2FlowModel, empirical_mu, latent_ids, patchify, unpatchify
from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.models.tiny import make_tokenizer_class_portable
from hiresflow.models.tiny_flux2 import NATIVE, tiny_klein_pipeline, tiny_pipeline
from hiresflow.patches.rope_frequencies import NTKRope, PositionInterpolation, RopeCall, StockRope
from hiresflow.recipes import SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan

PROMPT = "three pine trees by a lake at night"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline(seed=0)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def klein_pipe():
    p = tiny_klein_pipeline(seed=0)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def model(pipe):
    return wrap_pipeline(pipe, "tiny-flux2", native=NATIVE)


@pytest.fixture(scope="module")
def klein(klein_pipe):
    return wrap_pipeline(klein_pipe, "tiny-flux2-klein", native=NATIVE)


@pytest.fixture(scope="module")
def cond(model):
    return model.encode_prompt(PROMPT)


def _latent(h, w, seed=0):
    return torch.randn(1, 128, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- (a), (e) loading


@pytest.mark.parametrize("variant", ["dev", "klein"])
def test_load_model_picks_the_adapter_from_a_saved_folder(variant, pipe, klein_pipe, model, klein, tmp_path):
    p, m = (pipe, model) if variant == "dev" else (klein_pipe, klein)
    p.save_pretrained(tmp_path)
    make_tokenizer_class_portable(tmp_path)
    (tmp_path / "hiresflow.json").write_text(json.dumps({"native_size": NATIVE}))
    loaded = load_model(str(tmp_path), device="cpu")
    assert isinstance(loaded, Flux2FlowModel) and loaded.family == "flux2" and loaded.variant == variant
    assert type(loaded.pipe).__name__ == type(p).__name__ and loaded.geometry == m.geometry
    assert loaded.pipe.tokenizer.chat_template == p.tokenizer.chat_template
    x = _latent(4, 6)
    assert torch.equal(loaded.velocity(x, 0.7, loaded.encode_prompt(PROMPT)), m.velocity(x, 0.7, m.encode_prompt(PROMPT)))


@pytest.mark.parametrize("name, guidance_kind", [("random-tiny-flux2", "embedded"),
                                                 ("random-tiny-flux2-klein", "cfg")])
def test_random_tiny_flux2_by_name(name, guidance_kind):
    m = load_model(name, device="cpu")
    assert isinstance(m, Flux2FlowModel) and m.geometry.native == (64, 64) and m.guidance_kind == guidance_kind
    res = run_plan(m, build_plan("direct", m, scale=1, steps=2), "a house", seed=1)
    assert res.image.shape == (1, 3, 64, 64) and torch.isfinite(res.image).all()


def test_family_facts(model, klein, klein_pipe):
    g = model.geometry
    assert (g.channels, g.vae_scale, g.patch, g.multiple) == (128, 16, 1, 16)
    assert (model.variant, model.guidance_kind, model.default_guidance, model.default_steps) == ("dev", "embedded",
                                                                                                 4.0, 50)
    assert (klein.variant, klein.guidance_kind, klein.default_guidance, klein.cfg_calls) == ("klein", "cfg", 4.0, 2)
    distilled = Flux2FlowModel(tiny_klein_pipeline(is_distilled=True), "distilled")
    assert (distilled.guidance_kind, distilled.default_guidance, distilled.default_steps) == ("none", None, 4)
    assert wrap_pipeline(model.pipe, "real-sized").geometry.native == (1024, 1024)  # the pipelines' default size
    assert model.text_len == 64 and model.text_tokens(model.encode_prompt("a")) == 64
    assert [(a.dim, a.theta, a.native_len) for a in model.rope_axes()] == [(8, 2000.0, None), (8, 2000.0, 4),
                                                                           (8, 2000.0, 4), (8, 2000.0, None)]
    assert model.call_flops((16, 16)) > model.call_flops((8, 8)) > 0 and model.call_bytes((8, 8)) > 0
    assert klein.call_flops((8, 8)) > model.call_flops((8, 8))  # two CFG calls (similar widths)


# ---------------------------------------------------------------- latents and σ rule


def test_codec_is_the_pipeline_normalisation(model, pipe):
    raw = torch.randn(1, 32, 8, 12, generator=torch.Generator().manual_seed(5))
    z = model.codec.normalise(raw)
    assert z.shape == (1, 128, 4, 6) and torch.equal(patchify(raw), pipe._patchify_latents(raw))
    assert torch.equal(unpatchify(patchify(raw)), raw)
    assert torch.allclose(model.codec.denormalise(z), raw, atol=1e-6)
    bn = pipe.vae.bn
    by_hand = (pipe._patchify_latents(raw) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
    assert torch.equal(z, by_hand)
    img = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(6))
    assert torch.equal(model.encode(img), pipe._encode_vae_image(img * 2 - 1, None))  # posterior mode, as the pipeline
    dec = model.decode(model.encode(img))
    assert dec.shape == img.shape and 0 <= float(dec.min()) and float(dec.max()) <= 1


def test_spatial_resize_commutes_with_the_normalisation(model):
    """Why the 128-channel grid: a per-channel affine map commutes with interpolation (weights summing to 1)."""
    import torch.nn.functional as F

    raw = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(2))
    up = F.interpolate(patchify(raw), scale_factor=2, mode="bilinear", align_corners=False)
    z_up = F.interpolate(model.codec.normalise(raw), scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(model.codec.normalise(unpatchify(up)), z_up, atol=1e-5)


@pytest.mark.parametrize("seq_len", [16, 256, 4096, 4300, 4301, 16384])
@pytest.mark.parametrize("steps", [4, 28, 50])
def test_empirical_mu_is_the_pipelines(seq_len, steps):
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    assert empirical_mu(seq_len, steps) == compute_empirical_mu(seq_len, steps)


@pytest.mark.parametrize("size, steps", [((64, 96), 4), ((1024, 1024), 28), ((1024, 1792), 50), ((2048, 2048), 30)])
def test_sigma_grid_is_the_pipelines(model, size, steps):
    """The pipelines' own schedule code (step 6 of `__call__`) on the scheduler object, at tiny and real sizes."""
    import numpy as np
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu, retrieve_timesteps

    sched = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config)
    seq = (size[0] // 16) * (size[1] // 16)
    retrieve_timesteps(sched, steps, "cpu", sigmas=np.linspace(1.0, 1 / steps, steps),
                       mu=compute_empirical_mu(seq, steps))
    assert torch.allclose(sched.sigmas.double(), model.schedule(steps, size), atol=1e-6)


# ---------------------------------------------------------------- (b) faithfulness to the pipelines' __call__


@pytest.mark.parametrize("guidance", [4.0, 1.5])
def test_direct_sampling_reproduces_flux2_dev(pipe, model, guidance):
    """Our Euler sampler with the adapter's velocity, on the pipeline's σ grid from the same noise, gives the
    pipeline's own latents (`output_type="latent"`: packed, normalised). Tolerance 1e-6 (measured: bit-equal on
    the CPU); on our own float64 grid (≤ 4e-8 from the pipeline's float32 one) 1e-5 (measured 1.4e-6)."""
    from hiresflow.flow.sampler import sample

    noise = _latent(4, 6, seed=3)
    ref = pipe(prompt=PROMPT, height=64, width=96, num_inference_steps=4, guidance_scale=guidance,
               output_type="latent", latents=noise.clone(), max_sequence_length=model.text_len).images
    ref = ref.permute(0, 2, 1).reshape(1, 128, 4, 6)
    sigmas = pipe.scheduler.sigmas.double()
    assert torch.allclose(sigmas, model.schedule(4, (64, 96)), atol=1e-6)
    c = model.encode_prompt(PROMPT)
    for grid, tol in ((sigmas, 1e-6), (model.schedule(4, (64, 96)), 1e-5)):
        ours = sample(lambda x, ctx: model.velocity(x, ctx.sigma, c, guidance=guidance), noise.clone(), grid,
                      record=False).x
        assert (ours - ref).abs().max().item() <= tol


@pytest.mark.parametrize("distilled, guidance", [(False, 4.0), (False, 1.0), (True, 4.0)])
def test_direct_sampling_reproduces_flux2_klein(klein_pipe, distilled, guidance):
    """[klein]: true CFG against "" for the base model (w > 1), one call for w ≤ 1 and for the step-distilled
    model (w ignored). The pipeline returns raw 32-channel latents: compared through the codec. Tolerance 1e-6
    on the pipeline's σ grid (measured: bit-equal on the CPU)."""
    from hiresflow.flow.sampler import sample

    p = tiny_klein_pipeline(is_distilled=True) if distilled else klein_pipe
    p.set_progress_bar_config(disable=True)
    m = wrap_pipeline(p, "klein", native=NATIVE)
    noise = _latent(6, 4, seed=4)
    ref = p(prompt=PROMPT, height=96, width=64, num_inference_steps=3, guidance_scale=guidance,
            output_type="latent", latents=noise.clone(), max_sequence_length=m.text_len).images
    c = m.encode_prompt(PROMPT)
    assert (c.negative is None) == distilled
    sigmas = p.scheduler.sigmas.double()
    assert torch.allclose(sigmas, m.schedule(3, (96, 64)), atol=1e-6)
    ours = sample(lambda x, ctx: m.velocity(x, ctx.sigma, c, guidance=guidance), noise.clone(), sigmas,
                  record=False).x
    assert ref.shape == (1, 32, 12, 8)
    assert (m.codec.denormalise(ours) - ref).abs().max().item() <= 1e-6


# ---------------------------------------------------------------- (c) rotary embedding


def test_joint_table_call_is_the_pipelines_two_table_call(model, cond):
    """The adapter passes [text; image] ids as img_ids and no txt_ids; the transformer output is bit-equal to
    the pipeline's call with separate tables."""
    x = _latent(4, 6)
    tr = model.transformer
    with torch.no_grad():
        split = tr(hidden_states=x.reshape(1, 128, 24).permute(0, 2, 1), encoder_hidden_states=cond.prompt_embeds,
                   timestep=torch.tensor([0.6]), img_ids=model.pipe._prepare_latent_ids(x),
                   txt_ids=cond.text_ids[None], guidance=torch.tensor([4.0]), return_dict=False)[0]
    assert torch.equal(model._call(x, 0.6, cond, 4.0), split.permute(0, 2, 1).reshape(1, 128, 4, 6))
    assert torch.equal(latent_ids(4, 6), model.pipe._prepare_latent_ids(x)[0])


@pytest.mark.parametrize("hw", [(4, 4), (8, 12)])
def test_stock_rope_is_bit_equal_and_transforms_change_it(model, cond, hw):
    x = _latent(*hw)
    stock = model._call(x, 0.6, cond, 4.0)
    with model.rope_applied(StockRope(), 0.6):
        assert torch.equal(model._call(x, 0.6, cond, 4.0), stock)
    for transform in (PositionInterpolation(), NTKRope()):
        with model.rope_applied(transform, 0.6):
            out = model._call(x, 0.6, cond, 4.0)
        assert torch.equal(out, stock) == (hw == (4, 4))  # identity at the native grid, a change beyond it
    assert type(model.transformer.pos_embed).__name__ == "Flux2PosEmbed"  # stock back afterwards


def test_transforms_see_one_call_over_text_and_image(model, cond):
    seen = []

    class Spy(StockRope):
        def frequencies(self, axes, call):
            seen.append(call)
            return super().frequencies(axes, call)

    with model.rope_applied(Spy(), 0.25):
        model._call(_latent(8, 12), 0.25, cond, 4.0)
    t = model.text_tokens(cond)
    assert seen == [RopeCall(lengths=(1, 8, 12, t), seq_len=t + 8 * 12, sigma=0.25)]


def test_text_axis_stays_stock_under_every_transform(model, cond):
    """I-Max's NTK RoPE scales every axis of FLUX.1 (all its text ids are 0); FLUX.2's text order on l and the
    reference index t stay stock: the text rows of the tables equal stock, the image rows change."""
    from hiresflow.patches.rope_frequencies import IMaxNTKRope

    ids = torch.cat([cond.text_ids, latent_ids(8, 12)])
    t = model.text_tokens(cond)
    stock = model.transformer.pos_embed(ids)
    with model.rope_applied(IMaxNTKRope(10.0, True, t, 16), 0.5):
        cos, sin = model.transformer.pos_embed(ids)
    assert torch.equal(cos[:t], stock[0][:t]) and torch.equal(sin[:t], stock[1][:t])
    assert not torch.allclose(cos[t:], stock[0][t:])


def test_proportional_attention_scales_the_whole_table(model, cond):
    from hiresflow.patches.attention import ProportionalAttentionPatch
    from hiresflow.stage import StepContext

    x = _latent(8, 8)
    ctx = StepContext(0, 0, 1, 0, 0.5, 0.0, x)
    stock = model._call(x, 0.5, cond, 4.0)
    t = model.text_tokens(cond)
    with ProportionalAttentionPatch(model.transformer, t + 64).applied(x, ctx):  # L_train = L: m = 1
        assert torch.equal(model._call(x, 0.5, cond, 4.0), stock)
    with ProportionalAttentionPatch(model.transformer, t + 16).applied(x, ctx):
        assert not torch.allclose(model._call(x, 0.5, cond, 4.0), stock, atol=1e-4)


def test_text_copies_sit_at_their_tile_origin(model, cond, klein):
    dup = model.duplicate_text(cond, 2, 3, (4, 4))
    t = model.text_tokens(cond)
    assert dup.prompt_embeds.shape[1] == 6 * t and torch.equal(dup.prompt_embeds[:, 5 * t:], cond.prompt_embeds)
    copy = dup.text_ids[5 * t:]  # copy (1, 2)
    assert torch.equal(copy[:, 0], cond.text_ids[:, 0]) and torch.equal(copy[:, 3], cond.text_ids[:, 3])
    assert set(copy[:, 1].tolist()) == {4} and set(copy[:, 2].tolist()) == {8}
    out = model.velocity(_latent(8, 12), 0.5, dup)
    assert out.shape == (1, 128, 8, 12) and torch.isfinite(out).all()
    kc = klein.encode_prompt(PROMPT)
    assert klein.duplicate_text(kc, 2, 2, (4, 4)).negative.prompt_embeds.shape[1] == 4 * t  # CFG branch too


# ---------------------------------------------------------------- (d) recipes

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh", "dype", "dype+hiflow", "ultraimage")}


@pytest.mark.parametrize("scale", [2, pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("recipe", list(FAST))
def test_recipe_runs(model, recipe, scale):
    plan = build_plan(recipe, model, scale=scale, **FAST[recipe])
    res = run_plan(model, plan, PROMPT, seed=4)
    h, w = plan.target_size
    assert (h, w) == (64 * scale, 64 * scale)
    assert res.image.shape == (1, 3, h, w) and torch.isfinite(res.image).all()


@pytest.mark.parametrize("recipe", ["imax", "dype+hiflow"])
def test_klein_true_cfg_runs_recipes(klein, recipe):
    plan = build_plan(recipe, klein, scale=2, **FAST[recipe])
    res = run_plan(klein, plan, PROMPT, seed=2)
    assert res.image.shape == (1, 3, 128, 128) and torch.isfinite(res.image).all()


def test_hiflow_and_imax_put_the_toolkit_on_flux2(model):
    names = {type(p).__name__ for p in build_plan("imax", model, scale=2).stages[1].patches}
    assert names == {"TextDuplicationConfig", "RopeScalingConfig", "ProportionalAttentionConfig"}
    names = {type(p).__name__ for p in build_plan("dype+hiflow", model, scale=2).stages[1].patches}
    assert names == {"RopeExtrapolationConfig", "ProportionalAttentionConfig"}


@pytest.mark.parametrize("recipe, params, match", [
    ("hidiffusion", {}, "U-Net methods"),
    ("hiflow", dict(windowed_attention=0.5), "windowed attention"),
    ("ultraimage", dict(steps=2, hires_steps=2, concentration=True), "attention concentration applies to"),
])
def test_what_does_not_apply_fails_with_one_line(model, recipe, params, match):
    with pytest.raises(ValueError, match=match) as err:
        run_plan(model, build_plan(recipe, model, scale=2, **params), PROMPT, seed=0)
    assert "\n" not in str(err.value)


def test_shifted_patches_are_refused_when_asked_for_by_a_plan(model):
    from hiresflow.patches.shifted_patches import ShiftedPatchesConfig

    plan = build_plan("direct", model, scale=2, steps=2)
    plan.stages[0].patches.append(ShiftedPatchesConfig())
    with pytest.raises(ValueError, match="shifted patchification applies to") as err:
        run_plan(model, plan, PROMPT, seed=0)
    assert "\n" not in str(err.value)
