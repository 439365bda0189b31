"""The on-disk layout of a bench folder and the typed results stored in it (the one owner of both).

Layout of DIR (`hiresflow bench SPEC --out DIR`):

    spec.json                                   the resolved spec
    images/<model>/<tag>/<label>/<stem>.png     final image   (stem = p<prompt>-s<seed>, tag = x<scale> or WxH)
                                 <stem>-native.png, <stem>.json   native-stage image; metadata + "bench" timings
    reference/<W>x<H>/<stem>.png                ground-truth renders of the world scenes at the target size
    cache/inception/                            Inception features by image hash (references are computed once)
    grids/<model>-<tag>[-detail].webp           comparison grids (WebP, quality 90; older benches: .png)
    latency-<model>.png                         time vs resolution
    results.json, results.md                    tables shaped like HiFlow Tables 1–3

<model> and <label> are `slug`ged. The per-image names (<stem>.png, <stem>-native.png, <stem>.json) are those
`hiresflow.output.save_run` writes. Per-image files and references are outputs that a rerun regenerates (the
repository keeps only spec.json, results.*, grids and plots): an image counts as done only when its PNG and its
JSON with the "bench" record (written last) exist (`is_done`), so a missing file just means "compute again".

results.json is a `BenchResults`: run information, one `GroupResult` per model × resolution × recipe label
(metric Scores, per-seed-set Scores, `GroupTiming`, per-image records) and one `ReferenceResult` per
ground-truth size. `to_dict` / `from_dict` round-trip the JSON exactly (key order included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..atomic import write_text_atomic
from .score import Score
from .spec import BenchSpec, PromptItem, slug

__all__ = ["BenchItem", "bench_items", "grid_items", "item_stem", "image_png", "native_png", "meta_json", "is_done",
           "BenchLayout", "StageTiming", "GroupTiming", "GroupResult", "ReferenceResult", "BenchResults",
           "write_json", "GRID_SUFFIXES"]

#: grid file suffixes, the one new grids are written with first; links point to whichever exists
GRID_SUFFIXES = (".webp", ".png")


# ------------------------------------------------------------------ per-image files


def item_stem(prompt_index: int, seed: int) -> str:
    return f"p{prompt_index:03d}-s{seed}"


@dataclass(frozen=True)
class BenchItem:
    """One prompt × one seed: one image per group."""

    prompt: PromptItem
    seed: int

    @property
    def stem(self) -> str:
        return item_stem(self.prompt.index, self.seed)


def bench_items(spec: BenchSpec) -> list[BenchItem]:
    """Every prompt × seed, prompt-major (the order of images in a group and of `per_image`)."""
    return [BenchItem(p, s) for p in spec.prompts for s in spec.seeds]


def grid_items(spec: BenchSpec) -> list[BenchItem]:
    """The images the comparison grids show: the first seed's, for the first `grid.rows` prompts."""
    return [it for it in bench_items(spec) if it.seed == spec.seeds[0]][: spec.grid.rows]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 1 ≤ K ≤ N: the K-th of N disjoint parts of a bench's images (`shard_items`)."""
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise ValueError(f"--shard takes K/N with 1 <= K <= N (e.g. 1/2 and 2/2 for two processes), got {text!r}")
    return int(k), int(n)


def shard_items(items: list[BenchItem], k: int, n: int) -> list[BenchItem]:
    """The K-th of N parts of `items`, round robin (every N-th from the K-th), so N processes share a bench's
    images evenly and together make each exactly once."""
    return items[k - 1::n]


def image_png(folder: Path, stem: str) -> Path:
    return Path(folder) / f"{stem}.png"


def native_png(folder: Path, stem: str) -> Path:
    return Path(folder) / f"{stem}-native.png"


def meta_json(folder: Path, stem: str) -> Path:
    return Path(folder) / f"{stem}.json"


def is_done(folder: Path, stem: str) -> bool:
    """Final PNG present and the JSON sidecar carries the bench record (written last)."""
    png, js = image_png(folder, stem), meta_json(folder, stem)
    if not (png.is_file() and js.is_file()):
        return False
    try:
        return "bench" in json.loads(js.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def write_json(path: Path, data: Any, indent: int = 2) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=str))


# ------------------------------------------------------------------ folders


class BenchLayout:
    """Paths of one bench folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BenchLayout({str(self.root)!r})"

    @property
    def spec_json(self) -> Path:
        return self.root / "spec.json"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def references(self) -> Path:
        return self.root / "reference"

    @property
    def inception_cache(self) -> Path:
        return self.root / "cache" / "inception"

    @property
    def grids(self) -> Path:
        return self.root / "grids"

    def group_dir(self, model: str, tag: str, label: str) -> Path:
        """Per-image files of one model × resolution × recipe label."""
        return self.images / slug(model) / tag / slug(label)

    def reference_dir(self, size: Iterable[int]) -> Path:
        """Ground-truth renders at size = (W, H)."""
        w, h = size
        return self.references / f"{w}x{h}"

    def reference_png(self, size: Iterable[int], stem: str) -> Path:
        return self.reference_dir(size) / f"{stem}.png"

    def grid_name(self, model: str, tag: str, detail: bool = False) -> str:
        return f"{slug(model)}-{tag}{'-detail' if detail else ''}"

    def grid_path(self, model: str, tag: str, detail: bool = False) -> Path:
        """Where a new grid is written."""
        return self.grids / (self.grid_name(model, tag, detail) + GRID_SUFFIXES[0])

    def grid_link(self, model: str, tag: str, detail: bool = False) -> str:
        """results.md link to the grid: the existing file (of any grid suffix), else the one a report writes."""
        name = self.grid_name(model, tag, detail)
        for suffix in GRID_SUFFIXES:
            if (self.grids / (name + suffix)).is_file():
                return f"grids/{name}{suffix}"
        return f"grids/{name}{GRID_SUFFIXES[0]}"

    def latency_plot(self, model: str) -> Path:
        return self.root / self.latency_link(model)

    def latency_link(self, model: str) -> str:
        return f"latency-{slug(model)}.png"


# ------------------------------------------------------------------ typed results


def _scores_to_dict(scores: dict[str, Score]) -> dict:
    return {k: v.to_dict() for k, v in scores.items()}


def _scores_from_dict(d: dict | None) -> dict[str, Score]:
    return {k: Score.from_dict(v) for k, v in (d or {}).items()}


@dataclass
class StageTiming:
    size: list[int]  # [W, H]
    seconds: float

    def to_dict(self) -> dict:
        return {"size": self.size, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "StageTiming":
        return cls(list(d["size"]), d["seconds"])


@dataclass
class GroupTiming:
    """Median over images of each image's median over repeats (seconds), max peak memory."""

    seconds: float
    model_seconds: float
    guide_seconds: float
    other_seconds: float
    guide_overhead: float | None
    stages: list[StageTiming]
    peak_memory_bytes: int
    memory_kind: str
    n_images: int
    n_runs: int

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "model_seconds": self.model_seconds, "guide_seconds": self.guide_seconds,
                "other_seconds": self.other_seconds, "guide_overhead": self.guide_overhead,
                "stages": [s.to_dict() for s in self.stages], "peak_memory_bytes": self.peak_memory_bytes,
                "memory_kind": self.memory_kind, "n_images": self.n_images, "n_runs": self.n_runs}

    @classmethod
    def from_dict(cls, d: dict) -> "GroupTiming":
        return cls(d["seconds"], d["model_seconds"], d["guide_seconds"], d["other_seconds"], d.get("guide_overhead"),
                   [StageTiming.from_dict(s) for s in d.get("stages", [])], d.get("peak_memory_bytes", 0),
                   d.get("memory_kind", ""), d.get("n_images", 0), d.get("n_runs", 0))


@dataclass
class GroupResult:
    """One model × resolution × recipe label: its metric Scores, per-seed-set Scores and timings.

    A failed group has `error` set and no metrics (size is known when generation succeeded).
    by_seed: seed → Scores on that seed's images ({} with one seed; None in results written before per-seed
    scores existed, and then absent from the JSON).
    """

    model: str
    label: str
    recipe: str
    set: dict
    tag: str
    scale: float | None
    size: list[int] | None = None  # [W, H]
    native: list[int] | None = None  # [W, H]
    params: dict | None = None
    n_images: int = 0
    n_crops: int = 0
    metrics: dict[str, Score] = field(default_factory=dict)
    timing: GroupTiming | None = None
    per_image: list[dict] = field(default_factory=list)
    by_seed: dict[str, dict[str, Score]] | None = None
    error: str | None = None
    carried: dict | None = None  # {"date", "versions"} of the earlier run that evaluated it (`bench --only`)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def key(self) -> str:
        return f"{self.model}/{self.tag}/{self.label}"

    def _base(self) -> dict:
        return {"model": self.model, "label": self.label, "recipe": self.recipe, "set": self.set, "tag": self.tag,
                "scale": self.scale}

    def to_dict(self) -> dict:
        d = self._base()
        if self.error:
            if self.size is not None:
                d["size"] = self.size
            d["error"] = self.error
            return d
        d.update({"size": self.size, "native": self.native, "params": self.params, "n_images": self.n_images,
                  "n_crops": self.n_crops, "metrics": _scores_to_dict(self.metrics),
                  "timing": self.timing.to_dict() if self.timing is not None else None,
                  "per_image": self.per_image})
        if self.by_seed is not None:
            d["by_seed"] = {s: _scores_to_dict(sc) for s, sc in self.by_seed.items()}
        if self.carried is not None:
            d["carried"] = self.carried
        d["error"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GroupResult":
        by_seed = d.get("by_seed")
        return cls(
            model=d["model"], label=d["label"], recipe=d.get("recipe", d["label"]), set=d.get("set") or {},
            tag=d["tag"], scale=d.get("scale"), size=list(d["size"]) if d.get("size") is not None else None,
            native=list(d["native"]) if d.get("native") is not None else None, params=d.get("params"),
            n_images=d.get("n_images", 0), n_crops=d.get("n_crops", 0), metrics=_scores_from_dict(d.get("metrics")),
            timing=GroupTiming.from_dict(d["timing"]) if d.get("timing") else None,
            per_image=list(d.get("per_image") or []),
            by_seed=None if by_seed is None else {s: _scores_from_dict(v) for s, v in by_seed.items()},
            error=d.get("error"), carried=d.get("carried"),
        )


@dataclass
class ReferenceResult:
    """World metrics of the ground-truth renders at one size: the detectors' ceiling."""

    model: str
    tag: str
    size: list[int]  # [W, H]
    metrics: dict[str, Score]

    def to_dict(self) -> dict:
        return {"model": self.model, "tag": self.tag, "size": self.size, "metrics": _scores_to_dict(self.metrics)}

    @classmethod
    def from_dict(cls, d: dict) -> "ReferenceResult":
        return cls(d["model"], d["tag"], list(d["size"]), _scores_from_dict(d.get("metrics")))


_EVAL_KEYS = ("tools", "groups", "references", "seconds", "inception_passes")
_RUN_KEYS = ("spec", "machine", "versions", "date", "generation")


@dataclass
class BenchResults:
    """Everything in results.json. Evaluation fields are None when only generation ran (`--no-eval`)."""

    spec: dict
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    date: str = ""
    generation: dict = field(default_factory=dict)
    tools: dict | None = None
    groups: list[GroupResult] = field(default_factory=list)
    references: list[ReferenceResult] = field(default_factory=list)
    seconds: float | None = None
    inception_passes: int | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they are

    @property
    def evaluated(self) -> bool:
        return self.tools is not None

    def failures(self) -> dict[str, str]:
        """Generation errors and failed groups by model/tag/label."""
        out = dict(self.generation.get("errors", {}))
        out.update({g.key: g.error for g in self.groups if g.error})
        return out

    def to_dict(self) -> dict:
        d = {"spec": self.spec, "machine": self.machine, "versions": self.versions, "date": self.date,
             "generation": self.generation}
        if self.evaluated:
            d.update({"tools": self.tools, "groups": [g.to_dict() for g in self.groups],
                      "references": [r.to_dict() for r in self.references], "seconds": self.seconds,
                      "inception_passes": self.inception_passes})
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResults":
        return cls(
            spec=d.get("spec", {}), machine=d.get("machine", {}), versions=d.get("versions", {}),
            date=d.get("date", ""), generation=d.get("generation", {}), tools=d.get("tools"),
            groups=[GroupResult.from_dict(g) for g in d.get("groups", [])],
            references=[ReferenceResult.from_dict(r) for r in d.get("references", [])],
            seconds=d.get("seconds"), inception_passes=d.get("inception_passes"),
            extra={k: v for k, v in d.items() if k not in _RUN_KEYS + _EVAL_KEYS},
        )

    def to_json(self) -> str:
        """results.json text."""
        return json.dumps(self.to_dict(), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> "BenchResults":
        return cls.from_dict(json.loads(text))

    def save(self, layout: BenchLayout) -> None:
        write_text_atomic(layout.results_json, self.to_json())

    @classmethod
    def load(cls, layout: BenchLayout) -> "BenchResults":
        f = layout.results_json
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found; run `hiresflow bench SPEC --out {layout.root}` first")
        return cls.from_json(f.read_text())
