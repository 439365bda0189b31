"""The documentation: generated pages are fresh, the README is short, the site builds strictly, and a real
browser shows it.

- every generated page and block (`benchmarks/docs_pages.py`) equals what its committed JSON gives;
- README.md ≤ 15 KB with the two set-up commands in its first 60 lines, the test command equal to `.ci/run`'s;
- `mkdocs build --strict` passes (no broken link or anchor, no missing API reference);
- headless Chromium renders the built index and a method page, non-blank, with the data-flow diagram loaded
  (set HIRESFLOW_DOCS_SCREENSHOTS=DIR to keep the screenshots).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromium import ARGS, CHROMIUM, free_port, requirements

ROOT = Path(__file__).resolve().parents[1]
QUIET_MKDOCS = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


def _docs_pages():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "benchmarks" / "docs_pages.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_pages_are_fresh():
    stale = [str(p.relative_to(ROOT)) for p in _docs_pages().stale_pages()]
    assert not stale, f"stale generated pages {stale}: run `python benchmarks/docs_pages.py`"


def test_generated_block_is_rewritten_from_json(tmp_path):
    """A block's body is replaced from the JSON whatever it held; the prose around it is kept."""
    dp = _docs_pages()
    page = tmp_path / "page.md"
    text = ("intro\n<!-- generated: bench benchmarks/results/tiny-flux-v2 x4 | hiflow = HiFlow | upscale -->\n"
            "| stale | table |\n<!-- /generated -->\noutro\n")
    out = dp.fill_blocks(text, page)
    assert out.startswith("intro\n<!-- generated:") and out.endswith("<!-- /generated -->\noutro\n")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| 256×256 (n = 16) |") and "stale" not in out
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["HiFlow", "upscale"]


def test_readme_is_short_and_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15 * 1024
    head = readme.splitlines()[:60]
    run_cmd = next(line for line in head if "hiresflow generate" in line and line.startswith("python3 -m venv"))
    test_cmd = next(line for line in head if line.endswith("-m pytest") and line.startswith("python3 -m venv"))
    assert "--scale" in run_cmd
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == test_cmd


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **QUIET_MKDOCS})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_site_builds_strictly_with_api_reference_and_bench_pages(site):
    api = (site / "api" / "generate" / "index.html").read_text()
    assert 'id="hiresflow.api.generate"' in api  # mkdocstrings rendered the docstring
    assert (site / "results" / "tiny-flux-v2" / "results" / "index.html").is_file()
    assert (site / "results" / "tiny-flux-v2" / "grids" / "tiny-flux-x4.webp").is_file()
    assert (site / "assets" / "dataflow.svg").is_file()


def _serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
def test_site_renders_in_chromium(site, tmp_path):
    sync_api = requirements()
    keep = os.environ.get("HIRESFLOW_DOCS_SCREENSHOTS")
    server = _serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                for name, path in [("docs-index", ""), ("docs-hiflow", "methods/hiflow/")]:
                    page.goto(base + path, wait_until="load")
                    assert "hiresflow" in page.title()
                    shot = tmp_path / f"{name}.png"
                    page.screenshot(path=str(shot), full_page=False)
                    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
                    assert pixels.std() > 20, f"{name}: blank page (pixel std {pixels.std():.1f})"
                    assert (pixels < 128).mean() > 0.01, f"{name}: no dark text drawn"
                    if keep:
                        Path(keep).mkdir(parents=True, exist_ok=True)
                        Image.open(shot).save(Path(keep) / shot.name)
                    if name == "docs-index":
                        widths = page.eval_on_selector_all("article img", "imgs => imgs.map(i => i.naturalWidth)")
                        assert len(widths) >= 2 and all(w > 0 for w in widths), widths  # grid + diagram loaded
                        assert page.locator("nav.md-nav").count() > 0  # Material's navigation is there
            finally:
                browser.close()
    finally:
        server.shutdown()


def test_no_page_calls_a_shipped_method_in_progress():
    """Every recipe's page describes what ships: no page of the site says a shipped method is "in progress"."""
    pages = [p for p in (ROOT / "docs").rglob("*.md") if "in progress" in p.read_text().lower()]
    assert not pages, [str(p.relative_to(ROOT)) for p in pages]


def test_json_table_block_renders_a_scripts_table_from_json(tmp_path):
    """A json-table block is the table its benchmark script renders from the JSON (a pure function of it), rows
    selected, ordered and renamed by their first cell; an unknown source is an error naming the known ones."""
    dp = _docs_pages()
    row = {"scale": 4, "size": [256, 256], "top_level_tokens": 4096, "steps": 4, "global_s_per_step": 2.0,
           "msw_msa_s_per_step": 1.0, "hidiffusion_s_per_step": 0.5, "msw_msa_speedup": 2.0, "hidiffusion_speedup": 4.0}
    speed = dp._script("msw_msa_speed").tables({"rows": [row]})["speed"].splitlines()
    assert speed[0].startswith("| scale (4 steps) |")
    assert speed[2] == "| 4× (256²) | 4 096 | 2.00 | 1.00 | 2.00× | 0.50 | 4.00× |"
    text = ("<!-- generated: json-table benchmarks/results/native_quality-*.json | tiny-sd | tiny-flux = v2 -->\n"
            "| stale |\n<!-- /generated -->\n")
    rows = [r.split("|")[1].strip() for r in dp.fill_blocks(text, tmp_path / "p.md").splitlines() if r.startswith("| ")]
    assert rows == ["model", "tiny-sd", "v2"]
    with pytest.raises(SystemExit, match="no script renders"):
        dp.fill_blocks("<!-- generated: json-table benchmarks/results/none.json -->\n<!-- /generated -->\n", tmp_path)


def test_bench_block_spread_std_writes_the_subset_std(tmp_path):
    """`spread=std` turns the per-seed KID cells into mean ± std over the KID subsets; other values are refused."""
    dp = _docs_pages()
    folder = "benchmarks/results/tiny-flux-v2-4x-n48"
    results = json.loads((ROOT / folder / "results.json").read_text())
    group = next(g for g in results["groups"] if g["label"] == "hiflow")
    kid = group["metrics"]["kid"]
    block = f"<!-- generated: bench {folder} x4 metrics=kid spread=std | hiflow -->\n<!-- /generated -->\n"
    row = [r for r in dp.fill_blocks(block, tmp_path / "p.md").splitlines() if r.startswith("| hiflow")][0]
    assert f"{kid['value'] * 1e3:.1f}" in row and f"± {kid['std'] * 1e3:.1f}" in row and "/" not in row
    with pytest.raises(SystemExit, match="spread must be"):
        dp.fill_blocks(block.replace("spread=std", "spread=range"), tmp_path / "p.md")


def test_guidance_sweep_table_joins_the_reference_record_and_refuses_mixed_protocols(tmp_path):
    """The CFG sweep's curve per label is its points plus the committed record at the default CFG (once), sorted
    by CFG with each column's best in bold; an unfinished point is not read; points of another n are refused."""
    sweep = _docs_pages()._script("guidance_sweep")
    ref = json.loads((ROOT / "benchmarks" / "results" / sweep.REFERENCE["tiny-flux"]).read_text())

    def point(g, tree, n=ref["n"]):
        return {**ref, "n": n, "guidance": g, "fid": 150.0 - g, "world": {**ref["world"], "tree_acc": tree}}

    (tmp_path / "tiny-flux-g8.json").write_text(json.dumps(point(8.0, 0.9)))
    (tmp_path / "tiny-flux-g2.5.json").write_text(json.dumps(point(2.5, 0.1)))
    (tmp_path / "tiny-flux-g6.partial.json").write_text("{")
    recs = sweep.load(tmp_path)
    assert [(r["label"], r["guidance"], r.get("reference")) for r in recs] == [
        ("tiny-flux", 2.5, None), ("tiny-flux", ref["guidance"], sweep.REFERENCE["tiny-flux"]), ("tiny-flux", 8.0, None)]
    rows = sweep.tables(recs)["sweep"].splitlines()[2:]
    assert rows[1].startswith(f"| tiny-flux | {ref['guidance']:g} (default) | {ref['fid']:.1f} |")
    assert "| **142.0** |" in rows[2] and "| **90.0 %** |" in rows[2]
    (tmp_path / "tiny-flux-g6.json").write_text(json.dumps(point(6.0, 0.5, n=ref["n"] // 2)))
    with pytest.raises(SystemExit, match="mixes"):
        sweep.load(tmp_path)


def test_bench_image_distance_measures_each_row_against_the_reference_and_names_a_size_mismatch(tmp_path):
    """Mean |Δ| in 8-bit levels and PSNR per row over the stems it shares with the reference row (native images
    and stems the reference lacks are not read); a row at another size is a one-line refusal."""
    from PIL import Image

    dist = _docs_pages()._script("bench_image_distance")
    base = tmp_path / "images" / "tiny-flux" / "x4"
    rng = np.random.default_rng(0)
    ref = rng.integers(10, 240, (8, 8, 3), dtype=np.uint8)
    rows = {"ref": {"p0": ref, "p0-native": ref, "p1": ref}, "same": {"p0": ref, "p1": ref},
            "off": {"p0": ref + 2, "p1": ref + 2, "p9": ref}}
    for label, images in rows.items():
        (base / label).mkdir(parents=True)
        for stem, px in images.items():
            Image.fromarray(px).save(base / label / f"{stem}.png")
    data = dist.distances(tmp_path, "ref")
    assert data["rows"] == [{"label": "same", "n": 2, "mean_abs_levels": 0.0, "psnr_db": None},
                            {"label": "off", "n": 2, "mean_abs_levels": 2.0,
                             "psnr_db": round(10 * np.log10(255 ** 2 / 4), 2)}]
    assert "| same | 2 | 0.00 | identical |" in dist.table(data)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(base / "off" / "p1.png")
    with pytest.raises(SystemExit, match="4x4 px, but the reference image is 8x8"):
        dist.distances(tmp_path, "ref")
    with pytest.raises(SystemExit, match="no images of the reference label 'nope'"):
        dist.distances(tmp_path, "nope")
