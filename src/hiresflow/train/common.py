"""Shared training machinery: run folders, resumable checkpoints, loss logs, EMA, determinism helpers.

A run lives in ``<runs>/<name>/``:

* ``ckpt.safetensors``: every tensor needed to continue (``model.*`` trainable weights, ``ema.*`` EMA weights,
  ``optim.<i>.<key>`` optimizer state), written atomically (temporary name, then ``os.replace``);
* ``state.json``: step, wall time so far, the run's config (checked on resume), the optimizer's param groups
  and any extra state of the trainer;
* ``log.jsonl``: one JSON object per logged step (entries past the checkpoint are dropped on resume, so the log
  of an interrupted-and-resumed run equals the log of an uninterrupted one);
* ``samples/``: PNG previews.

Determinism: nothing is drawn from a global RNG. The data of step k comes from ``step_seed(seed, k, stream)``,
so a run resumed at step k draws exactly the batches an uninterrupted run would, and the same ``--seed`` gives
the same batches.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_text_atomic

__all__ = [
    "EMA",
    "Run",
    "TrainSpec",
    "ConfigMismatch",
    "step_seed",
    "step_generator",
    "set_threads",
    "lr_at",
    "save_png",
    "to_uint8",
    "train_loop",
    "psnr",
]

CKPT = "ckpt.safetensors"
STATE = "state.json"
LOG = "log.jsonl"


class ConfigMismatch(ValueError):
    """A resumed run was started with a different config."""


def step_seed(seed: int, step: int, stream: str = "data") -> int:
    """Independent 63-bit seed for (run seed, step, stream name); stable across Python/torch versions."""
    h = (int(seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9 + zlib.crc32(stream.encode())) % (2**64)
    h ^= h >> 31
    h = (h * 0x94D049BB133111EB) % (2**64)
    h ^= h >> 29
    return h % (2**63 - 1)


def step_generator(seed: int, step: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, stream))


def set_threads(threads: int | None) -> None:
    """Set torch's thread count and flush denormals to zero (denormal weights/Adam moments can slow CPU
    training many-fold)."""
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass


def lr_at(step: int, base: float, warmup: int, total: int, final_frac: float = 0.1, decay: str = "cosine") -> float:
    """Linear warmup, then cosine decay to ``final_frac * base`` at ``total`` (``decay="constant"`` keeps base)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if decay == "constant" or total <= warmup:
        return base
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [0,1] → uint8 NHWC."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(path: str | os.PathLike, grid: np.ndarray | torch.Tensor, cols: int | None = None, scale: int = 1) -> Path:
    """Save a batch (uint8 NHWC array or [B,3,H,W] float tensor in [0,1]) as one grid PNG."""
    from PIL import Image

    arr = to_uint8(grid) if isinstance(grid, torch.Tensor) else np.asarray(grid)
    n, h, w, c = arr.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    canvas = np.full((rows * (h + 2), cols * (w + 2), c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * (h + 2): r * (h + 2) + h, q * (w + 2): q * (w + 2) + w] = arr[i]
    img = Image.fromarray(canvas)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0,1]."""
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class EMA:
    """Exponential moving average of a module's floating-point parameters (decay warmed up as (1+k)/(10+k))."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.shadow = {k: p.detach().clone() for k, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, p in module.named_parameters():
            self.shadow[k].mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for k, p in module.named_parameters():
            p.copy_(self.shadow[k])

    @contextmanager
    def applied(self, module: torch.nn.Module) -> Iterator[None]:
        """Temporarily swap the EMA weights into ``module``."""
        backup = {k: p.detach().clone() for k, p in module.named_parameters()}
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in module.named_parameters():
                    p.copy_(backup[k])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return x


@dataclass
class TrainSpec:
    """What every trainer shares: run folder, seed, length, batch, threads, checkpoint/log/sample cadence."""

    name: str
    runs: str = "runs"
    seed: int = 0
    steps: int = 1000
    batch: int = 32
    threads: int | None = None
    lr: float = 1e-3
    warmup: int = 100
    ckpt_every_s: float = 180.0
    log_every: int = 10
    sample_every: int = 500
    progress: bool = True
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps of this invocation
    extra: dict = field(default_factory=dict)

    # fields that may change between a run and its resumption
    MUTABLE = ("runs", "steps", "threads", "ckpt_every_s", "log_every", "sample_every", "progress", "stop_after")

    def __post_init__(self) -> None:
        def positive_int(name, v, minimum=1):
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {v!r}")

        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"--name must be a plain folder name, got {self.name!r}")
        positive_int("steps", self.steps)
        positive_int("batch", self.batch)
        positive_int("warmup", self.warmup, 0)
        positive_int("log_every", self.log_every)
        positive_int("sample_every", self.sample_every, 0)
        if self.threads is not None:
            positive_int("threads", self.threads)
        if self.stop_after is not None:
            positive_int("stop_after", self.stop_after)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed must be an integer in 0…2**63-1, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr < 1):
            raise ValueError(f"--lr must be a number in (0, 1), got {self.lr!r}; e.g. --lr 0.0005")
        if not (isinstance(self.ckpt_every_s, (int, float)) and self.ckpt_every_s > 0):
            raise ValueError(f"--ckpt-every must be > 0 seconds, got {self.ckpt_every_s!r}")

    def identity(self) -> dict:
        d = asdict(self)
        return {k: _jsonable(v) for k, v in d.items() if k not in self.MUTABLE}


class Run:
    """A run folder: checkpoint, state and log I/O."""

    def __init__(self, spec: TrainSpec):
        self.spec = spec
        self.dir = Path(spec.runs) / spec.name
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def ckpt_path(self) -> Path:
        return self.dir / CKPT

    @property
    def state_path(self) -> Path:
        return self.dir / STATE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG

    def has_checkpoint(self) -> bool:
        return self.ckpt_path.is_file() and self.state_path.is_file()

    def read_state(self) -> dict:
        return json.loads(self.state_path.read_text())

    # ---------------------------------------------------------------- checkpoint
    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
             ema: EMA | None, wall: float, extra: dict | None = None) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for k, v in model.state_dict().items():
            tensors[f"model.{k}"] = v.detach().contiguous().clone()
        if ema is not None:
            for k, v in ema.shadow.items():
                tensors[f"ema.{k}"] = v.detach().contiguous().clone()
        groups = None
        if optimizer is not None:
            sd = optimizer.state_dict()
            for idx, st in sd["state"].items():
                for key, val in st.items():
                    if isinstance(val, torch.Tensor):
                        tensors[f"optim.{idx}.{key}"] = val.detach().contiguous().clone()
            groups = _jsonable(sd["param_groups"])
        state = {
            "step": int(step),
            "wall_s": float(wall),
            "config": self.spec.identity(),
            "mutable": {k: _jsonable(getattr(self.spec, k)) for k in TrainSpec.MUTABLE},
            "param_groups": groups,
            "ema_decay": ema.decay if ema is not None else None,
            "extra": _jsonable(extra or {}),
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with atomic_path(self.ckpt_path) as tmp:
            save_file(tensors, str(tmp))
        write_text_atomic(self.state_path, json.dumps(state, indent=2) + "\n")

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
             ema: EMA | None, strict_config: bool = True) -> dict:
        """Restore a checkpoint into the given objects; returns the state dict (``step``, ``wall_s``, ``extra``)."""
        state = self.read_state()
        if strict_config:
            want, have = self.spec.identity(), state["config"]
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            if diff:
                details = ", ".join(f"{k}: saved {have.get(k)!r} vs now {want.get(k)!r}" for k in diff)
                raise ConfigMismatch(
                    f"run {self.dir} was started with a different config ({details}); "
                    f"use the original options, another --name, or delete the folder to start over")
        tensors = load_file(str(self.ckpt_path))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if ema is not None:
            for k in ema.shadow:
                ema.shadow[k] = tensors[f"ema.{k}"].clone()
        if optimizer is not None and state.get("param_groups") is not None:
            st: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, idx, key = k.split(".", 2)
                    st.setdefault(int(idx), {})[key] = v
            groups = state["param_groups"]
            for g in groups:
                if "betas" in g and isinstance(g["betas"], list):
                    g["betas"] = tuple(g["betas"])
            optimizer.load_state_dict({"state": st, "param_groups": groups})
        self.truncate_log(int(state["step"]))
        return state

    # ---------------------------------------------------------------- log
    def truncate_log(self, step: int) -> None:
        """Drop log entries after ``step`` (work lost since the last checkpoint)."""
        if not self.log_path.is_file():
            return
        keep = []
        for line in self.log_path.read_text().splitlines():
            try:
                if int(json.loads(line).get("step", 0)) <= step:
                    keep.append(line)
            except (ValueError, json.JSONDecodeError):
                continue
        self.log_path.write_text("".join(l + "\n" for l in keep))

    def log(self, record: dict) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")

    def read_log(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        return [json.loads(l) for l in self.log_path.read_text().splitlines() if l.strip()]


class _StopFlag:
    """SIGINT/SIGTERM set a flag checked between steps, so a checkpoint is never taken mid-update."""

    def __init__(self):
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.stop:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def train_loop(
    run: Run,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, float]],
    *,
    ema: EMA | None = None,
    start_step: int = 0,
    wall_before: float = 0.0,
    on_sample: Callable[[int], None] | None = None,
    extra_state: Callable[[], dict] | None = None,
    desc: str = "train",
) -> dict:
    """Run steps ``start_step .. spec.steps-1``; ``step_fn(step)`` does forward, backward and returns losses
    (the loop sets the LR before and runs ``optimizer.step`` / EMA after). Checkpoints every
    ``spec.ckpt_every_s`` seconds, at SIGINT/SIGTERM and at the end. Returns the final state summary."""
    from tqdm import tqdm

    from ..quiet import progress_enabled

    spec = run.spec
    step = start_step
    t_start = time.perf_counter()
    last_ckpt = t_start
    running: dict[str, float] = {}
    n_run = 0
    interrupted = False

    def wall() -> float:
        return wall_before + time.perf_counter() - t_start

    def checkpoint() -> None:
        run.save(step, model, optimizer, ema, wall(), extra_state() if extra_state else None)

    bar = tqdm(total=spec.steps, initial=step, desc=desc, disable=not progress_enabled(spec.progress), dynamic_ncols=True,
               mininterval=2.0)
    with _StopFlag() as flag:
        while step < spec.steps:
            lr = lr_at(step, spec.lr, spec.warmup, spec.steps, decay=spec.extra.get("decay", "cosine"),
                       final_frac=spec.extra.get("final_lr_frac", 0.1))
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            losses = step_fn(step)
            optimizer.step()
            if ema is not None:
                ema.update(model, step)
            for k, v in losses.items():
                if not math.isfinite(v):
                    checkpoint_path = run.dir / "nonfinite.json"
                    checkpoint_path.write_text(json.dumps({"step": step, "losses": losses}))
                    raise FloatingPointError(f"non-finite {k} = {v} at step {step}; last good checkpoint kept")
                running[k] = running.get(k, 0.0) + v
            n_run += 1
            step += 1
            bar.update(1)
            if step % spec.log_every == 0 or step == spec.steps:
                rec = {"step": step, "lr": lr, "wall_s": round(wall(), 2),
                       **{k: v / n_run for k, v in running.items()}}
                run.log(rec)
                bar.set_postfix({k: f"{v / n_run:.4g}" for k, v in running.items()})
                running, n_run = {}, 0
            if on_sample is not None and spec.sample_every and step % spec.sample_every == 0:
                on_sample(step)
            if flag.stop or (spec.stop_after is not None and step - start_step >= spec.stop_after):
                interrupted = True
                break
            if time.perf_counter() - last_ckpt >= spec.ckpt_every_s:
                checkpoint()
                last_ckpt = time.perf_counter()
        checkpoint()
    bar.close()
    return {"step": step, "wall_s": wall(), "interrupted": interrupted, "signal": flag.stop}
