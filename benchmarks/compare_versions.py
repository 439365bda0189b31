"""Embedded model v1 vs v2 in one table: native quality, metrics per method at one scale, the issue's targets and
the methods' ranking against HiFlow's Table 1 (FLUX.1-dev, 4096²).

    python benchmarks/compare_versions.py
    python benchmarks/compare_versions.py --v1 benchmarks/results/tiny-flux --v2 benchmarks/results/tiny-flux-v2-4x
    python benchmarks/compare_versions.py --v2 benchmarks/results/tiny-flux-v2 --seed '' --tag x4   # both seed sets
    python benchmarks/compare_versions.py --model tiny-sd --v1 benchmarks/results/tiny-sd \
        --v2 benchmarks/results/tiny-sd-v2 --native-v1 benchmarks/results/native_quality-tiny-sd-v1.json \
        --native-v2 benchmarks/results/native_quality-tiny-sd.json --seed ''

Inputs (all committed): the v1 bench (`benchmarks/results/tiny-flux`, read on its seed set 3407 so both versions
see the same 8 scenes and noises), the v2 bench of `benchmarks/specs/tiny-flux-v2-4x.yaml`, and the two
`native_quality` records. `--seed ''` reads every seed set of both benches (they must share scenes and seeds).
Writes `versions.md` and `versions.json` (`versions-<tag>.*` for another tag than x4) next to the v2 results.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v1", type=Path, default=RESULTS / "tiny-flux")
    ap.add_argument("--v2", type=Path, default=RESULTS / "tiny-flux-v2-4x")
    ap.add_argument("--native-v1", type=Path, default=RESULTS / "native_quality-tiny-flux-v1.json")
    ap.add_argument("--native-v2", type=Path, default=RESULTS / "native_quality-tiny-flux.json")
    ap.add_argument("--seed", default="3407", help="seed set of the v1 bench the v2 spec repeats ('' = all)")
    ap.add_argument("--tag", default="x4", help="scale tag of the groups to compare (x2, x4, x8)")
    ap.add_argument("--model", default="tiny-flux", help="model name for the title")
    args = ap.parse_args()
    for p in (args.v1 / "results.json", args.v2 / "results.json", args.native_v1, args.native_v2):
        if not p.is_file():
            raise SystemExit(f"missing {p}: run the commands in this script's docstring first")
    v1 = _metrics(json.loads((args.v1 / "results.json").read_text()), args.seed or None, args.tag)
    v2 = _metrics(json.loads((args.v2 / "results.json").read_text()), None, args.tag)
    n1, n2 = json.loads(args.native_v1.read_text()), json.loads(args.native_v2.read_text())
    t1, t2 = targets(n1, v1), targets(n2, v2)
    scale = int(args.tag.lstrip("x"))
    seeds = f"its seed set {args.seed}" if args.seed else "all its seed sets"
    lines = [f"# {args.model} v1 vs v2", "",
             f"{scale}× ({64 * scale}² from 64²); v1 from `{_rel(args.v1)}` ({seeds}), v2 from "
             f"`{_rel(args.v2)}`. Cells: v1 → v2.", "",
             "| method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for m in METHODS:
        if m not in v1 and m not in v2:
            continue
        a, b = v1.get(m, {}), v2.get(m, {})
        cells = [f"{_fmt(a.get(k), s, nd)} → {_fmt(b.get(k), s, nd)}" for k, _, s, nd in COLUMNS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "", "| target | v1 | v2 | goal |", "|---|---|---|---|"]
    rows = [("native FID / floor", "fid_over_floor", "≤ 1.3"), ("sun/moon count wrong (native)",
            "sun_moon_wrong_native", "≤ 0.10"), ("tree count exact (native)", "tree_exact", "≥ 0.75"),
            (f"best {scale}× method (by KID)", "best_method_4x", "—"), ("its HF ratio", "hf_ratio", "≥ 0.6"),
            ("its KID / upscale's KID", "kid_vs_upscale", "≤ 0.8"), ("its sun/moon duplication", "dup_4x", "≤ 0.10")]
    for label, key, goal in rows:
        cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
        lines.append(f"| {label} | {cell(t1.get(key))} | {cell(t2.get(key))} | {goal} |")
    rank = {}
    lines += ["", "## Ranking vs HiFlow Table 1 (4096²)", "",
              "| version | by KID | τ vs published FID order | by FID_patch | τ vs published FID_patch order |",
              "|---|---|---|---|---|"]
    for name, m in (("v1", v1), ("v2", v2)):
        rk, rp = ranking(m, "kid"), ranking(m, "fid_patch")
        rank[name] = {"kid": rk, "fid_patch": rp, "tau_kid": kendall_tau(rk, PUBLISHED["fid"]),
                      "tau_fid_patch": kendall_tau(rp, PUBLISHED["fid_patch"])}
        lines.append(f"| {name} | {' < '.join(rk)} | {rank[name]['tau_kid']:+.2f} | {' < '.join(rp)} | "
                     f"{rank[name]['tau_fid_patch']:+.2f} |")
    lines.append(f"| published | {' < '.join(PUBLISHED['fid'])} (FID) | | {' < '.join(PUBLISHED['fid_patch'])} | |")
    text = "\n".join(lines) + "\n"
    stem = "versions" if args.tag == "x4" else f"versions-{args.tag}"
    (args.v2 / f"{stem}.md").write_text(text)
    (args.v2 / f"{stem}.json").write_text(json.dumps({"v1": v1, "v2": v2, "targets": {"v1": t1, "v2": t2},
                                                       "ranking": rank}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
