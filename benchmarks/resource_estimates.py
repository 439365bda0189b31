"""The resource guard's estimates against measurement: peak memory and model time of real runs.

    python benchmarks/resource_estimates.py --threads 1 --out benchmarks/results/resource_estimates.json

Each case runs in a fresh process (so its peak RSS is its own): load the model, estimate (`check_resources`
with the probe), run the plan, and report estimated vs measured model seconds (the sum of the sampler's model
call times) and estimated peak bytes vs the RSS growth over the loaded model.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

CASES = [("tiny-flux", "hiflow", 4), ("tiny-flux", "direct", 4), ("tiny-flux", "imax", 4), ("tiny-flux", "hiflow", 8),
         ("tiny-sd", "hiflow", 4), ("tiny-sd", "direct", 4), ("tiny-sd", "hidiffusion", 4)]

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(int(sys.argv[4]))
from hiresflow.models.loading import load_model
from hiresflow.recipes import build_plan
from hiresflow.resources import check_resources
from hiresflow.runner import run_plan
m = load_model(sys.argv[1], device="cpu")
plan = build_plan(sys.argv[2], m, scale=float(sys.argv[3]))
est = check_resources(plan, m, allow=True)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
res = run_plan(m, plan, "a red sun setting over snowy mountains by a lake", seed=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"model": sys.argv[1], "recipe": sys.argv[2], "scale": float(sys.argv[3]),
                  "estimated_model_s": round(est.model_seconds, 2),
                  "measured_model_s": round(sum(s.timings.model_total for s in res.stages), 2),
                  "estimated_peak_mb": round(est.peak_bytes / 2**20, 1), "measured_rss_growth_mb": round((peak - base) / 2**20, 1),
                  "model_calls": est.model_calls}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for model, recipe, scale in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, model, recipe, str(scale), str(args.threads)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        row["time_ratio"] = round(row["estimated_model_s"] / max(row["measured_model_s"], 1e-9), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": f"{platform.machine()}, {args.threads} torch thread(s)", "cases": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
