"""Build ComfyUI's own MODEL and VAE objects from a converted checkpoint, widths read from the tensors.

ComfyUI's stock detection (`comfy.model_detection.detect_unet_config`) hard-codes FLUX's widths (3072 hidden,
24 heads, 4096 context, axes 16/56/56) and matches SD 1.5 only at 320 channels and 768 context, and its VAE
classes hard-code 32 group-norm groups and a mid-block attention; a small-width checkpoint such as the embedded
tiny-flux / tiny-sd is therefore rejected by `UNETLoader` / `CheckpointLoaderSimple`. This loader builds the same
ComfyUI classes (`comfy.ldm.flux.model.Flux` through `comfy.supported_models.Flux*`, `UNetModel` through
`comfy.supported_models.SD15`, `comfy.sd.VAE` around ComfyUI's `AutoencoderKL`) with
- widths, depths, MLP ratio and biases read from the tensor shapes (heads = hidden / the q-norm's length for FLUX),
- what tensors cannot show from the checkpoint's `hiresflow` metadata (`hiresflow.comfy.convert`): U-Net heads,
  RoPE axes and base, group-norm groups, the latent scale/shift and the noise schedule,
and wraps the model in `comfy.model_patcher.ModelPatcher`, as `comfy.sd.load_diffusion_model_state_dict` does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .convert import MODEL_PREFIX, VAE_PREFIX, Tensors

__all__ = ["build_model", "build_vae", "load_state_dict", "load_embedded", "latent_format"]

# diffusers' beta schedule names → ComfyUI's `make_beta_schedule` names (ComfyUI's "linear" is linear in √β,
# diffusers' "scaled_linear"; see comfy/ldm/modules/diffusionmodules/util.py)
BETA_SCHEDULES = {"scaled_linear": "linear", "linear": "sqrt_linear", "squaredcos_cap_v2": "cosine"}


def latent_format(channels: int, scale: float, shift: float):
    """A ComfyUI `LatentFormat` with z = (raw − shift)·scale, the same normalisation as diffusers' VAE config."""
    from comfy import latent_formats

    class HiresflowLatent(latent_formats.LatentFormat):
        latent_channels = channels

        def __init__(self):
            self.scale_factor, self.shift_factor = float(scale), float(shift)

        def process_in(self, latent):
            return (latent - self.shift_factor) * self.scale_factor

        def process_out(self, latent):
            return latent / self.scale_factor + self.shift_factor

    return HiresflowLatent()


def _strip(sd: Tensors, prefix: str) -> Tensors:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _count(sd: Tensors, prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _flux_config(sd: Tensors, meta: dict) -> dict:
    hidden, in_features = sd["img_in.weight"].shape
    head_dim = int(sd["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
    heads = hidden // head_dim
    axes = [int(a) for a in meta.get("axes_dim", [])] or [head_dim - 2 * (head_dim * 7 // 16), head_dim * 7 // 16,
                                                           head_dim * 7 // 16]
    if sum(axes) != head_dim:
        raise ValueError(f"RoPE axes {axes} do not add up to the head width {head_dim} read from the checkpoint")
    patch = 2
    return {
        "image_model": "flux", "in_channels": int(in_features) // (patch * patch),
        "out_channels": int(sd["final_layer.linear.weight"].shape[0]) // (patch * patch), "patch_size": patch,
        "vec_in_dim": int(sd["vector_in.in_layer.weight"].shape[1]),
        "context_in_dim": int(sd["txt_in.weight"].shape[1]), "hidden_size": int(hidden),
        "mlp_ratio": float(sd["double_blocks.0.img_mlp.0.weight"].shape[0]) / float(hidden), "num_heads": heads,
        "depth": _count(sd, "double_blocks."), "depth_single_blocks": _count(sd, "single_blocks."),
        "axes_dim": axes, "theta": int(meta.get("theta", 10000)),
        "qkv_bias": "double_blocks.0.img_attn.qkv.bias" in sd,
        "guidance_embed": "guidance_in.in_layer.weight" in sd,
    }


def _sd_config(sd: Tensors, meta: dict) -> dict:
    from comfy import model_detection

    cfg = model_detection.detect_unet_config(sd, "")  # ComfyUI reads levels, blocks, depths and widths itself
    if cfg is None:
        raise ValueError("the checkpoint's U-Net layout is not one ComfyUI's detection reads")
    cfg["num_heads"] = int(meta.get("heads", 8))
    cfg["num_head_channels"] = -1
    widths = _level_widths(sd)
    base = int(cfg["model_channels"])
    if len(widths) == len(cfg["channel_mult"]) and any(w % base for w in widths):
        # detection floors width / model_channels (96 / 64 → 1); tiny-sd's 64/96/128 needs the exact widths
        cfg["channel_mult"] = [_Width(w) for w in widths]
    return cfg


def _level_widths(sd: Tensors) -> list[int]:
    """Each U-Net level's width, read from its res blocks in `input_blocks` (a downsampler starts a new level)."""
    widths: list[int] = []
    current, k = None, 1
    while any(key.startswith(f"input_blocks.{k}.") for key in sd):
        if f"input_blocks.{k}.0.op.weight" in sd:
            widths.append(current)
            current = None
        elif f"input_blocks.{k}.0.out_layers.3.weight" in sd:
            current = int(sd[f"input_blocks.{k}.0.out_layers.3.weight"].shape[0])
        k += 1
    widths.append(current)
    return [w for w in widths if w is not None]


def build_model(sd: Tensors, meta: dict, dtype: torch.dtype = torch.float32):
    """A ComfyUI `ModelPatcher` for a diffusion-model state dict (ComfyUI layout, no prefix) and its metadata."""
    import comfy.model_management as mm
    import comfy.model_patcher
    from comfy import supported_models

    family = meta.get("family")
    if family == "flux":
        unet = _flux_config(sd, meta)
        cls = supported_models.Flux if unet["guidance_embed"] else supported_models.FluxSchnell
        config = cls(unet)
        config.sampling_settings["shift"] = float(meta.get("shift", config.sampling_settings.get("shift", 1.0)))
    elif family == "sd":
        config = supported_models.SD15(_sd_config(sd, meta))
        config.unet_config["num_heads"] = int(meta.get("heads", 8))  # SD15's extra config sets 8
        config.sampling_settings.update(beta_schedule=BETA_SCHEDULES.get(meta.get("beta_schedule", "scaled_linear"),
                                                                         "linear"),
                                        linear_start=float(meta.get("beta_start", 0.00085)),
                                        linear_end=float(meta.get("beta_end", 0.012)))
        if meta.get("zero_terminal_snr"):  # tiny-sd v3: ComfyUI rescales its sigmas to a zero terminal SNR
            config.sampling_settings["zsnr"] = True
        # read by hiresflow's sampler node only (ComfyUI's own schedulers ignore them): the diffusers spacing of
        # the σ grid the model card recommends ("trailing" for tiny-sd v3)
        config.sampling_settings.update(timestep_spacing=str(meta.get("timestep_spacing", "leading")),
                                        steps_offset=int(meta.get("steps_offset", 1)))
        if meta.get("prediction_type", "epsilon") == "v_prediction":
            from comfy import model_base

            config.model_type = lambda state_dict, prefix="": model_base.ModelType.V_PREDICTION
        elif meta.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError(f"prediction type {meta['prediction_type']!r} in the checkpoint metadata is not supported; "
                             f"expected epsilon or v_prediction")
    else:
        raise ValueError(f"unknown model family {family!r} in the checkpoint metadata; expected flux or sd")
    channels = int(sd["img_in.weight"].shape[1]) // 4 if family == "flux" else int(sd["input_blocks.0.0.weight"].shape[1])
    config.latent_format = latent_format(channels, meta.get("scaling_factor", 1.0), meta.get("shift_factor", 0.0))
    config.set_inference_dtype(dtype, None)
    model = config.get_model(sd, "")
    keys = set(sd)
    model.load_model_weights(dict(sd), "")  # ComfyUI pops the keys it loads
    missing = [k for k in model.diffusion_model.state_dict() if k not in keys]
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} of the model's weights (first: {missing[0]})")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


class _Width:
    """A channel multiplier that yields an exact width: ComfyUI's VAE and U-Net compute each level's width as
    ch·mult (or mult·ch), which cannot express widths that are not integer multiples of the first (24, 48, 64;
    tiny-sd's 64, 96, 128)."""

    def __init__(self, width: int):
        self.width = int(width)

    def __rmul__(self, ch: int) -> int:
        return self.width

    __mul__ = __rmul__


@contextmanager
def _vae_layers(groups: int, mid_attention: bool) -> Iterator[dict]:
    """ComfyUI's VAE building blocks with `groups` group-norm groups and, without a mid-block attention in the
    checkpoint, an identity in its place; restored when the block ends."""
    from comfy.ldm.modules.diffusionmodules import model as ldm

    old_groups, old_attn = ldm.Normalize.__defaults__, ldm.make_attn
    ldm.Normalize.__defaults__ = (groups,)  # the blocks bind `Normalize` itself as a default argument
    extra: dict = {}
    if not mid_attention:
        ldm.make_attn = lambda *a, **k: torch.nn.Identity()
        extra["attn_op"] = lambda *a, **k: torch.nn.Identity()
    try:
        yield extra
    finally:
        ldm.Normalize.__defaults__, ldm.make_attn = old_groups, old_attn


def build_vae(sd: Tensors, meta: dict):
    """A `comfy.sd.VAE` around ComfyUI's `AutoencoderKL` for an ldm-layout VAE state dict (no prefix)."""
    import comfy.sd

    levels = _count(sd, "encoder.down.")
    widths = [int(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in range(levels)]
    z = int(sd["decoder.conv_in.weight"].shape[1])
    ddconfig = {"double_z": True, "z_channels": z, "resolution": 256, "in_channels": int(sd["encoder.conv_in.weight"].shape[1]),
                "out_ch": int(sd["decoder.conv_out.weight"].shape[0]), "ch": widths[0],
                "ch_mult": [_Width(w) for w in widths], "num_res_blocks": _count(sd, "encoder.down.0.block."),
                "attn_resolutions": [], "dropout": 0.0}
    mid = "encoder.mid.attn_1.q.weight" in sd
    with _vae_layers(int(meta.get("vae_groups", 32)), mid) as extra:
        ddconfig.update(extra)
        vae = comfy.sd.VAE(sd=sd, config={"params": {"ddconfig": ddconfig, "embed_dim": int(sd["post_quant_conv.weight"].shape[1])}},
                           dtype=torch.float32)
    factor = 2 ** (levels - 1)
    vae.latent_channels = z
    vae.downscale_ratio = vae.upscale_ratio = factor
    missing = [k for k in vae.first_stage_model.state_dict() if k not in sd]
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} of the VAE's weights (first: {missing[0]})")
    return vae


def load_state_dict(sd: Tensors, meta: dict):
    """(ModelPatcher, VAE) from a full converted checkpoint (`hiresflow.comfy.convert.embedded_checkpoint`)."""
    family = meta.get("family")
    if family not in VAE_PREFIX:
        raise ValueError(f"unknown model family {family!r} in the checkpoint metadata; expected flux or sd")
    return build_model(_strip(sd, MODEL_PREFIX), meta), build_vae(_strip(sd, VAE_PREFIX[family]), meta)


def load_embedded(name: str):
    """(ModelPatcher, text encoder, VAE, metadata) of an embedded model, converted in memory."""
    from .convert import embedded_checkpoint
    from .text import EmbeddedTextEncoder

    sd, meta = embedded_checkpoint(name)
    patcher, vae = load_state_dict(sd, meta)
    # the native latent side, which ComfyUI's model config cannot tell (the U-Net patch's RAU-Net table reads it)
    patcher.model.model_config.hiresflow_native_latent = int(meta["native_size"]) // int(vae.downscale_ratio)
    return patcher, EmbeddedTextEncoder(name), vae, meta
