"""CFM upsamplers on *paired* ground truth (the setting of the CFM paper's Table 3): held-out reference-world
views rendered at 64 px (input) and 128 px (truth); every upsampler maps the encoded 64 px view to 128 px and
is scored by PSNR / SSIM of the decode against the 128 px render, and by seconds per image (upsampler only,
batch 1 timing from a batched run). Not a `hiresflow bench` (those start from generated images, which have no
paired truth).

    python benchmarks/cfm_paired.py [--n 128] [--threads 1] [--out benchmarks/results/tiny-flux-cfm/paired]

Rows: bicubic (pixels), PSU alone (decode → bilinear → encode → decode), L2 regression, naive FM, CFM at
several NFE, and the noise-augmentation sweep (short runs) when their folders exist under --runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hiresflow.cfm.model import load_upsampler, to_cfm_space
from hiresflow.cfm.upsample import upsample
from hiresflow.eval.image_metrics import psnr, ssim
from hiresflow.models.loading import EMBEDDED_DIR
from hiresflow.train.cfm import _load_vae, build_pair_cache
from hiresflow.train.data import file_digest, world_source


def _scores(img: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    ps = [min(psnr(a, b), 100.0) for a, b in zip(img, gt)]
    ss = [ssim(a, b) for a, b in zip(img, gt)]
    return sum(ps) / len(ps), sum(ss) / len(ss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="benchmarks/results/tiny-flux-cfm/paired")
    ap.add_argument("--nfe", default="1,2,4,10,40")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    vae, vae_dir = _load_vae("")
    cache, images = build_pair_cache(Path(args.runs) / "cache" / f"cfm-test-64x2-n{args.n}.safetensors", vae,
                                     world_source(), n=args.n, native=64, scale=2, seed=1, stream="cfm-test",
                                     vae_digest=file_digest(vae_dir), keep_images=True)
    gt = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    sf, sh = float(vae.config.scaling_factor), float(vae.config.shift_factor or 0.0)

    def dec(z_norm: torch.Tensor) -> torch.Tensor:
        return vae.decode(z_norm / sf + sh).sample.add(1).div(2).clamp(0, 1)

    rows = []

    def add(label: str, img: torch.Tensor, seconds: float, note: str = "") -> None:
        p, s = _scores(img, gt)
        rows.append({"method": label, "psnr": round(p, 3), "ssim": round(s, 4),
                     "s_per_image": round(seconds / len(gt), 5), "note": note})
        print(rows[-1], flush=True)

    with torch.no_grad():
        lo = dec(to_cfm_space(cache.t["lr"].float(), _Meta(sf, sh)))
        t0 = time.perf_counter()
        bic = F.interpolate(lo, size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        add("bicubic", bic, time.perf_counter() - t0, "decoded 64 px view, bicubic in pixels")
        add("psu", dec(to_cfm_space(cache.t["psu"].float(), _Meta(sf, sh))), 0.0, "PSU latent decoded (no model)")
        models = [("l2-regression", Path("benchmarks/models/regression-x2"), [1]),
                  ("fm", Path("benchmarks/models/fm-x2"), [10, 40]),
                  ("cfm", EMBEDDED_DIR / "cfm-x2", [int(k) for k in args.nfe.split(",")])]
        for t in (0, 200, 400, 600):
            models.append((f"cfm-t{t}-short", Path(args.runs) / f"cfm-x2-t{t}-short" / "upsampler", [10]))
        for label, folder, nfes in models:
            if not (folder / "config.json").is_file():
                why = " (bash benchmarks/cfm_ablation_models.sh builds it)" if "benchmarks/models" in str(folder) else ""
                print(f"skip {label}: no {folder}{why}")
                continue
            up = load_upsampler(folder)
            z_lr = to_cfm_space(cache.t["lr"].float(), up.meta)
            cond = to_cfm_space(cache.t["psu"].float(), up.meta)
            for nfe in nfes:
                g = torch.Generator().manual_seed(0)
                t0 = time.perf_counter()
                z = upsample(up, z_lr, vae, nfe=nfe, generator=g, cond=cond)
                sec = time.perf_counter() - t0
                name = label if up.meta.objective == "regression" else f"{label}-nfe{nfe}"
                add(name, dec(z), sec, f"t_aug {up.meta.t_aug}, steps {up.meta.training.get('steps')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"n": len(gt), "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(data))


def tables(data: dict) -> dict[str, str]:
    """The table of ``paired.json`` (``paired``): PSNR / SSIM against the paired truth and seconds per image."""
    lines = ["| Method | PSNR↑ | SSIM↑ | s/img | note |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['s_per_image']:.4f} | {r['note']} |"
              for r in data["rows"]]
    return {"paired": "\n".join(lines)}


def render_markdown(data: dict) -> str:
    """``paired.md`` from ``paired.json`` alone."""
    return "\n".join([f"# CFM upsamplers on paired ground truth (n = {data['n']} held-out views, 64 → 128 px)", "",
                      "Generated by `python benchmarks/cfm_paired.py`. Seconds: the upsampler alone (PSU condition "
                      "precomputed), batched, per image, 1 thread.", "", tables(data)["paired"]]) + "\n"


class _Meta:
    def __init__(self, scale: float, shift: float):
        self.scaling_factor, self.shift_factor = scale, shift


if __name__ == "__main__":
    main()
