"""Chroma family (`hiresflow.models.chroma`) on the tiny offline `ChromaPipeline` (`hiresflow.models.tiny_chroma`).

- a saved folder loads offline and gets the Chroma adapter from its pipeline class, native size 1024² as the
  pipeline's default;
- faithfulness: the σ grid is the pipeline's, the text mask is the pipeline's, and `direct` sampling from the same
  initial noise reproduces `ChromaPipeline.__call__`'s output latents (true CFG and no CFG) within 2e-5;
- RoPE: the stock transform is bit-equal to diffusers' `FluxPosEmbed`, PI / NTK change the output;
- every recipe runs at 2× (4× marked slow); windowed attention and the U-Net methods are refused with one line;
- `load_model("random-tiny-chroma")`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiresflow.models.base import LatentGeometry
from hiresflow.models.chroma import ChromaCond, ChromaFlowModel
from hiresflow.models.flux import pack_latents
from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.models.tiny_chroma import NATIVE, tiny_pipeline
from hiresflow.patches.rope_frequencies import NTKRope, PositionInterpolation, RopeAxis, StockRope
from hiresflow.recipes import SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan, stage_seed

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh", "dype", "dype+hiflow", "ultraimage")}
TOL = 2e-5  # float32 on the CPU: the pipeline and the adapter round σ and the Euler step differently


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def model(pipe):
    return wrap_pipeline(pipe, "tiny-chroma", native=NATIVE)


@pytest.fixture(scope="module")
def cond(model):
    return model.encode_prompt("a red house by a lake", "fog")


def test_saved_folder_loads_with_the_chroma_adapter(pipe, tmp_path):
    from hiresflow.models.tiny import make_tokenizer_class_portable, pipeline_state_dict

    pipe.save_pretrained(tmp_path, safe_serialization=True)
    make_tokenizer_class_portable(tmp_path)
    m = load_model(str(tmp_path), device="cpu")
    assert isinstance(m, ChromaFlowModel) and m.family == "chroma" and type(m.pipe).__name__ == "ChromaPipeline"
    assert m.geometry == LatentGeometry(channels=16, vae_scale=8, patch=2, native=(1024, 1024))
    assert m.guidance_kind == "cfg" and (m.default_guidance, m.default_steps) == (5.0, 35)
    a, b = pipeline_state_dict(pipe), pipeline_state_dict(m.pipe)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_random_tiny_chroma_by_name():
    m = load_model("random-tiny-chroma", device="cpu")
    assert isinstance(m, ChromaFlowModel) and m.geometry.native == (NATIVE, NATIVE)


def test_other_families_are_not_taken_for_chroma(tiny_flux):
    assert not ChromaFlowModel.handles(tiny_flux)
    assert type(wrap_pipeline(tiny_flux, "f")).__name__ == "FluxFlowModel"


@pytest.mark.parametrize("size", [(64, 64), (128, 192), (1024, 1024)])
def test_sigma_grid_is_the_pipelines(model, pipe, size):
    """ChromaPipeline: sigmas = linspace(1, 1/N, N), μ = calculate_shift(packed tokens, scheduler config)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.chroma.pipeline_chroma import calculate_shift

    n = 7
    sc = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    c = sc.config
    mu = calculate_shift((size[0] // 16) * (size[1] // 16), c.base_image_seq_len, c.max_image_seq_len, c.base_shift,
                         c.max_shift)
    sc.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    assert torch.allclose(model.schedule(n, size).float(), sc.sigmas, atol=1e-6)


def test_text_mask_is_the_pipelines(model, pipe, cond):
    """All real tokens and the first padding token unmasked, in the text encoder's dtype; the negative prompt
    likewise; per call the mask runs on over the image tokens as `_prepare_attention_mask` builds it."""
    _, _, mask, _, _, nmask = pipe.encode_prompt("a red house by a lake", negative_prompt="fog",
                                                 max_sequence_length=model.max_sequence_length)
    assert torch.equal(cond.text_mask, mask) and torch.equal(cond.negative.text_mask, nmask)
    n_tokens = len(pipe.tokenizer("a red house by a lake")["input_ids"])
    assert int(cond.text_mask.sum()) == n_tokens + 1 and cond.text_mask.dtype == pipe.text_encoder.dtype
    full = model.attention_mask(cond, 2, 16)
    assert full.shape == (2, 512 + 16) and full.dtype == cond.text_mask.dtype
    assert torch.equal(full, pipe._prepare_attention_mask(2, 16, full.dtype, mask.expand(2, -1)))


@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_direct_sampling_reproduces_the_pipeline(model, pipe, guidance):
    """Same initial noise, same grid: our `direct` plan against `ChromaPipeline.__call__`'s output latents
    (true CFG with the empty negative prompt at w = 3; the prompt alone at w = 1, as the pipeline)."""
    steps, seed, prompt = 4, 3, "a red house"
    res = run_plan(model, build_plan("direct", model, scale=1, steps=steps, guidance=guidance), prompt, seed=seed)
    noise = model.noise((1, 16, 8, 8), torch.Generator().manual_seed(stage_seed(seed, 0)))
    out = pipe(prompt, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
               latents=pack_latents(noise), output_type="latent",
               max_sequence_length=model.max_sequence_length).images
    ours = pack_latents(res.stages[0].latent)
    assert out.abs().max() > 1.0
    assert (out - ours).abs().max() < TOL


def test_guidance_above_one_only(model, cond):
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    alone = model._call(x, 0.5, cond)
    assert torch.equal(model.velocity(x, 0.5, cond, guidance=1.0), alone)
    assert torch.equal(model.velocity(x, 0.5, cond, guidance=0.5), alone)
    neg = model._call(x, 0.5, cond.negative)
    assert torch.allclose(model.velocity(x, 0.5, cond, guidance=4.0), neg + 4.0 * (alone - neg), atol=1e-6)


def test_rope_axes_are_flux_ids(model):
    assert model.rope_axes() == [RopeAxis(4, 10000.0, None), RopeAxis(6, 10000.0, 4), RopeAxis(6, 10000.0, 4)]


def test_stock_rope_is_bit_equal_and_transforms_change_it(model, cond):
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(1))  # 8×8 tokens: 2× the native grid
    stock = model._call(x, 0.6, cond)
    embedder = model.transformer.pos_embed
    with model.rope_applied(StockRope(), 0.6):
        assert model.transformer.pos_embed is not embedder
        same = model._call(x, 0.6, cond)
    assert model.transformer.pos_embed is embedder
    assert torch.equal(same, stock)
    for transform in (PositionInterpolation(), NTKRope()):
        with model.rope_applied(transform, 0.6):
            changed = model._call(x, 0.6, cond)
        assert not torch.allclose(changed, stock, atol=1e-4)
    assert torch.equal(model._call(x, 0.6, cond), stock)


def test_text_duplication_repeats_the_mask_with_grid_ids(model, cond):
    dup = model.duplicate_text(cond, 2, 2, (4, 4))
    assert isinstance(dup, ChromaCond) and dup.prompt_embeds.shape[1] == 4 * 512
    assert torch.equal(dup.text_mask, cond.text_mask.repeat(1, 4))
    assert dup.text_ids[512:1024, 2].eq(4).all() and dup.text_ids[1024:1536, 1].eq(4).all()
    assert dup.negative.text_mask.shape == (1, 4 * 512)
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(model.velocity(x, 0.5, dup, guidance=3.0)).all()


def test_cost_model(model):
    small, big = model.call_flops((8, 8)), model.call_flops((32, 32))
    assert 0 < small < big and 0 < model.call_bytes((8, 8)) < model.call_bytes((32, 32))


@pytest.mark.parametrize("size", ["2x", pytest.param("4x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("recipe", list(FAST))
def test_recipe_runs(model, recipe, size):
    scale = int(size[0])
    plan = build_plan(recipe, model, scale=scale, **FAST[recipe])
    res = run_plan(model, plan, "three pine trees by a lake at night", seed=4)
    assert res.image.shape == (1, 3, NATIVE * scale, NATIVE * scale)
    assert torch.isfinite(res.image).all()


@pytest.mark.parametrize("recipe, kw, match", [
    ("hiflow", dict(windowed_attention=0.5), "windowed attention is not available for chroma"),
    ("imax", dict(windowed_attention=0.5), "windowed attention is not available for chroma"),
    ("hidiffusion", {}, "U-Net methods"),
])
def test_refusals_are_one_line(model, recipe, kw, match):
    with pytest.raises(ValueError, match=match) as err:
        build_plan(recipe, model, scale=2, **kw)
    assert "\n" not in str(err.value)


def test_windowed_attention_patch_is_not_a_chroma_patch(model):
    from hiresflow.patches.windowed_attention import WindowedAttentionConfig

    with pytest.raises(ValueError, match="switch it off") as err:
        model.check_patch(WindowedAttentionConfig())
    assert "\n" not in str(err.value)
