"""An eps-/v-model wrapped as a flow and integrated with Euler equals deterministic DDIM on the same model."""

import pytest
import torch
from diffusers import DDIMScheduler

from hiresflow.flow.parameterization import DDPMFlow, alpha_bar_from_sigma, sigma_from_alpha_bar
from hiresflow.flow.sampler import sample


class TinyNet(torch.nn.Module):
    """A fixed nonlinear 'denoiser' of (x, t) with random weights."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(4, 4, generator=g, dtype=torch.float64) * 0.5
        self.b = torch.randn(4, generator=g, dtype=torch.float64)

    def forward(self, x, t):
        x = x.double()
        h = torch.einsum("oc,bchw->bohw", self.w, x) + self.b.view(1, -1, 1, 1) * (float(t) / 1000)
        return torch.tanh(h)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_flow_euler_equals_ddim(prediction_type, set_alpha_to_one):
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type=prediction_type, set_alpha_to_one=set_alpha_to_one, steps_offset=1,
                          clip_sample=False)
    sched.set_timesteps(25)
    net = TinyNet()
    x_T = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    x = x_T.clone()
    for t in sched.timesteps:
        x = sched.step(net(x, t), t, x, eta=0.0).prev_sample

    flow = DDPMFlow(sched.alphas_cumprod, prediction_type)
    final_ab = sched.final_alpha_cumprod
    sigmas = flow.sigmas(sched.timesteps, final_sigma=float(sigma_from_alpha_bar(final_ab.double())))
    seen_t = []

    def velocity(xr, ctx):
        x_t = flow.model_input(xr.double(), ctx.sigma)
        t = flow.timestep(ctx.sigma)
        seen_t.append(t)
        return flow.velocity(net(x_t, t), x_t, ctx.sigma)

    a0, s0 = flow.coefficients(float(sigmas[0]))
    out = sample(velocity, x_T / (a0 + s0), sigmas)
    a, s = (1.0, 0.0) if set_alpha_to_one else flow.coefficients(float(sigmas[-1]))
    x_flow = out.x.double() * (a + s)
    assert seen_t == [float(t) for t in sched.timesteps]  # integer timesteps recovered exactly
    assert float((x_flow - x).abs().max()) < 1e-5


def test_sigma_alpha_roundtrip_and_fractional_timestep():
    ab = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(alpha_bar_from_sigma(sigma_from_alpha_bar(ab)), ab, atol=1e-12)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    flow = DDPMFlow(sched.alphas_cumprod)
    s10, s11 = float(flow.sigma_at(torch.tensor(10))), float(flow.sigma_at(torch.tensor(11)))
    t = flow.timestep((s10 + s11) / 2)
    assert 10 < t < 11
    with pytest.raises(ValueError, match="unknown prediction_type"):
        DDPMFlow(sched.alphas_cumprod, "flow")
