"""U-Net methods on ComfyUI's SD 1.x / SDXL U-Net (`comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel`).

As ModelPatcher clones (nothing changes outside a model call):
- restrained dilated convolution (FreeScale, after ScaleCrafter; `hiresflow.patches.dilated_conv`): the 3×3 convs
  of the deepest input level (its downsampler's conv and its resnets' two convs) and of the middle block's two
  resnets run with dilation = padding = d while the step's index in the sampler's grid is below ⌊τ·N⌋; same
  weights, same output size;
- MSW-MSA (HiDiffusion; `hiresflow.patches.msw_msa`): the self-attention of the outermost level (input blocks
  before the first downsampler, output blocks after the last upsampler) attends within 2×2 windows of its token
  grid, the windows shifted by a quarter of the grid on odd steps, through ComfyUI's `attn1` replacement hook.
The step index is σ_c's position in `transformer_options["sample_sigmas"]`, which every ComfyUI sampler sets.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch

__all__ = ["patch_unet", "dilated_convs", "window_attention", "outer_blocks"]


def _unet_class():
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel


def dilated_convs(unet) -> list[torch.nn.Conv2d]:
    """The deepest input level's downsampler conv and resnet convs, and the middle block's resnet convs."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock

    levels: list[list] = [[]]
    down_into: list = []
    for block in unet.input_blocks[1:]:
        layer = block[0]
        if isinstance(layer, Downsample):
            down_into.append(layer.op)
            levels.append([])
        elif isinstance(layer, ResBlock):
            levels[-1].append(layer)
    convs = [down_into[-1]] if down_into else []
    for res in levels[-1] + [m for m in unet.middle_block if isinstance(m, ResBlock)]:
        convs += [res.in_layers[2], res.out_layers[3]]
    return [c for c in convs if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]


def outer_blocks(unet) -> list[tuple[str, int]]:
    """(block name, number) of the transformer blocks at full latent resolution (ComfyUI's attn1 replace keys)."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, Upsample

    out = []
    for i, block in enumerate(unet.input_blocks):
        if any(isinstance(m, Downsample) for m in block):
            break
        if any(isinstance(m, SpatialTransformer) for m in block):
            out.append(("input", i))
    last_up = max([i for i, b in enumerate(unet.output_blocks) if any(isinstance(m, Upsample) for m in b)],
                  default=-1)
    for i, block in enumerate(unet.output_blocks):
        if i > last_up and any(isinstance(m, SpatialTransformer) for m in block):
            out.append(("output", i))
    return out


def _step_index(options: dict, sigma: torch.Tensor) -> tuple[int, int] | None:
    sigmas = options.get("sample_sigmas")
    if sigmas is None:
        return None
    s = sigmas.flatten().float().cpu()
    return int(torch.argmin((s - float(sigma.flatten()[0])).abs())), s.numel() - 1


@contextmanager
def _dilated(convs: list, d: int) -> Iterator[None]:
    saved = [(c.dilation, c.padding) for c in convs]
    for c in convs:
        c.dilation, c.padding = (d, d), (d, d)
    try:
        yield
    finally:
        for c, (dil, pad) in zip(convs, saved):
            c.dilation, c.padding = dil, pad


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict) -> torch.Tensor:
    """Self-attention within 2×2 windows of the token grid (shifted by a quarter grid on odd steps)."""
    from comfy.ldm.modules.attention import optimized_attention

    heads = extra["n_heads"]
    b, n, c = q.shape
    height, width = extra["original_shape"][-2:]
    f = max(1, round(math.sqrt(height * width / n)))
    h, w = math.ceil(height / f), math.ceil(width / f)
    if h * w != n or h % 2 or w % 2 or b != v.shape[0]:
        return optimized_attention(q, k, v, heads)
    step = _step_index(extra, extra.get("sigmas", torch.zeros(1))) if "sigmas" in extra else None
    sy, sx = (h // 4, w // 4) if step is not None and step[0] % 2 else (0, 0)

    def split(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(b, h, w, c).roll((-sy, -sx), (1, 2))
        t = t.reshape(b, 2, h // 2, 2, w // 2, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(b * 4, (h // 2) * (w // 2), c)

    out = optimized_attention(split(q), split(k), split(v), heads)
    out = out.reshape(b, 2, 2, h // 2, w // 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    return out.roll((sy, sx), (1, 2)).reshape(b, n, c)


def patch_unet(model, dilation: int = 2, dilate_until: float = 0.7, msw_msa: bool = True):
    """A clone of ComfyUI MODEL `model` with the U-Net methods above; one-line error on a model without a U-Net."""
    unet = model.model.diffusion_model
    if not isinstance(unet, _unet_class()):
        raise ValueError(f"the U-Net patch applies to SD 1.x / SDXL U-Nets; this model is {type(unet).__name__}, "
                         f"a transformer; use hiresflow RoPE Patch or the hiresflow Sampler instead")
    if not (isinstance(dilation, int) and dilation >= 1):
        raise ValueError(f"dilation must be a whole number >= 1 (1 = off), got {dilation!r}")
    if not 0 <= dilate_until <= 1:
        raise ValueError(f"dilate_until must lie in [0, 1] (a fraction of the steps), got {dilate_until!r}")
    patched = model.clone()
    if msw_msa:
        for name, number in outer_blocks(unet):
            patched.set_model_attn1_replace(window_attention, name, number)
    if dilation > 1:
        previous = patched.model_options.get("model_function_wrapper")

        def wrapper(apply_model, args):
            live = patched.model.diffusion_model
            step = _step_index(args["c"].get("transformer_options", {}), args["timestep"])
            with ExitStack() as stack:
                if step is not None and step[0] < int(dilate_until * step[1]):
                    stack.enter_context(_dilated(dilated_convs(live), dilation))
                if previous is not None:
                    return previous(apply_model, args)
                return apply_model(args["input"], args["timestep"], **args["c"])

        patched.set_model_unet_function_wrapper(wrapper)
    return patched
