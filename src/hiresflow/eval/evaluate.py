"""Evaluate one set of generated images (one method at one size) against ground truth and prompts.

`evaluate_set` computes every metric of the registry (`metrics`: FID/KID and their patch versions, IS, CLIP,
the reference-world rates, structure vs the native image, high-frequency energy ratio; each entry names its
compute function, whose docstring says what it needs), with n stated on every Score. Each compute function runs
once per set. Missing inputs or weights give "not computed" Scores with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import metrics as registry
from .inception import InceptionFeatures, to_uint8_hwc
from .patches import crop_anchors, crops_of
from .score import MetricUnavailable, Score
from .spec import MetricsSpec

__all__ = ["EvalTools", "evaluate_set", "METRICS", "HIGHER_IS_BETTER"]

#: report order (the registry's keys at import time; `metrics.keys()` sees metrics registered later)
METRICS = registry.keys()
HIGHER_IS_BETTER = {m.key: m.higher_is_better for m in registry.registry() if m.higher_is_better is not None}


@dataclass
class EvalTools:
    """The networks the metrics need, loaded once; `notes` says why any of them is absent."""

    inception: InceptionFeatures | None = None
    is_classifier: object | None = None
    clip: object | None = None
    notes: dict = field(default_factory=dict)

    @classmethod
    def load(cls, metrics: MetricsSpec, device=None, cache_dir=None) -> "EvalTools":
        tools = cls()
        if metrics.inception:
            try:
                tools.inception = InceptionFeatures(device=device, batch_size=metrics.batch_size, cache_dir=cache_dir)
            except MetricUnavailable as err:
                tools.notes["inception"] = str(err)
        else:
            tools.notes["inception"] = "FID/KID switched off in the spec (metrics.inception: false)"
        if metrics.inception_score:
            from .inception_score import load_is_classifier

            try:
                tools.is_classifier = load_is_classifier(device)
            except MetricUnavailable as err:
                tools.notes["is"] = str(err)
        else:
            tools.notes["is"] = "IS switched off in the spec (metrics.inception_score: false)"
        if metrics.clip:
            from .clip_score import load_clip_scorer

            try:
                tools.clip = load_clip_scorer(device)
            except MetricUnavailable as err:
                tools.notes["clip"] = str(err)
        else:
            tools.notes["clip"] = "CLIP score switched off in the spec (metrics.clip: false)"
        return tools

    def describe(self) -> dict:
        return {
            "inception": self.inception.describe() if self.inception else None,
            "is": getattr(self.is_classifier, "name", None),
            "clip": getattr(self.clip, "name", None),
            "notes": dict(self.notes),
        }


def evaluate_set(
    images: Sequence,
    prompts: Sequence[str],
    tools: EvalTools,
    metrics: MetricsSpec,
    native_size: tuple[int, int],
    references: Sequence | None = None,
    natives: Sequence | None = None,
    anchors: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[dict[str, Score], list[dict]]:
    """Scores (by `METRICS` name) and per-image records for one set of same-size images.

    images / references / natives: uint8 (H, W, 3) arrays (or anything `to_uint8_hwc` takes); references[i] is
    the ground truth of images[i] at the same size; natives[i] the native-stage image of the same run.
    anchors: crop anchors [n, K, 2]; default `crop_anchors(n, size, native_size, K, metrics.patch_seed)`.
    """
    gen = [to_uint8_hwc(im) for im in images]
    n = len(gen)
    if n == 0:
        raise ValueError("evaluate_set needs at least one image")
    if len(prompts) != n:
        raise ValueError(f"{n} images but {len(prompts)} prompts; pass one prompt per image")
    size = gen[0].shape[:2]
    if any(g.shape[:2] != size for g in gen):
        raise ValueError("all images of a set must have the same size; evaluate each size separately")
    refs = [to_uint8_hwc(r) for r in references] if references is not None else None
    if refs is not None and (len(refs) != n or any(r.shape != gen[0].shape for r in refs)):
        raise ValueError(f"references must be {n} images of the generated size {size[1]}x{size[0]}")
    if anchors is None:
        anchors = crop_anchors(n, size, native_size, metrics.patches, metrics.patch_seed)
    ctx = registry.EvalContext(images=gen, prompts=list(prompts), tools=tools, spec=metrics, native_size=native_size,
                               references=refs, natives=list(natives) if natives is not None else None,
                               anchors=anchors, crops=crops_of(gen, anchors, native_size),
                               records=[{} for _ in range(n)], progress=progress)
    scores: dict[str, Score] = {}
    done: set[int] = set()
    for m in registry.registry():
        if id(m.compute) in done:
            continue
        done.add(id(m.compute))
        got = m.compute(ctx)
        scores.update({m.key: got} if isinstance(got, Score) else got)
    return {k: scores[k] for k in registry.keys() if k in scores}, ctx.records
