"""Paired image metrics: PSNR, SSIM, structure consistency and high-frequency energy.

Images are uint8 (H, W, 3) arrays or float tensors [3, H, W] / [B, 3, H, W] in [0, 1]; everything is computed in
float64 with data range L = 1.

PSNR = 10·log10(L² / MSE) (inf for identical images).

SSIM (Wang, Bovik, Sheikh, Simoncelli 2004, "Image quality assessment: from error visibility to structural
similarity", eq. 13, and their reference code `ssim_index.m`): local statistics under an 11×11 Gaussian window
(σ = 1.5, normalised), 'valid' filtering (no padding), per channel,

    SSIM(x, y) = mean over pixels and channels of ((2 μ_x μ_y + C1)(2 σ_xy + C2)) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2))

with C1 = (0.01 L)², C2 = (0.03 L)², and σ² = E_w[x²] − μ² (population moments under the window).

Structure consistency: the high-resolution result is downsampled to the native size (box filter for integer
factors, antialiased bilinear otherwise) and compared with the native-stage image by PSNR and SSIM — does the
method keep the composition the base model produced?

High-frequency energy: luminance Y = 0.299 R + 0.587 G + 0.114 B, mean removed, times a separable Hann window
(limits the border leakage of the FFT); E_HF = Σ |FFT(Y)|²/(HW) over frequencies outside the ellipse
(f_y/ν_y)² + (f_x/ν_x)² ≤ 1, where ν = ½·native/size is the native Nyquist frequency expressed in cycles per pixel
of the large image: the detail a native-size image cannot hold. The ratio E_HF(generated)/E_HF(ground truth) at
the same size is 1 for ground-truth-like detail, < 1 for blur (plain upscaling), > 1 for noise or artefacts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["as_tensor", "psnr", "ssim", "downsample", "structure_consistency", "high_frequency_energy",
           "hf_energy_ratio", "gaussian_window"]


def as_tensor(image) -> torch.Tensor:
    """uint8 (H, W, 3) / float (H, W, 3) array or [3, H, W] / [B, 3, H, W] tensor → float64 [B, 3, H, W] in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise ValueError(f"image tensors must be [3, H, W] or [B, 3, H, W], got {tuple(image.shape)}")
        t = t.double() / 255 if t.dtype == torch.uint8 else t.double()
        return t
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"image arrays must be (H, W, C), got shape {arr.shape}")
    t = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None]
    return t.double() / 255 if arr.dtype == np.uint8 else t.double()


def _pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_tensor(a), as_tensor(b)
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}; resize first")
    return x, y


def psnr(a, b, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (module doc); inf when the images are identical."""
    x, y = _pair(a, b)
    mse = float(((x - y) ** 2).mean())
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian of `size` taps (float64)."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ValueError(f"window size must be a positive odd int and sigma > 0, got {size}, {sigma}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_map(a, b, data_range: float = 1.0, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
             k2: float = 0.03) -> torch.Tensor:
    """Per-pixel SSIM [B, C, H − window + 1, W − window + 1] (module doc)."""
    x, y = _pair(a, b)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} px, got {x.shape[-1]}x{x.shape[-2]}")
    g = gaussian_window(window, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(a, b, data_range: float = 1.0, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM over pixels and channels (Gaussian window 11, σ 1.5; module doc)."""
    return float(ssim_map(a, b, data_range, window, sigma, k1, k2).mean())


def downsample(image, size: tuple[int, int]) -> torch.Tensor:
    """float64 [B, 3, h, w]: box filter when the factor is an integer, antialiased bilinear otherwise."""
    x = as_tensor(image)
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if h > H or w > W:
        raise ValueError(f"cannot downsample {W}x{H} to the larger {w}x{h}")
    if H % h == 0 and W % w == 0:
        return F.avg_pool2d(x, kernel_size=(H // h, W // w))
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def structure_consistency(result, native) -> tuple[float, float]:
    """(PSNR, SSIM) of `result` downsampled to the size of `native` against `native`."""
    n = as_tensor(native)
    d = downsample(result, tuple(n.shape[-2:]))
    return psnr(d, n), ssim(d, n)


def _hann(n: int) -> torch.Tensor:
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(n, dtype=torch.float64) / (n - 1))


def high_frequency_energy(image, native: tuple[int, int]) -> float:
    """E_HF of one image above the Nyquist frequency of `native` = (h, w) (module doc)."""
    x = as_tensor(image)
    if x.shape[0] != 1:
        raise ValueError(f"one image at a time, got a batch of {x.shape[0]}")
    H, W = x.shape[-2:]
    h, w = int(native[0]), int(native[1])
    if h > H or w > W or h < 1 or w < 1:
        raise ValueError(f"native size {w}x{h} must be positive and not larger than the image {W}x{H}")
    if x.shape[1] == 3:
        wts = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
        lum = (x * wts).sum(1)[0]
    else:
        lum = x.mean(1)[0]
    lum = (lum - lum.mean()) * (_hann(H)[:, None] * _hann(W)[None, :])
    power = torch.fft.fft2(lum).abs() ** 2 / (H * W)
    fy = torch.fft.fftfreq(H, dtype=torch.float64)[:, None] / (0.5 * h / H)
    fx = torch.fft.fftfreq(W, dtype=torch.float64)[None, :] / (0.5 * w / W)
    return float(power[(fy**2 + fx**2) > 1.0].sum())


def hf_energy_ratio(generated, reference, native: tuple[int, int], eps: float = 1e-12) -> float:
    """E_HF(generated) / E_HF(reference) at the same size (module doc)."""
    g, r = _pair(generated, reference)
    return high_frequency_energy(g, native) / max(high_frequency_energy(r, native), eps)
