"""Benchmark specs: models × recipes (with named overrides) × scales/sizes × seeded prompts, read from YAML.

```yaml
name: smoke
models: [random-tiny-flux]           # short names, local diffusers folders or hub ids
scales: [2]                          # × native size; and/or
sizes: ["256x256"]                   # WIDTHxHEIGHT
prompts: {world: {n: 2, seed: 0}}    # sampled reference-world scenes (ground truth renderable at any size)
# prompts: ["a red sun over mountains", ...]   # listed prompts (no ground truth: reference metrics n/c)
seeds: [0]                           # generation seeds, each prompt × each seed
common: {steps: 2}                   # recipe parameters, applied to every recipe that has them
recipes:                             # label → {recipe: NAME (default: the label), set: {param: value}}
  direct: {}
  sdedit: {set: {tau: 0.6}}
  hiflow-no-Aa: {recipe: hiflow, set: {acceleration: false}}
ablation: [hiflow-no-Aa, hiflow]     # rows of the ablation table (Table 3), in order
comparison: [direct, sdedit, hiflow] # rows of the comparison table (default: every label not only in `ablation`)
timing: {repeats: 1, warmup: 0}      # runs per image (median reported), untimed warm-up runs per group
metrics: {patches: 4, patch_seed: 0, kid_subsets: 100, kid_subset_size: 1000,
          inception: true, inception_score: true, clip: true, world: true, batch_size: 16}
grid: {rows: 8, cell: 256}
render_seed: null                    # texture seed of ground-truth renders (null: the generation seed)
device: null                         # cuda when available
```

World prompts: scene i = `sample_scene(np.random.default_rng([seed, i]))`, prompt = `prompt_for(scene)`, so a
spec with n = 20 is a prefix of the same spec with n = 40.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RecipeEntry", "PromptItem", "MetricsSpec", "TimingSpec", "GridSpec", "BenchSpec", "load_spec",
           "slug"]

_TOP_KEYS = {"name", "description", "models", "scales", "sizes", "prompts", "seeds", "common", "recipes",
             "ablation", "comparison", "timing", "metrics", "grid", "render_seed", "device"}


def slug(text: str) -> str:
    """Filesystem-safe name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-") or "x"


def _fields(cls, d: Any, what: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a mapping, got {type(d).__name__}")
    names = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    return dict(d)


@dataclass
class RecipeEntry:
    """One column of the comparison: a recipe under a label, with parameter overrides."""

    label: str
    recipe: str
    set: dict = field(default_factory=dict)

    def params(self, common: dict) -> dict:
        """common overrides the recipe accepts, then this entry's own (which win)."""
        from ..recipes import recipe_params

        valid = recipe_params(self.recipe)
        return {**{k: v for k, v in common.items() if k in valid}, **self.set}


@dataclass
class PromptItem:
    index: int
    prompt: str
    scene: dict | None = None  # Scene.to_dict() of a sampled world scene

    def scene_obj(self):
        from ..world import Scene

        return Scene.from_dict(self.scene) if self.scene is not None else None


@dataclass
class MetricsSpec:
    patches: int = 4
    patch_seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    inception: bool = True
    inception_score: bool = True
    clip: bool = True
    world: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.patches < 1:
            raise ValueError(f"metrics.patches must be >= 1, got {self.patches}")
        if self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError("metrics.kid_subsets must be >= 1 and metrics.kid_subset_size >= 2")
        if self.batch_size < 1 or self.is_splits < 1:
            raise ValueError("metrics.batch_size and metrics.is_splits must be >= 1")


@dataclass
class TimingSpec:
    repeats: int = 1
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"timing.repeats must be >= 1 and timing.warmup >= 0, got {self.repeats}, {self.warmup}")


@dataclass
class GridSpec:
    rows: int = 8
    cell: int = 256

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cell < 16:
            raise ValueError(f"grid.rows must be >= 1 and grid.cell >= 16, got {self.rows}, {self.cell}")


@dataclass
class BenchSpec:
    name: str
    models: list[str]
    recipes: list[RecipeEntry]
    prompts: list[PromptItem]
    scales: list[float] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (H, W)
    seeds: list[int] = field(default_factory=lambda: [0])
    common: dict = field(default_factory=dict)
    ablation: list[str] = field(default_factory=list)
    comparison: list[str] | None = None
    timing: TimingSpec = field(default_factory=TimingSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    grid: GridSpec = field(default_factory=GridSpec)
    render_seed: int | None = None
    device: str | None = None
    description: str = ""
    prompt_source: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.recipes]

    @property
    def comparison_labels(self) -> list[str]:
        if self.comparison is not None:
            return list(self.comparison)
        only_ablation = {lab for lab in self.ablation if self.entry(lab).set}
        return [lab for lab in self.labels if lab not in only_ablation]

    def entry(self, label: str) -> RecipeEntry:
        for r in self.recipes:
            if r.label == label:
                return r
        raise ValueError(f"no recipe labelled {label!r}; labels: {', '.join(self.labels)}")

    def restricted(self, labels: list[str]) -> "BenchSpec":
        """The same bench with only the recipes labelled `labels` (spec order kept); unknown labels are refused."""
        unknown = [lab for lab in labels if lab not in self.labels]
        if unknown:
            raise ValueError(f"--only names no recipe of the spec: {', '.join(unknown)}; "
                             f"labels: {', '.join(self.labels)}")
        keep = set(labels)
        return replace(self, recipes=[r for r in self.recipes if r.label in keep],
                       comparison=None if self.comparison is None else [x for x in self.comparison if x in keep],
                       ablation=[x for x in self.ablation if x in keep])

    def targets(self) -> list[tuple[str, float | None, tuple[int, int] | None]]:
        """(tag, scale, size) for every requested resolution; tag names the image folder."""
        out: list[tuple[str, float | None, tuple[int, int] | None]] = []
        for s in self.scales:
            out.append((f"x{s:g}", float(s), None))
        for h, w in self.sizes:
            out.append((f"{w}x{h}", None, (h, w)))
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompts"] = [{"index": p.index, "prompt": p.prompt, "world": p.scene is not None} for p in self.prompts]
        return d

    # ------------------------------------------------------------------ parsing

    @classmethod
    def from_dict(cls, d: dict, name: str = "bench") -> "BenchSpec":
        from ..models.base import parse_size
        from ..recipes import RECIPES, recipe_params

        if not isinstance(d, dict):
            raise ValueError(f"a bench spec must be a YAML mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"unknown spec key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}")
        models = d.get("models")
        if isinstance(models, str):
            models = [models]
        if not models or not all(isinstance(m, str) for m in models):
            raise ValueError("spec needs `models`: a list of model names, e.g. [random-tiny-flux]")

        scales = [float(s) for s in (d.get("scales") or [])]
        if any(s < 1 for s in scales):
            raise ValueError(f"scales must be >= 1, got {scales}")
        sizes = []
        for s in d.get("sizes") or []:
            sizes.append(parse_size(str(s)) if not isinstance(s, (list, tuple)) else (int(s[0]), int(s[1])))
        if not scales and not sizes:
            raise ValueError("spec needs `scales` (e.g. [2, 4]) or `sizes` (e.g. ['256x256'])")

        raw = d.get("recipes")
        if not raw:
            raise ValueError("spec needs `recipes`, e.g. {direct: {}, hiflow: {}}")
        items = raw.items() if isinstance(raw, dict) else [(r, {}) if isinstance(r, str) else (r.get("label"), r)
                                                            for r in raw]
        recipes = []
        for label, conf in items:
            conf = conf or {}
            if not label or not isinstance(conf, dict):
                raise ValueError(f"recipe entries are `label: {{recipe: NAME, set: {{...}}}}`, got {label!r}: {conf!r}")
            extra = sorted(set(conf) - {"recipe", "set", "label"})
            if extra:
                raise ValueError(f"recipe {label!r}: unknown key(s) {', '.join(extra)}; use `recipe` and `set`")
            rname = conf.get("recipe", label)
            if rname not in RECIPES:
                raise ValueError(f"recipe {label!r}: unknown recipe {rname!r}; choose one of {', '.join(RECIPES)}")
            sets = dict(conf.get("set") or {})
            bad = sorted(set(sets) - set(recipe_params(rname)))
            if bad:
                raise ValueError(f"recipe {label!r}: {rname} has no parameter {', '.join(bad)} "
                                 f"(see `hiresflow recipes --params {rname}`)")
            recipes.append(RecipeEntry(str(label), rname, sets))
        labels = [r.label for r in recipes]
        if len(set(labels)) != len(labels):
            raise ValueError(f"recipe labels must be unique, got {labels}")

        common = dict(d.get("common") or {})
        seeds = d.get("seeds", [0])
        seeds = [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must list at least one generation seed")

        prompts, source = _prompts(d.get("prompts"))
        ablation = list(d.get("ablation") or [])
        comparison = d.get("comparison")
        for lab in ablation + list(comparison or []):
            if lab not in labels:
                raise ValueError(f"table row {lab!r} is not a recipe label; labels: {', '.join(labels)}")
        return cls(
            name=str(d.get("name") or name), models=list(models), recipes=recipes, prompts=prompts,
            scales=scales, sizes=sizes, seeds=seeds, common=common, ablation=ablation,
            comparison=list(comparison) if comparison is not None else None,
            timing=TimingSpec(**_fields(TimingSpec, d.get("timing"), "timing")),
            metrics=MetricsSpec(**_fields(MetricsSpec, d.get("metrics"), "metrics")),
            grid=GridSpec(**_fields(GridSpec, d.get("grid"), "grid")),
            render_seed=None if d.get("render_seed") is None else int(d["render_seed"]),
            device=d.get("device"), description=str(d.get("description") or ""), prompt_source=source,
        )


def _prompts(raw) -> tuple[list[PromptItem], dict]:
    if isinstance(raw, dict) and "world" in raw:
        w = raw["world"] or {}
        n, seed = int(w.get("n", 0)), int(w.get("seed", 0))
        if n < 1:
            raise ValueError("prompts.world.n must be >= 1")
        from ..world import prompt_for, sample_scene

        items = []
        for i in range(n):
            scene = sample_scene(np.random.default_rng([seed, i]))
            items.append(PromptItem(i, prompt_for(scene), scene.to_dict()))
        return items, {"world": {"n": n, "seed": seed}}
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(p, str) for p in raw):
        return [PromptItem(i, p) for i, p in enumerate(raw)], {"list": len(raw)}
    raise ValueError("prompts must be a list of strings or {world: {n: N, seed: S}}")


def load_spec(path: str | Path) -> BenchSpec:
    """Read and validate a YAML spec (the file name is the default spec name)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"spec file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{p} is not valid YAML: {str(err).splitlines()[0]}") from None
    return BenchSpec.from_dict(data, name=p.stem)
