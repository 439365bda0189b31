"""Z-Image (diffusers ZImagePipeline) on the tiny random model of hiresflow.models.tiny_zimage: loading, faithfulness
to the pipeline's own sampling loop, the rotary embedder (bit-equal to stock, transforms, positions beyond the stock
tables), the toolkit's patches and every applicable recipe at 2× (4× marked slow)."""

import json

import pytest
import torch

from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.models.tiny_zimage import CHAT_TEMPLATE, NATIVE, tiny_pipeline
from hiresflow.models.zimage import ZImageFlowModel, ZImageRope, duplicate_caption_ids
from hiresflow.patches.rope_frequencies import NTKRope, PositionInterpolation, RopeCall, StockRope
from hiresflow.recipes import SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan

PROMPT = "three pine trees by a lake at night"


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline(seed=0)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def model(pipe):
    return wrap_pipeline(pipe, "tiny-zimage", native=NATIVE)


@pytest.fixture(scope="module")
def cond(model):
    return model.encode_prompt(PROMPT)


def _latent(h, w, seed=0):
    return torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- (a), (e) loading


def test_load_model_picks_the_adapter_from_a_saved_folder(pipe, model, cond, tmp_path):
    pipe.save_pretrained(tmp_path)
    (tmp_path / "hiresflow.json").write_text(json.dumps({"native_size": NATIVE}))
    loaded = load_model(str(tmp_path), device="cpu")
    assert isinstance(loaded, ZImageFlowModel) and loaded.family == "zimage"
    assert loaded.geometry.native == (NATIVE, NATIVE) and loaded.geometry.multiple == 16
    assert loaded.pipe.tokenizer.chat_template == CHAT_TEMPLATE  # the chat template travels with the folder
    x = _latent(8, 8)
    assert torch.equal(loaded.velocity(x, 0.7, loaded.encode_prompt(PROMPT)), model.velocity(x, 0.7, cond))


def test_random_tiny_zimage_by_name():
    m = load_model("random-tiny-zimage", device="cpu")
    assert isinstance(m, ZImageFlowModel) and m.geometry.native == (64, 64)
    res = run_plan(m, build_plan("direct", m, scale=1, steps=2), "a house", seed=1)
    assert res.image.shape == (1, 3, 64, 64) and torch.isfinite(res.image).all()


def test_family_facts(model):
    assert (model.geometry.channels, model.geometry.vae_scale, model.geometry.patch) == (16, 8, 2)
    assert (model.default_guidance, model.default_steps, model.guidance_kind) == (5.0, 50, "cfg")
    assert (model.codec.scaling, model.codec.shift) == (0.3611, 0.1159)
    assert wrap_pipeline(model.pipe, "Tongyi-MAI/Z-Image-Turbo").default_guidance == 0.0  # its model card's w, steps
    assert [(a.dim, a.theta, a.native_len) for a in model.rope_axes()] == [(4, 256.0, None), (6, 256.0, 4),
                                                                           (6, 256.0, 4)]
    assert model.call_flops((16, 16)) > model.call_flops((8, 8)) > 0 and model.call_bytes((8, 8)) > 0


# ---------------------------------------------------------------- (b) faithfulness to ZImagePipeline.__call__


@pytest.mark.parametrize("guidance, normalization, truncation", [(0.0, 0.0, 1.0), (5.0, 0.0, 1.0), (4.0, 1.1, 0.2)])
def test_direct_sampling_reproduces_the_pipeline(pipe, guidance, normalization, truncation):
    """Our Euler sampler with the adapter's velocity, on the pipeline's σ grid from the same noise, gives the
    pipeline's own latents (`output_type="latent"`), CFG with renormalisation and truncation included.
    Tolerance 1e-6 (measured: bit-equal on the CPU)."""
    from hiresflow.flow.sampler import sample

    model = ZImageFlowModel(pipe, "tiny-zimage", cfg_normalization=normalization, cfg_truncation=truncation)
    noise = _latent(8, 12, seed=3)
    ref = pipe(PROMPT, height=64, width=96, num_inference_steps=4, guidance_scale=guidance,
               cfg_normalization=normalization, cfg_truncation=truncation, output_type="latent",
               latents=noise.clone()).images
    sigmas = pipe.scheduler.sigmas.double()
    assert torch.allclose(sigmas, model.schedule(4, (64, 96)), atol=1e-6)  # our σ rule is the pipeline's
    cond = model.encode_prompt(PROMPT)
    ours = sample(lambda x, ctx: model.velocity(x, ctx.sigma, cond, guidance=guidance), noise.clone(), sigmas,
                  record=False).x
    assert (ours - ref).abs().max().item() <= 1e-6
    if normalization:  # the options act: renormalised on every CFG step, no CFG once 1 − σ > 0.2
        assert model.guidance_at(0.9, guidance) == guidance and model.guidance_at(0.75, guidance) == 0.0
        plain = pipe(PROMPT, height=64, width=96, num_inference_steps=4, guidance_scale=guidance,
                     output_type="latent", latents=noise.clone()).images
        assert not torch.allclose(plain, ref, atol=1e-3)


def test_dynamic_shift_matches_the_pipeline():
    p = tiny_pipeline(scheduler={"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                                 "base_image_seq_len": 16, "max_image_seq_len": 256})
    p.set_progress_bar_config(disable=True)
    m = wrap_pipeline(p, "dyn")
    p("a", height=128, width=64, num_inference_steps=5, guidance_scale=0.0, output_type="latent")
    assert torch.allclose(p.scheduler.sigmas.double(), m.schedule(5, (128, 64)), atol=1e-6)


# ---------------------------------------------------------------- (c) rotary embedding


def test_embedder_tables_equal_stock(model):
    stock = model.transformer.rope_embedder
    ids = torch.stack([torch.randint(0, n, (300,)) for n in stock.axes_lens], dim=1).to(torch.int32)
    ours = ZImageRope(tuple(model.rope_axes()), StockRope())(ids)
    assert ours.dtype == torch.complex64 and torch.equal(ours, stock(ids))


@pytest.mark.parametrize("hw", [(8, 8), (16, 24)])
def test_stock_rope_is_bit_equal_and_transforms_change_it(model, cond, hw):
    x = _latent(*hw)
    caps = cond.prompt_embeds
    stock = model._call(x, 0.6, caps)
    with model.rope_applied(StockRope(), 0.6):
        assert torch.equal(model._call(x, 0.6, caps), stock)
    for transform in (PositionInterpolation(), NTKRope()):
        with model.rope_applied(transform, 0.6):
            out = model._call(x, 0.6, caps)
        assert torch.equal(out, stock) == (hw == (8, 8))  # identity at the native grid, a change beyond it
    assert model.transformer.rope_embedder.__class__.__name__ == "RopeEmbedder"  # stock back afterwards


def test_positions_beyond_the_stock_tables(model, cond):
    """axes_lens is 32 tokens per side on the tiny model (8× native, as the real 512 of 64): stock fails at
    40 × 40 tokens, hiresflow's embedder serves it."""
    x = _latent(80, 80)
    with pytest.raises(IndexError):
        model._call(x, 0.5, cond.prompt_embeds)
    with model.rope_applied(StockRope(), 0.5):
        out = model._call(x, 0.5, cond.prompt_embeds)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_transforms_see_one_call_for_caption_and_image(model, cond):
    seen = []

    class Spy(StockRope):
        def frequencies(self, axes, call):
            seen.append(call)
            return super().frequencies(axes, call)

    with model.rope_applied(Spy(), 0.25):
        model._call(_latent(16, 24), 0.25, cond.prompt_embeds)
    t = model.text_tokens(cond)
    assert len(seen) == 2 and seen[0] == seen[1]  # the image and the caption tables of one call agree
    assert seen[0] == RopeCall(lengths=(32 + 2, 8, 12), seq_len=t + 8 * 12, sigma=0.25)


def test_proportional_attention_scales_the_tables(model, cond):
    from hiresflow.models.zimage import ZImageProportionalAttentionPatch
    from hiresflow.stage import StepContext

    x = _latent(16, 16)
    ctx = StepContext(0, 0, 1, 0, 0.5, 0.0, x)
    stock = model._call(x, 0.5, cond.prompt_embeds)
    t = model.text_tokens(cond)
    with ZImageProportionalAttentionPatch(model, t + 64).applied(x, ctx):  # L_train = L: m = 1
        assert torch.equal(model._call(x, 0.5, cond.prompt_embeds), stock)
    with ZImageProportionalAttentionPatch(model, t + 16).applied(x, ctx):
        assert not torch.allclose(model._call(x, 0.5, cond.prompt_embeds), stock, atol=1e-4)


def test_caption_copies_sit_at_their_tile_origin():
    cap = torch.zeros(2 * 3 + 26 + 26, 3, dtype=torch.int32)  # stock: padded rows + the quirk's extra rows
    img = torch.tensor([[33, 0, 0], [33, 0, 1], [0, 0, 0]], dtype=torch.int32)
    new_cap, new_img = duplicate_caption_ids(cap, img, 3, (1, 2), (4, 5))
    assert new_cap[:6].tolist() == [[1, 0, 0], [2, 0, 0], [3, 0, 0], [1, 0, 5], [2, 0, 5], [3, 0, 5]]
    assert new_cap[6].tolist() == [4, 0, 5] and new_img.tolist() == [[33, 0, 0], [33, 0, 1], [0, 0, 0]]


def test_one_copy_of_text_duplication_is_the_stock_call(model, cond):
    x = _latent(8, 8)
    dup = model.duplicate_text(cond, 1, 2, (4, 4))
    assert model.text_tokens(dup) == model.text_tokens(cond)
    out = model.velocity(x, 0.5, dup)
    assert out.shape == x.shape and not torch.equal(out, model.velocity(x, 0.5, cond))


# ---------------------------------------------------------------- (d) recipes

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh", "dype", "dype+hiflow", "ultraimage", "anchored")}


@pytest.mark.parametrize("scale", [2, pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("recipe", list(FAST))
def test_recipe_runs(model, recipe, scale):
    plan = build_plan(recipe, model, scale=scale, **FAST[recipe])
    res = run_plan(model, plan, PROMPT, seed=4)
    h, w = plan.target_size
    assert (h, w) == (64 * scale, 64 * scale)
    assert res.image.shape == (1, 3, h, w) and torch.isfinite(res.image).all()


def test_hiflow_and_imax_put_the_toolkit_on_zimage(model):
    names = {type(p).__name__ for p in build_plan("imax", model, scale=2).stages[1].patches}
    assert names == {"TextDuplicationConfig", "ShiftedPatchesConfig", "RopeScalingConfig",
                     "ZImageProportionalAttentionConfig"}
    names = {type(p).__name__ for p in build_plan("dype+hiflow", model, scale=2).stages[1].patches}
    assert names == {"ShiftedPatchesConfig", "RopeExtrapolationConfig", "ZImageProportionalAttentionConfig"}


@pytest.mark.parametrize("recipe, params, match", [
    ("hidiffusion", {}, "U-Net methods"),
    ("hiflow", dict(windowed_attention=0.5), "windowed attention"),
    ("ultraimage", dict(steps=2, hires_steps=2, concentration=True), "attention concentration applies to"),
    ("cfm", dict(steps=2), "another VAE"),
])
def test_what_does_not_apply_fails_with_one_line(model, recipe, params, match):
    with pytest.raises(ValueError, match=match) as err:
        run_plan(model, build_plan(recipe, model, scale=2, **params), PROMPT, seed=0)
    assert "\n" not in str(err.value)
