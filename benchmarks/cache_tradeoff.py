"""Step caching (`hiresflow.caching`) on tiny-flux cascades: speed-up against KID, FID_patch-style KID on crops and
the change against the uncached image of the same seed.

For every method × cache setting: n reference-world prompts (ground truth renderable at the target size), one seed,
the plan run with `run_plan(..., cache=spec)`; s/img is the median CPU time of the process per image (1 torch
thread, so CPU time is the work done, and a machine shared with other jobs does not inflate it as it does wall
time; images resumed from an earlier run without a CPU time are timed again on the first item of their cell, which
must reproduce the saved bytes), KID the unbiased KID of the Inception
features against the ground-truth renders (all n images at once: n is small, so KID is noisy — the paired
columns are the sharper signal), KID_patch the same on 4 native-size crops per image, Δ the mean absolute pixel
difference (0…255) to the uncached image of the same prompt and seed, and computed the share of the cached stages'
model calls whose last block ran in full.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/cache_tradeoff.py --n 4 --scales 4,8 \
        --cap imax@8=2 --out benchmarks/results/cache_tradeoff

Resumable: every finished image is kept under `--images` with its time and cache counts, so an interrupted run
picks up where it stopped (the saved 8-bit images are what KID reads, so a resumed table equals a fresh one).

Cascades (HiFlow, I-Max) cache their high-resolution stages (the default selection); a single-pass method (DyPE,
direct) has no stage after a native one, so its cache runs on stage 0 ("@all").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hiresflow.atomic import write_result

METHODS = ("hiflow", "dype", "imax")
CACHES = ("none", "first-block:0.08", "taylorseer:4", "magcache:0.06")


def _uint8(img: torch.Tensor) -> np.ndarray:
    return (img[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _load_image(cell: Path, stem: str):
    """The finished image of an earlier (interrupted) run and its record, or None."""
    from PIL import Image

    png, meta = cell / f"{stem}.png", cell / f"{stem}.json"
    if not (png.is_file() and meta.is_file()):
        return None
    return np.asarray(Image.open(png).convert("RGB")), json.loads(meta.read_text())


def _save_image(cell: Path, stem: str, img: np.ndarray, meta: dict):
    from PIL import Image

    from hiresflow.atomic import atomic_path, write_text_atomic

    cell.mkdir(parents=True, exist_ok=True)
    with atomic_path(cell / f"{stem}.png") as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    write_text_atomic(cell / f"{stem}.json", json.dumps(meta))  # written last: marks the image as finished
    return img, meta


def run(args) -> dict:
    from hiresflow.caching import parse_cache
    from hiresflow.eval.fid import kid
    from hiresflow.eval.inception import InceptionFeatures
    from hiresflow.eval.patches import crop_anchors, crops_of
    from hiresflow.eval.spec import BenchSpec
    from hiresflow.eval.layout import bench_items
    from hiresflow.models.loading import load_model
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan
    from hiresflow.world import render

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    spec = BenchSpec.from_dict({"name": "cache", "models": [args.model], "scales": [4],
                                "prompts": {"world": {"n": args.n, "seed": 0}}, "seeds": [args.seed],
                                "recipes": {"direct": {}}})
    items = bench_items(spec)
    caps = {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
    inception = InceptionFeatures(device="cpu")
    nat = model.geometry.native
    rows = []
    for scale in [float(s) for s in args.scales.split(",")]:
        refs = None
        for method in args.methods.split(","):
            plan = build_plan(method, model, scale=scale)
            h, w = plan.target_size
            if refs is None:
                refs = [render(it.prompt.scene_obj(), h, w, seed=it.seed) for it in items]
                anchors = crop_anchors(len(items), (h, w), nat[0], 4, 0)
                ref_feats = inception(refs)
                ref_crop_feats = inception(crops_of(refs, anchors, nat[0]))
            base_imgs = None
            for cache in args.caches.split(","):
                if cache != "none" and "@" not in cache and len(plan.stages) == 1:
                    cache += "@all"  # a single-pass method has no high-resolution stage after a native one
                spec_c = None if cache == "none" else parse_cache(cache)
                imgs, secs, computed, calls = [], [], 0, 0
                cell = args.images / f"x{scale:g}" / method / cache.replace(":", "_").replace("@", "-")
                try:
                    for i, it in enumerate(items[:caps.get(f"{method}@{scale:g}", len(items))]):
                        done = _load_image(cell, it.stem)
                        if done is None or (i == 0 and "cpu_seconds" not in done[1]):
                            t0, c0 = time.perf_counter(), time.process_time()
                            res = run_plan(model, plan, it.prompt.prompt, seed=it.seed, cache=spec_c)
                            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                            stats = [st.extra["cache"] for st in res.stages if st.extra.get("cache")]
                            img = _uint8(res.image)
                            if done is not None and not np.array_equal(img, done[0]):
                                raise RuntimeError(f"{cell / it.stem}: a re-run gave other bytes than the saved image")
                            done = _save_image(cell, it.stem, img, {
                                "seconds": wall, "cpu_seconds": cpu,
                                "computed": sum(c["computed"] for c in stats), "calls": sum(c["calls"] for c in stats)})
                        img, meta = done
                        imgs.append(img)
                        if "cpu_seconds" in meta:
                            secs.append(meta["cpu_seconds"])
                        computed += meta["computed"]
                        calls += meta["calls"]
                except ValueError as err:
                    rows.append({"method": method, "scale": scale, "cache": cache, "error": str(err)})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                feats = inception(imgs)
                crop_feats = inception(crops_of(imgs, anchors[:len(imgs)], nat[0]))  # a capped cell: its first images
                k, _, _ = kid(feats, ref_feats)
                kp, kp_std, _ = kid(crop_feats, ref_crop_feats, subsets=100, subset_size=min(16, len(crop_feats)))
                if base_imgs is None:
                    base_imgs = imgs
                delta = float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()
                                       for a, b in zip(imgs, base_imgs)]))
                rows.append({"method": method, "scale": scale, "size": [w, h], "cache": cache, "n": len(imgs),
                             "s_per_img": round(statistics.median(secs), 2), "n_timed": len(secs), "kid": round(k, 4),
                             "kid_patch": round(kp, 4), "kid_patch_std": round(kp_std, 4),
                             "delta_vs_uncached": round(delta, 2),
                             "computed": None if not calls else round(computed / calls, 3)})
                print(json.dumps(rows[-1]), flush=True)
    for r in rows:  # speed-up against the uncached run of the same method and scale
        base = next((b for b in rows if b["method"] == r["method"] and b["scale"] == r["scale"]
                     and b["cache"] == "none" and "s_per_img" in b), None)
        if base is not None and "s_per_img" in r:
            r["speedup"] = round(base["s_per_img"] / r["s_per_img"], 2)
    return {"model": args.model, "threads": args.threads, "n": args.n, "seed": args.seed, "rows": rows}


def table(result: dict) -> str:
    caps = [f"{r['method']} {r['scale']:g}x: n = {r['n']}" for r in result["rows"]
            if r.get("n", result["n"]) != result["n"] and r["cache"] == "none"]
    lines = [f"n = {result['n']} images per cell{' (' + ', '.join(caps) + ')' if caps else ''} "
             f"(reference-world prompts, seed {result['seed']}), "
             f"{result['threads']} torch thread(s), model {result['model']}; s/img = CPU seconds per image", "",
             "| method | scale | cache | CPU s/img | speed-up | KID | KID_patch | Δ vs uncached (0–255) | full calls |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['scale']:g}x | {r['cache']} | refused: {r['error']} | | | | | |")
            continue
        comp = "–" if r["computed"] is None else f"{r['computed'] * 100:.0f} %"
        # with n·4 crops ≤ the subset size every subset is the whole set: no spread to show
        kp = f"{r['kid_patch']} ± {r['kid_patch_std']}" if r["kid_patch_std"] else f"{r['kid_patch']}"
        lines.append(f"| {r['method']} | {r['scale']:g}x | {r['cache']} | {r['s_per_img']} | {r.get('speedup', '')}x | "
                     f"{r['kid']} | {kp} | {r['delta_vs_uncached']} | {comp} |")
    return "\n".join(lines)


def tables(data: dict) -> dict[str, str]:
    """The docs' table of cache_tradeoff.json (`tradeoff`)."""
    return {"tradeoff": table(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--caches", default=",".join(CACHES))
    ap.add_argument("--scales", default="4")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3407)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap", action="append", default=[], metavar="METHOD@SCALE=N",
                    help="fewer images for one slow cell, e.g. imax@8=2 (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    ap.add_argument("--images", type=Path, default=Path("benchmarks/results/cache_tradeoff/images"),
                    help="finished images and their timings; a rerun resumes from them (not in git)")
    args = ap.parse_args()
    result = run(args)
    text = table(result)
    write_result(args.out, result, text)
    print(text)


if __name__ == "__main__":
    main()
