"""Checkpoint converters: the embedded diffusers models in ComfyUI's single-file layouts (key renaming only).

ComfyUI reads FLUX in Black Forest Labs' original layout and SD 1.x U-Nets and VAEs in the original
(CompVis "ldm") layout. These functions rename diffusers' keys to those layouts; no tensor changes value except
where the two layouts differ in form:

- FLUX (diffusers `FluxTransformer2DModel` → BFL `Flux`): q, k, v of each joint block are concatenated into one
  `qkv` linear (image and text streams separately); each single block's q, k, v and MLP input into one `linear1`;
  the final AdaLN's linear has its two halves swapped (diffusers' `AdaLayerNormContinuous` emits (scale, shift),
  BFL's `LastLayer` (shift, scale)). Layout facts from diffusers' own converter
  (`diffusers/loaders/single_file_utils.py`, `convert_flux_transformer_checkpoint_to_diffusers`), run backwards.
- VAE (diffusers `AutoencoderKL` → ldm `AutoencoderKL`): blocks renamed (`down_blocks.i.resnets.j` →
  `down.i.block.j`, decoder levels reversed), a mid-block attention's linear q/k/v/out become 1×1 convolutions
  (`convert_ldm_vae_checkpoint` in the same diffusers file, backwards).
- SD U-Net (diffusers `UNet2DConditionModel` → ldm `UNetModel`): `convert_ldm_unet_checkpoint`, backwards:
  `input_blocks`, `middle_block`, `output_blocks` numbered as the original code numbers them.

A converted checkpoint is one safetensors file in ComfyUI's full-checkpoint layout (`model.diffusion_model.` +
the VAE under `vae.` for FLUX, `first_stage_model.` for SD) with `hiresflow` metadata holding what tensors do not
show: attention heads, RoPE axes and base, group-norm groups, latent scale and shift, native size, guidance, and
the embedded model whose text encoders go with it (`hiresflow.comfy.loader` reads it back).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["flux_to_comfy", "vae_to_comfy", "unet_to_comfy", "embedded_checkpoint", "save_checkpoint",
           "read_checkpoint", "METADATA_KEY", "MODEL_PREFIX", "VAE_PREFIX"]

METADATA_KEY = "hiresflow"
MODEL_PREFIX = "model.diffusion_model."
VAE_PREFIX = {"flux": "vae.", "sd": "first_stage_model."}
EMBEDDED_KINDS = {"tiny-flux": "flux", "tiny-sd": "sd", "tiny-flux-v1": "flux", "tiny-sd-v1": "sd", "tiny-sd-v3": "sd"}

Tensors = dict[str, torch.Tensor]


def _take(sd: Tensors, key: str, used: set[str]) -> torch.Tensor:
    used.add(key)
    return sd[key]


def _linear(out: Tensors, new: str, sd: Tensors, old: str, used: set[str]) -> None:
    out[f"{new}.weight"] = _take(sd, f"{old}.weight", used)
    if f"{old}.bias" in sd:
        out[f"{new}.bias"] = _take(sd, f"{old}.bias", used)


def _cat_linear(out: Tensors, new: str, sd: Tensors, olds: list[str], used: set[str]) -> None:
    out[f"{new}.weight"] = torch.cat([_take(sd, f"{o}.weight", used) for o in olds])
    if all(f"{o}.bias" in sd for o in olds):
        out[f"{new}.bias"] = torch.cat([_take(sd, f"{o}.bias", used) for o in olds])


def _check_all_used(sd: Tensors, used: set[str], what: str) -> None:
    left = sorted(set(sd) - used)
    if left:
        raise ValueError(f"{what}: {len(left)} keys have no ComfyUI counterpart (first: {left[0]}); "
                         f"this converter covers the embedded models' layouts only")


def _blocks(sd: Tensors, prefix: str) -> int:
    ids = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def flux_to_comfy(sd: Tensors) -> Tensors:
    """A diffusers FLUX.1 transformer state dict in BFL's layout (ComfyUI's `comfy.ldm.flux.model.Flux` keys)."""
    out: Tensors = {}
    used: set[str] = set()
    _linear(out, "img_in", sd, "x_embedder", used)
    _linear(out, "txt_in", sd, "context_embedder", used)
    for new, old in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                     ("guidance_in", "guidance_embedder")):
        if f"time_text_embed.{old}.linear_1.weight" in sd:
            _linear(out, f"{new}.in_layer", sd, f"time_text_embed.{old}.linear_1", used)
            _linear(out, f"{new}.out_layer", sd, f"time_text_embed.{old}.linear_2", used)
    for i in range(_blocks(sd, "transformer_blocks.")):
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        _linear(out, f"{b}.img_mod.lin", sd, f"{d}.norm1.linear", used)
        _linear(out, f"{b}.txt_mod.lin", sd, f"{d}.norm1_context.linear", used)
        _cat_linear(out, f"{b}.img_attn.qkv", sd, [f"{d}.attn.to_{c}" for c in "qkv"], used)
        _cat_linear(out, f"{b}.txt_attn.qkv", sd, [f"{d}.attn.add_{c}_proj" for c in "qkv"], used)
        out[f"{b}.img_attn.norm.query_norm.scale"] = _take(sd, f"{d}.attn.norm_q.weight", used)
        out[f"{b}.img_attn.norm.key_norm.scale"] = _take(sd, f"{d}.attn.norm_k.weight", used)
        out[f"{b}.txt_attn.norm.query_norm.scale"] = _take(sd, f"{d}.attn.norm_added_q.weight", used)
        out[f"{b}.txt_attn.norm.key_norm.scale"] = _take(sd, f"{d}.attn.norm_added_k.weight", used)
        _linear(out, f"{b}.img_attn.proj", sd, f"{d}.attn.to_out.0", used)
        _linear(out, f"{b}.txt_attn.proj", sd, f"{d}.attn.to_add_out", used)
        _linear(out, f"{b}.img_mlp.0", sd, f"{d}.ff.net.0.proj", used)
        _linear(out, f"{b}.img_mlp.2", sd, f"{d}.ff.net.2", used)
        _linear(out, f"{b}.txt_mlp.0", sd, f"{d}.ff_context.net.0.proj", used)
        _linear(out, f"{b}.txt_mlp.2", sd, f"{d}.ff_context.net.2", used)
    for i in range(_blocks(sd, "single_transformer_blocks.")):
        d, b = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        _cat_linear(out, f"{b}.linear1", sd, [f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v",
                                              f"{d}.proj_mlp"], used)
        _linear(out, f"{b}.linear2", sd, f"{d}.proj_out", used)
        out[f"{b}.norm.query_norm.scale"] = _take(sd, f"{d}.attn.norm_q.weight", used)
        out[f"{b}.norm.key_norm.scale"] = _take(sd, f"{d}.attn.norm_k.weight", used)
        _linear(out, f"{b}.modulation.lin", sd, f"{d}.norm.linear", used)
    _linear(out, "final_layer.linear", sd, "proj_out", used)
    for part in ("weight", "bias"):
        scale, shift = _take(sd, f"norm_out.linear.{part}", used).chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{part}"] = torch.cat([shift, scale])
    _check_all_used(sd, used, "FLUX transformer")
    return out


def _resnet(out: Tensors, new: str, sd: Tensors, old: str, used: set[str]) -> None:
    for name in ("norm1", "conv1", "norm2", "conv2"):
        _linear(out, f"{new}.{name}", sd, f"{old}.{name}", used)
    if f"{old}.conv_shortcut.weight" in sd:
        _linear(out, f"{new}.nin_shortcut", sd, f"{old}.conv_shortcut", used)


def _vae_mid(out: Tensors, new: str, sd: Tensors, old: str, used: set[str]) -> None:
    _resnet(out, f"{new}.block_1", sd, f"{old}.resnets.0", used)
    _resnet(out, f"{new}.block_2", sd, f"{old}.resnets.1", used)
    if f"{old}.attentions.0.to_q.weight" in sd:
        a = f"{old}.attentions.0"
        _linear(out, f"{new}.attn_1.norm", sd, f"{a}.group_norm", used)
        for n, o in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
            w = _take(sd, f"{a}.{o}.weight", used)
            out[f"{new}.attn_1.{n}.weight"] = w.reshape(*w.shape, 1, 1)
            out[f"{new}.attn_1.{n}.bias"] = _take(sd, f"{a}.{o}.bias", used)


def vae_to_comfy(sd: Tensors) -> Tensors:
    """A diffusers AutoencoderKL state dict in the ldm layout that ComfyUI's `AutoencoderKL` loads."""
    out: Tensors = {}
    used: set[str] = set()
    for side in ("encoder", "decoder"):
        _linear(out, f"{side}.conv_in", sd, f"{side}.conv_in", used)
        _linear(out, f"{side}.norm_out", sd, f"{side}.conv_norm_out", used)
        _linear(out, f"{side}.conv_out", sd, f"{side}.conv_out", used)
        _vae_mid(out, f"{side}.mid", sd, f"{side}.mid_block", used)
    for i in range(_blocks(sd, "encoder.down_blocks.")):
        for j in range(_blocks(sd, f"encoder.down_blocks.{i}.resnets.")):
            _resnet(out, f"encoder.down.{i}.block.{j}", sd, f"encoder.down_blocks.{i}.resnets.{j}", used)
        if f"encoder.down_blocks.{i}.downsamplers.0.conv.weight" in sd:
            _linear(out, f"encoder.down.{i}.downsample.conv", sd, f"encoder.down_blocks.{i}.downsamplers.0.conv",
                    used)
    n = _blocks(sd, "decoder.up_blocks.")
    for i in range(n):
        for j in range(_blocks(sd, f"decoder.up_blocks.{i}.resnets.")):
            _resnet(out, f"decoder.up.{n - 1 - i}.block.{j}", sd, f"decoder.up_blocks.{i}.resnets.{j}", used)
        if f"decoder.up_blocks.{i}.upsamplers.0.conv.weight" in sd:
            _linear(out, f"decoder.up.{n - 1 - i}.upsample.conv", sd, f"decoder.up_blocks.{i}.upsamplers.0.conv",
                    used)
    for q in ("quant_conv", "post_quant_conv"):
        if f"{q}.weight" in sd:
            _linear(out, q, sd, q, used)
    _check_all_used(sd, used, "VAE")
    return out


def _transformer2d(out: Tensors, new: str, sd: Tensors, old: str, used: set[str]) -> None:
    """A diffusers Transformer2DModel (SD 1.x: conv proj_in/out, one BasicTransformerBlock) → ldm SpatialTransformer."""
    _linear(out, f"{new}.norm", sd, f"{old}.norm", used)
    _linear(out, f"{new}.proj_in", sd, f"{old}.proj_in", used)
    _linear(out, f"{new}.proj_out", sd, f"{old}.proj_out", used)
    for t in range(_blocks(sd, f"{old}.transformer_blocks.")):
        o, n = f"{old}.transformer_blocks.{t}", f"{new}.transformer_blocks.{t}"
        for a in ("attn1", "attn2"):
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                _linear(out, f"{n}.{a}.{p}", sd, f"{o}.{a}.{p}", used)
        for norm in ("norm1", "norm2", "norm3"):
            _linear(out, f"{n}.{norm}", sd, f"{o}.{norm}", used)
        _linear(out, f"{n}.ff.net.0.proj", sd, f"{o}.ff.net.0.proj", used)
        _linear(out, f"{n}.ff.net.2", sd, f"{o}.ff.net.2", used)


def _unet_resnet(out: Tensors, new: str, sd: Tensors, old: str, used: set[str]) -> None:
    _linear(out, f"{new}.in_layers.0", sd, f"{old}.norm1", used)
    _linear(out, f"{new}.in_layers.2", sd, f"{old}.conv1", used)
    _linear(out, f"{new}.emb_layers.1", sd, f"{old}.time_emb_proj", used)
    _linear(out, f"{new}.out_layers.0", sd, f"{old}.norm2", used)
    _linear(out, f"{new}.out_layers.3", sd, f"{old}.conv2", used)
    if f"{old}.conv_shortcut.weight" in sd:
        _linear(out, f"{new}.skip_connection", sd, f"{old}.conv_shortcut", used)


def unet_to_comfy(sd: Tensors, layers_per_block: int) -> Tensors:
    """A diffusers SD 1.x-layout `UNet2DConditionModel` state dict in the ldm `UNetModel` layout (ComfyUI's keys).

    ldm numbering: input block 0 is conv_in; each level adds `layers_per_block` (resnet [+ attention]) blocks and,
    except the last level, one downsampler; output blocks hold `layers_per_block + 1` (resnet [+ attention])
    blocks per level, the level's upsampler sitting in its last block after the attention (index 2) or after the
    resnet (index 1)."""
    out: Tensors = {}
    used: set[str] = set()
    _linear(out, "time_embed.0", sd, "time_embedding.linear_1", used)
    _linear(out, "time_embed.2", sd, "time_embedding.linear_2", used)
    _linear(out, "input_blocks.0.0", sd, "conv_in", used)
    _linear(out, "out.0", sd, "conv_norm_out", used)
    _linear(out, "out.2", sd, "conv_out", used)
    levels = _blocks(sd, "down_blocks.")
    k = 1
    for i in range(levels):
        for j in range(layers_per_block):
            _unet_resnet(out, f"input_blocks.{k}.0", sd, f"down_blocks.{i}.resnets.{j}", used)
            if f"down_blocks.{i}.attentions.{j}.proj_in.weight" in sd:
                _transformer2d(out, f"input_blocks.{k}.1", sd, f"down_blocks.{i}.attentions.{j}", used)
            k += 1
        if f"down_blocks.{i}.downsamplers.0.conv.weight" in sd:
            _linear(out, f"input_blocks.{k}.0.op", sd, f"down_blocks.{i}.downsamplers.0.conv", used)
            k += 1
    _unet_resnet(out, "middle_block.0", sd, "mid_block.resnets.0", used)
    _transformer2d(out, "middle_block.1", sd, "mid_block.attentions.0", used)
    _unet_resnet(out, "middle_block.2", sd, "mid_block.resnets.1", used)
    k = 0
    for i in range(_blocks(sd, "up_blocks.")):
        for j in range(layers_per_block + 1):
            _unet_resnet(out, f"output_blocks.{k}.0", sd, f"up_blocks.{i}.resnets.{j}", used)
            has_attn = f"up_blocks.{i}.attentions.{j}.proj_in.weight" in sd
            if has_attn:
                _transformer2d(out, f"output_blocks.{k}.1", sd, f"up_blocks.{i}.attentions.{j}", used)
            if j == layers_per_block and f"up_blocks.{i}.upsamplers.0.conv.weight" in sd:
                _linear(out, f"output_blocks.{k}.{2 if has_attn else 1}.conv", sd,
                        f"up_blocks.{i}.upsamplers.0.conv", used)
            k += 1
    _check_all_used(sd, used, "U-Net")
    return out


def embedded_checkpoint(name: str) -> tuple[Tensors, dict]:
    """The embedded model `name` ("tiny-flux", "tiny-sd") as (state dict in ComfyUI's checkpoint layout, metadata),
    in float32."""
    from safetensors.torch import load_file as read_safetensors

    from ..models.loading import EMBEDDED, EMBEDDED_DIR, component_dir

    if name not in EMBEDDED_KINDS:
        raise ValueError(f"unknown embedded model {name!r}; use one of {', '.join(EMBEDDED_KINDS)}")
    folder = EMBEDDED_DIR / EMBEDDED[name]

    def load_file(path: str) -> Tensors:  # stored as fp16, run in float32 as the library runs them
        return {k: v.float() if v.is_floating_point() else v for k, v in read_safetensors(path).items()}

    card = json.loads((folder / "hiresflow.json").read_text())
    vae_dir = component_dir(folder, "vae")  # older versions share the default model's VAE
    vae_cfg = json.loads((vae_dir / "config.json").read_text())
    kind = EMBEDDED_KINDS[name]
    meta = {"family": kind, "embedded": name, "native_size": int(card["native_size"]),
            "guidance": float(card.get("guidance", 1.0)), "vae_groups": int(vae_cfg["norm_num_groups"]),
            "scaling_factor": float(vae_cfg["scaling_factor"]), "shift_factor": float(vae_cfg.get("shift_factor") or 0.0)}
    out: Tensors = {}
    if kind == "flux":
        cfg = json.loads((folder / "transformer" / "config.json").read_text())
        net = flux_to_comfy(load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors")))
        meta.update(heads=int(cfg["num_attention_heads"]), axes_dim=[int(a) for a in cfg["axes_dims_rope"]],
                    theta=10000, shift=json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
                    .get("shift", 1.0))
    else:
        cfg = json.loads((folder / "unet" / "config.json").read_text())
        net = unet_to_comfy(load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors")),
                            int(cfg["layers_per_block"]))
        heads = cfg.get("num_attention_heads") or cfg["attention_head_dim"]  # diffusers' SD 1.x naming quirk
        sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        meta.update(heads=int(heads), unet_groups=int(cfg["norm_num_groups"]),
                    layers_per_block=int(cfg["layers_per_block"]), beta_schedule=sched["beta_schedule"],
                    beta_start=float(sched["beta_start"]), beta_end=float(sched["beta_end"]),
                    prediction_type=sched.get("prediction_type", "epsilon"),
                    zero_terminal_snr=bool(sched.get("rescale_betas_zero_snr", False)),
                    timestep_spacing=sched.get("timestep_spacing", "leading"),
                    steps_offset=int(sched.get("steps_offset", 0)))
    out.update({MODEL_PREFIX + k: v.contiguous() for k, v in net.items()})
    vae = vae_to_comfy(load_file(str(vae_dir / "diffusion_pytorch_model.safetensors")))
    out.update({VAE_PREFIX[kind] + k: v.contiguous() for k, v in vae.items()})
    return out, meta


def save_checkpoint(name: str, path: str | Path) -> Path:
    """Write the embedded model `name` as one ComfyUI-layout safetensors checkpoint with its metadata."""
    from safetensors.torch import save_file

    sd, meta = embedded_checkpoint(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return path


def read_checkpoint(path: str | Path) -> tuple[Tensors, dict]:
    """(state dict, hiresflow metadata) of a checkpoint written by `save_checkpoint`; one-line error otherwise."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path.name} has no hiresflow metadata; load real checkpoints with ComfyUI's own loaders "
                         f"(Load Checkpoint, Load Diffusion Model)")
    return load_file(str(path)), json.loads(raw)
