"""The metric registry: one declaration per metric drives evaluation, results.json and every table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hiresflow.eval import metrics as registry
from hiresflow.eval.evaluate import METRICS, EvalTools, evaluate_set
from hiresflow.eval.layout import BenchResults, GroupResult, GroupTiming, StageTiming
from hiresflow.eval.metrics import QUALITY, README, SEEDS, UP, Column, Metric
from hiresflow.eval.report import markdown_report
from hiresflow.eval.score import Score
from hiresflow.eval.spec import BenchSpec, MetricsSpec
from hiresflow.eval.world_metrics import WORLD_METRICS

ROOT = Path(__file__).resolve().parents[2]


def _readme_table():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _spec() -> BenchSpec:
    return BenchSpec.from_dict({"models": ["m"], "scales": [2], "prompts": ["a red sun over a lake"], "seeds": [0, 1],
                                "recipes": {"direct": {}, "hiflow-no-Aa": {"recipe": "hiflow",
                                                                            "set": {"acceleration": False}}},
                                "ablation": ["hiflow-no-Aa"], "comparison": ["direct"]})


def _results(scores: dict[str, Score]) -> BenchResults:
    timing = GroupTiming(1.0, 0.5, 0.1, 0.4, 0.2, [StageTiming([128, 128], 1.0)], 2**20, "rss_peak", 2, 2)
    groups = [GroupResult("m", lab, rec, {}, "x2", 2.0, size=[128, 128], native=[64, 64], n_images=2, n_crops=8,
                          metrics=scores, timing=timing, by_seed={"0": scores, "1": scores})
              for lab, rec in (("direct", "direct"), ("hiflow-no-Aa", "hiflow"))]
    return BenchResults(spec={}, generation={"generated": 4, "skipped": 0, "seconds": 1.0, "errors": {}},
                        tools={"notes": {}}, groups=groups, seconds=1.0, inception_passes=0)


def _header(md: str, title: str) -> list[str]:
    lines = md.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(title))
    row = next(line for line in lines[i + 1:] if line.startswith("| "))
    return [c.strip() for c in row.strip("|").split("|")]


def test_registry_is_the_one_list():
    assert METRICS == registry.keys() and len(set(METRICS)) == len(METRICS)
    assert set(WORLD_METRICS) == set(registry.family(registry.world_checks))
    for m in registry.registry():
        assert m.header(QUALITY).startswith(m.name) and m.higher_is_better in (True, False, None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("fid"))
    with pytest.raises(ValueError, match="unknown table"):
        Metric("x", "x", UP, lambda ctx: None, tables={"nope": Column()})


def test_every_registered_metric_appears_in_the_markdown_report():
    scores = {m.key: Score(m.key, 0.5, None, 2) for m in registry.registry()}
    res = _results(scores)
    md = markdown_report(res, _spec())
    table1 = _header(md, "## Table 1")
    table3 = _header(md, "## Table 3")
    per_seed = _header(md, "Per seed set")
    for m in registry.registry():
        assert m.key in res.to_dict()["groups"][0]["metrics"]  # results.json holds every metric
        if QUALITY in m.tables:
            assert m.header(QUALITY) in table1 and m.header(QUALITY) in table3, m.key
        if SEEDS in m.tables:
            assert m.header(SEEDS) in per_seed, m.key
        if not m.tables:  # declared json-only (e.g. the single world checks behind count_acc / attr_acc)
            assert m.header(QUALITY) not in table1
    assert [c for c in table1[3:]] == [m.header(QUALITY) for m in registry.columns(QUALITY)]
    assert per_seed[3:] == [m.header(SEEDS) for m in registry.columns(SEEDS)]
    readme = _readme_table().table(res.to_dict(), "x2").splitlines()[0]
    assert [c.strip() for c in readme.strip("|").split("|")][1:-1] == [m.header(README)
                                                                      for m in registry.columns(README)]


def test_adding_a_metric_is_one_registry_entry():
    """A metric registered once is computed by evaluate_set, stored, and shown in every table it names."""
    def mean_luma(ctx):
        return Score("mean_luma", float(np.mean([im.mean() for im in ctx.images])) / 255, None, ctx.n)

    entry = Metric("mean_luma", "luma", UP, mean_luma, digits=3,
                   tables={QUALITY: Column(), SEEDS: Column(), README: Column(name="mean luma")})
    registry.register(entry, before="hf_ratio")
    try:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
        tools = EvalTools(notes={"inception": "off", "is": "off", "clip": "off"})
        scores, _ = evaluate_set(images, ["a red sun", "a moon"], tools, MetricsSpec(world=False), (64, 64))
        assert list(scores)[-2:] == ["mean_luma", "hf_ratio"]
        assert abs(scores["mean_luma"].value - 0.5) < 0.01
        res = _results(scores)
        md = markdown_report(res, _spec())
        assert "luma↑" in _header(md, "## Table 1") and "luma↑" in _header(md, "Per seed set")
        assert f"| {scores['mean_luma'].value:.3f} |" in md
        assert "mean luma↑" in _readme_table().table(res.to_dict(), "x2")
        assert BenchResults.from_json(res.to_json()).groups[0].metrics["mean_luma"] == scores["mean_luma"]
    finally:
        registry.unregister("mean_luma")
    assert "mean_luma" not in registry.keys()
