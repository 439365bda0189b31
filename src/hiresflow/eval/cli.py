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
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
):
    """Generate (resumable), evaluate against ground truth, and write OUT/results.md, results.json, grids, plot."""
    from ..quiet import progress_enabled
    from .driver import report_bench, run_bench
    from .spec import load_spec

    if sum((no_eval, eval_only, report_only)) > 1:
        typer.echo("error: --no-eval, --eval-only and --report-only exclude each other", err=True)
        raise typer.Exit(code=2)
    if threads is not None:
        if threads < 1:
            typer.echo(f"error: --threads must be >= 1, got {threads}", err=True)
            raise typer.Exit(code=2)
        import torch

        torch.set_num_threads(threads)
    try:
        parsed = load_spec(spec)
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
        results = run_bench(parsed, out, device=device, progress=progress_enabled(not quiet), generate=not eval_only,
                            evaluate=not no_eval, log=log)
    except (ValueError, TypeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2)
    failures = results.failures()
    if not no_eval:
        typer.echo(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    if failures:
        typer.echo(f"{len(failures)} group(s) failed; see the Failures section of results.md", err=True)
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
