"""Reversible model patches, one file per idea (the protocol is `hiresflow.stage.ModelPatch`).

DiT toolkit: rope, attention, text_dup, shifted_patches, windowed_attention, sd3 (switches: toolkit).
UltraImage: ultraimage (dominant-frequency RoPE, entropy-guided attention concentration).
U-Net methods: rau_net, msw_msa (HiDiffusion), dilated_conv, scale_fusion (FreeScale), freeu (switches:
unet_toolkit; shared reversible tools: unet_tools).
"""

from . import (attention, dilated_conv, freeu, msw_msa, rau_net, rope, scale_fusion, sd3, shifted_patches,  # noqa: F401
               text_dup, toolkit, ultraimage, unet_toolkit, windowed_attention)

__all__ = ["attention", "dilated_conv", "freeu", "msw_msa", "rau_net", "rope", "scale_fusion", "sd3",
           "shifted_patches", "text_dup", "toolkit", "ultraimage", "unet_toolkit", "windowed_attention"]
