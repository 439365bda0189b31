"""``hiresflow train cfm``: the Coupling Flow Matching latent upsampler (and its FM / L2-regression baselines).

Data: pairs of the *same* reference-world view rendered at the native size (64 px) and at ``scale``× (128 px
for ×2) — ``dataset_batch(seed, b, size)`` draws the scene, view and texture seed before rendering, so the two
sizes of one seed show the same view — encoded with the shared VAE (posterior mode). The pair cache
(:func:`build_pair_cache`) stores raw fp16 latents of the low-res view, its PSU upsample and the high-res view,
shared by every run with the same data options (runs/cache/…).

One step (objective ``cfm``; formulas in :mod:`hiresflow.cfm.coupling`)::

    z  = up(z_lr)                                  clean condition (PSU by default)
    x0 = sqrt(ᾱ)·z + sqrt(1−ᾱ)·ε                   noise augmentation at t_aug (cosine VP)
    t ~ U(0,1);  x_t = t·x1 + (1−(1−σ_min)t)·x0
    L = ‖v_θ(x_t ‖ z, t) − (x1 − (1−σ_min)·x0)‖²

``fm``: x0 = ε ~ N(0, I) (naive flow matching from noise, same conditioning). ``regression``: the same network
at t = 0 on x0 = z, L = ‖z + f(z ‖ z, 0) − x1‖² (one-shot L2 regression, written as a residual).

Validation (every ``--sample-every`` steps, EMA weights): PSNR and SSIM of the decoded upsample against the
high-res render on held-out views, Euler at ``val_nfe``; the PSU-only baseline is logged at step 0 for reference.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path, write_text_atomic
from ..cfm.coupling import COUPLINGS, OBJECTIVES, augment_source, cosine_alpha_bar, latent_upsample, path_sample, \
    sample_times, target_velocity
from ..cfm.model import CfmMeta, CfmUpsampler, build_unet, save_upsampler, to_cfm_space
from ..cfm.upsample import psu, upsample
from .common import EMA, Run, TrainSpec, save_png, set_threads, step_seed, train_loop
from .data import Source, file_digest, images_to_tensor, world_source

__all__ = ["CfmOptions", "PairCache", "build_pair_cache", "train_cfm"]


@dataclass
class CfmOptions:
    """Options of a CFM run (all but ``vae`` define the run and are checked on resume)."""

    vae: str = ""  # VAE folder ('' = the embedded tiny-flux VAE)
    scale: int = 2
    native: int = 64  # low-resolution render size (px)
    objective: str = "cfm"
    coupling: str = "psu"
    t_aug: int = 400
    sigma_min: float = 0.0
    cache_n: int = 2400
    val_n: int = 32
    val_nfe: int = 10
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    chunk: int = 100
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"--coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}")
        if self.scale not in (2, 4):
            raise ValueError(f"--scale must be 2 or 4 (×4 by chaining ×2 needs only the ×2 model), got {self.scale!r}")
        cosine_alpha_bar(self.t_aug)
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"--sigma-min must lie in [0, 1), got {self.sigma_min!r}")
        for name in ("cache_n", "val_n", "val_nfe", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")


class PairCache:
    """Raw fp16 latents: ``lr`` [N,C,h,w], ``psu`` and ``hr`` [N,C,sh,sw]."""

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict):
        self.t = tensors
        self.meta = meta

    def __len__(self) -> int:
        return self.t["hr"].shape[0]

    @classmethod
    def load(cls, path: Path) -> "PairCache":
        from safetensors.torch import load_file

        return cls(load_file(str(path)), json.loads(path.with_suffix(".json").read_text()))


def _render_pairs(source: Source, seed: int, b: int, native: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    lo, _ = source.dataset_batch(seed, b, native)
    hi, _ = source.dataset_batch(seed, b, native * scale)
    return lo, hi


@torch.no_grad()
def build_pair_cache(path: str | Path, vae, source: Source, *, n: int, native: int, scale: int, seed: int,
                     stream: str = "cfm-pairs", chunk: int = 100, vae_digest: str = "",
                     progress: bool = True, keep_images: bool = False) -> tuple[PairCache, np.ndarray | None]:
    """Render ``n`` view pairs (chunk ``i`` from ``step_seed(seed, i, stream)``), encode them, save them.
    Reuses an existing cache with equal metadata. With ``keep_images`` also returns the high-res renders
    (uint8 NHWC; for validation)."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    path = Path(path)
    meta = {"n": n, "native": native, "scale": scale, "seed": seed, "stream": stream, "chunk": chunk,
            "vae": vae_digest}
    img_path = path.with_suffix(".images.npy")
    if path.is_file() and path.with_suffix(".json").is_file():
        cache = PairCache.load(path)
        if cache.meta == meta and (not keep_images or img_path.is_file()):
            return cache, (np.load(img_path) if keep_images else None)
    parts: dict[str, list[torch.Tensor]] = {"lr": [], "psu": [], "hr": []}
    his = []
    chunks = (n + chunk - 1) // chunk
    for i in tqdm(range(chunks), desc=f"{stream} cache", disable=not progress, mininterval=2.0):
        b = min(chunk, n - i * chunk)
        lo, hi = _render_pairs(source, step_seed(seed, i, stream), b, native, scale)
        z_lr = vae.encode(images_to_tensor(lo)).latent_dist.mode().float()
        z_hr = vae.encode(images_to_tensor(hi)).latent_dist.mode().float()
        z_psu = psu(z_lr, vae, tuple(z_hr.shape[-2:]))
        for k, z in (("lr", z_lr), ("psu", z_psu), ("hr", z_hr)):
            parts[k].append(z.half().contiguous())
        if keep_images:
            his.append(hi)
    tensors = {k: torch.cat(v).contiguous() for k, v in parts.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    images = np.concatenate(his) if keep_images else None
    if keep_images:
        with atomic_path(img_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, images)
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta))
    return PairCache(tensors, meta), images


def _load_vae(folder: str):
    from diffusers import AutoencoderKL

    from ..models.loading import EMBEDDED_DIR
    from ..quiet import quiet_libraries

    folder = folder or str(EMBEDDED_DIR / "tiny-flux" / "vae")
    with quiet_libraries():
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    return vae.eval().requires_grad_(False), folder


def _conditions(cache: PairCache, coupling: str, meta: CfmMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition z, target x1) in CFM space, fp32."""
    hr = to_cfm_space(cache.t["hr"].float(), meta)
    if coupling == "psu":
        z = to_cfm_space(cache.t["psu"].float(), meta)
    else:
        z = latent_upsample(to_cfm_space(cache.t["lr"].float(), meta), tuple(hr.shape[-2:]), coupling)
    return z.contiguous(), hr.contiguous()


def cfm_loss(unet, z: torch.Tensor, x1: torch.Tensor, objective: str, t_aug: int, sigma_min: float,
             gen: torch.Generator) -> torch.Tensor:
    """The training loss of one batch (see the module docstring)."""
    if objective == "regression":
        t0 = torch.zeros(z.shape[0])
        pred = z + unet(torch.cat([z, z], dim=1), t0).sample
        return F.mse_loss(pred, x1)
    if objective == "fm":
        x0 = torch.randn(x1.shape, generator=gen)
    else:
        x0 = augment_source(z, t_aug, gen)
    t = sample_times(z.shape[0], gen)
    xt = path_sample(x0, x1, t, sigma_min)
    v = unet(torch.cat([xt, z], dim=1), t).sample
    return F.mse_loss(v, target_velocity(x0, x1, sigma_min))


def train_cfm(spec: TrainSpec, opts: CfmOptions | None = None, source: Source | None = None) -> dict:
    """Train (or resume) the upsampler run ``spec.name``; at the end writes ``<run>/upsampler/``."""
    from ..eval.image_metrics import psnr, ssim

    opts = opts or CfmOptions()
    source = source or world_source()
    set_threads(spec.threads)
    vae, vae_dir = _load_vae(opts.vae)
    from ..cfm.stage import vae_fingerprint

    digest = file_digest(vae_dir)  # of the files: names the pair cache and the run
    ident = {k: v for k, v in asdict(opts).items() if k != "vae"}
    spec.extra = {**spec.extra, "cfm": ident, "vae_digest": digest}
    run = Run(spec)
    vc = vae.config
    meta = CfmMeta(scale=opts.scale, objective=opts.objective, coupling=opts.coupling, t_aug=opts.t_aug,
                   sigma_min=opts.sigma_min, vae_digest=vae_fingerprint(vae), scaling_factor=float(vc.scaling_factor),
                   shift_factor=float(vc.shift_factor or 0.0), native_latent=opts.native // 4)
    cache_dir = Path(spec.runs) / "cache"
    t0 = time.perf_counter()
    train_cache, _ = build_pair_cache(
        cache_dir / f"cfm-pairs-{opts.native}x{opts.scale}-n{opts.cache_n}-s{spec.seed}.safetensors", vae, source,
        n=opts.cache_n, native=opts.native, scale=opts.scale, seed=spec.seed, chunk=opts.chunk,
        vae_digest=digest, progress=spec.progress)
    val_cache, val_images = build_pair_cache(
        cache_dir / f"cfm-val-{opts.native}x{opts.scale}-n{opts.val_n}-s{spec.seed}.safetensors", vae, source,
        n=opts.val_n, native=opts.native, scale=opts.scale, seed=spec.seed, stream="cfm-val", chunk=opts.chunk,
        vae_digest=digest, progress=spec.progress, keep_images=True)
    cache_s = time.perf_counter() - t0
    z_all, x1_all = _conditions(train_cache, opts.coupling, meta)
    z_val, _ = _conditions(val_cache, opts.coupling, meta)
    lr_val = to_cfm_space(val_cache.t["lr"].float(), meta)
    assert val_images is not None
    gt = torch.from_numpy(val_images).permute(0, 3, 1, 2).float() / 255.0

    cfg = dict(opts.config)
    cfg.setdefault("sample_size", int(x1_all.shape[-1]))
    unet = build_unet(cfg, spec.seed).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=spec.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(unet, opts.ema_decay)
    start, wall = 0, 0.0
    if run.has_checkpoint():
        state = run.load(unet, opt, ema)
        start, wall = int(state["step"]), float(state["wall_s"])
    n_params = sum(p.numel() for p in unet.parameters())

    def decode(z_cfm: torch.Tensor) -> torch.Tensor:
        return vae.decode(z_cfm / meta.scaling_factor + meta.shift_factor).sample.add(1).div(2).clamp(0, 1)

    def step_fn(step: int) -> dict[str, float]:
        g = torch.Generator().manual_seed(step_seed(spec.seed, step, "cfm-batch"))
        idx = torch.randint(len(train_cache), (spec.batch,), generator=g)
        loss = cfm_loss(unet, z_all[idx], x1_all[idx], opts.objective, opts.t_aug, opts.sigma_min, g)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(unet.parameters(), opts.grad_clip)
        return {"loss": float(loss.detach()), "grad_norm": float(gn)}

    @torch.no_grad()
    def validate(step: int) -> dict:
        unet.eval()
        with ema.applied(unet):
            up = CfmUpsampler(unet, meta)
            g = torch.Generator().manual_seed(step_seed(spec.seed, 0, "cfm-val-noise"))
            out = upsample(up, lr_val, vae, solver="euler", nfe=opts.val_nfe, generator=g, cond=z_val)
            img = decode(out)
        unet.train()
        rec = {"step": step, "val_psnr": psnr(img, gt), "val_ssim": ssim(img, gt), "val_nfe": opts.val_nfe}
        save_png(run.dir / "samples" / f"cfm_{step:06d}.png", torch.cat([gt[:8], img[:8]]), cols=8)
        return rec

    if start == 0:
        base = decode(z_val)
        run.log({"step": 0, "psu_psnr": psnr(base, gt), "psu_ssim": ssim(base, gt), "cache_s": round(cache_s, 1)})

    def on_sample(step: int) -> None:
        run.log(validate(step))

    result = train_loop(run, unet, opt, step_fn, ema=ema, start_step=start, wall_before=wall,
                        on_sample=on_sample, desc=f"cfm {spec.name}")
    result.update(params=n_params, cache_s=round(cache_s, 1))
    if not result["interrupted"] and result["step"] >= spec.steps:
        unet.eval()
        ema.copy_to(unet)
        last = validate(result["step"])
        run.log(last)
        meta.training = {"steps": result["step"], "batch": spec.batch, "lr": spec.lr, "seed": spec.seed,
                         "wall_s": round(result["wall_s"], 1), "cache_n": opts.cache_n,
                         "val_psnr": round(last["val_psnr"], 3), "val_ssim": round(last["val_ssim"], 4)}
        save_upsampler(run.dir / "upsampler", unet, meta)
        result.update({k: v for k, v in last.items() if k != "step"})
        (run.dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@torch.no_grad()
def export_upsampler(run_dir: str | Path, folder: str | Path, dtype: str = "fp16", runs: str | Path = "runs") -> dict:
    """Write ``<run_dir>/upsampler`` (fp32, EMA) to ``folder`` in ``dtype`` (fp32 or fp16) and measure what the
    stored precision costs: PSNR of the fp16-weight upsample against the fp32 one (decoded, Euler 10 NFE, the
    run's validation pairs, same noise)."""
    from ..cfm.model import load_upsampler
    from ..eval.image_metrics import psnr
    from .export import folder_size_mb

    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"--dtype must be fp32 or fp16, got {dtype!r}")
    src = Path(run_dir) / "upsampler"
    if not (src / "config.json").is_file():
        raise ValueError(f"{src} does not exist: finish the run first (rerun its command)")
    first = load_upsampler(src)
    meta = first.meta
    save_upsampler(folder, first.unet, meta, dtype=torch.float16 if dtype == "fp16" else torch.float32)
    ref, stored = load_upsampler(src), load_upsampler(folder)  # saving casts `first` in place: reload
    vae, _ = _load_vae("")
    val = sorted((Path(runs) / "cache").glob("cfm-val-*.safetensors"))
    info: dict = {"folder": str(folder), "dtype": dtype, "size_mb": round(folder_size_mb(folder), 2)}
    if val:
        cache = PairCache.load(val[0])
        lr = to_cfm_space(cache.t["lr"].float(), meta)
        outs = []
        for up in (ref, stored):
            g = torch.Generator().manual_seed(0)
            z = upsample(up, lr, vae, nfe=10, generator=g)
            outs.append(vae.decode(z / meta.scaling_factor + meta.shift_factor).sample.add(1).div(2).clamp(0, 1))
        info["stored_vs_fp32_psnr"] = round(min(psnr(outs[1], outs[0]), 120.0), 1)
    return info
