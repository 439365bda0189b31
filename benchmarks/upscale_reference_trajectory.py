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
    lines = [f"# Upscale reference trajectory: re-noise vs inversion ({args.model}, {native} → {2 * native} px, "
             f"{args.n} reference-world views)", "",
             "| arm | PSNR (dB) vs ground truth | SSIM | seconds / image |", "|---|---|---|---|"]
    for k, v in result["summary"].items():
        s = v
        lines.append(f"| {k} | {s['psnr']['mean']:.2f} ± {s['psnr']['stdev']:.2f} | "
                     f"{s['ssim']['mean']:.4f} ± {s['ssim']['stdev']:.4f} | {s['seconds']['mean']:.2f} |")
    lines += ["", f"Inversion beats re-noising on PSNR in {wins} of {args.n} views. Mean ± standard deviation over "
              f"views; {args.threads} torch threads, torch {torch.__version__}; "
              f"`python benchmarks/upscale_reference_trajectory.py --n {args.n}`."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
