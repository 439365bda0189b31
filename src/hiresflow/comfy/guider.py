"""HiFlow as a ComfyUI GUIDER: CFG plus HiFlow's direction and acceleration alignment to a reference latent.

For `SamplerCustomAdvanced`: the user runs an ordinary first pass at the native size, upscales its image and
encodes it (the latent that starts the high-resolution pass at a partial denoise), and gives the first pass's
LATENT as `reference`. ComfyUI's sampler does not keep a trajectory, so the reference flow is the first pass's
final x̂0 at every σ (the official code reads the low-resolution x̂0 of the same step; at the late steps HiFlow
runs, the two nearly coincide), brought to the current size by bicubic interpolation (`hiresflow.guides.hiflow`).

Per model evaluation at σ_c (ComfyUI's frame), with σ the flow σ (`hiresflow.comfy.model`), x = the flow state
and x̂0 the CFG prediction of ComfyUI's `CFGGuider.predict_noise`, `HiFlowGuide.correct` returns the corrected
velocity v' (A_d on x̂0 with the Butterworth low-pass, A_a against the previous step's velocity), and the guider
returns x̂0' = x − σ·v' — the same in both frames. The step index i is σ_c's position in the sampler's grid
(`transformer_options["sample_sigmas"]`); the weights fall linearly over the steps, α_i = α·(N − i)/N. One model
evaluation per step is assumed (euler); multi-evaluation samplers see the acceleration term on every evaluation.
"""

from __future__ import annotations

import torch

import comfy.model_sampling
import comfy.samplers

from ..guides.hiflow import HiFlowConfig
from ..stage import StageEnv, StageResult, StepContext, Trajectory

__all__ = ["HiFlowGuider", "check_reference"]


def check_reference(reference: torch.Tensor, target: torch.Tensor) -> None:
    """One-line error unless `reference` is a smaller latent of the same channels and aspect ratio as `target`."""
    if reference.ndim != 4 or target.ndim != 4:
        raise ValueError(f"the reference latent must be an image latent [B, C, h, w], got {tuple(reference.shape)}")
    (_, c, h, w), (_, tc, th, tw) = reference.shape, target.shape
    if c != tc:
        raise ValueError(f"the reference latent has {c} channels but the model's latent has {tc}; encode the "
                         f"reference with this model's VAE")
    if h > th or w > tw:
        raise ValueError(f"the reference latent ({w * 8}x{h * 8} px at 8 px per latent pixel) is larger than the "
                         f"latent being sampled ({tw * 8}x{th * 8}); give the low-resolution first pass's LATENT")
    if abs(h * tw - w * th) > max(th, tw):
        raise ValueError(f"the reference latent is {w}x{h} but the latent being sampled is {tw}x{th}: the aspect "
                         f"ratios differ; give the first pass of the same image")


class HiFlowGuider(comfy.samplers.CFGGuider):
    """`CFGGuider` whose denoised prediction carries HiFlow's correction toward `reference` (a raw LATENT)."""

    def __init__(self, model_patcher, reference: torch.Tensor, alpha: float = 1.0, beta: float = 0.5,
                 cutoff: float = 0.2):
        super().__init__(model_patcher)
        self.config = HiFlowConfig(alpha=alpha, beta=beta, cutoff=cutoff)  # checks the values
        self.reference = reference
        self.guide = None

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        check_reference(self.reference, latent_image)
        self.guide = None  # built on the first evaluation, for this run's grid
        return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)

    def _flow(self) -> bool:
        return isinstance(self.inner_model.model_sampling, comfy.model_sampling.CONST)

    def _build(self, x: torch.Tensor, sigmas_c: torch.Tensor):
        flow = self._flow()
        sig = sigmas_c.double().cpu()
        sig = sig if flow else sig / (1 + sig)
        ref = self.inner_model.process_latent_in(self.reference.to(x.device, torch.float32))
        steps = sig.numel() - 1
        traj = Trajectory(sigmas=sig, x0={i: ref for i in range(steps)})
        prev = StageResult(index=0, size=tuple(ref.shape[-2:]), latent=ref, image=None, trajectory=traj, sigmas=sig,
                           start=0)
        env = StageEnv(model=None, index=1, stage=None, sigmas=sig, start=0, stop=steps, shape=tuple(x.shape),
                       generator=None, noise=None, cond=None, previous=prev, upsampled=ref)
        guide = self.config.build(env)
        guide.begin(x, sig, 0, steps)
        return guide, sig

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        x0 = super().predict_noise(x, timestep, model_options, seed)
        sigmas_c = model_options.get("transformer_options", {}).get("sample_sigmas")
        sc = float(timestep.flatten()[0])
        if sigmas_c is None or sc <= 0:
            return x0
        if self.guide is None:
            self.guide = self._build(x, sigmas_c)
        guide, sig = self.guide
        i = int(torch.argmin((sigmas_c.flatten().float().cpu() - sc).abs()))
        if i >= sig.numel() - 1:
            return x0
        flow = self._flow()
        s = sc if flow else sc / (1 + sc)
        x_rf = x.float() if flow else x.float() * (1 - s)
        v = (x_rf - x0.float()) / s
        ctx = StepContext(stage=1, step=i, n_steps=sig.numel() - 1, index=i, sigma=s,
                          sigma_next=float(sig[i + 1]), x=x_rf, v=v, x0_raw=x0.float())
        v = guide.correct(ctx)
        return (x_rf - s * v).to(x0.dtype)
