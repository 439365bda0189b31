"""Text duplication for MMDiTs at high resolution (I-Max §3.2): repeat the text sequence k_h·k_w times.

k_h = max(1, rows // native_rows), k_w likewise (rows = image token rows of the current input, so 2/3/4 for
2K/3K/4K squares from 1K). How the copies are made is the adapter's (`FlowModel.duplicate_text`):
Flux (I-Max layout): copy (i, j) gets text ids (0, native_rows·i, native_cols·j), the top-left origin of its
native tile (64·i, 64·j at 1024²); the pooled vector is unchanged (`duplicate_flux_text`).
SD3 (no RoPE): plain repetition of the joint text sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import ModelPatch, PatchConfig, PatchOrder

__all__ = ["TextDuplicationConfig", "duplicate_flux_text"]


def duplicate_flux_text(embeds: torch.Tensor, text_ids: torch.Tensor, kh: int, kw: int, tile: tuple[int, int]):
    """(embeds [B, T, D], ids [T, 3]) → ([B, T·kh·kw, D], [T·kh·kw, 3]) with grid-origin ids per copy."""
    copies, ids = [], []
    for i in range(kh):
        for j in range(kw):
            copies.append(embeds)
            t = text_ids.clone()
            t[:, 1] = t[:, 1] + tile[0] * i
            t[:, 2] = t[:, 2] + tile[1] * j
            ids.append(t)
    return torch.cat(copies, dim=1), torch.cat(ids, dim=0)


@dataclass
class TextDuplicationConfig(PatchConfig):
    what: ClassVar[str] = "text duplication"

    def build(self, env) -> "TextDuplicationPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        tile = (g.native[0] // g.multiple, g.native[1] // g.multiple)
        return TextDuplicationPatch(model, tile, g.patch)


class TextDuplicationPatch(ModelPatch):
    name = "text_duplication"
    order = PatchOrder.INPUT

    def __init__(self, model, tile: tuple[int, int], patch: int):
        self.model, self.tile, self.patch = model, tile, patch
        self._cache: dict = {}

    def factors(self, x: torch.Tensor) -> tuple[int, int]:
        rows, cols = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        return max(1, rows // self.tile[0]), max(1, cols // self.tile[1])

    def _dup(self, cond, kh: int, kw: int):
        if cond is None or kh * kw == 1:
            return cond
        key = (id(cond), kh, kw)
        if key not in self._cache:
            new = self.model.duplicate_text(cond, kh, kw, self.tile)
            self._cache = {key: new}  # one stage, one cond: keep a single entry
        return self._cache[key]

    def wrap(self, fn):
        def patched(x, ctx, cond):
            kh, kw = self.factors(x)
            return fn(x, ctx, self._dup(cond, kh, kw))

        return patched
