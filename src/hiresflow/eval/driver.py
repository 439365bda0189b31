"""`hiresflow bench`: generate and evaluate (`bench`), then report (`report`), in the folder `layout` describes.

`run_bench` does all three (resumable).
"""

from __future__ import annotations

from pathlib import Path

from .layout import BenchLayout, BenchResults
from .spec import BenchSpec

__all__ = ["run_bench"]


def run_bench(spec: BenchSpec, out: str | Path, device: str | None = None, progress: bool = True,
              generate: bool = True, evaluate: bool = True, log=print) -> BenchResults:
    """Generate (resumable), evaluate and write DIR/results.{json,md}, grids and the latency plot."""
    from .bench import bench_results
    from .report import write_reports

    layout = BenchLayout(out)
    results = bench_results(spec, layout, device, progress, generate=generate, evaluate=evaluate, log=log)
    if evaluate:
        results.save(layout)
        write_reports(results, spec, layout, log=log)
    return results
