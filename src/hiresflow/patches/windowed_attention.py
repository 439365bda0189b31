"""Windowed attention for DiT image tokens (HiDiffusion's MSW-MSA idea carried to Flux's joint attention).

In late steps of a high-resolution stage, each image query attends to all text keys plus the image keys of its
own window (the native token grid, e.g. 64×64 tokens for FLUX at 1024²); text queries stay global. Windows are
cyclically shifted by half a window on odd steps (decided from `ctx.step`, not a random draw or a call counter,
unlike HiDiffusion), so information crosses window borders. Grids that are not a multiple of the window are
zero-padded, and padded keys are masked out. Cost per image query: T + w instead of T + N keys.

With proportional attention on (`proportional=True`, set by the adapter when the stage also has
`ProportionalAttentionConfig`), the window's own key length L_w = T + w sets the scale: the rotary tables carry
√(ln L / ln L_train) for the global L, so the window scale is corrected by √(ln L_w / ln L).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import ModulePatch, PatchConfig, PatchOrder

__all__ = ["WindowedAttentionConfig", "WindowedFluxAttnProcessor", "windowed_joint_attention"]


def windowed_joint_attention(q, k, v, text_len: int, grid: tuple[int, int], window: tuple[int, int],
                             shift: tuple[int, int] = (0, 0), window_scale: float | None = None) -> torch.Tensor:
    """q, k, v: [B, T + rows·cols, H, D] (text first). Returns [B, T + rows·cols, H, D]."""
    B, S, H, D = q.shape
    T = text_len
    rows, cols = grid
    wr, wc = min(window[0], rows), min(window[1], cols)
    to_bhsd = lambda t: t.transpose(1, 2)  # noqa: E731
    text_out = F.scaled_dot_product_attention(to_bhsd(q[:, :T]), to_bhsd(k), to_bhsd(v)).transpose(1, 2)

    def windows(t):
        img = t[:, T:].reshape(B, rows, cols, H, D)
        if shift != (0, 0):
            img = torch.roll(img, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        ph, pw = (-rows) % wr, (-cols) % wc
        if ph or pw:
            img = F.pad(img, (0, 0, 0, 0, 0, pw, 0, ph))
        nh, nw = (rows + ph) // wr, (cols + pw) // wc
        img = img.reshape(B, nh, wr, nw, wc, H, D).permute(0, 1, 3, 2, 4, 5, 6)
        return img.reshape(B * nh * nw, wr * wc, H, D), (nh, nw, ph, pw)

    qw, (nh, nw, ph, pw) = windows(q)
    kw, _ = windows(k)
    vw, _ = windows(v)
    n_win = nh * nw
    kt = k[:, :T].repeat_interleave(n_win, dim=0)
    vt = v[:, :T].repeat_interleave(n_win, dim=0)
    keys = torch.cat([kt, kw], dim=1)
    vals = torch.cat([vt, vw], dim=1)
    mask = None
    if ph or pw:
        valid = torch.ones(rows + ph, cols + pw, dtype=torch.bool, device=q.device)
        valid[rows:, :] = False
        valid[:, cols:] = False
        valid = valid.reshape(nh, wr, nw, wc).permute(0, 2, 1, 3).reshape(n_win, wr * wc)
        mask = torch.cat([torch.ones(n_win, T, dtype=torch.bool, device=q.device), valid], dim=1)
        mask = mask.repeat(B, 1)[:, None, None, :]  # [B·n_win, 1, 1, T + w]
    out = F.scaled_dot_product_attention(to_bhsd(qw), to_bhsd(keys), to_bhsd(vals), attn_mask=mask,
                                         scale=window_scale).transpose(1, 2)
    out = out.reshape(B, nh, nw, wr, wc, H, D).permute(0, 1, 3, 2, 4, 5, 6).reshape(B, rows + ph, cols + pw, H, D)
    out = out[:, :rows, :cols]
    if shift != (0, 0):
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return torch.cat([text_out, out.reshape(B, rows * cols, H, D)], dim=1)


def flux_joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb):
    """Queries, keys, values of a diffusers Flux attention as its stock processor forms them: projected, split
    into heads [B, S, H, D], q/k-normed, text tokens first in joint blocks, rotary embedding applied. Returns
    (q, k, v, joint) — `joint` is True in the double-stream blocks, where the text comes as a second stream."""
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import _get_qkv_projections

    q, k, v, eq, ek, ev = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
    q, k, v = (t.unflatten(-1, (-1, attn.head_dim)) for t in (q, k, v))
    q, k = attn.norm_q(q), attn.norm_k(k)
    joint = attn.added_kv_proj_dim is not None and encoder_hidden_states is not None
    if joint:
        eq, ek, ev = (t.unflatten(-1, (-1, attn.head_dim)) for t in (eq, ek, ev))
        eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
        q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
    if image_rotary_emb is not None:
        q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
        k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
    return q, k, v, joint


class WindowedFluxAttnProcessor:
    """Attention processor for Flux joint and single blocks with windowed image attention."""

    def __init__(self, grid, window, shift, proportional: bool):
        self.grid, self.window, self.shift, self.proportional = grid, window, shift, proportional

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        q, k, v, _ = flux_joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        S = q.shape[1]
        n_img = self.grid[0] * self.grid[1]
        T = S - n_img
        scale = None
        if self.proportional:
            w = min(self.window[0], self.grid[0]) * min(self.window[1], self.grid[1])
            scale = math.sqrt(math.log(T + w) / math.log(S)) / math.sqrt(attn.head_dim)
        out = windowed_joint_attention(q, k, v, T, self.grid, self.window, self.shift, scale)
        out = out.flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is not None:
            enc, img = out.split_with_sizes([encoder_hidden_states.shape[1], n_img], dim=1)
            img = attn.to_out[1](attn.to_out[0](img.contiguous()))
            enc = attn.to_add_out(enc.contiguous())
            return img, enc
        return out


@dataclass
class WindowedAttentionConfig(PatchConfig):
    """Windows of `window` tokens (None: the native token grid) for steps with step ≥ start·n_steps.
    `proportional`: the stage's rotary tables carry proportional attention's global scale (correct it per window)."""

    what: ClassVar[str] = "windowed attention"
    start: float = 0.5
    window: tuple[int, int] | None = None
    shift: bool = True
    proportional: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.start <= 1:
            raise ValueError(f"windowed attention start must lie in [0, 1], got {self.start!r}")

    def build(self, env) -> "WindowedAttentionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        window = tuple(self.window) if self.window else (g.native[0] // g.multiple, g.native[1] // g.multiple)
        return WindowedAttentionPatch(self, model.transformer, window, g.patch)


class WindowedAttentionPatch(ModulePatch):
    name = "windowed_attention"
    order = PatchOrder.ATTENTION

    def __init__(self, cfg: WindowedAttentionConfig, transformer, window, patch: int):
        self.cfg, self.transformer, self.window, self.patch = cfg, transformer, window, patch

    def active(self, ctx) -> bool:
        return ctx.step >= self.cfg.start * ctx.n_steps

    @contextmanager
    def applied(self, x, ctx):
        grid = (x.shape[-2] // self.patch, x.shape[-1] // self.patch)
        if grid[0] <= self.window[0] and grid[1] <= self.window[1]:
            yield
            return
        shift = (self.window[0] // 2, self.window[1] // 2) if (self.cfg.shift and ctx.step % 2) else (0, 0)
        proportional = self.cfg.proportional
        original = self.transformer.attn_processors
        self.transformer.set_attn_processor(WindowedFluxAttnProcessor(grid, self.window, shift, proportional))
        try:
            yield
        finally:
            self.transformer.set_attn_processor(original)
