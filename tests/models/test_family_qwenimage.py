"""Qwen-Image (QwenImagePipeline) on hiresflow: loading, faithfulness to the diffusers pipeline, the RoPE
embedder (stock bit-equality, centred positions, transforms), every recipe at 2× (4× slow) and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.models.qwenimage import QwenImageFlowModel, QwenRotaryEmbed
from hiresflow.models.tiny_qwenimage import NATIVE, tiny_pipeline
from hiresflow.patches.rope_frequencies import (AxisFrequencies, FrequencyTransform, NTKRope, PositionInterpolation,
                                                StockRope, YaRNRope)
from hiresflow.recipes import SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan

PROMPT = "a red house by the lake at sunset"


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def model(pipe):
    return wrap_pipeline(pipe, "random-tiny-qwenimage", native=NATIVE)


@pytest.fixture(scope="module")
def cond(model):
    return model.encode_prompt(PROMPT, " ")


# ---------------------------------------------------------------- (a), (e) loading


def test_saved_folder_loads_offline_as_qwenimage(pipe, tmp_path):
    from hiresflow.models.tiny import make_tokenizer_class_portable

    pipe.save_pretrained(tmp_path, safe_serialization=True)
    make_tokenizer_class_portable(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "QwenImagePipeline"
    (tmp_path / "hiresflow.json").write_text(json.dumps({"native_size": NATIVE}))
    model = load_model(str(tmp_path), device="cpu")
    assert isinstance(model, QwenImageFlowModel) and model.family == "qwenimage"
    assert model.geometry.native == (NATIVE, NATIVE) and model.geometry.multiple == 16
    prefix = model.pipe.prompt_template_encode.split("{}")[0]  # the reloaded tokenizer still drops exactly 34
    assert len(model.pipe.tokenizer(prefix).input_ids) == model.pipe.prompt_template_encode_start_idx == 34
    a, b = model.encode_prompt(PROMPT), QwenImageFlowModel(pipe).encode_prompt(PROMPT)
    assert torch.equal(a.prompt_embeds, b.prompt_embeds)


def test_random_tiny_name_and_real_native(pipe):
    model = load_model("random-tiny-qwenimage", device="cpu")
    assert model.family == "qwenimage" and model.geometry.native == (NATIVE, NATIVE)
    real = QwenImageFlowModel(pipe)  # no native override: Qwen-Image's published 1328²
    assert real.geometry.native == (1328, 1328)
    assert [(a.dim, a.native_len) for a in real.rope_axes()] == [(4, None), (14, 83), (14, 83)]
    assert "QwenImagePipeline" in QwenImageFlowModel.pipeline_classes


def test_template_prefix_is_the_drop_index(pipe):
    cond = QwenImageFlowModel(pipe).encode_prompt("three pine trees", "")
    # 3 words + "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n" remain after the 34 dropped tokens
    assert cond.prompt_embeds.shape[1] == 3 + 5 and cond.mask is None
    assert cond.negative.prompt_embeds.shape[1] == 5


def test_costs(model):
    small, big = model.call_flops((10, 10)), model.call_flops((40, 40))
    assert 0 < small < big and model.call_bytes((40, 40)) > model.call_bytes((10, 10)) > 0
    assert model.codec.decode_bytes(320, 320) > 0


# ---------------------------------------------------------------- (b) faithfulness to QwenImagePipeline


def test_schedule_is_the_pipelines(pipe, model):
    from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift

    sc = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    for steps, (h, w) in ((3, (80, 80)), (28, (160, 320)), (50, (1328, 1328)), (30, (5312, 5312))):
        mu = calculate_shift((h // 16) * (w // 16), sc.config.base_image_seq_len, sc.config.max_image_seq_len,
                             sc.config.base_shift, sc.config.max_shift)
        sc.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        ours = model.schedule(steps, (h, w))
        assert ours.shape == sc.sigmas.shape and float(ours[-2]) == pytest.approx(0.02, abs=1e-12)
        assert (ours - sc.sigmas.double()).abs().max() < 2e-6  # the scheduler computes in float32
    assert torch.equal(model.schedule(1, (80, 80)), torch.tensor([1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("guidance", [4.0, 1.0])
@pytest.mark.parametrize("hw", [(80, 80), (80, 112)])
def test_direct_sampling_matches_the_pipeline(pipe, model, cond, hw, guidance):
    """Same initial noise, the pipeline's own σ grid, true CFG (4, renormalised) or none (1) with the negative
    prompt " ": our Euler sampling with `model.velocity` reproduces `QwenImagePipeline.__call__(output_type=
    "latent")` bit for bit on the CPU."""
    from hiresflow.flow.sampler import sample
    from hiresflow.models.flux import pack_latents, unpack_latents

    h, w = hw
    noise = torch.randn((1, 16, h // 8, w // 8), generator=torch.Generator().manual_seed(3))
    out = pipe(PROMPT, negative_prompt=" ", true_cfg_scale=guidance, height=h, width=w, num_inference_steps=4,
               latents=pack_latents(noise), output_type="latent").images
    ref = unpack_latents(out.float(), h // 8, w // 8)
    sig = pipe.scheduler.sigmas.double()
    assert (sig - model.schedule(4, hw)).abs().max() < 2e-6  # and ours is the same grid up to float32 rounding
    ours = sample(lambda x, ctx: model.velocity(x, ctx.sigma, cond, guidance=guidance), noise, sig, record=False).x
    assert torch.equal(ours, ref)


def test_codec_is_the_pipelines(pipe, model):
    from diffusers import QwenImageImg2ImgPipeline

    img = torch.rand((1, 3, 80, 112), generator=torch.Generator().manual_seed(0))
    i2i = QwenImageImg2ImgPipeline(**pipe.components)
    ref = i2i._encode_vae_image((img * 2 - 1)[:, :, None], torch.Generator().manual_seed(5))[:, :, 0]
    ours = model.encode(img, torch.Generator().manual_seed(5), sample=True)
    assert torch.allclose(ours, ref, atol=1e-6)
    from hiresflow.models.flux import pack_latents

    z = model.encode(img)  # posterior mode; decoded as `QwenImagePipeline.__call__` decodes its final latents:
    dec = pipe._unpack_latents(pack_latents(z), 80, 112, pipe.vae_scale_factor)
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        want = pipe.vae.decode(dec / std + mean, return_dict=False)[0][:, :, 0]
    want = pipe.image_processor.postprocess(want, output_type="pt")
    assert torch.allclose(model.decode(z), want, atol=1e-6)


def test_guidance_one_is_a_single_call(model, cond):
    from hiresflow.models.flux import pack_latents, unpack_latents

    x = torch.randn((1, 16, 10, 10), generator=torch.Generator().manual_seed(0))
    plain = model.velocity(x, 0.5, cond, guidance=1.0)
    assert torch.equal(plain, unpack_latents(model._call(x, 0.5, cond).float(), 10, 10))
    guided = model.velocity(x, 0.5, cond, guidance=4.0)
    # the renormalisation keeps each packed token's norm at the conditional prediction's norm

    assert torch.allclose(pack_latents(guided).norm(dim=-1), pack_latents(plain).norm(dim=-1), rtol=1e-5)
    assert not torch.allclose(guided, plain)


# ---------------------------------------------------------------- (c) the RoPE embedder


def test_stock_rope_is_bit_equal(model, cond):
    x = torch.randn((1, 16, 26, 14), generator=torch.Generator().manual_seed(0))  # 13 × 7 tokens: odd grids
    stock = model._call(x, 0.6, cond)
    with model.rope_applied(StockRope(), 0.6):
        same = model._call(x, 0.6, cond)
    assert torch.equal(stock, same)
    pe = model.transformer.pos_embed
    for shape, text in (((1, 83, 83), 200), ((1, 6, 9), 7)):
        a = pe([[shape]], device=torch.device("cpu"), max_txt_seq_len=text)
        b = QwenRotaryEmbed(pe, model.rope_axes(), StockRope())([[shape]], device=torch.device("cpu"),
                                                                max_txt_seq_len=text)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert model.transformer.pos_embed is pe  # the stock embedder is back


def test_transforms_act_beyond_the_native_grid(model, cond):
    native = torch.randn((1, 16, 10, 10), generator=torch.Generator().manual_seed(1))
    big = torch.randn((1, 16, 20, 20), generator=torch.Generator().manual_seed(1))
    for transform in (PositionInterpolation(), NTKRope(), YaRNRope()):
        with model.rope_applied(transform, 0.5):
            at_native, at_2x = model._call(native, 0.5, cond), model._call(big, 0.5, cond)
        assert torch.equal(at_native, model._call(native, 0.5, cond)), transform.name  # n ≤ L: stock
        assert (at_2x - model._call(big, 0.5, cond)).abs().max() > 1e-4, transform.name


class _Angles(FrequencyTransform):
    """ω = 1 on every axis: the tables' angles are the positions themselves; records the call."""

    name = "angles"

    def axis(self, axis, n, call):
        self.call = call
        return AxisFrequencies(torch.ones(axis.dim // 2, dtype=torch.float64))


def test_positions_are_centred_and_text_follows(model):
    t = _Angles()
    embed = QwenRotaryEmbed(model.transformer.pos_embed, model.rope_axes(), t)
    vid, txt = embed([[(1, 5, 4)]], device=torch.device("cpu"), max_txt_seq_len=3)
    angles = vid.angle()  # [20, 16]: columns 0-1 frame, 2-8 rows, 9-15 columns
    grid = angles.view(5, 4, -1)
    assert torch.equal(grid[:, 0, 2].round(), torch.tensor([-3.0, -2, -1, 0, 1]))  # −⌈5/2⌉ … ⌊5/2⌋ − 1
    assert torch.equal(grid[0, :, 9].round(), torch.tensor([-2.0, -1, 0, 1]))
    assert torch.equal(grid[..., 0], torch.zeros(5, 4))
    text_positions = torch.tensor([2.0, 3.0, 4.0])  # max(⌊5/2⌋, ⌊4/2⌋) + j on every axis
    for column in (0, 2, 9):
        assert torch.allclose(txt[:, column], torch.polar(torch.ones(3), text_positions))
    assert t.call.lengths == (1, 5, 4) and t.call.seq_len == 23


def test_mscale_multiplies_the_tables(model):
    embed = QwenRotaryEmbed(model.transformer.pos_embed, model.rope_axes(), YaRNRope())
    vid, txt = embed([[(1, 20, 20)]], device=torch.device("cpu"), max_txt_seq_len=4)
    m = 1 + 0.1 * np.log(20 / (NATIVE // 16))  # YaRN's mscale for 20 rows over the 5-row native grid
    assert torch.allclose(vid.abs()[:, :2], torch.ones(400, 2))  # the frame axis never extrapolates
    assert torch.allclose(vid.abs()[:, 2:], torch.full((400, 14), m, dtype=torch.float32))
    assert torch.allclose(txt.abs()[:, 2:], torch.full((4, 14), m, dtype=torch.float32))


def test_proportional_attention_scales_the_tables(model, cond):
    from hiresflow.models.qwenimage import QwenProportionalAttentionPatch

    text = model.text_tokens(cond)
    patch = QwenProportionalAttentionPatch(model.transformer, text + 25)  # 5 × 5 native tokens
    native = torch.randn((1, 16, 10, 10), generator=torch.Generator().manual_seed(2))
    big = torch.randn((1, 16, 20, 20), generator=torch.Generator().manual_seed(2))
    with patch.applied(big, None):
        at_native, at_2x = model._call(native, 0.5, cond), model._call(big, 0.5, cond)
        vid, txt = model.transformer.pos_embed([[(1, 10, 10)]], device=torch.device("cpu"), max_txt_seq_len=text)
    assert torch.equal(at_native, model._call(native, 0.5, cond))  # L = L_train: m = 1
    assert (at_2x - model._call(big, 0.5, cond)).abs().max() > 1e-4
    r = np.sqrt(np.sqrt(np.log(100 + text) / np.log(25 + text)))  # √m on q and k: q·k × m
    assert torch.allclose(vid.abs(), torch.full(vid.shape, r, dtype=torch.float32))
    assert torch.allclose(txt.abs(), torch.full(txt.shape, r, dtype=torch.float32))
    assert model.transformer.pos_embed is model._stock_rope


def test_guidance_distilled_transformers_are_refused():
    with pytest.raises(ValueError) as err:
        QwenImageFlowModel(tiny_pipeline(transformer={"guidance_embeds": True}))
    assert "guidance_embeds=True" in _one_line(err)


# ---------------------------------------------------------------- (d) recipes

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh", "dype", "dype+hiflow", "ultraimage")}


@pytest.mark.parametrize("scale", [2, pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("recipe", list(FAST))
def test_recipe_runs(model, recipe, scale):
    plan = build_plan(recipe, model, scale=scale, **FAST[recipe])
    res = run_plan(model, plan, PROMPT, seed=4, negative_prompt=" ")
    h, w = plan.target_size
    assert (h, w) == (NATIVE * scale, NATIVE * scale)
    assert res.image.shape == (1, 3, h, w) and torch.isfinite(res.image).all()
    assert model.transformer.pos_embed is model._stock_rope  # every patch put the stock embedder back


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_refusals_are_one_line(model):
    assert build_plan("imax", model, scale=2)  # I-Max's default leaves text duplication off on Qwen-Image
    with pytest.raises(ValueError) as err:  # asked for explicitly: refused
        build_plan("imax", model, scale=2, text_duplication=True)
    assert "text_duplication=False" in _one_line(err)
    with pytest.raises(ValueError) as err:
        build_plan("hiflow", model, scale=2, windowed_attention=0.5)
    assert "windowed_attention=None" in _one_line(err)
    with pytest.raises(ValueError) as err:  # an odd stride asked for explicitly (the default rounds 83 to 82)
        run_plan(model, build_plan("demofusion", model, scale=2, steps=2, view_stride=5), PROMPT)
    assert "multiples of the patch size 2" in _one_line(err)
    with pytest.raises(ValueError) as err:  # attention concentration replaces FLUX attention processors
        run_plan(model, build_plan("ultraimage", model, scale=2, steps=2, hires_steps=2, concentration=True), PROMPT)
    assert "qwenimage" in _one_line(err) and "switch it off" in str(err.value)
    assert model.transformer.pos_embed is model._stock_rope
