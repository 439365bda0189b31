"""Export trained runs as the embedded diffusers folders (``src/hiresflow/embedded/tiny-flux``, ``tiny-sd``) and
write ``TRAINING.md`` with the commands, steps, batch, wall times and final losses of every run."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from .diffusion import load_trained_pipeline, preview
from .pipelines import save_pipeline

__all__ = ["export_run", "write_training_md", "EMBEDDED_NAMES", "folder_size_mb", "check_folder", "store_weights"]

EMBEDDED_NAMES = {"flux": "tiny-flux", "sd": "tiny-sd"}
DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def folder_size_mb(path: str | Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def store_weights(folder: str | Path, dtype: str = "fp16") -> dict:
    """Rewrite every ``*.safetensors`` under ``folder`` with its floating-point tensors cast to ``dtype``
    (integer tensors and the file metadata are kept). Each file is written beside itself and renamed over it,
    so an interrupted run leaves every file either old or new. Refuses, before writing anything, a tensor whose
    finite values fall outside ``dtype``'s range (fp16: |x| ≤ 65504). hiresflow loads embedded weights as float32
    whatever their stored dtype, so fp16 storage halves the bytes and costs no CPU speed. Returns
    ``{"files": n, "mb_before": ..., "mb_after": ...}``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    target = DTYPES[dtype]
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors files to convert")
    limit = torch.finfo(target).max
    loaded = []
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        for k, t in tensors.items():
            if t.is_floating_point() and t.numel() and float(t.abs().max()) > limit:
                raise ValueError(f"{f}: tensor {k!r} has values beyond {dtype}'s range ({float(t.abs().max()):.4g});"
                                 f" keep this file in fp32")
        loaded.append((f, meta, tensors))
    before = sum(f.stat().st_size for f in files)
    for f, meta, tensors in loaded:
        out = {k: (t.to(target) if t.is_floating_point() else t).contiguous() for k, t in tensors.items()}
        with atomic_path(f) as tmp:
            save_file(out, str(tmp), metadata=meta)
            tmp.chmod(f.stat().st_mode & 0o777)  # keep the file's permissions (the writer creates it owner-only)
    after = sum(f.stat().st_size for f in files)
    return {"files": len(files), "mb_before": round(before / 2**20, 2), "mb_after": round(after / 2**20, 2)}


@torch.no_grad()
def check_folder(folder: str | Path, prompt: str = "a red sun setting over snowy mountains by a lake",
                 steps: int = 8) -> torch.Tensor:
    """Load ``folder`` with ``hiresflow.models.loading.load_model`` (offline) and generate at its native size;
    raises if the image has NaNs. Returns the image [1,3,H,W]."""
    from ..models.loading import load_model

    model = load_model(str(folder), device="cpu")
    side = model.geometry.native[0]
    cond = model.encode_prompt(prompt)
    g = torch.Generator().manual_seed(0)
    c, h, w = model.geometry.latent_shape(side, side)
    sig = model.schedule(steps, (side, side))
    x = float(sig[0]) * torch.randn((1, c, h, w), generator=g)
    for j in range(steps):
        x = x + float(sig[j + 1] - sig[j]) * model.velocity(x, float(sig[j]), cond, guidance=4.0)
    img = model.decode(x)
    if not torch.isfinite(img).all():
        raise RuntimeError(f"{folder}: generated image has non-finite values")
    return img


def export_run(run_dir: str | Path, out_dir: str | Path, dtype: str = "fp16", native_size: int | None = None,
               compare: bool = True, guidance: float | None = None, version: int | None = None) -> dict:
    """Write the EMA weights of a diffusion run as a pipeline folder; with ``compare`` also measure how much
    the stored ``dtype`` changes a preview versus fp32 (PSNR in dB; inf = identical). ``version`` is recorded in
    the card (``hiresflow.json``); a card without one is version 1."""
    pipe, state = load_trained_pipeline(run_dir)
    kind = state["config"]["extra"]["kind"]
    size = int(native_size or state["config"]["extra"].get("size", 64))
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    meta = {"trained_steps": state["step"], "kind": kind}
    if guidance is not None:
        meta["guidance"] = float(guidance)  # recommended classifier-free guidance scale
    if version is not None:
        meta["version"] = int(version)
    init_from = state["config"]["extra"].get("init_from")
    if init_from:
        meta["init_from"] = init_from
    save_pipeline(pipe, tmp, native_size=size, dtype=DTYPES[dtype], extra_meta=meta)
    info = {"kind": kind, "step": state["step"], "dtype": dtype, "size_mb": round(folder_size_mb(tmp), 2)}
    check_folder(tmp)
    if compare:
        from .common import psnr
        from .pipelines import load_pipeline_folder

        ref = preview(pipe, ["a red sun setting over snowy mountains by a lake"], steps=10, size=size)
        low = preview(load_pipeline_folder(tmp), ["a red sun setting over snowy mountains by a lake"], steps=10,
                      size=size)
        info["stored_vs_fp32_psnr"] = round(psnr(low, ref), 2)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return info


def _fmt_s(s: float) -> str:
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m{int(s % 60):02d}s" if s >= 3600 else \
        f"{int(s // 60)}m{int(s % 60):02d}s"


def _run_summary(run_dir: Path) -> dict | None:
    if not (run_dir / "state.json").is_file():
        return None
    state = json.loads((run_dir / "state.json").read_text())
    log = [json.loads(l) for l in (run_dir / "log.jsonl").read_text().splitlines() if l.strip()] \
        if (run_dir / "log.jsonl").is_file() else []
    loss_rows = [r for r in log if "loss" in r]
    tail = loss_rows[-20:]
    keys = sorted({k for r in tail for k in r if k not in ("step", "lr", "wall_s")})
    final = {k: sum(r[k] for r in tail if k in r) / max(1, sum(1 for r in tail if k in r)) for k in keys}
    evals = [r for r in log if any(k.startswith(("eval_", "val_")) for k in r)]
    commands = (run_dir / "commands.txt").read_text().strip().splitlines() if (run_dir / "commands.txt").is_file() else []
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").is_file() else {}
    return {"state": state, "final": final, "last_eval": evals[-1] if evals else None, "commands": commands,
            "result": result}


def _sections(path: Path) -> dict[str, list[str]]:
    """``## name`` sections of an existing TRAINING.md: name -> its lines (heading included)."""
    if not path.is_file():
        return {}
    out: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        if current is not None:
            out[current].append(line)
    for lines in out.values():
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append("")
    return out


def write_training_md(runs: str | Path, out: str | Path, exports: dict[str, dict] | None = None,
                      run_names: tuple[str, ...] = ("vae", "flux", "sd")) -> Path:
    """Summarise the runs in ``runs`` into a Markdown file. A run no longer present under ``runs`` keeps its
    section from the existing file, and so does every section of a run not named in ``run_names`` (so exporting
    one model, or on another machine, does not erase the record of the others)."""
    runs = Path(runs)
    previous = _sections(Path(out))
    lines = ["# Training record of the embedded models", "",
             "Generated by `hiresflow train export` on " + time.strftime("%Y-%m-%d %H:%M") + ". "
             "All runs on CPU (2 shared cores); every command is resumable (rerun it to continue from "
             "`runs/<name>/ckpt.safetensors`).", ""]
    for name in run_names:
        s = _run_summary(runs / name)
        if s is None:
            if name in previous:
                lines += previous[name]
            continue
        st = s["state"]
        cfg = st["config"]
        lines += [f"## {name}", ""]
        if s["commands"]:
            lines += ["Commands (in order; a repeated command is a resumption):", "", "```"]
            lines += s["commands"] + ["```", ""]
        lines += [f"- steps: {st['step']} (target {st['mutable'].get('steps')}), batch {cfg['batch']}, "
                  f"seed {cfg['seed']}, lr {cfg['lr']}, warmup {cfg['warmup']}",
                  f"- wall time: {_fmt_s(st['wall_s'])} ({st['wall_s']:.0f} s)"]
        if s["final"]:
            lines.append("- final losses (mean of the last 20 log entries): "
                         + ", ".join(f"{k} {v:.4g}" for k, v in s["final"].items()))
        if s["last_eval"]:
            lines.append("- last evaluation: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                           for k, v in s["last_eval"].items()))
        res = s["result"]
        if "params" in res:
            lines.append(f"- trainable parameters: {res['params']:,}")
        for k in ("scaling_factor", "shift_factor", "psnr_64"):
            if k in res:
                lines.append(f"- {k}: {res[k]:.5g}")
        extra = cfg.get("extra", {})
        if extra:
            lines.append("- options: `" + json.dumps(extra, sort_keys=True) + "`")
        if exports and name in exports:
            e = exports[name]
            lines.append(f"- exported to `{e.get('folder')}` ({e.get('dtype')}, {e.get('size_mb')} MB"
                         + (f", stored-vs-fp32 preview PSNR {e['stored_vs_fp32_psnr']} dB" if
                            'stored_vs_fp32_psnr' in e else "") + ")")
        lines.append("")
    for name, section in previous.items():  # records of models not exported now (v1, the upsamplers, ...)
        if name not in run_names:
            lines += section
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
