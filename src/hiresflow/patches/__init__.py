"""Reversible model patches, one file per idea (the protocol is `hiresflow.stage.ModelPatch`)."""

from . import attention, rope, sd3, shifted_patches, text_dup, toolkit, windowed_attention  # noqa: F401

__all__ = ["attention", "rope", "sd3", "shifted_patches", "text_dup", "toolkit", "windowed_attention"]
