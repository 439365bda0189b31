"""Memory and time estimates of a plan, checked before anything large is allocated.

Memory (peak of the largest stage): the denoiser's activations for one call (`FlowModel.call_bytes`: DiT ≈ 40·N·D
floats for N tokens of width D — the fused attention kernels keep attention O(N); U-Net ≈ 48·h·w·C₀ floats per
batch row) times the call's batch, plus the VAE decode of that stage (`VaeCodec.decode_bytes`: ≈ 8·H·W·C₀ floats
untiled, one tile when diffusers tiling is on), plus the stage's latents and trajectory. The constants were
fitted on the embedded models' peak RSS (`benchmarks/resource_estimates.py` compares estimate and measurement).
Compared with the free memory of the device (RAM via psutil on the CPU, `torch.cuda.mem_get_info` on a GPU).

Time: one denoiser call is timed at the native size and at four times the native side (a probe), which fits
t(call) = a + b·F — a fixed overhead per call plus seconds per floating-point operation — with F from
`FlowModel.call_flops` (2·P·N for the weights plus 4·L·N²·D for attention in a DiT; per-level convolution and
attention work in a U-Net); every call of the plan is then priced by its F. VAE and guide work are not counted,
so the estimate is a lower bound of the model time.

`check_resources` refuses a plan whose estimate exceeds the free memory or `max_seconds` (default 6 h) with a
one-line error naming the numbers and the override (`--allow-large`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

__all__ = ["ResourceEstimate", "estimate_resources", "check_resources", "probe_model", "free_memory",
           "DEFAULT_MAX_SECONDS"]

DEFAULT_MAX_SECONDS = 6 * 3600.0
FLOAT = 4  # bytes


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            import psutil

            return int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001 - psutil missing or unreadable: no memory check
            return None
    return None


@dataclass
class ResourceEstimate:
    peak_bytes: int
    free_bytes: int | None
    model_seconds: float | None
    model_calls: int
    largest_stage: str

    def describe(self) -> str:
        mem = f"~{self.peak_bytes / 2**30:.1f} GiB at {self.largest_stage}"
        if self.free_bytes is not None:
            mem += f" ({self.free_bytes / 2**30:.1f} GiB free)"
        t = "" if self.model_seconds is None else f", ~{_duration(self.model_seconds)} of model time"
        return f"{mem}{t}, {self.model_calls} model calls"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _text_copies(model, stage, lh: int, lw: int) -> int:
    from .patches.text_dup import TextDuplicationConfig

    if not any(isinstance(p, TextDuplicationConfig) for p in stage.patches):
        return 1
    g = model.geometry
    rows, cols = lh // g.patch, lw // g.patch
    nr, nc = g.native[0] // g.multiple, g.native[1] // g.multiple
    return max(1, rows // nr) * max(1, cols // nc)


def _stage_calls(model, stage) -> list[tuple[tuple[int, int], int, int]]:
    """Per step: (latent size of a call, batch rows of that call, number of such calls)."""
    _, lh, lw = model.geometry.latent_shape(*stage.size)
    if stage.denoiser is not None and hasattr(stage.denoiser, "call_sizes"):
        return stage.denoiser.call_sizes(model, (lh, lw))
    return [((lh, lw), 1, 1)]


def _steps(model, stage) -> int:
    from .runner import stage_sigmas

    sig, start = stage_sigmas(model, stage, stage.size)
    return sig.numel() - 1 - start


def estimate_resources(plan, model, probe: tuple[float, float] | None = None) -> ResourceEstimate:
    """Peak memory of the largest stage and (with a probe's (a, b): seconds per call and per flop) the model
    time of the whole plan."""
    g = model.geometry
    peak, where, calls, seconds = 0, "", 0, 0.0
    for s, stage in enumerate(plan.stages):
        C, lh, lw = g.latent_shape(*stage.size)
        n = _steps(model, stage)
        for (ch, cw), batch, count in _stage_calls(model, stage):
            copies = _text_copies(model, stage, ch, cw)
            stage_peak = model.call_bytes((ch, cw), copies) * batch
            if probe is not None:
                seconds += n * count * (probe[0] + probe[1] * model.call_flops((ch, cw), copies) * batch)
            calls += n * count
            peak_here = stage_peak + model.codec.decode_bytes(*stage.size) + C * lh * lw * FLOAT * (n + 8)
            if peak_here > peak:
                peak, where = peak_here, f"stage {s} ({stage.size[1]}x{stage.size[0]})"
    if plan.upscale is not None:
        h, w = plan.upscale.size
        peak = max(peak, 6 * 3 * h * w * FLOAT)
    return ResourceEstimate(int(peak), free_memory(model.device), seconds if probe else None, calls, where)


@torch.no_grad()
def _time_call(model, cond, hw: tuple[int, int], repeats: int) -> float:
    C, h, w = model.geometry.latent_shape(*hw)
    x = torch.zeros(1, C, h, w, device=model.device)
    model.velocity(x, 0.5, cond)  # warm-up
    best = math.inf
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        model.velocity(x, 0.5, cond)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        best = min(best, time.perf_counter() - t0)
    return best


def probe_model(model, prompt: str = "a lake", repeats: int = 2) -> tuple[float, float]:
    """(a, b) of t(call) = a + b·flops, from the best-of-`repeats` call time at the native size and at four times
    its side (16× the tokens: a difference of two nearly equal small-call times made the slope noise)."""
    cond = model.encode_prompt(prompt)
    g = model.geometry
    sizes = [g.native, (4 * g.native[0], 4 * g.native[1])]
    times = [_time_call(model, cond, s, repeats) for s in sizes]
    flops = [model.call_flops(g.latent_shape(*s)[1:], 1) for s in sizes]
    b = max((times[1] - times[0]) / max(flops[1] - flops[0], 1.0), 0.0)
    if b == 0.0:  # timing noise: price everything by the larger call
        b = times[1] / max(flops[1], 1.0)
    return max(times[0] - b * flops[0], 0.0), b


def check_resources(plan, model, *, allow: bool = False, max_seconds: float | None = None,
                    timed: bool = True) -> ResourceEstimate:
    """Refuse (one-line ValueError) a plan that would not fit in memory or would run longer than max_seconds
    (default: $HIRESFLOW_MAX_SECONDS or 6 h); `allow=True` only reports."""
    est = estimate_resources(plan, model)
    if not allow and est.free_bytes is not None and est.peak_bytes > 0.9 * est.free_bytes:
        raise ValueError(f"this plan needs {est.describe()}; lower --size or the steps, or pass --allow-large "
                         f"to try anyway")
    if timed:
        est = estimate_resources(plan, model, probe_model(model))
        limit = max_seconds if max_seconds is not None else float(os.environ.get("HIRESFLOW_MAX_SECONDS",
                                                                                 DEFAULT_MAX_SECONDS))
        if not allow and est.model_seconds is not None and est.model_seconds > limit:
            raise ValueError(f"this plan needs {est.describe()} on this machine (limit {_duration(limit)}); "
                             f"lower --size or the steps, or pass --allow-large")
    return est
