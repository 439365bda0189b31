"""The U-Net patches on a LoRA-loaded pipeline (peft) and on a ControlNet pipeline, both tiny and built offline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hiresflow.models.loading import load_pipeline, wrap_pipeline
from hiresflow.patches.unet_tools import conv_geometry
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan

FAST = {"hidiffusion": dict(steps=3, t1=1.0, t2=1.0), "freescale": dict(steps=4, restart=0.0)}


def _fresh_tiny_sd():
    pipe, card = load_pipeline("tiny-sd")
    pipe.set_progress_bar_config(disable=True)
    return pipe, card


@pytest.fixture(scope="module")
def lora_model():
    peft = pytest.importorskip("peft", reason="peft (LoRA backend of diffusers) is not installed")
    pipe, card = _fresh_tiny_sd()
    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                          target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv"])
    pipe.unet.add_adapter(cfg)
    return wrap_pipeline(pipe, "tiny-sd-lora", card=card)


def test_lora_conv_runs_with_the_patched_geometry(lora_model):
    layer = lora_model.unet.down_blocks[0].downsamplers[0].conv
    assert hasattr(layer, "base_layer")  # a peft LoRA layer around the stride-2 conv
    base = layer.get_base_layer()
    w = base.weight + layer.get_delta_weight("default")
    x = torch.randn(1, base.in_channels, 11, 14)
    with conv_geometry([layer], stride=(4, 4), padding=(2, 2), dilation=(2, 2)):
        y = layer(x)
    assert torch.allclose(y, F.conv2d(x, w, base.bias, stride=4, padding=2, dilation=2), atol=1e-5)
    assert base.stride == (2, 2) and layer.lora_A["default"].stride == (2, 2)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(FAST))
def test_lora_pipeline_runs_every_u_net_method_and_is_restored(lora_model, recipe):
    model = lora_model
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    cond = model.encode_prompt("a lake")
    before = model.velocity(x, 0.5, cond)
    plan = build_plan(recipe, model, scale=2, **FAST[recipe])
    res = run_plan(model, plan, "three pine trees by a lake", seed=2)
    assert torch.isfinite(res.image).all()
    assert torch.equal(model.velocity(x, 0.5, cond), before)  # LoRA still on, patches off


@pytest.fixture(scope="module")
def control_model():
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    pipe, card = _fresh_tiny_sd()
    torch.manual_seed(0)
    # tiny-sd's VAE is ×4: two stride-2 convs in the conditioning embedding
    cn = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32, 64))
    with torch.no_grad():  # the zero convs start at zero; give them weights so the control has an effect
        for m in list(cn.controlnet_down_blocks) + [cn.controlnet_mid_block]:
            m.weight.normal_(0, 0.05)
    cpipe = StableDiffusionControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet, controlnet=cn.eval(),
        scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cpipe.set_progress_bar_config(disable=True)
    model = wrap_pipeline(cpipe, "tiny-sd-controlnet", card=card)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    image = torch.stack([xx, yy, (xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.05]).float()[None]
    return model, image


def test_control_residual_hooks_equal_diffusers_addition(control_model):
    from hiresflow.models.controlnet import residuals_added

    model, image = control_model
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    t = torch.full((2,), 500.0)
    text = torch.cat([model.encode_prompt("a lake").prompt_embeds] * 2)
    img = F.interpolate(image, size=(64, 64)).expand(2, -1, -1, -1)
    down, mid = model.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=img, return_dict=False)
    ref = model.unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid, return_dict=False)[0]
    with residuals_added(model.unet, tuple(down), mid):
        ours = model.unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
    assert torch.equal(ours, ref)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(FAST))
def test_controlnet_pipeline_runs_every_u_net_method(control_model, recipe):
    model, image = control_model
    plan = build_plan(recipe, model, scale=2, **FAST[recipe])
    model.set_control(None)
    plain = run_plan(model, plan, "a yellow sun", seed=3).image
    model.set_control(image, scale=1.0)
    try:
        controlled = run_plan(model, plan, "a yellow sun", seed=3).image
    finally:
        model.set_control(None)
    assert torch.isfinite(controlled).all() and not torch.equal(plain, controlled)
