"""Training data: the reference world (:mod:`hiresflow.world`) or any object with the same two functions.

A *source* needs ``vocabulary() -> list[str]`` and ``dataset_batch(seed, batch, size) -> (uint8 NHWC, prompts)``.
Tests pass a small stand-in; the real trainers use the world module.

The latent cache (:func:`build_latent_cache`) stores the VAE posterior *mode* (raw, unnormalised, fp16) of
``n`` training views plus their prompts, so the diffusion trainers need neither rendering nor VAE encoding per
step. Each trainer normalises with its own VAE config (Flux: ``(z - shift) * scale``; SD: ``z * scale``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_text_atomic
from .common import step_seed

__all__ = ["Source", "world_source", "images_to_tensor", "build_latent_cache", "LatentCache", "file_digest"]


class Source(Protocol):
    def vocabulary(self) -> list[str]: ...

    def dataset_batch(self, seed: int, batch: int, size: int) -> tuple[np.ndarray, list[str]]: ...


def world_source(module: str = "hiresflow.world") -> Any:
    """The reference world module (or another module with the same two functions), with a clear error if it is
    not available."""
    import importlib

    try:
        world = importlib.import_module(module)
    except ImportError as err:  # pragma: no cover
        raise RuntimeError(f"{module} cannot be imported: {err}") from None
    missing = [f for f in ("vocabulary", "dataset_batch") if not hasattr(world, f)]
    if missing:
        raise RuntimeError(f"{module} lacks {missing}; the reference world is needed to train")
    return world


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC → float [B,3,H,W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().contiguous()
    return x / 127.5 - 1.0


def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(p.rglob("*.safetensors")) if p.is_dir() else [p]  # weights only: scaling/shift don't matter
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:n]


class LatentCache:
    """Raw VAE latents [N,C,h,w] (fp16) and their prompts."""

    def __init__(self, latents: torch.Tensor, prompts: list[str], meta: dict):
        self.latents = latents
        self.prompts = prompts
        self.meta = meta

    def __len__(self) -> int:
        return self.latents.shape[0]

    def batch(self, seed: int, step: int, batch: int) -> tuple[torch.Tensor, list[str]]:
        g = torch.Generator().manual_seed(step_seed(seed, step, "cache-index"))
        idx = torch.randint(len(self), (batch,), generator=g)
        return self.latents[idx].float().contiguous(), [self.prompts[i] for i in idx.tolist()]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentCache":
        path = Path(path)
        t = load_file(str(path))
        side = json.loads(path.with_suffix(".json").read_text())
        return cls(t["latents"], side["prompts"], side["meta"])


DEFAULT_SOURCE = "hiresflow.world"


def source_name(source) -> str:
    """The module name of a training source (``hiresflow.world`` for the reference world); other objects give
    their ``__name__`` or, failing that, their type's."""
    return str(getattr(source, "__name__", None) or type(source).__name__)


@torch.no_grad()
def build_latent_cache(path: str | os.PathLike, vae, source: Source, *, n: int, size: int, seed: int,
                       chunk: int = 256, vae_digest: str = "", progress: bool = True,
                       view_kwargs: dict | None = None) -> LatentCache:
    """Render ``n`` views of ``size`` px with ``source.dataset_batch`` (chunk ``i`` uses seed
    ``step_seed(seed, i, "cache")``; ``view_kwargs`` such as ``full_fraction`` go to it too), encode them with
    ``vae`` (posterior mode) and save them to ``path`` (``.safetensors`` + a ``.json`` with the prompts and
    metadata). Reuses an existing cache with equal metadata; a source other than the reference world
    (`source_name`) is part of it, so a cache of one caption grammar never serves another."""
    from tqdm import tqdm

    path = Path(path)
    meta = {"n": int(n), "size": int(size), "seed": int(seed), "chunk": int(chunk), "vae": vae_digest}
    name = source_name(source)
    if name != DEFAULT_SOURCE:
        meta["source"] = name
    view_kwargs = dict(view_kwargs or {})
    if view_kwargs:
        meta["views"] = view_kwargs
    if path.is_file() and path.with_suffix(".json").is_file():
        cache = LatentCache.load(path)
        if cache.meta == meta:
            return cache
    lat, prompts = [], []
    chunks = (n + chunk - 1) // chunk
    for i in tqdm(range(chunks), desc="latent cache", disable=not progress, mininterval=2.0):
        b = min(chunk, n - i * chunk)
        imgs, ps = source.dataset_batch(step_seed(seed, i, "cache"), b, size, **view_kwargs)
        x = images_to_tensor(imgs).to(vae.device, vae.dtype)
        # contiguous: conv outputs may be channels-last, and the memory format changes conv numerics, so a
        # freshly built cache must look exactly like one loaded from disk
        lat.append(vae.encode(x).latent_dist.mode().float().cpu().half().contiguous())
        prompts.extend(list(ps))
    latents = torch.cat(lat).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"latents": latents.contiguous()}, str(tmp))
    write_text_atomic(path.with_suffix(".json"), json.dumps({"meta": meta, "prompts": prompts}))
    return LatentCache(latents, prompts, meta)
