"""Training of the embedded denoisers on cached VAE latents of world views.

The forward pass and the loss are the model adapter's (`FlowModel.training_loss`), so training and sampling call
the network the same way:
``tiny-flux`` (``FluxTransformer2DModel``): rectified flow, target v = ε − x0, logit-normal σ
(:class:`hiresflow.models.flux.FluxFlowModel`);
``tiny-sd`` (``UNet2DConditionModel``): ε-prediction DDPM on the SD betas (scaled_linear 0.00085–0.012, 1000
steps), integer timesteps uniform in [0, 1000) (:class:`hiresflow.models.sd.SDFlowModel`); ``--scheduler``
switches to v-prediction and/or a zero-terminal-SNR schedule (the scheduler config the loss and sampler read).

Both drop the prompt to ``""`` with probability ``p_uncond`` (classifier-free guidance) and encode text with the
adapter (the pipeline's frozen encoders), and normalise latents with the adapter's codec.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.loading import wrap_pipeline
from .common import EMA, Run, TrainSpec, save_png, set_threads, step_generator, step_seed, train_loop
from .data import DEFAULT_SOURCE, Source, build_latent_cache, file_digest, source_name, world_source
from .pipelines import build_skeleton, denoiser_of, load_pipeline_folder, save_pipeline
from .vocab import extend_vocabulary

__all__ = ["DiffusionOptions", "train_diffusion", "warm_start_pipeline", "preview", "load_trained_pipeline", "PREVIEW_PROMPTS"]

PREVIEW_PROMPTS = ("a red sun setting over snowy mountains by a lake",)


@dataclass
class DiffusionOptions:
    kind: str = "flux"  # "flux" or "sd"
    vae: str | None = "runs/vae/vae"  # trained VAE folder (None: random VAE, tests only)
    cache: str | None = None  # latent cache path (default <runs>/latents-<size>-<n>-<vae digest>.safetensors)
    cache_n: int = 50000
    full_fraction: float | None = None  # share of full-scene views (None: the source's default; rest close-ups)
    size: int = 64  # native image size
    p_uncond: float = 0.1
    ema_decay: float = 0.999
    logit_mean: float = 0.0  # flux: σ = sigmoid(logit_mean + logit_std·n)
    logit_std: float = 1.0
    denoiser: dict | None = None  # config overrides of the transformer / UNet
    init_from: str | None = None  # warm start: a pipeline folder or embedded name whose components (and weights) seed the run
    scheduler: dict | None = None  # sd only: DDIM config overrides (prediction_type, rescale_betas_zero_snr, timestep_spacing)
    vae_config: dict | None = None  # only with vae=None
    preview_steps: int = 20
    preview_guidance: float = 4.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("flux", "sd"):
            raise ValueError(f"kind must be 'flux' or 'sd', got {self.kind!r}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"--p-uncond must lie in [0, 1), got {self.p_uncond!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema must lie in [0, 1), got {self.ema_decay!r}")
        if isinstance(self.cache_n, bool) or not isinstance(self.cache_n, int) or self.cache_n < 1:
            raise ValueError(f"--cache-n must be a positive integer, got {self.cache_n!r}")
        if self.full_fraction is not None and not 0 <= self.full_fraction <= 1:
            raise ValueError(f"--full-fraction must lie in [0, 1], got {self.full_fraction!r}")
        if not self.logit_std > 0:
            raise ValueError(f"--logit-std must be > 0, got {self.logit_std!r}")
        if self.init_from is not None and self.denoiser:
            raise ValueError("--init-from takes the denoiser's architecture from that model; drop "
                             "--transformer/--unet, or train from scratch without --init-from")
        if self.scheduler:
            check_scheduler_overrides(self.kind, self.scheduler)
        if self.size < 8 or self.size % 8:
            raise ValueError(f"size must be a positive multiple of 8 px, got {self.size!r}")


SCHEDULER_KEYS = {"prediction_type": ("epsilon", "v_prediction", "sample"), "rescale_betas_zero_snr": (True, False),
                  "timestep_spacing": ("leading", "trailing", "linspace")}


def check_scheduler_overrides(kind: str, overrides: dict) -> None:
    """One-line errors for ``--scheduler``: only tiny-sd's DDPM schedule can change, only the keys of
    `SCHEDULER_KEYS` with their values, and a zero-terminal-SNR schedule (ᾱ_T = 0, Lin et al. 2024, "Common
    Diffusion Noise Schedules and Sample Steps are Flawed") needs v-prediction: at ᾱ_T = 0 an ε-prediction carries
    no information about x0."""
    if kind != "sd":
        raise ValueError("--scheduler changes tiny-sd's DDPM schedule; the flux trainer's rectified flow has none")
    for key, value in overrides.items():
        if key not in SCHEDULER_KEYS:
            raise ValueError(f"--scheduler key {key!r} is not supported; use {', '.join(SCHEDULER_KEYS)}")
        if value not in SCHEDULER_KEYS[key] or isinstance(value, bool) != (key == "rescale_betas_zero_snr"):
            raise ValueError(f"--scheduler {key} must be one of {', '.join(map(str, SCHEDULER_KEYS[key]))}, got {value!r}")
    if overrides.get("rescale_betas_zero_snr") and overrides.get("prediction_type") != "v_prediction":
        raise ValueError('a zero-terminal-SNR schedule needs v-prediction: add "prediction_type": "v_prediction"')


def with_scheduler(pipe, overrides: dict | None):
    """``pipe`` with its scheduler rebuilt from its config plus ``overrides`` (the denoiser is untouched, so a
    warm start from an ε-prediction model trains on towards the new target)."""
    if overrides:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **overrides)
    return pipe


@torch.no_grad()
def preview(pipe, prompts: list[str], *, seed: int = 0, steps: int = 20, guidance: float = 4.0,
            size: int = 64) -> torch.Tensor:
    """Generate one image per prompt through hiresflow's own adapters (plain Euler on the model's σ grid);
    returns [N,3,H,W] in [0,1]."""
    from ..models.loading import wrap_pipeline

    model = wrap_pipeline(pipe, name="preview", native=size)
    out = []
    for i, p in enumerate(prompts):
        cond = model.encode_prompt(p)
        g = torch.Generator().manual_seed(seed + i)
        c, h, w = model.geometry.latent_shape(size, size)
        sig = model.schedule(steps, (size, size))
        x = float(sig[0]) * torch.randn((1, c, h, w), generator=g)
        for j in range(steps):
            v = model.velocity(x, float(sig[j]), cond, guidance=guidance)
            x = x + float(sig[j + 1] - sig[j]) * v
        out.append(model.decode(x))
    return torch.cat(out)


def _default_cache_path(spec: TrainSpec, opts: DiffusionOptions, digest: str, source=None) -> Path:
    mix = "" if opts.full_fraction is None else f"-full{opts.full_fraction:g}"
    name = source_name(source) if source is not None else DEFAULT_SOURCE
    tag = "" if name == DEFAULT_SOURCE else "-" + name.rsplit(".", 1)[-1]
    return Path(spec.runs) / f"latents-{opts.size}px-{opts.cache_n}{mix}{tag}-s{spec.seed}-{digest}.safetensors"


def train_diffusion(spec: TrainSpec, opts: DiffusionOptions, source: Source | None = None) -> dict:
    """Train (or resume) the denoiser of run ``spec.name``. The first start builds and saves the skeleton
    (``<run>/skeleton/``) and the latent cache; later starts reuse both."""
    source = source or world_source()
    set_threads(spec.threads)
    kind = opts.kind
    spec.extra = {**spec.extra, "kind": kind, "p_uncond": opts.p_uncond, "ema_decay": opts.ema_decay,
                  "logit_mean": opts.logit_mean, "logit_std": opts.logit_std, "denoiser": opts.denoiser or {},
                  "size": opts.size, "cache_n": opts.cache_n, "weight_decay": opts.weight_decay,
                  "grad_clip": opts.grad_clip, **opts.extra}
    view_kwargs = {} if opts.full_fraction is None else {"full_fraction": float(opts.full_fraction)}
    if view_kwargs:
        spec.extra["full_fraction"] = view_kwargs["full_fraction"]
    run = Run(spec)
    skel_dir = run.dir / "skeleton"
    if opts.init_from is not None:
        spec.extra["init_from"] = opts.init_from
    if opts.scheduler:
        spec.extra["scheduler"] = dict(opts.scheduler)
    if not (skel_dir / "model_index.json").is_file() and opts.init_from is not None:
        start = with_scheduler(warm_start_pipeline(opts.init_from, kind), opts.scheduler)
        ext = extend_vocabulary(start, source.vocabulary(), seed=spec.seed)
        if ext.added and spec.progress:
            print(f"vocabulary: {len(ext.added)} words of the source added to {opts.init_from}'s tokenizers "
                  f"({', '.join(ext.added[:8])}{', ...' if len(ext.added) > 8 else ''})", file=sys.stderr)
        save_pipeline(start, skel_dir, native_size=opts.size, extra_meta={"added_words": list(ext.added)})
    elif not (skel_dir / "model_index.json").is_file():
        pipe = build_skeleton(kind, list(source.vocabulary()), opts.vae, seed=spec.seed, denoiser=opts.denoiser,
                              vae_config=opts.vae_config)
        save_pipeline(with_scheduler(pipe, opts.scheduler), skel_dir, native_size=opts.size)
    # always train the reloaded copy: a fresh start and a resumption then run bit-identical code paths
    pipe = load_pipeline_folder(skel_dir)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False).eval()
    adapter = wrap_pipeline(pipe, name=spec.name, native=opts.size)
    model = adapter.denoiser
    model.requires_grad_(True).train()
    n_params = sum(p.numel() for p in model.parameters())

    digest = file_digest(skel_dir / "vae")
    cache_path = Path(opts.cache) if opts.cache else _default_cache_path(spec, opts, digest, source)
    cache = build_latent_cache(cache_path, pipe.vae, source, n=opts.cache_n, size=opts.size, seed=spec.seed,
                               vae_digest=digest, progress=spec.progress, view_kwargs=view_kwargs)

    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.99), weight_decay=opts.weight_decay)
    ema = EMA(model, opts.ema_decay)
    start, wall = 0, 0.0
    if run.has_checkpoint():
        state = run.load(model, opt, ema)
        start, wall = int(state["step"]), float(state["wall_s"])
    ref_imgs, ref_prompts = source.dataset_batch(step_seed(spec.seed, 0, "preview"), 7, opts.size)
    preview_prompts = list(PREVIEW_PROMPTS) + list(ref_prompts)

    def step_fn(step: int) -> dict[str, float]:
        lat, prompts = cache.batch(spec.seed, step, spec.batch)
        gen = step_generator(spec.seed, step, "noise")
        drop = torch.rand((len(prompts),), generator=gen) < opts.p_uncond
        prompts = ["" if d else p for p, d in zip(prompts, drop.tolist())]
        z0 = adapter.codec.normalise(lat)
        cond = adapter.encode_prompts(prompts)
        loss = adapter.training_loss(z0, cond, gen, logit_mean=opts.logit_mean, logit_std=opts.logit_std)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip or float("inf"))
        return {"loss": float(loss.detach()), "grad_norm": float(gn)}

    @torch.no_grad()
    def on_sample(step: int) -> None:
        model.eval()
        with ema.applied(model):
            imgs = preview(pipe, preview_prompts, seed=spec.seed, steps=opts.preview_steps,
                           guidance=opts.preview_guidance, size=opts.size)
        model.train()
        import numpy as np

        from .common import to_uint8

        ref = np.concatenate([np.full_like(ref_imgs[:1], 255), ref_imgs])
        save_png(run.dir / "samples" / f"{kind}_{step:06d}.png", np.concatenate([ref, to_uint8(imgs)]),
                 cols=len(preview_prompts), scale=2)
        (run.dir / "samples" / "prompts.json").write_text(json.dumps(preview_prompts, indent=1))

    result = train_loop(run, model, opt, step_fn, ema=ema, start_step=start, wall_before=wall,
                        on_sample=on_sample, desc=f"{kind} {spec.name}")
    result["params"] = n_params
    result["cache"] = str(cache_path)
    if not result["interrupted"] and result["step"] >= spec.steps:
        log = run.read_log()
        tail = [r["loss"] for r in log if "loss" in r][-20:]
        result["final_loss"] = sum(tail) / max(1, len(tail))
        (run.dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def warm_start_pipeline(name_or_folder: str, kind: str):
    """The pipeline a warm-started run begins from: every component of ``name_or_folder`` (an embedded model name
    or a pipeline folder) as it is, so text encoders, tokenizers and VAE stay identical and only the denoiser
    trains on from its weights. Raises ``ValueError`` when the folder is not a pipeline of this ``kind``."""
    from ..models.loading import EMBEDDED, EMBEDDED_DIR

    folder = EMBEDDED_DIR / EMBEDDED[name_or_folder] if name_or_folder in EMBEDDED else Path(name_or_folder)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"--init-from {name_or_folder!r} is neither an embedded model ({', '.join(EMBEDDED)}) nor "
                         f"a pipeline folder with model_index.json")
    pipe = load_pipeline_folder(folder)
    if not hasattr(pipe, denoiser_of(kind)):
        raise ValueError(f"--init-from {name_or_folder!r} is a {type(pipe).__name__}, not a {kind} pipeline; "
                         f"pick a model of the family you train")
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False).eval()
    return pipe


def load_trained_pipeline(run_dir: str | Path, use_ema: bool = True):
    """The skeleton of a run with its checkpointed (EMA) denoiser weights loaded."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    pipe = load_pipeline_folder(run_dir / "skeleton")
    state = json.loads((run_dir / "state.json").read_text())
    kind = state["config"]["extra"]["kind"]
    model = getattr(pipe, denoiser_of(kind))
    tensors = load_file(str(run_dir / "ckpt.safetensors"))
    sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if use_ema:
        sd.update({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    model.load_state_dict(sd)
    model.eval()
    return pipe, state
