"""hiresflow's ComfyUI nodes (V3 node API, `comfy_api.latest`), over the installed `hiresflow` package.

- hiresflow Sampler: any recipe on a ComfyUI MODEL / conditioning / VAE (`hiresflow.comfy.model`), → LATENT, IMAGE;
- hiresflow RoPE Patch: PI / NTK / YaRN / DyPE on a FLUX-class model's position embedder, as a ModelPatcher clone;
- hiresflow U-Net Patch: restrained dilated convolution (FreeScale / ScaleCrafter) and MSW-MSA windowed
  self-attention (HiDiffusion) on an SD 1.x / SDXL U-Net, as a ModelPatcher clone;
- hiresflow HiFlow Guider: a GUIDER for SamplerCustomAdvanced with HiFlow's direction and acceleration alignment
  to a low-resolution reference LATENT;
- hiresflow Embedded Model Loader: the embedded tiny-flux / tiny-sd as MODEL, CLIP, VAE (ComfyUI's own classes).

Errors a user can cause are ValueErrors with one line, which ComfyUI shows in its error panel.
"""

from __future__ import annotations

import math

from comfy_api.latest import ComfyExtension, io

NODE_IDS = ("HiresflowSampler", "HiresflowRopePatch", "HiresflowUNetPatch", "HiresflowHiFlowGuider",
            "HiresflowEmbeddedLoader")
CATEGORY = "hiresflow"


def _one_line(err: Exception) -> ValueError:
    """The library's error as one line (its first), kept a ValueError."""
    text = str(err).strip().splitlines()
    return ValueError(text[0] if text else type(err).__name__)


def _recipes() -> list[str]:
    from hiresflow.recipes import RECIPES

    return sorted(RECIPES)


def parse_options(text: str) -> dict:
    """Recipe options, `key=value` per line or separated by `;` (values as on the command line's --set)."""
    from hiresflow.cli import parse_overrides

    items = [p.strip() for line in (text or "").splitlines() for p in line.split(";") if p.strip()]
    try:
        return parse_overrides(items)
    except ValueError as err:
        raise ValueError(f"recipe options: {err}; write one key=value per line, e.g. base_steps=16") from None


class HiresflowSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="HiresflowSampler",
            display_name="hiresflow Sampler",
            category=CATEGORY,
            description="High-resolution generation with a hiresflow recipe (HiFlow, I-Max, DyPE, DemoFusion, "
                        "FreeScale, …) on this model; the native pass and every cascade stage run inside.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Vae.Input("vae"),
                io.Combo.Input("recipe", options=_recipes(), default="hiflow"),
                io.Float.Input("scale", default=2.0, min=1.0, max=16.0, step=0.25,
                               tooltip="target = scale × native size (ignored when width and height are set)"),
                io.Int.Input("width", default=0, min=0, max=16384, step=8, tooltip="0: from scale"),
                io.Int.Input("height", default=0, min=0, max=16384, step=8, tooltip="0: from scale"),
                io.Int.Input("native", default=0, min=0, max=8192, step=8,
                             tooltip="the model's native side in pixels; 0: the family's (1024, SD 1.x 512)"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("steps", default=0, min=0, max=1000, tooltip="0: the recipe's default"),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.String.Input("options", multiline=True, default="",
                                tooltip="recipe options, one key=value per line (hiresflow recipes --params NAME)"),
            ],
            outputs=[io.Latent.Output(), io.Image.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, recipe, scale, width, height, native, seed, steps, cfg,
                options) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        from hiresflow.comfy.model import comfy_flow_model
        from hiresflow.recipes import RECIPES, build_plan, recipe_params
        from hiresflow.runner import run_plan

        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; use one of {', '.join(sorted(RECIPES))}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 1):
            raise ValueError(f"scale must be a number >= 1, got {scale!r}; hiresflow only enlarges")
        if (width == 0) != (height == 0):
            raise ValueError("set both width and height, or leave both 0 to use scale")
        try:
            params = parse_options(options)
            if steps:
                key = "steps" if "steps" in recipe_params(recipe) else "base_steps"
                if key in recipe_params(recipe):
                    params.setdefault(key, int(steps))
            flow = comfy_flow_model(model, vae, positive, negative, cfg=cfg, native=native or None, seed=seed)
            size = (int(height), int(width)) if width else None
            plan = build_plan(recipe, flow, scale=None if size else float(scale), size=size, **params)
            total = sum(st.schedule.steps - (st.schedule.start or 0) for st in plan.stages)
            bar = comfy.utils.ProgressBar(max(1, total))

            def on_step(ctx, x):
                mm.throw_exception_if_processing_interrupted()
                bar.update(1)

            c, h, w = flow.geometry.latent_shape(*plan.stages[-1].size)
            with flow.sampling((1, c, h, w)):
                result = run_plan(flow, plan, "", seed=int(seed), on_step=on_step)
        except (ValueError, TypeError, KeyError, FloatingPointError) as err:
            raise _one_line(err) from None
        latent = flow.latent_format.process_out(result.stages[-1].latent.float().cpu())
        image = result.image.float().cpu().clamp(0, 1).movedim(1, -1)
        return io.NodeOutput({"samples": latent}, image)


class HiresflowRopePatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="HiresflowRopePatch",
            display_name="hiresflow RoPE Patch",
            category=CATEGORY,
            description="RoPE extrapolation (PI, NTK, YaRN) on a FLUX-class model, static or scheduled by the "
                        "step's sigma (DyPE), for any sampler.",
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("method", options=["yarn", "ntk", "pi"], default="yarn"),
                io.Boolean.Input("dype", default=True, tooltip="schedule the extrapolation by sigma (DyPE)"),
                io.Int.Input("native_width", default=1024, min=16, max=8192, step=8),
                io.Int.Input("native_height", default=1024, min=16, max=8192, step=8),
                io.Int.Input("vae_factor", default=8, min=1, max=64,
                             tooltip="pixels per latent pixel of the model's VAE (8 for FLUX.1)"),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, method, dype, native_width, native_height, vae_factor) -> io.NodeOutput:
        from comfy.ldm.flux.model import Flux

        from hiresflow.comfy.rope import ComfyRotaryEmbed, StepSigma, rope_axes_of
        from hiresflow.patches.rope import RopeExtrapolationConfig

        dm = model.model.diffusion_model
        if not isinstance(dm, Flux):
            raise ValueError(f"the RoPE patch applies to FLUX-class models; this model is {type(dm).__name__}; "
                             f"use hiresflow U-Net Patch for SD models")
        try:
            transform = RopeExtrapolationConfig(method=method, dype=bool(dype)).transform()
        except ValueError as err:
            raise _one_line(err) from None
        step = int(vae_factor) * int(dm.patch_size)
        axes = rope_axes_of(dm.pe_embedder, (max(1, native_height // step), max(1, native_width // step)))
        sigma = StepSigma()
        patched = model.clone()
        patched.add_object_patch("diffusion_model.pe_embedder", ComfyRotaryEmbed(axes, transform, sigma))
        previous = patched.model_options.get("model_function_wrapper")

        def wrapper(apply_model, args):
            sigma.sigma = float(args["timestep"].flatten()[0])  # flow models: σ_c = σ
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

        patched.set_model_unet_function_wrapper(wrapper)
        return io.NodeOutput(patched)


class HiresflowUNetPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="HiresflowUNetPatch",
            display_name="hiresflow U-Net Patch",
            category=CATEGORY,
            description="U-Net methods for SD 1.x / SDXL above the native size: restrained dilated convolution "
                        "(FreeScale), MSW-MSA windowed self-attention and RAU-Net (HiDiffusion).",
            inputs=[
                io.Model.Input("model"),
                io.Int.Input("dilation", default=2, min=1, max=8, tooltip="1: off"),
                io.Float.Input("dilate_until", default=0.7, min=0.0, max=1.0, step=0.05,
                               tooltip="fraction of the steps that run dilated"),
                io.Boolean.Input("msw_msa", default=True, tooltip="2×2 shifted-window self-attention in the "
                                                                   "outermost transformer levels"),
                io.Boolean.Input("rau_net", default=False, optional=True,
                                 tooltip="RAU-Net (HiDiffusion): shrink the deep features in the early steps so "
                                         "objects do not repeat"),
                io.Float.Input("rau_t1", default=-1.0, min=-1.0, max=1.0, step=0.05, optional=True,
                               tooltip="RAU-Net's first switch, a fraction of the steps; -1: the official table "
                                       "by target size"),
                io.Float.Input("rau_t2", default=-1.0, min=-1.0, max=1.0, step=0.05, optional=True,
                               tooltip="RAU-Net's second switch, a fraction of the steps; -1: the official table"),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, dilation, dilate_until, msw_msa, rau_net=False, rau_t1=-1.0, rau_t2=-1.0) -> io.NodeOutput:
        from hiresflow.comfy.unet import patch_unet

        def ratio(v):
            return None if v is None or float(v) < 0 else float(v)

        try:
            return io.NodeOutput(patch_unet(model, int(dilation), float(dilate_until), bool(msw_msa), bool(rau_net),
                                            ratio(rau_t1), ratio(rau_t2)))
        except ValueError as err:
            raise _one_line(err) from None


class HiresflowHiFlowGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="HiresflowHiFlowGuider",
            display_name="hiresflow HiFlow Guider",
            category=CATEGORY,
            description="CFG guider with HiFlow's flow alignment to a low-resolution reference latent (an "
                        "ordinary first pass, upscaled): use with SamplerCustomAdvanced and an euler sampler.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Latent.Input("reference"),
                io.Float.Input("alpha", default=1.0, min=0.0, max=10.0, step=0.05, tooltip="direction alignment"),
                io.Float.Input("beta", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="acceleration alignment"),
                io.Float.Input("cutoff", default=0.2, min=0.01, max=1.0, step=0.01,
                               tooltip="low-pass cutoff of the direction alignment"),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, reference, alpha, beta, cutoff) -> io.NodeOutput:
        from hiresflow.comfy.guider import HiFlowGuider

        try:
            guider = HiFlowGuider(model, reference["samples"], alpha=alpha, beta=beta, cutoff=cutoff)
        except ValueError as err:
            raise _one_line(err) from None
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return io.NodeOutput(guider)


class HiresflowEmbeddedLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="HiresflowEmbeddedLoader",
            display_name="hiresflow Embedded Model Loader",
            category=CATEGORY,
            description="hiresflow's embedded tiny models (64 px native, trained on a toy world) in ComfyUI's "
                        "own model classes: a workflow that runs anywhere in seconds.",
            inputs=[io.Combo.Input("model_name", options=["tiny-flux", "tiny-sd"], default="tiny-flux")],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        from hiresflow.comfy.loader import load_embedded

        try:
            patcher, clip, vae, _ = load_embedded(model_name)
        except ValueError as err:
            raise _one_line(err) from None
        return io.NodeOutput(patcher, clip, vae)


class HiresflowExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [HiresflowSampler, HiresflowRopePatch, HiresflowUNetPatch, HiresflowHiFlowGuider,
                HiresflowEmbeddedLoader]


async def comfy_entrypoint() -> HiresflowExtension:
    return HiresflowExtension()


__all__ = ["NODE_IDS", "comfy_entrypoint", "parse_options"]
