"""RAU-Net in the U-Net Patch node against the library's RAU-Net: the embedded tiny-sd as a diffusers U-Net with
`hiresflow.patches.rau_net.RAUNetPatch` and as ComfyUI's `UNetModel` (same weights, converted) with the patch's
input/output block patches and model wrapper give the same output at a step where each part is on, at a latent
size that is not a multiple of the U-Net's depth; and the patched output differs from the plain one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

N_STEPS = 10
T1, T2 = 0.5, 0.3  # sd15 layout: conv ×4 while step < 5, pool/bicubic while step < 3


@pytest.fixture(scope="module")
def models(comfy):
    from hiresflow.comfy.loader import load_embedded
    from hiresflow.models.loading import load_pipeline

    patcher, _, _, _ = load_embedded("tiny-sd")
    pipe, _ = load_pipeline("tiny-sd")
    return patcher, pipe.unet.float().eval()


def comfy_forward(patched, x, t, context, step):
    """One U-Net call as ComfyUI's sampler makes it: the model wrapper around apply_model, the step's σ among
    `sample_sigmas` (only its position matters here), the patches in transformer_options."""
    unet = patched.model.diffusion_model
    sigmas = torch.linspace(1.0, 0.0, N_STEPS + 1)
    options = {**patched.model_options.get("transformer_options", {}), "sample_sigmas": sigmas,
               "sigmas": sigmas[step:step + 1]}

    def apply_model(inp, timestep, c_crossattn, transformer_options):
        return unet(inp, timesteps=t, context=c_crossattn, transformer_options=transformer_options)

    args = {"input": x, "timestep": sigmas[step:step + 1], "c": {"c_crossattn": context,
                                                                 "transformer_options": options},
            "cond_or_uncond": [0]}
    wrapper = patched.model_options.get("model_function_wrapper")
    return wrapper(apply_model, args) if wrapper else apply_model(**{"inp": x, "timestep": None, **args["c"]})


def test_rau_roles_on_tiny_sd(models):
    from hiresflow.comfy.unet import rau_roles, unet_levels

    patcher, _ = models
    unet = patcher.model.diffusion_model
    pairs, downs, attention = unet_levels(unet)
    assert pairs == [[1], [3], [5]] and downs == [2, 4, None]  # tiny-sd: three levels, one layer per block
    assert attention == [True, True, False]
    roles = rau_roles(unet)
    assert roles.layout == "sd15"
    assert roles.conv_down is unet.input_blocks[2][0].op  # level 0's downsampler (diffusers down_blocks.0)
    assert roles.pool_block == 3  # level 1's first pair (down_blocks.1.attentions.0, as the library's role map)
    assert roles.restore_block == 3  # restored before output block 3 = after up_blocks.1.attentions.0 (block 2)


@pytest.mark.parametrize("step,parts", [(0, "conv+pool"), (4, "conv"), (7, "off")])
def test_rau_net_matches_the_library(models, step, parts):
    from hiresflow.comfy.unet import patch_unet
    from hiresflow.models.unet_roles import unet_roles
    from hiresflow.patches.rau_net import RAUNetPatch

    patcher, unet = models
    g = torch.Generator().manual_seed(step)
    x = torch.randn(1, 4, 36, 28, generator=g)  # 36 → 9 (conv ×4) → 5 (pool, ceil) → 3 → 2: odd sizes throughout
    context = torch.randn(1, 7, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([700.0])

    lib_patch = RAUNetPatch(unet_roles(unet), T1, T2, aggressive=False, turbo=False)
    ctx = SimpleNamespace(step=step, n_steps=N_STEPS)
    assert lib_patch.parts(ctx) == ("conv" in parts, "pool" in parts)
    with torch.no_grad():
        with lib_patch.applied(x, ctx):
            lib = unet(x, t, encoder_hidden_states=context).sample
        plain = unet(x, t, encoder_hidden_states=context).sample
        patched = patch_unet(patcher, dilation=1, dilate_until=0.0, msw_msa=False, rau_net=True, rau_t1=T1,
                             rau_t2=T2)
        ours = comfy_forward(patched, x, t, context, step)
        unpatched = comfy_forward(patcher, x, t, context, step)
    assert ours.shape == lib.shape == x.shape
    rel = float((ours - lib).norm() / lib.norm())
    print(f"RAU-Net ({parts}) ComfyUI vs library: relative L2 {rel:.1e}")
    assert rel < 1e-4, f"ComfyUI vs library RAU-Net at step {step}: relative L2 {rel:.2e}"
    assert float((unpatched - plain).norm() / plain.norm()) < 1e-4  # the two U-Nets agree unpatched
    changed = float((ours - unpatched).norm() / unpatched.norm())
    if parts == "off":
        assert changed < 1e-6
    else:
        assert changed > 1e-2, f"RAU-Net ({parts}) changed the output by only {changed:.1e}"


def test_rau_net_runs_in_a_ksampler_workflow_and_refuses_bad_ratios(comfy):
    graph = {
        "1": {"class_type": "HiresflowEmbeddedLoader", "inputs": {"model_name": "tiny-sd"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red sun over snowy mountains"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "HiresflowUNetPatch", "inputs": {"model": ["1", 0], "dilation": 1, "dilate_until": 0.0,
                                                             "msw_msa": True, "rau_net": True, "rau_t1": -1.0,
                                                             "rau_t2": -1.0}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 264, "height": 200, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "seed": 0,
            "steps": 3, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "rau-net"}},
    }
    out = comfy.run(graph)
    assert out.valid and out.success, out.error
    graph["4"]["inputs"]["rau_t1"] = 1.5
    out = comfy.run(graph)
    assert not out.valid or not out.success  # ComfyUI's range check (max 1) or the patch's one-line error


def sdxl_like_unet():
    """A small ComfyUI UNetModel in SDXL's layout (no attention at level 0; ComfyUI's SDXL depths pattern), random
    weights."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(image_size=32, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=2, dropout=0,
                     channel_mult=(1, 2, 4), num_heads=2, num_head_channels=-1, use_spatial_transformer=True,
                     use_linear_in_transformer=True, transformer_depth=[0, 0, 1, 1, 1, 1],
                     transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], transformer_depth_middle=1,
                     context_dim=32, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return unet.eval()


def test_rau_net_and_msw_msa_roles_on_an_sdxl_layout(comfy):
    """SDXL: RAU-Net's conv ×4 is level 1's downsampler, the pool follows level 1's first pair; MSW-MSA acts on
    level 1 and its mirror (level 0 has no attention); a patched call at an odd latent size keeps the shape and
    changes the output."""
    from hiresflow.comfy.unet import outer_blocks, rau_roles

    unet = sdxl_like_unet()
    roles = rau_roles(unet)
    assert roles.layout == "sdxl"
    assert roles.conv_down is unet.input_blocks[6][0].op
    assert (roles.pool_block, roles.restore_block) == (4, 5)
    assert outer_blocks(unet) == [("input", 4), ("input", 5), ("output", 3), ("output", 4), ("output", 5)]

    from hiresflow.comfy.unet import patch_unet

    patcher = SimpleNamespace(model=SimpleNamespace(diffusion_model=unet, model_config=None), model_options={})

    class Clone(SimpleNamespace):  # what patch_unet needs of a ModelPatcher
        def set_model_attn1_replace(self, f, name, number):
            self.model_options.setdefault("transformer_options", {}).setdefault("patches_replace", {}) \
                .setdefault("attn1", {})[(name, number)] = f

        def set_model_input_block_patch(self, f):
            self.model_options.setdefault("transformer_options", {}).setdefault("patches", {}) \
                .setdefault("input_block_patch", []).append(f)

        def set_model_output_block_patch(self, f):
            self.model_options.setdefault("transformer_options", {}).setdefault("patches", {}) \
                .setdefault("output_block_patch", []).append(f)

        def set_model_unet_function_wrapper(self, f):
            self.model_options["model_function_wrapper"] = f

    patcher.clone = lambda: Clone(model=patcher.model, model_options={})
    patcher.model.model_config = SimpleNamespace(hiresflow_native_latent=16)
    x = torch.randn(1, 4, 44, 36, generator=torch.Generator().manual_seed(1))
    context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([500.0])
    seen = {}
    hooks = [unet.input_blocks[i][0].register_forward_pre_hook(
        lambda m, a, i=i: seen.__setitem__(i, a[0].shape[-2:])) for i in (5, 7)]
    # latent 44x36: level 1 at 22x18; conv x4 gives level 2 6x5 (plain 11x9); the pool gives level 1 11x9
    expected = {0: {5: (22, 18), 7: (6, 5)}, 2: {5: (11, 9), 7: (6, 5)}}
    with torch.no_grad():
        plain = unet(x, timesteps=t, context=context)
        assert dict(seen) == {5: (22, 18), 7: (11, 9)}
        for step in (0, 2):  # aggressive schedule below 4x, N = 10: conv x4 at step 0, pool at steps 1..3
            patched = patch_unet(patcher, dilation=1, dilate_until=0.0, msw_msa=True, rau_net=True)
            out = comfy_forward(patched, x, t, context, step)
            assert {k: tuple(v) for k, v in seen.items()} == expected[step], step
            assert out.shape == x.shape
            # random weights: the top level's skip dominates the output, so the change is small but far above
            # float rounding (~1e-7)
            assert float((out - plain).norm() / plain.norm()) > 1e-3, step
    for h in hooks:
        h.remove()
