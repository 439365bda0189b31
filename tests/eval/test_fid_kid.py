"""FID / KID maths on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest

from hiresflow.eval.fid import frechet_distance, kid, trace_sqrt_product


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """n samples of one fixed d-dim Gaussian (the mixing matrix depends on d only), shifted by `shift`."""
    mix = np.random.default_rng(d).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mix + shift


def test_fid_identical_sets_is_zero():
    a = _gauss(300, 32, 0)
    assert abs(frechet_distance(a, a)) < 1e-8
    assert abs(frechet_distance(a, a, method="sqrtm")) < 1e-6


def test_fid_of_a_shifted_copy_is_the_squared_shift():
    # same covariance: Tr(Σ + Σ − 2(ΣΣ)^½) = 0, only ‖μ_a − μ_b‖² remains
    a = _gauss(120, 16, 1)
    c = np.linspace(-1, 1, 16)
    assert frechet_distance(a, a + c) == pytest.approx(float((c**2).sum()), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n_a,n_b,d", [(40, 50, 64), (300, 200, 24)])  # n < d (rank-deficient) and n > d
def test_svd_form_equals_scipy_sqrtm(n_a, n_b, d):
    a, b = _gauss(n_a, d, 2), _gauss(n_b, d, 3, shift=0.3)
    assert frechet_distance(a, b, "svd") == pytest.approx(frechet_distance(a, b, "sqrtm"), rel=1e-6, abs=1e-8)


def test_trace_sqrt_product_matches_eigenvalues():
    a, b = _gauss(60, 10, 4), _gauss(70, 10, 5)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ev = np.linalg.eigvals(sa @ sb).real
    assert trace_sqrt_product(a, b) == pytest.approx(np.sqrt(np.clip(ev, 0, None)).sum(), rel=1e-8)


def test_fid_symmetric_and_grows_with_shift():
    a, b = _gauss(100, 8, 6), _gauss(100, 8, 7)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)
    assert frechet_distance(a, b + 1.0) > frechet_distance(a, b + 0.5) > frechet_distance(a, b)


def test_kid_same_distribution_is_unbiased_near_zero():
    a, b = _gauss(400, 16, 8), _gauss(400, 16, 9)
    mean, std, m = kid(a, b, subsets=50, subset_size=100, seed=0)
    far, _, _ = kid(a, b + 1.0, subsets=50, subset_size=100, seed=0)
    assert m == 100
    assert abs(mean) < 3 * std + 1e-3 * far  # centred on 0 (unbiased), unlike a distribution shift
    assert far > 20 * abs(mean)
    # unbiasedness over many disjoint samples: the average estimate is ~0 (a biased V-statistic would be > 0)
    vals = [kid(_gauss(50, 8, 100 + i), _gauss(50, 8, 200 + i), subset_size=50)[0] for i in range(40)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))


def test_kid_symmetric_and_deterministic():
    a, b = _gauss(80, 12, 10), _gauss(80, 12, 11, shift=0.2)
    full_ab, std, m = kid(a, b, subset_size=1000)
    assert m == 80 and std == 0.0  # one subset: the whole sets
    assert full_ab == pytest.approx(kid(b, a, subset_size=1000)[0], rel=1e-12)
    assert kid(a, b, subsets=20, subset_size=40, seed=3) == kid(a, b, subsets=20, subset_size=40, seed=3)
    ab = kid(a, b, subsets=200, subset_size=40, seed=3)[0]
    ba = kid(b, a, subsets=200, subset_size=40, seed=3)[0]
    assert ab == pytest.approx(ba, rel=0.15)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        kid(np.zeros((1, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="method"):
        frechet_distance(np.ones((3, 2)), np.ones((3, 2)), method="eig")
