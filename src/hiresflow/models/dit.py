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
