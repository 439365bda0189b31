"""U-Net patches: formulas by hand on small tensors, sizes, schedules, reversibility, determinism, cond/uncond."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hiresflow.flow.sampler import StepContext
from hiresflow.models.loading import load_model
from hiresflow.patches.base import compose_patches
from hiresflow.patches.dilated_conv import DilatedConvConfig, stage_dilation
from hiresflow.patches.freeu import FreeUConfig, fourier_filter, freeu_factors
from hiresflow.patches.msw_msa import MSWMSAConfig, window_merge, window_partition
from hiresflow.patches.rau_net import RAUNetConfig, rau_schedule, rau_thresholds
from hiresflow.patches.scale_fusion import ScaleFusionConfig, axis_windows, fuse, gaussian_blur
from hiresflow.patches.unet_tools import conv_geometry
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan


@pytest.fixture(scope="module")
def tiny_sd_model():
    # v1's three-level U-Net: the role counts below are its own; v2 (SD 1.5 layout) is covered by test_unet_roles.py,
    # test_unet_recipes.py and the oracle test
    return load_model("tiny-sd-v1", device="cpu")


class Env:  # the part of StageEnv that the U-Net patch configs read
    def __init__(self, model, size, steps=10, first=None, seed=3):
        self.model, self.cond = model, None
        self.stage = type("S", (), {"size": size})()
        self.first = type("R", (), {"size": first})() if first else None
        self.sigmas = torch.linspace(1, 0, steps + 1)
        self.generator = torch.Generator().manual_seed(seed)


def _ctx(step=0, n=10, index=None):
    return StepContext(stage=1, step=step, n_steps=n, index=step if index is None else index, sigma=0.6,
                       sigma_next=0.5, x=None)


# ------------------------------------------------------------------ formulas


def test_conv_geometry_is_a_strided_dilated_conv_with_the_same_weights():
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 13, 10)
    with conv_geometry([conv], stride=(4, 4), padding=(2, 2), dilation=(2, 2)):
        y = conv(x)
    assert torch.equal(y, F.conv2d(x, conv.weight, conv.bias, stride=4, padding=2, dilation=2))
    assert y.shape[-2:] == (math.ceil(13 / 4), math.ceil(10 / 4))  # RAU-Net (a): ⌈H/4⌉ for odd sizes too
    assert conv.stride == (2, 2) and conv.dilation == (1, 1) and conv.padding == (1, 1)
    c3 = torch.nn.Conv2d(3, 3, 3, padding=1)
    with conv_geometry([c3], padding=(3, 3), dilation=(3, 3)):  # FreeScale: dilation = padding = d keeps the size
        assert torch.equal(c3(x), F.conv2d(x, c3.weight, c3.bias, padding=3, dilation=3))
        assert c3(x).shape == x.shape


def test_rau_schedule_and_table():
    assert rau_thresholds("sd15", False) == (0.4, 0.0) and rau_thresholds("sd15", True) == (0.7, 0.3)
    assert rau_thresholds("sdxl", True) == (0.7, 0.3) and rau_thresholds("sdxl", False, turbo=True) == (0.5, 0.0)
    assert rau_thresholds("sdxl", False, controlnet=True) == (0.5, 0.0)
    on = [rau_schedule("sd15", i, 50, 0.4, 0.0) for i in range(50)]
    assert [c for c, _ in on] == [True] * 20 + [False] * 30 and not any(p for _, p in on)
    agg = [rau_schedule("sdxl", i, 50, 0.4, 0.0, aggressive=True) for i in range(50)]  # 2048² SDXL, N = 50
    assert [c for c, _ in agg] == [True] * 8 + [False] * 42
    assert [p for _, p in agg] == [False] * 8 + [True] * 12 + [False] * 30
    big = [rau_schedule("sdxl", i, 50, 0.7, 0.3) for i in range(50)]
    assert sum(c for c, _ in big) == 15 and sum(p for _, p in big) == 35
    assert rau_schedule("sdxl", 0, 1, 0.5, 0.0, turbo=True) == (False, False)  # Turbo, 1 step: int(0.5) = 0


def test_rau_config_reads_the_table_by_target_size(tiny_sd_model):
    small = RAUNetConfig().build(Env(tiny_sd_model, (128, 128)))
    large = RAUNetConfig().build(Env(tiny_sd_model, (256, 320)))
    wide = RAUNetConfig().build(Env(tiny_sd_model, (128, 512)))  # one side below 4×: the small row
    assert (small.t1, small.t2, large.t1, large.t2, wide.t1) == (0.4, 0.0, 0.7, 0.3, 0.4)
    assert not small.aggressive  # SD layout
    with pytest.raises(ValueError, match="t1 must lie in"):
        RAUNetConfig(t1=1.5)


def test_window_partition_by_hand():
    B, H, W, C = 2, 6, 8, 3
    x = torch.arange(B * H * W * C, dtype=torch.float32).view(B, H * W, C)
    for k in range(4):
        w, st = window_partition(x, (H, W), k)
        assert w.shape == (4 * B, 3 * 4, C)
        assert torch.equal(window_merge(w, st), x)  # exact inverse
    w, _ = window_partition(x, (H, W), 0)
    m = x.view(B, H, W, C)
    assert torch.equal(w[1].view(3, 4, C), m[0, :3, 4:])  # batch 0, window (0, 1)
    w2, _ = window_partition(x, (H, W), 2)  # shift (⌊3/4⌋·2, ⌊4/4⌋·2) = (0, 2)
    assert torch.equal(w2[0].view(3, 4, C), torch.roll(m, (0, -2), (1, 2))[0, :3, :4])
    odd = torch.randn(1, 5 * 7, 2)
    for mode in ("resize", "pad"):
        w, st = window_partition(odd, (5, 7), 1, mode)
        assert w.shape == (4, 3 * 4, 2) and window_merge(w, st, mode).shape == odd.shape
    w, st = window_partition(odd, (5, 7), 1, "pad")
    assert torch.equal(window_merge(w, st, "pad"), odd)


def test_gaussian_blur_equals_the_official_3d_convolution():
    x = torch.randn(2, 9, 7, 6)  # [B, H, W, C]
    k, sigma = 5, 1.0
    c = torch.arange(k, dtype=torch.float32)
    g = torch.exp(-(c - (k - 1) / 2) ** 2 / (2 * sigma**2))
    g = g / g.sum()
    g3 = (g[:, None, None] * g[None, :, None] * g[None, None, :])[None, None].repeat(2, 1, 1, 1, 1)
    official = F.conv3d(x.unsqueeze(0), g3, padding=k // 2, groups=2)[0]
    assert torch.allclose(gaussian_blur(x, k, sigma, "3d"), official, atol=1e-6)
    g2 = (g[:, None] * g[None, :])[None, None].repeat(6, 1, 1, 1)
    spatial = F.conv2d(x.permute(0, 3, 1, 2), g2, padding=k // 2, groups=6).permute(0, 2, 3, 1)
    assert torch.allclose(gaussian_blur(x, k, sigma, "2d"), spatial, atol=1e-6)
    loc, glob = torch.randn(1, 8, 8, 4), torch.randn(1, 8, 8, 4)
    assert torch.allclose(fuse(glob, glob, 3), glob, atol=1e-6)  # same branches → unchanged
    for mode in ("2d", "3d"):  # low band of local + high band of global: global + G(local − global)
        assert torch.allclose(fuse(loc, glob, 3, mode=mode), glob + gaussian_blur(loc - glob, 3, mode=mode),
                              atol=1e-5)


def test_scale_fusion_windows_follow_the_official_views():
    starts, w, r = axis_windows(32, 16)  # stride 8: ⌊(32 − 16)/8 − 1e-6⌋ + 2 = 3 views
    assert (starts, w, r) == ([0, 8, 16], 16, 2)
    assert axis_windows(40, 16)[0] == [0, 8, 16, 24]
    assert axis_windows(36, 16)[0] == [0, 8, 16, 20]  # the last view ends at the border
    assert axis_windows(16, 16)[0] == [0] and axis_windows(8, 4)[2] == 0


def test_fourier_filter_and_freeu_roles(tiny_sd_model):
    x = torch.randn(1, 2, 8, 6)
    assert torch.allclose(fourier_filter(x, 1.0), x, atol=1e-5)
    y = fourier_filter(x, 0.0)
    assert y.mean(dim=(-2, -1)).abs().max() < 1e-5  # the DC term is in the centred 2×2 box
    assert torch.allclose(fourier_filter(x, 0.4), x - 0.6 * (x - y), atol=1e-5)  # linear in s
    roles = tiny_sd_model.unet_roles
    fac = freeu_factors(roles, FreeUConfig())
    # tiny-sd-v1 widths 128 / 96 / 64: b1 where the backbone is 128 wide, b2 where it is 96 (first pair of up 2 too)
    got = [(j, i, ch, b) for (j, i, r, ch), (res, ch2, b, s) in zip(
        [p for p in roles.up_pairs() if p[3] in (128, 96)], fac)]
    assert got == [(0, 0, 128, 1.1), (0, 1, 128, 1.1), (1, 0, 128, 1.1), (1, 1, 96, 1.2), (2, 0, 96, 1.2)]
    by_block = freeu_factors(roles, FreeUConfig(mode="blocks"))
    assert [b for *_, b, s in by_block] == [1.1, 1.1, 1.2, 1.2]
    with pytest.raises(ValueError, match="FreeU mode"):
        FreeUConfig(mode="x")


def test_dilation_from_target_over_native(tiny_sd_model):
    assert stage_dilation((256, 256), (64, 64)) == 4 and stage_dilation((128, 192), (64, 96)) == 2
    p = DilatedConvConfig().build(Env(tiny_sd_model, (256, 256), steps=50, first=(64, 64)))
    assert p.dilation == 4 and p.stop_index == 35  # official dilate_tau 35 of 50
    assert p.active(_ctx(step=0, index=34)) and not p.active(_ctx(step=20, index=35))
    assert len(p.convs) == 7  # tiny-sd-v1: d1 downsampler, d2 resnet conv1/2, mid resnets ×2 conv1/2


# ------------------------------------------------------------------ on the model


ALL = [RAUNetConfig(t1=1.0, t2=1.0), MSWMSAConfig(), DilatedConvConfig(tau=1.0), ScaleFusionConfig(), FreeUConfig()]


def _setup(model, size=(128, 96)):
    cond = model.encode_prompt("a yellow sun over green hills")
    h, w = size[0] // model.geometry.vae_scale, size[1] // model.geometry.vae_scale
    x = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(0))

    def core(xx, ctx, c):
        return model.velocity(xx, ctx.sigma, c, ctx=ctx)

    return cond, x, core


def _state(unet):
    convs = {n: (m.stride, m.padding, m.dilation) for n, m in unet.named_modules() if isinstance(m, torch.nn.Conv2d)}
    procs = {k: type(v) for k, v in unet.attn_processors.items()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    return convs, procs, hooks


def test_patches_change_the_call_and_removal_restores_bit_identical(tiny_sd_model):
    model = tiny_sd_model
    cond, x, core = _setup(model)
    before, state = core(x, _ctx(), cond), _state(model.unet)
    for cfg in ALL:
        p = cfg.build(Env(model, (128, 96), first=(64, 48)))
        patched = compose_patches(core, [p])(x, _ctx(), cond)
        assert torch.isfinite(patched).all() and not torch.equal(patched, before), cfg
        assert torch.equal(core(x, _ctx(), cond), before), cfg
        assert _state(model.unet) == state, cfg
    fn = compose_patches(core, [c.build(Env(model, (128, 96), first=(64, 48))) for c in ALL])
    assert torch.isfinite(fn(x, _ctx(), cond)).all()
    assert torch.equal(core(x, _ctx(), cond), before) and _state(model.unet) == state


def test_removal_after_an_error_mid_call_restores(tiny_sd_model):
    model = tiny_sd_model
    cond, x, core = _setup(model)
    before, state = core(x, _ctx(), cond), _state(model.unet)

    def boom(module, args, out):
        raise RuntimeError("model failed mid-call")

    handle = model.unet.mid_block.register_forward_hook(boom)
    try:
        fn = compose_patches(core, [c.build(Env(model, (128, 96), first=(64, 48))) for c in ALL])
        with pytest.raises(RuntimeError, match="mid-call"):
            fn(x, _ctx(), cond)
    finally:
        handle.remove()
    assert _state(model.unet) == state
    assert torch.equal(core(x, _ctx(), cond), before)


@pytest.mark.slow
def test_separate_cond_uncond_calls_equal_the_batched_call(tiny_sd_model):
    """Two model calls in one step (cond and uncond apart) see the same step, shifts and jitter as one call."""
    model = tiny_sd_model
    cond, x, _ = _setup(model, (192, 128))
    unet = model.unet
    x_t = model.ddpm.model_input(x, 0.6)
    t = torch.full((1,), model.ddpm.timestep(0.6))
    text = [cond.negative_embeds, cond.prompt_embeds]

    def batched(xx, ctx, c):
        return unet(torch.cat([xx, xx]), t.expand(2), encoder_hidden_states=torch.cat(text), return_dict=False)[0]

    def one(k):
        return lambda xx, ctx, c: unet(xx, t, encoder_hidden_states=text[k], return_dict=False)[0]

    env = Env(model, (192, 128), first=(64, 48))
    for cfgs in ([RAUNetConfig(t1=1.0, t2=1.0), MSWMSAConfig()], [DilatedConvConfig(tau=1.0), ScaleFusionConfig(),
                                                                    FreeUConfig()]):
        ctx = _ctx(step=3)
        both = compose_patches(batched, [c.build(env) for c in cfgs])(x_t, ctx, None)
        apart = torch.cat([compose_patches(one(k), [c.build(env) for c in cfgs])(x_t, ctx, None) for k in (0, 1)])
        assert torch.allclose(both, apart, atol=1e-5), cfgs


def test_odd_and_non_square_sizes_run_without_size_errors(tiny_sd_model):
    """RAU-Net keeps every skip and upsampler consistent for sizes that are not multiples of 2^levels."""
    model = tiny_sd_model
    sizes: list = []
    h = model.unet.down_blocks[0].register_forward_hook(lambda m, a, o: sizes.append(tuple(o[0].shape[-2:])))
    try:
        for size in [(136, 200), (104, 72)]:  # latents 34×50 and 26×18
            plan = build_plan("hidiffusion", model, size=size, steps=2, t1=1.0, t2=1.0, odd_windows="pad")
            res = run_plan(model, plan, "a lake", seed=1)
            assert res.image.shape[-2:] == size and torch.isfinite(res.image).all()
    finally:
        h.remove()
    assert sizes[0] == (math.ceil(34 / 4), math.ceil(50 / 4))  # conv ×4 with ⌈⌉


@pytest.mark.parametrize("recipe,kw", [("hidiffusion", dict(steps=4)),
                                       pytest.param("freescale", dict(steps=5), marks=pytest.mark.slow)])
def test_whole_run_twice_gives_identical_bytes(tiny_sd_model, recipe, kw):
    plan = build_plan(recipe, tiny_sd_model, scale=2, **kw)
    a = run_plan(tiny_sd_model, plan, "two pine trees", seed=9).image
    b = run_plan(tiny_sd_model, plan, "two pine trees", seed=9).image
    assert torch.equal(a, b)


def test_msw_msa_shifts_are_seeded_per_step_and_block(tiny_sd_model):
    env = Env(tiny_sd_model, (128, 128))
    p, q = MSWMSAConfig().build(env), MSWMSAConfig().build(Env(tiny_sd_model, (128, 128)))
    assert p.shifts_at(4) == q.shifts_at(4) and len(p.shifts_at(4)) == 3  # d0: 1 block, up2: 2 blocks
    assert len({tuple(p.shifts_at(s)) for s in range(10)}) > 1
    assert MSWMSAConfig(shift=2).build(env).shifts_at(0) == [2] * 3
    other = MSWMSAConfig().build(Env(tiny_sd_model, (128, 128), seed=4))
    assert [p.shifts_at(s) for s in range(10)] != [other.shifts_at(s) for s in range(10)]
