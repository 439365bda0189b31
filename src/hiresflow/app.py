"""The Gradio app (`hiresflow app`): generate or upscale in a browser.

Two modes: **Generate** (prompt → native image → the method's cascade) and **Upscale** (your image becomes the
native stage, `hiresflow.upscale`). The form holds the prompt, model, method, target size (WxH) or scale, seed,
and the recipe's advanced parameters (one `key = value` per line, prefilled with the recipe's defaults; only
changed lines are applied). While a job runs one progress bar, under the button, shows the stage and step; the
result shows the native image against the high-resolution one in a slider, and the PNG as
`hiresflow.output.save_run` wrote it (A1111 `parameters` and the full `hiresflow` record in its text chunks) for
download. Jobs go through Gradio's queue (`concurrency` at once, the rest wait); bad input comes back as the
one-line error in a `gr.Error` toast, and the outputs keep the previous result (only the line under the button is
marked).

Gradio is an optional extra: `pip install -e ".[app]"`.
"""

from __future__ import annotations

import ast
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AppConfig", "ModelCache", "build_app", "launch", "parse_param_text", "param_text"]

GENERATE_METHODS = ("hiflow", "sdedit", "imax", "demofusion", "freescale", "diffusehigh", "hidiffusion", "direct",
                    "upscale")


@dataclass
class AppConfig:
    """How the app starts: default model, where PNGs go, device, jobs at once."""

    model: str = "tiny-flux"
    out: Path = Path("outputs/app")
    device: str | None = None
    concurrency: int = 1
    models: tuple[str, ...] = ("tiny-flux", "tiny-flux-v1", "tiny-sd", "tiny-sd-v1", "random-tiny-flux", "random-tiny-sd")
    max_queue: int = 32
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"--concurrency must be an integer >= 1, got {self.concurrency!r}")
        self.out = Path(self.out)


class ModelCache:
    """Loaded models by name (one load per name, shared by the queue's workers)."""

    def __init__(self, device: str | None = None):
        self.device = device
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        from .models.loading import load_model

        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(name, device=self.device)
            return self._models[name]


def param_text(method: str) -> str:
    """The recipe's parameters with their defaults, one `key = value` per line."""
    from .recipes import recipe_params

    return "\n".join(f"{k} = {v!r}" for k, v in recipe_params(method).items())


def parse_param_text(method: str, text: str) -> dict:
    """The lines of the advanced box that differ from the recipe's defaults (one-line errors naming the line)."""
    from .recipes import recipe_params

    defaults = recipe_params(method)
    out = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"advanced parameters, line {n}: write key = value, got {line!r}")
        key, raw = (part.strip() for part in line.split("=", 1))
        if key not in defaults:
            raise ValueError(f"advanced parameters, line {n}: recipe {method!r} has no parameter {key!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        if value != defaults[key] and not (isinstance(defaults[key], tuple) and list(defaults[key]) == value):
            out[key] = value
    return out


def _target(size_text: str, scale) -> tuple[tuple[int, int] | None, float | None]:
    from .models.base import parse_size

    if size_text and size_text.strip():
        return parse_size(size_text.strip()), None
    if scale is None or scale == "":
        return None, 4.0
    return None, float(scale)


def run_job(cache: ModelCache, config: AppConfig, mode: str, prompt: str, negative: str, model_name: str,
            method: str, size_text: str, scale, seed, image_path, reference: str, params_text: str,
            progress=None, warn=None) -> dict:
    """One app job (validated, run, saved): returns the native and final PIL images, the PNG path and info.
    A job beyond the machine's memory or time limit is refused before the model loads or before any model call
    (`hiresflow.resources`), as a one-line ValueError; so is an OS error while saving (a full disk)."""
    from .atomic import describe_os_error
    from .resources import APP, ResourceLimitError

    try:
        return _run_job(cache, config, mode, prompt, negative, model_name, method, size_text, scale, seed,
                        image_path, reference, params_text, progress, warn)
    except ResourceLimitError as err:
        raise ValueError(err.describe(APP)) from None
    except OSError as err:
        raise ValueError(describe_os_error(err)) from None


def _run_job(cache, config, mode, prompt, negative, model_name, method, size_text, scale, seed, image_path,
             reference, params_text, progress, warn) -> dict:
    from .api import generate
    from .checks import check_seed
    from .models.loading import check_device
    from .naming import image_stem, output_folder, reserve_stem
    from .output import save_run
    from .resources import APP, preflight
    from .upscale import SmallerThanInputError, upscale_image

    if not prompt or not prompt.strip():
        raise ValueError("write a prompt first")
    seed = check_seed(int(seed) if seed not in (None, "") else 0)
    params = parse_param_text(method, params_text)
    size, scale = _target(size_text, scale)
    if mode == "upscale":
        if not image_path:
            raise ValueError("upload an image to upscale (or switch the mode to generate)")
        if size is not None:
            raise ValueError("upscale takes a scale, not a size; clear the size box")
        preflight(model_name, check_device(config.device), scale=scale, area_factor=0.25, spelling=APP)
    else:
        preflight(model_name, check_device(config.device), size=size, scale=scale, spelling=APP)

    def on_step(info):
        if progress is not None:
            frac = (info.stage + (info.step + 1) / info.n_steps) / info.n_stages
            progress(frac, desc=f"stage {info.stage + 1}/{info.n_stages} {info.stage_name}: "
                                f"step {info.step + 1}/{info.n_steps}")
        return None

    with output_folder(config.out) as out:
        model = cache.get(model_name)
        extra = None
        if mode == "upscale":
            try:
                output = upscale_image(model, image_path, prompt, method=method, scale=scale, seed=seed,
                                       negative_prompt=negative or "", reference=reference, progress=False,
                                       callback_on_step_end=on_step, **params)
            except SmallerThanInputError as err:
                raise ValueError(err.describe("scale ", None)) from None
            extra = {"upscale": {**output.extra["upscale"], "source": Path(str(image_path)).name}}
            if output.extra["upscale"]["reference"] is None and warn is not None:
                warn(f"{method} follows no reference trajectory; the reference option was not used")
            stem_method = f"up-{method}"
        else:
            output = generate(model, prompt, method=method, scale=scale, size=size, seed=seed,
                              negative_prompt=negative or "", progress=False, callback_on_step_end=on_step, **params)
            stem_method = method
        stem = image_stem(prompt, stem_method, model_name, output.plan.target_size, seed)
        with reserve_stem(out, stem) as slot:
            paths = save_run(output.result, model, prompt, seed, out, slot.stem, negative_prompt=negative or "",
                             extra=extra)
        t = output.timings
        stages = ", ".join(f"{s['name'] or 'stage'} {s['size'][0]}x{s['size'][1]} {s['seconds']:.2f} s"
                           for s in t["stages"])
        w, h = output.images[0].size
        info = f"**{output.plan.recipe}** {w}x{h}, seed {seed}, {t['wall_seconds']:.1f} s — {stages}"
        return {"native": output.native_images[0], "image": output.images[0], "png": str(paths["image"]),
                "info": info}


def build_app(config: AppConfig):
    """The Gradio Blocks of the app (call `.queue(...).launch(...)`, or use `launch`)."""
    import gradio as gr

    from .recipes import RECIPES
    from .upscale import DEFAULT_REFERENCE, REFERENCES, UPSCALE_METHODS

    cache = ModelCache(config.device)
    models = list(dict.fromkeys([config.model, *config.models]))

    with gr.Blocks(title="hiresflow", analytics_enabled=False) as demo:
        gr.Markdown("# hiresflow\nTraining-free high-resolution generation: generate, or upscale your own image.")
        with gr.Row():
            with gr.Column(scale=1):
                mode = gr.Radio(["generate", "upscale"], value="generate", label="Mode", elem_id="mode")
                prompt = gr.Textbox(label="Prompt", value="a red sun setting over snowy mountains by a lake",
                                    elem_id="prompt")
                negative = gr.Textbox(label="Negative prompt (CFG models)", value="", elem_id="negative")
                with gr.Row():
                    model = gr.Dropdown(models, value=config.model, label="Model", allow_custom_value=True,
                                        elem_id="model")
                    method = gr.Dropdown(list(GENERATE_METHODS), value="hiflow", label="Method", elem_id="method")
                with gr.Row():
                    size = gr.Textbox(label="Target size WxH (empty: use the scale)", value="", elem_id="size")
                    scale = gr.Number(label="Scale (× native)", value=4, minimum=1, elem_id="scale")
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                image = gr.Image(label="Image to upscale (upscale mode)", type="filepath", visible=False,
                                 elem_id="upload")
                reference = gr.Radio(list(REFERENCES), value=DEFAULT_REFERENCE, visible=False,
                                     label="Reference trajectory (HiFlow)", elem_id="reference")
                with gr.Accordion("Advanced parameters of the recipe", open=False):
                    params = gr.Textbox(value=param_text("hiflow"), lines=10, max_lines=40, elem_id="params",
                                        label="key = value per line (defaults shown; only changes apply)")
                run = gr.Button("Generate", variant="primary", elem_id="run")
                status = gr.Markdown(elem_id="status", min_height=48)  # the job's progress bar, or its error mark
            with gr.Column(scale=1):
                compare = gr.ImageSlider(label="Native ↔ high resolution", type="pil", elem_id="compare")
                result = gr.Image(label="High resolution", type="pil", elem_id="result", format="png")
                download = gr.File(label="Download PNG (with metadata)", elem_id="download")
                info = gr.Markdown(elem_id="info")

        def on_mode(m):
            methods = list(UPSCALE_METHODS) if m == "upscale" else list(GENERATE_METHODS)
            return (gr.update(choices=methods, value="hiflow"), gr.update(visible=m == "upscale"),
                    gr.update(visible=m == "upscale"), gr.update(value="Upscale" if m == "upscale" else "Generate"),
                    gr.update(value=2 if m == "upscale" else 4))

        # instant form updates: no spinner over the fields they change
        mode.change(on_mode, mode, [method, image, reference, run, scale], show_progress="hidden")
        method.change(lambda name: gr.update(value=param_text(name)) if name in RECIPES else gr.update(),
                      method, params, show_progress="hidden")

        def job(m, p, neg, mod, meth, sz, sc, sd, img, ref, prm, progress=gr.Progress()):
            try:
                res = run_job(cache, config, m, p, neg, mod, meth, sz, sc, sd, img, ref, prm, progress=progress,
                              warn=gr.Warning)
            except (ValueError, TypeError, FloatingPointError) as err:
                raise gr.Error(str(err), print_exception=False) from None
            native = res["native"].resize(res["image"].size)  # the slider compares at the high-res size
            return (native, res["image"]), res["image"], res["png"], res["info"]

        # progress shows once, under the button; an error marks that line (and the toast says why) while the
        # outputs keep the previous result
        run.click(job, [mode, prompt, negative, model, method, size, scale, seed, image, reference, params],
                  [compare, result, download, info], concurrency_limit=config.concurrency, show_progress="full",
                  show_progress_on=[status])
    return demo


def launch(config: AppConfig, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kwargs):
    """Queue and serve the app on host:port (local-only fonts; no analytics)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    demo = build_app(config)
    demo.queue(max_size=config.max_queue, default_concurrency_limit=config.concurrency)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
                theme=theme, allowed_paths=[str(Path(config.out).resolve())], quiet=not block, **kwargs)
    return demo
