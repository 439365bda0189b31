"""Exact reparameterisation of DDPM models (eps-, v- or x0-prediction) as rectified flows.

A DDPM state x_t = a·x0 + s·ε with a = √ᾱ_t, s = √(1−ᾱ_t) is a rescaled flow state:
    x_rf = x_t / (a + s) = (1−σ)·x0 + σ·ε,      σ = s / (a + s),
so the flow velocity is v = ε − x0 and x̂0 = x_rf − σ·v. An Euler step in this frame,
x_rf' = x_rf + (σ' − σ)·v, lands exactly on (1−σ')·x̂0 + σ'·ε̂, which is deterministic DDIM (η = 0)
[Song et al. 2021, eq. 12; the k-diffusion / "Elucidating" observation]. Continuous σ between the training
timesteps maps to a fractional timestep by interpolating log-SNR, so shifted or restarted grids work too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["DDPMFlow", "sigma_from_alpha_bar", "alpha_bar_from_sigma"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ_rf = √(1−ᾱ) / (√ᾱ + √(1−ᾱ))."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return s / (a + s)


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of `sigma_from_alpha_bar`: with r = σ/(1−σ) = s/a, ᾱ = 1/(1 + r²)."""
    r = sigma / (1 - sigma)
    return 1 / (1 + r * r)


@dataclass
class DDPMFlow:
    """Maps between a discrete-time DDPM (ᾱ over timesteps 0..T−1) and the flow frame.

    `alphas_cumprod` is the scheduler's ᾱ table; `prediction_type` is the diffusers name of what the network
    outputs. All maths runs in float64 on the table and float32 on tensors.
    """

    alphas_cumprod: torch.Tensor
    prediction_type: str = "epsilon"
    _log_snr: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"unknown prediction_type {self.prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}"
            )
        ac = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64).flatten().clone()
        if float(ac[-1]) == 0.0:
            # zero-terminal-SNR schedules (Lin et al. 2024, `rescale_betas_zero_snr`): ᾱ_T = 0 makes σ = 1 and the
            # log-SNR infinite; diffusers' Euler schedulers set ᾱ_T = 2⁻²⁴ for the same reason, and so do we
            ac[-1] = 2.0**-24
        self.alphas_cumprod = ac
        self._log_snr = torch.log(ac) - torch.log1p(-ac)  # decreasing in t

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def sigma_at(self, timesteps: torch.Tensor) -> torch.Tensor:
        """σ_rf of integer training timesteps."""
        return sigma_from_alpha_bar(self.alphas_cumprod[torch.as_tensor(timesteps, dtype=torch.long)])

    @property
    def sigma_max(self) -> float:
        return float(self.sigma_at(torch.tensor(self.num_train_timesteps - 1)))

    def timestep(self, sigma: float) -> float:
        """Fractional training timestep whose log-SNR equals that of σ (exact integer on the table's σ values)."""
        sig = torch.tensor(float(sigma), dtype=torch.float64)
        if not 0 < float(sig) < 1:
            raise ValueError(f"sigma must lie in (0, 1) for a DDPM model, got {float(sig)}")
        ab = alpha_bar_from_sigma(sig)
        lam = float(torch.log(ab) - torch.log1p(-ab))
        # −log-SNR increases with t; np.interp clamps outside the table (σ beyond the noisiest step → T−1)
        t = float(np.interp(-lam, (-self._log_snr).numpy(), np.arange(self.num_train_timesteps)))
        nearest = round(t)
        return float(nearest) if abs(t - nearest) < 1e-6 else t

    def coefficients(self, sigma: float) -> tuple[float, float]:
        """(a, s) = (√ᾱ, √(1−ᾱ)) for σ_rf = σ."""
        ab = float(alpha_bar_from_sigma(torch.tensor(float(sigma), dtype=torch.float64)))
        return ab**0.5, (1 - ab) ** 0.5

    def model_input(self, x_rf: torch.Tensor, sigma: float) -> torch.Tensor:
        """x_t = x_rf · (a + s): the DDPM-scaled sample the network expects."""
        a, s = self.coefficients(sigma)
        return x_rf * (a + s)

    def velocity(self, output: torch.Tensor, x_t: torch.Tensor, sigma: float) -> torch.Tensor:
        """Flow velocity v = ε̂ − x̂0 from the network `output` at DDPM sample x_t."""
        a, s = self.coefficients(sigma)
        if self.prediction_type == "epsilon":
            eps = output
            x0 = (x_t - s * eps) / a
        elif self.prediction_type == "v_prediction":
            eps = s * x_t + a * output
            x0 = a * x_t - s * output
        else:  # "sample"
            x0 = output
            eps = (x_t - a * x0) / s
        return eps - x0

    def sigmas(self, timesteps: torch.Tensor, final_sigma: float = 0.0) -> torch.Tensor:
        """Flow σ grid for a list of (decreasing) training timesteps, followed by `final_sigma`."""
        sig = self.sigma_at(timesteps)
        return torch.cat([sig, sig.new_tensor([final_sigma])])

    def spaced_timesteps(self, steps: int, spacing: str = "leading", steps_offset: int = 1) -> torch.Tensor:
        """Training timesteps of a `steps`-step sampler, spaced as diffusers' DDIM/Euler do (decreasing)."""
        T = self.num_train_timesteps
        if spacing == "leading":
            ts = torch.arange(0, steps, dtype=torch.float64) * (T // steps) + steps_offset
        elif spacing == "trailing":
            ts = torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round()
        else:
            raise ValueError(f"unknown timestep spacing {spacing!r}; use leading, trailing or linspace")
        return ts.long().clamp(0, T - 1).sort(descending=True).values
