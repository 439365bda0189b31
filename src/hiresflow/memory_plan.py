"""Memory plan: the predicted peak of every phase of a run, and the cheapest diffusers mechanisms that fit a budget.

Prediction (bytes; b = bytes per element of the compute dtype, N = tokens of one call, D = transformer width):

- weights: parameters × their storage bytes, counted on the architecture itself (a loaded pipeline, or the published
  config built on torch's meta device: exact parameter counts without any weights);
- DiT call (`denoiser_call_bytes`): the peak inside one block, (7 + 2·r)·N·D·b for an MLP ratio r, counted from
  diffusers' `FluxSingleTransformerBlock.forward` (transformer_flux.py): the caller's input and its text+image concat
  (2), the adaptive norm's output (1), the MLP projection and its GELU (r), the attention output (1), the
  concat of attention and MLP (1 + r) and the output projection with its gate (2) are alive together; plus the rotary
  tables (2·N·head_dim) and, for an unfused attention backend ("_native_math"), the score and softmax matrices
  (2·heads·N²·b); on the CPU one packed copy of the largest Linear weight. The fused kernels of `dispatch_attention_fn` (SDPA flash/efficient, flash-attn, CPU flash) keep
  attention O(N). N = image tokens + text tokens × copies; CFG run as one batched call multiplies by the batch;
- other DiT families (Chroma, FLUX.2, Qwen-Image, SD3, Z-Image): their own maps, largest Linear and mask term,
  each counted from its diffusers block and checked on real widths (`_dit_counts`);
- U-Net call: 48·h·w·C₀·b per batch row (the adapter's own count, `SDFlowModel.call_bytes`, fitted on the embedded
  U-Net; not validated at real width);
- VAE decode (`vae_decode_bytes`): 6·C₀·H·W·b (8 on the CPU: oneDNN's blocked-layout copies), counted from `ResnetBlock2D.forward` at full resolution: the first
  resnet of the last up block holds its 2·C₀-channel input, the GroupNorm output and the SiLU output at once;
  plus the image (3·H·W·4, float32 after `VaeCodec`). With diffusers tiling (`AutoencoderKL.tiled_decode`) one
  tile's decode, all decoded tiles (kept until blended) and the blended rows;
- VAE encode: the same count on the encoder's first level (C₀ channels at H·W, 6 maps);
- text encoders: their weights and 16·T·W·b activations for T tokens of width W.

`benchmarks/real_widths.py` checks these against the measured peak RSS of real-width architectures with random
weights (docs/usage/memory.md has the table).

Mechanisms (`Mechanisms`), cheapest first (`CANDIDATES`): diffusers VAE tiling; model offload (each component
on the device only for its own call — diffusers' group offloading with the whole block list as one group, which
is what `enable_model_cpu_offload` does but keeps `module.device` the execution device, which hiresflow's
adapters read); group offloading one block at a time (`diffusers.hooks.group_offloading`, CUDA streams prefetch
the next block); layerwise casting (weights stored in float8_e4m3fn, computed in the model's dtype:
`ModelMixin.enable_layerwise_casting`, diffusers' default skip patterns keep norms and embeddings); leaf-level
group offloading. The attention backend is part of the prediction (`attention`), set through diffusers'
dispatcher (`ModelMixin.set_attention_backend`). `choose` returns the first candidate whose predicted peak fits the
budget, or raises a one-line `ValueError` naming the smallest peak any candidate reaches.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
import torch

from .caching import denoiser_of

__all__ = ["DenoiserArch", "VaeArch", "Architecture", "ARCHITECTURES", "Mechanisms", "CANDIDATES", "Phase",
           "MemoryPlan", "parse_memory", "architecture_from_dict", "architecture_of", "build_module",
           "example_inputs", "example_latents", "denoiser_call_bytes", "denoiser_input_bytes", "vae_decode_bytes", "vae_encode_bytes",
           "predict", "choose", "apply_mechanisms", "explain", "ATTENTION_BACKENDS"]

GIB = 2**30
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": GIB, "gb": 10**9, "gib": GIB, "t": 2**40, "tb": 10**12, "tib": 2**40}
FUSED_ATTENTION = ("native", "flash", "_native_flash", "_native_efficient", "_native_cudnn", "sage", "flex",
                   "xformers", "_flash_3", "aiter")
ATTENTION_BACKENDS = FUSED_ATTENTION + ("_native_math",)
DIT_BLOCK_MAPS = 7  # + 2·r live N·D maps at a DiT block's peak (module docstring)
UNET_MAPS = 48  # per batch row, × h·w·C₀ (SDFlowModel.call_bytes)
VAE_MAPS = 6  # × C₀·H·W at full resolution (module docstring)
CAUSAL_VAE_MAPS = 20  # the same for a causal 3-D VAE's decoder (Qwen-Image; `_vae_maps`)
TEXT_MAPS = 16


def parse_memory(text: str | int | float) -> int:
    """'24GB', '24 GiB', '512MB', '1.5T' or a byte count → bytes (GB = 10⁹, GiB/G = 2³⁰). One-line ValueError for
    anything that is not a positive size."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in UNITS:
        raise ValueError(f"--max-memory {str(text)[:40]!r} is not a size; write it like 24GB, 24GiB or 512MB")
    value = float(m.group(1)) * UNITS[unit]
    if not math.isfinite(value) or value < 2**20:
        raise ValueError(f"--max-memory {str(text)[:40]!r} is below 1 MiB; give the memory the device may use, "
                         f"e.g. 24GB")
    return int(value)


# ------------------------------------------------------------------ architectures


@dataclass(frozen=True)
class DenoiserArch:
    """A diffusers transformer or U-Net class and its config; `kind` "dit" or "unet"."""

    cls: str
    config: dict
    kind: str = "dit"
    text_tokens: int = 512  # tokens of one text copy in a DiT call
    patch: int = 2  # latent pixels per token side
    cfg_batch: int = 1  # batch rows of one call (2 when cond and uncond share a call)
    mlp_ratio: float = 4.0

    @property
    def width(self) -> int:
        c = self.config
        if "dim" in c and "num_attention_heads" not in c:  # Z-Image: dim, n_heads
            return int(c["dim"])
        return int(c.get("num_attention_heads", 1)) * int(c.get("attention_head_dim", 1))

    @property
    def heads(self) -> int:
        return int(self.config.get("num_attention_heads", self.config.get("n_heads", 1)))

    @property
    def head_dim(self) -> int:
        if "attention_head_dim" not in self.config and "n_heads" in self.config:
            return self.width // self.heads
        return int(self.config.get("attention_head_dim", 1))

    @property
    def text_width(self) -> int:
        """Width of the text features the call takes (joint_attention_dim; Z-Image's cap_feat_dim)."""
        c = self.config
        return int(c.get("joint_attention_dim", c.get("cross_attention_dim", c.get("cap_feat_dim", 0))) or 0)


@dataclass(frozen=True)
class VaeArch:
    cls: str
    config: dict

    @property
    def c0(self) -> int:
        c = self.config
        if "block_out_channels" not in c and "base_dim" in c:  # AutoencoderKLQwenImage: base_dim · dim_mult[0]
            return int(c["base_dim"]) * int((c.get("dim_mult") or (1,))[0])
        return int(c.get("block_out_channels", (128,))[0])

    @property
    def latent_channels(self) -> int:
        return int(self.config.get("latent_channels", self.config.get("z_dim", 4)))

    @property
    def factor(self) -> int:
        c = self.config
        if "block_out_channels" not in c and "dim_mult" in c:
            return 2 ** (len(c["dim_mult"]) - 1)
        return 2 ** (len(c.get("block_out_channels", (0, 0, 0, 0))) - 1)

    @property
    def frames(self) -> bool:
        """A causal video VAE (AutoencoderKLQwenImage): latents carry a frame axis, [B, C, 1, h, w] for an image."""
        return "QwenImage" in self.cls or "Wan" in self.cls

    @property
    def tile(self) -> int:
        """diffusers' tile side in pixels (`AutoencoderKL.tile_sample_min_size` = config.sample_size)."""
        return int(self.config.get("sample_size", 512) or 512)


@dataclass(frozen=True)
class Architecture:
    """What the predictor needs: the denoiser, the VAE and the text encoders (name → (parameters, width, tokens))."""

    name: str
    family: str
    denoiser: DenoiserArch
    vae: VaeArch
    text_encoders: dict = field(default_factory=dict)
    dtype_bytes: int = 2
    native: int = 1024


FLUX_DEV_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                            guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=1024,
                scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 layers_per_block=2, transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
SDXL_VAE = dict(FLUX_VAE, latent_channels=4, scaling_factor=0.13025, shift_factor=None, use_quant_conv=True,
                use_post_quant_conv=True)
SD3_TRANSFORMER = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                       num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                       pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
# Published parameter counts of the text encoders (Hugging Face model cards / configs): CLIP ViT-L/14 text
# 123,060,480; OpenCLIP ViT-bigG/14 text 694,659,840; T5 v1.1 XXL encoder 4,762,310,656.
CLIP_L = (123_060_480, 768, 77)
CLIP_G = (694_659_840, 1280, 77)
T5_XXL = (4_762_310_656, 4096, 512)

ARCHITECTURES: dict[str, Architecture] = {
    "flux-dev": Architecture("flux-dev", "flux", DenoiserArch("FluxTransformer2DModel", FLUX_DEV_TRANSFORMER),
                             VaeArch("AutoencoderKL", FLUX_VAE), {"text_encoder": CLIP_L, "text_encoder_2": T5_XXL}),
    "sdxl": Architecture("sdxl", "sdxl", DenoiserArch("UNet2DConditionModel", SDXL_UNET, kind="unet", cfg_batch=2,
                                                      text_tokens=77, patch=1),
                         VaeArch("AutoencoderKL", SDXL_VAE), {"text_encoder": CLIP_L, "text_encoder_2": CLIP_G}),
    "sd3-medium": Architecture("sd3-medium", "sd3",
                               DenoiserArch("SD3Transformer2DModel", SD3_TRANSFORMER, text_tokens=333, cfg_batch=2),
                               VaeArch("AutoencoderKL", dict(FLUX_VAE, scaling_factor=1.5305, shift_factor=0.0609)),
                               {"text_encoder": CLIP_L, "text_encoder_2": CLIP_G,
                                "text_encoder_3": (T5_XXL[0], 4096, 256)}),
}


# Tokens of one text copy when a config file does not say (`text_tokens`): the pipelines' default
# max_sequence_length, 512 for FLUX.1, Chroma, FLUX.2, Qwen-Image (an upper bound: its text is not padded) and
# Z-Image; SD3/SD3.5 concatenate CLIP's 77 tokens and T5's 256 (StableDiffusion3Pipeline's default).
FAMILY_TEXT_TOKENS = {"sd3": 77 + 256}


def _mlp_ratio(cls: str, cfg: dict) -> float:
    """Hidden width of the block's MLP over D: FLUX.2's `mlp_ratio` (3, SwiGLU), Z-Image's FeedForward
    int(dim / 3 · 8) (SwiGLU), else 4."""
    if "mlp_ratio" in cfg:
        return float(cfg["mlp_ratio"])
    if "ZImage" in cls and "dim" in cfg:
        return int(int(cfg["dim"]) / 3 * 8) / int(cfg["dim"])
    return 4.0


def architecture_from_dict(d: dict) -> Architecture:
    """A published config file ({"family", "transformer_class", "transformer", "vae_class", "vae", optional
    "text_tokens", "patch", "cfg_batch"}) as an Architecture."""
    cls = d.get("transformer_class", "FluxTransformer2DModel")
    tokens = d.get("text_tokens", FAMILY_TEXT_TOKENS.get(d.get("family", ""), 512))
    den = DenoiserArch(cls, dict(d["transformer"]),
                       text_tokens=int(tokens), patch=int(d.get("patch", 2)),
                       cfg_batch=int(d.get("cfg_batch", 1)),
                       mlp_ratio=float(d.get("mlp_ratio", _mlp_ratio(cls, d["transformer"]))))
    vae = VaeArch(d.get("vae_class", "AutoencoderKL"), dict(d.get("vae") or FLUX_VAE))
    return Architecture(d.get("family", "dit"), d.get("family", "dit"), den, vae, {}, native=int(d.get("native", 1024)))


def _diffusers_class(name: str):
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"diffusers {diffusers.__version__} has no class {name!r}; update diffusers or fix the config")
    return cls


BLOCK_KEYS = ("num_layers", "num_single_layers")
# The block-count keys of each block list, by position in `blocks`: the (double / only) list — num_layers, or
# Z-Image's n_layers — then the single-stream list.
BLOCK_KEY_SETS = (("num_layers", "n_layers"), ("num_single_layers",))
REFINER_KEYS = ("n_refiner_layers",)  # Z-Image: noise_refiner and context_refiner each have this many layers


def build_module(arch: DenoiserArch | VaeArch, blocks: tuple[int, ...] | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, refiners: int | None = None) -> torch.nn.Module:
    """The diffusers module of `arch` with random weights (`blocks` overrides num_layers / num_single_layers, or
    Z-Image's n_layers; `refiners` Z-Image's n_refiner_layers), in eval mode; device "meta" builds it without
    memory."""
    cfg = dict(arch.config)
    if blocks is not None:
        for keys, n in zip(BLOCK_KEY_SETS, blocks):
            for key in keys:
                if key in cfg:
                    cfg[key] = int(n)
    if refiners is not None:
        for key in REFINER_KEYS:
            if key in cfg:
                cfg[key] = int(refiners)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return _diffusers_class(arch.cls)(**cfg).eval()
    finally:
        torch.set_default_dtype(prev)


def example_inputs(arch: Architecture, module: torch.nn.Module, size: int, batch: int = 1) -> dict:
    """Keyword inputs of one transformer call at size² pixels, in the form each family's adapter passes them
    (hiresflow.models.*: `_call`): Flux-style packed tokens with 3-axis ids (FLUX.1; Chroma with T5 only and the
    [text; image] attention mask), FLUX.2's 128-channel tokens with 4-axis ids, Qwen-Image's tokens with
    `img_shapes` and the text mask, Z-Image's per-image lists of [C, 1, h, w] latents and caption features, or SD3
    latents with pooled projections. Text: `den.text_tokens` tokens of the family's text width."""
    f, den = arch.vae.factor, arch.denoiser
    h = w = size // f
    cfg = module.config
    txt = torch.randn(batch, den.text_tokens, den.text_width)
    t = torch.full((batch,), 0.5)
    p = den.patch
    rows, cols = h // p, w // p
    lat = int(cfg.in_channels) if "in_channels" in cfg else arch.vae.latent_channels

    def packed() -> torch.Tensor:
        return torch.randn(batch, rows * cols, lat)

    if "Chroma" in den.cls:  # ChromaFlowModel._call: T5 only, no pooled / guidance; mask [B, T + N]
        ids = torch.zeros(rows, cols, 3)
        ids[..., 1] = torch.arange(rows)[:, None]
        ids[..., 2] = torch.arange(cols)[None, :]
        mask = torch.cat([torch.ones(batch, den.text_tokens), torch.ones(batch, rows * cols, dtype=torch.bool)], 1)
        return dict(hidden_states=packed(), encoder_hidden_states=txt, timestep=t, img_ids=ids.reshape(-1, 3),
                    txt_ids=torch.zeros(den.text_tokens, 3), attention_mask=mask, return_dict=False)
    if "Flux2" in den.cls:  # Flux2FlowModel._call: ids (0, r, c, 0) and text ids (0, 0, 0, l)
        img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(rows), torch.arange(cols), torch.arange(1))
        txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1),
                                       torch.arange(den.text_tokens))
        g = torch.full((batch,), 4.0) if cfg.guidance_embeds else None
        return dict(hidden_states=packed(), encoder_hidden_states=txt, timestep=t, img_ids=img_ids,
                    txt_ids=txt_ids, guidance=g, return_dict=False)
    if "QwenImage" in den.cls:  # QwenImageFlowModel._call
        return dict(hidden_states=packed(), encoder_hidden_states=txt,
                    encoder_hidden_states_mask=torch.ones(batch, den.text_tokens, dtype=torch.long), timestep=t,
                    img_shapes=[[(1, rows, cols)]] * batch, guidance=None, return_dict=False)
    if "ZImage" in den.cls:  # ZImageFlowModel._call: lists of [C, 1, h, w] latents and [T, cap_feat_dim] captions
        return dict(x=[torch.randn(lat, 1, h, w) for _ in range(batch)], t=t, cap_feats=list(txt.unbind(0)),
                    patch_size=p, f_patch_size=1, return_dict=False)
    if "Flux" in den.cls:
        ids = torch.zeros(rows, cols, 3)
        ids[..., 1] = torch.arange(rows)[:, None]
        ids[..., 2] = torch.arange(cols)[None, :]
        g = torch.full((batch,), 3.5) if cfg.guidance_embeds else None
        return dict(hidden_states=torch.randn(batch, rows * cols, int(cfg.in_channels)), encoder_hidden_states=txt,
                    pooled_projections=torch.randn(batch, int(cfg.pooled_projection_dim)), timestep=t, guidance=g,
                    img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(den.text_tokens, 3), return_dict=False)
    return dict(hidden_states=torch.randn(batch, int(cfg.in_channels), h, w), encoder_hidden_states=txt,
                pooled_projections=torch.randn(batch, int(cfg.pooled_projection_dim)), timestep=t * 1000,
                return_dict=False)


def example_latents(vae: VaeArch, size: int, batch: int = 1) -> torch.Tensor:
    """The input of one `vae.decode` to size² pixels: [B, C, h, w], or [B, C, 1, h, w] for a causal video VAE."""
    side = size // vae.factor
    z = torch.randn(batch, vae.latent_channels, side, side)
    return z.unsqueeze(2) if vae.frames else z


def _count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_count(arch: DenoiserArch | VaeArch) -> int:
    """Exact parameter count of the architecture (built on the meta device)."""
    return _count_params(build_module(arch, device="meta"))


def fp8_castable(module: torch.nn.Module) -> int:
    """Parameters layerwise casting stores in float8: Linear/Conv weights and biases outside diffusers' skip
    patterns (`DEFAULT_SKIP_MODULES_PATTERN` + the model's `_skip_layerwise_casting_patterns`)."""
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    skip = tuple(DEFAULT_SKIP_MODULES_PATTERN) + tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    n = 0
    for name, sub in module.named_modules():
        if isinstance(sub, _GO_LC_SUPPORTED_PYTORCH_LAYERS) and not any(re.search(p, name) for p in skip):
            n += sum(p.numel() for p in sub.parameters(recurse=False))
    return n


def _blocks(module: torch.nn.Module) -> list[list[int]]:
    """Parameter counts of the blocks of each top-level ModuleList (what block-level group offloading groups)."""
    return [[_count_params(b) for b in child] for child in module.children()
            if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential))]


@dataclass(frozen=True)
class Weights:
    """Parameter counts of one component: total, float8-castable, in blocks (per block), largest leaf."""

    total: int
    castable: int
    blocks: tuple[int, ...]
    largest_leaf: int

    @classmethod
    def of(cls, module: torch.nn.Module) -> "Weights":
        blocks = tuple(n for lst in _blocks(module) for n in lst)
        leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules()), default=0)
        return cls(_count_params(module), fp8_castable(module), blocks, leaf)


def architecture_of(model) -> tuple[Architecture, dict[str, Weights]]:
    """The Architecture of a loaded FlowModel and the weights of its components (text encoders, denoiser, VAE)."""
    den_mod = denoiser_of(model)
    cfg = dict(den_mod.config)
    kind = "unet" if "UNet" in type(den_mod).__name__ else "dit"
    dt = next(den_mod.parameters()).dtype
    den = DenoiserArch(type(den_mod).__name__, cfg, kind=kind, text_tokens=int(getattr(model, "text_len", 77)),
                       patch=int(model.geometry.patch), cfg_batch=int(getattr(model, "cfg_batch", 1)),
                       mlp_ratio=_mlp_ratio(type(den_mod).__name__, cfg))
    vae = VaeArch(type(model.codec.vae).__name__, dict(model.codec.vae.config))
    weights: dict[str, Weights] = {"denoiser": Weights.of(den_mod), "vae": Weights.of(model.codec.vae)}
    texts = {}
    pipe = getattr(model, "pipe", None)
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        enc = getattr(pipe, name, None)
        if isinstance(enc, torch.nn.Module):
            weights[name] = Weights.of(enc)
            hidden = int(getattr(enc.config, "hidden_size", 0) or getattr(enc.config, "d_model", 0) or 768)
            texts[name] = (weights[name].total, hidden, den.text_tokens)
    arch = Architecture(getattr(model, "name", "model"), model.family, den, vae, texts,
                        dtype_bytes=torch.finfo(dt).bits // 8 if dt.is_floating_point else 4,
                        native=int(model.geometry.native[0]))
    return arch, weights


def weights_of_architecture(arch: Architecture) -> dict[str, Weights]:
    """Component weights of a named architecture (denoiser and VAE built on the meta device; text encoders from
    their published parameter counts: no block structure, all castable)."""
    out = {"denoiser": Weights.of(build_module(arch.denoiser, device="meta")),
           "vae": Weights.of(build_module(arch.vae, device="meta"))}
    for name, (params, _, _) in arch.text_encoders.items():
        out[name] = Weights(params, params, (), params // 24)
    return out


# ------------------------------------------------------------------ activations


def _tokens(arch: Architecture, hw: tuple[int, int], text_copies: int = 1) -> int:
    p, f = arch.denoiser.patch, arch.vae.factor
    return (hw[0] // f // p) * (hw[1] // f // p) + arch.denoiser.text_tokens * text_copies


def denoiser_call_bytes(arch: Architecture, hw: tuple[int, int], *, dtype_bytes: int | None = None, batch: int = 1,
                        text_copies: int = 1, attention: str = "native", device: str = "cuda") -> int:
    """Peak activation bytes of one denoiser call on an H×W-pixel image (module docstring); on the CPU plus one
    copy of the largest Linear weight, (1 + r)·D² (the CPU GEMM packs its weight matrix: the constant term of the
    measured peak, benchmarks/real_widths.py)."""
    b = arch.dtype_bytes if dtype_bytes is None else dtype_bytes
    den = arch.denoiser
    rows = batch * den.cfg_batch
    if den.kind == "unet":
        c0 = int(den.config.get("block_out_channels", (320,))[0])
        f = arch.vae.factor
        return int(UNET_MAPS * (hw[0] // f) * (hw[1] // f) * c0 * b * rows)
    n = _tokens(arch, hw, text_copies)
    maps, largest, mask = _dit_counts(den)
    block = maps * n * den.width * b
    rope = 2 * n * den.head_dim * 4
    scores = 2 * den.heads * n * n * b if attention == "_native_math" else 0
    masks = n * n * b if mask else 0
    pack = largest * den.width ** 2 * b if str(device).startswith("cpu") else 0
    return int((block + rope + scores + masks) * rows + pack)


def _dit_counts(den: DenoiserArch) -> tuple[float, float, bool]:
    """(live N·D maps at the block's peak, the largest Linear weight in D², whether an N×N mask is built) of one
    DiT family, by transformer class (r = `mlp_ratio`; the module docstring has FLUX.1's count):

    - FLUX.1 (`FluxTransformer2DModel`, and the default): 7 + 2r maps, largest Linear (1 + r)·D² (the single
      block's proj_out), no mask.
    - Chroma (`ChromaTransformer2DModel`): FLUX.1's blocks, plus the [B, 1, N, N] mask each block builds from the
      [text; image] mask (`attention_mask[:, None, None, :] * attention_mask[:, None, :, None]`,
      transformer_chroma.py): N²·b per call.
    - Dual-stream blocks only (SD3 `JointTransformerBlock`, Qwen-Image `QwenImageTransformerBlock`): the peak is
      at the joint attention, not the MLP (3 + 2r = 11 maps there): the block's input and modulated norm, each
      stream's q, k, v and QK-normed q, k, their [text; image] concatenations and the attention output are alive
      together. Measured between 1024² and 2048² (benchmarks/real_widths.py): 13.2 maps per token for SD3.5 large
      and 15.1 for Qwen-Image (its rotary embedding makes new q and k), with no constant term (no packed weight
      copy, unlike FLUX.1's single block): 13 and 15 maps, largest Linear 0.
    - Z-Image (`ZImageTransformerBlock`, one stream, SwiGLU r = 8/3): 4 + 4r maps, counted from the block's
      FeedForward, w2(silu(w1(x)) · w3(x)): w1, w3, the SiLU and the product (4r) beside the caller's per-item
      lists, the unified sequence and the modulated norm (3), plus one map the measurement shows (14.65 maps at
      1024², benchmarks/real_widths.py); largest Linear r·D² (w1, w3).
    - FLUX.2 (`Flux2Transformer2DModel`, SwiGLU r = 3): 9 + 4r maps at the single block's output projection,
      counted from `Flux2SingleTransformerBlock` and `Flux2ParallelSelfAttnProcessor`: the fused QKV+MLP projection
      (3 + 2r, alive through its split views), q and k after the QK norm and the rotary embedding (2), the
      attention output (1), the SwiGLU output (r), the concat for to_out (1 + r) and the block's input and its
      modulated norm (2); measured 20.6 maps per token between 512² and 1024². The constant is one D² (measured
      155 MiB beyond the inputs and rotary tables, 1.08·D²·4 B), not a packed copy of the fused projection
      ((3 + 2r)·D², which the measurement rules out).
    """
    r = den.mlp_ratio
    if "ZImage" in den.cls:
        return 4 + 4 * r, r, False
    if "QwenImage" in den.cls:
        return 15.0, 0.0, False
    if "SD3" in den.cls:
        return 13.0, 0.0, False
    if "Flux2" in den.cls:
        return 9 + 4 * r, 1.0, False
    return DIT_BLOCK_MAPS + 2 * den.mlp_ratio, 1 + den.mlp_ratio, "Chroma" in den.cls


def denoiser_input_bytes(arch: Architecture, hw: tuple[int, int], dtype_bytes: int | None = None) -> int:
    """The call's inputs: latent tokens and the text embedding."""
    b = arch.dtype_bytes if dtype_bytes is None else dtype_bytes
    f = arch.vae.factor
    latent = arch.vae.latent_channels * (hw[0] // f) * (hw[1] // f)
    text = arch.denoiser.text_tokens * arch.denoiser.text_width
    return int((latent + text) * b * arch.denoiser.cfg_batch)


def _vae_maps(device: str, vae: VaeArch | None = None) -> int:
    """6 C₀-channel maps; 8 on the CPU, where oneDNN convolves copies of the input and output in its blocked
    layout (measured: 8.1 maps for the FLUX and SDXL decoders at 512², benchmarks/real_widths.py). A causal
    video VAE's decoder (AutoencoderKLQwenImage, C₀ = base_dim · dim_mult[0] = 96) holds CAUSAL_VAE_MAPS: its
    CausalConv3d pads each one-frame input with two zero frames before every 3-D convolution (a 3-frame copy),
    keeps a clone of the last frames for its cache, and the last upsampling (`QwenImageResample`) works on 2·C₀
    channels at full resolution; measured 21.8 maps on the CPU at 1024² (benchmarks/real_widths.py), taken as 22
    there and 20 elsewhere (the same oneDNN difference as the 2-D decoders; the GPU figure is not measured)."""
    cpu = 2 if str(device).startswith("cpu") else 0
    if vae is not None and vae.frames:
        return CAUSAL_VAE_MAPS + cpu
    return VAE_MAPS + cpu


def vae_decode_bytes(vae: VaeArch, hw: tuple[int, int], *, dtype_bytes: int = 2, tile: int | None = None,
                     device: str = "cuda") -> int:
    """Peak bytes of one decode to H×W pixels; `tile` = diffusers' tile side when tiling is on (module docstring)."""
    h, w = hw
    image = 3 * h * w * 4
    maps = _vae_maps(device, vae)
    if tile is None or max(h, w) <= tile:
        return maps * vae.c0 * h * w * dtype_bytes + image
    stride = int(tile * 0.75)
    n_tiles = math.ceil(h / stride) * math.ceil(w / stride)
    return maps * vae.c0 * tile * tile * dtype_bytes + 3 * dtype_bytes * (n_tiles * tile * tile + h * w) + image


def vae_encode_bytes(vae: VaeArch, hw: tuple[int, int], *, dtype_bytes: int = 2, tile: int | None = None,
                     device: str = "cuda") -> int:
    """Peak bytes of one encode of an H×W image (the encoder's first level holds 6 C₀-channel maps)."""
    h, w = hw
    image = 2 * 3 * h * w * 4
    side = h * w if tile is None or max(h, w) <= tile else tile * tile
    return _vae_maps(device) * vae.c0 * side * dtype_bytes + image


# ------------------------------------------------------------------ mechanisms


OFFLOADS = ("none", "model", "group-block", "group-leaf")


@dataclass(frozen=True)
class Mechanisms:
    """The diffusers memory mechanisms of a run."""

    vae_tiling: bool = False
    offload: str = "none"  # "none", "model", "group-block", "group-leaf"
    fp8: bool = False  # layerwise casting: float8_e4m3fn storage, compute in the model's dtype
    attention: str = "native"  # diffusers attention backend (dispatch_attention_fn)
    slowdown: float = 1.0  # rough wall-time factor (docs/usage/memory.md)

    def describe(self) -> str:
        parts = []
        if self.vae_tiling:
            parts.append("VAE tiling")
        if self.offload != "none":
            parts.append({"model": "model offload", "group-block": "group offloading (block level)",
                          "group-leaf": "group offloading (leaf level)"}[self.offload])
        if self.fp8:
            parts.append("layerwise casting (fp8 storage)")
        if self.attention != "native":
            parts.append(f"attention backend {self.attention}")
        return ", ".join(parts) or "none"


CANDIDATES: tuple[Mechanisms, ...] = (
    Mechanisms(),
    Mechanisms(vae_tiling=True, slowdown=1.02),
    Mechanisms(vae_tiling=True, offload="model", slowdown=1.05),
    Mechanisms(vae_tiling=True, offload="group-block", slowdown=1.15),
    Mechanisms(vae_tiling=True, fp8=True, slowdown=1.1),
    Mechanisms(vae_tiling=True, offload="model", fp8=True, slowdown=1.15),
    Mechanisms(vae_tiling=True, offload="group-block", fp8=True, slowdown=1.25),
    Mechanisms(vae_tiling=True, offload="group-leaf", slowdown=2.0),
    Mechanisms(vae_tiling=True, offload="group-leaf", fp8=True, slowdown=2.2),
)


@dataclass(frozen=True)
class Phase:
    name: str
    component: str  # the component that computes in this phase
    activations: int
    weights: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations


def _resident(weights: dict[str, Weights], active: str, mech: Mechanisms, b: int) -> int:
    """Weight bytes on the device while `active` computes."""

    def size(name: str, part: int | None = None) -> int:
        w = weights[name]
        n = w.total if part is None else part
        if mech.fp8 and name != "vae":
            cast = w.castable * n / max(w.total, 1)
            return int(cast * 1 + (n - cast) * b)
        return int(n * b)

    if mech.offload == "none":
        return sum(size(n) for n in weights)
    vae = size("vae")  # the VAE stays on the device (small; its decode/encode are not forward calls)
    w = weights[active] if active in weights else None
    if active == "vae" or w is None:
        return vae
    if mech.offload == "model" or not w.blocks:
        return size(active) + (vae if active != "vae" else 0)
    if mech.offload == "group-block":  # the non-block parameters, the running block and the prefetched one
        top = sorted(w.blocks)[-2:]
        return size(active, w.total - sum(w.blocks) + sum(top)) + vae
    return size(active, 2 * w.largest_leaf) + vae  # leaf level, with prefetch


@dataclass
class MemoryPlan:
    """Predicted phases of a run under `mechanisms`, against `budget` bytes on `device`."""

    architecture: Architecture
    mechanisms: Mechanisms
    phases: list[Phase]
    budget: int | None
    device: str
    tried: list[tuple[Mechanisms, int]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    @property
    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.total)

    @property
    def fits(self) -> bool:
        return self.budget is None or self.peak.total <= self.budget


def plan_phases(arch: Architecture, weights: dict[str, Weights], plan, mech: Mechanisms,
                decode_all: bool = True, device: str = "cuda") -> list[Phase]:
    """Every phase of `plan` (text encoding, each stage's denoising, decodes and pixel-space encodes)."""
    from .resources import _stage_calls, _text_copies

    b = arch.dtype_bytes
    out: list[Phase] = []
    for name, (_, width, tokens) in arch.text_encoders.items():
        out.append(Phase(f"text encoder {name}", name, TEXT_MAPS * tokens * width * b))
    tile = arch.vae.tile if mech.vae_tiling else None
    model = _PlanModel(arch)
    for s, stage in enumerate(plan.stages):
        h, w = stage.size
        f = arch.vae.factor
        n = stage.schedule.steps
        latents = arch.vae.latent_channels * (h // f) * (w // f) * 4 * (n + 8)
        if s > 0 and stage.init.space == "pixel":
            out.append(Phase(f"stage {s} encode {w}x{h}", "vae",
                             vae_encode_bytes(arch.vae, (h, w), dtype_bytes=b, tile=tile, device=device) + latents))
        worst = 0
        for (ch, cw), batch, _ in _stage_calls(model, stage):
            copies = _text_copies(model, stage, ch, cw)
            worst = max(worst, denoiser_call_bytes(arch, (ch * f, cw * f), batch=batch, text_copies=copies,
                                                   attention=mech.attention, device=device))
        out.append(Phase(f"stage {s} denoise {w}x{h}", "denoiser",
                         worst + denoiser_input_bytes(arch, (h, w)) + latents))
        if decode_all or s == len(plan.stages) - 1:
            out.append(Phase(f"stage {s} decode {w}x{h}", "vae",
                             vae_decode_bytes(arch.vae, (h, w), dtype_bytes=b, tile=tile, device=device) + latents))
    if plan.upscale is not None:
        uh, uw = plan.upscale.size
        out.append(Phase(f"upscale {uw}x{uh}", "vae", 6 * 3 * uh * uw * 4))
        if plan.upscale.vae_roundtrip:
            f = arch.vae.factor
            lat = arch.vae.latent_channels * (uh // f) * (uw // f) * 4
            out.append(Phase(f"upscale encode {uw}x{uh}", "vae",
                             vae_encode_bytes(arch.vae, (uh, uw), dtype_bytes=b, tile=tile, device=device) + lat))
            out.append(Phase(f"upscale decode {uw}x{uh}", "vae",
                             vae_decode_bytes(arch.vae, (uh, uw), dtype_bytes=b, tile=tile, device=device) + lat))
    th, tw = plan.target_size
    out.append(Phase(f"output {tw}x{th}", "vae", 36 * th * tw))
    return [replace(p, weights=_resident(weights, p.component, mech, b)) for p in out]


class _PlanModel:
    """The few FlowModel attributes `hiresflow.resources` reads to size a plan's calls, from an Architecture."""

    def __init__(self, arch: Architecture):
        from .models.base import LatentGeometry

        self.geometry = LatentGeometry(channels=arch.vae.latent_channels, vae_scale=arch.vae.factor,
                                       patch=arch.denoiser.patch, native=(arch.native, arch.native))
        self.arch = arch


def predict(arch: Architecture, weights: dict[str, Weights], plan, mech: Mechanisms, budget: int | None = None,
            device: str = "cuda") -> MemoryPlan:
    return MemoryPlan(arch, mech, plan_phases(arch, weights, plan, mech, device=device), budget, device)


def available(device: str) -> tuple[Mechanisms, ...]:
    """Candidates a device can run: offloading moves weights to the CPU, so it needs an accelerator."""
    if str(device).startswith("cpu"):
        return tuple(c for c in CANDIDATES if c.offload == "none")
    return CANDIDATES


def choose(arch: Architecture, weights: dict[str, Weights], plan, budget: int, device: str = "cuda") -> MemoryPlan:
    """The first candidate (cheapest first) whose predicted peak fits `budget`; a one-line ValueError when none
    does."""
    tried = []
    for mech in available(device):
        mp = predict(arch, weights, plan, mech, budget, device)
        tried.append((mech, mp.peak.total))
        if mp.fits:
            mp.tried = tried
            return mp
    best_mech, best = min(tried, key=lambda t: t[1])
    raise ValueError(f"nothing fits --max-memory {_fmt(budget).strip()} on {device}: the smallest predicted peak is "
                     f"{_fmt(best).strip()} (with {best_mech.describe()}); raise --max-memory, lower --size/--scale, "
                     f"or use a device with more memory")


# ------------------------------------------------------------------ apply


def apply_mechanisms(model, mech: Mechanisms, device: str | torch.device | None = None) -> list[str]:
    """Apply `mech` to a loaded FlowModel's pipeline in place; returns what was done (one phrase each)."""
    done: list[str] = []
    den = denoiser_of(model)
    onload = torch.device(device) if device is not None else model.device
    if mech.attention != "native" and hasattr(den, "set_attention_backend"):
        den.set_attention_backend(mech.attention)
        done.append(f"attention backend {mech.attention}")
    if mech.vae_tiling:
        model.codec.tile_above = 0  # VaeCodec "auto": diffusers tiling; it tiles what exceeds its tile size
        done.append("VAE tiling")
    if mech.fp8:
        if not hasattr(den, "enable_layerwise_casting"):
            raise ValueError(f"{type(den).__name__} has no layerwise casting; drop fp8")
        den.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=den.dtype)
        done.append("layerwise casting float8_e4m3fn → " + str(den.dtype).replace("torch.", ""))
    if mech.offload != "none":
        from diffusers.hooks import apply_group_offloading

        if onload.type == "cpu":
            raise ValueError("offloading moves weights off the device to the CPU; it needs a GPU (--device cuda)")
        pipe = getattr(model, "pipe", None)
        mods = {"denoiser": den}
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            enc = getattr(pipe, name, None)
            if isinstance(enc, torch.nn.Module):
                mods[name] = enc
        stream = onload.type == "cuda"
        for name, mod in mods.items():
            mod.to("cpu")
            if mech.offload == "group-leaf":
                apply_group_offloading(mod, onload, offload_type="leaf_level", use_stream=stream)
            else:
                per_group = 1 if mech.offload == "group-block" else 10**6
                apply_group_offloading(mod, onload, offload_type="block_level", num_blocks_per_group=per_group,
                                       use_stream=stream and mech.offload == "group-block")
        done.append(mech.describe())
    return done


def _fmt(n: int) -> str:
    return f"{n / GIB:7.2f} GiB" if n >= GIB else f"{n / 2**20:7.1f} MiB"


def explain(mp: MemoryPlan) -> str:
    """The plan as text: the budget, the chosen mechanisms and every phase's predicted peak."""
    lines = [f"memory plan for {mp.architecture.name} ({mp.architecture.family}) on {mp.device}"
             + (f", budget {_fmt(mp.budget).strip()}" if mp.budget else "")]
    for mech, peak in mp.tried:
        mark = "->" if mech == mp.mechanisms else "  "
        lines.append(f" {mark} {mech.describe():<58} peak {_fmt(peak)}  (~{mech.slowdown:.2f}x time)")
    lines.append(f"chosen: {mp.mechanisms.describe()}")
    width = max(len(p.name) for p in mp.phases)
    for p in mp.phases:
        star = " <- peak" if p is mp.peak else ""
        lines.append(f"  {p.name:<{width}}  weights {_fmt(p.weights)} + activations {_fmt(p.activations)} = "
                     f"{_fmt(p.total)}{star}")
    return "\n".join(lines)


def memory_plan_for(model, plan, budget: int | None, device: str | None = None) -> MemoryPlan:
    """`choose` for a loaded FlowModel (budget None: the plan without mechanisms)."""
    arch, weights = architecture_of(model)
    dev = str(device or model.device)
    if budget is None:
        mp = predict(arch, weights, plan, Mechanisms(), None, dev)
        mp.tried = [(Mechanisms(), mp.peak.total)]
        return mp
    return choose(arch, weights, plan, budget, dev)


def memory_plan_named(name: str, plan, budget: int | None, device: str = "cuda") -> MemoryPlan:
    """`choose` for a named published architecture (`ARCHITECTURES`), without loading any weights."""
    arch = ARCHITECTURES[name]
    weights = weights_of_architecture(arch)
    if budget is None:
        mp = predict(arch, weights, plan, Mechanisms(), None, device)
        mp.tried = [(Mechanisms(), mp.peak.total)]
        return mp
    return choose(arch, weights, plan, budget, device)


def device_budget(max_memory: str | int, device: str) -> int:
    """The budget: --max-memory, but never more than 90 % of what the device has free now."""
    from .resources import free_memory

    budget = parse_memory(max_memory) if isinstance(max_memory, str) else int(max_memory)
    if isinstance(max_memory, int) and max_memory <= 0:
        raise ValueError(f"--max-memory must be a positive size such as 24GB, got {max_memory}")
    free = free_memory(torch.device(device))
    return min(budget, int(0.9 * free)) if free is not None else budget


def apply_memory_plan(model, plan, max_memory: str | int, device: str | None = None) -> MemoryPlan:
    """Choose the mechanisms for `plan` under `max_memory` (capped by the device's free memory) and apply them to
    `model`; the MemoryPlan records what was applied in `applied`."""
    dev = str(device or model.device)
    mp = memory_plan_for(model, plan, device_budget(max_memory, dev), dev)
    mp.applied = apply_mechanisms(model, mp.mechanisms, device=dev)
    return mp
