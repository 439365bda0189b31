"""Scaling study for the embedded tiny-flux: native quality against training CPU seconds, per model size.

    python benchmarks/tiny_flux_scaling.py --threads 2            # every config in CONFIGS, then the summary
    python benchmarks/tiny_flux_scaling.py --only S-1k S-2k        # a subset (finished ones are skipped)
    python benchmarks/tiny_flux_scaling.py --summary               # only rebuild the table and plot
    python benchmarks/tiny_flux_scaling.py --checkpoint runs/flux-v2 --label v2   # score a run's current checkpoint

Each config trains with `hiresflow train flux` (same data mix, LR schedule, batch and seed; only the transformer
width/depth and the step count differ) in `runs/scaling/<name>/`, is exported as a pipeline folder, and is scored
by `benchmarks/native_quality.py` (n scenes vs their ground truth at 64 px: FID, KID, sun/moon and tree counts).
Results go to `benchmarks/results/tiny-flux-scaling/`: one JSON per config, `results.md` (`render_markdown`, from
those JSONs alone; `benchmarks/docs_pages.py` rewrites it) and `fid-vs-steps.png`.
Every step resumes: rerunning skips trained runs and scored configs.

`--checkpoint RUN` scores the current checkpoint of any flux run (e.g. the long v2 run while it trains): a run
warm-started with `--init-from` counts the steps and training seconds of its start model (its card's
`trained_steps`, and `--seconds-before`), so the points continue the curve of that model's size. The table also
lists the committed v1 record (S, 4000 steps, `native_quality-tiny-flux-v1.json`).
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


def _export_and_score(run_dir: Path, folder: Path, name: str, args) -> dict:
    """Export the run's EMA weights to ``folder`` (once) and score them with native_quality (once)."""
    if not (folder / "model_index.json").is_file():
        from hiresflow.train.export import export_run

        export_run(run_dir, folder, dtype="fp32", compare=False, guidance=4.0)
    quality = OUT / f"{name}-native.json"
    if not quality.is_file():
        run([sys.executable, "benchmarks/native_quality.py", "--model", str(folder), "--n", str(args.n),
             "--threads", str(args.threads), "--out", str(quality)])
    return json.loads(quality.read_text())


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
    q = _export_and_score(run_dir, run_dir / "export", name, args)
    trained = json.loads((run_dir / "result.json").read_text())
    rec = {"name": name, "size": size, "transformer": WIDTH[size], "steps": steps, "batch": 32,
           "params": trained["params"], "train_cpu_s": round(trained["wall_s"], 1), "threads": args.threads,
           "final_loss": round(trained.get("final_loss", float("nan")), 4), "fid": q["fid"], "kid": q["kid"],
           "fid_floor": q["fid_truth_half_vs_half"], "world": q["world"]}
    result_json.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def score_checkpoint(run_dir: Path, label: str, args) -> dict:
    """Export the (EMA) checkpoint of ``run_dir`` as it is now and score it at native size."""
    state = json.loads((run_dir / "state.json").read_text())
    step = int(state["step"])
    extra = state["config"]["extra"]
    before_steps = 0
    if extra.get("init_from"):
        from hiresflow.models.loading import EMBEDDED, EMBEDDED_DIR

        init = extra["init_from"]
        folder = EMBEDDED_DIR / EMBEDDED[init] if init in EMBEDDED else Path(init)
        before_steps = int(json.loads((folder / "hiresflow.json").read_text()).get("trained_steps", 0))
    name = f"{label}-{before_steps + step}"
    result_json = OUT / f"{name}.json"
    if result_json.is_file():
        return json.loads(result_json.read_text())
    folder = run_dir.parent / f"{run_dir.name}-at-{step}"
    q = _export_and_score(run_dir, folder, name, args)
    overrides = extra.get("denoiser") or {}
    size = next((k for k, v in WIDTH.items() if v == overrides), "S" if not overrides else "custom")
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(str(folder / "transformer" /
                                                   "diffusion_pytorch_model.safetensors")).values())
    rec = {"name": name, "size": size, "steps": before_steps + step, "batch": state["config"]["batch"],
           "params": params, "train_cpu_s": round(args.seconds_before + float(state["wall_s"]), 1),
           "threads": (state.get("mutable") or {}).get("threads"), "init_from": extra.get("init_from"),
           "final_loss": None, "fid": q["fid"], "kid": q["kid"], "fid_floor": q["fid_truth_half_vs_half"],
           "world": q["world"]}
    result_json.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def _loss(rec: dict) -> str:
    v = rec.get("final_loss")
    return "—" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _v1_record() -> dict | None:
    """The committed v1 model as a point of the S curve (4000 steps, batch 32, 1 thread, 3307 s)."""
    path = ROOT / "benchmarks" / "results" / "native_quality-tiny-flux-v1.json"
    if not path.is_file():
        return None
    q = json.loads(path.read_text())
    return {"name": "v1 (S-4k, 1 thread)", "size": "S", "steps": 4000, "params": 3137360, "train_cpu_s": 3307.0,
            "final_loss": 0.3798, "fid": q["fid"], "kid": q["kid"], "fid_floor": q["fid_truth_half_vs_half"],
            "world": q["world"]}


def power_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through (log x, log y): returns (slope, intercept) of log y = intercept + slope·log x."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-12, sum((x - mx) ** 2 for x in xs))
    return slope, my - slope * mx


def load(folder: Path = OUT) -> list[dict]:
    """The scored configs of `folder` (one ``NAME.json`` each) and the committed v1 record, by size and steps."""
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.endswith("-native.json")]
    recs += [r for r in [_v1_record()] if r]
    return sorted(recs, key=lambda r: (r["size"], r["steps"]))


def tables(recs: list[dict]) -> dict[str, str]:
    """The table of `load`'s records (``configs``): size, steps, training time and native quality per config."""
    lines = ["| config | params | steps | train wall s | final loss | FID | FID − floor | KID×10³ | sun/moon count ≠ 1 | tree count exact |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        w = r["world"]
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['steps']} | {r['train_cpu_s']:.0f} | "
                     f"{_loss(r)} | {r['fid']:.1f} | {r['fid'] - r['fid_floor']:.1f} | "
                     f"{1000 * r['kid']:.1f} | "
                     f"{100 * w.get('dup_rate', float('nan')):.1f} % | "
                     f"{100 * w.get('tree_acc', float('nan')):.1f} % |")
    return {"configs": "\n".join(lines)}


def render_markdown(recs: list[dict]) -> str:
    """``results.md``: the table of `load`'s records and the power law fitted to the S configs."""
    lines = ["# tiny-flux scaling study", "",
             "`python benchmarks/tiny_flux_scaling.py` — same data (50 % close-ups), batch 32, LR 5e-4 cosine, EMA "
             "0.999; only width/depth and steps differ. Native quality: `benchmarks/native_quality.py` "
             f"(n = {recs[0].get('n', 200)}, 30 steps, CFG 4, 64 px).", "",
             "Rows `v2-N` are checkpoints of the long v2 run (warm start from v1, so N counts v1's 4000 steps; "
             "train seconds = v1's 3307 s + the run's).", "", tables(recs)["configs"],
             "", f"FID floor (truth half vs half): {recs[0]['fid_floor']}."]
    s_curve = sorted((r["steps"], r["fid"] - r["fid_floor"]) for r in recs if r["size"] == "S")
    if len(s_curve) >= 2:
        slope, intercept = power_fit(s_curve)
        target = 0.3 * recs[0]["fid_floor"]  # FID <= 1.3 x floor
        need = math.exp((math.log(target) - intercept) / slope) if slope < 0 else float("nan")
        lines += ["", f"S curve, least-squares power law over its {len(s_curve)} points: FID − floor ∝ steps^{slope:.3f} "
                  f"(× {2 ** slope:.3f} per doubling of steps); FID ≤ 1.3 × floor (FID − floor ≤ {target:.1f}) "
                  f"extrapolates to ≈ {need:,.0f} steps at batch 32."]
    return "\n".join(lines) + "\n"


def summary() -> None:
    from hiresflow.eval.report import line_plot

    recs = load(OUT)
    if not recs:
        print("no scored configs yet")
        return
    text = render_markdown(recs)
    (OUT / "results.md").write_text(text)
    series: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        series.setdefault(f"{r['size']} ({r['params'] / 1e6:.1f} M)", []).append((r["steps"], r["fid"] - r["fid_floor"]))
    line_plot(series, OUT / "fid-vs-steps.png", title="tiny-flux: native FID above the floor vs training steps",
              xlabel="training steps, batch 32 (log2)", ylabel="FID - floor (n=200)")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help=f"configs to run (of {', '.join(CONFIGS)})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--vae", default="src/hiresflow/embedded/tiny-flux/vae", help="the shared VAE folder (every embedded tiny-flux uses tiny-flux's)")
    ap.add_argument("--summary", action="store_true", help="only rebuild results.md and the plot")
    ap.add_argument("--checkpoint", type=Path, default=None, help="score this flux run's current checkpoint")
    ap.add_argument("--label", default="v2", help="with --checkpoint: name prefix of the record")
    ap.add_argument("--seconds-before", type=float, default=3307.0,
                    help="with --checkpoint: training seconds of the start model (v1: 3307)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.checkpoint is not None:
        score_checkpoint(args.checkpoint, args.label, args)
    elif not args.summary:
        for name in args.only or list(CONFIGS):
            if name not in CONFIGS:
                raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
            train_and_score(name, args)
    summary()


if __name__ == "__main__":
    main()
