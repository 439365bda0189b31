"""Latency of HiFlow and `direct` on the full FLUX.1-dev architecture with random weights (GPU measurement).

Latency does not depend on the weights, so the 12B-parameter transformer and the VAE are built from FLUX.1-dev's
published configs with random initialisation; the text encoders are one-layer stand-ins of the right widths
(CLIP 768, T5 4096, 512 tokens), whose cost FLUX spends once per image anyway.

    python benchmarks/flux_dev_latency.py --device cuda --sizes 2048,4096 --out benchmarks/results/flux_dev_latency.json
    python benchmarks/flux_dev_latency.py --config tiny --device cpu --sizes 128      # plumbing check on a CPU

HiFlow's published latency (paper Table 2; GPU not stated): 56 s at 2048², 379 s at 4096².
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

FLUX_DEV_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                            guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_DEV_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                    layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=1024,
                    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)


def build(config: str, device: str, dtype: torch.dtype):
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from hiresflow.models.loading import wrap_pipeline
    from hiresflow.models.tiny import tiny_flux_pipeline

    if config == "tiny":
        pipe = tiny_flux_pipeline()
        native = 64
    else:
        pipe = tiny_flux_pipeline(text_encoder={"hidden_size": 768, "num_hidden_layers": 1, "intermediate_size": 768},
                                  text_encoder_2={"d_model": 4096, "num_layers": 1, "d_ff": 1024, "num_heads": 8,
                                                  "d_kv": 64},
                                  tokenizer_2={"model_max_length": 512})
        prev = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                pipe.transformer = FluxTransformer2DModel(**FLUX_DEV_TRANSFORMER).eval()
                pipe.vae = AutoencoderKL(**FLUX_DEV_VAE).eval()
        finally:
            torch.set_default_dtype(prev)
        native = 1024
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return wrap_pipeline(pipe, "flux-dev-architecture", native=native)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["dev", "tiny"], default="dev")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--sizes", default="2048,4096")
    ap.add_argument("--recipes", default="direct,hiflow")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    dtype = getattr(torch, args.dtype)
    model = build(args.config, args.device, dtype)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for recipe in args.recipes.split(","):
            plan = build_plan(recipe, model, size=(size, size))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            res = run_plan(model, plan, "a red sun setting over snowy mountains by a lake", seed=3407, progress=True)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            row = {"recipe": recipe, "size": size, "seconds": round(time.perf_counter() - t0, 2),
                   "stages": [{"size": list(st.size), "seconds": round(st.seconds, 2),
                               "model_seconds": round(st.timings.model_total, 2),
                               "guide_seconds": round(st.timings.guides_total, 2)} for st in res.stages]}
            if args.device.startswith("cuda"):
                row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            rows.append(row)
            print(json.dumps(row))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    result = {"device": device, "dtype": args.dtype, "config": args.config, "torch": torch.__version__, "runs": rows,
              "published_hiflow_seconds": {"2048": 56, "4096": 379}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
