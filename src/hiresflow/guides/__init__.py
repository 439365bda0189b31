"""Guides: corrections inside the sampler, one file per method (the protocol is `hiresflow.stage.Guide`)."""

from . import demofusion, diffusehigh, hiflow, imax, skip_residual  # noqa: F401 - every config class importable

__all__ = ["demofusion", "diffusehigh", "hiflow", "imax", "skip_residual"]
