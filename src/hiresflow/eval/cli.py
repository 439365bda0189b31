"""`hiresflow bench SPEC --out DIR` (typer app `app`, command `bench`; mounted on the main CLI).

Also runnable on its own: `python -m hiresflow.eval.cli bench SPEC --out DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Benchmarks: generate, evaluate and tabulate high-resolution methods.")


@app.callback()
def _group() -> None:
    """Benchmark commands."""


@app.command()
def bench(
    spec: Path = typer.Argument(..., help="YAML spec: models × recipes × scales × prompts (see hiresflow.eval.spec)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (resumable: finished images are kept)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda / cpu (default: the spec's, else cuda if available)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's)"),
    no_eval: bool = typer.Option(False, "--no-eval", help="only generate"),
    eval_only: bool = typer.Option(False, "--eval-only", help="only evaluate and report what is already generated"),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="only rewrite results.md, plot and grids from OUT/results.json (no "
                                          "generation, no evaluation; grids need the per-image files)"),
    grid_only: bool = typer.Option(False, "--grid-only",
                                   help="generate only the images the grids show (first seed, first grid.rows "
                                        "prompts), then redraw results.md and the grids from OUT/results.json"),
    only: Optional[str] = typer.Option(None, "--only",
                                       help="comma-separated recipe labels to run; the other rows are kept from "
                                            "OUT/results.json (same bench: prompts, seeds, sizes, metrics)"),
    shard: Optional[str] = typer.Option(None, "--shard",
                                        help="K/N: generate only the K-th of N parts of the images (with --no-eval), "
                                             "so N processes fill OUT side by side; then evaluate with --eval-only"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
):
    """Generate (resumable), evaluate against ground truth, and write OUT/results.md, results.json, grids, plot."""
    from ..quiet import progress_enabled
    from .driver import grid_bench, report_bench, run_bench
    from .spec import load_spec

    if sum((no_eval, eval_only, report_only, grid_only)) > 1:
        typer.echo("error: --no-eval, --eval-only, --report-only and --grid-only exclude each other", err=True)
        raise typer.Exit(code=2)
    labels = [x.strip() for x in only.split(",") if x.strip()] if only is not None else None
    if labels is not None and not labels:
        typer.echo("error: --only needs at least one recipe label, e.g. --only dype,hiflow", err=True)
        raise typer.Exit(code=2)
    if labels and report_only:
        typer.echo("error: --only selects recipes to run; --report-only runs none (drop one of them)", err=True)
        raise typer.Exit(code=2)
    if shard is not None:
        from .layout import parse_shard

        try:
            shard_part = parse_shard(shard)
        except ValueError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2)
        if not no_eval:
            from .bench import SHARD_NEEDS_NO_EVAL

            typer.echo(f"error: {SHARD_NEEDS_NO_EVAL}", err=True)
            raise typer.Exit(code=2)
    else:
        shard_part = None
    if threads is not None:
        if threads < 1:
            typer.echo(f"error: --threads must be >= 1, got {threads}", err=True)
            raise typer.Exit(code=2)
        import torch

        torch.set_num_threads(threads)
    try:
        parsed = load_spec(spec)
        if labels:
            parsed.restricted(labels)  # unknown labels: one line before anything runs
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2)
    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    if report_only:
        try:
            report_bench(parsed, out, log=lambda msg: typer.echo(msg, err=True))
        except (FileNotFoundError, ValueError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2)
        typer.echo(f"wrote {out / 'results.md'} from {out / 'results.json'}")
        return
    from ..models.loading import check_device

    try:
        check_device(device)
        if grid_only:
            grid_bench(parsed, out, device=device, progress=progress_enabled(not quiet), log=log, only=labels)
            typer.echo(f"wrote the grids and {out / 'results.md'} from {out / 'results.json'}")
            return
        results = run_bench(parsed, out, device=device, progress=progress_enabled(not quiet), generate=not eval_only,
                            evaluate=not no_eval, log=log, only=labels, shard=shard_part)
    except (ValueError, TypeError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2)
    failures = results.failures()
    if labels:  # rows kept from the earlier run are not this run's failures
        failures = {k: v for k, v in failures.items() if k.rsplit("/", 1)[-1] in labels}
    if not no_eval:
        typer.echo(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    if failures:
        typer.echo(f"{len(failures)} group(s) failed; see the Failures section of results.md", err=True)
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
