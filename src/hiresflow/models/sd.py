"""Adapter for diffusers `StableDiffusionPipeline` and `StableDiffusionXLPipeline` (DDPM U-Nets) as flows.

The U-Net's ε-, v- or x0-prediction is turned into a flow velocity exactly by `DDPMFlow`
(x_t = x_rf·(√ᾱ + √(1−ᾱ)), fractional timestep from log-SNR), with classifier-free guidance on the network
output in one batched call: out = out_u + w·(out_c − out_u). Since v is affine in the output, this is the
same as CFG on v. Training (`training_loss`): the DDPM objective of the scheduler's prediction type (ε, v or x0)
at integer timesteps drawn uniformly from [0, T).

The U-Net methods (RAU-Net, MSW-MSA, restrained dilated convolution, scale fusion, FreeU) are this family's
patches (`patch_types`); `unet_patches(UNetToolkit)` maps the recipes' switches to them, and `unet_roles` finds the
blocks they act on by structure (`hiresflow.models.unet_roles`). A ControlNet pipeline is conditioned with
`set_control(image)` (`hiresflow.models.controlnet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..flow.parameterization import DDPMFlow
from ..flow.schedule import static_shift, validate_steps
from .base import FlowModel, LatentGeometry, VaeCodec

__all__ = ["SDFlowModel", "SDCond"]


@dataclass
class SDCond:
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    pooled: torch.Tensor | None = None  # SDXL only
    negative_pooled: torch.Tensor | None = None


class SDFlowModel(FlowModel):
    """SD1.x/2.x and SDXL. σ grids follow the scheduler's timestep spacing, ending at σ = 0."""

    family = "sd"  # "sdxl" on SDXL pipelines

    def __init__(self, pipe, name: str = "sd", native: int | None = None):
        self.pipe = pipe
        self.name = name
        self.unet = pipe.unet
        self.is_xl = hasattr(pipe, "text_encoder_2")
        self.family = "sdxl" if self.is_xl else "sd"
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        side = native or int(self.unet.config.sample_size) * vae_scale
        self.geometry = LatentGeometry(
            channels=int(self.unet.config.in_channels), vae_scale=vae_scale, patch=1, native=(side, side)
        )
        self.codec = VaeCodec(pipe.vae)
        sc = pipe.scheduler
        self.ddpm = DDPMFlow(sc.alphas_cumprod.clone(), sc.config.get("prediction_type", "epsilon"))
        self.spacing = sc.config.get("timestep_spacing", "leading")
        self.steps_offset = int(sc.config.get("steps_offset", 0))
        self.guidance_kind = "cfg"
        self.default_guidance = 5.0 if self.is_xl else 7.5
        self.default_steps = 50
        self.controlnet = getattr(pipe, "controlnet", None)
        self.control = None

    # ------------------------------------------------------------ U-Net methods

    @classmethod
    def patch_types(cls):
        from ..patches.dilated_conv import DilatedConvConfig
        from ..patches.freeu import FreeUConfig
        from ..patches.msw_msa import MSWMSAConfig
        from ..patches.rau_net import RAUNetConfig
        from ..patches.scale_fusion import ScaleFusionConfig

        return (RAUNetConfig, MSWMSAConfig, DilatedConvConfig, ScaleFusionConfig, FreeUConfig)

    @cached_property
    def unet_roles(self):
        """Which blocks and layers the U-Net methods act on (one-line ValueError for an unknown layout)."""
        from .unet_roles import unet_roles

        return unet_roles(self.unet)

    def unet_patches(self, toolkit, strict: bool = True) -> list:
        """Every switch of `UNetToolkit`, in the order RAU-Net, MSW-MSA, dilated conv, scale fusion, FreeU."""
        from ..patches.dilated_conv import DilatedConvConfig
        from ..patches.freeu import FreeUConfig
        from ..patches.msw_msa import MSWMSAConfig
        from ..patches.rau_net import RAUNetConfig
        from ..patches.scale_fusion import ScaleFusionConfig

        if not toolkit.empty:
            self.unet_roles  # noqa: B018 - fail early with the role map's one-line error
        out: list = []
        if toolkit.rau_net:
            out.append(RAUNetConfig(t1=toolkit.rau_t1, t2=toolkit.rau_t2, aggressive=toolkit.aggressive,
                                    turbo=toolkit.turbo))
        if toolkit.msw_msa:
            out.append(MSWMSAConfig(shift=toolkit.window_shift, odd=toolkit.odd_windows))
        if toolkit.dilated_conv:
            out.append(DilatedConvConfig(dilation=toolkit.dilation, tau=toolkit.dilate_tau))
        if toolkit.scale_fusion:
            out.append(ScaleFusionConfig(gaussian=toolkit.gaussian, sigma=toolkit.fusion_sigma))
        if toolkit.freeu:
            out.append(FreeUConfig(b1=toolkit.b1, b2=toolkit.b2, s1=toolkit.s1, s2=toolkit.s2,
                                   mode=toolkit.freeu_mode))
        return out

    # ------------------------------------------------------------ ControlNet

    @property
    def has_controlnet(self) -> bool:
        return self.controlnet is not None

    def set_control(self, image: torch.Tensor | None, scale: float = 1.0, end: float = 1.0) -> None:
        """Condition every later call on a control image [1, 3, H, W] in [0, 1] (None: no control)."""
        from .controlnet import ControlSpec

        if image is not None and not self.has_controlnet:
            raise ValueError(f"{self.name!r} has no ControlNet; load a StableDiffusionControlNetPipeline")
        self.control = None if image is None else ControlSpec(image.float(), float(scale), float(end))

    @property
    def device(self) -> torch.device:
        return self.unet.device

    pipeline_classes = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionControlNetPipeline")

    @classmethod
    def handles(cls, pipe) -> bool:
        name = type(pipe).__name__
        return name.startswith("StableDiffusion") and not name.startswith("StableDiffusion3") and hasattr(pipe, "unet")

    def _levels(self) -> list[tuple[int, int, int]]:
        """Per resolution level: (channels, parameters of its blocks, attention transformer blocks)."""
        if not hasattr(self, "_level_cache"):
            unet = self.unet
            n = len(unet.down_blocks)
            out = []
            for lvl in range(n):
                blocks = [unet.down_blocks[lvl], unet.up_blocks[n - 1 - lvl]]
                if lvl == n - 1:
                    blocks.append(unet.mid_block)
                params = sum(p.numel() for b in blocks for p in b.parameters())
                attn = sum(1 for b in blocks for m in b.modules() if type(m).__name__ == "BasicTransformerBlock")
                out.append((int(unet.config.block_out_channels[lvl]), params, attn))
            self._level_cache = out
        return self._level_cache

    def call_bytes(self, latent_hw, text_copies=1) -> int:
        """≈ 48 float maps of the first level's width per batch row (fitted on the embedded U-Net's peak RSS);
        cond and uncond share one call (batch 2)."""
        c0 = int(self.unet.config.block_out_channels[0])
        return 48 * latent_hw[0] * latent_hw[1] * c0 * 4 * 2

    def call_flops(self, latent_hw, text_copies=1) -> float:
        """Per level l (pixels h·w/4^l): 2·params_l·pixels_l for the convolutions and projections, plus
        4·pixels_l²·C_l per self-attention block; ×2 for the batched CFG branches."""
        total = 0.0
        for lvl, (ch, params, attn) in enumerate(self._levels()):
            px = (latent_hw[0] >> lvl) * (latent_hw[1] >> lvl)
            total += 2.0 * params * px + 4.0 * attn * px * px * ch
        return 2 * total

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.unet

    def encode_prompts(self, prompts: list[str]) -> SDCond:
        if self.is_xl:
            raise ValueError("training an SDXL U-Net is not supported by hiresflow's trainers; use SD 1.x/2.x")
        with torch.no_grad():
            pe, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
        return SDCond(pe, None)

    def training_loss(self, z0, cond: SDCond, generator, **_) -> torch.Tensor:
        """‖net(x_t, t) − target‖², x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, t ~ U{0..T−1}; target ε, v = √ᾱ·ε − √(1−ᾱ)·x0
        or x0 by the scheduler's prediction type."""
        b = z0.shape[0]
        eps = torch.randn(z0.shape, generator=generator)
        alphas = self.ddpm.alphas_cumprod.float()
        t = torch.randint(0, alphas.numel(), (b,), generator=generator)
        ab = alphas[t].view(b, 1, 1, 1)
        a, s = ab.sqrt(), (1 - ab).sqrt()
        x = a * z0 + s * eps
        out = self.unet(x, t, encoder_hidden_states=cond.prompt_embeds, return_dict=False)[0]
        kind = self.ddpm.prediction_type
        target = eps if kind == "epsilon" else (a * eps - s * z0 if kind == "v_prediction" else z0)
        return F.mse_loss(out, target)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> SDCond:
        if self.is_xl:
            pe, ne, pooled, npooled = self.pipe.encode_prompt(
                prompt=prompt, device=self.device, num_images_per_prompt=1,
                do_classifier_free_guidance=True, negative_prompt=negative_prompt or None,
            )
            return SDCond(pe, ne, pooled, npooled)
        pe, ne = self.pipe.encode_prompt(prompt, self.device, 1, True, negative_prompt or None)
        return SDCond(pe, ne)

    def schedule(self, steps, size, *, shift=None, mu=None) -> torch.Tensor:
        """σ_rf of the scheduler's timesteps for `steps` steps, then 0; `shift` applies the static time shift
        to those σ (mapped back to fractional timesteps at call time). `mu` applies e^μ as a static shift."""
        validate_steps(steps)
        ts = self.ddpm.spaced_timesteps(steps, self.spacing, self.steps_offset)
        sig = self.ddpm.sigma_at(ts)
        if mu is not None:
            shift = float(torch.tensor(mu, dtype=torch.float64).exp())
        if shift is not None:
            sig = static_shift(sig, shift).clamp(max=self.ddpm.sigma_max)
        return torch.cat([sig, sig.new_zeros(1)])

    def time_fraction(self, sigma: float) -> float:
        if sigma <= 0:
            return 0.0
        return self.ddpm.timestep(min(sigma, self.ddpm.sigma_max)) / self.ddpm.num_train_timesteps

    def _added_cond(self, cond: SDCond, b: int, height: int, width: int) -> dict:
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=self.dtype, device=self.device)
        text = torch.cat([cond.negative_pooled.expand(b, -1), cond.pooled.expand(b, -1)])
        return {"text_embeds": text.to(self.dtype), "time_ids": time_ids.expand(2 * b, -1)}

    @torch.no_grad()
    def velocity(self, x, sigma, cond: SDCond, *, guidance=None, ctx=None):
        b, _, h, w = x.shape
        scale = self.default_guidance if guidance is None else float(guidance)
        x_t = self.ddpm.model_input(x.float(), sigma)
        t = torch.full((2 * b,), self.ddpm.timestep(sigma), device=self.device, dtype=torch.float32)
        text = torch.cat([cond.negative_embeds.expand(b, -1, -1), cond.prompt_embeds.expand(b, -1, -1)])
        added = self._added_cond(cond, b, h * self.geometry.vae_scale, w * self.geometry.vae_scale) \
            if self.is_xl else None
        inp, text = torch.cat([x_t, x_t]).to(self.dtype), text.to(self.dtype)
        control = self._control_residuals(inp, t, text, added, ctx)
        if control is None:
            out = self.unet(inp, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0]
        else:
            from .controlnet import residuals_added

            with residuals_added(self.unet, *control):
                out = self.unet(inp, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0]
        out = out.float()
        out_u, out_c = out.chunk(2)
        out = out_u + scale * (out_c - out_u)
        return self.ddpm.velocity(out, x_t, sigma)

    def _control_residuals(self, inp, t, text, added, ctx):
        """The ControlNet's (down residuals, mid residual) for this call, or None without control."""
        spec = self.control
        if spec is None or self.controlnet is None or \
                not spec.active(getattr(ctx, "step", None), getattr(ctx, "n_steps", None)):
            return None
        size = (inp.shape[-2] * self.geometry.vae_scale, inp.shape[-1] * self.geometry.vae_scale)
        img = spec.image.to(device=self.device, dtype=torch.float32)
        if tuple(img.shape[-2:]) != size:
            img = F.interpolate(img, size=size, mode="bicubic").clamp(0, 1)
        img = img.expand(inp.shape[0], -1, -1, -1).to(self.dtype)
        kw = {"added_cond_kwargs": added} if added is not None else {}
        down, mid = self.controlnet(inp, t, encoder_hidden_states=text, controlnet_cond=img,
                                    conditioning_scale=spec.scale, return_dict=False, **kw)
        return tuple(down), mid
