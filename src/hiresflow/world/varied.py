"""The reference world as a training source with varied captions (the v3 caption grammar).

A drop-in for :mod:`hiresflow.world` as ``hiresflow train flux|sd --source hiresflow.world.varied``: the same views,
images and close-up prompts, but each full scene's caption is drawn by
:func:`hiresflow.world.phrasing.training_prompt` — half in the fixed grammar, half in the widened one — and the
vocabulary covers both (:func:`hiresflow.world.phrasing.varied_vocabulary`). No held-out test caption is ever a
training caption (see :mod:`hiresflow.world.phrasing`).
"""

from __future__ import annotations

import numpy as np

from .phrasing import training_prompt, varied_vocabulary
from .views import FULL_FRACTION
from .views import dataset_batch as _dataset_batch

__all__ = ["vocabulary", "dataset_batch", "VARIED_FRACTION"]

#: Share of full-scene captions in the widened grammar.
VARIED_FRACTION = 0.5


def vocabulary() -> list[str]:
    """Every word a training caption of this source can contain (fixed and widened grammar)."""
    return varied_vocabulary()


def _caption(scene, g: np.random.Generator) -> str:
    return training_prompt(scene, g, VARIED_FRACTION)


def dataset_batch(seed: int, batch: int, size: int = 64,
                  full_fraction: float = FULL_FRACTION) -> tuple[np.ndarray, list[str]]:
    """:func:`hiresflow.world.dataset_batch` with varied full-scene captions."""
    return _dataset_batch(seed, batch, size, full_fraction, caption=_caption)
