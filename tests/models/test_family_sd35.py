"""SD3.5 on the SD3 adapter (`hiresflow.models.sd3`), with tiny SD3.5-shaped pipelines (`hiresflow.models.tiny_sd35`).

- medium- (QK RMS-norm, dual attention) and large-shaped (QK RMS-norm) folders load offline as SD3;
- faithfulness: the σ grid is `StableDiffusion3Pipeline`'s (linspace to the scheduler's σ_min, shifted) and `direct`
  sampling reproduces `__call__`'s output latents within 2e-5, with and without skip-layer guidance;
- skip-layer guidance: off by default, the pipeline's step window, one-line errors for bad settings;
- every SD3 recipe runs at 2× (4× slow); DyPE, static YaRN / NTK / PI and UltraImage are refused with one line;
- `load_model("random-tiny-sd35")`.
"""

from __future__ import annotations

import pytest
import torch

from hiresflow.models.loading import load_model, wrap_pipeline
from hiresflow.models.sd3 import SD3FlowModel, SkipLayerGuidance
from hiresflow.models.tiny_sd35 import NATIVE, tiny_pipeline
from hiresflow.recipes import SMOKE_STEPS, build_plan
from hiresflow.runner import run_plan, stage_seed

FAST = {name: SMOKE_STEPS[name] for name in ("direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh")}
TOL = 2e-5
SLG = dict(skip_guidance_layers=[1], skip_layer_guidance_scale=2.8, skip_layer_guidance_start=0.01,
           skip_layer_guidance_stop=0.6)


@pytest.fixture(scope="module")
def pipes():
    out = {v: tiny_pipeline(variant=v) for v in ("medium", "large")}
    for p in out.values():
        p.set_progress_bar_config(disable=True)
    return out


@pytest.fixture(scope="module")
def medium(pipes):
    return wrap_pipeline(pipes["medium"], "tiny-sd35-medium")


def test_sd35_shapes(pipes):
    m, lg = pipes["medium"].transformer, pipes["large"].transformer
    assert m.config.qk_norm == lg.config.qk_norm == "rms_norm"
    assert [b.attn2 is not None for b in m.transformer_blocks] == [True, False]
    assert all(b.attn2 is None for b in lg.transformer_blocks)
    assert m.transformer_blocks[0].attn.norm_q is not None


@pytest.mark.parametrize("variant", ["medium", "large"])
def test_saved_folder_loads_as_sd3(pipes, variant, tmp_path):
    from hiresflow.models.tiny import make_tokenizer_class_portable

    pipes[variant].save_pretrained(tmp_path, safe_serialization=True)
    make_tokenizer_class_portable(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    assert isinstance(model, SD3FlowModel) and model.family == "sd3"
    assert model.geometry.native == (NATIVE, NATIVE) and model.skip_layer_guidance is None
    cfg = model.transformer.config
    assert cfg.qk_norm == "rms_norm" and tuple(cfg.dual_attention_layers) == ((0,) if variant == "medium" else ())


def test_random_tiny_sd35_by_name():
    model = load_model("random-tiny-sd35", device="cpu")
    assert isinstance(model, SD3FlowModel) and model.transformer.config.dual_attention_layers


@pytest.mark.parametrize("steps", [1, 6, 28])
def test_sigma_grid_is_the_pipelines(medium, pipes, steps):
    from diffusers import FlowMatchEulerDiscreteScheduler

    sc = FlowMatchEulerDiscreteScheduler.from_config(pipes["medium"].scheduler.config)
    sc.set_timesteps(steps)
    assert torch.allclose(medium.schedule(steps, (128, 128)).float(), sc.sigmas, atol=1e-6)


@pytest.mark.parametrize("variant, slg", [("medium", False), ("medium", True), ("large", False)])
def test_direct_sampling_reproduces_the_pipeline(pipes, variant, slg):
    pipe = pipes[variant]
    model = wrap_pipeline(pipe, f"tiny-sd35-{variant}")
    if slg:
        model.skip_layer_guidance = SkipLayerGuidance((1,), scale=2.8, start=0.01, stop=0.6)
    steps, seed, prompt = 6, 3, "a red house"
    res = run_plan(model, build_plan("direct", model, scale=1, steps=steps, guidance=4.0), prompt, seed=seed)
    noise = model.noise((1, 16, 16, 16), torch.Generator().manual_seed(stage_seed(seed, 0)))
    out = pipe(prompt, height=128, width=128, num_inference_steps=steps, guidance_scale=4.0, latents=noise,
               output_type="latent", **(SLG if slg else {})).images
    assert out.abs().max() > 1.0
    assert (out - res.stages[0].latent).abs().max() < TOL
    if slg:  # the option acts: without it the result is another one
        model.skip_layer_guidance = None
        plain = run_plan(model, build_plan("direct", model, scale=1, steps=steps, guidance=4.0), prompt, seed=seed)
        assert (plain.stages[0].latent - res.stages[0].latent).abs().max() > 1e-3


def test_skip_layer_guidance_window_and_guards(medium):
    slg = SkipLayerGuidance((1,))
    assert (slg.scale, slg.start, slg.stop) == (2.8, 0.01, 0.2)  # the pipeline's defaults
    assert [i for i in range(28) if slg.active(i, 28)] == [1, 2, 3, 4, 5]  # 0.28 < i < 5.6
    for bad in (dict(layers=()), dict(layers=(-1,)), dict(layers=(1.5,)), dict(layers=(1,), scale=float("nan"))):
        with pytest.raises(ValueError, match="skip-layer guidance") as err:
            SkipLayerGuidance(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="out of range") as err:
        medium.skip_layer_guidance = SkipLayerGuidance((2,))  # the tiny transformer has blocks 0 and 1
    assert "\n" not in str(err.value) and medium.skip_layer_guidance is None


def test_skip_layer_guidance_needs_cfg_and_a_step(medium):
    """No skip-layer call at w <= 1 (the pipeline's `do_classifier_free_guidance`) or outside a sampling step."""
    cond = medium.encode_prompt("a lake")
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = [medium.velocity(x, 0.5, cond, guidance=g) for g in (1.0, 4.0)]
    medium.skip_layer_guidance = SkipLayerGuidance((1,), start=0.0, stop=1.0)
    try:
        assert torch.equal(medium.velocity(x, 0.5, cond, guidance=1.0), plain[0])
        assert torch.equal(medium.velocity(x, 0.5, cond, guidance=4.0), plain[1])
    finally:
        medium.skip_layer_guidance = None


@pytest.mark.parametrize("size", ["2x", pytest.param("4x", marks=pytest.mark.slow)])
@pytest.mark.parametrize("recipe", list(FAST))
def test_recipe_runs(medium, recipe, size):
    scale = int(size[0])
    plan = build_plan(recipe, medium, scale=scale, **FAST[recipe])
    res = run_plan(medium, plan, "three pine trees by a lake at night", seed=4)
    assert res.image.shape == (1, 3, NATIVE * scale, NATIVE * scale)
    assert torch.isfinite(res.image).all()


@pytest.mark.parametrize("recipe, kw", [
    ("dype", {}), ("dype", dict(method="ntk")), ("dype", dict(method="yarn", dynamic=False)),
    ("dype", dict(method="pi", dynamic=False)), ("dype+hiflow", {}), ("hiflow", dict(dype=True)),
    ("imax", dict(dype=True)), ("ultraimage", {}),
])
def test_rope_methods_are_refused_in_one_line(medium, recipe, kw):
    with pytest.raises(ValueError, match="without a rotary position embedding") as err:
        build_plan(recipe, medium, scale=2, **kw)
    assert "\n" not in str(err.value)
