"""The shared VAE: a diffusers ``AutoencoderKL`` with spatial factor 4 and 4 latent channels.

Fully convolutional (no mid-block attention), so it works at any resolution that is a multiple of 4. Trained on
random crops of multi-scale world views with L1 + image-gradient L1 + a small KL term on the posterior sample.
When training ends (and at every ``finalize_vae`` call), latent statistics of fresh views give
``scaling_factor = 1/std`` and ``shift_factor = mean``, and the EMA weights are saved as a diffusers folder
``<runs>/<name>/vae/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import EMA, Run, TrainSpec, psnr, save_png, set_threads, step_seed, train_loop
from .data import Source, images_to_tensor, world_source

__all__ = ["VAE_CONFIG", "build_vae", "vae_loss", "train_vae", "finalize_vae", "latent_stats", "eval_vae"]

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,  # 3 levels -> spatial factor 4
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=16,
    sample_size=64,
    scaling_factor=1.0,
    shift_factor=0.0,
    mid_block_add_attention=False,  # fully convolutional: same behaviour at every resolution
    force_upcast=False,
)


def build_vae(config: dict | None = None, seed: int = 0):
    from diffusers import AutoencoderKL

    cfg = dict(VAE_CONFIG, **(config or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(step_seed(seed, 0, "vae-init"))
        vae = AutoencoderKL(**cfg)
    # Start with a near-deterministic posterior (log-variance -8, std 0.018): with diffusers' default init the
    # posterior std is ~1, i.e. unit noise on the latents, which the tiny KL weight never removes and which makes
    # the reconstructions blurry for thousands of steps.
    head = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out
    c = cfg["latent_channels"]
    with torch.no_grad():
        head.weight[c:].zero_()
        head.bias[c:].fill_(-8.0)
    return vae


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def vae_loss(vae, x: torch.Tensor, gen: torch.Generator, kl_weight: float = 1e-6, grad_weight: float = 0.5):
    """x in [-1, 1]; returns (total, parts)."""
    post = vae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=gen)
    z = post.mean + post.std * eps
    rec = vae.decode(z).sample
    l1 = (rec - x).abs().mean()
    gl = _grad_l1(rec, x)
    kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).sum(dim=(1, 2, 3)).mean()
    total = l1 + grad_weight * gl + kl_weight * kl
    return total, {"loss": float(total.detach()), "l1": float(l1.detach()), "grad": float(gl.detach()),
                   "kl": float(kl.detach())}


def _crop_batch(images: np.ndarray, crop: int, gen: torch.Generator) -> np.ndarray:
    n, h, w, _ = images.shape
    if h == crop and w == crop:
        return images
    ys = torch.randint(0, h - crop + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, w - crop + 1, (n,), generator=gen).tolist()
    return np.stack([images[i, y:y + crop, x:x + crop] for i, (y, x) in enumerate(zip(ys, xs))])


def vae_batch(source: Source, seed: int, step: int, batch: int, crop: int, sizes: tuple[int, ...]) -> torch.Tensor:
    """Step ``step``'s training crops: views rendered at one of ``sizes`` (chosen per step), randomly cropped."""
    g = torch.Generator().manual_seed(step_seed(seed, step, "vae-crop"))
    size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
    imgs, _ = source.dataset_batch(step_seed(seed, step, "vae-data"), batch, size)
    return images_to_tensor(_crop_batch(imgs, crop, g))


@torch.no_grad()
def latent_stats(vae, source: Source, seed: int, n: int = 512, size: int = 64, chunk: int = 64) -> tuple[float, float]:
    """Mean and std of posterior-mode latents over ``n`` views (all channels together)."""
    zs = []
    for i in range((n + chunk - 1) // chunk):
        imgs, _ = source.dataset_batch(step_seed(seed, i, "vae-stats"), min(chunk, n - i * chunk), size)
        zs.append(vae.encode(images_to_tensor(imgs)).latent_dist.mode())
    z = torch.cat(zs)
    return float(z.mean()), float(z.std())


@torch.no_grad()
def eval_vae(vae, source: Source, seed: int, n: int = 64, size: int = 64) -> float:
    imgs, _ = source.dataset_batch(step_seed(seed, 0, "vae-eval"), n, size)
    x = images_to_tensor(imgs)
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return psnr((rec + 1) / 2, (x + 1) / 2)


def finalize_vae(vae, source: Source, out_dir: str | Path, seed: int, stats_n: int = 512) -> dict:
    """Set scaling/shift from latent statistics and save the diffusers folder; returns the stats."""
    mean, std = latent_stats(vae, source, seed, n=stats_n)
    vae.register_to_config(scaling_factor=1.0 / std, shift_factor=mean)
    out = Path(out_dir)
    vae.save_pretrained(out, safe_serialization=True)
    info = {"latent_mean": mean, "latent_std": std, "scaling_factor": 1.0 / std, "shift_factor": mean,
            "psnr_64": eval_vae(vae, source, seed, size=64)}
    (out / "stats.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


@dataclass
class VaeOptions:
    crop: int = 64
    sizes: tuple[int, ...] = (64, 96, 128)
    kl_weight: float = 1e-6
    grad_weight: float = 0.5
    ema_decay: float = 0.999
    config: dict | None = None


def train_vae(spec: TrainSpec, opts: VaeOptions | None = None, source: Source | None = None,
              stats_n: int = 512) -> dict:
    """Train (or resume) the VAE run ``spec.name``; at the end save ``<run>/vae/`` with scaling factors."""
    opts = opts or VaeOptions()
    source = source or world_source()
    set_threads(spec.threads)
    spec.extra = {**spec.extra, "crop": opts.crop, "sizes": list(opts.sizes), "kl_weight": opts.kl_weight,
                  "grad_weight": opts.grad_weight, "ema_decay": opts.ema_decay,
                  "config": dict(VAE_CONFIG, **(opts.config or {}))}
    run = Run(spec)
    vae = build_vae(opts.config, spec.seed).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=spec.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(vae, opts.ema_decay)
    start, wall = 0, 0.0
    if run.has_checkpoint():
        state = run.load(vae, opt, ema)
        start, wall = int(state["step"]), float(state["wall_s"])
    n_params = sum(p.numel() for p in vae.parameters())
    eval_imgs, _ = source.dataset_batch(step_seed(spec.seed, 0, "vae-preview"), 8, 64)
    eval_x = images_to_tensor(eval_imgs)

    def step_fn(step: int) -> dict[str, float]:
        x = vae_batch(source, spec.seed, step, spec.batch, opts.crop, tuple(opts.sizes))
        gen = torch.Generator().manual_seed(step_seed(spec.seed, step, "vae-noise"))
        loss, parts = vae_loss(vae, x, gen, opts.kl_weight, opts.grad_weight)
        loss.backward()
        return parts

    @torch.no_grad()
    def on_sample(step: int) -> None:
        vae.eval()
        with ema.applied(vae):
            rec = vae.decode(vae.encode(eval_x).latent_dist.mode()).sample
            p = psnr((rec + 1) / 2, (eval_x + 1) / 2)
            big, _ = source.dataset_batch(step_seed(spec.seed, 1, "vae-preview"), 1, 256)
            bx = images_to_tensor(big)
            brec = vae.decode(vae.encode(bx).latent_dist.mode()).sample
        vae.train()
        grid = torch.cat([eval_x, rec]).add(1).div(2)
        save_png(run.dir / "samples" / f"vae_{step:06d}.png", grid, cols=8, scale=2)
        save_png(run.dir / "samples" / f"vae256_{step:06d}.png", torch.cat([bx, brec]).add(1).div(2), cols=2)
        run.log({"step": step, "eval_psnr_64": p, "eval_psnr_256": psnr((brec + 1) / 2, (bx + 1) / 2)})

    result = train_loop(run, vae, opt, step_fn, ema=ema, start_step=start, wall_before=wall,
                        on_sample=on_sample, desc=f"vae {spec.name}")
    result["params"] = n_params
    if not result["interrupted"] and result["step"] >= spec.steps:
        vae.eval()
        ema.copy_to(vae)
        result.update(finalize_vae(vae, source, run.dir / "vae", spec.seed, stats_n=stats_n))
        (run.dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
