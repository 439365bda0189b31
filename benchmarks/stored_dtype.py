"""How much storing the embedded weights in fp16 changes what the models generate.

    python benchmarks/stored_dtype.py --rev 4b2c1b0 --out benchmarks/results/stored_dtype.json

For each model the fp32 folder is read from git revision `--rev` (the last commit that stored it in fp32; the
clone's history has it) and the current folder (fp16 storage, loaded as float32) is read from the working tree.
Both generate the same prompts, seeds and recipes; the record holds, per model × recipe, the PSNR of the fp16
image against the fp32 one (mean and minimum over the images, dB; inf = identical bytes) and the largest pixel
difference (0–255).

    python benchmarks/stored_dtype.py --native-only

Native quality at n = 200 is measured by `native_quality.py` (the commands in docs/embedded-models.md); the fp32
records it wrote before the change are kept in `benchmarks/results/native_quality-fp32/`. `--native` (implied by
`--native-only`, which skips the image comparison and keeps the record's PSNR rows) adds a table of FID, KID and
the world metrics, fp32 record next to fp16 record, for every model that has both.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

import hiresflow
from hiresflow.atomic import write_result
from hiresflow.eval.image_metrics import psnr
from hiresflow.models.loading import EMBEDDED, EMBEDDED_DIR
from hiresflow.world import prompt_for, sample_scene

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NATIVE_FP32 = RESULTS / "native_quality-fp32"
NATIVE_METRICS = [("fid", "FID", 1.0), ("kid", "KID ×10³", 1000.0), ("time_acc", "time of day agrees (%)", 100.0),
                  ("dup_rate", "sun/moon count ≠ 1 (%)", 100.0), ("tree_acc", "tree count exact (%)", 100.0),
                  ("house_acc", "house count exact (%)", 100.0)]


def native_rows(fp32_dir: Path = NATIVE_FP32, current_dir: Path = RESULTS) -> list[dict]:
    """For each fp32 record ``fp32_dir/native_quality-NAME.json`` with a current (fp16-storage) record of the
    same name, model, n, steps and CFG: the metric, both values and the difference."""
    rows = []
    for old_path in sorted(fp32_dir.glob("native_quality-*.json")):
        new_path = current_dir / old_path.name
        if not new_path.is_file():
            continue
        old, new = (json.loads(p.read_text()) for p in (old_path, new_path))
        if any(old[k] != new[k] for k in ("n", "steps", "guidance")):
            raise SystemExit(f"{new_path} was not measured with the settings of {old_path} (n, steps, CFG)")
        name = old_path.stem.removeprefix("native_quality-")
        for key, label, factor in NATIVE_METRICS:
            a, b = (r[key] if key in r else r["world"][key] for r in (old, new))
            rows.append({"model": name, "metric": label, "fp32": round(factor * a, 2), "fp16": round(factor * b, 2),
                         "change": round(factor * (b - a), 2)})
    return rows


def native_table(rows: list[dict]) -> str:
    lines = ["| model | metric | fp32 storage | fp16 storage | change |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['metric']} | {r['fp32']:g} | {r['fp16']:g} | {r['change']:+g} |" for r in rows]
    return "\n".join(lines)


def folder_at(rev: str, folder: Path, dest: Path) -> Path:
    """Extract `folder` (a path inside the repository) as it was at git revision `rev` into `dest`."""
    rel = folder.resolve().relative_to(ROOT)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, str(rel)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="4b2c1b0", help="git revision whose embedded weights are fp32")
    ap.add_argument("--models", nargs="+", default=["tiny-flux", "tiny-flux-v1", "tiny-sd-v1"])
    ap.add_argument("--recipes", nargs="+", default=["native", "hiflow@4", "dype@4", "anchored@4"],
                    help="RECIPE@SCALE (native: the native-size image of the direct recipe at scale 1)")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--seeds", nargs="+", type=int, default=[3407, 0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stored_dtype.json")
    ap.add_argument("--native", action="store_true", help="add the fp32-vs-fp16 native-quality table")
    ap.add_argument("--native-only", action="store_true", help="only (re)build the native-quality table")
    args = ap.parse_args()
    if args.native_only:
        record = json.loads(args.out.read_text())
        record["native"] = native_rows()
        write_result(args.out.with_suffix(""), record, render(record))
        return
    for m in args.models:
        if m not in EMBEDDED:
            ap.error(f"--models: {m!r} is not an embedded model; use {', '.join(EMBEDDED)}")
    rng = np.random.default_rng(0)
    prompts = [prompt_for(sample_scene(rng)) for _ in range(args.scenes)]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            current = EMBEDDED_DIR / EMBEDDED[name]
            old = folder_at(args.rev, current, Path(tmp) / name)
            for spec in args.recipes:
                recipe, _, scale = spec.partition("@")
                method = "direct" if recipe == "native" else recipe
                scale = 1 if recipe == "native" else int(scale or 4)
                if name.startswith("tiny-sd") and method in ("dype", "anchored"):
                    continue  # DyPE acts on a DiT's RoPE; anchored is a flow-model recipe
                values, worst = [], 0
                for p in prompts:
                    for s in args.seeds:
                        imgs = [np.asarray(hiresflow.generate(str(folder), p, method=method, scale=scale, seed=s,
                                                              device="cpu", progress=False).images[0])
                                for folder in (old, current)]
                        values.append(psnr(imgs[1], imgs[0]))
                        worst = max(worst, int(np.abs(imgs[1].astype(int) - imgs[0].astype(int)).max()))
                rows.append({"model": name, "recipe": spec, "n": len(values),
                             "psnr_mean_db": round(float(np.mean([min(v, 99.0) for v in values])), 2),
                             "psnr_min_db": round(min(values), 2), "max_pixel_diff": worst})
                print(rows[-1], flush=True)
    record = {"rev_fp32": args.rev, "prompts": prompts, "seeds": args.seeds, "rows": rows,
              "seconds": round(time.time() - t0, 1)}
    if args.native:
        record["native"] = native_rows()
    write_result(args.out.with_suffix(""), record, render(record))


def tables(record: dict) -> dict[str, str]:
    """The docs' tables of a record (``benchmarks/docs_pages.py``): ``images`` (PSNR per model × recipe) and,
    when measured, ``native`` (fp32 vs fp16 native quality)."""
    lines = ["| model | recipe | images | PSNR mean (dB) | PSNR min (dB) | max pixel diff (of 255) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['recipe']} | {r['n']} | {r['psnr_mean_db']} | {r['psnr_min_db']} | "
              f"{r['max_pixel_diff']} |" for r in record["rows"]]
    out = {"images": "\n".join(lines)}
    if record.get("native"):
        out["native"] = native_table(record["native"])
    return out


def render(record: dict) -> str:
    """The markdown of a record: the image PSNR table, then the native-quality table when present."""
    t = tables(record)
    lines = [f"fp16-stored vs fp32-stored weights (fp32 at {record['rev_fp32']}), {len(record['prompts'])} prompts "
             f"x {len(record['seeds'])} seeds", "", t["images"]]
    if "native" in t:
        lines += ["", t["native"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
