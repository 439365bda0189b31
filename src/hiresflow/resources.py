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

Floor: whatever the model, the final image exists as three float32 RGB copies at once (the raw decode, its clamped
copy and the float copy made for 8-bit conversion), `OUTPUT_BYTES_PER_PIXEL` = 36 bytes per output pixel; the
memory estimate is never below it.

`check_resources` refuses a plan whose estimate exceeds the free memory or `max_seconds` (default 6 h,
$HIRESFLOW_MAX_SECONDS via `hiresflow.settings`) with a one-line `ResourceLimitError` (a ValueError) naming the
numbers and the override (`--allow-large` on the command line, `allow_large=True` in Python).

One guard, every entry point: `generate`, `upscale`, `batch` (per job), `hiresflow.generate`,
`hiresflow.upscale_image` and the app call `preflight` before the model loads — the floor of the target size,
from the native size a model name states without loading it (`known_native_size`), so an absurd size is refused
in seconds, before diffusers is even imported — and `check_resources` on the plan before any model call.
"""

from __future__ import annotations

import json
import math
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from .settings import DEFAULT_MAX_SECONDS

__all__ = ["ResourceEstimate", "ResourceLimitError", "estimate_resources", "check_resources", "probe_model",
           "free_memory", "preflight", "known_native_size", "output_bytes", "DEFAULT_MAX_SECONDS",
           "OUTPUT_BYTES_PER_PIXEL", "Spelling", "CLI", "API", "APP"]

FLOAT = 4  # bytes
OUTPUT_BYTES_PER_PIXEL = 3 * 3 * FLOAT  # three float32 RGB copies of the final image


@dataclass(frozen=True)
class Spelling:
    """How a refusal names what to lower and the override (None: the surface has none), in the caller's terms."""

    lower: str
    override: str | None


CLI = Spelling("lower --size/--scale or the steps", "pass --allow-large")
API = Spelling("lower size/scale or the steps", "pass allow_large=True")
APP = Spelling("lower the target size, the scale or the steps", None)


class ResourceLimitError(ValueError):
    """A job the resource guard refused: its memory or time estimate exceeds this machine. The message is one
    line naming the numbers, what to lower and the override; `describe(spelling)` words it for another surface
    (`CLI`, `API`, `APP`). `estimate` is the `ResourceEstimate` (None for a refusal before the model loaded)."""

    def __init__(self, what: str, estimate: "ResourceEstimate | None" = None, spelling: Spelling = CLI):
        self.what, self.estimate, self.spelling = what, estimate, spelling
        super().__init__(self.describe(spelling))

    def describe(self, spelling: Spelling) -> str:
        fix = spelling.lower + (f", or {spelling.override} to try anyway" if spelling.override else "")
        return f"{self.what}; {fix}"


def output_bytes(height: int, width: int) -> int:
    """The floor of any plan's peak memory: the final image's float32 copies (`OUTPUT_BYTES_PER_PIXEL`)."""
    return int(OUTPUT_BYTES_PER_PIXEL * height * width)


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
        if plan.upscale.vae_roundtrip and model.codec.decode_bytes(h, w) > peak:
            peak, where = model.codec.decode_bytes(h, w), f"the VAE round trip ({w}x{h})"
    th, tw = plan.target_size
    if output_bytes(th, tw) > peak:
        peak, where = output_bytes(th, tw), f"the output ({tw}x{th})"
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


_PROBES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _probe(model) -> tuple[float, float]:
    """`probe_model`, once per loaded pipeline (a batch, an app or a script calling `hiresflow.generate` on one
    pipeline many times — each call wraps it anew — prices all its plans with one probe)."""
    key = getattr(model, "pipe", None)
    key = model if key is None else key
    try:
        return _PROBES[key]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: probe every time
        return probe_model(model)
    _PROBES[key] = found = probe_model(model)
    return found


def _refuse(what: str, spelling: Spelling, est: ResourceEstimate | None = None):
    raise ResourceLimitError(what, est, spelling)


def check_resources(plan, model, *, allow: bool = False, max_seconds: float | None = None,
                    timed: bool = True, spelling: Spelling = CLI, memory_checked: bool = False) -> ResourceEstimate:
    """Refuse (one-line `ResourceLimitError`) a plan that would not fit in memory or would run longer than
    max_seconds (default: $HIRESFLOW_MAX_SECONDS or 6 h); `allow=True` skips the check (memory is still
    estimated, time is not: no probe runs). `memory_checked=True`: a memory plan (`hiresflow.memory_plan`, chosen
    for --max-memory) already priced the run with its mechanisms, so only the time is checked here."""
    est = estimate_resources(plan, model)
    if allow:
        return est
    if not memory_checked and est.free_bytes is not None and est.peak_bytes > 0.9 * est.free_bytes:
        _refuse(f"this plan needs {est.describe()}", spelling, est)
    if timed:
        est = estimate_resources(plan, model, _probe(model))
        if max_seconds is None:
            from .settings import current

            max_seconds = current().max_seconds
        if est.model_seconds is not None and est.model_seconds > max_seconds:
            _refuse(f"this plan needs {est.describe()} on this machine (limit {_duration(max_seconds)})", spelling,
                    est)
    return est


def known_native_size(model) -> tuple[int, int] | None:
    """The native (H, W) a model states without being loaded: the embedded and random-tiny names, and folders whose
    `hiresflow.json` gives native_size. None for anything else (hub ids, folders without a card, loaded pipelines)."""
    from .models.loading import EMBEDDED, EMBEDDED_DIR, RANDOM, RANDOM_NATIVE, check_card

    if not isinstance(model, (str, Path)):
        return None
    name = str(model)
    if name in RANDOM:
        n = RANDOM_NATIVE[RANDOM[name]]
        return n, n
    card = (EMBEDDED_DIR / EMBEDDED[name] if name in EMBEDDED else Path(name).expanduser()) / "hiresflow.json"
    try:
        native = check_card(json.loads(card.read_text())).get("native_size")
    except (OSError, ValueError, AttributeError):
        return None  # no card or a bad one: the loader reports it
    if isinstance(native, list):
        return int(native[0]), int(native[1])
    return (int(native), int(native)) if native else None


def preflight(model, device, *, size: tuple[int, int] | None = None, scale: float | None = None,
              area_factor: float = 1.0, allow: bool = False, spelling: Spelling = CLI) -> None:
    """Before the model loads: refuse a target whose final image alone (`output_bytes`) would not fit in the
    device's free memory. The target is `size` = (H, W), else `scale` × the model's native size when the name
    states one (`known_native_size`); `area_factor` scales a target whose exact size needs the model (an upscale's
    native size follows the image's aspect ratio: 0.25 keeps the check a lower bound). Nothing to check: no-op."""
    if allow:
        return
    if size is not None:
        h, w = int(size[0]), int(size[1])
    else:
        native = known_native_size(model)
        ok_scale = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) \
            and scale >= 1
        if native is None or not ok_scale:
            return  # the plan's own checks give the error after loading
        h, w = round(native[0] * scale), round(native[1] * scale)
    if h <= 0 or w <= 0:
        return
    need = output_bytes(h, w) * area_factor
    free = free_memory(torch.device(device))
    if free is not None and need > 0.9 * free:
        about = "" if area_factor == 1 else "about "
        _refuse(f"the output ({about}{w}x{h}) needs at least {need / 2**30:.1f} GiB for the image alone "
                f"({free / 2**30:.1f} GiB free)", spelling)
