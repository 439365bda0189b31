"""`hiresflow bench` end to end on random-tiny-flux: generation, evaluation, reports, resume, spec errors."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from hiresflow.eval.cli import app
from hiresflow.eval.spec import BenchSpec, load_spec

SPEC = """
name: tiny
models: [random-tiny-flux]
scales: [2]
prompts: {world: {n: 2, seed: 0}}
seeds: [0, 1]
common: {steps: 2}
recipes:
  direct: {}
  sdedit: {set: {tau: 0.6}}
ablation: [sdedit]
metrics: {clip: false, inception_score: false}
grid: {rows: 2, cell: 64}
"""


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    spec = root / "tiny.yaml"
    spec.write_text(SPEC)
    out = root / "out"
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(out), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return spec, out


@pytest.mark.slow
def test_bench_writes_tables_grids_and_plot(bench_run):
    _, out = bench_run
    results = json.loads((out / "results.json").read_text())
    groups = {g["label"]: g for g in results["groups"]}
    assert set(groups) == {"direct", "sdedit"}
    for g in groups.values():
        assert g["error"] is None and g["size"] == [128, 128] and g["n_images"] == 4 and g["n_crops"] == 16
        m = g["metrics"]
        assert m["fid"]["value"] is not None and m["fid"]["n"] == 4
        assert m["kid_patch"]["n_crops"] == 16
        assert m["clip"]["value"] is None and "switched off" in m["clip"]["note"]
        assert g["timing"]["n_runs"] == 4 and g["timing"]["seconds"] > 0
        assert g["timing"]["model_seconds"] > 0 and g["timing"]["peak_memory_bytes"] > 0
        assert set(g["by_seed"]) == {"0", "1"}  # the spread across seed sets: each set scored on its own
        assert all(s["kid"]["n"] == 2 for s in g["by_seed"].values())
        assert g["by_seed"]["0"]["kid"]["value"] != g["by_seed"]["1"]["kid"]["value"]
    assert groups["direct"]["metrics"]["ssim_native"]["value"] is None  # no native stage
    assert groups["sdedit"]["metrics"]["ssim_native"]["value"] is not None
    ref = results["references"][0]["metrics"]
    assert ref["dup_rate"]["value"] == 0.0 and ref["count_acc"]["value"] == 1.0  # detector ceiling on ground truth
    md = (out / "results.md").read_text()
    for part in ("Table 1", "Table 2", "Table 3", "| 128² | direct | 4 / 16 |", "n/c", "ground truth", "Per seed set (0 / 1)"):
        assert part in md
    for f in ("grids/random-tiny-flux-x2.webp", "grids/random-tiny-flux-x2-detail.webp",
              "latency-random-tiny-flux.png", "reference/128x128/p000-s0.png",
              "images/random-tiny-flux/x2/sdedit/p001-s0-native.png"):
        assert (out / f).is_file(), f
    assert "](grids/random-tiny-flux-x2.webp)" in md and "](grids/random-tiny-flux-x2-detail.webp)" in md


@pytest.mark.slow
def test_bench_resumes_without_regenerating(bench_run, monkeypatch):
    spec, out = bench_run
    before = json.loads((out / "results.json").read_text())

    def boom(*a, **k):
        raise AssertionError("run_plan must not be called for finished images")

    monkeypatch.setattr("hiresflow.runner.run_plan", boom)
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(out), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    after = json.loads((out / "results.json").read_text())
    assert after["generation"]["generated"] == 0 and after["generation"]["skipped"] == 8
    assert after["inception_passes"] == 0  # features come back from the on-disk cache
    for b, a in zip(before["groups"], after["groups"]):
        assert a["metrics"] == b["metrics"] and a["timing"] == b["timing"]


@pytest.mark.slow
def test_an_interrupted_image_is_redone(bench_run, tmp_path):
    from hiresflow.eval.bench import is_done

    _, out = bench_run
    folder = out / "images" / "random-tiny-flux" / "x2" / "direct"
    assert is_done(folder, "p000-s0")
    meta = json.loads((folder / "p000-s0.json").read_text())
    meta.pop("bench")
    (tmp_path / "p000-s0.json").write_text(json.dumps(meta))
    (tmp_path / "p000-s0.png").write_bytes((folder / "p000-s0.png").read_bytes())
    assert not is_done(tmp_path, "p000-s0")  # PNG without the bench record: generated again


@pytest.mark.slow
def test_absent_per_image_files_are_generated_again(bench_run, tmp_path):
    """Per-image files are not kept in git: a bench folder without them is simply computed again."""
    spec, out = bench_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = json.loads((copy / "results.json").read_text())
    shutil.rmtree(copy / "images" / "random-tiny-flux" / "x2" / "sdedit")
    shutil.rmtree(copy / "reference")
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(copy), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    after = json.loads((copy / "results.json").read_text())
    assert after["generation"]["generated"] == 4 and after["generation"]["skipped"] == 4
    assert (copy / "images/random-tiny-flux/x2/sdedit/p001-s0-native.png").is_file()
    assert (copy / "reference/128x128/p000-s0.png").is_file()
    for b, a in zip(before["groups"], after["groups"]):
        assert a["metrics"] == b["metrics"]  # the same seeds give the same images, hence the same scores


@pytest.mark.slow
def test_report_only_rewrites_the_report_from_results_json(bench_run, tmp_path):
    spec, out = bench_run
    md = (out / "results.md").read_text()
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(out), "--report-only", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "results.md").read_text() == md and "not redrawn" not in res.output
    bare = tmp_path / "bare"  # results.json without the per-image files
    bare.mkdir()
    shutil.copy(out / "results.json", bare / "results.json")
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(bare), "--report-only", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (bare / "results.md").read_text() == md
    assert (bare / "latency-random-tiny-flux.png").is_file() and not (bare / "images").exists()
    notes = [line for line in res.output.splitlines() if "not redrawn" in line]
    assert len(notes) == 1 and "per-image files are absent" in notes[0]
    assert (bare / "results.json").read_bytes() == (out / "results.json").read_bytes()
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(tmp_path / "none"), "--report-only"])
    assert res.exit_code == 2 and "results.json not found" in res.output
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(bare), "--report-only", "--eval-only"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_spec_validation_errors(tmp_path):
    base = {"models": ["random-tiny-flux"], "scales": [2], "prompts": ["a red sun"], "recipes": {"direct": {}}}
    assert BenchSpec.from_dict(base).comparison_labels == ["direct"]
    with pytest.raises(ValueError, match="unknown spec key"):
        BenchSpec.from_dict({**base, "scale": [2]})
    with pytest.raises(ValueError, match="has no parameter"):
        BenchSpec.from_dict({**base, "recipes": {"x": {"recipe": "hiflow", "set": {"accel": False}}}})
    with pytest.raises(ValueError, match="unknown recipe"):
        BenchSpec.from_dict({**base, "recipes": {"x": {"recipe": "nope"}}})
    with pytest.raises(ValueError, match="not a recipe label"):
        BenchSpec.from_dict({**base, "ablation": ["hiflow"]})
    with pytest.raises(ValueError, match="prompts"):
        BenchSpec.from_dict({**base, "prompts": {"world": {"n": 0}}})
    p = tmp_path / "bad.yaml"
    p.write_text("models: [a\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_spec(p)
    res = CliRunner().invoke(app, ["bench", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not valid YAML" in res.output


def test_world_prompts_are_a_seeded_prefix():
    a = BenchSpec.from_dict({"models": ["m"], "scales": [2], "recipes": ["direct"],
                             "prompts": {"world": {"n": 3, "seed": 4}}})
    b = BenchSpec.from_dict({"models": ["m"], "scales": [2], "recipes": ["direct"],
                             "prompts": {"world": {"n": 5, "seed": 4}}})
    assert [p.prompt for p in a.prompts] == [p.prompt for p in b.prompts[:3]]
    assert a.prompts[0].scene == b.prompts[0].scene
