"""Regenerate every measured page of the documentation from its JSON, or check that none is stale.

    python benchmarks/docs_pages.py            # rewrite what is stale
    python benchmarks/docs_pages.py --check    # exit 1 naming each stale page (what tests/test_docs.py runs)

What it writes, each from committed JSON only (nothing is run or measured again):

- ``benchmarks/results/<bench>/results.md`` — the report of ``hiresflow bench`` (`hiresflow.eval.report.markdown_report`)
  from that folder's ``results.json`` and the spec it names (``benchmarks/specs/<name>.yaml``, with the models as run);
  the site shows these pages under ``results/<bench>/`` (``docs/scripts/gen_results.py`` mirrors the folder at build time).
- ``benchmarks/results/bad_inputs.md`` from ``bad_inputs.json`` (the rows that ``benchmarks/bad_inputs.py`` measured).
- The pages other benchmark scripts write next to their JSON, through the script's own ``render_markdown(data)``:
  ``versions*.md`` (``compare_versions.py``), ``tiny-flux-scaling/results.md`` (``tiny_flux_scaling.py``),
  ``tiny-flux-cfm/paired.md`` (``cfm_paired.py``), ``upscale_reference_trajectory.md``.
- Generated blocks inside ``README.md`` and ``docs/**/*.md``, between ``<!-- generated: KIND ARGS -->`` and
  ``<!-- /generated -->``:

  ``bench FOLDER TAG [metrics=KEY,...] [spread=seeds|std] [| label | label = Shown name | ...]``
      the compact table of ``benchmarks/readme_table.py`` (one resolution tag of one bench folder): every group of
      that tag, or the listed labels in that order, each optionally shown under another name; ``metrics=`` shows
      those registry metrics instead of the README columns; ``spread=std`` writes KID-type cells as mean ± std over
      the KID subsets instead of the per-seed values;
  ``json-table PATH [TABLE] [| row | row = Shown name | ...]``
      a table that a benchmark script renders from its committed JSON: `JSON_TABLES` names the script for PATH
      (a file, a glob of files or a folder), whose ``tables(data)`` returns its tables by name (TABLE, default the
      first) and whose ``load(PATH)``, where present, reads data spread over several files; rows are selected,
      ordered and renamed by their first cell as in ``bench``;
  ``choose FOLDER:TAG ...``
      the decision table of the method guide: per bench and scale, the best generating method by each measure
      and how it compares with ``upscale``;
  ``bad-inputs``
      the bad-input table;
  ``method-rows RECIPE``
      that recipe's row in each main bench (`MAIN_BENCHES`), for its method page;
  ``cli-help``
      ``hiresflow --help`` and every subcommand's ``--help``, as printed at 100 columns;
  ``bench-index``
      one line per bench folder: its spec description, resolutions, n and links to its report.

The text around a block is prose and is never touched; the block's body is.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- generated: (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


@functools.cache
def _script(name: str):
    """The benchmark script ``benchmarks/NAME.py`` as a module (its ``main`` is not run)."""
    key = f"hiresflow_benchmarks_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(mod)
    return mod


# json-table PATH (a pattern over the path as written in the block) → the benchmark script that renders it
JSON_TABLES = {
    "benchmarks/results/*/versions*.json": "compare_versions",
    "benchmarks/results/native_quality-*.json": "native_quality",
    "benchmarks/results/tiny-flux-scaling": "tiny_flux_scaling",
    "benchmarks/results/*/paired.json": "cfm_paired",
    "benchmarks/results/msw_msa_speed.json": "msw_msa_speed",
    "benchmarks/results/windowed_attention_speed.json": "windowed_attention_speed",
    "benchmarks/results/guide_overhead.json": "guide_overhead",
    "benchmarks/results/support_matrix.json": "support_matrix",
    "benchmarks/results/real_widths.json": "real_widths",
    "benchmarks/results/cache_tradeoff.json": "cache_tradeoff",
    "benchmarks/results/recipe_cpu_time-*.json": "recipe_cpu_time",
    "benchmarks/results/upscale_reference_trajectory.json": "upscale_reference_trajectory",
    "benchmarks/results/stored_dtype.json": "stored_dtype",
    "benchmarks/results/guidance-sweep": "guidance_sweep",
    "benchmarks/results/*/distance-*.json": "bench_image_distance",
}


def _json_source(path: str):
    """(script module, data) of a json-table PATH."""
    name = next((n for pat, n in JSON_TABLES.items() if fnmatch.fnmatchcase(path, pat)), None)
    if name is None:
        raise SystemExit(f"json-table: no script renders {path!r}; sources: {', '.join(JSON_TABLES)}")
    mod = _script(name)
    return mod, (mod.load(ROOT / path) if hasattr(mod, "load") else json.loads((ROOT / path).read_text()))


def script_pages() -> dict[Path, str]:
    """The Markdown pages benchmark scripts write beside their JSON (``render_markdown``), from that JSON."""
    pages = {}
    for pattern, name in JSON_TABLES.items():
        if not hasattr(_script(name), "render_markdown"):
            continue
        for path in sorted(ROOT.glob(pattern)):
            mod, data = _json_source(str(path.relative_to(ROOT)))
            pages[path / "results.md" if path.is_dir() else path.with_suffix(".md")] = mod.render_markdown(data)
    return pages


def _labels(rows: list[str]) -> tuple[list[str] | None, dict[str, str] | None]:
    """``label`` / ``label = Shown name`` items of a block: the labels in order, and the names to show."""
    pairs = [[x.strip() for x in r.split("=", 1)] for r in rows if r.strip()]
    return [p[0] for p in pairs] or None, {p[0]: p[1] for p in pairs if len(p) == 2} or None


def select_rows(table: str, labels: list[str] | None, names: dict[str, str] | None) -> str:
    """The header and the rows of a Markdown table whose first cell is one of `labels`, in that order (every row
    without labels), the first cell shown as ``names[label]`` where given; text above the table (a caption) is kept."""
    lines = table.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), 0)
    head, rows = lines[:start + 2], [r.split("|") for r in lines[start + 2:]]
    by_label = {cells[1].strip(): cells for cells in rows}
    missing = [lab for lab in labels or [] if lab not in by_label]
    if missing:
        raise SystemExit(f"no row {missing} in the table; rows: {', '.join(by_label)}")
    out = []
    for cells in [by_label[lab] for lab in labels] if labels else rows:
        lab = cells[1].strip()
        out.append("|".join([cells[0], f" {(names or {}).get(lab, lab)} ", *cells[2:]]))
    return "\n".join(head + out) + "\n"


def bench_folders() -> list[Path]:
    """Committed bench folders: a ``results.json`` whose spec file exists."""
    out = []
    for f in sorted(RESULTS.glob("*/results.json")):
        name = json.loads(f.read_text())["spec"]["name"]
        if (ROOT / "benchmarks" / "specs" / f"{name}.yaml").is_file():
            out.append(f.parent)
    return out


def report_page(folder: Path) -> str:
    """``results.md`` of one bench folder, re-reported from its ``results.json``."""
    from hiresflow.eval.layout import BenchLayout, BenchResults
    from hiresflow.eval.report import markdown_report
    from hiresflow.eval.spec import load_spec

    lay = BenchLayout(folder)
    res = BenchResults.from_json(lay.results_json.read_text())
    spec_file = ROOT / "benchmarks" / "specs" / f"{res.spec['name']}.yaml"
    # the models as run: a committed spec may since name another version of a model (tiny-flux-v1)
    spec = dataclasses.replace(load_spec(spec_file), models=list(res.spec["models"]))
    return markdown_report(res, spec, lay)


def bad_inputs_table() -> str:
    """The bad-input table from ``bad_inputs.json`` (``benchmarks/bad_inputs.py``'s own renderer)."""
    return _script("bad_inputs").markdown_table(json.loads((RESULTS / "bad_inputs.json").read_text()))


def _page_link(page: Path, target: str) -> str:
    """A link from `page` to the site path `target` (README links point into the repository instead)."""
    import os

    if page == ROOT / "README.md":
        return "benchmarks/" + target
    return os.path.relpath(ROOT / "docs" / target, page.parent).replace(os.sep, "/")


def bench_index(page: Path) -> str:
    lines = ["| bench | what it measures | resolutions | n images per cell | report |", "|---|---|---|---|---|"]
    for folder in bench_folders():
        res = json.loads((folder / "results.json").read_text())
        groups = [g for g in res["groups"] if not g.get("error")]
        tags = sorted({g["tag"] for g in groups}, key=lambda t: float(t.lstrip("x")))
        n = sorted({g["n_images"] for g in groups})
        desc = " ".join((res["spec"].get("description") or "").split())
        link = _page_link(page, f"results/{folder.name}/results.md")
        lines.append(f"| `{folder.name}` | {desc} | {', '.join(tags)} | {', '.join(map(str, n))} | "
                     f"[results.md]({link}) |")
    return "\n".join(lines) + "\n"


BASELINES = ("direct", "upscale")
TIE = 0.10  # a method within 10 % of upscale's KID (or behind it) does not beat a plain resize


def choose_table(cells: list[str]) -> str:
    """Per (bench, tag): best generating method by KID (and its KID / upscale's), by KID_patch, by structure kept
    (SSIM vs native), by sun/moon duplication, and the fastest, from the groups' recorded metrics. A method "beats
    upscale" when its KID is more than `TIE` below upscale's; otherwise the row says that upscale ties it."""
    def val(g, key):
        v = (g["metrics"].get(key) or {}).get("value")
        return v if isinstance(v, (int, float)) and v == v else None

    lines = ["| model, scale (n) | lowest KID | KID / upscale's | best crops (KID_patch) | most structure kept (SSIM_nat) "
             "| fewest duplicated suns | fastest method (s/img) |", "|---|---|---|---|---|---|---|"]
    for cell in cells:
        folder, tag = cell.split(":")
        res = json.loads((ROOT / folder / "results.json").read_text())
        groups = [g for g in res["groups"] if g["tag"] == tag and not g.get("error")]
        gen = [g for g in groups if g["recipe"] not in BASELINES and g["label"] == g["recipe"]]
        up = next((g for g in groups if g["label"] == "upscale"), None)

        def best(key, lower=True, pool=gen):
            scored = [(val(g, key), g["label"]) for g in pool if val(g, key) is not None]
            if not scored:
                return None, "—"
            v, lab = (min if lower else max)(scored)
            tied = [lab for w, lab in scored if w == v]
            return v, (lab if len(tied) == 1 else f"{len(tied)} tied")

        kid, kid_lab = best("kid")
        up_kid = val(up, "kid") if up else None
        if kid is None or up_kid is None:
            ratio = "— (n too small for KID)"
        else:
            r = kid / up_kid
            ratio = f"{r:.2f}" + ("" if r < 1 - TIE else " — **upscale ties it**")
        kp, kp_lab = best("kid_patch")
        ss, ss_lab = best("ssim_native", lower=False)
        dup, dup_lab = best("dup_rate")
        fast = min(gen, key=lambda g: g["timing"]["seconds"])
        model = res["spec"]["models"][0]
        n = groups[0]["n_images"]
        lines.append(f"| {model} {tag.lstrip('x')}× (n = {n}) | {kid_lab if kid is not None else '—'} | {ratio} | "
                     f"{kp_lab} | {ss_lab} ({ss:.2f}) | {dup_lab} ({dup:.2f}) | {fast['label']} ({fast['timing']['seconds']:.1f}) |")
    return "\n".join(lines) + "\n"


MAIN_BENCHES = [("benchmarks/results/tiny-flux-v2", "x2"), ("benchmarks/results/tiny-flux-v2", "x4"),
                ("benchmarks/results/tiny-flux-v2-8x", "x8"), ("benchmarks/results/tiny-sd", "x2"),
                ("benchmarks/results/tiny-sd", "x4"), ("benchmarks/results/tiny-sd-8x", "x8")]


def method_rows(recipe: str) -> str:
    """One recipe's row (the README columns, no bold) in each main bench where it ran, first cell naming the
    model, size and n; the full tables are on the benchmark pages."""
    table = _script("readme_table").table
    lines = []
    for folder, tag in MAIN_BENCHES:
        res = json.loads((ROOT / folder / "results.json").read_text())
        g = next((g for g in res["groups"] if g["tag"] == tag and g["label"] == recipe and not g.get("error")), None)
        if g is None:
            continue
        head, rule, row = table(res, tag, [recipe]).replace("**", "").splitlines()[:3]
        if not lines:
            lines = ["| bench" + head[head.index(" |"):], rule]
        w, h = g["size"]
        lines.append(f"| {res['spec']['models'][0]} {w}×{h} (n = {g['n_images']})" + row[row.index(" |", 1):])
    if not lines:
        raise SystemExit(f"method-rows: recipe {recipe!r} ran in none of the main benches")
    return "\n".join(lines) + "\n"


def _commands(group, path=()):
    yield path, group
    if hasattr(group, "list_commands"):  # a group (typer ships its own click classes)
        ctx = group.context_class(group)
        for name in group.list_commands(ctx):
            yield from _commands(group.get_command(ctx, name), (*path, name))


def cli_help() -> str:
    """Each command's ``--help`` through the real entry point (typer's CliRunner), as the plain click text the
    CLI prints (its apps set ``rich_markup_mode=None``), at 100 columns."""
    import typer.main
    from typer.testing import CliRunner

    from hiresflow.cli import app

    runner = CliRunner()
    env = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    parts = []
    for path, _ in _commands(typer.main.get_command(app)):
        out = runner.invoke(app, [*path, "--help"], env=env, prog_name="hiresflow", terminal_width=100).output
        body = "\n".join(line.rstrip() for line in out.strip("\n").splitlines())
        parts += [f"### `{' '.join(('hiresflow', *path))}`", "", "```text", body, "```", ""]
    return "\n".join(parts)


def render_block(args: str, page: Path) -> str:
    kind = args.split()[0]
    if kind == "bench":
        head, *rows = args.split("|")
        _, folder, tag, *opts = head.split()
        metrics = next((o.split("=", 1)[1].split(",") for o in opts if o.startswith("metrics=")), None)
        spread = next((o.split("=", 1)[1] for o in opts if o.startswith("spread=")), "seeds")
        if not (ROOT / folder / "results.json").is_file():
            raise SystemExit(f"{page.relative_to(ROOT)}: {folder} has no results.json yet; run its bench "
                             f"(`hiresflow bench SPEC --out {folder}`) before regenerating the docs")
        results = json.loads((ROOT / folder / "results.json").read_text())
        return _script("readme_table").table(results, tag, *_labels(rows), metrics=metrics,
                                                   spread=spread) + "\n"
    if kind == "json-table":
        head, *rows = args.split("|")
        _, path, *which = head.split()
        mod, data = _json_source(path)
        tables = mod.tables(data)
        return select_rows(tables[which[0]] if which else next(iter(tables.values())), *_labels(rows))
    if kind == "choose":
        return choose_table(args.split()[1:])
    if kind == "method-rows":
        return method_rows(args.split()[1])
    if kind == "cli-help":
        return cli_help()
    if kind == "bad-inputs":
        return bad_inputs_table()
    if kind == "bench-index":
        return bench_index(page)
    raise SystemExit(f"{page}: unknown generated block {kind!r}; kinds: bench, json-table, choose, bad-inputs, "
                     "method-rows, cli-help, bench-index")


def fill_blocks(text: str, page: Path) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render_block(m.group("args"), page) + m.group(4), text)


def expected_pages() -> dict[Path, str]:
    """Every generated page and every page holding a generated block, with the text it should have."""
    pages = {folder / "results.md": report_page(folder) for folder in bench_folders()}
    pages[RESULTS / "bad_inputs.md"] = bad_inputs_table()
    pages.update(script_pages())
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        if BLOCK.search(text):
            pages[page] = fill_blocks(text, page)
    return pages


def stale_pages() -> list[Path]:
    return [p for p, text in expected_pages().items() if not p.is_file() or p.read_text() != text]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale page")
    args = ap.parse_args()
    stale = stale_pages()
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}")
        if stale:
            print("run `python benchmarks/docs_pages.py` to regenerate them", file=sys.stderr)
        sys.exit(1 if stale else 0)
    pages = expected_pages()
    for p in stale:
        p.write_text(pages[p])
        print(f"wrote {p.relative_to(ROOT)}")
    print(f"{len(pages)} generated pages, {len(stale)} rewritten")


if __name__ == "__main__":
    main()
