"""Shared parts of the diffusion-transformer adapters (Flux, SD3): device/dtype and the flow-match σ rule."""

from __future__ import annotations

import torch

from ..flow.schedule import FluxShiftConfig, flow_sigmas, flux_mu
from .base import FlowModel

__all__ = ["DiTFlowModel"]


class DiTFlowModel(FlowModel):
    """Base for adapters around a diffusers transformer with a `FlowMatchEulerDiscreteScheduler` config."""

    transformer: torch.nn.Module

    def _read_scheduler(self, scheduler_config, default_shift: float) -> None:
        sc = scheduler_config
        self.dynamic_shift = bool(sc.get("use_dynamic_shifting", False))
        self.static_shift = float(sc.get("shift", default_shift))
        self.shift_config = FluxShiftConfig(
            base_seq_len=int(sc.get("base_image_seq_len", 256)),
            max_seq_len=int(sc.get("max_image_seq_len", 4096)),
            base_shift=float(sc.get("base_shift", 0.5)),
            max_shift=float(sc.get("max_shift", 1.15)),
        )

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    cfg_calls: int = 1  # velocity evaluations per step (2 for true CFG run as two calls)
    cfg_batch: int = 1  # batch rows of one call (2 when cond and uncond share a call)
    text_len: int = 512

    def _dims(self) -> tuple[int, int, int]:
        """(width D, transformer blocks L, parameters P) of the transformer."""
        cfg = self.transformer.config
        width = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
        layers = int(cfg.num_layers) + int(getattr(cfg, "num_single_layers", 0) or 0)
        params = sum(p.numel() for p in self.transformer.parameters())
        return width, layers, params

    def _tokens(self, latent_hw, text_copies) -> int:
        p = self.geometry.patch
        return (latent_hw[0] // p) * (latent_hw[1] // p) + self.text_len * text_copies

    def call_bytes(self, latent_hw, text_copies=1) -> int:
        """≈ 40 float activations per token and width (fitted on the embedded Flux model's peak RSS)."""
        width, _, _ = self._dims()
        return 40 * self._tokens(latent_hw, text_copies) * width * 4 * self.cfg_batch

    def call_flops(self, latent_hw, text_copies=1) -> float:
        """2·P·N (weights) + 4·L·N²·D (attention scores and values) per batch row and CFG call."""
        width, layers, params = self._dims()
        n = self._tokens(latent_hw, text_copies)
        return float(2 * params * n + 4 * layers * n * n * width) * self.cfg_batch * self.cfg_calls

    def image_seq_len(self, size: tuple[int, int]) -> int:
        p = self.geometry.multiple
        return (size[0] // p) * (size[1] // p)

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """Explicit `mu`/`shift` win; otherwise the scheduler's rule: dynamic μ from the token count of `size`
        (FLUX.1-dev) or its static shift (FLUX.1-schnell, SD3, the embedded model)."""
        if mu is None and shift is None:
            if self.dynamic_shift:
                mu = flux_mu(self.image_seq_len(size), self.shift_config)
            else:
                shift = self.static_shift
        return flow_sigmas(steps, shift=shift, mu=mu)
