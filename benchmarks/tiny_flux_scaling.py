"""Scaling study for the embedded tiny-flux: native quality against training CPU seconds, per model size.

    python benchmarks/tiny_flux_scaling.py --threads 2            # every config in CONFIGS, then the summary
    python benchmarks/tiny_flux_scaling.py --only S-1k S-2k        # a subset (finished ones are skipped)
    python benchmarks/tiny_flux_scaling.py --summary               # only rebuild the table and plot

Each config trains with `hiresflow train flux` (same data mix, LR schedule, batch and seed; only the transformer
width/depth and the step count differ) in `runs/scaling/<name>/`, is exported as a pipeline folder, and is scored
by `benchmarks/native_quality.py` (n scenes vs their ground truth at 64 px: FID, KID, sun/moon and tree counts).
Results go to `benchmarks/results/tiny-flux-scaling/`: one JSON per config, `results.md` and `fid-vs-cpu.png`.
Every step resumes: rerunning skips trained runs and scored configs.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "tiny-flux-scaling"

WIDTH = {  # transformer overrides: heads × 32 = width; double + single blocks = depth
    "S": dict(num_layers=3, num_single_layers=5, num_attention_heads=4),
    "M": dict(num_layers=4, num_single_layers=8, num_attention_heads=6),
    "W": dict(num_layers=4, num_single_layers=6, num_attention_heads=8),
}
CONFIGS = {  # name: (size, steps)
    "S-1k": ("S", 1000),
    "M-1k": ("M", 1000),
    "W-1k": ("W", 1000),
}
COMMON = ["--batch", "32", "--lr", "0.0005", "--warmup", "200", "--cache-n", "50000", "--full-fraction", "0.5",
          "--ema", "0.999", "--sample-every", "0"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_and_score(name: str, args) -> dict:
    size, steps = CONFIGS[name]
    runs = ROOT / "runs" / "scaling"
    run_dir = runs / name
    result_json = OUT / f"{name}.json"
    if result_json.is_file():
        return json.loads(result_json.read_text())
    if not (run_dir / "result.json").is_file():
        run([sys.executable, "-m", "hiresflow.cli", "train", "flux", "--name", name, "--runs", str(runs),
             "--steps", str(steps), "--threads", str(args.threads), "--vae", args.vae,
             "--transformer", json.dumps(WIDTH[size]), *COMMON])
    folder = run_dir / "export"
    if not (folder / "model_index.json").is_file():
        from hiresflow.train.export import export_run

        export_run(run_dir, folder, dtype="fp32", compare=False, guidance=4.0)
    quality = OUT / f"{name}-native.json"
    if not quality.is_file():
        run([sys.executable, "benchmarks/native_quality.py", "--model", str(folder), "--n", str(args.n),
             "--threads", str(args.threads), "--out", str(quality)])
    trained = json.loads((run_dir / "result.json").read_text())
    q = json.loads(quality.read_text())
    rec = {"name": name, "size": size, "transformer": WIDTH[size], "steps": steps, "batch": 32,
           "params": trained["params"], "train_cpu_s": round(trained["wall_s"], 1), "threads": args.threads,
           "final_loss": round(trained.get("final_loss", float("nan")), 4), "fid": q["fid"], "kid": q["kid"],
           "fid_floor": q["fid_truth_half_vs_half"], "world": q["world"]}
    result_json.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def summary() -> None:
    from hiresflow.eval.report import line_plot

    recs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json")) if not p.name.endswith("-native.json")]
    if not recs:
        print("no scored configs yet")
        return
    recs.sort(key=lambda r: (r["size"], r["train_cpu_s"]))
    lines = ["# tiny-flux scaling study", "",
             "`python benchmarks/tiny_flux_scaling.py` — same data (50 % close-ups), batch 32, LR 5e-4 cosine, EMA "
             "0.999; only width/depth and steps differ. Native quality: `benchmarks/native_quality.py` "
             f"(n = {recs[0].get('n', 200)}, 30 steps, CFG 4, 64 px).", "",
             "| config | params | steps | train wall s | final loss | FID | KID×10³ | sun/moon count ≠ 1 | tree count exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        w = r["world"]
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['steps']} | {r['train_cpu_s']:.0f} | "
                     f"{r['final_loss']:.4f} | {r['fid']:.1f} | {1000 * r['kid']:.1f} | "
                     f"{100 * w.get('dup_rate', float('nan')):.1f} % | "
                     f"{100 * w.get('tree_acc', float('nan')):.1f} % |")
    lines += ["", f"FID floor (truth half vs half): {recs[0]['fid_floor']}."]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    series: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        series.setdefault(f"{r['size']} ({r['params'] / 1e6:.1f} M)", []).append((r["train_cpu_s"], r["fid"]))
    line_plot(series, OUT / "fid-vs-cpu.png", title="tiny-flux: native FID vs training seconds",
              xlabel="training wall seconds (log2)", ylabel="FID (n=200)")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help=f"configs to run (of {', '.join(CONFIGS)})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--vae", default="src/hiresflow/embedded/tiny-flux/vae", help="the shared VAE folder")
    ap.add_argument("--summary", action="store_true", help="only rebuild results.md and the plot")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for name in args.only or list(CONFIGS):
            if name not in CONFIGS:
                raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
            train_and_score(name, args)
    summary()


if __name__ == "__main__":
    main()
