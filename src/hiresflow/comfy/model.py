"""`ComfyFlowModel`: a ComfyUI MODEL (its `ModelPatcher`, model sampling and conditioning) and VAE as a `FlowModel`.

Frames. ComfyUI's samplers run k-diffusion's frame: a state x_c at noise level σ_c, the model returning the
denoised x̂0 (`comfy.model_base.BaseModel.apply_model` → `model_sampling.calculate_denoised`). hiresflow runs the
rectified-flow frame x = (1−σ)·x0 + σ·ε with velocity v = ε − x0. The maps (exact, float64 on σ):
- flow models (`comfy.model_sampling.CONST`: FLUX, SD3, Qwen-Image, …): the same frame, σ_c = σ, x_c = x;
- ε-, v- and x0-prediction models (`EPS`, `V_PREDICTION`, discrete tables: SD 1.x, SDXL): x_c = x0 + σ_c·ε, so
  σ_c = σ/(1−σ) and x_c = x/(1−σ) (`hiresflow.flow.parameterization`: σ = s/(a+s), σ_c = s/a);
and in both v = (x − x̂0)/σ, x̂0 being the same in both frames.
CFG: ComfyUI's own `comfy.samplers.sampling_function` (its cond/uncond batching, `sampler_cfg_function`,
pre/post-CFG hooks and every ModelPatcher patch), on x̂0 — equal to CFG on v, which is affine in x̂0.
σ grids: hiresflow's (`hiresflow.flow.schedule` / `DDPMFlow`) with the model sampling's own constants — FLUX's μ
(`ModelSamplingFlux.shift`), the static shift of discrete-flow models, the discrete table of DDPM models with
diffusers' "leading" spacing (or the `timestep_spacing`/`steps_offset` an embedded checkpoint's metadata puts in
`sampling_settings`: "trailing" for tiny-sd v3) — so one σ grid serves the library and ComfyUI alike (ComfyUI's
schedulers differ); on a zero-terminal-SNR table the grid starts at the library's ᾱ_T = 2⁻²⁴ (ComfyUI's own table
ends at 4.9e-8; the model call maps either σ to the last timestep).
Encode/decode: ComfyUI's `VAE` and the model's latent format (z = (raw − shift)·scale); the unclamped decode some
recipes start from runs ComfyUI's decoder without its clamp.

Sampling needs the model loaded and the conditioning prepared per latent shape, as `comfy.samplers.CFGGuider`
does; `with model.sampling(shape): run_plan(...)` holds that state.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..flow.parameterization import DDPMFlow
from ..flow.schedule import flow_sigmas, static_shift, validate_steps
from ..models.base import FlowModel, LatentGeometry, VaeCodec

__all__ = ["ComfyCond", "ComfyVaeCodec", "ComfyFlowModel", "ComfyFluxModel", "comfy_flow_model"]


@dataclass
class ComfyCond:
    """ComfyUI conditionings ([[tensor, dict], …]) standing for the encoded prompt."""

    positive: list
    negative: list | None = None


class ComfyVaeCodec:
    """Images in [0, 1] ([B, 3, H, W]) ↔ normalised latents through a ComfyUI `VAE` and a latent format."""

    TILING_MODES = VaeCodec.TILING_MODES

    def __init__(self, vae, latent_format):
        self.vae, self.latent_format = vae, latent_format
        self.scaling = float(getattr(latent_format, "scale_factor", 1.0))
        self.shift = float(getattr(latent_format, "shift_factor", 0.0) or 0.0)
        self.factor = int(vae.downscale_ratio)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(raw)

    def decode_bytes(self, height: int, width: int) -> int:
        """ComfyUI's own estimate of one decode (`VAE.memory_used_decode`)."""
        shape = (1, int(self.vae.latent_channels), height // self.factor, width // self.factor)
        return int(self.vae.memory_used_decode(shape, self.vae.vae_dtype))

    @contextmanager
    def tiling(self, mode: str = "auto") -> Iterator[None]:
        """ComfyUI's VAE tiles by itself when memory runs short; the mode is only checked."""
        if mode not in self.TILING_MODES:
            raise ValueError(f"vae_tiling must be one of {', '.join(self.TILING_MODES)}, got {mode!r}")
        yield

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        if sample:
            raise ValueError("ComfyUI's VAE encodes to the posterior mode only; use encode='mode' on ComfyUI models")
        raw = self.vae.encode(images.float().movedim(1, -1))  # no clamp: some inits encode the overshoot
        return self.normalise(raw.float())

    @torch.no_grad()
    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        raw = self.latent_format.process_out(z.float())
        if clamp:
            return self.vae.decode(raw).movedim(-1, 1).float()
        import comfy.model_management as mm

        vae = self.vae
        mm.load_models_gpu([vae.patcher])
        out = vae.first_stage_model.decode(raw.to(device=vae.device, dtype=vae.vae_dtype)).float()
        return ((out + 1) / 2).to(vae.output_device)  # VAE.process_output without its clamp


def _native(model_config, patch: int) -> int:
    """The family's native side in pixels when none is given: 1024 for DiTs and SDXL-class U-Nets, 512 for SD 1.x."""
    from comfy import supported_models

    if isinstance(model_config, (supported_models.SD15, supported_models.SD20)) and patch == 1:
        return 512
    return 1024


class ComfyFlowModel(FlowModel):
    """Any model ComfyUI loads; no model patches of the library (ComfyUI's own patches still apply)."""

    family = "comfyui"
    guidance_kind = "cfg"

    def __init__(self, patcher, vae, positive: list, negative: list | None = None, cfg: float = 1.0, *,
                 name: str = "comfyui", native: int | tuple[int, int] | None = None, seed: int = 0,
                 steps: int | None = None):
        import comfy.model_sampling as ms

        if not isinstance(positive, list) or not positive:
            raise ValueError("the positive conditioning is empty; connect a text encoder's CONDITIONING")
        self.patcher, self.vae, self.name, self.seed = patcher, vae, name, int(seed)
        self.positive, self.negative = positive, negative
        base = patcher.model
        self.latent_format = base.latent_format
        sampling = base.model_sampling
        self.flow = isinstance(sampling, ms.CONST)
        if not self.flow and not hasattr(sampling, "sigmas"):
            raise ValueError(f"{type(base).__name__} samples continuously ({type(sampling).__name__}); hiresflow "
                             f"maps flow models and discrete-table DDPM models")
        self.sampling_object = sampling
        if not self.flow:
            table = sampling.sigmas.double().cpu()
            alphas = 1.0 / (1.0 + table * table)  # ᾱ = 1/(1 + σ_c²)
            if getattr(sampling, "zsnr", False):
                alphas[-1] = 0.0  # the σ grid is hiresflow's: DDPMFlow reads ᾱ_T = 0 as 2⁻²⁴, as the library does
            self.ddpm = DDPMFlow(alphas, "epsilon")
        if not isinstance(getattr(vae, "downscale_ratio", None), int):
            raise ValueError("this VAE is a video or audio VAE; hiresflow needs an image VAE")
        patch = int(getattr(base.diffusion_model, "patch_size", 1) or 1)
        side = native or _native(base.model_config, patch)
        hw = (int(side[0]), int(side[1])) if isinstance(side, (tuple, list)) else (int(side), int(side))
        channels = int(getattr(self.latent_format, "latent_channels", 4))
        self.geometry = LatentGeometry(channels=channels, vae_scale=int(vae.downscale_ratio), patch=patch, native=hw)
        self.geometry.validate(*hw)
        self.codec = ComfyVaeCodec(vae, self.latent_format)
        self.default_guidance = float(cfg)
        if not self.flow:
            self.default_steps = 50  # as the diffusers SD adapter (`hiresflow.models.sd`)
        if steps is not None:
            self.default_steps = int(steps)
        self.inner = None
        self._state: dict[str, Any] = {}

    # ------------------------------------------------------------ device, conditioning

    @property
    def device(self) -> torch.device:
        return torch.device(self.patcher.load_device)

    @property
    def diffusion_model(self):
        return self.patcher.model.diffusion_model

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> ComfyCond:
        """The conditioning connected in ComfyUI (the prompt text lives in the graph's text encoder nodes)."""
        return ComfyCond(self.positive, self.negative)

    def text_tokens(self, cond: ComfyCond) -> int:
        return int(cond.positive[0][0].shape[1])

    # ------------------------------------------------------------ sampling state

    @contextmanager
    def sampling(self, shape: tuple[int, ...]) -> Iterator["ComfyFlowModel"]:
        """Load the model and prepare the conditioning as `comfy.samplers.CFGGuider.sample/outer_sample` do
        (hooks, wrappers, memory for the largest latent `shape`); restore everything afterwards."""
        import comfy.hooks
        import comfy.model_patcher as mp
        import comfy.sampler_helpers as sh
        import comfy.samplers as cs

        patcher = self.patcher
        conds = {"positive": sh.convert_cond(self.positive)}
        if self.negative is not None:
            conds["negative"] = sh.convert_cond(self.negative)
        cs.preprocess_conds_hooks(conds)
        options = mp.create_model_options_clone(patcher.model_options)
        hook_mode = patcher.hook_mode
        if cs.get_total_hook_groups_in_conds(conds) <= 1:
            patcher.hook_mode = comfy.hooks.EnumHookMode.MinVram
        loaded = None
        try:
            sh.prepare_model_patcher(patcher, conds, options)
            cs.filter_registered_hooks_on_conds(conds, options)
            self.inner, conds, loaded = sh.prepare_sampling(patcher, tuple(shape), conds, options)
            cs.cast_to_load_options(options, device=patcher.load_device, dtype=patcher.model_dtype())
            patcher.pre_run()
            self._state = {"conds": conds, "options": options, "by_shape": {}}
            try:
                yield self
            finally:
                patcher.cleanup()
        finally:
            if loaded is not None:
                sh.cleanup_models(conds, loaded)
            cs.cast_to_load_options(options, device=patcher.offload_device)
            patcher.hook_mode = hook_mode
            patcher.restore_hook_patches()
            self.inner, self._state = None, {}

    def _conds(self, shape: tuple[int, ...]) -> dict:
        """ComfyUI's conditioning processed for a latent shape (`comfy.samplers.process_conds`), cached per shape."""
        import comfy.model_management as mm
        import comfy.samplers as cs

        if self.inner is None:
            raise RuntimeError("ComfyFlowModel.velocity runs inside `with model.sampling(shape):`")
        cache = self._state["by_shape"]
        if shape not in cache:
            mm.load_models_gpu([self.patcher])  # back in place if a VAE pass moved it out
            noise = torch.zeros(shape, device=self.device)
            conds = {k: [c.copy() for c in v] for k, v in self._state["conds"].items()}
            cache[shape] = cs.process_conds(self.inner, noise, conds, self.device, latent_image=noise, seed=self.seed)
        return cache[shape]

    # ------------------------------------------------------------ the flow

    def comfy_sigma(self, sigma: float) -> float:
        """ComfyUI's σ_c for hiresflow's σ."""
        return float(sigma) if self.flow else float(sigma) / (1.0 - float(sigma))

    @torch.no_grad()
    def velocity(self, x, sigma, cond: ComfyCond, *, guidance=None, ctx=None):
        import comfy.samplers as cs

        s = float(sigma)
        if not (0 < s <= 1 if self.flow else 0 < s < 1):
            raise ValueError(f"sigma {s} is outside the model's range for a model call (0 < σ ≤ 1 for flow models, "
                             f"0 < σ < 1 for DDPM models)")
        conds = self._conds(tuple(x.shape))
        xf = x.float().to(self.device)
        sc = self.comfy_sigma(s)
        xc = xf if self.flow else xf / (1.0 - s)
        scale = self.default_guidance if guidance is None else float(guidance)
        if conds.get("negative") is None and abs(scale - 1.0) > 1e-12:
            raise ValueError(f"CFG {scale} needs a negative conditioning; connect one or set cfg to 1")
        t = torch.full((x.shape[0],), sc, device=self.device, dtype=torch.float32)
        x0 = cs.sampling_function(self.inner, xc, t, conds.get("negative"), conds["positive"], scale,
                                  model_options=self._state["options"], seed=self.seed)
        return (xf - x0.float()) / s

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """σ grid: explicit `shift`/`mu` win; else the model sampling's constants (see the module docstring)."""
        import comfy.model_sampling as ms

        validate_steps(steps)
        if self.flow:
            if shift is None and mu is None:
                if isinstance(self.sampling_object, ms.ModelSamplingFlux):
                    mu = float(self.sampling_object.shift)
                else:
                    shift = float(getattr(self.sampling_object, "shift", 1.0))
            return flow_sigmas(steps, shift=shift, mu=mu)
        settings = getattr(self.patcher.model.model_config, "sampling_settings", None) or {}
        ts = self.ddpm.spaced_timesteps(steps, settings.get("timestep_spacing", "leading"),
                                        int(settings.get("steps_offset", 1)))  # SD 1.5's leading+1 unless stated
        sig = self.ddpm.sigma_at(ts)
        if mu is not None:
            shift = float(torch.tensor(mu, dtype=torch.float64).exp())
        if shift is not None:
            sig = static_shift(sig, shift).clamp(max=self.ddpm.sigma_max)
        return torch.cat([sig, sig.new_zeros(1)])

    def time_fraction(self, sigma: float) -> float:
        if self.flow:
            return float(sigma)
        if sigma <= 0:
            return 0.0
        return self.ddpm.timestep(min(sigma, self.ddpm.sigma_max)) / self.ddpm.num_train_timesteps

    def describe(self) -> dict:
        out = super().describe()
        out["comfy_model"] = type(self.patcher.model).__name__
        return out


class ComfyFluxModel(ComfyFlowModel):
    """ComfyUI's FLUX-class models (`comfy.ldm.flux.model.Flux`): the RoPE family on `pe_embedder`, proportional
    attention and shifted patchification."""

    family = "comfyui-flux"

    @classmethod
    def patch_types(cls):
        from ..patches.rope import RopeExtrapolationConfig, RopeScalingConfig
        from ..patches.shifted_patches import ShiftedPatchesConfig
        from .rope import ComfyProportionalAttentionConfig

        return (RopeScalingConfig, RopeExtrapolationConfig, ShiftedPatchesConfig, ComfyProportionalAttentionConfig)

    def rope_axes(self) -> list:
        from .rope import rope_axes_of

        g = self.geometry
        return rope_axes_of(self.diffusion_model.pe_embedder, (g.native[0] // g.multiple, g.native[1] // g.multiple))

    @contextmanager
    def rope_applied(self, transform, sigma):
        from ..patches.base import swapped
        from .rope import ComfyRotaryEmbed

        with swapped(self.diffusion_model, "pe_embedder", ComfyRotaryEmbed(self.rope_axes(), transform, sigma)):
            yield

    def toolkit_patches(self, toolkit) -> list:
        """Shifted patches, NTK/PI or DyPE RoPE, proportional attention; text duplication and windowed attention
        are diffusers-only and refused with one line."""
        from .rope import ComfyProportionalAttentionConfig

        if toolkit.text_duplication:
            raise ValueError("text duplication is not available on ComfyUI models; set text_duplication to false")
        if toolkit.windowed_attention is not None:
            raise ValueError("windowed attention is not available on ComfyUI models; leave windowed_attention unset")
        return self.rotary_toolkit_patches(toolkit, ComfyProportionalAttentionConfig)


def comfy_flow_model(patcher, vae, positive, negative=None, cfg: float = 1.0, **kwargs) -> ComfyFlowModel:
    """The adapter for a ComfyUI MODEL: `ComfyFluxModel` for FLUX-class diffusion models, else `ComfyFlowModel`."""
    from comfy.ldm.flux.model import Flux

    cls = ComfyFluxModel if isinstance(patcher.model.diffusion_model, Flux) else ComfyFlowModel
    return cls(patcher, vae, positive, negative, cfg, **kwargs)
