"""Print the compact Markdown table the README quotes from a bench result (``DIR/results.json``).

    python benchmarks/readme_table.py benchmarks/results/tiny-flux --tag x4
    python benchmarks/readme_table.py benchmarks/results/tiny-flux-8x --tag x8 --labels hiflow,imax
    python benchmarks/readme_table.py benchmarks/results/tiny-flux-cfm --tag x2 --metrics psnr_gt,ssim_gt,fid

Columns: the metrics the registry (`hiresflow.eval.metrics`) marks for the README table — KID and KID_patch
(×10³, with the per-seed-set values when the spec has two seeds), sun/moon duplication rate, exact object counts,
structure vs the native image (SSIM / PSNR), high-frequency energy ratio vs ground truth — and the median seconds
per image (`--metrics KEY,...` shows those registry metrics instead). The best value of each column is in bold.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from hiresflow.eval import metrics as registry
from hiresflow.eval.layout import BenchLayout
from hiresflow.eval.metrics import README


def _value(metrics: dict, key: str) -> float | None:
    v = (metrics.get(key) or {}).get("value")
    return v if v is not None and math.isfinite(v) else None


def table(results: dict, tag: str, labels: list[str] | None = None, names: dict[str, str] | None = None,
          metrics: list[str] | None = None, spread: str = "seeds") -> str:
    """The README table of one resolution tag: the registry's README columns (`metrics.columns(README)`), or the
    registry metrics named in `metrics` (keys, in that order), then the median seconds per image. Per-seed columns
    show the value per seed set (`spread="seeds"`) or ± the metric's std over its subsets (`spread="std"`)."""
    if spread not in ("seeds", "std"):
        raise SystemExit(f"spread must be 'seeds' or 'std', got {spread!r}")
    groups = [g for g in results["groups"] if g["tag"] == tag and not g.get("error")]
    if labels:
        groups = [g for lab in labels for g in groups if g["label"] == lab]
    if not groups:
        raise SystemExit(f"no evaluated groups with tag {tag!r}; tags: {sorted({g['tag'] for g in results['groups']})}")
    cols = [registry.get(k) for k in metrics] if metrics else registry.columns(README)
    seeds = list(groups[0].get("by_seed") or {})
    w, h = groups[0]["size"]
    head = [f"{w}×{h} (n = {groups[0]['n_images']})"] + [m.header(README) for m in cols] + ["s/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {m.key: m.best([v for g in groups if (v := _value(g["metrics"], m.key)) is not None]) for m in cols}
    fastest = min(g["timing"]["seconds"] for g in groups)
    for g in groups:
        cells = [(names or {}).get(g["label"], g["label"])]
        for m in cols:
            v = _value(g["metrics"], m.key)
            text = "—" if v is None else m.format(v, README)
            if v is not None and best[m.key] is not None and v == best[m.key]:
                text = f"**{text}**"
            std = (g["metrics"].get(m.key) or {}).get("std")
            if spread == "std" and m.column(README).by_seed and v is not None and std:
                text += f" ± {m.format(std, README)}"
            elif spread == "seeds" and m.column(README).by_seed and seeds and v is not None:
                per = [_value(g["by_seed"][s], m.key) for s in seeds]
                text += " (" + " / ".join("—" if p is None else m.format(p, README) for p in per) + ")"
            cells.append(text)
        t = g["timing"]["seconds"]
        cells.append(f"**{t:.1f}**" if t == fastest else f"{t:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="bench output folder (with results.json)")
    ap.add_argument("--tag", required=True, help="resolution tag, e.g. x4")
    ap.add_argument("--labels", default="", help="comma-separated labels in order (default: all)")
    ap.add_argument("--metrics", default="", help="comma-separated metric keys in order (default: the README columns)")
    args = ap.parse_args()
    f = BenchLayout(args.folder).results_json
    if not f.is_file():
        raise SystemExit(f"{f} not found; run `hiresflow bench SPEC --out {args.folder}` first")
    results = json.loads(f.read_text())
    print(table(results, args.tag, [x for x in args.labels.split(",") if x] or None,
                metrics=[x for x in args.metrics.split(",") if x] or None))


if __name__ == "__main__":
    main()
