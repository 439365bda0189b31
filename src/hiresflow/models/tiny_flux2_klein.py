"""The random tiny FLUX.2 [klein] model (`load_model("random-tiny-flux2-klein")`): `tiny_flux2.tiny_klein_pipeline`,
the true-CFG base variant (`is_distilled=False`); see `hiresflow.models.tiny_flux2` for what is kept and shrunk."""

from __future__ import annotations

from .tiny_flux2 import NATIVE, tiny_klein_pipeline

__all__ = ["NATIVE", "tiny_pipeline"]


def tiny_pipeline(seed: int = 0, **overrides):
    """A tiny `Flux2KleinPipeline` (`tiny_flux2.tiny_klein_pipeline(seed, **overrides)`)."""
    return tiny_klein_pipeline(seed, **overrides)
