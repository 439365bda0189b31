"""Speed of windowed attention vs global attention per model call, measured inside one run.

    python benchmarks/windowed_attention_speed.py --model tiny-flux --scales 4 8 --threads 2 \
        --out benchmarks/results/windowed_attention_speed.json

Each measurement is one generation whose high-resolution stage switches to windowed attention half-way
(`windowed_attention=0.5`), so the global and the windowed steps run in the same process under the same machine
load; the per-step model times of the two halves are compared on steps of matching parity (shifted
patchification pads the model input on even steps only). `imax` keeps text duplication on (its default: the text
keys are k_h·k_w times longer), `hiflow` has none. The first step of each half is left out (warm-up, window
set-up). Quality is not measured here; see the bench specs tiny-flux-dit-ablation*.yaml.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

PROMPT = "a red sun setting over snowy mountains by a lake with three pine trees"


def measure(model, recipe: str, scale: int, hires_steps: int, seed: int = 0) -> dict:
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    params = dict(windowed_attention=0.5)
    if recipe == "imax":
        params.update(steps=10, hires_steps=hires_steps)
    plan = build_plan(recipe, model, scale=scale, **params)
    res = run_plan(model, plan, PROMPT, seed=seed)
    last = res.stages[-1]
    steps = last.timings.model
    n = len(steps)
    first_windowed = next(i for i in range(n) if i >= 0.5 * n)  # as WindowedAttentionPatch.active decides
    glob = [i for i in range(1, first_windowed)]
    win = [i for i in range(first_windowed + 1, n)]

    def parity_mean(idx: list[int]) -> float:  # mean over both parities of the per-parity mean step time
        return statistics.mean(statistics.mean(steps[i] for i in idx if i % 2 == p) for p in (0, 1))

    w, h = last.size
    tokens = (h // model.geometry.vae_scale // model.geometry.patch) * (w // model.geometry.vae_scale // model.geometry.patch)
    g, wdw = parity_mean(glob), parity_mean(win)
    return {"recipe": recipe, "scale": scale, "size": [w, h], "image_tokens": tokens, "steps": n,
            "global_s_per_step": g, "windowed_s_per_step": wdw, "speedup": g / wdw, "global_steps": glob, "windowed_steps": win,
            "run_seconds": res.seconds}


def tables(data: dict) -> dict[str, str]:
    """The speed table (``speed``) of ``windowed_attention_speed.json``: model seconds per step, global vs windowed
    (`imax` rows name their text duplication, k_h·k_w = scale²)."""
    lines = ["| recipe | size (image tokens) | global s/step | windowed s/step | speed-up |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        w, h = r["size"]
        name = f"imax (text ×{r['scale'] ** 2})" if r["recipe"] == "imax" else r["recipe"]
        lines.append(f"| {name} | {w}² ({r['image_tokens']}) | {r['global_s_per_step']:.2f} | "
                     f"{r['windowed_s_per_step']:.2f} | {r['speedup']:.2f}× |")
    return {"speed": "\n".join(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--recipes", nargs="+", default=["hiflow", "imax"])
    ap.add_argument("--hires-steps", type=int, default=10, help="imax high-resolution steps (half windowed)")
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
        for recipe in args.recipes:
            t0 = time.perf_counter()
            r = measure(model, recipe, scale, args.hires_steps)
            rows.append(r)
            print(f"{recipe:7s} {scale}x {r['size'][0]}² ({r['image_tokens']} image tokens): global "
                  f"{r['global_s_per_step']:.3f} s/step, windowed {r['windowed_s_per_step']:.3f} s/step, "
                  f"speed-up {r['speedup']:.2f}× ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = {"model": args.model, "machine": machine_info("cpu"), "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
