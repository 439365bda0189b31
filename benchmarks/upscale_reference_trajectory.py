"""Upscaling a user's image with HiFlow: the reference trajectory by re-noising vs by inversion, against ground truth.

N reference-world views are rendered at the native size (the "user's image") and at 2× (the ground truth) by
`hiresflow.world`, upscaled with `hiresflow.upscale_image(method="hiflow", scale=2)` once with
reference="renoise" and once with reference="inversion" (same seed, same recipe defaults), and compared with the
ground truth: PSNR and SSIM at 2×, seconds per image. Bicubic and Lanczos enlargements of the same native image
are listed as the reference point. KID is left out: with 8 images per arm its estimate is noise.

    .venv/bin/python benchmarks/upscale_reference_trajectory.py --n 8 --out benchmarks/results/upscale_reference_trajectory
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import hiresflow
from hiresflow.eval.image_metrics import psnr, ssim
from hiresflow.models.loading import load_model
from hiresflow.world import sample_view
from hiresflow.world.render import render


def views(n: int, native: int, seed: int):
    """(native image, ground truth at 2×, prompt) for n sampled views (full scenes and close-ups)."""
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img, prompt, scene, view = sample_view(g, native)
        gt = render(scene, 2 * native, 2 * native, view["seed"], window=view["window"])
        out.append((img, gt, prompt))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/upscale_reference_trajectory"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    native = model.geometry.native[0]
    data = views(args.n, native, args.seed)
    arms = {"renoise": [], "inversion": [], "bicubic": [], "lanczos": []}
    for k, (img, gt, prompt) in enumerate(data):
        gt_t = torch.from_numpy(gt).permute(2, 0, 1).float()[None] / 255
        pil = Image.fromarray(img)
        for name, resample in (("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)):
            t0 = time.perf_counter()
            up = pil.resize((2 * native, 2 * native), resample)
            sec = time.perf_counter() - t0
            up_t = torch.from_numpy(np.array(up)).permute(2, 0, 1).float()[None] / 255
            arms[name].append({"view": k, "psnr": psnr(up_t, gt_t), "ssim": ssim(up_t, gt_t), "seconds": sec})
        for ref in ("renoise", "inversion"):
            t0 = time.perf_counter()
            out = hiresflow.upscale_image(model, pil, prompt, method="hiflow", scale=2, reference=ref,
                                          seed=args.seed + k, progress=False)
            sec = time.perf_counter() - t0
            up_t = torch.from_numpy(np.array(out.images[0])).permute(2, 0, 1).float()[None] / 255
            calls = len(out.result.stages[0].timings.model)
            arms[ref].append({"view": k, "psnr": psnr(up_t, gt_t), "ssim": ssim(up_t, gt_t), "seconds": sec,
                              "reference_calls": calls})
            print(f"view {k} {ref}: PSNR {arms[ref][-1]['psnr']:.2f} SSIM {arms[ref][-1]['ssim']:.4f} "
                  f"{sec:.1f} s", flush=True)

    def summary(rows):
        return {m: {"mean": statistics.fmean(r[m] for r in rows),
                    "stdev": statistics.stdev(r[m] for r in rows) if len(rows) > 1 else 0.0}
                for m in ("psnr", "ssim", "seconds")}

    wins = sum(a["psnr"] > b["psnr"] for a, b in zip(arms["inversion"], arms["renoise"]))
    result = {"model": args.model, "n": args.n, "native": native, "scale": 2, "method": "hiflow (recipe defaults)",
              "seed": args.seed, "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "summary": {k: summary(v) for k, v in arms.items()},
              "inversion_beats_renoise_psnr": f"{wins}/{args.n}", "per_view": arms}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = render_markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)


def tables(data: dict) -> dict[str, str]:
    """The table of ``upscale_reference_trajectory.json`` (``arms``): mean ± standard deviation over the views per
    arm, and the model calls of the reference trajectory (HiFlow arms)."""
    lines = ["| arm | PSNR (dB) vs ground truth | SSIM | seconds / image | reference model calls |",
             "|---|---|---|---|---|"]
    for k, s in data["summary"].items():
        calls = [r["reference_calls"] for r in data["per_view"][k] if r.get("reference_calls") is not None]
        sec = s["seconds"]["mean"]
        lines.append(f"| {k} | {s['psnr']['mean']:.2f} ± {s['psnr']['stdev']:.2f} | "
                     f"{s['ssim']['mean']:.4f} ± {s['ssim']['stdev']:.4f} | "
                     f"{'< 0.01' if sec < 0.01 else f'{sec:.1f}'} | "
                     f"{f'{statistics.fmean(calls):g}' if calls else '–'} |")
    return {"arms": "\n".join(lines)}


def render_markdown(data: dict) -> str:
    """``upscale_reference_trajectory.md`` from the JSON alone."""
    wins, n = data["inversion_beats_renoise_psnr"].split("/")
    return "\n".join([
        f"# Upscale reference trajectory: re-noise vs inversion ({data['model']}, {data['native']} → "
        f"{data['scale'] * data['native']} px, {data['n']} reference-world views)", "", tables(data)["arms"], "",
        f"Inversion beats re-noising on PSNR in {wins} of {n} views. Mean ± standard deviation over views; "
        f"{data['threads']} torch threads, torch {data['torch']}; "
        f"`python benchmarks/upscale_reference_trajectory.py --n {data['n']}`."]) + "\n"


if __name__ == "__main__":
    main()
