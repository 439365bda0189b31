"""Embedded model v1 vs v2 in one table: native quality, metrics per method at one scale, the issue's targets and
the methods' ranking against HiFlow's Table 1 (FLUX.1-dev, 4096²).

    python benchmarks/compare_versions.py
    python benchmarks/compare_versions.py --v1 benchmarks/results/tiny-flux --v2 benchmarks/results/tiny-flux-v2-4x
    python benchmarks/compare_versions.py --v2 benchmarks/results/tiny-flux-v2 --seed '' --tag x4   # both seed sets
    python benchmarks/compare_versions.py --model tiny-sd --v1 benchmarks/results/tiny-sd \
        --v2 benchmarks/results/tiny-sd-v2 --native-v1 benchmarks/results/native_quality-fp32/native_quality-tiny-sd.json \
        --native-v2 benchmarks/results/native_quality-tiny-sd-v2.json --seed ''

Inputs (all committed): the v1 bench (`benchmarks/results/tiny-flux`, read on its seed set 3407 so both versions
see the same 8 scenes and noises), the v2 bench of `benchmarks/specs/tiny-flux-v2-4x.yaml`, and the two
`native_quality` records. `--seed ''` reads every seed set of both benches (they must share scenes and seeds).
Writes `versions.json` (`compare`: the metrics, targets, ranking and what was compared) and `versions.md`
(`render_markdown`, a function of that JSON alone; `benchmarks/docs_pages.py` rewrites it and the site's
tables from it) — `versions-<tag>.*` for another tag than x4 — next to the v2 results.

Ranking: HiFlow Table 1 at 4096² orders HiFlow < I-Max < DemoFusion < DiffuseHigh by FID (and HiFlow < DemoFusion
< DiffuseHigh < I-Max by FID_patch). At n = 8 our FID is dominated by its bias, so each version is ranked by KID
and by FID_patch, and compared with the published order by Kendall's τ (1 = same order, −1 = reversed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ["direct", "upscale", "sdedit", "imax", "demofusion", "freescale-cascade", "freescale", "diffusehigh",
           "hidiffusion", "hiflow"]
PUBLISHED = {"fid": ["hiflow", "imax", "demofusion", "diffusehigh"],  # HiFlow Table 1, 4096², FID↑ order
             "fid_patch": ["hiflow", "demofusion", "diffusehigh", "imax"]}
COLUMNS = [("kid", "KID×10³↓", 1e3, 1), ("kid_patch", "KID_patch×10³↓", 1e3, 1), ("fid_patch", "FID_patch↓", 1, 1),
           ("dup_rate", "dup↓", 1, 2), ("hf_ratio", "HF ratio→1", 1, 2), ("ssim_native", "SSIM_nat↑", 1, 3)]


def _metrics(results: dict, seed: str | None, tag: str = "x4") -> dict[str, dict[str, float | None]]:
    out = {}
    for g in results["groups"]:
        if g["tag"] != tag or g.get("error") or g["label"] not in METHODS:
            continue
        m = g["by_seed"][seed] if seed and g.get("by_seed") and seed in g["by_seed"] else g["metrics"]
        out[g["label"]] = {k: (v or {}).get("value") for k, v in m.items()}
        out[g["label"]]["seconds"] = (g.get("timing") or {}).get("seconds")
    return out


def kendall_tau(order: list[str], ref: list[str]) -> float:
    """Kendall's τ between two orderings over the items they share (no ties); NaN with fewer than 2 shared."""
    ref = [k for k in ref if k in order]
    order = [k for k in order if k in ref]
    if len(ref) < 2:
        return float("nan")
    pos = {k: i for i, k in enumerate(order)}
    rpos = {k: i for i, k in enumerate(ref)}
    pairs = list(itertools.combinations(ref, 2))
    s = sum(1 if (pos[a] - pos[b]) * (rpos[a] - rpos[b]) > 0 else -1 for a, b in pairs)
    return s / len(pairs)


def ranking(metrics: dict, key: str) -> list[str]:
    methods = [m for m in PUBLISHED["fid"] if metrics.get(m, {}).get(key) is not None]
    return sorted(methods, key=lambda m: metrics[m][key])


def targets(native: dict, m4: dict) -> dict:
    gen = {k: v for k, v in m4.items() if k not in ("upscale", "direct") and v.get("kid") is not None}
    if not gen:
        raise SystemExit("no generating method with a KID in this table; pick a --tag with n ≥ 2 images")
    best = min(gen, key=lambda k: gen[k]["kid"])
    w = native["world"]
    return {
        "fid": native["fid"], "fid_floor": native["fid_truth_half_vs_half"],
        "fid_over_floor": round(native["fid"] / native["fid_truth_half_vs_half"], 3),
        "sun_moon_wrong_native": w.get("dup_rate"), "tree_exact": w.get("tree_acc"),
        "best_method_4x": best, "hf_ratio": gen[best].get("hf_ratio"),
        "best_hf_ratio_4x": max((v.get("hf_ratio") or 0.0) for v in gen.values()),
        "kid_vs_upscale": round(gen[best]["kid"] / m4["upscale"]["kid"], 3) if m4.get("upscale") else None,
        "dup_4x": gen[best].get("dup_rate"),
    }


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fmt(v, scale, nd):
    return "—" if v is None or not math.isfinite(v) else f"{v * scale:.{nd}f}"


TARGETS = [("native FID / floor", "fid_over_floor", "≤ 1.3"), ("sun/moon count wrong (native)",
           "sun_moon_wrong_native", "≤ 0.10"), ("tree count exact (native)", "tree_exact", "≥ 0.75"),
           ("best {scale}× method (by KID)", "best_method_4x", "—"), ("its HF ratio", "hf_ratio", "≥ 0.6"),
           ("its KID / upscale's KID", "kid_vs_upscale", "≤ 0.8"), ("its sun/moon duplication", "dup_4x", "≤ 0.10")]


def compare(v1_dir: Path, v2_dir: Path, native_v1: Path, native_v2: Path, seed: str = "3407", tag: str = "x4",
            model: str = "tiny-flux") -> dict:
    """The content of ``versions.json``: both versions' metrics at `tag`, the targets, the ranking, and (``meta``)
    what was compared, so that `render_markdown` needs nothing else."""
    v1 = _metrics(json.loads((v1_dir / "results.json").read_text()), seed or None, tag)
    v2 = _metrics(json.loads((v2_dir / "results.json").read_text()), None, tag)
    n1, n2 = json.loads(native_v1.read_text()), json.loads(native_v2.read_text())
    rank = {}
    for name, m in (("v1", v1), ("v2", v2)):
        rk, rp = ranking(m, "kid"), ranking(m, "fid_patch")
        rank[name] = {"kid": rk, "fid_patch": rp, "tau_kid": kendall_tau(rk, PUBLISHED["fid"]),
                      "tau_fid_patch": kendall_tau(rp, PUBLISHED["fid_patch"])}
    meta = {"model": model, "tag": tag, "v1": _rel(v1_dir), "v2": _rel(v2_dir), "seed": seed,
            "native_v1": _rel(native_v1), "native_v2": _rel(native_v2)}
    return {"meta": meta, "v1": v1, "v2": v2, "targets": {"v1": targets(n1, v1), "v2": targets(n2, v2)},
            "ranking": rank}


def _verdict(t: dict, key: str, goal_text: str) -> str:
    """A version against a goal ("≤ 0.8", "≥ 0.6"): "met", or "missed by" how much (native FID: in FID points
    above 1.3 × floor); "—" for a goal without a number."""
    v = t.get(key)
    if goal_text[0] not in "≤≥" or not isinstance(v, (int, float)):
        return "—"
    op, goal = goal_text[0], float(goal_text[1:])
    if (v <= goal) if op == "≤" else (v >= goal):
        return "met"
    if key == "fid_over_floor":
        return f"missed by {t['fid'] - goal * t['fid_floor']:.0f} FID points"
    return f"missed by {abs(v - goal):.2f}"


def tables(data: dict) -> dict[str, str]:
    """The three tables of ``versions.md`` from ``versions.json``: ``methods`` (each metric, cells v1 → v2),
    ``targets`` (with v2's verdict) and ``ranking`` (against HiFlow Table 1)."""
    v1, v2 = data["v1"], data["v2"]
    lines = ["| method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for m in METHODS:
        if m not in v1 and m not in v2:
            continue
        a, b = v1.get(m, {}), v2.get(m, {})
        cells = [f"{_fmt(a.get(k), s, nd)} → {_fmt(b.get(k), s, nd)}" for k, _, s, nd in COLUMNS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    out = {"methods": "\n".join(lines)}
    scale = int(data["meta"]["tag"].lstrip("x"))
    t1, t2 = data["targets"]["v1"], data["targets"]["v2"]
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| target | v1 | v2 | goal | v2 vs goal |", "|---|---|---|---|---|"]
    for label, key, goal in TARGETS:
        lines.append(f"| {label.format(scale=scale)} | {cell(t1.get(key))} | {cell(t2.get(key))} | {goal} | "
                     f"{_verdict(t2, key, goal)} |")
    out["targets"] = "\n".join(lines)
    rank = data["ranking"]
    lines = ["| version | by KID | τ vs published FID order | by FID_patch | τ vs published FID_patch order |",
             "|---|---|---|---|---|"]
    for name in ("v1", "v2"):
        r = rank[name]
        lines.append(f"| {name} | {' < '.join(r['kid'])} | {r['tau_kid']:+.2f} | {' < '.join(r['fid_patch'])} | "
                     f"{r['tau_fid_patch']:+.2f} |")
    lines.append(f"| published | {' < '.join(PUBLISHED['fid'])} (FID) | | {' < '.join(PUBLISHED['fid_patch'])} | |")
    out["ranking"] = "\n".join(lines)
    return out


def render_markdown(data: dict) -> str:
    """``versions.md`` from ``versions.json``."""
    meta, t = data["meta"], tables(data)
    scale = int(meta["tag"].lstrip("x"))
    seeds = f"its seed set {meta['seed']}" if meta["seed"] else "all its seed sets"
    return "\n".join([f"# {meta['model']} v1 vs v2", "",
                      f"{scale}× ({64 * scale}² from 64²); v1 from `{meta['v1']}` ({seeds}), "
                      f"v2 from `{meta['v2']}`. Cells: v1 → v2.", "", t["methods"], "", "## Targets", "",
                      t["targets"], "", "## Ranking vs HiFlow Table 1 (4096²)", "", t["ranking"]]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v1", type=Path, default=RESULTS / "tiny-flux")
    ap.add_argument("--v2", type=Path, default=RESULTS / "tiny-flux-v2-4x")
    ap.add_argument("--native-v1", type=Path, default=RESULTS / "native_quality-fp32" / "native_quality-tiny-flux-v1.json")
    ap.add_argument("--native-v2", type=Path, default=RESULTS / "native_quality-fp32" / "native_quality-tiny-flux.json")
    ap.add_argument("--seed", default="3407", help="seed set of the v1 bench the v2 spec repeats ('' = all)")
    ap.add_argument("--tag", default="x4", help="scale tag of the groups to compare (x2, x4, x8)")
    ap.add_argument("--model", default="tiny-flux", help="model name for the title")
    args = ap.parse_args()
    for p in (args.v1 / "results.json", args.v2 / "results.json", args.native_v1, args.native_v2):
        if not p.is_file():
            raise SystemExit(f"missing {p}: run the commands in this script's docstring first")
    data = compare(args.v1, args.v2, args.native_v1, args.native_v2, args.seed, args.tag, args.model)
    text = render_markdown(data)
    stem = "versions" if args.tag == "x4" else f"versions-{args.tag}"
    (args.v2 / f"{stem}.md").write_text(text)
    (args.v2 / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
