import pytest
import torch
import torch.nn.functional as F

from hiresflow.flow.filters import (
    butterworth_lowpass, butterworth_mask, gaussian_blur, gaussian_kernel1d, haar_lowpass, random_unsharp_mask,
    unsharp_mask,
)


def test_butterworth_passes_dc_and_removes_nyquist():
    const = torch.full((1, 2, 32, 48), 0.37)
    assert torch.allclose(butterworth_lowpass(const), const, atol=1e-6)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(48), indexing="ij")
    checker = ((yy + xx) % 2).float().view(1, 1, 32, 48) * 2 - 1
    assert float(butterworth_lowpass(checker).abs().max()) < 1e-4
    # a low-frequency cosine well inside the cutoff passes nearly unchanged
    low = torch.cos(2 * torch.pi * yy / 32).float().view(1, 1, 32, 48)
    assert float((butterworth_lowpass(low, cutoff=0.4) - low).abs().max()) < 1e-2


def test_butterworth_mask_formula_and_cache():
    m = butterworth_mask(8, 8, order=4, cutoff=0.2)
    centred = torch.fft.fftshift(m)
    assert float(centred[4, 4]) == pytest.approx(1.0)  # d = 0 at the centre of the shifted grid
    d2 = (2 * 0 / 8 - 1) ** 2 + (2 * 4 / 8 - 1) ** 2  # corner row 0, centre column
    assert float(centred[0, 4]) == pytest.approx(1 / (1 + (d2 / 0.04) ** 4), rel=1e-5)
    assert butterworth_mask(8, 8) is butterworth_mask(8, 8)  # built once per shape


@pytest.mark.parametrize("level", [1, 2, 3])
def test_haar_lowpass_is_block_mean(level):
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(level))
    k = 2**level
    blocks = x.view(2, 3, 16 // k, k, 24 // k, k).mean(dim=(3, 5))
    expected = blocks.repeat_interleave(k, 2).repeat_interleave(k, 3)
    assert torch.allclose(haar_lowpass(x, level), expected, atol=1e-6)
    # projection: applying twice changes nothing
    assert torch.allclose(haar_lowpass(haar_lowpass(x, level), level), haar_lowpass(x, level), atol=1e-6)


def test_haar_level1_matches_dwt_with_orthonormal_filters():
    """Level-1 Haar approximation via the orthonormal analysis/synthesis filters (as PyWavelets computes it)."""
    x = torch.randn(1, 1, 8, 10, generator=torch.Generator().manual_seed(9))
    lo = torch.tensor([[0.5, 0.5], [0.5, 0.5]]).view(1, 1, 2, 2)  # (1/√2)² outer product
    cA = F.conv2d(x, lo, stride=2)  # approximation coefficients
    rec = F.conv_transpose2d(cA, lo, stride=2)  # synthesis with zeroed details
    assert torch.allclose(haar_lowpass(x, 1), rec, atol=1e-6)
    odd = torch.randn(1, 1, 7, 5)
    assert haar_lowpass(odd, 1).shape == odd.shape


def test_gaussian_blur_and_unsharp():
    k = gaussian_kernel1d(5, 1.0)
    assert float(k.sum()) == pytest.approx(1.0) and torch.equal(k, k.flip(0))
    const = torch.full((1, 3, 9, 9), 0.5)
    assert torch.allclose(gaussian_blur(const, 3, 1.0), const, atol=1e-6)
    assert torch.allclose(unsharp_mask(const, 1.0), const, atol=1e-6)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a, sa = random_unsharp_mask(img, torch.Generator().manual_seed(5))
    b, sb = random_unsharp_mask(img, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and sa == sb and 0.1 <= sa <= 2.0
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(img, 4, 1.0)
