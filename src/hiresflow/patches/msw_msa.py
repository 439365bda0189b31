"""MSW-MSA (HiDiffusion): the top blocks' self-attention in a 2×2 grid of windows with a random diagonal shift.

Patched: `attn1` (self-attention) of every transformer block in the top attention level, down and up
(`UNetRoles.window_transformers`: SD1.5 `down_blocks.0` / `up_blocks.3`, SDXL `down_blocks.1` / `up_blocks.1`,
tiny-sd v2 as SD1.5, tiny-sd-v1 `down_blocks.0` / `up_blocks.2`); cross-attention and the feed-forward stay global. At every step:

    feature map H × W (as this call sees it, pooled or not) → windows of (⌈H/2⌉, ⌈W/2⌉), always 2 × 2 of them;
    shift (s_h, s_w) = (⌊w_h/4⌋·k, ⌊w_w/4⌋·k), k ∈ {0, 1, 2, 3} uniform, per block call;
    roll by −s, partition, attention inside each window, merge, roll by +s.
No Swin mask: tokens wrapped around by the roll attend to each other (as in the official code). Cost per query:
N/4 keys instead of N, so self-attention costs a quarter of global attention at the same size.

Odd H or W: `odd="resize"` (official) resizes the map bicubically to 2·⌈H/2⌉ × 2·⌈W/2⌉ and back, with a
warning (the authors suggest switching window attention off then); `odd="pad"` pads the last row/column by
replication and crops it after — no resampling of the features.

Randomness: k comes from a `torch.Generator` seeded from the stage generator's seed, the step and the block index
(the official code draws `torch.rand(1)` from the global RNG): the same seed gives the same shifts, and separate
cond/uncond calls of one step get the same shifts as one batched call. `shift=k` fixes the shift for every block.
The official code rolls only when the row shift is non-zero; here the roll happens when either shift is.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import ModulePatch, PatchConfig, PatchOrder
from .unet_tools import TemporaryHooks, derived_seed, feature_grids, swapped_processors

__all__ = ["MSWMSAConfig", "MSWMSAPatch", "window_partition", "window_merge", "WindowedSelfAttention"]

ODD_MODES = ("resize", "pad")


def _shift(window: tuple[int, int], k: int) -> tuple[int, int]:
    return (window[0] // 4 * k, window[1] // 4 * k)


def window_partition(x: torch.Tensor, grid: tuple[int, int], k: int, odd: str = "resize"):
    """[B, H·W, C] → ([4B, w_h·w_w, C], state) with the 2×2 windows of the (shifted) map, batch-major."""
    B, N, C = x.shape
    H, W = grid
    if H * W != N:
        raise ValueError(f"MSW-MSA: {N} tokens do not form the recorded {H}x{W} feature map")
    win = (math.ceil(H / 2), math.ceil(W / 2))
    m = x.view(B, H, W, C)
    if H % 2 or W % 2:
        if odd == "resize":
            m = F.interpolate(m.permute(0, 3, 1, 2), size=(2 * win[0], 2 * win[1]), mode="bicubic")
            m = m.permute(0, 2, 3, 1)
        else:
            m = F.pad(m.permute(0, 3, 1, 2), (0, 2 * win[1] - W, 0, 2 * win[0] - H), mode="replicate")
            m = m.permute(0, 2, 3, 1)
    s = _shift(win, k)
    if s != (0, 0):
        m = torch.roll(m, shifts=(-s[0], -s[1]), dims=(1, 2))
    m = m.reshape(B, 2, win[0], 2, win[1], C).permute(0, 1, 3, 2, 4, 5)
    return m.reshape(B * 4, win[0] * win[1], C), (B, H, W, win, s)


def window_merge(y: torch.Tensor, state, odd: str = "resize") -> torch.Tensor:
    """Inverse of `window_partition` for the attention output [4B, w_h·w_w, C] → [B, H·W, C]."""
    B, H, W, win, s = state
    C = y.shape[-1]
    m = y.reshape(B, 2, 2, win[0], win[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B, 2 * win[0], 2 * win[1], C)
    if s != (0, 0):
        m = torch.roll(m, shifts=s, dims=(1, 2))
    if H % 2 or W % 2:
        if odd == "resize":
            m = F.interpolate(m.permute(0, 3, 1, 2), size=(H, W), mode="bicubic").permute(0, 2, 3, 1)
        else:
            m = m[:, :H, :W]
    return m.reshape(B, H * W, C)


class WindowedSelfAttention:
    """Processor wrapper: windows in, the block's own processor inside each window, windows out."""

    def __init__(self, inner, patch: "MSWMSAPatch", transformer: int, block: int):
        self.inner, self.patch, self.transformer, self.block = inner, patch, transformer, block

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None or hidden_states.ndim != 3:  # not plain self-attention: leave it
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        grid = self.patch.grids[self.transformer]
        if grid[0] * grid[1] != hidden_states.shape[1]:  # a window of another patch (scale fusion): as is
            return self.inner(attn, hidden_states, None, attention_mask, temb, **kwargs)
        k = self.patch.shifts[self.block]
        odd = self.patch.odd
        xw, state = window_partition(hidden_states, grid, k, odd)
        out = self.inner(attn, xw, None, attention_mask, temb, **kwargs)
        return window_merge(out, state, odd)


@dataclass
class MSWMSAConfig(PatchConfig):
    """shift: None = random diagonal shift per block call (official); 0–3 = that shift for every block.
    odd: "resize" (official) or "pad" for odd feature sizes."""

    what: ClassVar[str] = "MSW-MSA"
    shift: int | None = None
    odd: str = "resize"

    def __post_init__(self) -> None:
        if self.shift is not None and self.shift not in (0, 1, 2, 3):
            raise ValueError(f"MSW-MSA shift must be 0, 1, 2 or 3 (quarters of a window) or unset for the random "
                             f"shift, got {self.shift!r}")
        if self.odd not in ODD_MODES:
            raise ValueError(f"MSW-MSA odd must be 'resize' (official) or 'pad', got {self.odd!r}")

    def build(self, env) -> "MSWMSAPatch":
        env.model.check_patch(self)
        roles = env.model.unet_roles
        return MSWMSAPatch(self, roles.window_transformers(), int(env.generator.initial_seed()))


class MSWMSAPatch(ModulePatch):
    name = "msw_msa"
    order = PatchOrder.ATTENTION

    def __init__(self, cfg: MSWMSAConfig, transformers, seed: int):
        self.cfg, self.transformers, self.seed, self.odd = cfg, list(transformers), seed, cfg.odd
        self.attns = [(ti, blk.attn1) for ti, t in enumerate(self.transformers) for blk in t.transformer_blocks]
        self.grids: dict[int, tuple[int, int]] = {}
        self.shifts: list[int] = []
        self._warned = False

    def shifts_at(self, step: int) -> list[int]:
        """k per patched block at `step`."""
        if self.cfg.shift is not None:
            return [int(self.cfg.shift)] * len(self.attns)
        out = []
        for b in range(len(self.attns)):
            g = torch.Generator().manual_seed(derived_seed(self.seed, "msw_msa", step, b))
            out.append(int(torch.randint(0, 4, (1,), generator=g)))
        return out

    @contextmanager
    def applied(self, x, ctx):
        self.shifts = self.shifts_at(ctx.step)
        index = {id(t): i for i, t in enumerate(self.transformers)}

        def on_grid(t, hw):
            if self.odd == "resize" and (hw[0] % 2 or hw[1] % 2) and not self._warned:
                warnings.warn(f"MSW-MSA: feature map {hw[1]}x{hw[0]} has an odd side; it is resized to even and "
                              f"back (official behaviour); use odd='pad' or switch MSW-MSA off", stacklevel=2)
                self._warned = True
            self.grids[index[id(t)]] = hw

        pairs = [(attn, lambda old, _t=ti, _b=b: WindowedSelfAttention(old, self, _t, _b))
                 for b, (ti, attn) in enumerate(self.attns)]
        with TemporaryHooks() as hooks, swapped_processors(pairs):
            feature_grids(hooks, self.transformers, on_grid)
            yield
