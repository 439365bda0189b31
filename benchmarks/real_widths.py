"""The memory predictor (`hiresflow.memory_plan`) against measured peak RSS, on real-width architectures.

Random weights, published widths: the FLUX.1-dev transformer with 1 double + 1 single block (every width of the
real model: 3072 = 24 heads × 128, T5 context 4096 × 512 tokens, the 4× MLP), the FLUX VAE and the SDXL VAE (the
real decoders: 128/256/512/512 channels, 2 resnets per level, mid-block attention). Each case runs in a fresh
process, one torch thread: build the module, `malloc_trim`, reset the kernel's high-water mark
(`/proc/self/clear_refs` ← 5), run one call under `torch.inference_mode`, read `VmHWM`. Measured = VmHWM minus the
RSS before the module was built (weights — parameters and buffers, such as SD3's 192² positional table — plus inputs
plus the call's peak activations); predicted = the same three terms from `hiresflow.memory_plan` (weights from the
architecture built on the meta device, activations from the per-block and per-decoder counts stated in that module).
The activation part alone is reported beside it.

Published configs of newer families under tests/models/data/real_configs/*.json (one file per family:
{"family": …, "transformer_class": …, "transformer": {config}, "vae_class": …, "vae": {config}}) are read too
(`real_config_cases`): their transformer is built with 1 (double) + 1 (single) block(s) and called with the inputs
its adapter passes (`memory_plan.example_inputs`: Chroma's T5-only context and [text; image] mask, FLUX.2's 4-axis
ids, Qwen-Image's `img_shapes` and text mask, Z-Image's per-image lists, SD3's latents and pooled projections); one
step is timed at 512² (a smoke size), 1024² and 2048², and one decode of the family's VAE at 512² and 1024²
(`memory_plan.example_latents`: a frame axis of 1 for Qwen-Image's causal 3-D VAE). The .md lists them in a
table of their own, with the cases that were left out and why (a 2048² step only where the 1024² step took under
FAMILY_STEP_LIMIT_S on the shared machine).

    nice -n 10 python benchmarks/real_widths.py --out benchmarks/results/real_widths      # .json and .md
    python benchmarks/real_widths.py --cases flux-1024,vae-flux-1024 --out /tmp/rw            # a subset
    nice -n 5 python benchmarks/real_widths.py --cases qwenimage-1024 --out benchmarks/results/real_widths --merge
    python benchmarks/real_widths.py --out benchmarks/results/real_widths --merge --rescore  # predictions redone
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL_CONFIGS = ROOT / "tests" / "models" / "data" / "real_configs"

# case name -> (kind, architecture, image side, options)
CASES: dict[str, tuple[str, str, int, dict]] = {
    "flux-512": ("transformer", "flux-dev", 512, {"blocks": (1, 1)}),
    "flux-1024": ("transformer", "flux-dev", 1024, {"blocks": (1, 1)}),
    "vae-flux-512": ("decode", "flux-dev", 512, {}),
    "vae-flux-1024": ("decode", "flux-dev", 1024, {}),
    "vae-flux-1024-tiled": ("decode", "flux-dev", 1024, {"tile": 512}),
    "vae-sdxl-512": ("decode", "sdxl", 512, {}),
    "vae-sdxl-1024": ("decode", "sdxl", 1024, {}),
    "vae-flux-2048-tiled": ("decode", "flux-dev", 2048, {"tile": 512}),
}
DEFAULT_CASES = ["flux-512", "vae-flux-512", "vae-sdxl-512", "flux-1024", "vae-flux-1024", "vae-sdxl-1024",
                 "vae-flux-1024-tiled"]

CHILD = r"""
import ctypes, json, sys, time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
from hiresflow import memory_plan as mp

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

libc = ctypes.CDLL("libc.so.6")
spec = json.loads(sys.argv[1])
arch = mp.architecture_from_dict(spec["arch"]) if "arch" in spec else mp.ARCHITECTURES[spec["name"]]
libc.malloc_trim(0)
base = rss()
if spec["kind"] == "transformer":
    module = mp.build_module(arch.denoiser, blocks=tuple(spec.get("blocks", (1, 1))), refiners=spec.get("refiners"))
    inputs = mp.example_inputs(arch, module, spec["size"])
else:
    module = mp.build_module(arch.vae)
    if spec.get("tile"):
        module.tile_sample_min_size = spec["tile"]
        module.tile_latent_min_size = spec["tile"] // arch.vae.factor
        module.enable_tiling()
    z = mp.example_latents(arch.vae, spec["size"])
weights = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
libc.malloc_trim(0)
before = rss()
open("/proc/self/clear_refs", "w").write("5")
t0 = time.perf_counter()
with torch.inference_mode():
    if spec["kind"] == "transformer":
        module(**inputs)
    else:
        module.decode(z).sample
seconds = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"weights": weights, "base": base, "before": before, "peak": peak, "seconds": seconds}))
"""


def real_config_cases() -> dict[str, tuple[str, str, int, dict]]:
    """One transformer step at 512² (a smoke size), 1024² and 2048² and one decode at 512² and 1024² per published
    config file. Blocks kept: 1 double + 1 single where the family has both lists (Chroma, FLUX.2), else 1 block
    (Qwen-Image, SD3.5, Z-Image); Z-Image's noise and context refiners 1 layer each (2 each as published)."""
    out: dict[str, tuple[str, str, int, dict]] = {}
    if not REAL_CONFIGS.is_dir():
        return out
    for path in sorted(REAL_CONFIGS.glob("*.json")):
        fam = path.stem
        opts = {"blocks": (1, 1)}
        if "n_refiner_layers" in json.loads(path.read_text()).get("transformer", {}):
            opts["refiners"] = 1
        for size in (512, 1024, 2048):
            out[f"{fam}-{size}"] = ("transformer", f"file:{path}", size, dict(opts))
        for size in (512, 1024):
            out[f"vae-{fam}-{size}"] = ("decode", f"file:{path}", size, {})
    return out


def child_spec(kind: str, arch: str, size: int, opts: dict) -> dict:
    spec = {"kind": kind, "size": size, **opts}
    if arch.startswith("file:"):
        spec["arch"] = json.loads(Path(arch[5:]).read_text())
    else:
        spec["name"] = arch
    return spec


def predict(kind: str, arch_name: str, size: int, opts: dict, weights: int) -> dict:
    """Predicted bytes of the measured quantity: weights + inputs + activations of one call."""
    from hiresflow import memory_plan as mp

    arch = (mp.architecture_from_dict(json.loads(Path(arch_name[5:]).read_text())) if arch_name.startswith("file:")
            else mp.ARCHITECTURES[arch_name])
    if kind == "transformer":
        act = mp.denoiser_call_bytes(arch, (size, size), dtype_bytes=4, batch=1, device="cpu")
        inputs = mp.denoiser_input_bytes(arch, (size, size), dtype_bytes=4)
    else:
        act = mp.vae_decode_bytes(arch.vae, (size, size), dtype_bytes=4, tile=opts.get("tile"), device="cpu")
        inputs = arch.vae.latent_channels * (size // arch.vae.factor) ** 2 * 4  # a frame axis of 1 adds nothing
    return {"weights": weights, "inputs": inputs, "activations": act, "total": weights + inputs + act}


def run_case(name: str, kind: str, arch: str, size: int, opts: dict) -> dict:
    spec = child_spec(kind, arch, size, opts)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"case": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    measured_total = m["peak"] - m["base"]
    measured_act = m["peak"] - m["before"]
    pred = predict(kind, arch, size, opts, m["weights"])
    pred_act = pred["activations"]
    return {"case": name, "kind": kind, "architecture": arch if not arch.startswith("file:") else Path(arch[5:]).stem,
            "size": size, **{k: v for k, v in opts.items() if k != "blocks"},
            "blocks": list(opts["blocks"]) if "blocks" in opts else None,
            "seconds": round(m["seconds"], 2), "weights_mb": round(m["weights"] / 2**20, 1),
            "measured_mb": round(measured_total / 2**20, 1), "predicted_mb": round(pred["total"] / 2**20, 1),
            "error": round(pred["total"] / measured_total - 1, 3),
            "measured_activation_mb": round(measured_act / 2**20, 1),
            "predicted_activation_mb": round((pred_act + pred["inputs"]) / 2**20, 1)}


def rescore(row: dict, cases: dict) -> dict:
    """A logged measurement with its prediction recomputed by the current predictor."""
    kind, arch, size, opts = cases[row["case"]]
    weights = int(row["weights_mb"] * 2**20)
    pred = predict(kind, arch, size, opts, weights)
    measured = row["measured_mb"] * 2**20
    row.update(predicted_mb=round(pred["total"] / 2**20, 1), error=round(pred["total"] / measured - 1, 3),
               predicted_activation_mb=round((pred["activations"] + pred["inputs"]) / 2**20, 1))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| case | architecture | size | seconds | weights MB | predicted MB | measured MB | error | "
             "activations predicted / measured MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "measured_mb" not in r:
            lines.append(f"| {r['case']} | failed: {r.get('error')} | | | | | | | |")
            continue
        size = f"{r['size']}²" + (f" (tiles of {r['tile']})" if r.get("tile") else "")
        lines.append(f"| {r['case']} | {r['architecture']} | {size} | {r['seconds']} | {r['weights_mb']} | "
                     f"{r['predicted_mb']} | {r['measured_mb']} | {r['error'] * 100:+.1f} % | "
                     f"{r['predicted_activation_mb']} / {r['measured_activation_mb']} |")
    return "\n".join(lines)


def _decoder(fam: str) -> tuple:
    """A family's VAE class and config without the latent scaling / shift factors (what decode's cost depends on)."""
    d = json.loads((REAL_CONFIGS / f"{fam}.json").read_text())
    cfg = {k: v for k, v in (d.get("vae") or {}).items() if k not in ("scaling_factor", "shift_factor")}
    return d.get("vae_class"), json.dumps(cfg, sort_keys=True)


FAMILY_STEP_LIMIT_S = 120  # a 2048² step is run only where the family's 1024² step took less (shared 2-core machine)


def family_section(rows: list[dict]) -> str:
    """The per-family table (published configs under REAL_CONFIGS) and what it leaves out, from the rows."""
    fams = sorted(p.stem for p in REAL_CONFIGS.glob("*.json")) if REAL_CONFIGS.is_dir() else []
    fam_cases = real_config_cases()
    mine = [r for r in rows if r["case"] in fam_cases]
    if not mine:
        return ""
    out = ["", "## Per model family (published configs, random weights)", "",
           ("The transformer of each family's published config (tests/models/data/real_configs/*.json) with 1 double "
            "+ 1 single block (Chroma, FLUX.2) or 1 block (Qwen-Image, SD3.5 large, Z-Image; Z-Image's noise and "
            "context refiners cut from 2 to 1 layer each), every width as published; batch 1, float32, the inputs "
            "each adapter passes (`hiresflow.memory_plan.example_inputs`) with text of the pipeline's default length "
            "(512 tokens; SD3.5 77 CLIP + 256 T5 = 333). The VAE is the family's own decoder at full size "
            "(Chroma, SD3.5 and Z-Image ship the FLUX.1 AutoencoderKL; FLUX.2 AutoencoderKLFlux2 with 32 latent "
            "channels; Qwen-Image the causal 3-D AutoencoderKLQwenImage, latents with a frame axis of 1)."), "",
           table(mine), "",
           ("Which rows check the predictor and which set it (`memory_plan._dit_counts`, `_vae_maps`): Chroma's "
            "rows use FLUX.1's count plus the N×N mask its blocks build, and the FLUX-style decoders' 8 CPU maps "
            "were read off the 512² FLUX.1/SDXL decodes, so `chroma-*`, `vae-chroma-1024` and `vae-flux2-1024` are "
            "independent checks; the per-token maps of SD3 and Qwen-Image were fitted on their 1024² and 2048² rows, "
            "FLUX.2's on its 512² and 1024² rows, Z-Image's on `zimage-1024` (`zimage-2048`, where present, checks "
            "it) and Qwen-Image's decoder maps on `vae-qwenimage-1024`. Measured totals also hold ~200 MB of "
            "process growth the prediction leaves out (libraries loaded on first use; the activation column "
            "excludes it)."), ""]
    left = []
    for fam in fams:
        have = {r["case"]: r for r in mine if r["case"].replace("vae-", "").rsplit("-", 1)[0] == fam
                and "measured_mb" in r}
        step = have.get(f"{fam}-1024")
        if f"{fam}-2048" not in have:
            if step is not None and step["seconds"] >= FAMILY_STEP_LIMIT_S:
                left.append(f"- `{fam}-2048`: not run, the 1024² step took {step['seconds']:.0f} s "
                            f"(≥ {FAMILY_STEP_LIMIT_S} s on this shared machine; 2048² has 3.7× the tokens and "
                            f"attention grows with their square)")
            elif step is None:
                left.append(f"- `{fam}-1024`, `{fam}-2048`: not measured yet")
        if f"vae-{fam}-1024" not in have:
            twin = next((o for o in fams if o != fam and _decoder(o) == _decoder(fam)
                         and any(r["case"] == f"vae-{o}-1024" and "measured_mb" in r for r in mine)), None)
            left.append(f"- `vae-{fam}-1024`: " + (
                f"not run; the same decoder as `vae-{twin}-1024` (the VAE configs differ only in the latent "
                f"scaling and shift factors, which decode does not use)" if twin else
                "not measured (a 1024² decode takes many minutes on one shared core)"))
    if left:
        out += ["Left out:", "", *left, ""]
    return "\n".join(out)


def tables(data: dict) -> dict[str, str]:
    """The tables of real_widths.json: `flux` (the FLUX.1 and SDXL cases), `families` (the rows of the published
    family configs) and `family-section` (that table with its prose and what it leaves out, as in the .md)."""
    fam_cases = real_config_cases()
    rows = data["rows"]
    return {"flux": table([r for r in rows if r["case"] not in fam_cases]),
            "families": table([r for r in rows if r["case"] in fam_cases]), "family-section": family_section(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated case names (or 'all')")
    ap.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    ap.add_argument("--merge", action="store_true", help="keep the other cases already in STEM.json")
    ap.add_argument("--from-log", type=Path, default=None,
                    help="rebuild the table from the JSON lines a run printed (measurements kept, predictions redone)")
    ap.add_argument("--rescore", action="store_true",
                    help="with --merge: redo the predictions of the family rows in STEM.json, run nothing")
    args = ap.parse_args()
    cases = {**CASES, **real_config_cases()}
    names = list(cases) if args.cases == "all" else [c for c in args.cases.split(",") if c]
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(cases)}")
    if args.rescore:
        names = []
    rows = []
    if args.merge and args.out and args.out.with_suffix(".json").is_file():
        rows = [r for r in json.loads(args.out.with_suffix(".json").read_text())["rows"] if r["case"] not in names]
    t0 = time.perf_counter()
    if args.rescore:  # the family rows' predictions redone by the current predictor (FLUX.1 rows as logged)
        fam_cases = real_config_cases()
        rows = [rescore(r, cases) if r["case"] in fam_cases and "measured_mb" in r else r for r in rows]
    if args.from_log is not None:
        names = []
        for line in args.from_log.read_text().splitlines():
            if line.startswith("{") and '"measured_mb"' in line:
                rows.append(rescore(json.loads(line), cases))
    for name in names:
        row = run_case(name, *cases[name])
        print(json.dumps(row), flush=True)
        rows.append(row)
    order = {n: i for i, n in enumerate(cases)}
    rows.sort(key=lambda r: order.get(r["case"], len(order)))
    import torch

    result = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread",
              "torch": torch.__version__, "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        parts = tables(result)
        args.out.with_suffix(".md").write_text(parts["flux"] + "\n" + parts["family-section"])
    print(table(rows) + "\n" + family_section(rows))


if __name__ == "__main__":
    main()
