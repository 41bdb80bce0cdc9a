from __future__ import annotations

import chex
import numpy as np
import pytest
import scipy.linalg

from jaxdiff.metrics import frechet_distance, gaussian_stats


def _random_stats(rng, f):
    a = rng.standard_normal((f, f))
    return rng.standard_normal(f), a @ a.T / f + 0.1 * np.eye(f)


def _scipy_fd(mu1, cov1, mu2, cov2):
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * covmean))


def test_gaussian_stats_matches_numpy_in_float64():
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    mu, cov = gaussian_stats(x)
    chex.assert_type([mu, cov], np.float64)
    chex.assert_shape([mu, cov], [(3,), (3, 3)])
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0))
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False))


def test_identical_stats_give_zero():
    mu, cov = _random_stats(np.random.default_rng(1), 16)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-8


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    v1, v2 = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_scipy_and_are_symmetric():
    rng = np.random.default_rng(3)
    (mu1, cov1), (mu2, cov2) = _random_stats(rng, 12), _random_stats(rng, 12)
    d12, d21 = frechet_distance(mu1, cov1, mu2, cov2), frechet_distance(mu2, cov2, mu1, cov1)
    assert d12 == pytest.approx(d21, rel=1e-9)
    assert d12 == pytest.approx(_scipy_fd(mu1, cov1, mu2, cov2), rel=1e-8)


def test_singular_covariance_is_finite_and_exact():
    """Point mass vs Gaussian: W2^2 = ||mu||^2 + tr(cov), with no eps offset needed."""
    mu, cov = _random_stats(np.random.default_rng(4), 6)
    zero = np.zeros((6, 6))
    expected = mu @ mu + np.trace(cov)
    assert frechet_distance(np.zeros(6), zero, mu, cov) == pytest.approx(expected, rel=1e-10)
    feats = np.random.default_rng(5).standard_normal((4, 10))  # N < F: rank-deficient cov
    d = frechet_distance(*gaussian_stats(feats), *gaussian_stats(feats[::-1] + 1.0))
    assert np.isfinite(d) and d == pytest.approx(10.0, rel=1e-6)


@pytest.mark.parametrize(
    "name, args",
    [
        ("mu1", (np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3))),
        ("mu2", (np.zeros(3), np.eye(3), np.zeros(4), np.eye(3))),
        ("cov1", (np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))),
        ("cov2", (np.zeros(3), np.eye(3), np.zeros(3), np.ones(3))),
    ],
)
def test_shape_errors_name_the_argument(name, args):
    with pytest.raises(ValueError, match=name):
        frechet_distance(*args)


def test_gaussian_stats_rejects_bad_features():
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(np.zeros(5))
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(np.zeros((1, 5)))


def test_non_psd_or_asymmetric_covariance_raises_naming_it():
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(ValueError, match="cov1 must be positive semi-definite"):
        frechet_distance(np.zeros(2), indefinite, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="cov2 must be positive semi-definite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))
    with pytest.raises(ValueError, match="cov2 must be symmetric"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    # float32 round-off of a rank-deficient covariance is within tolerance
    feats = np.random.default_rng(6).standard_normal((5, 40)).astype(np.float32)
    cov = np.cov(feats, rowvar=False).astype(np.float32)
    assert np.isfinite(frechet_distance(feats.mean(0), cov, np.zeros(40), np.eye(40, dtype=np.float32)))
