"""U-Net role maps: found by block type and position on SD1.5-, SDXL- and tiny-sd-v1-shaped U-Nets; one-line error
for anything else. The SD1.5 and SDXL maps must name exactly the modules of the official codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from hiresflow.models.loading import EMBEDDED, EMBEDDED_DIR, load_model, read_model_card
from hiresflow.models.unet_roles import unet_roles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "patches"))
from unet_builders import SD15_UNET  # noqa: E402

SDXL_UNET = dict(
    block_out_channels=(8, 16, 32), layers_per_block=2, norm_num_groups=8, sample_size=16,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 2), attention_head_dim=(2, 2, 4), cross_attention_dim=16,
    use_linear_projection=True,
)


def _unet(**cfg):
    torch.manual_seed(0)
    cfg.setdefault("cross_attention_dim", 16)
    return UNet2DConditionModel(**cfg)


def _names(unet):
    return {id(m): n for n, m in unet.named_modules()}


def test_sd15_layout_names_the_official_modules():
    u = _unet(**SD15_UNET)
    r, n = unet_roles(u), _names(u)
    assert r.layout == "sd15"
    assert n[id(r.conv_down)] == "down_blocks.0.downsamplers.0.conv"  # HiDiffusion down_module_key
    assert n[id(r.pool_after)] == "down_blocks.1.attentions.0"  # pooled after the first pair of down_blocks.1
    assert n[id(r.restore_after)] == "up_blocks.2.attentions.1"  # bicubic after pair i == 1 of up_blocks.2
    assert [n[id(t)] for t in r.window_transformers()] == [
        "down_blocks.0.attentions.0", "down_blocks.0.attentions.1",
        "up_blocks.3.attentions.0", "up_blocks.3.attentions.1", "up_blocks.3.attentions.2"]
    assert [(n[id(m)], lvl) for m, lvl in r.upsampler_targets()] == [
        ("up_blocks.0.upsamplers.0", 2), ("up_blocks.1.upsamplers.0", 1), ("up_blocks.2.upsamplers.0", 0)]
    assert [name for name, _ in r.dilated_convs()] == [  # FreeScale's convs in SD 1.5
        "down_blocks.2.downsamplers.0.conv", "down_blocks.3.resnets.0.conv1", "down_blocks.3.resnets.0.conv2",
        "down_blocks.3.resnets.1.conv1", "down_blocks.3.resnets.1.conv2", "mid_block.resnets.0.conv1",
        "mid_block.resnets.0.conv2", "mid_block.resnets.1.conv1", "mid_block.resnets.1.conv2"]


def test_sdxl_layout_names_the_official_modules():
    u = _unet(**SDXL_UNET)
    r, n = unet_roles(u), _names(u)
    assert r.layout == "sdxl"
    assert n[id(r.conv_down)] == "down_blocks.1.downsamplers.0.conv"
    assert n[id(r.pool_after)] == "down_blocks.1.attentions.0"
    assert n[id(r.restore_after)] == "up_blocks.1.attentions.1"
    assert [n[id(t)] for t in r.window_transformers()] == [
        "down_blocks.1.attentions.0", "down_blocks.1.attentions.1",
        "up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2"]
    assert sum(len(t.transformer_blocks) for t in r.window_transformers()) == 10  # both layers, as the official keys
    assert [name for name, _ in r.dilated_convs()] == [  # FreeScale's nine convs
        "down_blocks.1.downsamplers.0.conv", "down_blocks.2.resnets.0.conv1", "down_blocks.2.resnets.0.conv2",
        "down_blocks.2.resnets.1.conv1", "down_blocks.2.resnets.1.conv2", "mid_block.resnets.0.conv1",
        "mid_block.resnets.0.conv2", "mid_block.resnets.1.conv1", "mid_block.resnets.1.conv2"]
    assert r.widths == (32, 16, 8)


def _role_names(unet) -> dict:
    r, n = unet_roles(unet), _names(unet)
    return {"layout": r.layout, "levels": r.levels, "conv_down": n[id(r.conv_down)], "pool_after": n[id(r.pool_after)],
            "restore_after": n[id(r.restore_after)], "window": [n[id(t)] for t in r.window_transformers()],
            "upsamplers": [(n[id(m)], lvl) for m, lvl in r.upsampler_targets()],
            "dilated": [name for name, _ in r.dilated_convs()],
            "all_transformers": [n[id(t)] for t in r.all_transformers()]}


def test_embedded_tiny_sd_is_v3_on_v1s_layout():
    """The default tiny-sd is v3 (better than v1 at native size): v1's U-Net layout warm-started into v-prediction
    on a zero-terminal-SNR schedule; v1 stays loadable and shares v3's VAE and text encoder files."""
    assert EMBEDDED["tiny-sd"] == EMBEDDED["tiny-sd-v3"]
    v3, v1 = EMBEDDED_DIR / EMBEDDED["tiny-sd"], EMBEDDED_DIR / EMBEDDED["tiny-sd-v1"]
    assert read_model_card(v3)["version"] == 3 and read_model_card(v3)["init_from"] == "tiny-sd-v1"
    layout = [{k: v for k, v in json.loads((f / "unet" / "config.json").read_text()).items() if not k.startswith("_")}
              for f in (v3, v1)]
    assert layout[0] == layout[1]
    sched = json.loads((v3 / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction" and sched["rescale_betas_zero_snr"] is True
    assert read_model_card(v1)["components_from"] == "tiny-sd-v3" and not (v1 / "vae").exists()


def test_embedded_tiny_sd_v1_three_levels():
    model = load_model("tiny-sd-v1", device="cpu")
    r, n = model.unet_roles, _names(model.unet)
    assert r.layout == "sd15" and r.levels == 3
    assert n[id(r.conv_down)] == "down_blocks.0.downsamplers.0.conv"
    assert n[id(r.pool_after)] == "down_blocks.1.attentions.0"
    assert n[id(r.restore_after)] == "up_blocks.1.attentions.0"  # one layer per block: the last pooled skip is pair 0
    assert [n[id(t)] for t in r.window_transformers()] == ["down_blocks.0.attentions.0", "up_blocks.2.attentions.0",
                                                          "up_blocks.2.attentions.1"]
    assert len(r.all_transformers()) == 2 + 1 + 4


def test_random_tiny_two_level_unets(tiny_sd, tiny_sdxl):
    sd, xl = unet_roles(tiny_sd.unet), unet_roles(tiny_sdxl.unet)
    assert sd.layout == "sd15" and type(sd.pool_after).__name__ == "ResnetBlock2D"  # a DownBlock2D is pooled
    assert xl.layout == "sdxl" and xl.conv_down is None  # level 1 is the deepest: pool/bicubic only


@pytest.mark.parametrize("down,up", [
    (("DownBlock2D", "DownBlock2D"), ("UpBlock2D", "UpBlock2D")),  # no attention at all
    (("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
])
def test_unknown_layout_is_a_one_line_error(down, up):
    u = _unet(block_out_channels=(8, 16, 32)[:len(down)], layers_per_block=1, norm_num_groups=8,
              down_block_types=down, up_block_types=up)
    with pytest.raises(ValueError, match="no U-Net role map fits this U-Net") as err:
        unet_roles(u)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no U-Net role map"):
        unet_roles(torch.nn.Linear(2, 2))
