"""The bench folder layout and the typed results: paths, JSON round trips, committed reports reproduced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiresflow.eval.layout import (BenchLayout, BenchResults, GroupResult, GroupTiming, ReferenceResult, StageTiming,
                                   is_done)
from hiresflow.eval.score import Score, not_computed

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(p.parent for p in (ROOT / "benchmarks" / "results").glob("*/results.json"))


def _group(**kw) -> GroupResult:
    metrics = {"kid": Score("kid", 0.25, 0.01, 4, None, "1 subset(s) of 4"),
               "kid_patch": Score("kid_patch", 0.125, 0.02, 4, 16, "1 subset(s) of 16"),
               "psnr_native": Score("psnr_native", float("inf"), 0.0, 4, None, "identical"),
               "clip": not_computed("clip", "CLIP score switched off in the spec (metrics.clip: false)", 4)}
    base = dict(model="random-tiny-flux", label="hiflow-no-Aa", recipe="hiflow", set={"acceleration": False},
                tag="x2", scale=2.0, size=[128, 128], native=[64, 64], params={"steps": 2}, n_images=4, n_crops=16,
                metrics=metrics,
                timing=GroupTiming(1.5, 1.0, 0.25, 0.25, 0.25, [StageTiming([64, 64], 0.5), StageTiming([128, 128], 1.0)],
                                   123456, "rss_peak", 4, 8),
                per_image=[{"hf_ratio": 0.5, "stem": "p000-s0"}],
                by_seed={"0": {"kid": Score("kid", 0.3, None, 2)}, "1": {"kid": Score("kid", 0.2, None, 2)}})
    base.update(kw)
    return GroupResult(**base)


def test_group_result_round_trips_through_json():
    g = _group()
    text = json.dumps(g.to_dict(), indent=1)
    back = GroupResult.from_dict(json.loads(text))
    assert back.to_dict() == g.to_dict()
    assert json.dumps(back.to_dict(), indent=1) == text  # key order too
    assert back.metrics["kid"] == g.metrics["kid"] and back.timing == g.timing and back.by_seed == g.by_seed
    assert back.metrics["psnr_native"].value == float("inf")  # stored as the string "inf"
    assert list(g.to_dict()) == ["model", "label", "recipe", "set", "tag", "scale", "size", "native", "params",
                                 "n_images", "n_crops", "metrics", "timing", "per_image", "by_seed", "error"]


def test_failed_and_older_groups_round_trip():
    failed = GroupResult("m", "direct", "direct", {}, "x2", 2.0, error="images missing (generation failed or incomplete)")
    assert failed.to_dict() == {"model": "m", "label": "direct", "recipe": "direct", "set": {}, "tag": "x2",
                                "scale": 2.0, "error": "images missing (generation failed or incomplete)"}
    assert GroupResult.from_dict(failed.to_dict()) == failed and not failed.ok
    older = _group(by_seed=None).to_dict()  # results written before per-seed scores: no "by_seed" key
    assert "by_seed" not in older and GroupResult.from_dict(older).to_dict() == older


def test_bench_results_round_trip_and_failures():
    res = BenchResults(spec={"name": "t"}, machine={"cpu": "x"}, versions={}, date="d",
                       generation={"generated": 1, "skipped": 0, "seconds": 1.0, "errors": {"m/x4/imax": "boom"}},
                       tools={"inception": None, "is": None, "clip": None, "notes": {}},
                       groups=[_group(), GroupResult("m", "d", "direct", {}, "x2", 2.0, size=[128, 128], error="bad")],
                       references=[ReferenceResult("m", "x2", [128, 128], {"dup_rate": Score("dup_rate", 0.0, None, 4)})],
                       seconds=2.0, inception_passes=3)
    back = BenchResults.from_json(res.to_json())
    assert back.to_json() == res.to_json() and back.groups[0] == res.groups[0]
    assert back.failures() == {"m/x4/imax": "boom", "m/x2/d": "bad"}
    gen_only = BenchResults(spec={}, generation={"skipped_stage": True, "errors": {}})
    assert not gen_only.evaluated and "groups" not in gen_only.to_dict()


def test_layout_paths(tmp_path):
    lay = BenchLayout(tmp_path)
    assert lay.group_dir("org/model name", "x4", "hiflow no") == tmp_path / "images" / "org-model-name" / "x4" / "hiflow-no"
    assert lay.reference_png((256, 128), "p001-s3") == tmp_path / "reference" / "256x128" / "p001-s3.png"
    assert lay.inception_cache == tmp_path / "cache" / "inception"
    assert lay.latency_link("tiny-flux") == "latency-tiny-flux.png"
    assert lay.grid_path("tiny-flux", "x4", detail=True) == tmp_path / "grids" / "tiny-flux-x4-detail.webp"
    assert lay.grid_link("tiny-flux", "x4") == "grids/tiny-flux-x4.webp"  # what a report writes
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "tiny-flux-x4.png").write_bytes(b"")
    assert lay.grid_link("tiny-flux", "x4") == "grids/tiny-flux-x4.png"  # an existing grid keeps its link
    assert not is_done(lay.group_dir("m", "x2", "direct"), "p000-s0")  # absent files: computed again


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_reports_are_reproduced_from_results_json(folder):
    """results.json round-trips byte for byte and re-reporting it gives the committed results.md."""
    from hiresflow.eval.report import markdown_report
    from hiresflow.eval.spec import load_spec

    lay = BenchLayout(folder)
    text = lay.results_json.read_text()
    res = BenchResults.from_json(text)
    assert res.to_json() == text
    import dataclasses

    spec_file = ROOT / "benchmarks" / "specs" / f"{res.spec['name']}.yaml"
    if not spec_file.is_file():
        pytest.skip(f"no spec {spec_file.name}")
    # the models as run: a committed spec may since name another version of a model (tiny-flux-v1)
    spec = dataclasses.replace(load_spec(spec_file), models=list(res.spec["models"]))
    assert markdown_report(res, spec, lay) == lay.results_md.read_text()
