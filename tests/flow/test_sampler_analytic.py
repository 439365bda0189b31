"""Sampler accuracy on Gaussian data, where the exact flow velocity is known in closed form.

For x0 ~ N(m, s²) per dimension and x_σ = (1−σ)x0 + σε, with var(σ) = (1−σ)²s² + σ²:
    E[x0 | x] = m + (1−σ)s²/var · (x − (1−σ)m),   E[ε | x] = σ/var · (x − (1−σ)m),   v = E[ε|x] − E[x0|x].
The probability-flow ODE maps noise z at σ = 1 to m + s·z at σ = 0 exactly, and x_σ = (1−σ)m + √var·z.
"""

import torch

from hiresflow.flow.sampler import Guide, sample
from hiresflow.flow.schedule import flow_sigmas

M, S = 0.7, 0.3


def gaussian_velocity(x, ctx):
    sig = ctx.sigma
    var = (1 - sig) ** 2 * S**2 + sig**2
    r = x - (1 - sig) * M
    return sig / var * r - (M + (1 - sig) * S**2 / var * r)


def exact_state(z, sig):
    return (1 - sig) * M + ((1 - sig) ** 2 * S**2 + sig**2) ** 0.5 * z


def test_euler_converges_first_order_to_exact_map():
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = []
    for n in (25, 50, 100, 200):
        out = sample(gaussian_velocity, z.clone(), flow_sigmas(n))
        errors.append(float((out.x - (M + S * z)).abs().max()))
    assert errors[-1] < 1.5e-2
    for a, b in zip(errors, errors[1:]):
        assert 1.6 < a / b < 2.4  # halving the step halves the error


def test_start_mid_trajectory_and_trajectory_records():
    sig = flow_sigmas(200, shift=2.0)
    z = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    full = sample(gaussian_velocity, z.clone(), sig)
    k = 80
    part = sample(gaussian_velocity, exact_state(z, float(sig[k])), sig, start=k)
    assert float((part.x - (M + S * z)).abs().max()) < 3e-2
    assert float((part.x - full.x).abs().max()) < 3e-2
    assert part.trajectory.indices == list(range(k, 200))
    # recorded x̂0 at a step is x − σ v: for the exact x it is E[x0|x]
    x0 = part.trajectory.x0_at(k)
    s = float(sig[k])
    var = (1 - s) ** 2 * S**2 + s**2
    x = exact_state(z, s)
    assert torch.allclose(x0, M + (1 - s) * S**2 / var * (x - (1 - s) * M), atol=1e-5)
    assert part.timings.model and len(part.timings.model) == 200 - k


def test_guides_run_in_order_and_identity_guide_is_bit_identical():
    sig = flow_sigmas(20)
    z = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    order = []

    class Tag(Guide):
        def __init__(self, tag):
            self.tag = tag

        def correct(self, ctx):
            order.append(self.tag)
            return ctx.v

    a = sample(gaussian_velocity, z.clone(), sig)
    b = sample(gaussian_velocity, z.clone(), sig, guides=[Tag(1), Tag(2)])
    assert torch.equal(a.x, b.x)
    assert order[:4] == [1, 2, 1, 2]


def test_invalid_range():
    import pytest

    with pytest.raises(ValueError, match="invalid step range"):
        sample(gaussian_velocity, torch.zeros(1), flow_sigmas(5), start=5)
