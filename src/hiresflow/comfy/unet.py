"""U-Net methods on ComfyUI's SD 1.x / SDXL U-Net (`comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel`).

As ModelPatcher clones (nothing changes outside a model call):
- restrained dilated convolution (FreeScale, after ScaleCrafter; `hiresflow.patches.dilated_conv`): the 3×3 convs
  of the deepest input level (its downsampler's conv and its resnets' two convs) and of the middle block's two
  resnets run with dilation = padding = d while the step's index in the sampler's grid is below ⌊τ·N⌋; same
  weights, same output size;
- MSW-MSA (HiDiffusion; `hiresflow.patches.msw_msa`): the self-attention of the top level with attention (SD 1.x:
  level 0, SDXL: level 1) and of its mirrored output level attends within 2×2 windows of its token grid, the
  windows shifted by a quarter of the grid on odd steps, through ComfyUI's `attn1` replacement hook;
- RAU-Net (HiDiffusion; `hiresflow.patches.rau_net`, same schedule and roles as the library's): (a) the
  downsampler of level 0 (SD 1.x layout) or level 1 (SDXL layout) runs as stride 4, dilation 2, padding 2 (same
  weights; ⌈H/4⌉), (b) level 1's first (resnet, attention) pair is followed by a 2×2 average pool with ceil mode,
  through ComfyUI's `input_block_patch` (so its skip is the pooled map), (c) in the mirrored output level the map is
  brought back (bicubic) to the pre-pool size before the pair that reads the first un-pooled skip, through
  `output_block_patch`; (d) exact upsampling is ComfyUI's own (each `Upsample` gets the next skip's shape). Which
  parts run at step i of N follows `rau_schedule` (t1/t2 from the official table by target size, relative to the
  model's native latent; SDXL below 4× the aggressive schedule).
The step index is σ_c's position in `transformer_options["sample_sigmas"]`, which every ComfyUI sampler sets.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

__all__ = ["patch_unet", "dilated_convs", "window_attention", "outer_blocks", "unet_levels", "RAURoles", "rau_roles"]


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
    """(block name, number) of the transformer blocks of the top level that has attention (ComfyUI's attn1 replace
    keys): level 0 and its mirrored output level on SD 1.x, level 1 and its mirror on SDXL (whose level 0 has
    none), as the library's `window_level`."""
    from comfy.ldm.modules.attention import SpatialTransformer

    pairs, _, attention = unet_levels(unet)
    if True not in attention:
        return []
    k, n = attention.index(True), len(pairs)
    start = sum(len(pairs[n - 1 - j]) + 1 for j in range(n - 1 - k))
    blocks = [("input", i) for i in pairs[k]] + [("output", start + i) for i in range(len(pairs[k]) + 1)]
    source = {"input": unet.input_blocks, "output": unet.output_blocks}
    return [(name, i) for name, i in blocks if i < len(source[name])
            and any(isinstance(m, SpatialTransformer) for m in source[name][i])]


def unet_levels(unet) -> tuple[list[list[int]], list[int | None], list[bool]]:
    """Per input level: the input-block indices of its (resnet[, attention]) pairs, the input-block index of the
    downsampler that leaves it (None at the deepest level), and whether its pairs have attention."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock

    pairs: list[list[int]] = [[]]
    downs: list[int | None] = []
    attention: list[bool] = [False]
    for i, block in enumerate(unet.input_blocks):
        if i == 0:
            continue
        if isinstance(block[0], Downsample):
            downs.append(i)
            pairs.append([])
            attention.append(False)
        elif isinstance(block[0], ResBlock):
            pairs[-1].append(i)
            attention[-1] = attention[-1] or any(isinstance(m, SpatialTransformer) for m in block)
    return pairs, downs + [None], attention


@dataclass(frozen=True)
class RAURoles:
    """Where RAU-Net acts on a ComfyUI U-Net: the layout ("sd15": attention from the top level, "sdxl": from the
    second), the conv run ×4 (a; None when its level is the deepest), the input block after which the map is pooled
    (b) and the output block before whose concatenation it is restored (c)."""

    layout: str
    conv_down: torch.nn.Conv2d | None
    pool_block: int
    restore_block: int


def rau_roles(unet) -> RAURoles:
    """RAU-Net's roles on `unet` (the library's `unet_roles` table); one-line ValueError for another layout."""
    pairs, downs, attention = unet_levels(unet)
    n = len(pairs)
    fail = (f"RAU-Net knows SD 1.x-like (attention from the top level) and SDXL-like (attention from the second "
            f"level) U-Nets with at least 2 levels; this one has {n} level(s) with attention {attention}")
    if n < 2 or any(not p for p in pairs) or len(unet.output_blocks) != sum(len(p) + 1 for p in pairs):
        raise ValueError(fail)
    if attention[0]:
        layout = "sd15"
    elif attention[1]:
        layout = "sdxl"
    else:
        raise ValueError(fail)
    conv_level = 0 if layout == "sd15" else 1
    conv = None
    if downs[conv_level] is not None:
        op = getattr(unet.input_blocks[downs[conv_level]][0], "op", None)
        conv = op if isinstance(op, torch.nn.Conv2d) else None
    # output level j mirrors input level n-1-j and has len(pairs)+1 blocks; in the mirror of level 1, blocks
    # 0..L-1 read the pooled skips and block L the skip from level 0's downsampler (L = level 1's pairs)
    start = sum(len(pairs[n - 1 - j]) + 1 for j in range(n - 2))
    return RAURoles(layout, conv, pool_block=pairs[1][0], restore_block=start + len(pairs[1]))


def _native_latent(model) -> tuple[int, int]:
    """The model's native latent size: the loader's record (the embedded models) or the family's native / 8."""
    from .model import _native

    config = model.model.model_config
    side = getattr(config, "hiresflow_native_latent", None) or _native(config, 1) // 8
    return int(side), int(side)


@contextmanager
def _conv_geometry(conv: torch.nn.Conv2d, stride: int, padding: int, dilation: int) -> Iterator[None]:
    saved = conv.stride, conv.padding, conv.dilation
    conv.stride, conv.padding, conv.dilation = (stride, stride), (padding, padding), (dilation, dilation)
    try:
        yield
    finally:
        conv.stride, conv.padding, conv.dilation = saved


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


def patch_unet(model, dilation: int = 2, dilate_until: float = 0.7, msw_msa: bool = True, rau_net: bool = False,
               rau_t1: float | None = None, rau_t2: float | None = None):
    """A clone of ComfyUI MODEL `model` with the U-Net methods above; one-line error on a model without a U-Net.
    `rau_t1` / `rau_t2` (fractions of the steps) override the official table."""
    from hiresflow.patches.rau_net import rau_schedule, rau_thresholds

    unet = model.model.diffusion_model
    if not isinstance(unet, _unet_class()):
        raise ValueError(f"the U-Net patch applies to SD 1.x / SDXL U-Nets; this model is {type(unet).__name__}, "
                         f"a transformer; use hiresflow RoPE Patch or the hiresflow Sampler instead")
    if not (isinstance(dilation, int) and dilation >= 1):
        raise ValueError(f"dilation must be a whole number >= 1 (1 = off), got {dilation!r}")
    if not 0 <= dilate_until <= 1:
        raise ValueError(f"dilate_until must lie in [0, 1] (a fraction of the steps), got {dilate_until!r}")
    for name, v in (("rau_t1", rau_t1), ("rau_t2", rau_t2)):
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"{name} must lie in [0, 1] (a fraction of the steps) or be unset (-1 on the node: "
                             f"the official table), got {v!r}")
    roles = rau_roles(unet) if rau_net else None
    native = _native_latent(model) if rau_net else None
    patched = model.clone()
    if msw_msa:
        for name, number in outer_blocks(unet):
            patched.set_model_attn1_replace(window_attention, name, number)
    rau = {"pool": False, "size": None}  # this model call: pool on?, the pre-pool size (set by the pool patch)
    if roles is not None:
        def pool(h, options):
            if rau["pool"] and options.get("block") == ("input", roles.pool_block):
                rau["size"] = tuple(h.shape[-2:])
                return F.avg_pool2d(h, kernel_size=2, ceil_mode=True)
            return h

        def restore(h, hsp, options):
            if rau["size"] is not None and options.get("block") == ("output", roles.restore_block):
                h = F.interpolate(h, size=rau["size"], mode="bicubic")
                rau["size"] = None
            return h, hsp

        patched.set_model_input_block_patch(pool)
        patched.set_model_output_block_patch(restore)
    if dilation > 1 or roles is not None:
        previous = patched.model_options.get("model_function_wrapper")

        def wrapper(apply_model, args):
            live = patched.model.diffusion_model
            step = _step_index(args["c"].get("transformer_options", {}), args["timestep"])
            with ExitStack() as stack:
                if dilation > 1 and step is not None and step[0] < int(dilate_until * step[1]):
                    stack.enter_context(_dilated(dilated_convs(live), dilation))
                rau["pool"], rau["size"] = False, None
                if roles is not None and step is not None:
                    h, w = args["input"].shape[-2:]
                    large = h >= 4 * native[0] and w >= 4 * native[1]
                    t1, t2 = rau_thresholds(roles.layout, large)
                    t1 = t1 if rau_t1 is None else float(rau_t1)
                    t2 = t2 if rau_t2 is None else float(rau_t2)
                    aggressive = roles.layout == "sdxl" and not large
                    conv_on, rau["pool"] = rau_schedule(roles.layout, step[0], step[1], t1, t2, aggressive)
                    if conv_on and roles.conv_down is not None:
                        stack.enter_context(_conv_geometry(rau_roles(live).conv_down, 4, 2, 2))
                if previous is not None:
                    return previous(apply_model, args)
                return apply_model(args["input"], args["timestep"], **args["c"])

        patched.set_model_unet_function_wrapper(wrapper)
    return patched
