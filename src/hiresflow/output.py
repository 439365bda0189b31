"""Write a run's images and metadata: final PNG, native PNG, JSON sidecar; read a saved image's record back.

The final PNG carries two text chunks: `parameters` in AUTOMATIC1111's plain-text format (prompt, `Negative
prompt:`, then `Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH, Model: …` and hiresflow's fields), which
A1111/Forge/Civitai readers parse, and `hiresflow`, the run record as JSON (prompt, seed, model, the full plan,
versions) — everything needed to re-run it (`hiresflow generate --from IMAGE.png`). Neither holds timings, so the
same run gives the same PNG bytes; wall times go to the JSON sidecar only.
The set (final, native, sidecar) is written under temporary names and renamed together, final image last.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .atomic import atomic_files

__all__ = ["to_pil", "save_run", "run_record", "with_timings", "a1111_parameters", "read_record", "check_record",
           "versions"]


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


def run_record(result, model, prompt: str, seed: int, negative_prompt: str = "", extra: dict | None = None) -> dict:
    """What the run was (deterministic: no timings): enough to re-run it with `Plan.from_dict`. `extra` adds
    fields (e.g. "upscale": the source image of `hiresflow upscale`)."""
    h, w = result.image.shape[-2:]
    stages = [{"index": st.index, "size": [st.size[1], st.size[0]], "sigma_start": float(st.sigmas[st.start]),
               "steps": int(st.sigmas.numel() - 1 - st.start),
               **{k: v for k, v in st.extra.items() if isinstance(v, (int, float, str))}} for st in result.stages]
    return {
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "recipe": result.plan.recipe,
        "size": [w, h], "model": model.describe(), "plan": result.plan.to_dict(), "stages": stages,
        "device": str(model.device), "versions": versions(), **(extra or {}),
    }


def with_timings(record: dict, result) -> dict:
    """The record plus wall seconds of the run and of each stage (model calls and guides separately): the
    JSON sidecar's content."""
    stages = [{**rec, "seconds": round(st.seconds, 4), "model_seconds": round(st.timings.model_total, 4),
               "guide_seconds": round(st.timings.guides_total, 4)} for rec, st in zip(record["stages"], result.stages)]
    return {**record, "stages": stages, "seconds": round(result.seconds, 4)}


def _a1111_value(v) -> str:
    text = str(v)
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def a1111_parameters(record: dict, model_default_guidance: float | None = None) -> str:
    """The AUTOMATIC1111 `parameters` text of a run record."""
    plan = record["plan"]
    stages = plan["stages"]
    native = record["stages"][0]
    guidance = stages[0].get("guidance")
    if guidance is None:
        guidance = model_default_guidance
    fields = {"Steps": native["steps"], "Sampler": "Euler", "CFG scale": guidance if guidance is not None else "",
              "Seed": record["seed"], "Size": f"{record['size'][0]}x{record['size'][1]}",
              "Model": record["model"]["name"]}
    if len(record["stages"]) > 1:
        nw, nh = native["size"]
        fields["Hires upscale"] = round(max(record["size"][0] / nw, record["size"][1] / nh), 4)
        fields["Hires steps"] = sum(s["steps"] for s in record["stages"][1:])
        fields["Denoising strength"] = round(record["stages"][-1]["sigma_start"], 4)
    fields["hiresflow method"] = record["recipe"]
    fields["hiresflow version"] = record["versions"]["hiresflow"]
    line = ", ".join(f"{k}: {_a1111_value(v)}" for k, v in fields.items() if v != "")
    text = record["prompt"]
    if record.get("negative_prompt"):
        text += f"\nNegative prompt: {record['negative_prompt']}"
    return f"{text}\n{line}"


def _save_pause():
    """HIRESFLOW_SAVE_PAUSE=seconds holds a save just before its final rename — a testing aid for killing a run
    mid-save (tests/test_output_safety.py)."""
    from .settings import current

    pause = current().save_pause
    return (lambda: time.sleep(pause)) if pause > 0 else None


def save_run(result, model, prompt: str, seed: int, out_dir: Path, stem: str, negative_prompt: str = "",
             extra: dict | None = None) -> dict:
    """Write <stem>.png, <stem>-native.png, <stem>.json into out_dir; returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = run_record(result, model, prompt, seed, negative_prompt, extra)
    final = out_dir / f"{stem}.png"
    native = out_dir / f"{stem}-native.png"
    sidecar = out_dir / f"{stem}.json"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111_parameters(record, model.default_guidance))
    info.add_text("hiresflow", json.dumps(record, sort_keys=True, default=str))
    native_img = result.stages[0].image if result.stages[0].image is not None else model.decode(result.stages[0].latent)
    with atomic_files([native, sidecar, final], before_last=_save_pause()) as (t_native, t_sidecar, t_final):
        to_pil(native_img).save(t_native, format="PNG")
        t_sidecar.write_text(json.dumps(with_timings(record, result), indent=2, default=str))
        to_pil(result.image).save(t_final, format="PNG", pnginfo=info)
    return {"image": final, "native": native, "metadata": sidecar}


MAX_RECORD_BYTES = 8 << 20  # a record is a few KB; a prompt of 100,000 words is well under 1 MB


def read_record(path: str | Path) -> dict:
    """The run record of a hiresflow PNG (its `hiresflow` chunk) or JSON sidecar, checked as untrusted data
    (`check_record`): every failure is one line naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass a PNG or JSON written by hiresflow generate")
    if path.suffix.lower() == ".json":
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError(f"{path} is {path.stat().st_size >> 20} MB, larger than any hiresflow record; pass the "
                             f"sidecar written by hiresflow")
        try:
            text = path.read_text()
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not UTF-8 text ({err.reason}); pass the sidecar written by hiresflow") from None
    else:
        try:
            with Image.open(path) as img:
                img.load()
                text = img.text.get("hiresflow") if hasattr(img, "text") else None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise ValueError(f"cannot read {path} as an image ({' '.join(str(err).split())[:120]}); pass a PNG "
                             f"written by hiresflow") from None
        if text is None:
            raise ValueError(f"{path} has no hiresflow metadata (no 'hiresflow' PNG chunk); it was not written by "
                             f"hiresflow generate, or the chunk was stripped")
    try:
        record = json.loads(text)
    except RecursionError:
        raise ValueError(f"{path}: the record nests too deeply to be a hiresflow record") from None
    except ValueError as err:  # JSONDecodeError, or an integer of thousands of digits
        raise ValueError(f"{path} holds no valid JSON record ({' '.join(str(err).split())[:100]}); pass a file "
                         f"written by hiresflow") from None
    return check_record(record, path)


def _field_error(path, name: str, what: str, value) -> ValueError:
    shown = type(value).__name__ if isinstance(value, (dict, list)) else repr(value)[:60]
    return ValueError(f"{path}: field {name!r} must be {what}, got {shown}")


def check_record(record, path: str | Path = "record") -> dict:
    """A run record's fields, as untrusted data: its JSON shape bounded (`hiresflow.plan.check_json_shape`), the
    fields a re-run reads typed (prompt, negative_prompt, seed, model.name, plan, upscale). Returns the record."""
    from .checks import SEED_MAX
    from .plan import check_json_shape

    if not isinstance(record, dict) or "plan" not in record or "prompt" not in record:
        raise ValueError(f"{path} holds no hiresflow run record (no plan); pass an image written by hiresflow")
    try:
        check_json_shape(record, "record", max_string=None)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(record["prompt"], str):
        raise _field_error(path, "prompt", "a string", record["prompt"])
    if not isinstance(record.get("negative_prompt", ""), (str, type(None))):
        raise _field_error(path, "negative_prompt", "a string", record["negative_prompt"])
    seed = record.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise _field_error(path, "seed", "an integer in 0…2**64-1", seed)
    model = record.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"].strip():
        raise _field_error(path, "model", "an object with a \"name\" string", model)
    if not isinstance(record["plan"], dict):
        raise _field_error(path, "plan", "an object (a hiresflow plan)", record["plan"])
    upscale = record.get("upscale")
    if upscale is not None and not isinstance(upscale, dict):
        raise _field_error(path, "upscale", "an object", upscale)
    return record
