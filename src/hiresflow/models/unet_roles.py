"""Role maps of a diffusers `UNet2DConditionModel`: which blocks and layers the U-Net methods act on.

The official HiDiffusion and FreeScale codes name modules of two checkpoints (`down_blocks.1`,
`up_blocks.2.upsamplers.0.conv`, …). hiresflow finds the same modules from the structure instead — block type
(does a level have attention?) and position (level k of n) — so the methods also run on U-Nets with other depths,
such as the embedded three-level tiny-sd-v1 (tiny-sd v2 has SD 1.5's own module tree):

    layout "sd15"  attention from the top level down (SD 1.x/2.x and tiny-sd v2: CrossAttnDown ×3 + Down; tiny-sd-v1: ×2 + Down)
    layout "sdxl"  no attention at the top level, attention from the second level (SDXL: Down + CrossAttnDown ×2)

Level k's down block is mirrored by up block n−1−k (its skips come back there). Per layout:

| role | sd15 layout | sdxl layout | used by |
|---|---|---|---|
| `conv_down` (×4 downsampler) | level 0's downsampler conv | level 1's downsampler conv (if level 1 is not the deepest) | RAU-Net (a) |
| `pool_level` (pooled down block) | level 1 | level 1 | RAU-Net (b); restored in up block n−2 (c) |
| `window_level` (MSW-MSA) | level 0 (top) | level 1 (top level with attention) | MSW-MSA |
| `dilated_convs` | downsampler into the deepest level, the deepest down block's resnet convs, the mid block's resnet convs | same | FreeScale (nine convs on SDXL) |

SD1.5 gets exactly HiDiffusion's `down_blocks.0.downsamplers.0.conv`, `down_blocks.1`, `up_blocks.2`, MSW-MSA on
`down_blocks.0` / `up_blocks.3`; SDXL gets `down_blocks.1`(+ its downsampler), `up_blocks.1`, MSW-MSA on
`down_blocks.1` / `up_blocks.1`, and FreeScale's nine convs. A U-Net that fits neither layout gets a one-line
`ValueError` naming its block types.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from torch import nn

__all__ = ["UNetRoles", "unet_roles"]


def _has_attention(block) -> bool:
    return bool(getattr(block, "attentions", None)) and len(block.attentions) > 0


def _describe(unet) -> str:
    down = [type(b).__name__ for b in getattr(unet, "down_blocks", [])]
    up = [type(b).__name__ for b in getattr(unet, "up_blocks", [])]
    return f"down {down}, up {up}"


@dataclass(frozen=True)
class UNetRoles:
    """Blocks and layers of one U-Net by role (see the module docstring for the table)."""

    unet: nn.Module
    layout: str  # "sd15" or "sdxl"

    @property
    def levels(self) -> int:
        return len(self.unet.down_blocks)

    def mirror(self, level: int) -> nn.Module:
        """The up block that consumes level `level`'s skips."""
        return self.unet.up_blocks[self.levels - 1 - level]

    # ---------------------------------------------------------- RAU-Net

    @property
    def conv_level(self) -> int:
        return 0 if self.layout == "sd15" else 1

    @property
    def conv_down(self) -> nn.Module | None:
        """The stride-2 conv that RAU-Net runs as stride 4 (a); None when that level is the deepest (a two-level
        SDXL-like U-Net, which then gets the pool/bicubic pair only, like SDXL-Turbo)."""
        ds = getattr(self.unet.down_blocks[self.conv_level], "downsamplers", None)
        return ds[0].conv if ds else None

    @property
    def pool_level(self) -> int:
        return 1

    @property
    def pool_after(self) -> nn.Module:
        """Last module of the first (resnet, attention) pair of the pooled down block (b): pooled after it."""
        block = self.unet.down_blocks[self.pool_level]
        return block.attentions[0] if _has_attention(block) else block.resnets[0]

    @property
    def restore_after(self) -> nn.Module:
        """Last module of the mirrored up block's pair whose output meets the first un-pooled skip (c).

        The mirror of a down block with L pairs has L + 1 pairs; pairs 0..L−1 read the pooled skips, pair L the
        skip from the level above, so the map is restored after pair L − 1 (HiDiffusion's `i == 1` for L = 2)."""
        up = self.mirror(self.pool_level)
        i = len(up.resnets) - 2
        return up.attentions[i] if _has_attention(up) else up.resnets[i]

    def upsampler_targets(self) -> list[tuple[nn.Module, int]]:
        """(upsampler, level whose input size it must produce) for every up block with an upsampler (d)."""
        out = []
        for j, up in enumerate(self.unet.up_blocks):
            if getattr(up, "upsamplers", None):
                out.append((up.upsamplers[0], self.levels - 2 - j))
        return out

    # ---------------------------------------------------------- attention

    @property
    def window_level(self) -> int:
        return 0 if self.layout == "sd15" else 1

    def window_transformers(self) -> list[nn.Module]:
        """The `Transformer2DModel`s of the top attention level, down and up (MSW-MSA)."""
        k = self.window_level
        return list(self.unet.down_blocks[k].attentions) + list(self.mirror(k).attentions)

    def all_transformers(self) -> list[nn.Module]:
        """Every `Transformer2DModel` of the U-Net, down, mid and up (scale fusion)."""
        blocks = list(self.unet.down_blocks) + [self.unet.mid_block] + list(self.unet.up_blocks)
        return [t for b in blocks if _has_attention(b) for t in b.attentions]

    # ---------------------------------------------------------- FreeScale / FreeU

    def dilated_convs(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of FreeScale's restrained dilated convs: the downsampler into the deepest level, the
        deepest down block's resnet conv1/conv2 and the mid block's resnet conv1/conv2 (nine on SDXL)."""
        n = self.levels
        names = [f"down_blocks.{n - 2}.downsamplers.0.conv"]
        names += [f"down_blocks.{n - 1}.resnets.{i}.conv{c}" for i in range(len(self.unet.down_blocks[n - 1].resnets))
                  for c in (1, 2)]
        names += [f"mid_block.resnets.{i}.conv{c}" for i in range(len(self.unet.mid_block.resnets)) for c in (1, 2)]
        return [(name, self.unet.get_submodule(name)) for name in names]

    @cached_property
    def widths(self) -> tuple[int, ...]:
        """Distinct channel widths, widest first (FreeU's b1 acts on the widest, b2 on the next)."""
        return tuple(sorted(set(int(c) for c in self.unet.config.block_out_channels), reverse=True))

    def up_pairs(self) -> list[tuple[int, int, nn.Module, int]]:
        """(up block index, pair index, resnet, channels of the backbone part of its input) for every up pair:
        the resnet sees cat([backbone, skip]); the backbone has prev_output_channel channels in pair 0, out in the rest."""
        rev = list(reversed([int(c) for c in self.unet.config.block_out_channels]))
        out = []
        for j, up in enumerate(self.unet.up_blocks):
            prev = rev[max(j - 1, 0)]
            for i, res in enumerate(up.resnets):
                out.append((j, i, res, prev if i == 0 else rev[j]))
        return out


def unet_roles(unet) -> UNetRoles:
    """Detect the layout of `unet` from its block types and positions; one-line `ValueError` if none fits."""
    down = getattr(unet, "down_blocks", None)
    up = getattr(unet, "up_blocks", None)
    fail = (f"no U-Net role map fits this U-Net ({_describe(unet)}); the U-Net methods know SD1.5/2.1-like "
            f"(attention from the top level) and SDXL-like (attention from the second level) diffusers "
            f"UNet2DConditionModels with at least 2 levels")
    if down is None or up is None or getattr(unet, "mid_block", None) is None or len(down) != len(up) or len(down) < 2:
        raise ValueError(fail)
    n = len(down)
    if any(not getattr(down[k], "downsamplers", None) for k in range(n - 1)) or getattr(down[-1], "downsamplers", None):
        raise ValueError(fail)
    attn = [_has_attention(b) for b in down]
    if attn[0]:
        layout = "sd15"
    elif attn[1]:
        layout = "sdxl"
    else:
        raise ValueError(fail)
    if any(_has_attention(up[n - 1 - k]) != attn[k] for k in range(n)):
        raise ValueError(fail)
    return UNetRoles(unet, layout)
