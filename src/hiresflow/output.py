"""Write a run's images and metadata: final PNG (parameters also in a PNG text chunk), native PNG, JSON sidecar.

Files are written under temporary names and renamed together at the end, so an interrupted or failed save
leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

__all__ = ["to_pil", "save_run", "run_metadata", "versions"]


def to_pil(img: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] or [3, H, W] in [0, 1] → RGB PIL image (round to nearest 8-bit level)."""
    if img.dim() == 4:
        img = img[0]
    arr = (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def versions() -> dict:
    import diffusers
    import transformers

    from . import __version__

    return {"hiresflow": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def run_metadata(result, model, prompt: str, seed: int, negative_prompt: str = "") -> dict:
    stages = []
    for st in result.stages:
        stages.append({
            "index": st.index, "size": [st.size[1], st.size[0]], "sigma_start": float(st.sigmas[st.start]),
            "steps": int(st.sigmas.numel() - 1 - st.start), "seconds": round(st.seconds, 4),
            "model_seconds": round(st.timings.model_total, 4), "guide_seconds": round(st.timings.guides_total, 4),
            **{k: v for k, v in st.extra.items() if isinstance(v, (int, float, str))},
        })
    h, w = result.image.shape[-2:]
    return {
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "recipe": result.plan.recipe,
        "size": [w, h], "model": model.describe(), "plan": result.plan.to_dict(), "stages": stages,
        "seconds": round(result.seconds, 4), "device": str(model.device), "versions": versions(),
    }


def save_run(result, model, prompt: str, seed: int, out_dir: Path, stem: str, negative_prompt: str = "") -> dict:
    """Write <stem>.png, <stem>-native.png, <stem>.json into out_dir; returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(result, model, prompt, seed, negative_prompt)
    text = json.dumps(meta, indent=2, default=str)
    final = out_dir / f"{stem}.png"
    native = out_dir / f"{stem}-native.png"
    sidecar = out_dir / f"{stem}.json"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps({k: meta[k] for k in ("prompt", "seed", "recipe", "size")} |
                                           {"model": model.name, "params": result.plan.params}, default=str))
    info.add_text("hiresflow", text)
    native_img = result.stages[0].image if result.stages[0].image is not None else model.decode(result.stages[0].latent)
    tmp = {p: p.with_name(f".{p.name}.tmp") for p in (final, native, sidecar)}
    try:
        to_pil(result.image).save(tmp[final], format="PNG", pnginfo=info)
        to_pil(native_img).save(tmp[native], format="PNG")
        tmp[sidecar].write_text(text)
        for p, t in tmp.items():
            os.replace(t, p)
    finally:
        for t in tmp.values():
            if t.exists():
                t.unlink()
    return {"image": final, "native": native, "metadata": sidecar}
