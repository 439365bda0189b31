"""The DiT inference toolkit as one set of family-neutral switches; each adapter turns them into its patches.

`model.toolkit_patches(DiTToolkit(...))` returns the patch configs for a high-resolution stage
(`FlowModel.toolkit_patches`): Flux maps every switch (NTK/PI RoPE — or, when `rope` is given, that RoPE
extrapolation instead, e.g. DyPE —, proportional attention on the rotary tables, text duplication with grid ids,
shifted patchification, windowed attention); SD3 maps text duplication, shifted
patchification and proportional attention (query scaling) and always extends its positional table; U-Nets map
none (their methods are U-Net patches). Formulas and defaults: docs/methods/dit-toolkit.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DiTToolkit"]


@dataclass(frozen=True)
class DiTToolkit:
    ntk: float = 1.0  # NTK factor on the RoPE base (1 = stock)
    pi_floor: bool = False  # I-Max's position-interpolation floor on the RoPE frequencies
    proportional_attention: bool = False
    text_duplication: bool = False
    shifted_patches: bool = False
    shift_frame: str = "sample"  # "sample" (official): pad the sample on even steps; "model": pad only the model input
    windowed_attention: float | None = None  # first step fraction with windowed attention; None = off
    rope: "object | None" = None  # a RopeExtrapolationConfig (PI/NTK/YaRN, DyPE) replacing the NTK/PI RoPE above
