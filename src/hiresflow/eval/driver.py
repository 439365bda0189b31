"""`hiresflow bench`: generate and evaluate (`bench`), then report (`report`), in the folder `layout` describes.

`run_bench` does all three (resumable); `report_bench` rewrites the report from DIR/results.json alone
(`hiresflow bench SPEC --out DIR --report-only`): no generation, no evaluation, no networks; `grid_bench`
regenerates just the images the grids show (`--grid-only`). `--only LABEL,...` runs some recipes and keeps the
other rows of DIR/results.json.
"""

from __future__ import annotations

from pathlib import Path

from .layout import BenchLayout, BenchResults, grid_items
from .spec import BenchSpec

__all__ = ["run_bench", "report_bench", "grid_bench"]


def run_bench(spec: BenchSpec, out: str | Path, device: str | None = None, progress: bool = True,
              generate: bool = True, evaluate: bool = True, log=print, only: list[str] | None = None,
              shard: tuple[int, int] | None = None) -> BenchResults:
    """Generate (resumable), evaluate and write DIR/results.{json,md}, grids and the latency plot.

    only: recipe labels to run; the other rows are kept from DIR/results.json (`bench.bench_results`).
    shard: (K, N) — generate only the K-th of N parts of the images (with evaluate=False; `bench.bench_results`)."""
    from .bench import bench_results
    from .report import write_reports

    layout = BenchLayout(out)
    results = bench_results(spec, layout, device, progress, generate=generate, evaluate=evaluate, log=log, only=only,
                            shard=shard)
    if evaluate:
        results.save(layout)
        write_reports(results, spec, layout, log=log)
    return results


def _evaluated_results(layout: BenchLayout) -> BenchResults:
    """DIR/results.json, refused in one line when it is absent or holds no evaluation."""
    results = BenchResults.load(layout)
    if not results.evaluated:
        raise ValueError(f"{layout.results_json} holds no evaluation (written with --no-eval); "
                         f"run `hiresflow bench SPEC --out {layout.root} --eval-only` first")
    return results


def grid_bench(spec: BenchSpec, out: str | Path, device: str | None = None, progress: bool = True, log=print,
               only: list[str] | None = None) -> BenchResults:
    """Generate only the images the grids show (`layout.grid_items`) of every recipe, or of `only`, then redraw
    results.md and the grids from DIR/results.json (tables untouched): a bench whose per-image files are gone gets
    its grids back at a fraction of its cost."""
    from .bench import generate_all

    layout = BenchLayout(out)
    _evaluated_results(layout)  # fail before generating when there is nothing to report
    gen = generate_all(spec.restricted(only) if only else spec, layout, device, progress, log,
                       items=grid_items(spec))
    if gen["errors"]:
        raise ValueError(f"grid images failed: {'; '.join(f'{k}: {v}' for k, v in gen['errors'].items())}")
    return report_bench(spec, out, log=log)


def report_bench(spec: BenchSpec, out: str | Path, log=print) -> BenchResults:
    """Rewrite DIR/results.md, the latency plot and the grids from DIR/results.json (results.json is not touched).

    Grids need the per-image files: where they are absent the grids already in DIR are kept (and said so)."""
    from .report import write_reports

    layout = BenchLayout(out)
    results = _evaluated_results(layout)
    if results.spec and results.spec != spec.to_dict():
        log(f"note: the spec differs from the one {layout.results_json} was made with (its `spec` entry); the "
            f"tables come from results.json, the header and row order from the spec given")
    write_reports(results, spec, layout, log=log)
    return results
