"""Upscale a user's image: the image becomes the native stage of a recipe's cascade.

    out = hiresflow.upscale_image("tiny-flux", "photo.jpg", "a red sun over snowy mountains", method="hiflow", scale=4)

1. The file is read with PIL, turned upright by its EXIF orientation (`ImageOps.exif_transpose`), and an alpha
   channel is composited on white (transparent areas become white paper, as most editors flatten them).
2. It is centre-cropped to the nearest aspect ratio the model can represent (sides multiples of the model's
   latent multiple, at the model's native pixel count; at most a few pixels per edge are cut) and resized with
   Lanczos to that native size. The target is native × scale. An upscale never silently returns fewer pixels
   than the file has: when native × scale is smaller than the input (an 800x600 photo on a 64-pixel model at
   scale 2 would give 128x96) it stops before any model call with `SmallerThanInputError`, which names the
   smallest scale that keeps at least the input's pixel count; `allow_smaller=True` accepts the smaller image.
3. The native stage is that image: its latent is the VAE encoding (posterior mode), its image the resized
   picture itself.
4. Methods that follow a reference trajectory of the native stage (HiFlow's flow-aligned guidance, the
   paper-style `reference_x0` init) get one of two trajectories on the native σ grid (`reference=`):
   - "inversion" (default): the flow ODE run backwards from the encoded image (σ = 0) to the grid's first σ with
     Euler steps, recording x̂0 = x − σ·v at every grid point — the trajectory the model would have sampled,
     up to the inversion's discretisation error (larger at few steps);
   - "renoise": x_σ = (1 − σ)·x0 + σ·ε with ε from the run's seed, and the model's x̂0 prediction at each x_σ
     recorded — no drift, but each point is an independent noising, not one trajectory.
   Both cost about one model call per grid point (the native pass they replace). Inversion is the default because
   it came out ahead on ground truth in benchmarks/upscale_reference_trajectory.py (README "Upscale your image").
   Methods without a reference trajectory (sdedit, freescale, diffusehigh, imax, demofusion, upscale) start
   from the upsampled image and skip this step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from .checks import check_choice, check_seed
from .images import frame_count, to_rgb
from .plan import Plan
from .quiet import encode_prompt
from .runner import stage_seed, stage_sigmas
from .stage import StageResult, StepTimings, Trajectory

__all__ = ["REFERENCES", "DEFAULT_REFERENCE", "UPSCALE_METHODS", "load_user_image", "fit_native_size",
           "prepare_image", "reference_trajectory", "native_from_image", "needs_reference", "upscale_plan",
           "upscale_image", "UpscaleInput", "SmallerThanInputError", "check_not_smaller", "check_aspect", "max_aspect"]

REFERENCES = ("renoise", "inversion")
DEFAULT_REFERENCE = "inversion"
# recipes whose first stage is a native pass the image can replace
UPSCALE_METHODS = ("hiflow", "sdedit", "freescale", "diffusehigh", "imax", "demofusion", "upscale")


def load_user_image(path: str | Path) -> Image.Image:
    """An 8-bit RGB PIL image from any file PIL reads: EXIF orientation applied, then `hiresflow.images.to_rgb`
    (16-bit and float images scaled by their true range, alpha composited on white, palettes expanded, the first
    frame of an animation). Unreadable files raise a one-line ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file; pass an image file (PNG, JPEG, WebP, …)")
    try:
        with Image.open(path) as img:
            if frame_count(img) > 1:
                img.seek(0)
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} is too large to decode safely ({err}); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ValueError) and "non-finite" in str(err):
            raise ValueError(f"{path}: {err}") from None
        raise ValueError(f"cannot read {path} as an image ({type(err).__name__}); pass a PNG, JPEG or WebP "
                         f"file") from None


def fit_native_size(geometry, width: int, height: int) -> tuple[int, int]:
    """(H, W) near the model's native pixel count with the image's aspect ratio, sides multiples of the latent
    multiple: of the heights next to the ideal one, the size whose aspect ratio is closest (then whose area is)."""
    nh, nw = geometry.native
    m = geometry.multiple
    aspect = width / height
    h_ideal = math.sqrt(nh * nw / aspect)
    cands = []
    for h in {max(m, math.floor(h_ideal / m) * m), max(m, math.ceil(h_ideal / m) * m)}:
        w = max(m, int(round(h * aspect / m)) * m)
        cands.append((abs(math.log((w / h) / aspect)), abs(math.log(h * w / (nh * nw))), (h, w)))
    return min(cands)[2]


def prepare_image(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop to the aspect ratio of `size` = (H, W), Lanczos-resize to it: [1, 3, H, W] in [0, 1]."""
    h, w = size
    fitted = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    arr = np.asarray(fitted, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def needs_reference(plan: Plan) -> bool:
    """Whether a later stage reads the native stage's trajectory (HiFlow guidance or a reference_x0 init)."""
    from .guides.hiflow import HiFlowConfig

    if len(plan.stages) < 2:
        return False
    nxt = plan.stages[1]
    return nxt.init.start_from == "reference_x0" or any(isinstance(g, HiFlowConfig) for g in nxt.guides)


@torch.no_grad()
def reference_trajectory(model, z0: torch.Tensor, sigmas: torch.Tensor, cond, *, mode: str = DEFAULT_REFERENCE,
                         start: int = 0, guidance: float | None = None,
                         generator: torch.Generator | None = None) -> tuple[Trajectory, StepTimings]:
    """The native stage's x̂0 trajectory for a clean latent z0, at grid indices start … N−1 (see module doc)."""
    check_choice("reference", mode, REFERENCES)
    traj = Trajectory(sigmas=sigmas)
    timings = StepTimings()
    n = sigmas.numel() - 1
    z0 = z0.to(device=model.device, dtype=torch.float32)

    def call(x, sigma):
        t = time.perf_counter()
        v = model.velocity(x, sigma, cond, guidance=guidance).to(torch.float32)
        timings.model.append(time.perf_counter() - t)
        timings.guides.append(0.0)
        return v

    if mode == "renoise":
        if generator is None:
            raise ValueError("renoise needs a torch.Generator for its noise")
        eps = model.noise(tuple(z0.shape), generator)
        for i in range(start, n):
            s = float(sigmas[i])
            x = (1 - s) * z0 + s * eps
            traj.x0[i] = x - s * call(x, s)
        return traj, timings
    x = z0
    v = call(x, float(sigmas[n]))
    for i in range(n - 1, start - 1, -1):  # σ_{i+1} → σ_i, upwards in noise
        s, s_prev = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (s - s_prev) * v
        v = call(x, s)
        traj.x0[i] = x - s * v
    return traj, timings


def native_from_image(model, plan: Plan, image: torch.Tensor, prompt: str, *, seed: int = 0,
                      negative_prompt: str = "", reference: str = DEFAULT_REFERENCE) -> StageResult:
    """The plan's first stage made from `image` [1, 3, H, W] in [0, 1] (already at that stage's size)."""
    t0 = time.perf_counter()
    stage = plan.stages[0]
    if tuple(image.shape[-2:]) != tuple(stage.size):
        raise ValueError(f"the image is {image.shape[-1]}x{image.shape[-2]} but the native stage is "
                         f"{stage.size[1]}x{stage.size[0]}; resize it with prepare_image")
    sigmas, start = stage_sigmas(model, stage, stage.size)
    z0 = model.encode(image.to(model.device)).to(model.device)
    traj, timings, extra = Trajectory(sigmas=sigmas), StepTimings(), {"source": "image"}
    if needs_reference(plan):
        gen = torch.Generator().manual_seed(stage_seed(seed, 0))
        cond = encode_prompt(model, prompt, negative_prompt, report=False)  # run_plan notes a truncation
        traj, timings = reference_trajectory(model, z0, sigmas, cond, mode=reference, start=start,
                                             guidance=stage.guidance, generator=gen)
        extra["reference"] = reference
    img = image.to(model.device).float()
    # start = the last grid index: the native stage ran no steps (its record says 0 steps, σ_start = 0)
    return StageResult(index=0, size=tuple(stage.size), latent=z0, image=img, image_unclamped=img,
                       trajectory=traj, sigmas=sigmas, start=sigmas.numel() - 1, timings=timings,
                       seconds=time.perf_counter() - t0, extra=extra)


def upscale_plan(model, method: str, native: tuple[int, int], scale: float, **params) -> Plan:
    """The recipe's plan whose first stage is exactly `native` = (H, W) and whose target is native × scale."""
    from .recipes import build_plan

    check_choice("method", method, UPSCALE_METHODS)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a number > 1, got {scale!r}; e.g. --scale 2")
    target = model.geometry.round_size(native[0] * scale, native[1] * scale)
    plan = build_plan(method, model, size=target, native=native, **params)
    if tuple(plan.stages[0].size) != tuple(native):
        from dataclasses import replace

        plan.stages[0] = replace(plan.stages[0], size=tuple(native))
    return plan


class SmallerThanInputError(ValueError):
    """An upscale whose output (native size × scale) would have fewer pixels than the input image."""

    def __init__(self, original: tuple[int, int], native: tuple[int, int], output: tuple[int, int], scale: float,
                 min_scale: float):
        self.original, self.native, self.output = original, native, output  # (W, H) each
        self.scale, self.min_scale = scale, min_scale
        super().__init__(self.describe())

    def describe(self, scale_arg: str = "scale=", allow_arg: str | None = "allow_smaller=True") -> str:
        """The one-line message, with the arguments spelled as the caller takes them (e.g. "--scale ")."""
        (ow, oh), (nw, nh), (w, h) = self.original, self.native, self.output
        fix = f"use {scale_arg}{self.min_scale:g} or more to keep at least the input's pixels"
        if allow_arg:
            fix += f", or {allow_arg} to accept the smaller image"
        return (f"upscaling the {ow}x{oh} image at {scale_arg}{self.scale:g} would give {w}x{h} (the model's native "
                f"{nw}x{nh} × {self.scale:g}), fewer pixels than the input; {fix}")


def min_scale_keeping(geometry, native: tuple[int, int], original: tuple[int, int]) -> float:
    """The smallest scale (a multiple of 0.1, above 1) whose output from `native` = (H, W) has at least the pixel
    count of `original` = (W, H)."""
    need = original[0] * original[1]
    scale = max(1.1, math.ceil(math.sqrt(need / (native[0] * native[1])) * 10 - 1e-9) / 10)
    while math.prod(geometry.round_size(native[0] * scale, native[1] * scale)) < need:
        scale = round(scale + 0.1, 1)
    return scale


def check_not_smaller(geometry, original: tuple[int, int], native: tuple[int, int], target: tuple[int, int],
                      scale: float) -> None:
    """Raise `SmallerThanInputError` when `target` = (H, W) has fewer pixels than `original` = (W, H)."""
    if target[0] * target[1] < original[0] * original[1]:
        raise SmallerThanInputError(tuple(original), (native[1], native[0]), (target[1], target[0]), scale,
                                    min_scale_keeping(geometry, native, original))


@dataclass
class UpscaleInput:
    """A user's image made ready for a model: the prepared tensor, its native size and where it came from."""

    tensor: torch.Tensor
    native: tuple[int, int]
    source: str
    original_size: tuple[int, int]  # (W, H) of the upright file

    @classmethod
    def from_any(cls, image, geometry) -> "UpscaleInput":
        if isinstance(image, (str, Path)):
            pil, source = load_user_image(image), str(image)
        elif isinstance(image, Image.Image):
            pil, source = to_rgb(ImageOps.exif_transpose(image)), "<PIL image>"
        else:
            raise TypeError(f"image must be a path or a PIL image, got {type(image).__name__}")
        check_aspect(geometry, *pil.size, source)
        native = fit_native_size(geometry, *pil.size)
        return cls(prepare_image(pil, native), native, source, pil.size)


def max_aspect(geometry) -> float:
    """The widest aspect ratio (long side / short side) the model's native pixel count holds with the short side
    one latent multiple: native H·W / multiple²."""
    return geometry.native[0] * geometry.native[1] / geometry.multiple ** 2


def check_aspect(geometry, width: int, height: int, source: str = "the image") -> None:
    """Refuse an image whose aspect ratio the model's native size cannot hold (a 4000x1 strip on a 64-pixel model
    would become a 16x64000 native pass and a 32x128000 output) with one line saying how far to crop it."""
    limit = max_aspect(geometry)
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limit:
        nh, nw = geometry.native
        raise ValueError(f"{source} is {width}x{height}, an aspect ratio of {ratio:.0f}:1; the model's native "
                         f"{nw}x{nh} pass holds at most {limit:g}:1 (its short side would be one latent cell); crop "
                         f"it to at most {limit:g}:1")


def upscale_image(pipe_or_id, image, prompt: str, *, method: str = "hiflow", scale: float = 2,
                  seed: int = 0, negative_prompt: str = "", reference: str = DEFAULT_REFERENCE,
                  allow_smaller: bool = False, allow_large: bool = False, progress: bool | str = "auto",
                  callback_on_step_end: Callable | None = None, device: str | None = None,
                  dtype: torch.dtype | None = None, **recipe_params):
    """Upscale `image` (path or PIL image) with recipe `method`; returns a `hiresflow.api.GenerationOutput`
    whose `extra["upscale"]` records the source, the native size and the reference mode.

    The output is the model's native size (for the image's aspect ratio) × `scale`. When that has fewer pixels
    than the image, `SmallerThanInputError` (a ValueError naming the smallest scale that keeps the image's pixel
    count) is raised before any model call, unless `allow_smaller=True`; an image whose aspect ratio the native
    size cannot hold is refused (`check_aspect`). The resource guard (`hiresflow.resources`) runs before the model
    loads and again on the plan: a job beyond this machine's memory or time limit raises
    `hiresflow.resources.ResourceLimitError` (a ValueError) unless `allow_large=True`. `progress`: "auto" (tqdm
    bars only when stderr is a terminal), True or False."""
    from .api import GenerationOutput, _preflight, _step_callback, as_model, timings_of
    from .output import to_pil
    from .quiet import resolve_progress
    from .resources import API, check_resources
    from .runner import run_plan
    from .settings import load

    load()
    check_choice("reference", reference, REFERENCES)
    check_seed(seed)
    progress = resolve_progress(progress)
    t0 = time.perf_counter()
    _preflight(pipe_or_id, device, allow_large, scale=scale, area_factor=0.25)
    model = as_model(pipe_or_id, device=device, dtype=dtype)
    inp = UpscaleInput.from_any(image, model.geometry)
    plan = upscale_plan(model, method, inp.native, scale, **recipe_params)
    if not allow_smaller:
        check_not_smaller(model.geometry, inp.original_size, inp.native, plan.target_size, scale)
    check_resources(plan, model, allow=allow_large, spelling=API)
    native = native_from_image(model, plan, inp.tensor, prompt, seed=seed, negative_prompt=negative_prompt,
                               reference=reference)
    on_step = _step_callback(callback_on_step_end, plan) if callback_on_step_end is not None else None
    result = run_plan(model, plan, prompt, seed=seed, negative_prompt=negative_prompt, progress=progress,
                      on_step=on_step, native=native)
    timings = timings_of(result)
    timings["wall_seconds"] = time.perf_counter() - t0
    info = {"source": inp.source, "original_size": list(inp.original_size),
            "native_size": [inp.native[1], inp.native[0]],
            "reference": reference if needs_reference(plan) else None}
    return GenerationOutput(images=[to_pil(result.image)], native_images=[to_pil(native.image)], plan=plan,
                            timings=timings, result=result, stopped=result.info.get("stopped"),
                            extra={"model": model, "upscale": info})
