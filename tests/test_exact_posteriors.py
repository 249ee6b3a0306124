"""Fits whose answers are known in closed form: conjugate Bayesian linear regression.

With known noise sigma and prior beta ~ Normal(0, tau^2 I), the posterior is Gaussian with
precision P = X^T X / sigma^2 + I / tau^2 and mean P^-1 X^T y / sigma^2. The full-rank family
contains it, so the fit must recover mean and covariance; the KL(q||p)-optimal mean-field Gaussian
has the exact mean and variances 1 / diag(P) (smaller than the marginal variances diag(P^-1)).
"""

import fastvi as fv
import numpy as np
import pytest

SIGMA, TAU = 0.5, 2.0


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(2024)
    n, k = 60, 4
    X = rng.normal(size=(n, k))
    X[:, 1] += 0.8 * X[:, 0]  # correlated columns, so the posterior is correlated
    beta_true = np.array([1.0, -0.5, 0.25, 2.0])
    y = X @ beta_true + SIGMA * rng.normal(size=n)
    precision = X.T @ X / SIGMA**2 + np.eye(k) / TAU**2
    cov = np.linalg.inv(precision)
    mean = cov @ X.T @ y / SIGMA**2
    return X, y, mean, cov, precision


def _model(X, y):
    m = fv.Model()
    beta = m.param("beta", shape=(X.shape[1],))
    m.add("normal", beta, loc=0.0, scale=TAU)
    m.add("normal_id_glm", y, X=X, beta=beta, scale=SIGMA)
    return m


def test_fullrank_recovers_mean_and_covariance(regression):
    X, y, mean, cov, _ = regression
    approx = fv.fit(_model(X, y), family="fullrank", steps=30_000, draws=4, seed=0)
    assert approx.converged
    sd = np.sqrt(np.diag(cov))
    # Mean within 0.05 posterior sd; sds within 3 %; correlations within 0.03.
    np.testing.assert_array_less(np.abs(approx.mean()["beta"] - mean) / sd, 0.05)
    np.testing.assert_allclose(approx.std()["beta"], sd, rtol=0.03)
    fitted_cov = approx.unconstrained_cov()
    fitted_corr = fitted_cov / np.outer(np.sqrt(np.diag(fitted_cov)), np.sqrt(np.diag(fitted_cov)))
    np.testing.assert_allclose(fitted_corr, cov / np.outer(sd, sd), atol=0.03)


def test_meanfield_recovers_mean_and_meanfield_variances(regression):
    X, y, mean, cov, precision = regression
    approx = fv.fit(_model(X, y), family="meanfield", steps=30_000, draws=4, seed=0)
    assert approx.converged
    mf_sd = 1 / np.sqrt(np.diag(precision))
    assert np.all(mf_sd < np.sqrt(np.diag(cov)))  # the known under-dispersion is real here
    np.testing.assert_array_less(np.abs(approx.mean()["beta"] - mean) / np.sqrt(np.diag(cov)), 0.05)
    np.testing.assert_allclose(approx.std()["beta"], mf_sd, rtol=0.03)
