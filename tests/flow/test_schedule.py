import pytest
import torch

from hiresflow.flow.schedule import flow_sigmas, flux_mu, resolution_shift, static_shift

HIFLOW_GRID = [1.000, .989, .978, .966, .954, .940, .927, .912, .897, .881, .863, .845, .826, .805, .783, .760,
               .734, .707, .678, .646, .612, .575, .535, .490, .441, .387, .327, .260, .184, .098, 0.0]


def test_flux_base_grid_matches_hiflow_reference():
    mu = flux_mu(4096)  # 1024² px = 64×64 packed tokens
    assert mu == pytest.approx(1.15)
    grid = flow_sigmas(30, mu=mu)
    assert grid.shape == (31,)
    assert torch.allclose(grid, torch.tensor(HIFLOW_GRID, dtype=torch.float64), atol=6e-4)
    # τ of the official 2K (16 steps) and 4K (10 steps) stages
    assert float(grid[30 - 16]) == pytest.approx(0.783, abs=5e-4)
    assert float(grid[30 - 10]) == pytest.approx(0.612, abs=5e-4)


@pytest.mark.parametrize("shift,steps,tail", [
    (3, 30, [.429, .375, .316, .250, .176, .094, 0]),
    (6, 30, [.600, .545, .480, .400, .300, .171, 0]),
    (10, 20, [.769, .714, .638, .526, .345, 0]),
])
def test_imax_intended_grids(shift, steps, tail):
    grid = flow_sigmas(steps, shift=shift)
    assert torch.allclose(grid[-len(tail):], torch.tensor(tail, dtype=torch.float64), atol=6e-4)


def test_shift_properties():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(static_shift(t, 1.0), t)
    s = static_shift(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and bool((s[1:] > s[:-1]).all()) and bool((s >= t).all())
    assert flux_mu(256) == pytest.approx(0.5)
    assert resolution_shift(1.0, 4, factor=1.5) == 6.0  # I-Max: s* = 1.5 s at 4K


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_steps(bad):
    with pytest.raises(ValueError, match="positive integer"):
        flow_sigmas(bad)


def test_bad_shift():
    with pytest.raises(ValueError, match="shift must be > 0"):
        flow_sigmas(10, shift=-1.0)
    with pytest.raises(ValueError, match="either shift or mu"):
        flow_sigmas(10, shift=2.0, mu=1.0)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        resolution_shift(1.0, 0.5)
