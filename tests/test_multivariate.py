"""dirichlet, multi_normal_cholesky and lkj_corr_cholesky against references and finite differences.

Log densities through Model.log_density against scipy.stats.dirichlet / multivariate_normal
(one row and several rows, shared or per-row parameters), gradients with fv.check_kernel (every
input a parameter at once, and each alone), and bad inputs named in the errors.
"""

from __future__ import annotations

import fastvi as fv
import numpy as np
import pytest
from scipy import special, stats

RNG = np.random.default_rng(21)


def _lp(model, z):
    lp, _ = model.log_density(np.asarray(z, dtype=float))
    return float(lp)


def _simplex(shape):
    return special.softmax(RNG.normal(size=shape), axis=-1)


# ---- dirichlet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("theta_shape, alpha_shape", [((4,), (4,)), ((3, 4), (4,)), ((3, 4), (3, 4))])
def test_dirichlet_matches_scipy(theta_shape, alpha_shape):
    theta = _simplex(theta_shape)
    alpha = RNG.uniform(0.5, 3.0, size=alpha_shape)
    m = fv.Model()
    a = m.param("alpha", shape=alpha_shape, lower=0.0)
    m.add("dirichlet", theta, alpha=a)
    rows = theta.reshape(-1, theta_shape[-1])
    alphas = np.broadcast_to(alpha, theta_shape).reshape(-1, theta_shape[-1])
    expected = sum(stats.dirichlet.logpdf(t, al) for t, al in zip(rows, alphas))
    jac = np.log(alpha).sum()  # alpha = exp(zeta): log|J| = sum zeta
    assert _lp(m, np.log(alpha).ravel()) == pytest.approx(expected + jac, rel=1e-11)


@pytest.mark.parametrize("params", [["theta", "alpha"], ["theta"], ["alpha"]])
@pytest.mark.parametrize("theta_shape, alpha_shape", [((4,), (4,)), ((3, 4), (4,)), ((3, 4), (3, 4))])
def test_dirichlet_gradient(params, theta_shape, alpha_shape):
    values = {"theta": _simplex(theta_shape), "alpha": RNG.uniform(0.5, 3.0, size=alpha_shape)}
    fv.check_kernel("dirichlet", values, params=params)


@pytest.mark.parametrize(
    "theta, alpha, match",
    [
        (np.array([0.2, 0.3]), np.ones(2), "input 'theta' must sum to 1"),
        (np.array([1.0]), np.ones(1), "at least 2 components"),
        (np.array([0.5, 0.5]), np.ones(3), "input 'alpha' must have shape \\(2,\\)"),
        (np.array([0.5, 0.5]), np.array([1.0, -1.0]), "input 'alpha' must be > 0"),
        (np.array([1.5, -0.5]), np.ones(2), "input 'theta' must be >= 0"),
    ],
)
def test_dirichlet_bad_inputs(theta, alpha, match):
    m = fv.Model()
    m.param("unused")
    with pytest.raises(ValueError, match=match):
        m.add("dirichlet", theta, alpha=alpha)


# ---- multi_normal_cholesky ---------------------------------------------------------------------


def _cholesky(k):
    a = RNG.normal(size=(k, k))
    return np.linalg.cholesky(a @ a.T + k * np.eye(k))


@pytest.mark.parametrize("y_shape, mu_shape", [((3,), (3,)), ((5, 3), (3,)), ((5, 3), (5, 3)), ((5, 3), ())])
def test_multi_normal_cholesky_matches_scipy(y_shape, mu_shape):
    k = y_shape[-1]
    L = _cholesky(k)
    y = RNG.normal(size=y_shape)
    mu = RNG.normal(size=mu_shape)
    m = fv.Model()
    p = m.param("mu", shape=mu_shape)
    # an upper triangle that must be ignored
    m.add("multi_normal_cholesky", y, mu=p, L=L + np.triu(np.ones((k, k)), 1))
    mus = np.broadcast_to(mu, y_shape).reshape(-1, k)
    expected = sum(stats.multivariate_normal.logpdf(r, mean, L @ L.T) for r, mean in zip(y.reshape(-1, k), mus))
    assert _lp(m, np.ravel(mu)) == pytest.approx(expected, rel=1e-11)


def test_multi_normal_cholesky_default_mean_is_zero():
    L = _cholesky(2)
    y = RNG.normal(size=(4, 2))
    m = fv.Model()
    s = m.param("s")
    m.add("multi_normal_cholesky", y, L=L)
    m.add("normal", s)
    expected = stats.multivariate_normal.logpdf(y, np.zeros(2), L @ L.T).sum() + stats.norm.logpdf(0.3)
    assert _lp(m, [0.3]) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize("params", [["y", "mu", "L"], ["y"], ["mu"], ["L"]])
@pytest.mark.parametrize("y_shape, mu_shape", [((3,), (3,)), ((4, 3), (3,)), ((4, 3), (4, 3))])
def test_multi_normal_cholesky_gradient(params, y_shape, mu_shape):
    k = y_shape[-1]
    values = {"y": RNG.normal(size=y_shape), "mu": RNG.normal(size=mu_shape), "L": _cholesky(k)}
    check = fv.check_kernel("multi_normal_cholesky", values, params=params, raise_on_failure=False)
    assert check.passed, check


@pytest.mark.parametrize(
    "y, inputs, match",
    [
        (np.zeros(3), {"L": np.eye(2)}, "input 'L' must have shape \\(3, 3\\)"),
        (np.zeros(3), {"L": np.diag([1.0, 0.0, 1.0])}, "non-zero diagonal"),
        (np.zeros((4, 3)), {"mu": np.zeros(4), "L": np.eye(3)}, "input 'mu' must have shape"),
        (np.zeros((2, 2, 2)), {"L": np.eye(2)}, "input 'y' must have shape"),
    ],
)
def test_multi_normal_cholesky_bad_inputs(y, inputs, match):
    m = fv.Model()
    m.param("unused")
    with pytest.raises(ValueError, match=match):
        m.add("multi_normal_cholesky", y, **inputs)


def test_full_rank_fit_recovers_a_correlated_gaussian():
    # y_n ~ MVN(mu, Sigma) with Sigma known and a flat prior: the posterior of mu is exactly
    # MVN(mean(y), Sigma / N), which the full-rank family contains.
    L = np.array([[1.0, 0.0], [0.9, 0.5]])
    y = RNG.normal(size=(50, 2)) @ L.T + np.array([1.0, -2.0])
    m = fv.Model()
    mu = m.param("mu", shape=(2,))
    m.add("multi_normal_cholesky", y, mu=mu, L=L)
    fit = fv.fit(m, family="fullrank", seed=0)
    assert fit.converged
    sd = np.sqrt(np.diag(L @ L.T) / 50)
    np.testing.assert_array_less(np.abs(fit.mean()["mu"] - y.mean(axis=0)), 0.1 * sd)
    np.testing.assert_allclose(fit.std()["mu"], sd, rtol=0.1)


# ---- lkj_corr_cholesky ------------------------------------------------------------------------


def _corr_cholesky(k):
    a = RNG.normal(size=(k, k))
    cov = a @ a.T + k * np.eye(k)
    d = np.sqrt(np.diag(cov))
    return np.linalg.cholesky(cov / np.outer(d, d))


@pytest.mark.parametrize("eta", [0.5, 1.0, 3.0])
def test_lkj_two_by_two_is_the_beta_marginal_of_the_correlation(eta):
    # K = 2: the one correlation r has (r + 1) / 2 ~ Beta(eta, eta), and L = [[1, 0], [r, sqrt(1 - r^2)]]
    # has one free element, L[1, 0] = r, so the density of L is that of r.
    r = 0.37
    L = np.array([[1.0, 0.0], [r, np.sqrt(1 - r * r)]])
    m = fv.Model()
    e = m.param("eta", lower=0.0)
    m.add("lkj_corr_cholesky", L, eta=e)
    expected = stats.beta.logpdf((r + 1) / 2, eta, eta) - np.log(2) + np.log(eta)  # + log|J| of eta
    assert _lp(m, [np.log(eta)]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k, volume", [(3, np.pi**2 / 2), (4, 32 * np.pi**2 / 27)])
def test_lkj_uniform_normaliser_is_the_volume_of_the_correlation_matrices(k, volume):
    # eta = 1 is uniform over K x K correlation matrices; at L = I the density is 1 / volume
    # (pi^2 / 2 for K = 3, 32 pi^2 / 27 for K = 4).
    m = fv.Model()
    m.param("unused")
    m.add("lkj_corr_cholesky", np.eye(k), eta=1.0)
    assert _lp(m, [0.0]) == pytest.approx(-np.log(volume), rel=1e-12)


def test_lkj_normaliser_matches_monte_carlo_for_k3():
    # c_3(eta) = integral over the 3 x 3 correlation matrices of det^(eta - 1): Monte Carlo over
    # the cube of the three correlations (8 x the mean), within 5 standard errors.
    eta = 2.5
    rng = np.random.default_rng(0)
    a, b, c = rng.uniform(-1, 1, size=(3, 1_000_000))
    det = 1 - a * a - b * b - c * c + 2 * a * b * c
    vals = np.where(det > 0, np.abs(det) ** (eta - 1), 0.0)
    est, se = 8 * vals.mean(), 8 * vals.std() / np.sqrt(vals.size)
    m = fv.Model()
    m.param("unused")
    m.add("lkj_corr_cholesky", np.eye(3), eta=eta)
    c3 = np.exp(-_lp(m, [0.0]))
    assert abs(c3 - est) < 5 * se, (c3, est, se)


@pytest.mark.parametrize("params", [["L", "eta"], ["L"], ["eta"]])
@pytest.mark.parametrize("k", [2, 4])
def test_lkj_gradient(params, k):
    fv.check_kernel("lkj_corr_cholesky", {"L": _corr_cholesky(k), "eta": 1.7}, params=params)


@pytest.mark.parametrize(
    "L, match",
    [
        (np.array([[1.0, 0.1], [0.0, 1.0]]), "lower triangular"),
        (np.array([[1.0, 0.0], [0.5, 0.5]]), "rows of unit length"),
        (np.array([[1.0, 0.0], [0.6, -0.8]]), "positive diagonal"),
        (np.eye(2)[:, :1], "square"),
    ],
)
def test_lkj_bad_factor(L, match):
    m = fv.Model()
    m.param("unused")
    with pytest.raises(ValueError, match=match):
        m.add("lkj_corr_cholesky", L, eta=2.0)
