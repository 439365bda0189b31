"""Evaluate one set of generated images (one method at one size) against ground truth and prompts.

`evaluate_set` computes, with n stated on every Score:

| name | meaning | needs |
|---|---|---|
| fid, kid | whole images vs references, Inception pool features at 299² (`inception`, `fid`) | references, Inception |
| fid_patch, kid_patch | K native-size crops per image at paired anchors (`patches`) | references, Inception |
| is, is_patch | Inception Score of images / crops (`inception_score`) | logits weights |
| clip | CLIP score with the generating prompt (`clip_score`) | CLIP weights |
| dup_rate … color_acc | reference-world detectors vs prompt (`world_metrics`) | world prompts |
| psnr_native, ssim_native | result downsampled to the native size vs the native-stage image (`image_metrics`) | native images |
| hf_ratio | energy above the native Nyquist, generated / reference, geometric mean over images | references |

Missing inputs or weights give "not computed" Scores with a one-line reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .fid import frechet_distance, kid
from .image_metrics import hf_energy_ratio, structure_consistency
from .inception import InceptionFeatures, to_uint8_hwc
from .patches import crop_anchors, crops_of
from .score import MetricUnavailable, Score, not_computed
from .spec import MetricsSpec
from .world_metrics import WORLD_METRICS, world_scores

__all__ = ["EvalTools", "evaluate_set", "METRICS", "HIGHER_IS_BETTER"]

#: report order
METRICS = ["fid", "fid_patch", "kid", "kid_patch", "is", "is_patch", "clip", *WORLD_METRICS, "psnr_native",
           "ssim_native", "hf_ratio"]
HIGHER_IS_BETTER = {"fid": False, "fid_patch": False, "kid": False, "kid_patch": False, "is": True,
                    "is_patch": True, "clip": True, "psnr_native": True, "ssim_native": True,
                    **{k: v[1] for k, v in WORLD_METRICS.items()}}


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


def _fid_kid(name: str, real: np.ndarray, fake: np.ndarray, metrics: MetricsSpec, n: int,
             n_crops: int | None) -> tuple[Score, Score]:
    kname = "kid" + name[3:]
    if min(len(real), len(fake)) < 2:
        reason = f"needs at least 2 images, got {n}"
        return not_computed(name, reason, n, n_crops), not_computed(kname, reason, n, n_crops)
    f = frechet_distance(real, fake)
    mean, std, m = kid(real, fake, metrics.kid_subsets, metrics.kid_subset_size, seed=metrics.patch_seed)
    subsets = 1 if m == len(real) == len(fake) else metrics.kid_subsets
    return (Score(name, f, None, n, n_crops, f"{len(fake)} generated vs {len(real)} reference feature rows"),
            Score(kname, mean, std, n, n_crops, f"{subsets} subset(s) of {m}"))


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
    n_crops = int(anchors.shape[0] * anchors.shape[1])
    scores: dict[str, Score] = {}
    records: list[dict] = [{} for _ in range(n)]
    no_ref = "no ground truth: listed prompts are not reference-world scenes (use prompts: {world: ...})"

    # Inception: FID/KID whole and patch
    gen_crops = crops_of(gen, anchors, native_size)
    if tools.inception is None:
        why = tools.notes.get("inception", "Inception network unavailable")
        for k in ("fid", "kid"):
            scores[k] = not_computed(k, why, n)
            scores[k + "_patch"] = not_computed(k + "_patch", why, n, n_crops)
    elif refs is None:
        for k in ("fid", "kid"):
            scores[k] = not_computed(k, no_ref, n)
            scores[k + "_patch"] = not_computed(k + "_patch", no_ref, n, n_crops)
    else:
        inc = tools.inception
        f_gen = inc(gen, progress="inception: images" if progress else False)
        f_ref = inc(refs, progress="inception: references" if progress else False)
        scores["fid"], scores["kid"] = _fid_kid("fid", f_ref, f_gen, metrics, n, None)
        fc_gen = inc(gen_crops, progress="inception: crops" if progress else False)
        fc_ref = inc(crops_of(refs, anchors, native_size), progress="inception: reference crops" if progress else False)
        scores["fid_patch"], scores["kid_patch"] = _fid_kid("fid_patch", fc_ref, fc_gen, metrics, n, n_crops)

    # IS
    if tools.is_classifier is None:
        why = tools.notes.get("is", "IS network unavailable")
        scores["is"] = not_computed("is", why, n)
        scores["is_patch"] = not_computed("is_patch", why, n, n_crops)
    else:
        from .inception_score import inception_score_from_logits

        m, s, k = inception_score_from_logits(tools.is_classifier(gen), metrics.is_splits)
        scores["is"] = Score("is", m, s, n, None, f"{k} splits")
        m, s, k = inception_score_from_logits(tools.is_classifier(gen_crops), metrics.is_splits)
        scores["is_patch"] = Score("is_patch", m, s, n, n_crops, f"{k} splits")

    # CLIP
    if tools.clip is None:
        scores["clip"] = not_computed("clip", tools.notes.get("clip", "CLIP weights unavailable"), n)
    else:
        cs = tools.clip(gen, list(prompts))
        scores["clip"] = Score("clip", float(cs.mean()), float(cs.std()), n, None, getattr(tools.clip, "name", ""))
        for r, v in zip(records, cs):
            r["clip"] = float(v)

    # reference world
    if metrics.world:
        ws, checks = world_scores(gen, list(prompts))
        scores.update(ws)
        for r, c in zip(records, checks):
            if c:
                r["world"] = c
    else:
        for k in WORLD_METRICS:
            scores[k] = not_computed(k, "world metrics switched off in the spec (metrics.world: false)", n)

    # structure consistency against the native stage
    nat = [to_uint8_hwc(x) if x is not None else None for x in natives] if natives is not None else None
    pairs = [(i, g, x) for i, (g, x) in enumerate(zip(gen, nat or [])) if x is not None and x.shape[0] < g.shape[0]]
    if not pairs:
        why = "no smaller native-stage image (e.g. direct sampling at the target size)"
        scores["psnr_native"] = not_computed("psnr_native", why, n)
        scores["ssim_native"] = not_computed("ssim_native", why, n)
    else:
        ps, ss = [], []
        for i, g, x in pairs:
            p, s = structure_consistency(g, x)
            records[i]["psnr_native"], records[i]["ssim_native"] = p, s
            ps.append(min(p, 100.0))  # identical images (inf dB) capped at 100 dB in the mean
            ss.append(s)
        note = f"result downsampled to {pairs[0][2].shape[1]}x{pairs[0][2].shape[0]}"
        scores["psnr_native"] = Score("psnr_native", float(np.mean(ps)), float(np.std(ps)), len(ps), None, note)
        scores["ssim_native"] = Score("ssim_native", float(np.mean(ss)), float(np.std(ss)), len(ss), None, note)

    # high-frequency energy vs ground truth
    if refs is None:
        scores["hf_ratio"] = not_computed("hf_ratio", no_ref, n)
    elif tuple(size) == tuple(native_size):
        scores["hf_ratio"] = not_computed("hf_ratio", "images are at the native size: no band above its Nyquist", n)
    else:
        logs = []
        for i, (g, r) in enumerate(zip(gen, refs)):
            v = hf_energy_ratio(g, r, native_size)
            records[i]["hf_ratio"] = v
            logs.append(math.log(max(v, 1e-12)))
        scores["hf_ratio"] = Score("hf_ratio", float(math.exp(np.mean(logs))), float(np.std(logs)), n, None,
                                   "geometric mean of per-image ratios; std of the log ratio")
    return {k: scores[k] for k in METRICS if k in scores}, records
