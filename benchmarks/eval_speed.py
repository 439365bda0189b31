"""Evaluation-harness speed (not a test: a measurement to rerun).

    python benchmarks/eval_speed.py [--n 200] [--size 256] [--native 64] [--threads 1] \
        [--out benchmarks/results/eval_speed.json]

Workload = one method at one size in `hiresflow bench`: n "generated" images at size² (stand-in: the ground truth
rendered at the native size and bicubic-upsampled, i.e. the `upscale` baseline, with its native image), evaluated
by `hiresflow.eval.evaluate.evaluate_set` with the default metrics: FID/KID on whole images, FID/KID_patch on 4
native-size crops per image (paired with the references), world metrics, structure consistency (PSNR/SSIM vs the
native image), HF-energy ratio; IS/CLIP are "not computed" here (no weights). References are ground-truth renders.

Timed phases:
- render: ground-truth renders at size² (done once per size in a bench, shared by every method);
- cold: evaluate_set with an empty feature cache (generated and reference images through Inception);
- warm: a second method (bilinear instead of bicubic upsampling) with the reference features cached — the cost
  of each further method in a bench.
Inception passes = images + crops through the network (0.17 s each on one EPYC core at fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def upsampled(arr: np.ndarray, size: int, mode: str) -> np.ndarray:
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    y = F.interpolate(x, size=(size, size), mode=mode, align_corners=False).clamp(0, 1)
    return (y[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--native", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from hiresflow.eval.evaluate import EvalTools, evaluate_set
    from hiresflow.eval.spec import MetricsSpec
    from hiresflow.world import prompt_for, render, sample_scene

    metrics = MetricsSpec(clip=False, inception_score=False)
    scenes = [sample_scene(np.random.default_rng([0, i])) for i in range(a.n)]
    prompts = [prompt_for(s) for s in scenes]
    natives = [render(s, a.native, a.native) for s in scenes]
    gen_bicubic = [upsampled(x, a.size, "bicubic") for x in natives]
    gen_bilinear = [upsampled(x, a.size, "bilinear") for x in natives]

    t = time.perf_counter()
    refs = [render(s, a.size, a.size) for s in scenes]
    t_render = time.perf_counter() - t

    t = time.perf_counter()
    tools = EvalTools.load(metrics, a.device)
    t_load = time.perf_counter() - t

    t = time.perf_counter()
    scores, _ = evaluate_set(gen_bicubic, prompts, tools, metrics, (a.native, a.native), references=refs,
                             natives=natives, progress=True)
    t_cold = time.perf_counter() - t
    passes_cold = tools.inception.passes

    t = time.perf_counter()
    scores2, _ = evaluate_set(gen_bilinear, prompts, tools, metrics, (a.native, a.native), references=refs,
                              natives=natives, progress=True)
    t_warm = time.perf_counter() - t
    passes_warm = tools.inception.passes - passes_cold

    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    res = {
        "machine": f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end, "
                   f"torch {torch.__version__}, {a.threads} torch thread(s), device {a.device}",
        "n_images": a.n, "size": a.size, "native": a.native, "crops_per_image": metrics.patches,
        "seconds": {"render_references": round(t_render, 2), "load_networks": round(t_load, 2),
                    "evaluate_cold": round(t_cold, 2), "evaluate_warm_references": round(t_warm, 2),
                    "total_cold_including_render": round(t_render + t_load + t_cold, 2)},
        "inception_passes": {"cold": passes_cold, "warm": passes_warm},
        "scores_bicubic": {k: v.to_dict() for k, v in scores.items()},
        "scores_bilinear": {k: v.to_dict() for k, v in scores2.items()},
    }
    print(json.dumps({k: res[k] for k in ("machine", "seconds", "inception_passes")}, indent=1))
    for k in ("fid", "fid_patch", "kid", "kid_patch", "dup_rate", "count_acc", "ssim_native", "hf_ratio"):
        print(f"{k:12s} bicubic {scores[k].cell(4):>10s}  bilinear {scores2[k].cell(4):>10s}  (n={scores[k].n}"
              f"{', crops=' + str(scores[k].n_crops) if scores[k].n_crops else ''})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
