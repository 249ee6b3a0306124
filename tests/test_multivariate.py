"""dirichlet and multi_normal_cholesky against scipy.stats and finite differences.

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
