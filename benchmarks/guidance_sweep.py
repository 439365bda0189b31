"""Native quality of an embedded model against its CFG scale: does stronger guidance buy the counts?

    python benchmarks/guidance_sweep.py --model tiny-flux --label tiny-flux --guidance 1.5 2.5 6 8 --threads 1
    python benchmarks/guidance_sweep.py --model FOLDER --label tiny-flux-v3 --guidance 1.5 2.5 6 8 --threads 1
    python benchmarks/guidance_sweep.py --summary            # only rebuild results.md and the plot

(FOLDER: the tiny-flux v3 candidate, restored with `git checkout ce279db -- src/hiresflow/embedded/tiny-flux-v3`.)

Each point is one `benchmarks/native_quality.py` run — the same n reference-world scenes, noise seeds and ground
truth as the committed native-quality records, only `--guidance` differs — written to
`benchmarks/results/guidance-sweep/LABEL-gG.json`; a point already there is skipped, so the command resumes.
The committed record of each label at the model's default CFG (``REFERENCE``) joins its curve as a point.
`results.md` (`render_markdown`, from the JSONs alone; `benchmarks/docs_pages.py` rewrites it) and
`counts-vs-cfg.png` are rebuilt after every run.

The guidance here is the embedded models' true classifier-free guidance, ε_u + w·(ε_c − ε_u) on the velocity
(tiny-flux is not guidance-distilled), so the sweep asks whether the counts the model gets wrong at w = 4 are a
matter of how hard the prompt is followed or of what the model learned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "guidance-sweep"

# label → the committed native-quality record measured at that model's default CFG (a point of its curve)
REFERENCE = {"tiny-flux": "native_quality-tiny-flux.json", "tiny-flux-v3": "native_quality-tiny-flux-v3.json"}

# the count targets of tiny-flux v3 (docs/embedded-models.md): tree count exact ≥ 65 %, sun/moon count wrong ≤ 20 %
TARGETS = {"target trees": 65.0, "target sun/moon": 20.0}
# (column header, world-metric key, True when higher is better)
WORLD_COLUMNS = [("sun/moon count ≠ 1 ↓", "dup_rate", False), ("tree count exact ↑", "tree_acc", True),
                 ("house count exact ↑", "house_acc", True), ("sun/moon colour agrees ↑", "color_acc", True)]


def point_path(label: str, guidance: float, folder: Path = OUT) -> Path:
    return folder / f"{label}-g{guidance:g}.json"


def load(folder: Path = OUT) -> list[dict]:
    """Every point of the sweep folder plus the REFERENCE records, each with its ``label``, by label and CFG.

    Points of one label must share n and steps (the reference's), else the curve would mix protocols."""
    recs = []
    for path in sorted(Path(folder).glob("*-g*.json")):
        if path.name.endswith(".partial.json"):  # a run that did not finish
            continue
        label = path.stem.rsplit("-g", 1)[0]
        recs.append({**json.loads(path.read_text()), "label": label})
    for label, name in REFERENCE.items():
        ref = RESULTS / name
        if ref.is_file() and any(r["label"] == label for r in recs):
            rec = json.loads(ref.read_text())
            if not any(r["label"] == label and r["guidance"] == rec["guidance"] for r in recs):
                recs.append({**rec, "label": label, "reference": name})
    for label in {r["label"] for r in recs}:
        protocols = {(r["n"], r["steps"]) for r in recs if r["label"] == label}
        if len(protocols) > 1:
            raise SystemExit(f"guidance sweep {label!r} mixes (n, steps) = {sorted(protocols)}; rerun its points "
                             "with the reference record's --n and --steps")
    return sorted(recs, key=lambda r: (r["label"], r["guidance"]))


def tables(recs: list[dict]) -> dict[str, str]:
    """``sweep``: one row per (model, CFG) with FID, KID and the world metrics; each model's best value in bold."""
    head = ["model", "CFG", "FID ↓", "KID ×10³ ↓"] + [h for h, _, _ in WORLD_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in dict.fromkeys(r["label"] for r in recs):
        group = [r for r in recs if r["label"] == label]
        getters = [(lambda r: r["fid"], False), (lambda r: r["kid"], False)]
        getters += [((lambda r, k=k: r["world"][k]), up) for _, k, up in WORLD_COLUMNS]
        best = [(max if up else min)(get(r) for r in group) for get, up in getters]
        for r in group:
            cfg = f"{r['guidance']:g}" + (" (default)" if r.get("reference") else "")
            vals = [f"{r['fid']:.1f}", f"{1000 * r['kid']:.1f} ± {1000 * r['kid_std']:.1f}"]
            vals += [f"{100 * r['world'][k]:.1f} %" for _, k, _ in WORLD_COLUMNS]
            cells = [f"**{v}**" if get(r) == b else v for v, (get, _), b in zip(vals, getters, best)]
            lines.append("| " + " | ".join([label, cfg, *cells]) + " |")
    return {"sweep": "\n".join(lines)}


def render_markdown(recs: list[dict]) -> str:
    if not recs:
        return "# Native quality against the CFG scale\n\nNo points measured yet: run `python benchmarks/guidance_sweep.py`.\n"
    first = recs[0]
    return "\n".join([
        "# Native quality against the CFG scale", "",
        f"`python benchmarks/guidance_sweep.py` — `benchmarks/native_quality.py` at each CFG (n = {first['n']} scenes, "
        f"{first['steps']} steps, {first['native_size'][0]} px, the scenes, noise seeds and ground truth of the "
        "committed native-quality records; FID floor (truth half vs half) "
        f"{first['fid_truth_half_vs_half']}). Rows marked (default) are those committed records.", "",
        tables(recs)["sweep"], "", "![counts against CFG](counts-vs-cfg.png)", ""])


def summary(folder: Path = OUT) -> None:
    from hiresflow.eval.report import line_plot

    recs = load(folder)
    if not recs:
        print("no sweep points yet")
        return
    (folder / "results.md").write_text(render_markdown(recs))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        series.setdefault(f"{r['label']} trees", []).append((r["guidance"], 100 * r["world"]["tree_acc"]))
        series.setdefault(f"{r['label']} sun/moon", []).append((r["guidance"], 100 * r["world"]["dup_rate"]))
    span = [min(r["guidance"] for r in recs), max(r["guidance"] for r in recs)]
    for name, value in TARGETS.items():  # the embedded-models issue's count targets, as flat lines
        series[name] = [(g, value) for g in span]
    line_plot(series, folder / "counts-vs-cfg.png", xlabel="CFG scale (log2)", ylabel="% of scenes",
              title=f"tiny-flux, n = {recs[0]['n']}: tree count exact (trees) and sun/moon count wrong (sun/moon)")
    print(tables(recs)["sweep"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-flux", help="embedded model name or pipeline folder")
    ap.add_argument("--label", default=None, help="name of the curve (default: --model)")
    ap.add_argument("--guidance", type=float, nargs="*", default=[], help="CFG scales to measure")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="only rebuild results.md and the plot")
    args = ap.parse_args()
    label = args.label or args.model
    if "/" in label or label.endswith(".json"):
        raise SystemExit(f"--label {label!r} names a file; give a short curve name such as tiny-flux-v3")
    bad = [g for g in args.guidance if not g > 0]
    if bad:
        raise SystemExit(f"--guidance needs positive CFG scales, got {bad}")
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for g in args.guidance:
            out = point_path(label, g)
            if out.is_file():
                print(f"{out.name}: measured, skipped")
                continue
            tmp = out.with_suffix(".partial.json")
            cmd = [sys.executable, "benchmarks/native_quality.py", "--model", args.model, "--n", str(args.n),
                   "--guidance", str(g), "--threads", str(args.threads), "--out", str(tmp)]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
            tmp.replace(out)
    summary()


if __name__ == "__main__":
    main()
