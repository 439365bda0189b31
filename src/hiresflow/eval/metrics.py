"""The metric registry: every metric of `hiresflow bench` declared once.

A `Metric` says what the metric is called (`key` in results.json, `name` in table headers), which way is better
(`direction`: ↑, ↓ or →1), how it is printed (`digits`, `scale`), which tables show it (`tables`: the quality
tables 1 and 3, the per-seed-set table, the README table of `benchmarks/readme_table.py`, each with optional
header/format overrides) and how it is computed (`compute`). Everything else reads this registry: the order of
the metrics in results.json (`keys()`), `evaluate.evaluate_set`, `report` (Tables 1/3, the per-seed table, the
"best" markers) and `benchmarks/readme_table.py`.

`compute(ctx: EvalContext)` returns a `Score`, or a dict of Scores when one computation yields several metrics
(FID and KID share Inception features; the world detectors give all world rates at once). Metrics that share a
compute function form a family; `evaluate_set` calls each function once, in registry order, and a function may
add per-image values to `ctx.records`.

Adding a metric is one entry in `_DECLARED` below, e.g.::

    Metric("mean_luma", "luma", UP, compute=mean_luma, digits=3, tables={QUALITY: Column()},
           about="mean luminance"),

with `def mean_luma(ctx): return Score("mean_luma", float(np.mean(ctx.images)) / 255, None, ctx.n)` (or a lambda).
`register()` adds one at run time (tests, plug-ins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .score import Score, not_computed

__all__ = ["Metric", "Column", "EvalContext", "UP", "DOWN", "ONE", "QUALITY", "SEEDS", "README", "TABLES",
           "register", "unregister", "registry", "get", "keys", "columns", "family", "higher_is_better",
           "NO_REFERENCE"]

UP, DOWN, ONE = "up", "down", "one"  # higher is better, lower is better, closest to 1 is best
ARROWS = {UP: "↑", DOWN: "↓", ONE: "→1"}

QUALITY = "quality"  # results.md Tables 1 (comparison) and 3 (ablation), ground-truth row included
SEEDS = "seeds"  # results.md per-seed-set table ("a / b")
README = "readme"  # benchmarks/readme_table.py
TABLES = (QUALITY, SEEDS, README)

NO_REFERENCE = "no ground truth: listed prompts are not reference-world scenes (use prompts: {world: ...})"


@dataclass(frozen=True)
class Column:
    """How a metric appears in one table: header name and digits (default: the metric's), and, in the README
    table, whether the per-seed-set values follow in brackets."""

    name: str | None = None
    digits: int | None = None
    by_seed: bool = False


@dataclass(frozen=True)
class Metric:
    key: str
    name: str
    direction: str
    compute: Callable[["EvalContext"], Any]
    digits: int = 2
    scale: float = 1.0
    tables: Mapping[str, Column] = field(default_factory=dict)
    about: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ARROWS:
            raise ValueError(f"metric {self.key!r}: direction must be one of {', '.join(ARROWS)}")
        bad = sorted(set(self.tables) - set(TABLES))
        if bad:
            raise ValueError(f"metric {self.key!r}: unknown table(s) {', '.join(bad)}; tables: {', '.join(TABLES)}")

    @property
    def higher_is_better(self) -> bool | None:
        """True (↑), False (↓), None (→1)."""
        return None if self.direction == ONE else self.direction == UP

    def column(self, table: str) -> Column:
        return self.tables.get(table) or Column()

    def header(self, table: str) -> str:
        return f"{self.column(table).name or self.name}{ARROWS[self.direction]}"

    def digits_in(self, table: str) -> int:
        d = self.column(table).digits
        return self.digits if d is None else d

    def format(self, value: float, table: str) -> str:
        """A computed value as printed in `table` (× scale, the table's digits)."""
        return f"{value * self.scale:.{self.digits_in(table)}f}"

    def cell(self, score: Score, table: str) -> str:
        """`Score.cell` with this metric's format: the value, 'n/c' when not computed."""
        return score.cell(self.digits_in(table), scale=self.scale)

    def best(self, values: Sequence[float]) -> float | None:
        """The best of computed values; None when fewer than two distinct values (nothing to single out)."""
        vals = list(values)
        if len(set(vals)) < 2:
            return None
        if self.direction == ONE:
            return min(vals, key=lambda v: abs(math.log(max(v, 1e-12))))
        return max(vals) if self.direction == UP else min(vals)


# ------------------------------------------------------------------ what compute functions see


@dataclass
class EvalContext:
    """One set of same-size images (one method at one size) and everything a metric may need.

    images / references / natives: uint8 (H, W, 3); references[i] is the ground truth of images[i] (None for
    listed prompts), natives[i] the native-stage image of the same run (None where absent); anchors: crop
    anchors [n, K, 2]; crops: the generated images' crops at the anchors; records: one dict per image that
    compute functions may fill with per-image values (results.json `per_image`).
    """

    images: list
    prompts: list
    tools: Any  # evaluate.EvalTools
    spec: Any  # spec.MetricsSpec
    native_size: tuple[int, int]
    references: list | None
    natives: list | None
    anchors: np.ndarray
    crops: list
    records: list
    progress: bool = False

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def n_crops(self) -> int:
        return int(self.anchors.shape[0] * self.anchors.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images[0].shape[:2])  # type: ignore[return-value]


# ------------------------------------------------------------------ compute functions (one per family)


def _fid_kid_pair(name: str, real: np.ndarray, fake: np.ndarray, spec, n: int, n_crops: int | None):
    from .fid import frechet_distance, kid

    kname = "kid" + name[3:]
    if min(len(real), len(fake)) < 2:
        reason = f"needs at least 2 images, got {n}"
        return not_computed(name, reason, n, n_crops), not_computed(kname, reason, n, n_crops)
    f = frechet_distance(real, fake)
    mean, std, m = kid(real, fake, spec.kid_subsets, spec.kid_subset_size, seed=spec.patch_seed)
    subsets = 1 if m == len(real) == len(fake) else spec.kid_subsets
    return (Score(name, f, None, n, n_crops, f"{len(fake)} generated vs {len(real)} reference feature rows"),
            Score(kname, mean, std, n, n_crops, f"{subsets} subset(s) of {m}"))


def fid_kid(ctx: EvalContext) -> dict[str, Score]:
    """FID/KID of whole images and of crops vs the ground truth, on Inception pool features (`inception`, `fid`)."""
    from .patches import crops_of

    n, n_crops = ctx.n, ctx.n_crops
    why = None
    if ctx.tools.inception is None:
        why = ctx.tools.notes.get("inception", "Inception network unavailable")
    elif ctx.references is None:
        why = NO_REFERENCE
    if why is not None:
        out = {}
        for k in ("fid", "kid"):
            out[k] = not_computed(k, why, n)
            out[k + "_patch"] = not_computed(k + "_patch", why, n, n_crops)
        return out
    inc, p = ctx.tools.inception, ctx.progress
    f_gen = inc(ctx.images, progress="inception: images" if p else False)
    f_ref = inc(ctx.references, progress="inception: references" if p else False)
    out = {}
    out["fid"], out["kid"] = _fid_kid_pair("fid", f_ref, f_gen, ctx.spec, n, None)
    fc_gen = inc(ctx.crops, progress="inception: crops" if p else False)
    fc_ref = inc(crops_of(ctx.references, ctx.anchors, ctx.native_size),
                 progress="inception: reference crops" if p else False)
    out["fid_patch"], out["kid_patch"] = _fid_kid_pair("fid_patch", fc_ref, fc_gen, ctx.spec, n, n_crops)
    return out


def inception_scores(ctx: EvalContext) -> dict[str, Score]:
    """IS of whole images and of crops (`inception_score`)."""
    n, n_crops = ctx.n, ctx.n_crops
    if ctx.tools.is_classifier is None:
        why = ctx.tools.notes.get("is", "IS network unavailable")
        return {"is": not_computed("is", why, n), "is_patch": not_computed("is_patch", why, n, n_crops)}
    from .inception_score import inception_score_from_logits

    m, s, k = inception_score_from_logits(ctx.tools.is_classifier(ctx.images), ctx.spec.is_splits)
    whole = Score("is", m, s, n, None, f"{k} splits")
    m, s, k = inception_score_from_logits(ctx.tools.is_classifier(ctx.crops), ctx.spec.is_splits)
    return {"is": whole, "is_patch": Score("is_patch", m, s, n, n_crops, f"{k} splits")}


def clip_scores(ctx: EvalContext) -> Score:
    """CLIP score with the generating prompt (`clip_score`)."""
    if ctx.tools.clip is None:
        return not_computed("clip", ctx.tools.notes.get("clip", "CLIP weights unavailable"), ctx.n)
    cs = ctx.tools.clip(ctx.images, list(ctx.prompts))
    for r, v in zip(ctx.records, cs):
        r["clip"] = float(v)
    return Score("clip", float(cs.mean()), float(cs.std()), ctx.n, None, getattr(ctx.tools.clip, "name", ""))


def world_checks(ctx: EvalContext) -> dict[str, Score]:
    """Reference-world detectors vs the prompt (`world_metrics.world_scores`)."""
    if not ctx.spec.world:
        return {k: not_computed(k, "world metrics switched off in the spec (metrics.world: false)", ctx.n)
                for k in family(world_checks)}
    from .world_metrics import world_scores

    ws, checks = world_scores(ctx.images, list(ctx.prompts))
    for r, c in zip(ctx.records, checks):
        if c:
            r["world"] = c
    return ws


def gt_structure(ctx: EvalContext) -> dict[str, Score]:
    """PSNR / SSIM of the result against the ground-truth render at the target size (`image_metrics`; the
    pixel-fidelity columns of the CFM paper's Table 3). For text-to-image runs the generated scene differs from
    the render in detail, so these compare methods that share a native image rather than measure restoration."""
    from .image_metrics import psnr, ssim

    if ctx.references is None:
        return {"psnr_gt": not_computed("psnr_gt", NO_REFERENCE, ctx.n),
                "ssim_gt": not_computed("ssim_gt", NO_REFERENCE, ctx.n)}
    ps, ss = [], []
    for i, (g, r) in enumerate(zip(ctx.images, ctx.references)):
        p, s = min(psnr(g, r), 100.0), ssim(g, r)
        ctx.records[i]["psnr_gt"], ctx.records[i]["ssim_gt"] = p, s
        ps.append(p)
        ss.append(s)
    return {"psnr_gt": Score("psnr_gt", float(np.mean(ps)), float(np.std(ps)), len(ps), None, "vs ground truth"),
            "ssim_gt": Score("ssim_gt", float(np.mean(ss)), float(np.std(ss)), len(ss), None, "vs ground truth")}


def native_structure(ctx: EvalContext) -> dict[str, Score]:
    """PSNR / SSIM of the result downsampled to the native size vs the native-stage image (`image_metrics`)."""
    from .image_metrics import structure_consistency
    from .inception import to_uint8_hwc

    nat = [to_uint8_hwc(x) if x is not None else None for x in ctx.natives] if ctx.natives is not None else None
    pairs = [(i, g, x) for i, (g, x) in enumerate(zip(ctx.images, nat or []))
             if x is not None and x.shape[0] < g.shape[0]]
    if not pairs:
        why = "no smaller native-stage image (e.g. direct sampling at the target size)"
        return {"psnr_native": not_computed("psnr_native", why, ctx.n),
                "ssim_native": not_computed("ssim_native", why, ctx.n)}
    ps, ss = [], []
    for i, g, x in pairs:
        p, s = structure_consistency(g, x)
        ctx.records[i]["psnr_native"], ctx.records[i]["ssim_native"] = p, s
        ps.append(min(p, 100.0))  # identical images (inf dB) capped at 100 dB in the mean
        ss.append(s)
    note = f"result downsampled to {pairs[0][2].shape[1]}x{pairs[0][2].shape[0]}"
    return {"psnr_native": Score("psnr_native", float(np.mean(ps)), float(np.std(ps)), len(ps), None, note),
            "ssim_native": Score("ssim_native", float(np.mean(ss)), float(np.std(ss)), len(ss), None, note)}


def hf_energy(ctx: EvalContext) -> Score:
    """Energy above the native Nyquist, generated / ground truth, geometric mean over images (`image_metrics`)."""
    from .image_metrics import hf_energy_ratio

    if ctx.references is None:
        return not_computed("hf_ratio", NO_REFERENCE, ctx.n)
    if tuple(ctx.size) == tuple(ctx.native_size):
        return not_computed("hf_ratio", "images are at the native size: no band above its Nyquist", ctx.n)
    logs = []
    for i, (g, r) in enumerate(zip(ctx.images, ctx.references)):
        v = hf_energy_ratio(g, r, ctx.native_size)
        ctx.records[i]["hf_ratio"] = v
        logs.append(math.log(max(v, 1e-12)))
    return Score("hf_ratio", float(math.exp(np.mean(logs))), float(np.std(logs)), ctx.n, None,
                 "geometric mean of per-image ratios; std of the log ratio")


# ------------------------------------------------------------------ the registry

_Q, _S = {QUALITY: Column()}, {QUALITY: Column(), SEEDS: Column()}

#: every metric, in report order (results.json order, column order of every table)
_DECLARED = (
    Metric("fid", "FID", DOWN, fid_kid, tables=_Q, about="FID of whole images vs ground truth (Inception 299²)"),
    Metric("fid_patch", "FID_patch", DOWN, fid_kid, tables=_Q, about="FID of native-size crops at paired anchors"),
    Metric("kid", "KID×10³", DOWN, fid_kid, scale=1e3,
           tables={**_S, README: Column(digits=1, by_seed=True)}, about="unbiased KID of whole images"),
    Metric("kid_patch", "KID_patch×10³", DOWN, fid_kid, scale=1e3,
           tables={**_S, README: Column(digits=1, by_seed=True)}, about="unbiased KID of crops"),
    Metric("is", "IS", UP, inception_scores, tables=_Q, about="Inception Score of whole images"),
    Metric("is_patch", "IS_patch", UP, inception_scores, tables=_Q, about="Inception Score of crops"),
    Metric("clip", "CLIP", UP, clip_scores, tables=_Q, about="CLIP score with the generating prompt"),
    Metric("dup_rate", "dup", DOWN, world_checks, tables={**_S, README: Column(name="sun/moon dup")},
           about="fraction of images with a sun/moon count ≠ 1"),
    Metric("count_acc", "count", UP, world_checks, tables={**_S, README: Column(name="counts exact")},
           about="tree and house counts both match the prompt"),
    Metric("tree_acc", "trees", UP, world_checks, about="tree count matches"),
    Metric("house_acc", "houses", UP, world_checks, about="house count matches"),
    Metric("attr_acc", "attr", UP, world_checks, tables=_S, about="time of day and sun/moon both match"),
    Metric("time_acc", "time", UP, world_checks, about="time of day matches"),
    Metric("color_acc", "colour", UP, world_checks, tables=_Q, about="sun/moon colour matches"),
    Metric("psnr_gt", "PSNR_gt", UP, gt_structure, digits=2, tables=_Q,
           about="PSNR (dB) of the result vs the ground-truth render at the target size"),
    Metric("ssim_gt", "SSIM_gt", UP, gt_structure, digits=3, tables=_Q,
           about="SSIM of the result vs the ground-truth render at the target size"),
    Metric("ssim_native", "SSIM_nat", UP, native_structure, digits=3, tables={**_S, README: Column()},
           about="SSIM of the result downsampled to the native size vs the native-stage image"),
    Metric("psnr_native", "PSNR_nat", UP, native_structure, digits=1, tables={**_S, README: Column()},
           about="PSNR (dB) of the result downsampled to the native size vs the native-stage image"),
    Metric("hf_ratio", "HF ratio", ONE, hf_energy, tables={QUALITY: Column(), README: Column()},
           about="energy above the native Nyquist, generated / ground truth (geometric mean)"),
)

_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric, *, before: str | None = None) -> Metric:
    """Add a metric (at the end, or before the metric `before`); its key must be new."""
    if metric.key in _REGISTRY:
        raise ValueError(f"metric {metric.key!r} is already registered")
    if before is None:
        _REGISTRY[metric.key] = metric
        return metric
    if before not in _REGISTRY:
        raise ValueError(f"no metric {before!r} to insert before; metrics: {', '.join(_REGISTRY)}")
    items = list(_REGISTRY.items())
    i = [k for k, _ in items].index(before)
    _REGISTRY.clear()
    _REGISTRY.update(items[:i] + [(metric.key, metric)] + items[i:])
    return metric


def unregister(key: str) -> None:
    _REGISTRY.pop(key, None)


for _m in _DECLARED:
    register(_m)


def registry() -> list[Metric]:
    """Every metric, in report order."""
    return list(_REGISTRY.values())


def get(key: str) -> Metric:
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"no metric {key!r}; metrics: {', '.join(_REGISTRY)}") from None


def keys() -> list[str]:
    return list(_REGISTRY)


def columns(table: str) -> list[Metric]:
    """The metrics shown in `table` (QUALITY, SEEDS or README), in column order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    return [m for m in _REGISTRY.values() if table in m.tables]


def family(compute: Callable) -> list[str]:
    """Keys of the metrics computed by one function."""
    return [m.key for m in _REGISTRY.values() if m.compute is compute]


def higher_is_better(key: str) -> bool | None:
    return get(key).higher_is_better
