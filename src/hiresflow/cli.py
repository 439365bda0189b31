"""Command line: `hiresflow recipes`, `hiresflow generate PROMPT ...`.

Contract (relied on by later tooling): `recipes` prints one line per recipe starting with its name; `generate`
writes OUT/<stem>.png (final), OUT/<stem>-native.png and OUT/<stem>.json (plan, seed, versions, per-stage
wall times), each written to a temporary name first so that a failed run leaves nothing behind.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Training-free high-resolution generation.")

DEFAULT_MODEL = "tiny-flux"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=2)


def parse_overrides(items: List[str]) -> dict:
    """`key=value` pairs; values are Python literals (numbers, lists, True/False, 'strings') or bare strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            val = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            val = raw
        out[key.strip()] = val
    return out


@app.command()
def recipes(params: Optional[str] = typer.Option(None, "--params", help="show the parameters of one recipe")):
    """List the recipes (one line each, name first)."""
    from .recipes import RECIPES, recipe_params

    if params:
        try:
            for k, v in recipe_params(params).items():
                typer.echo(f"{k} = {v!r}")
        except ValueError as err:
            _fail(str(err))
        return
    width = max(len(n) for n in RECIPES)
    for name, r in RECIPES.items():
        typer.echo(f"{name.ljust(width)}  {r.summary}")


def _stem(prompt: str, method: str, seed: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"
    return f"{slug}-{method}-s{seed}"


@app.command()
def generate(
    prompt: Optional[str] = typer.Argument(None, help="text prompt (optional with --from)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=f"tiny-flux (default), tiny-sd, random-tiny-*, a diffusers folder or hub id"),
    method: Optional[str] = typer.Option(None, "--method", help="recipe name (default hiflow; see `hiresflow recipes`)"),
    scale: Optional[float] = typer.Option(None, "--scale", help="linear upscale factor over the native size (default 4)"),
    size: Optional[str] = typer.Option(None, "--size", help="target WIDTHxHEIGHT (overrides --scale)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="noise seed (default 0)"),
    out: Path = typer.Option(Path("outputs"), "--out", help="output folder"),
    negative: Optional[str] = typer.Option(None, "--negative", help="negative prompt (CFG models)"),
    set_: List[str] = typer.Option([], "--set", help="recipe parameter override key=value (repeatable)"),
    from_: Optional[Path] = typer.Option(None, "--from", help="re-run the plan, prompt, seed and model recorded in a hiresflow PNG or JSON sidecar"),
    device: Optional[str] = typer.Option(None, "--device"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
):
    """Generate one high-resolution image and its native-size counterpart."""
    from .models.base import parse_size
    from .output import read_record, save_run

    try:
        plan = record = None
        if from_ is not None:
            if method or scale is not None or size or set_:
                raise ValueError("--from re-runs a recorded plan; drop --method, --scale, --size and --set")
            record = read_record(from_)
            from .plan import Plan

            plan = Plan.from_dict(record["plan"])
            prompt = record["prompt"] if prompt is None else prompt
            seed = int(record["seed"]) if seed is None else seed
            negative = record.get("negative_prompt", "") if negative is None else negative
            model = model or record["model"]["name"]
        if prompt is None:
            raise ValueError("give a prompt (or --from IMAGE.png to re-run a saved image)")
        seed = 0 if seed is None else seed
        negative = negative or ""
        model = model or DEFAULT_MODEL
        method = method or "hiflow"
        overrides = parse_overrides(set_)
        target = parse_size(size) if size else None
        if target is None and scale is None:
            scale = 4.0
        from .models.loading import load_model
        from .recipes import build_plan
        from .runner import run_plan

        m = load_model(model, device=device)
        if plan is None:
            plan = build_plan(method, m, scale=scale, size=target, **overrides)
        result = run_plan(m, plan, prompt, seed=seed, negative_prompt=negative, progress=not quiet)
        paths = save_run(result, m, prompt, seed, out, _stem(prompt, plan.recipe, seed), negative_prompt=negative)
    except ValueError as err:
        _fail(str(err))
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    h, w = result.image.shape[-2:]
    typer.echo(f"{plan.recipe} {w}x{h} in {result.seconds:.1f} s")


def _mount_subcommands() -> None:
    from .train.cli import app as train_app

    from .eval.cli import bench

    app.add_typer(train_app, name="train", help="Train the embedded models (vae, flux, sd) and export them.")
    app.command("bench")(bench)


_mount_subcommands()


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
