"""The CFM upsampler as a cascade stage's initialisation (`InitSpec.upsampler`, run by `hiresflow.runner`).

The previous stage's latent (the model's normalisation) is brought to the upsampler's space
(raw = z/scale_model + shift_model, then (raw − shift_cfm)·scale_cfm), upsampled ×`meta.scale`, and brought back.
The upsampler only applies to models whose VAE is the one it was trained on (checked by weight fingerprint) and
to stages exactly `meta.scale` times the previous stage's size; anything else is a one-line error.

Loaded upsamplers are kept on the model object (not in a module global), so a bench or a cascade loads each once.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from .model import CfmUpsampler, from_cfm_space, load_upsampler, to_cfm_space
from .upsample import upsample

__all__ = ["resolve_upsampler", "vae_fingerprint", "attach_upsampler", "cfm_init_latent"]

_CACHE_ATTR = "_hiresflow_cfm_upsamplers"


def resolve_upsampler(name: str) -> Path:
    """An embedded upsampler name (``cfm-x2``) or a folder path."""
    from ..models.loading import EMBEDDED_DIR

    p = Path(name)
    if p.is_dir():
        return p
    q = EMBEDDED_DIR / name
    if q.is_dir():
        return q
    raise ValueError(f"no CFM upsampler {name!r}: neither an embedded name (e.g. 'cfm-x2') nor a folder "
                     f"(train one: hiresflow train cfm, then hiresflow train export-cfm)")


@torch.no_grad()
def vae_fingerprint(vae) -> str:
    """SHA-256 (16 hex) of the VAE's weights rounded to fp16 (then as float32 bytes), in parameter-name order:
    independent of the file, and the same whether the weights are stored in fp32 or fp16 (the embedded models
    store fp16 and load float32)."""
    h = hashlib.sha256()
    for k, v in sorted(vae.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().half().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def attach_upsampler(model, name: str) -> CfmUpsampler:
    """The upsampler `name` for `model` (loaded once per model), after checking that it shares the VAE."""
    cache = model.__dict__.setdefault(_CACHE_ATTR, {})
    if name in cache:
        return cache[name]
    up = load_upsampler(resolve_upsampler(name))
    vae = model.codec.vae
    fp = vae_fingerprint(vae)
    if up.meta.vae_digest and fp != up.meta.vae_digest:
        raise ValueError(f"the CFM upsampler {name} was trained on the latents of another VAE than "
                         f"{getattr(model, 'name', 'this model')}'s; it works with models sharing the embedded "
                         f"tiny-flux/tiny-sd VAE; use hiflow's default init or another recipe (or train an upsampler "
                         f"for this VAE with `hiresflow train cfm --vae ...`)")
    up.unet.to(vae.device)
    cache[name] = up
    return up


@torch.no_grad()
def cfm_init_latent(model, prev_latent: torch.Tensor, prev_size: tuple[int, int], size: tuple[int, int],
                    spec, generator: torch.Generator, info: dict, stage: int) -> torch.Tensor:
    """The CFM upsample of `prev_latent` (model space) to the stage `size`, in model space."""
    up = attach_upsampler(model, spec.model)
    k = up.meta.scale
    if (size[0], size[1]) != (prev_size[0] * k, prev_size[1] * k):
        raise ValueError(f"the CFM upsampler {spec.model} upsamples ×{k} per stage, but stage {stage} goes "
                         f"{prev_size[1]}x{prev_size[0]} → {size[1]}x{size[0]}; use a power-of-{k} scale "
                         f"(e.g. --scale {k} or {k * k}: ×{k * k} chains two ×{k} stages)")
    codec = model.codec
    raw = prev_latent.float() / codec.scaling + codec.shift
    t0 = time.perf_counter()
    out = upsample(up, to_cfm_space(raw, up.meta), codec.vae, solver=spec.solver, nfe=spec.nfe,
                   generator=generator)
    info["cfm_seconds"] = time.perf_counter() - t0
    info["cfm_nfe"] = spec.nfe
    return codec.normalise(from_cfm_space(out, up.meta)).to(prev_latent.dtype)
