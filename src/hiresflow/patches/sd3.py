"""SD3-family patches: positional-embedding extension beyond `pos_embed_max_size`, and proportional attention.

Positional embedding. SD3's `PatchEmbed` holds an M×M table (M = pos_embed_max_size) and centre-crops it to the
token grid, so grids larger than M fail. Modes:
- "interpolate" (position interpolation): the native-size centre crop of the table is resized bicubically to the
  current grid, so a 4× image spans the positions the model saw at its native size;
- "stretch": grids within M use the stock crop; larger grids resize the whole M×M table.
The patch swaps the table (and M) for one model call and restores both.

Proportional attention (SD3 has no RoPE): every query is multiplied by m = √(ln L / ln L_train) after its
projection (after the q-norm when the model has one), with L the joint key length of that attention — image
tokens plus the text tokens of the call, so duplicated text copies count — and L_train the same at the native
size with one text copy.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .attention import proportional_multiplier
from .base import ModulePatch, PatchConfig, PatchOrder, swapped

__all__ = ["SD3PositionConfig", "SD3ProportionalAttentionConfig"]


@dataclass
class SD3PositionConfig(PatchConfig):
    what: ClassVar[str] = "SD3 positional-embedding extension"
    mode: str = "interpolate"

    def __post_init__(self) -> None:
        if self.mode not in ("interpolate", "stretch"):
            raise ValueError(f"SD3 position mode must be 'interpolate' or 'stretch', got {self.mode!r}")

    def build(self, env) -> "SD3PositionPatch":
        env.model.check_patch(self)
        g = env.model.geometry
        return SD3PositionPatch(env.model.transformer.pos_embed, self.mode,
                                (g.native[0] // g.multiple, g.native[1] // g.multiple), g.patch)


class SD3PositionPatch(ModulePatch):
    name = "sd3_positions"
    order = PatchOrder.EMBEDDING

    def __init__(self, patch_embed, mode: str, native_grid: tuple[int, int], patch: int):
        self.pe, self.mode, self.native, self.patch = patch_embed, mode, native_grid, patch

    def table_for(self, rows: int, cols: int) -> torch.Tensor:
        M = self.pe.pos_embed_max_size
        table = self.pe.pos_embed.reshape(1, M, M, -1).permute(0, 3, 1, 2).float()
        if self.mode == "interpolate":
            nr, nc = min(self.native[0], M), min(self.native[1], M)
            top, left = (M - nr) // 2, (M - nc) // 2
            src = table[..., top : top + nr, left : left + nc]
        else:
            src = table
        return F.interpolate(src, size=(rows, cols), mode="bicubic", align_corners=False)

    @contextmanager
    def applied(self, x, ctx):
        rows, cols = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        M = self.pe.pos_embed_max_size
        if self.mode == "stretch" and rows <= M and cols <= M:
            yield
            return
        if self.mode == "interpolate" and (rows, cols) == self.native:
            yield
            return
        grid = self.table_for(rows, cols)  # [1, D, rows, cols]
        size = max(rows, cols)
        full = grid.new_zeros(1, grid.shape[1], size, size)
        top, left = (size - rows) // 2, (size - cols) // 2
        full[..., top : top + rows, left : left + cols] = grid
        table = full.permute(0, 2, 3, 1).reshape(1, size * size, -1).to(self.pe.pos_embed.dtype)
        with swapped(self.pe, "pos_embed", table), swapped(self.pe, "pos_embed_max_size", size):
            yield


class _Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor


@dataclass
class SD3ProportionalAttentionConfig(PatchConfig):
    what: ClassVar[str] = "SD3 proportional attention"

    def build(self, env) -> "SD3ProportionalAttention":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        text = model.text_tokens(env.cond)
        native = (g.native[0] // g.multiple) * (g.native[1] // g.multiple)
        return SD3ProportionalAttention(model, text, native, g.patch)


class SD3ProportionalAttention(ModulePatch):
    name = "sd3_proportional_attention"
    order = PatchOrder.ATTENTION_SCALE

    def __init__(self, model, text_tokens: int, native_tokens: int, patch: int):
        self.model = model
        self.attns = [m for m in model.transformer.modules() if hasattr(m, "to_q") and hasattr(m, "processor")]
        self.text, self.native, self.patch = text_tokens, native_tokens, patch

    def wrap(self, fn):
        def patched(x, ctx, cond):  # the text length of this call: after any text duplication (an outer patch)
            with self.scaled(x, self.model.text_tokens(cond)):
                return fn(x, ctx, cond)

        return patched

    @contextmanager
    def scaled(self, x, text_tokens: int):
        n = (x.shape[-2] // self.patch) * (x.shape[-1] // self.patch)
        with ExitStack() as stack:
            for attn in self.attns:
                joint = getattr(attn, "add_q_proj", None) is not None
                L, L_tr = (n + text_tokens, self.native + self.text) if joint else (n, self.native)
                m = proportional_multiplier(L, L_tr)
                if m == 1.0:
                    continue
                q_name = "norm_q" if getattr(attn, "norm_q", None) is not None else "to_q"
                stack.enter_context(swapped(attn, q_name, _Scaled(getattr(attn, q_name), m)))
                if joint:
                    a_name = "norm_added_q" if getattr(attn, "norm_added_q", None) is not None else "add_q_proj"
                    stack.enter_context(swapped(attn, a_name, _Scaled(getattr(attn, a_name), m)))
            yield
