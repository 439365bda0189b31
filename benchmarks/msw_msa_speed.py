"""HiDiffusion's speed claim on tiny-sd: model time per step with MSW-MSA vs global attention at the same size.

    python benchmarks/msw_msa_speed.py --model tiny-sd --scales 4 8 --threads 1 \
        --out benchmarks/results/msw_msa_speed.json

For each scale, one `hidiffusion` run with RAU-Net off (so both runs have the same feature sizes at every step)
and MSW-MSA on, and one with both off (`direct` at the target size, global self-attention everywhere), the same
`--steps` each, the same seed, one after the other in one process. Reported: the median model time per step (the
first step left out as warm-up) and the ratio; plus the full `hidiffusion` (RAU-Net on too), whose early steps
are cheaper again because RAU-Net shrinks the deep features. Quality is measured by the bench specs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

PROMPT = "a red sun setting over snowy mountains by a lake with three pine trees"


def per_step(model, recipe: str, scale: int, steps: int, **params) -> dict:
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    plan = build_plan(recipe, model, scale=scale, steps=steps, **params)
    res = run_plan(model, plan, PROMPT, seed=0)
    t = res.stages[-1].timings.model
    return {"median_s_per_step": statistics.median(t[1:]), "steps": len(t), "run_seconds": res.seconds,
            "per_step": t}


def tables(data: dict) -> dict[str, str]:
    """The speed table (``speed``) of ``msw_msa_speed.json``: median model seconds per step by attention."""
    steps = data["rows"][0]["steps"]
    lines = [f"| scale ({steps} steps) | top-level tokens | global attention s/step | MSW-MSA s/step | speed-up | "
             "MSW-MSA + RAU-Net s/step | speed-up |", "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        w, h = r["size"]
        tokens = f"{r['top_level_tokens']:,}".replace(",", " ")
        lines.append(f"| {r['scale']}× ({w}²) | {tokens} | {r['global_s_per_step']:.2f} | "
                     f"{r['msw_msa_s_per_step']:.2f} | {r['msw_msa_speedup']:.2f}× | "
                     f"{r['hidiffusion_s_per_step']:.2f} | {r['hidiffusion_speedup']:.2f}× |")
    return {"speed": "\n".join(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-sd")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hiresflow.eval.bench import machine_info
    from hiresflow.models.loading import load_model

    model = load_model(args.model, device="cpu")
    rows = []
    for scale in args.scales:
        glob = per_step(model, "direct", scale, args.steps)
        win = per_step(model, "hidiffusion", scale, args.steps, rau_net=False)
        full = per_step(model, "hidiffusion", scale, args.steps)
        h, w = model.geometry.native[0] * scale, model.geometry.native[1] * scale
        top = (h // model.geometry.vae_scale) * (w // model.geometry.vae_scale)
        row = {"scale": scale, "size": [w, h], "top_level_tokens": top, "steps": args.steps,
               "global_s_per_step": glob["median_s_per_step"], "msw_msa_s_per_step": win["median_s_per_step"],
               "hidiffusion_s_per_step": full["median_s_per_step"],
               "msw_msa_speedup": glob["median_s_per_step"] / win["median_s_per_step"],
               "hidiffusion_speedup": glob["median_s_per_step"] / full["median_s_per_step"],
               "runs": {"global": glob, "msw_msa": win, "hidiffusion": full}}
        rows.append(row)
        print(f"{scale}x {w}x{h} ({top} top-level tokens): global {row['global_s_per_step']:.3f} s/step, "
              f"MSW-MSA {row['msw_msa_s_per_step']:.3f} s/step ({row['msw_msa_speedup']:.2f}x), "
              f"HiDiffusion {row['hidiffusion_s_per_step']:.3f} s/step ({row['hidiffusion_speedup']:.2f}x)",
              flush=True)
    result = {"model": args.model, "machine": machine_info("cpu"), "threads": torch.get_num_threads(), "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
