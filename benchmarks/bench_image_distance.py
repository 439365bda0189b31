"""How far each row of a bench lies from a reference row, image by image: what a recipe changes in pixels.

    python benchmarks/bench_image_distance.py benchmarks/results/anchored-tuning --ref upscale-realesrgan-vae \\
        --out benchmarks/results/anchored-tuning/distance-to-sr-vae

For every label of the bench folder's per-image outputs (OUT/images/MODEL/TAG/LABEL/STEM.png) and every image stem
it shares with the reference label, the mean absolute difference in 8-bit levels (0–255) and the PSNR in dB
between the two images; the table gives the mean over the stems. A row at a fraction of a level from the reference
is, to the eye and to every metric, the reference image: whatever else the recipe ran left no trace.
Reads only the PNGs the bench wrote (regenerate them with the bench command first; they are not committed).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from hiresflow.atomic import write_result
from hiresflow.eval.layout import BenchLayout


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def _first_folder(parent: Path, bench: Path) -> str:
    found = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    if not found:
        raise SystemExit(f"{parent}: no per-image outputs; run the bench command of {bench} first")
    return found[0]


def distances(folder: Path, ref: str, model: str | None = None, tag: str | None = None) -> dict:
    """{model, tag, ref, rows: [{label, n, mean_abs_levels, psnr_db}]} over the stems each label shares with `ref`
    (closest first). PSNR is the mean over the images that differ at all (None: every image identical)."""
    layout = BenchLayout(folder)
    model = model or _first_folder(layout.images, folder)
    tag = tag or _first_folder(layout.images / model, folder)
    ref_dir = layout.group_dir(model, tag, ref)
    base = ref_dir.parent
    if not ref_dir.is_dir():
        have = ", ".join(sorted(p.name for p in base.iterdir() if p.is_dir())) if base.is_dir() else "none"
        raise SystemExit(f"{ref_dir}: no images of the reference label {ref!r}; labels with images: {have}")
    ref_stems = {p.name for p in ref_dir.glob("*.png") if not p.stem.endswith("-native")}
    rows = []
    for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and p != ref_dir):
        stems = sorted(ref_stems & {p.name for p in label_dir.glob("*.png")})
        if not stems:
            continue
        abs_diffs, psnrs = [], []
        for name in stems:
            a, b = _pixels(label_dir / name), _pixels(ref_dir / name)
            if a.shape != b.shape:
                raise SystemExit(f"{label_dir / name}: {a.shape[1]}x{a.shape[0]} px, but the reference image is "
                                 f"{b.shape[1]}x{b.shape[0]}: compare rows of one size tag (--tag)")
            mse = float(((a - b) ** 2).mean())
            abs_diffs.append(float(np.abs(a - b).mean()))
            psnrs.append(math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse))
        finite = [p for p in psnrs if math.isfinite(p)]
        rows.append({"label": label_dir.name, "n": len(stems), "mean_abs_levels": round(float(np.mean(abs_diffs)), 3),
                     "psnr_db": round(float(np.mean(finite)), 2) if finite else None})
    rows.sort(key=lambda r: r["mean_abs_levels"])
    return {"bench": str(folder), "model": model, "tag": tag, "ref": ref, "rows": rows}


def table(data: dict) -> str:
    lines = [f"{data['model']} {data['tag']}: distance of each row's images to those of `{data['ref']}` "
             f"(same prompt and seed), mean over the images", "",
             "| row | images | mean \\|Δ\\| (8-bit levels) | PSNR (dB) |", "|---|---|---|---|"]
    for r in data["rows"]:
        psnr = "identical" if r["psnr_db"] is None else f"{r['psnr_db']:.1f}"
        lines.append(f"| {r['label']} | {r['n']} | {r['mean_abs_levels']:.2f} | {psnr} |")
    return "\n".join(lines)


def tables(data: dict) -> dict[str, str]:
    """The docs' table of a bench_image_distance JSON (`distance`)."""
    return {"distance": table(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a bench output folder (with images/)")
    ap.add_argument("--ref", required=True, help="the label every other row is compared with")
    ap.add_argument("--model", default=None, help="default: the first model folder")
    ap.add_argument("--tag", default=None, help="size tag, e.g. x4 (default: the first)")
    ap.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = ap.parse_args()
    data = distances(args.bench, args.ref, args.model, args.tag)
    text = table(data)
    if args.out is not None:
        write_result(args.out, data, text)
    print(text)


if __name__ == "__main__":
    main()
