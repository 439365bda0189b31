"""The CFM velocity network and the shipped upsampler folder.

Network: a diffusers ``UNet2DModel`` with 8 input channels (x_t ‖ clean condition z, channel concatenation as in
the official code) and 4 output channels (the velocity), scale-shift (AdaGN) time conditioning, self-attention at
the lowest level only, zero-initialised output convolution (so an untrained model returns v = 0, i.e. the
identity map x1 = x0). A CPU-sized version of the official ``unet-base_psu`` config (128 base channels,
multipliers 1,2,4,8, 3 res blocks, ≈306 M parameters): here 32/64/96 channels, 1 res block.

Time input: the raw t ∈ [0, 1] goes to the sinusoidal embedding (official code: no ×1000).

Latent space: the CFM works on *normalised* latents of the shared VAE, ``(z_raw − shift_factor)·scaling_factor``
(the tiny-flux convention). Models with another normalisation (tiny-sd: ``z_raw·scaling_factor``) convert at the
boundary (:func:`to_cfm_space` / :func:`from_cfm_space`). The VAE's weight digest is recorded in the folder's
``hiresflow.json`` and checked when the upsampler is attached to a model.

Folder layout (diffusers style): ``config.json`` + ``diffusion_pytorch_model.safetensors`` (the UNet) and
``hiresflow.json`` (scale factor, coupling, augmentation index, σ_min, objective, VAE digest, normalisation).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .coupling import COUPLINGS, OBJECTIVES, cosine_alpha_bar

__all__ = ["UNET_CONFIG", "CfmMeta", "build_unet", "save_upsampler", "load_upsampler", "CfmUpsampler",
           "to_cfm_space", "from_cfm_space", "META_FILE"]

META_FILE = "hiresflow.json"

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=32,
    in_channels=8,
    out_channels=4,
    block_out_channels=(32, 64, 96),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=16,
    attention_head_dim=32,
    resnet_time_scale_shift="scale_shift",
    time_embedding_type="positional",
    flip_sin_to_cos=True,
    freq_shift=0,
    add_attention=True,
)


def build_unet(config: dict | None = None, seed: int = 0):
    """A fresh velocity network (weights from ``seed``, never the global RNG), output conv zeroed."""
    from diffusers import UNet2DModel

    from ..train.common import step_seed

    cfg = dict(UNET_CONFIG, **(config or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(step_seed(seed, 0, "cfm-init"))
        unet = UNet2DModel(**cfg)
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.zero_()
    return unet


@dataclass
class CfmMeta:
    """What, besides the weights, defines an upsampler (stored in ``hiresflow.json``)."""

    scale: int = 2
    objective: str = "cfm"
    coupling: str = "psu"
    t_aug: int = 400
    sigma_min: float = 0.0
    vae_digest: str = ""
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    native_latent: int = 16  # latent side of the low-resolution input it was trained on
    solver: str = "euler"
    nfe: int = 10
    training: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}")
        cosine_alpha_bar(self.t_aug)
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 2:
            raise ValueError(f"CFM scale must be an integer >= 2, got {self.scale!r}")
        if not 0.0 <= float(self.sigma_min) < 1.0:
            raise ValueError(f"sigma_min must lie in [0, 1), got {self.sigma_min!r}")


def to_cfm_space(z_raw: torch.Tensor, meta: CfmMeta) -> torch.Tensor:
    return (z_raw - meta.shift_factor) * meta.scaling_factor


def from_cfm_space(z: torch.Tensor, meta: CfmMeta) -> torch.Tensor:
    return z / meta.scaling_factor + meta.shift_factor


def save_upsampler(folder: str | Path, unet, meta: CfmMeta, dtype: torch.dtype = torch.float32) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.to(dtype).save_pretrained(folder, safe_serialization=True)
    unet.to(torch.float32)
    (folder / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    return folder


class CfmUpsampler:
    """A loaded upsampler: the UNet (fp32, eval) and its :class:`CfmMeta`."""

    def __init__(self, unet, meta: CfmMeta, path: str = ""):
        self.unet = unet.eval().to(torch.float32)
        self.meta = meta
        self.path = path

    def velocity(self, x: torch.Tensor, t: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """v_θ(x_t, t, z): one network call on x_t ‖ z (t ∈ [0, 1], t = 0 source)."""
        tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1)
        if tt.numel() == 1:
            tt = tt.expand(x.shape[0])
        return self.unet(torch.cat([x, cond], dim=1), tt).sample

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


def load_upsampler(folder: str | Path) -> CfmUpsampler:
    """Load an upsampler folder offline (a one-line error when it is missing or incomplete)."""
    from diffusers import UNet2DModel

    folder = Path(folder)
    meta_path = folder / META_FILE
    if not (folder / "config.json").is_file() or not meta_path.is_file():
        raise ValueError(f"{folder} is not a CFM upsampler folder (needs config.json, "
                         f"diffusion_pytorch_model.safetensors and {META_FILE})")
    meta = CfmMeta(**json.loads(meta_path.read_text()))
    from ..quiet import quiet_libraries

    with quiet_libraries():
        unet = UNet2DModel.from_pretrained(str(folder), torch_dtype=torch.float32, local_files_only=True)
    return CfmUpsampler(unet, meta, str(folder))
