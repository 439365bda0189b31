"""FLUX.1-dev architecture (random weights) at 2048² and 4096²: HiFlow vs direct vs I-Max, s/img and peak GPU memory,
plain, with step caching (first-block:0.08 on the high-resolution stages; direct: every stage) and with offloading
(the memory plan's VAE tiling + block-level group offloading). Steps are cut to `--steps` per stage so that the
whole grid fits in a few minutes on one H100; latency per image scales with the step count.

    bash benchmarks/gpu/run.sh                       # the GPU run: JSON + table under benchmarks/results/gpu/
    python benchmarks/gpu/bench.py --config cpu      # plumbing check on a CPU (random-tiny-flux, 128², 2 steps)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from hiresflow.atomic import write_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = {
    "gpu": {"sizes": [2048, 4096], "steps": 8, "device": "cuda", "dtype": "bfloat16"},
    "cpu": {"sizes": [128], "steps": 2, "device": "cpu", "dtype": "float32"},
}
RECIPES = ("direct", "hiflow", "imax")
VARIANTS = ("plain", "cache", "offload")


def recipe_params(recipe: str, steps: int) -> dict:
    if recipe == "hiflow":
        return {"base_steps": steps, "stage_steps": (steps, steps)}
    if recipe == "imax":
        return {"steps": steps, "hires_steps": steps}
    return {"steps": steps}


def build(config: str, device: str, dtype: torch.dtype):
    if config == "cpu":
        from hiresflow.models.loading import load_model

        return load_model("random-tiny-flux", device=device)
    from flux_dev_latency import build as build_dev

    return build_dev("dev", device, dtype)


def run(config: str, recipes: list[str], variants: list[str]) -> dict:
    from hiresflow.caching import parse_cache
    from hiresflow.memory_plan import Mechanisms, apply_mechanisms
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    cfg = CONFIGS[config]
    dev, dtype = cfg["device"], getattr(torch, cfg["dtype"])
    cuda = dev.startswith("cuda")
    rows = []
    for variant in variants:
        if variant == "offload" and not cuda:
            rows.append({"variant": variant, "skipped": "offloading needs a GPU"})
            continue
        model = build(config, dev, dtype)
        if variant == "offload":
            apply_mechanisms(model, Mechanisms(vae_tiling=True, offload="group-block"), device=dev)
        for size in cfg["sizes"]:
            native = model.geometry.native[0]
            for recipe in recipes:
                plan = build_plan(recipe, model, size=(size, size), **recipe_params(recipe, cfg["steps"]))
                cache = None
                if variant == "cache":
                    cache = parse_cache("first-block:0.08" + ("@all" if len(plan.stages) == 1 else ""))
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                res = run_plan(model, plan, "a red sun setting over snowy mountains by a lake", seed=3407,
                               cache=cache)
                if cuda:
                    torch.cuda.synchronize()
                row = {"variant": variant, "recipe": recipe, "size": size, "native": native,
                       "steps_per_stage": cfg["steps"], "seconds": round(time.perf_counter() - t0, 2),
                       "stages": [round(st.seconds, 2) for st in res.stages],
                       "cache": [st.extra.get("cache") for st in res.stages if st.extra.get("cache")]}
                if cuda:
                    row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu")
    return {"config": config, "device": device, "dtype": cfg["dtype"], "torch": torch.__version__, "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['device']}, {result['dtype']}, {result['config']} config", "",
             "| variant | recipe | size | s/img | peak GiB | stages (s) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['variant']} | – | – | skipped: {r['skipped']} | | |")
            continue
        lines.append(f"| {r['variant']} | {r['recipe']} | {r['size']}² | {r['seconds']} | {r.get('peak_gib', '–')} | "
                     f"{' + '.join(map(str, r['stages']))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=list(CONFIGS), default="gpu")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = ap.parse_args()
    result = run(args.config, args.recipes.split(","), args.variants.split(","))
    text = table(result)
    write_result(args.out, result, text)
    print(text)


if __name__ == "__main__":
    main()
