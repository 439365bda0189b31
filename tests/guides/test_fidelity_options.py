"""The official-code behaviours (defaults) and their alternatives: DemoFusion views, blur padding and dilated padding,
initialisation clamps, VAE tiling modes, the padded-sample frame of shifted patchification, DiffuseHigh's db4."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiresflow.flow.filters import gaussian_blur, gaussian_kernel1d, wavelet_lowpass
from hiresflow.guides.demofusion import MultiViewConfig
from hiresflow.models.base import LatentGeometry
from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan
from hiresflow.stage import Guide, GuideConfig, StepContext


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "tiny", native=64)


def _env(h, w, seed=0):
    model = SimpleNamespace(geometry=LatentGeometry(channels=4, vae_scale=4, patch=2, native=(64, 64)),
                            time_fraction=lambda s: s)
    return SimpleNamespace(model=model, generator=torch.Generator().manual_seed(seed), latent_size=(h, w))


def _ctx():
    return StepContext(stage=1, step=0, n_steps=4, index=0, sigma=0.5, sigma_next=0.4, x=None)


@pytest.mark.parametrize("mode", ["outward", "symmetric"])
def test_view_jitter_coverage(mode):
    """Official outward jitter keeps every latent pixel under a view; symmetric jitter can leave strips."""
    h, w = 48, 48  # 3× a 16-latent native view
    uncovered = 0
    for seed in range(40):
        den = MultiViewConfig(jitter_mode=mode, dilated=False).build(_env(h, w, seed), lambda x, c: torch.ones_like(x))
        v = den.local(torch.zeros(1, 4, h, w), _ctx())
        uncovered += int((v == 0).any())
    if mode == "outward":
        assert uncovered == 0
    else:
        assert uncovered > 0


def test_blur_padding_zeros_is_conv_with_zero_padding():
    x = torch.randn(1, 4, 9, 11, generator=torch.Generator().manual_seed(0))
    k = gaussian_kernel1d(5, 1.3, x.device, x.dtype)
    k2 = (k[:, None] * k[None, :]).expand(4, 1, 5, 5)
    assert torch.allclose(gaussian_blur(x, 5, 1.3, padding="zeros"), F.conv2d(x, k2, padding=2, groups=4), atol=1e-6)
    refl = gaussian_blur(x, 5, 1.3, padding="reflect")
    zero = gaussian_blur(x, 5, 1.3, padding="zeros")
    assert torch.allclose(refl[..., 2:-2, 2:-2], zero[..., 2:-2, 2:-2], atol=1e-6)
    assert not torch.allclose(refl, zero)


@pytest.mark.parametrize("pad", ["top_left", "bottom_right"])
def test_dilated_path_padding_side(pad):
    """With the identity as model, the dilated path returns the re-standardised blur of the padded latent,
    cropped on the side the padding was added."""
    h, w = 30, 34  # factor 2: both sides odd multiples of 2·patch? 30 % 4 = 2 → padded by 2
    cfg = MultiViewConfig(dilated_pad=pad, sigma=1.0)
    den = cfg.build(_env(h, w), lambda x, c: x)
    x = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(1))
    out = den.dilated(x, _ctx(), cf=1.0)
    ph, pw = (-h) % 4, (-w) % 4
    xp = F.pad(x, (pw, 0, ph, 0) if pad == "top_left" else (0, pw, 0, ph))
    b = gaussian_blur(xp, 3, 1.0, padding="zeros")
    b = (b - b.mean()) / b.std() * xp.std() + xp.mean()
    want = b[..., ph:, pw:] if pad == "top_left" else b[..., :h, :w]
    assert torch.allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("clamp", ["none", "decoded", "all"])
def test_init_clamp_modes(flux, clamp, monkeypatch):
    seen = {}
    real = flux.encode

    def spy(images, generator=None, sample=False):
        seen["min"], seen["max"] = float(images.min()), float(images.max())
        return real(images, generator, sample)

    monkeypatch.setattr(flux, "encode", spy)
    plan = build_plan("hiflow", flux, scale=2, base_steps=4, stage_steps=[2], clamp_init=clamp)
    run_plan(flux, plan, "a red sun", seed=0)
    inside = 0.0 <= seen["min"] and seen["max"] <= 1.0
    assert inside == (clamp == "all")  # sharpening overshoots [0, 1] unless everything is clamped


@pytest.mark.parametrize("mode", ["auto", "diffusers", "always", "never"])
def test_vae_tiling_modes(flux, mode, monkeypatch):
    vae = flux.codec.vae
    calls = {"tiled_decode": 0}
    real = vae.tiled_decode

    def counting(*a, **k):
        calls["tiled_decode"] += 1
        return real(*a, **k)

    monkeypatch.setattr(vae, "tiled_decode", counting)
    z = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    with flux.codec.tiling(mode):
        img = flux.decode(z)
        tiled_on = vae.use_tiling
    assert img.shape[-1] == 64 and torch.isfinite(img).all()
    assert (calls["tiled_decode"] > 0) == (mode == "always")
    assert tiled_on == (mode in ("diffusers", "always"))
    assert not vae.use_tiling  # restored after the block


class _Recorder(GuideConfig):
    def __init__(self, log):
        self.log = log

    def build(self, env):
        log = self.log

        class G(Guide):
            def correct(self, ctx):
                log.append((ctx.step, tuple(ctx.x.shape[-2:]), tuple(ctx.v.shape[-2:])))
                return ctx.v

        return G()


@pytest.mark.parametrize("steps", [4, 3])
def test_sample_frame_pads_the_sample_on_even_steps(flux, steps):
    log = []
    plan = build_plan("imax", flux, scale=2, steps=2, hires_steps=steps)  # the official sample frame is the default
    plan.stages[1].guides.append(_Recorder(log))
    res = run_plan(flux, plan, "a lake", seed=0)
    _, lh, lw = flux.geometry.latent_shape(*plan.stages[1].size)
    assert [s for s, _, _ in log] == list(range(steps))
    for step, xs, vs in log:
        assert xs == vs == ((lh + 2, lw + 2) if step % 2 == 0 else (lh, lw))
    assert res.stages[1].latent.shape[-2:] == (lh, lw)  # an odd count ends padded and is cropped back
    model_frame = build_plan("imax", flux, scale=2, steps=2, hires_steps=steps, shift_frame="model")
    other = run_plan(flux, model_frame, "a lake", seed=0).stages[1].latent
    assert not torch.equal(other, res.stages[1].latent)


def test_db4_low_band_and_swap_match_pywavelets():
    import pywt

    g = torch.Generator().manual_seed(3)
    x, guide = torch.rand(1, 3, 30, 26, generator=g), torch.rand(1, 3, 30, 26, generator=g)
    swapped = x - wavelet_lowpass(x, "db4") + wavelet_lowpass(guide, "db4")
    cx = pywt.dwt2(x.double().numpy(), "db4", mode="symmetric", axes=(-2, -1))
    cg = pywt.dwt2(guide.double().numpy(), "db4", mode="symmetric", axes=(-2, -1))
    want = pywt.idwt2((cg[0], cx[1]), "db4", mode="symmetric", axes=(-2, -1))[..., :30, :26]
    assert np.allclose(swapped.double().numpy(), want, atol=1e-5)
    assert torch.allclose(wavelet_lowpass(x, "haar"), F.avg_pool2d(x[..., :30, :26], 2).repeat_interleave(2, -2)
                          .repeat_interleave(2, -1), atol=1e-6)
