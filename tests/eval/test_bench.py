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


def _bare_copy(out, dest):
    """results.json alone: what the repository keeps of a bench whose per-image files are gone."""
    dest.mkdir()
    shutil.copy(out / "results.json", dest / "results.json")
    return dest


@pytest.mark.slow
def test_only_adds_a_recipe_and_keeps_the_other_rows(bench_run, tmp_path):
    spec, out = bench_run
    bare = _bare_copy(out, tmp_path / "bare")
    before = json.loads((bare / "results.json").read_text())
    grown = tmp_path / "grown.yaml"
    grown.write_text(SPEC.replace("recipes:\n", "recipes:\n  upscale: {}\n"))
    res = CliRunner().invoke(app, ["bench", str(grown), "--out", str(bare), "--quiet", "--device", "cpu",
                                   "--only", "upscale"])
    assert res.exit_code == 0, res.output
    after = json.loads((bare / "results.json").read_text())
    assert [g["label"] for g in after["groups"]] == ["upscale", "direct", "sdedit"]  # the spec's order
    assert after["generation"]["generated"] == 4  # upscale's images only
    assert not (bare / "images" / "random-tiny-flux" / "x2" / "direct").exists()
    old = {g["label"]: g for g in before["groups"]}
    for g in after["groups"][1:]:
        assert g["metrics"] == old[g["label"]]["metrics"] and g["timing"] == old[g["label"]]["timing"]
        assert g["carried"] == {"date": before["date"], "versions": before["versions"]}
    assert after["groups"][0]["error"] is None and "carried" not in after["groups"][0]
    md = (bare / "results.md").read_text()
    assert f"kept (`--only`): direct x2, sdedit x2 — {before['date']}" in md
    assert "| 128² | upscale | 4 / 16 |" in md and "| 128² | direct | 4 / 16 |" in md
    # a second --only run keeps the first run's date on the carried rows
    res = CliRunner().invoke(app, ["bench", str(grown), "--out", str(bare), "--quiet", "--device", "cpu",
                                   "--only", "upscale"])
    assert res.exit_code == 0, res.output
    again = json.loads((bare / "results.json").read_text())
    assert again["groups"][1]["carried"]["date"] == before["date"]
    assert again["groups"][0]["metrics"] == after["groups"][0]["metrics"]


@pytest.mark.slow
def test_only_refuses_what_cannot_sit_beside_the_earlier_rows(bench_run, tmp_path):
    spec, out = bench_run
    bare = _bare_copy(out, tmp_path / "bare")
    run = lambda s, o, *extra: CliRunner().invoke(  # noqa: E731
        app, ["bench", str(s), "--out", str(o), "--quiet", "--device", "cpu", *extra])
    res = run(spec, bare, "--only", "nope")
    assert res.exit_code == 2 and "--only names no recipe of the spec: nope" in res.output
    res = run(spec, tmp_path / "empty", "--only", "direct")
    assert res.exit_code == 2 and "does not exist; run the whole bench once" in res.output
    assert not (tmp_path / "empty").exists()  # nothing written before the refusal
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0, 2]"))
    res = run(other, bare, "--only", "direct")
    assert res.exit_code == 2 and "was made with different seeds" in res.output
    res = run(spec, bare, "--only", " , ")
    assert res.exit_code == 2 and "at least one recipe label" in res.output
    res = run(spec, bare, "--only", "direct", "--report-only")
    assert res.exit_code == 2 and "--report-only runs none" in res.output
    # a recipe whose parameters changed since is not carried: its row says so
    changed = tmp_path / "changed.yaml"
    changed.write_text(SPEC.replace("tau: 0.6", "tau: 0.5"))
    res = run(changed, bare, "--only", "direct")
    assert res.exit_code == 0, res.output  # this run's own rows succeeded
    groups = {g["label"]: g for g in json.loads((bare / "results.json").read_text())["groups"]}
    assert groups["sdedit"]["error"].startswith("not evaluated: not in --only and changed since")
    assert groups["direct"]["error"] is None and "carried" not in groups["direct"]


@pytest.mark.slow
def test_grid_only_generates_just_the_grid_images(bench_run, tmp_path):
    spec, out = bench_run
    bare = _bare_copy(out, tmp_path / "bare")
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(bare), "--quiet", "--device", "cpu",
                                   "--grid-only", "--only", "direct"])
    assert res.exit_code == 0, res.output
    made = sorted(p.name for p in (bare / "images/random-tiny-flux/x2/direct").glob("*.json"))
    assert made == ["p000-s0.json", "p001-s0.json"]  # first seed, grid.rows = 2 prompts
    assert not (bare / "images/random-tiny-flux/x2/sdedit").exists()
    assert (bare / "grids/random-tiny-flux-x2.webp").is_file()
    assert (bare / "results.json").read_bytes() == (out / "results.json").read_bytes()
    assert (bare / "results.md").read_text() == (out / "results.md").read_text()
    res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(tmp_path / "none"), "--grid-only"])
    assert res.exit_code == 2 and "results.json not found" in res.output


@pytest.mark.slow
def test_shards_fill_one_folder_and_evaluate_as_one_run(bench_run, tmp_path):
    """--shard K/N --no-eval makes the K-th round-robin part of every group's images; N parts make each image once,
    and --eval-only then gives the metrics of the run that made them all in one process."""
    spec, out = bench_run
    shared = tmp_path / "shared"
    run = lambda *extra: CliRunner().invoke(  # noqa: E731
        app, ["bench", str(spec), "--out", str(shared), "--quiet", "--device", "cpu", *extra])
    res = run("--shard", "1/2", "--no-eval")
    assert res.exit_code == 0, res.output
    direct = shared / "images/random-tiny-flux/x2/direct"
    assert sorted(p.name for p in direct.glob("*.json")) == ["p000-s0.json", "p001-s0.json"]  # items 1 and 3 of 4
    assert not (shared / "results.json").exists()
    res = run("--shard", "2/2", "--no-eval")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in direct.glob("*.json")) == ["p000-s0.json", "p000-s1.json", "p001-s0.json",
                                                              "p001-s1.json"]
    res = run("--eval-only")
    assert res.exit_code == 0, res.output
    whole = {g["label"]: g["metrics"] for g in json.loads((out / "results.json").read_text())["groups"]}
    parts = {g["label"]: g["metrics"] for g in json.loads((shared / "results.json").read_text())["groups"]}
    assert parts == whole  # same seeds, same bytes, same metrics
    for bad, says in [(("--shard", "3/2", "--no-eval"), "1 <= K <= N"), (("--shard", "two", "--no-eval"), "K/N"),
                      (("--shard", "1/2"), "add --no-eval")]:
        res = CliRunner().invoke(app, ["bench", str(spec), "--out", str(tmp_path / "none"), "--quiet", *bad])
        assert res.exit_code == 2 and says in res.output, res.output
    assert not (tmp_path / "none").exists()
