"""The U-Net methods' model patches as one set of switches; the U-Net adapter turns them into patch configs.

`model.unet_patches(UNetToolkit(...))` (`FlowModel.unet_patches`) returns the configs for one stage:
`SDFlowModel` maps every switch (SD 1.x/2.x, SDXL and the embedded tiny-sd, through their role maps); DiT
families have no U-Net, so they raise a one-line error when asked for any (`strict=True`, e.g. the `hidiffusion`
recipe) or return no patches (`strict=False`: `freescale` then runs its cascade only). Formulas and defaults are
in the patch modules: rau_net, msw_msa, dilated_conv, scale_fusion, freeu.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNetToolkit"]


@dataclass(frozen=True)
class UNetToolkit:
    # HiDiffusion
    rau_net: bool = False
    rau_t1: float | None = None  # None: the official table by target size
    rau_t2: float | None = None
    aggressive: bool | None = None  # None: official (SDXL below 4× native)
    turbo: bool | None = None  # None: from the model name
    msw_msa: bool = False
    window_shift: int | None = None  # None: seeded random diagonal shift; 0–3 fixed
    odd_windows: str = "resize"
    # FreeScale
    dilated_conv: bool = False
    dilation: int | None = None  # None: stage width // native width
    dilate_tau: float = 0.7
    scale_fusion: bool = False
    gaussian: str = "3d"
    fusion_sigma: float = 1.0
    # FreeU
    freeu: bool = False
    b1: float = 1.1
    b2: float = 1.2
    s1: float = 0.6
    s2: float = 0.4
    freeu_mode: str = "channels"

    @property
    def empty(self) -> bool:
        return not (self.rau_net or self.msw_msa or self.dilated_conv or self.scale_fusion or self.freeu)
