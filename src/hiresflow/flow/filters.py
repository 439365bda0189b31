"""Frequency tools on [B, C, H, W] tensors: Butterworth FFT low-pass, Haar DWT low band, Gaussian blur, unsharp mask.

Masks and kernels are pure functions of (shape, parameters, device, dtype) and are cached, so a sampler that
filters at every step builds each mask once (the official HiFlow code rebuilds its mask in a Python double loop
at every step; I-Max runs PyWavelets on the CPU per batch and channel).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = [
    "butterworth_mask",
    "butterworth_lowpass",
    "haar_lowpass",
    "gaussian_kernel1d",
    "gaussian_blur",
    "unsharp_mask",
    "random_unsharp_mask",
]


@lru_cache(maxsize=64)
def _butterworth_mask_cached(h: int, w: int, order: int, cutoff: float, device: str, dtype: torch.dtype):
    u = torch.arange(h, dtype=torch.float64)
    v = torch.arange(w, dtype=torch.float64)
    d2 = (2 * u / h - 1)[:, None] ** 2 + (2 * v / w - 1)[None, :] ** 2
    centred = 1.0 / (1.0 + (d2 / cutoff**2) ** order)
    # the mask is defined on the fftshift-ed spectrum; move it to the natural FFT layout once
    return torch.fft.ifftshift(centred, dim=(-2, -1)).to(device=device, dtype=dtype)


def butterworth_mask(
    h: int, w: int, order: int = 4, cutoff: float = 0.2, device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Butterworth low-pass M = 1 / (1 + (d²/D²)^n) on an h×w spectrum, in unshifted FFT layout.

    d² = (2u/h − 1)² + (2v/w − 1)² over the fftshift-ed grid: 0 at DC, 1 at Nyquist along an axis (HiFlow's
    normalised radius, docs/methods/hiflow.md#direction-alignment; defaults n = 4, D = 0.2).
    """
    if order <= 0 or not cutoff > 0:
        raise ValueError(f"Butterworth order and cutoff must be positive, got order={order}, cutoff={cutoff}")
    return _butterworth_mask_cached(int(h), int(w), int(order), float(cutoff), str(device), dtype)


def butterworth_lowpass(x: torch.Tensor, order: int = 4, cutoff: float = 0.2) -> torch.Tensor:
    """real(IFFT2(FFT2(x) ⊙ M)) over the last two axes, computed in float32 (or float64 for float64 input)."""
    work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    mask = butterworth_mask(x.shape[-2], x.shape[-1], order, cutoff, work.device, work.dtype)
    out = torch.fft.ifft2(torch.fft.fft2(work) * mask).real
    return out.to(x.dtype)


def haar_lowpass(x: torch.Tensor, level: int = 1) -> torch.Tensor:
    """Level-L Haar approximation band, reconstructed at full size with the detail bands zeroed.

    For Haar this is exactly a 2^L×2^L block mean followed by nearest-neighbour upsampling (I-Max's projection
    P, docs/methods/imax.md#projection). Sizes not divisible by 2^L are edge-replicated to the next multiple first (PyWavelets'
    default "symmetric" extension agrees for level 1; deeper levels differ only in the last partial block).
    """
    if level < 1:
        raise ValueError(f"DWT level must be >= 1, got {level}")
    k = 2**level
    h, w = x.shape[-2:]
    ph, pw = (-h) % k, (-w) % k
    work = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    low = F.avg_pool2d(work, kernel_size=k, stride=k)
    up = low.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
    return up[..., :h, :w]


@lru_cache(maxsize=64)
def _gaussian_kernel_cached(size: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    half = (size - 1) / 2
    xs = torch.linspace(-half, half, size, dtype=torch.float64)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def gaussian_kernel1d(size: int, sigma: float, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd `size` and std `sigma` (torchvision's `_get_gaussian_kernel1d`)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {size}")
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    return _gaussian_kernel_cached(int(size), float(sigma), str(device), dtype)


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float, padding: str = "reflect") -> torch.Tensor:
    """Separable 2-D Gaussian blur per channel. padding="reflect" as torchvision.transforms.functional (image
    sharpening), "zeros" as DemoFusion's latent filter (F.conv2d with zero padding)."""
    k = gaussian_kernel1d(kernel_size, sigma, x.device, x.dtype)
    c = x.shape[-3]
    lead = x.shape[:-3]
    y = x.reshape(-1, c, *x.shape[-2:])
    p = kernel_size // 2
    if padding == "zeros":
        mode = "constant"
    elif padding == "reflect":
        mode = "reflect" if min(y.shape[-2:]) > p else "replicate"
    else:
        raise ValueError(f"blur padding must be 'reflect' or 'zeros', got {padding!r}")
    y = F.pad(y, (p, p, p, p), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y.reshape(*lead, c, *x.shape[-2:])


def unsharp_mask(x: torch.Tensor, sigma: float, kernel_size: int = 3, amount: float = 1.0) -> torch.Tensor:
    """x' = (1 + a)·x − a·GaussBlur_σ(x) (DiffuseHigh's sharpening, reused by HiFlow's initialisation)."""
    return (1 + amount) * x - amount * gaussian_blur(x, kernel_size, sigma)


def random_unsharp_mask(
    x: torch.Tensor,
    generator: torch.Generator,
    sigma_range: tuple[float, float] = (0.1, 2.0),
    kernel_size: int = 3,
    amount: float = 1.0,
) -> tuple[torch.Tensor, float]:
    """Unsharp mask with σ ~ U(sigma_range) drawn from `generator` (the official code uses the global RNG).

    Returns the sharpened tensor and the σ used, so it can be recorded in the run's metadata.
    """
    lo, hi = sigma_range
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    sigma = lo + (hi - lo) * u
    return unsharp_mask(x, sigma, kernel_size, amount), sigma


WAVELETS = ("haar", "db4")


def wavelet_lowpass(x: torch.Tensor, wavelet: str = "haar", level: int = 1) -> torch.Tensor:
    """Low band of a level-L 2-D DWT, brought back to x's grid (the inverse DWT of the approximation alone).

    "haar": the 2^L block mean (`haar_lowpass`, vectorised in torch). Other wavelets (DiffuseHigh's official
    "db4", symmetric extension) go through PyWavelets on the CPU over all channels at once; the DWT is perfectly
    reconstructing, so x − lowpass(x) is exactly the detail bands and swapping low bands equals the official
    iDWT((LL_guide, details_x)).
    """
    if wavelet == "haar":
        return haar_lowpass(x, level)
    if wavelet not in WAVELETS:
        raise ValueError(f"wavelet must be one of {', '.join(WAVELETS)}, got {wavelet!r}")
    import pywt

    h, w = x.shape[-2:]
    arr = x.detach().to("cpu", torch.float64).numpy()
    coeffs = pywt.wavedec2(arr, wavelet, mode="symmetric", level=level, axes=(-2, -1))
    low = pywt.waverec2([coeffs[0]] + [(None, None, None)] * level, wavelet, mode="symmetric", axes=(-2, -1))
    return torch.from_numpy(low[..., :h, :w].copy()).to(device=x.device, dtype=x.dtype)
