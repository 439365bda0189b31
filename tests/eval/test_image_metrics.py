"""SSIM / PSNR known values, structure consistency, high-frequency energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiresflow.eval.image_metrics import (downsample, gaussian_window, hf_energy_ratio, high_frequency_energy,
                                          psnr, ssim, structure_consistency)


def _ssim_bruteforce(x: np.ndarray, y: np.ndarray) -> float:
    """Direct transcription of Wang et al. (2004) eq. 13 with explicit 11×11 windows (one channel)."""
    g = gaussian_window(11, 1.5).numpy()
    w = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_psnr_known_values():
    a = torch.zeros(3, 16, 16, dtype=torch.float64)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01 → 20 dB
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-9)
    assert math.isinf(psnr(a, a))
    u = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(u, u + np.uint8(10)) == pytest.approx(10 * math.log10((255 / 10) ** 2), abs=1e-9)


def test_ssim_identical_constant_and_bruteforce():
    rng = np.random.default_rng(0)
    x = rng.random((1, 24, 20))
    assert ssim(torch.from_numpy(x), torch.from_numpy(x)) == pytest.approx(1.0, abs=1e-12)
    # constant images: σ = 0, SSIM = (2ab + C1)/(a² + b² + C1)
    a, b = 0.3, 0.5
    expect = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    assert ssim(torch.full((3, 16, 16), a, dtype=torch.float64), torch.full((3, 16, 16), b, dtype=torch.float64)) == pytest.approx(expect, rel=1e-10)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    got = ssim(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(_ssim_bruteforce(x[0], y[0]), rel=1e-9)
    assert got == pytest.approx(ssim(torch.from_numpy(y), torch.from_numpy(x)), rel=1e-12)  # symmetric
    assert 0 < got < 1


def test_ssim_errors():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(3, 16, 16), torch.zeros(3, 16, 17))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_structure_consistency_of_a_nearest_upsample_is_perfect():
    rng = np.random.default_rng(1)
    native = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    big = native.repeat(4, 0).repeat(4, 1)  # box-downsampling gives native back exactly
    p, s = structure_consistency(big, native)
    assert p > 200 and s == pytest.approx(1.0)  # exact up to float rounding
    assert downsample(big, (32, 32)).shape == (1, 3, 32, 32)
    assert downsample(torch.rand(1, 3, 96, 96), (40, 40)).shape == (1, 3, 40, 40)  # non-integer factor


def test_hf_energy_ratio_detects_blur():
    from hiresflow.world import render, sample_scene

    scene = sample_scene(np.random.default_rng([0, 3]))
    gt = render(scene, 128, 128)
    small = torch.from_numpy(render(scene, 32, 32)).permute(2, 0, 1)[None].double() / 255
    up = F.interpolate(small, size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)[0]
    assert hf_energy_ratio(gt, gt, (32, 32)) == pytest.approx(1.0)
    assert hf_energy_ratio(up, gt, (32, 32)) < 0.5  # bicubic upsampling has no detail above the native Nyquist
    noisy = np.clip(gt.astype(float) / 255 + np.random.default_rng(2).normal(0, 0.05, gt.shape), 0, 1)
    assert hf_energy_ratio(noisy, gt, (32, 32)) > 1.0
    # the radial band shrinks as the native size grows
    assert high_frequency_energy(gt, (32, 32)) > high_frequency_energy(gt, (64, 64)) > 0
