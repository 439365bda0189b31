"""``hiresflow train ...``: train the embedded models (``vae``, ``flux``, ``sd``, ``cfm``) and ``export`` them.

Every training command is resumable: rerunning it with the same options continues from
``<runs>/<name>/ckpt.safetensors`` (checkpoints every ``--ckpt-every`` seconds, on Ctrl-C / SIGTERM and at the
end). ``--steps`` may be raised on a rerun to train longer (the LR schedule then stretches).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Train the embedded tiny models on the reference world (CPU, resumable).")


def _record_command(ctx: typer.Context, runs: str, name: str) -> None:
    """Append the full command (every option spelled out) to <runs>/<name>/commands.txt."""
    parts = ["hiresflow", "train", ctx.info_name or ""]
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if value is None or not getattr(p, "opts", None):
            continue
        parts += [p.opts[0], str(value)]
    d = Path(runs) / name
    d.mkdir(parents=True, exist_ok=True)
    with (d / "commands.txt").open("a") as f:
        f.write(" ".join(shlex.quote(a) for a in parts) + "\n")


def _spec(name, runs, seed, steps, batch, threads, lr, warmup, ckpt_every, sample_every, stop_after=None):
    from .common import TrainSpec

    return TrainSpec(name=name, runs=runs, seed=seed, steps=steps, batch=batch, threads=threads, lr=lr,
                     warmup=warmup, ckpt_every_s=ckpt_every, sample_every=sample_every, stop_after=stop_after)


SOURCE_HELP = "module providing vocabulary() and dataset_batch() (the training data)"
MIX_HELP = "share of full-scene views in the latent cache, the rest close-ups (default: the world's 0.65)"
INIT_HELP = ("warm start from this pipeline (embedded name or folder): its text encoders, tokenizers and VAE are kept "
             "and its denoiser trains on; --vae and --transformer/--unet are then unused")
STOP_HELP = "stop after this many steps of this invocation (checkpointed; rerun to continue)"


def _json_option(text: str | None, flag: str) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object such as '{{\"num_layers\": 4}}' ({err.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"num_layers\": 4}}', got {text!r}")
    return value


def _guarded(fn):
    """Bad options give a one-line error (exit 2) instead of a traceback."""
    import functools

    from .common import ConfigMismatch

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, ConfigMismatch, FloatingPointError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2)

    return run


def _shown(path: Path) -> str:
    """A path as the training record shows it: relative to the working directory when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _finish(result: dict) -> None:
    typer.echo(json.dumps({k: v for k, v in result.items()}, indent=2, default=str))
    if result.get("signal"):
        typer.echo("interrupted: checkpoint saved; rerun the same command to resume", err=True)
        raise typer.Exit(code=130)


@app.command()
@_guarded
def vae(
    ctx: typer.Context,
    name: str = typer.Option("vae", help="run name (folder under --runs)"),
    runs: str = typer.Option("runs", help="folder of the runs"),
    seed: int = typer.Option(0, help="seed of weights and batches"),
    steps: int = typer.Option(3000, help="total steps"),
    batch: int = typer.Option(16, help="crops per step"),
    threads: int = typer.Option(2, help="torch threads"),
    lr: float = typer.Option(1e-3),
    warmup: int = typer.Option(100),
    crop: int = typer.Option(64, help="training crop size (px)"),
    sizes: str = typer.Option("64,96,128", help="render sizes the crops are taken from"),
    channels: str = typer.Option("32,64,64", help="block_out_channels (3 levels = factor 4)"),
    layers: int = typer.Option(1, help="layers_per_block"),
    groups: int = typer.Option(16, help="norm_num_groups"),
    kl_weight: float = typer.Option(1e-6),
    grad_weight: float = typer.Option(0.5),
    ema: float = typer.Option(0.995, help="EMA decay"),
    ckpt_every: float = typer.Option(180.0, help="seconds between checkpoints"),
    sample_every: int = typer.Option(250, help="steps between preview PNGs / evaluations"),
    stop_after: Optional[int] = typer.Option(None, help=STOP_HELP),
    source: str = typer.Option("hiresflow.world", help=SOURCE_HELP),
):
    """Train the shared factor-4 VAE; at the end writes <runs>/<name>/vae/ (with scaling/shift factors)."""
    from .data import world_source
    from .vae import VaeOptions, train_vae

    spec = _spec(name, runs, seed, steps, batch, threads, lr, warmup, ckpt_every, sample_every, stop_after)
    opts = VaeOptions(crop=crop, sizes=tuple(int(s) for s in sizes.split(",")), kl_weight=kl_weight,
                      grad_weight=grad_weight, ema_decay=ema,
                      config=dict(block_out_channels=tuple(int(c) for c in channels.split(",")),
                                  layers_per_block=layers, norm_num_groups=groups))
    _record_command(ctx, runs, name)
    _finish(train_vae(spec, opts, world_source(source)))


def _diffusion(ctx, kind, name, runs, seed, steps, batch, threads, lr, warmup, vae_dir, cache_n, p_uncond, ema,
               ckpt_every, sample_every, denoiser, stop_after, source, logit_mean=0.0, logit_std=1.0,
               full_fraction=None, init_from=None, scheduler=None):
    from .data import world_source
    from .diffusion import DiffusionOptions, train_diffusion

    spec = _spec(name, runs, seed, steps, batch, threads, lr, warmup, ckpt_every, sample_every, stop_after)
    opts = DiffusionOptions(kind=kind, vae=vae_dir, cache_n=cache_n, p_uncond=p_uncond, ema_decay=ema,
                            logit_mean=logit_mean, logit_std=logit_std, full_fraction=full_fraction,
                            init_from=init_from or None,
                            denoiser=_json_option(denoiser, "--transformer/--unet"),
                            scheduler=_json_option(scheduler, "--scheduler"))
    _record_command(ctx, runs, name)
    _finish(train_diffusion(spec, opts, world_source(source)))


@app.command()
@_guarded
def flux(
    ctx: typer.Context,
    name: str = typer.Option("flux", help="run name (folder under --runs)"),
    runs: str = typer.Option("runs"),
    seed: int = typer.Option(0),
    steps: int = typer.Option(4000),
    batch: int = typer.Option(64),
    threads: int = typer.Option(2),
    lr: float = typer.Option(1e-3),
    warmup: int = typer.Option(200),
    vae_dir: str = typer.Option("runs/vae/vae", "--vae", help="trained VAE folder"),
    cache_n: int = typer.Option(50000, help="views in the latent cache"),
    p_uncond: float = typer.Option(0.1, help="empty-prompt probability (for CFG)"),
    ema: float = typer.Option(0.999, help="EMA decay"),
    logit_mean: float = typer.Option(0.0, help="σ = sigmoid(mean + std·n)"),
    logit_std: float = typer.Option(1.0),
    full_fraction: Optional[float] = typer.Option(None, help=MIX_HELP),
    ckpt_every: float = typer.Option(180.0),
    sample_every: int = typer.Option(500),
    transformer: Optional[str] = typer.Option(None, help="JSON overrides of the transformer config"),
    init_from: Optional[str] = typer.Option(None, help=INIT_HELP),
    stop_after: Optional[int] = typer.Option(None, help=STOP_HELP),
    source: str = typer.Option("hiresflow.world", help=SOURCE_HELP),
):
    """Train tiny-flux (FluxTransformer2DModel, rectified flow, 64 px)."""
    _diffusion(ctx, "flux", name, runs, seed, steps, batch, threads, lr, warmup, vae_dir, cache_n, p_uncond, ema,
               ckpt_every, sample_every, transformer, stop_after, source, logit_mean, logit_std, full_fraction,
               init_from)


@app.command()
@_guarded
def sd(
    ctx: typer.Context,
    name: str = typer.Option("sd", help="run name (folder under --runs)"),
    runs: str = typer.Option("runs"),
    seed: int = typer.Option(0),
    steps: int = typer.Option(4000),
    batch: int = typer.Option(64),
    threads: int = typer.Option(2),
    lr: float = typer.Option(5e-4),
    warmup: int = typer.Option(200),
    vae_dir: str = typer.Option("runs/vae/vae", "--vae", help="trained VAE folder"),
    cache_n: int = typer.Option(50000, help="views in the latent cache"),
    p_uncond: float = typer.Option(0.1, help="empty-prompt probability (for CFG)"),
    ema: float = typer.Option(0.999, help="EMA decay"),
    ckpt_every: float = typer.Option(180.0),
    sample_every: int = typer.Option(500),
    full_fraction: Optional[float] = typer.Option(None, help=MIX_HELP),
    unet: Optional[str] = typer.Option(None, help="JSON overrides of the UNet config"),
    init_from: Optional[str] = typer.Option(None, help=INIT_HELP),
    stop_after: Optional[int] = typer.Option(None, help=STOP_HELP),
    source: str = typer.Option("hiresflow.world", help=SOURCE_HELP),
    scheduler: Optional[str] = typer.Option(
        None, help='JSON overrides of the DDPM schedule, e.g. \'{"prediction_type": "v_prediction", '
                   '"rescale_betas_zero_snr": true, "timestep_spacing": "trailing"}\''),
):
    """Train tiny-sd (UNet2DConditionModel, ε-prediction DDPM by default, 64 px)."""
    _diffusion(ctx, "sd", name, runs, seed, steps, batch, threads, lr, warmup, vae_dir, cache_n, p_uncond, ema,
               ckpt_every, sample_every, unet, stop_after, source, full_fraction=full_fraction,
               init_from=init_from, scheduler=scheduler)


@app.command()
@_guarded
def cfm(
    ctx: typer.Context,
    name: str = typer.Option("", help="run name (folder under --runs; default cfm-x<scale>, or <objective>-x<scale>)"),
    runs: str = typer.Option("runs"),
    seed: int = typer.Option(0),
    steps: int = typer.Option(4000),
    batch: int = typer.Option(32),
    threads: int = typer.Option(1),
    lr: float = typer.Option(5e-4),
    warmup: int = typer.Option(100),
    scale: int = typer.Option(2, help="upsampling factor of one model (×4 = chaining ×2 at inference)"),
    vae_dir: str = typer.Option("", "--vae", help="VAE folder ('' = the embedded tiny-flux VAE)"),
    objective: str = typer.Option("cfm", help="cfm (coupling), fm (from Gaussian noise) or regression (one-shot L2)"),
    coupling: str = typer.Option("psu", help="how the low-res latent is upsampled: psu, bilinear or nearest"),
    t_aug: int = typer.Option(400, help="noise-augmentation index of the source (cosine VP, of 1000; 0 = none)"),
    sigma_min: float = typer.Option(0.0, help="σ_min of the path (official code: 0)"),
    cache_n: int = typer.Option(2400, help="view pairs in the latent cache (shared by runs with equal data)"),
    val_n: int = typer.Option(32, help="held-out validation pairs"),
    val_nfe: int = typer.Option(10, help="Euler NFE of the validation upsample"),
    ema: float = typer.Option(0.999, help="EMA decay"),
    ckpt_every: float = typer.Option(180.0),
    sample_every: int = typer.Option(500, help="steps between validations"),
    unet: Optional[str] = typer.Option(None, help="JSON overrides of the UNet2DModel config"),
    stop_after: Optional[int] = typer.Option(None, help=STOP_HELP),
    source: str = typer.Option("hiresflow.world", help=SOURCE_HELP),
):
    """Train the CFM latent upsampler (or its FM / L2-regression baselines) on world view pairs."""
    from .cfm import CfmOptions, train_cfm
    from .data import world_source

    name = name or (f"cfm-x{scale}" if objective == "cfm" else f"{objective}-x{scale}")
    spec = _spec(name, runs, seed, steps, batch, threads, lr, warmup, ckpt_every, sample_every, stop_after)
    opts = CfmOptions(vae=vae_dir, scale=scale, objective=objective, coupling=coupling, t_aug=t_aug,
                      sigma_min=sigma_min, cache_n=cache_n, val_n=val_n, val_nfe=val_nfe, ema_decay=ema,
                      config=_json_option(unet, "--unet") or {})
    ctx.params["name"] = name
    _record_command(ctx, runs, name)
    _finish(train_cfm(spec, opts, world_source(source)))


@app.command("export-cfm")
@_guarded
def export_cfm(
    runs: str = typer.Option("runs"),
    run: str = typer.Option("cfm-x2", help="run name of the upsampler"),
    out: Optional[str] = typer.Option(None, help="output folder (default: the package's embedded/<run>)"),
    dtype: str = typer.Option("fp16", help="stored weight dtype: fp32 or fp16 (loaded as fp32)"),
    record: str = typer.Option("cfm-x2,regression-x2,fm-x2,cfm-x2-t0-short,cfm-x2-t200-short,cfm-x2-t400-short,"
                               "cfm-x2-t600-short", help="runs summarised in TRAINING.md (besides vae, flux, sd)"),
):
    """Write a trained CFM upsampler to embedded/<run> (or --out) and add its runs to TRAINING.md."""
    from ..models.loading import EMBEDDED_DIR
    from .cfm import export_upsampler
    from .export import write_training_md

    folder = Path(out) if out else EMBEDDED_DIR / run
    info = export_upsampler(Path(runs) / run, folder, dtype=dtype, runs=runs)
    info["exported_at"] = time.strftime("%Y-%m-%d %H:%M")
    (Path(runs) / run / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    typer.echo(json.dumps(info))
    names = ("vae", "flux", "sd", *[n for n in record.split(",") if n])
    exports = {n: json.loads((Path(runs) / n / "export.json").read_text()) for n in names
               if (Path(runs) / n / "export.json").is_file()}
    md = write_training_md(runs, EMBEDDED_DIR / "TRAINING.md", exports, run_names=names)
    typer.echo(f"wrote {md}")


@app.command()
@_guarded
def export(
    runs: str = typer.Option("runs"),
    flux_run: str = typer.Option("flux", "--flux", help="run name of tiny-flux ('' to skip)"),
    sd_run: str = typer.Option("sd", "--sd", help="run name of tiny-sd ('' to skip)"),
    out: Optional[str] = typer.Option(None, help="output folder (default: the package's embedded/)"),
    dtype: str = typer.Option("fp16", help="stored weight dtype: fp16, fp32 or bf16 (hiresflow loads embedded weights as float32 whatever is stored)"),
    flux_guidance: float = typer.Option(4.0, help="recommended CFG scale recorded in tiny-flux/hiresflow.json"),
    sd_guidance: float = typer.Option(5.0, help="recommended CFG scale recorded in tiny-sd/hiresflow.json"),
    version: Optional[int] = typer.Option(None, help="model version recorded in each card (none recorded = 1)"),
    flux_name: str = typer.Option("tiny-flux", help="folder name of the tiny-flux export under --out"),
    sd_name: str = typer.Option("tiny-sd", help="folder name of the tiny-sd export under --out"),
):
    """Write the trained models to <out>/tiny-flux and <out>/tiny-sd, and <out>/TRAINING.md."""
    from ..models.loading import EMBEDDED_DIR
    from .export import EMBEDDED_NAMES, export_run, folder_size_mb, write_training_md

    target = Path(out) if out else EMBEDDED_DIR
    exports = {}
    for kind, run_name in (("flux", flux_run), ("sd", sd_run)):
        if not run_name:
            continue
        run_dir = Path(runs) / run_name
        if not (run_dir / "ckpt.safetensors").is_file():
            typer.echo(f"skip {kind}: no checkpoint in {run_dir}", err=True)
            continue
        folder = target / (flux_name if kind == "flux" else sd_name)
        info = export_run(run_dir, folder, dtype=dtype, guidance=flux_guidance if kind == "flux" else sd_guidance,
                          version=version)
        info["folder"] = _shown(folder)
        info["exported_at"] = time.strftime("%Y-%m-%d %H:%M")
        (run_dir / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        exports[run_name] = info
        typer.echo(json.dumps(info))
    names = ("vae", flux_run or "flux", sd_run or "sd")  # a skipped model keeps its record
    for n in names:  # earlier exports of runs not exported now
        f = Path(runs) / n / "export.json"
        if n not in exports and f.is_file():
            exports[n] = json.loads(f.read_text())
    md = write_training_md(runs, target / "TRAINING.md", exports, run_names=names)
    total = sum(folder_size_mb(target / n) for n in EMBEDDED_NAMES.values() if (target / n).is_dir())
    typer.echo(f"wrote {md}; embedded models total {total:.1f} MB")


@app.command()
@_guarded
def store(
    folders: list[str] = typer.Argument(..., help="model folders whose *.safetensors are rewritten in place"),
    dtype: str = typer.Option("fp16", help="stored weight dtype: fp16, fp32 or bf16"),
):
    """Re-store trained weights in another dtype (e.g. the embedded models as fp16: half the bytes; they are
    loaded as float32). Each file is replaced atomically; out-of-range values refuse the whole folder."""
    from .export import store_weights

    for folder in folders:
        if not Path(folder).is_dir():
            raise ValueError(f"{folder} is not a folder; pass model folders such as src/hiresflow/embedded/tiny-flux")
    for folder in folders:
        typer.echo(json.dumps({"folder": _shown(Path(folder)), **store_weights(folder, dtype)}))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
