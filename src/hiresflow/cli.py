"""Command line: `hiresflow recipes`, `hiresflow generate PROMPT ...`, `hiresflow upscale IMAGE ...`,
`hiresflow batch PROMPTS --out DIR`, `hiresflow app`.

Contract (relied on by later tooling): `recipes` prints one line per recipe starting with its name; `generate`
writes OUT/<stem>.png (final), OUT/<stem>-native.png and OUT/<stem>.json (plan, seed, versions, per-stage
wall times), stem = <prompt>-<method>-<model>-<W>x<H>-s<seed> (`hiresflow.naming`), never overwriting an existing
set unless --overwrite; each file is written to a temporary name first so a failed or interrupted run (Ctrl-C,
SIGTERM) leaves nothing behind, and every argument is checked before the model loads.
"""

from __future__ import annotations

import ast
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer



# rich_markup_mode=None: click's plain help, where a flag reads as a flag (typer's rich panels print `--quiet <bool>`)
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Training-free high-resolution generation.")

DEFAULT_MODEL = "tiny-flux"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code=2)


def parse_overrides(items: List[str]) -> dict:
    """`key=value` pairs; values are Python literals (numbers, lists, True/False, 'strings') or bare strings;
    true/false/none/null in any case are the booleans and None (shells and YAML write them lowercase)."""
    words = {"true": True, "false": False, "none": None, "null": None}
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        if raw.strip().lower() in words:
            out[key.strip()] = words[raw.strip().lower()]
            continue
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: temporary files are removed and nothing half-written is left."""


@contextmanager
def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


RUN_ERRORS = (ValueError, TypeError, FloatingPointError)


@app.callback()
def _startup() -> None:
    """Parse every HIRESFLOW_* variable before any subcommand does any work (`hiresflow.settings`)."""
    from .settings import SettingsError, load

    try:
        load()
    except SettingsError as err:
        _fail(str(err))


def _notes(quiet: bool):
    """Notes of the run (e.g. a truncated prompt) as `note: …` lines on stderr; none under --quiet."""
    from .quiet import notes_to

    return notes_to((lambda msg: None) if quiet else (lambda msg: typer.echo(f"note: {msg}", err=True)))


@contextmanager
def _user_errors(interrupted: str = "interrupted: nothing was written"):
    """What a run can meet, as one `error:` line and a non-zero exit: bad input and refusals (exit 2, a resource
    refusal worded with --allow-large), OS errors such as a full disk or a read-only folder (exit 2, naming the
    file), Ctrl-C or SIGTERM (exit 130). Files are written atomically, so none of these leaves a partial image."""
    try:
        with _sigterm_as_interrupt():
            yield
    except RUN_ERRORS as err:
        from .resources import CLI, ResourceLimitError

        _fail(err.describe(CLI) if isinstance(err, ResourceLimitError) else str(err))
    except OSError as err:
        from .atomic import describe_os_error

        _fail(describe_os_error(err))
    except KeyboardInterrupt:
        typer.echo(interrupted, err=True)
        raise typer.Exit(code=130)


@app.command()
def generate(
    prompt: Optional[str] = typer.Argument(None, help="text prompt (optional with --from)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="tiny-flux (default, v2), tiny-flux-v1, tiny-sd (= tiny-sd-v3), tiny-sd-v1, random-tiny-*, a diffusers folder or hub id"),
    method: Optional[str] = typer.Option(None, "--method", help="recipe name (default hiflow; see `hiresflow recipes`)"),
    scale: Optional[float] = typer.Option(None, "--scale", help="linear upscale factor over the native size (default 4; ignored when --size is given)"),
    size: Optional[str] = typer.Option(None, "--size", help="target WIDTHxHEIGHT; wins over --scale (the native pass stays at the model's native size, with this aspect ratio)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="noise seed in 0…2**64-1 (default 0)"),
    out: Path = typer.Option(Path("outputs"), "--out", help="output folder"),
    negative: Optional[str] = typer.Option(None, "--negative", help="negative prompt (CFG models)"),
    set_: List[str] = typer.Option([], "--set", help="recipe parameter override key=value (repeatable)"),
    from_: Optional[Path] = typer.Option(None, "--from", help="re-run the plan, prompt, seed and model recorded in a hiresflow PNG or JSON sidecar (checked as untrusted data; it may load only the embedded models unless --model or --trust-paths)"),
    trust_paths: bool = typer.Option(False, "--trust-paths", help="let a --from record load the model folder or hub id and the upsampler folders it names"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing image set of the same name (default: add -2, -3, …)"),
    allow_large: bool = typer.Option(False, "--allow-large", help="run even when the memory or time estimate exceeds this machine"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: cuda when available)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="memory the run may use, e.g. 24GB: the cheapest diffusers mechanisms whose predicted peak fits are applied (see `hiresflow plan --explain`)"),
    cache: Optional[str] = typer.Option(None, "--cache", help="step caching per stage, NAME[:VALUE][@STAGES], e.g. first-block:0.08 (first-block, taylorseer, magcache, pab, faster; stages high (default), all or 1,2)"),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="processes sharing one image through diffusers' context parallelism (run under torchrun --nproc-per-node N)"),
    native: Optional[int] = typer.Option(None, "--native", help="the model's native size in pixels per side, when its folder does not state it"),
):
    """Generate one high-resolution image and its native-size counterpart.

    --size wins over --scale: with both, the target is --size and the native pass runs at the model's native size
    (a note says --scale was ignored). A job beyond this machine's memory or time limit is refused before the model
    loads or before any model call (see --allow-large)."""
    with _user_errors(), _notes(quiet):
        paths, result, plan = _generate(prompt, model, method, scale, size, seed, out, negative, set_, from_,
                                        overwrite, allow_large, device, quiet, trust_paths,
                                        max_memory=max_memory, cache=cache, parallel=parallel, native=native)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    h, w = result.image.shape[-2:]
    typer.echo(f"{plan.recipe} {w}x{h} in {result.seconds:.1f} s")


def _recorded_plan(source, record: dict, model: str | None, trust_paths: bool):
    """The plan of a --from record, treated as untrusted: checked field by field (`Plan.from_dict`), and allowed to
    load only embedded models and upsamplers unless the user names the model (--model) or trusts the record."""
    from .models.loading import EMBEDDED_DIR, MODEL_NAMES
    from .plan import Plan

    try:
        plan = Plan.from_dict(record["plan"])
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    if trust_paths:
        return plan
    asked = record["model"]["name"]
    if model is None and asked not in MODEL_NAMES:
        raise ValueError(f"{source} asks for model {asked[:120]!r}, which is not an embedded model (a record alone may "
                         f"load {', '.join(MODEL_NAMES)}); pass --model with the model you want, or --trust-paths "
                         f"to load the one it names")
    embedded = {p.name for p in EMBEDDED_DIR.iterdir() if p.is_dir()} if EMBEDDED_DIR.is_dir() else set()
    for where, name in plan.named_files():
        if name not in embedded:
            raise ValueError(f"{source}: {where} asks for {name[:120]!r}, which is not an embedded model; pass "
                             f"--trust-paths to let the record load it")
    return plan


def _generate(prompt, model, method, scale, size, seed, out, negative, set_, from_, overwrite, allow_large, device,
              quiet, trust_paths=False, max_memory=None, cache=None, parallel=None, native=None):
    """Validate every argument, prepare --out, then load, plan, check resources, run and save."""
    from .checks import check_seed
    from .models.base import parse_size
    from .models.loading import check_device
    from .naming import clean_stale, image_stem, output_folder, reserve_stem
    from .output import read_record, save_run
    from .quiet import progress_enabled
    from .recipes import recipe_params

    plan = None
    if from_ is not None:
        if method or scale is not None or size or set_:
            raise ValueError("--from re-runs a recorded plan; drop --method, --scale, --size and --set")
        record = read_record(from_)
        if record.get("upscale"):
            raise ValueError(f"{from_} was upscaled from {str(record['upscale'].get('source'))[:80]}; re-run it with "
                             f"hiresflow upscale")
        plan = _recorded_plan(from_, record, model, trust_paths)
        prompt = record["prompt"] if prompt is None else prompt
        seed = record["seed"] if seed is None else seed
        negative = record.get("negative_prompt") or "" if negative is None else negative
        model = model or record["model"]["name"]
    elif trust_paths:
        raise ValueError("--trust-paths applies to --from records; drop it")
    if prompt is None:
        raise ValueError("give a prompt (or --from IMAGE.png to re-run a saved image)")
    seed = check_seed(0 if seed is None else seed)
    negative = negative or ""
    model = model or DEFAULT_MODEL
    method = method or "hiflow"
    overrides = parse_overrides(set_)
    target = parse_size(size) if size else None
    if target is not None and scale is not None:
        if not quiet:
            typer.echo(f"note: --size {size} sets the target; --scale {scale:g} is ignored (the native pass stays "
                       f"at the model's native size)", err=True)
        scale = None
    if target is None and scale is None:
        scale = 4.0
    if plan is None:
        valid = recipe_params(method)  # unknown recipe: one-line error before loading anything
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"recipe {method!r} has no parameter {', '.join(unknown)}; "
                             f"list them with `hiresflow recipes --params {method}`")
    device = check_device(device)
    options = _run_options(max_memory, cache, parallel, native)

    from .resources import check_resources, preflight

    preflight(model, device, size=plan.target_size if plan is not None else target, scale=scale, allow=allow_large)
    with output_folder(out) as out:
        clean_stale(out)

        from .models.loading import load_model
        from .recipes import build_plan
        from .runner import run_plan

        m = load_model(model, device=device)
        if plan is None:
            plan = build_plan(method, m, scale=scale, size=target, **overrides)
        else:  # a recorded plan: its sizes must suit this model
            for i, st in enumerate(plan.stages):
                try:
                    m.geometry.validate(*st.size)
                except ValueError as err:
                    raise ValueError(f"{from_}: plan.stages[{i}].size: {err}") from None
        memory = _apply_run_options(m, plan, options, device)
        check_resources(plan, m, allow=allow_large, memory_checked=memory is not None)
        if not options["main"]:  # other context-parallel processes compute the same image; rank 0 writes it
            return {}, run_plan(m, plan, prompt, seed=seed, negative_prompt=negative, cache=options["cache"]), plan
        stem = image_stem(prompt, plan.recipe, model, plan.target_size, seed)
        with reserve_stem(out, stem, overwrite=overwrite) as slot:
            result = run_plan(m, plan, prompt, seed=seed, negative_prompt=negative,
                              progress=progress_enabled(not quiet), cache=options["cache"])
            paths = save_run(result, m, prompt, seed, out, slot.stem, negative_prompt=negative)
    return paths, result, plan


def _run_options(max_memory, cache, parallel, native) -> dict:
    """--max-memory, --cache, --parallel and --native checked before the model loads (one-line errors)."""
    from .caching import parse_cache
    from .memory_plan import parse_memory
    from .parallel import ParallelSpec, check_parallel, is_main

    if max_memory is not None:
        parse_memory(max_memory)
    spec = ParallelSpec(parallel) if parallel is not None else None
    if spec is not None:
        check_parallel(spec)
    if native is not None and native <= 0:
        raise ValueError(f"--native must be a positive number of pixels, got {native}")
    return {"max_memory": max_memory, "cache": parse_cache(cache) if cache is not None else None,
            "parallel": spec, "native": native, "main": spec is None or is_main()}


def _apply_run_options(m, plan, options: dict, device):
    """After loading: the native size, the cache check, context parallelism and the memory plan (returned)."""
    if options["native"] is not None:
        from dataclasses import replace

        n = int(options["native"])
        m.geometry.validate(n, n)
        m.geometry = replace(m.geometry, native=(n, n))
    if options["cache"] is not None:
        from .caching import check_cache

        check_cache(m, options["cache"])
    spec = options["parallel"]
    if spec is not None and spec.degree > 1:
        from .parallel import check_plan, enable_context_parallel, init_distributed

        check_plan(m, plan, spec)
        init_distributed(m.device)
        enable_context_parallel(m, spec)
    if options["max_memory"] is None:
        return None
    from .memory_plan import apply_memory_plan

    return apply_memory_plan(m, plan, options["max_memory"], str(device))


@app.command("plan")
def plan_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="a model name or folder (loaded), as for generate"),
    arch: Optional[str] = typer.Option(None, "--arch", help="a published architecture priced without weights: flux-dev, sdxl or sd3-medium (the plan is built on the embedded model of the same family)"),
    method: str = typer.Option("hiflow", "--method", help="recipe name"),
    scale: Optional[float] = typer.Option(None, "--scale", help="linear upscale factor (default 4)"),
    size: Optional[str] = typer.Option(None, "--size", help="target WIDTHxHEIGHT; wins over --scale"),
    set_: List[str] = typer.Option([], "--set", help="recipe parameter override key=value (repeatable)"),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="the budget to choose mechanisms for, e.g. 24GB"),
    device: Optional[str] = typer.Option(None, "--device", help="the device the run would use (cpu, cuda, …)"),
    explain: bool = typer.Option(False, "--explain", help="print the memory plan: every phase's predicted peak and the mechanisms tried"),
):
    """Print the plan's stages; with --explain, the memory plan that `generate --max-memory` would apply."""
    from .models.base import parse_size

    with _user_errors("interrupted"):
        if (model is None) == (arch is None):
            raise ValueError("give --model (a model to load) or --arch (flux-dev, sdxl or sd3-medium)")
        overrides = parse_overrides(set_)
        target = parse_size(size) if size else None
        text = _plan_text(model, arch, method, scale if target is None else None, target, overrides, max_memory,
                          device, explain)
    typer.echo(text)


def _plan_text(model, arch, method, scale, target, overrides, max_memory, device, explain) -> str:
    from .memory_plan import ARCHITECTURES, explain as explain_plan, memory_plan_for, memory_plan_named, parse_memory
    from .models.loading import check_device, load_model
    from .recipes import build_plan

    budget = parse_memory(max_memory) if max_memory is not None else None
    scale = 4.0 if scale is None and target is None else scale
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown --arch {arch!r}; choose {', '.join(ARCHITECTURES)}")
        a = ARCHITECTURES[arch]
        stand_in = {"flux": "random-tiny-flux", "sdxl": "random-tiny-sdxl", "sd3": "random-tiny-sd3"}[a.family]
        m = load_model(stand_in, device="cpu")
        from dataclasses import replace

        m.geometry = replace(m.geometry, native=(a.native, a.native), vae_scale=a.vae.factor)
        plan = build_plan(method, m, scale=scale, size=target, **overrides)
        dev = device or "cuda"
        mp = memory_plan_named(arch, plan, budget, dev)
    else:
        m = load_model(model, device=check_device(device))
        plan = build_plan(method, m, scale=scale, size=target, **overrides)
        mp = memory_plan_for(m, plan, budget, str(m.device))
    lines = [f"{plan.recipe}: {len(plan.stages)} stage(s) to {plan.target_size[1]}x{plan.target_size[0]}"]
    for i, st in enumerate(plan.stages):
        lines.append(f"  stage {i} {st.size[1]}x{st.size[0]}: {st.schedule.steps} steps from index "
                     f"{st.schedule.start}, {len(st.guides)} guide(s), {len(st.patches)} patch(es)")
    if plan.upscale is not None:
        up = plan.upscale
        how = f"{up.upscaler}, then {up.interpolation}" if up.upscaler else up.interpolation
        through = ", through the VAE once" if up.vae_roundtrip else ""
        lines.append(f"  then {how} to {up.size[1]}x{up.size[0]}{through}")
    if explain:
        lines.append(explain_plan(mp))
    else:
        lines.append(f"predicted peak {mp.peak.total / 2**30:.2f} GiB at {mp.peak.name} "
                     f"(mechanisms: {mp.mechanisms.describe()}; --explain for every phase)")
    return "\n".join(lines)


@app.command()
def upscale(
    image: Path = typer.Argument(..., help="the image to enlarge (PNG, JPEG, WebP, …; EXIF orientation applied, alpha on white)"),
    prompt: str = typer.Option(..., "--prompt", "-p", help="what the image shows (conditions the high-resolution stages)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="tiny-flux (default, v2), tiny-flux-v1, tiny-sd (= tiny-sd-v3), tiny-sd-v1, random-tiny-*, a diffusers folder or hub id"),
    method: str = typer.Option("hiflow", "--method", help="hiflow, sdedit, freescale, diffusehigh, imax, demofusion or upscale"),
    scale: float = typer.Option(2.0, "--scale", help="linear factor over the model's native size (2, 4, 8, …), not over the image's size; an output with fewer pixels than the image is refused (see --allow-smaller)"),
    reference: Optional[str] = typer.Option(None, "--reference", help="reference trajectory for HiFlow: inversion (default) or renoise"),
    seed: int = typer.Option(0, "--seed", help="noise seed in 0…2**64-1"),
    out: Path = typer.Option(Path("outputs"), "--out", help="output folder"),
    negative: str = typer.Option("", "--negative", help="negative prompt (CFG models)"),
    set_: List[str] = typer.Option([], "--set", help="recipe parameter override key=value (repeatable)"),
    allow_smaller: bool = typer.Option(False, "--allow-smaller", help="write the output even when it has fewer pixels than the image (a re-rendering at native × scale rather than an enlargement)"),
    allow_large: bool = typer.Option(False, "--allow-large", help="run even when the memory or time estimate exceeds this machine"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing image set of the same name"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
):
    """Enlarge your own image: it becomes the native stage of the method's cascade.

    The image is resized to the model's native size (64 px for the tiny models); the output is native × --scale.

    An output with fewer pixels than the image is refused before the run (an 800x600 photo at --scale 2 would give 128x96 on a tiny model): raise --scale as the error says, or pass --allow-smaller. So is an image whose aspect ratio the model's native size cannot hold (crop it), and a job beyond this machine's memory or time limit (see --allow-large)."""
    with _user_errors(), _notes(quiet):
        paths, output = _upscale(image, prompt, model or DEFAULT_MODEL, method, scale, reference, seed, out,
                                 negative, set_, overwrite, device, quiet, allow_smaller, allow_large)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    w, h = output.images[0].size
    typer.echo(f"{output.plan.recipe} {w}x{h} from {image} in {output.timings['wall_seconds']:.1f} s")


def _upscale(image, prompt, model, method, scale, reference, seed, out, negative, set_, overwrite, device, quiet,
             allow_smaller=False, allow_large=False):
    """Check everything (the image is read first), then load, upscale and save like `generate`."""
    from .checks import check_choice, check_seed
    from .models.loading import check_device, load_model
    from .naming import clean_stale, image_stem, output_folder, reserve_stem
    from .output import save_run
    from .quiet import progress_enabled
    from .recipes import recipe_params
    from .resources import preflight
    from .upscale import (DEFAULT_REFERENCE, REFERENCES, UPSCALE_METHODS, SmallerThanInputError, load_user_image,
                          upscale_image)

    check_seed(seed)
    check_choice("--method", method, UPSCALE_METHODS)
    reference = check_choice("--reference", reference or DEFAULT_REFERENCE, REFERENCES)
    overrides = parse_overrides(set_)
    unknown = sorted(set(overrides) - set(recipe_params(method)))
    if unknown:
        raise ValueError(f"recipe {method!r} has no parameter {', '.join(unknown)}; "
                         f"list them with `hiresflow recipes --params {method}`")
    load_user_image(image)  # unreadable file: one line before the model loads
    device = check_device(device)
    preflight(model, device, scale=scale, area_factor=0.25, allow=allow_large)
    with output_folder(out) as out:
        clean_stale(out)
        m = load_model(model, device=device)
        try:
            output = upscale_image(m, image, prompt, method=method, scale=scale, seed=seed,
                                   negative_prompt=negative, reference=reference, allow_smaller=allow_smaller,
                                   allow_large=allow_large, progress=progress_enabled(not quiet), **overrides)
        except SmallerThanInputError as err:
            raise ValueError(f"{image}: {err.describe('--scale ', '--allow-smaller')}") from None
        output.extra["upscale"]["source"] = str(image)
        result = output.result
        stem = image_stem(f"{Path(image).stem} {prompt}", f"up-{method}", model, output.plan.target_size, seed)
        with reserve_stem(out, stem, overwrite=overwrite) as slot:
            paths = save_run(result, m, prompt, seed, out, slot.stem, negative_prompt=negative,
                             extra={"upscale": output.extra["upscale"]})
    return paths, output


@app.command()
def batch(
    prompts: Path = typer.Argument(..., help=".txt (one prompt per line) or .jsonl ({\"prompt\": …, \"seed\": …} per line)"),
    out: Path = typer.Option(..., "--out", help="output folder: images/ and manifest.jsonl (re-run to resume)"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model for every prompt"),
    method: str = typer.Option("hiflow", "--method", help="recipe (a JSONL line may override it)"),
    scale: Optional[float] = typer.Option(None, "--scale", help="linear upscale factor (default 4; ignored when --size is given)"),
    size: Optional[str] = typer.Option(None, "--size", help="target WIDTHxHEIGHT; wins over --scale (the native pass stays at the model's native size)"),
    seed: int = typer.Option(0, "--seed", help="seed of the first prompt; prompt k gets seed+k unless its line says"),
    set_: List[str] = typer.Option([], "--set", help="recipe parameter override key=value (repeatable)"),
    allow_large: bool = typer.Option(False, "--allow-large", help="run jobs even when their memory or time estimate exceeds this machine"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (accelerate picks per process)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
):
    """Generate one image per prompt, resumable; shards across processes under `accelerate launch`.

    A JSONL line's own "size" or "scale" wins over --size/--scale, and a size wins over a scale (the native pass
    stays at the model's native size). Every job is checked against this machine's memory and time limit before
    the batch starts: a refused job is reported with its index and reason, the others run, and the exit code is
    2 when any job was refused (see --allow-large)."""
    from .batch import BatchConfig, run_batch
    from .checks import check_seed

    def say(msg):
        typer.echo(msg, err=True)

    with _user_errors("interrupted: finished images are kept; re-run the same command to resume"), _notes(quiet):
        cfg = BatchConfig(model=model, method=method, scale=scale, size=size, seed=check_seed(seed),
                          params=parse_overrides(set_), device=device, progress=not quiet, allow_large=allow_large)
        info = run_batch(prompts, out, cfg, log=(lambda msg: None) if quiet else say, warn=say)
    refused = f", {len(info['refused'])} refused" if info["refused"] else ""
    typer.echo(f"process {info['process']}: {info['written']} written, {info['skipped']} already done{refused}; "
               f"manifest: {info['manifest']}")
    if info["refused"]:
        raise typer.Exit(code=2)


@app.command("app")
def app_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0 for the network)"),
    port: int = typer.Option(7860, "--port", help="port"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model selected at start"),
    out: Path = typer.Option(Path("outputs/app"), "--out", help="where the app writes the PNGs it offers for download"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps"),
    concurrency: int = typer.Option(1, "--concurrency", help="jobs run at once; the rest wait in the queue"),
):
    """Start the Gradio app (needs gradio: the app extra, see README "App").

    The address is checked first: a port outside 1…65535, one already in use or a host that is not this
    machine's is a one-line error before anything loads."""
    if not 1 <= port <= 65535:
        _fail(f"--port must lie in 1…65535, got {port}")
    with _user_errors("interrupted"):
        _check_address(host, port)
    try:
        import gradio  # noqa: F401 - the optional extra

        from .app import AppConfig, launch
    except ImportError as err:
        _fail(f"the app needs gradio ({err.name} is missing); install it with: pip install -e \".[app]\"")
    with _user_errors("interrupted"):
        launch(AppConfig(model=model, out=out, device=device, concurrency=concurrency), host=host, port=port)


def _check_address(host: str, port: int) -> None:
    """Bind host:port once, as the server will (OSError: in use, not an address of this machine, no such host)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: {err.strerror or err}; use an address of this machine such as "
                         f"127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server sets it
        try:
            sock.bind(addr)
        except OSError as err:
            from .atomic import describe_os_error

            raise ValueError(describe_os_error(err, f"cannot listen on {host}:{port}")) from None


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
