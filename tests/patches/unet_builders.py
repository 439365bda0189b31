"""Tiny random U-Net pipelines with the real families' block layouts, built offline for the U-Net patch tests.

`sd15_layout_pipeline()`: a `StableDiffusionPipeline` whose UNet has SD 1.5's exact module tree (CrossAttnDown ×3 +
Down, mid, Up + CrossAttnUp ×3, two layers per block, one transformer layer, channel pattern c, 2c, 4c, 4c so
that the resnets with a shortcut conv are the same) but 8–32 channels — small enough for whole sampling runs.
"""

from __future__ import annotations

from hiresflow.models.tiny import tiny_pipeline

SD15_UNET = dict(
    block_out_channels=(8, 16, 32, 32),  # SD 1.5: (320, 640, 1280, 1280)
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=2,
    norm_num_groups=8,
    sample_size=8,
)


def sd15_layout_pipeline(seed: int = 0):
    pipe = tiny_pipeline("sd", seed=seed, unet=SD15_UNET)
    pipe.set_progress_bar_config(disable=True)
    return pipe
