"""Print the compact Markdown table the README quotes from a bench result (``DIR/results.json``).

    python benchmarks/readme_table.py benchmarks/results/tiny-flux --tag x4
    python benchmarks/readme_table.py benchmarks/results/tiny-flux-8x --tag x8 --labels hiflow,imax

Columns: KID and KID_patch (×10³, with the per-seed-set values when the spec has two seeds), sun/moon
duplication rate, exact object counts, structure vs the native image (SSIM / PSNR), high-frequency energy ratio
vs ground truth, and the median seconds per image. The best value of each column is in bold.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

#: (metric, header, digits, scale, higher is better; None = closest to 1)
COLUMNS = [("kid", "KID×10³↓", 1, 1e3, False), ("kid_patch", "KID_patch×10³↓", 1, 1e3, False),
           ("dup_rate", "sun/moon dup↓", 2, 1.0, False), ("count_acc", "counts exact↑", 2, 1.0, True),
           ("ssim_native", "SSIM_nat↑", 3, 1.0, True), ("psnr_native", "PSNR_nat↑", 1, 1.0, True),
           ("hf_ratio", "HF ratio→1", 2, 1.0, None)]


def _value(metrics: dict, key: str) -> float | None:
    v = (metrics.get(key) or {}).get("value")
    return v if v is not None and math.isfinite(v) else None


def _best(rows: list[dict], key: str, higher: bool | None) -> float | None:
    vals = [v for g in rows if (v := _value(g["metrics"], key)) is not None]
    if len(set(vals)) < 2:
        return None
    if higher is None:
        return min(vals, key=lambda v: abs(math.log(max(v, 1e-12))))
    return max(vals) if higher else min(vals)


def table(results: dict, tag: str, labels: list[str] | None = None, names: dict[str, str] | None = None) -> str:
    groups = [g for g in results["groups"] if g["tag"] == tag and not g.get("error")]
    if labels:
        groups = [g for lab in labels for g in groups if g["label"] == lab]
    if not groups:
        raise SystemExit(f"no evaluated groups with tag {tag!r}; tags: {sorted({g['tag'] for g in results['groups']})}")
    seeds = list(groups[0].get("by_seed") or {})
    w, h = groups[0]["size"]
    head = [f"{w}×{h} (n = {groups[0]['n_images']})"] + [c[1] for c in COLUMNS] + ["s/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {c[0]: _best(groups, c[0], c[4]) for c in COLUMNS}
    fastest = min(g["timing"]["seconds"] for g in groups)
    for g in groups:
        cells = [(names or {}).get(g["label"], g["label"])]
        for key, _, digits, scale, _ in COLUMNS:
            v = _value(g["metrics"], key)
            text = "—" if v is None else f"{v * scale:.{digits}f}"
            if v is not None and best[key] is not None and v == best[key]:
                text = f"**{text}**"
            if key.startswith("kid") and seeds and v is not None:
                per = [_value(g["by_seed"][s], key) for s in seeds]
                text += " (" + " / ".join("—" if p is None else f"{p * scale:.{digits}f}" for p in per) + ")"
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
    args = ap.parse_args()
    f = args.folder / "results.json"
    if not f.is_file():
        raise SystemExit(f"{f} not found; run `hiresflow bench SPEC --out {args.folder}` first")
    results = json.loads(f.read_text())
    print(table(results, args.tag, [x for x in args.labels.split(",") if x] or None))


if __name__ == "__main__":
    main()
