"""fv.exp_quad_cov, fv.add_diag, fv.cholesky and the multi_normal kernel (issue 11, section 5).

Values against numpy / scipy (np.linalg.cholesky, scipy.stats.multivariate_normal) for data and,
through Model.log_density, at given parameter values; every gradient against central finite
differences of log_density; shapes and bad inputs named in the errors; a draw whose matrix is not
positive-definite gives a NaN log density without crashing; and GP regression fits against exact
and NUTS references.
"""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from pathlib import Path

import fastvi as fv
import numpy as np
import pytest
from gradcheck import check_batch as _check_batch  # tests/gradcheck.py
from gradcheck import weights as _weights
from scipy import stats
from scipy.spatial.distance import cdist

DATA = Path(__file__).resolve().parent / "data"
DRAWS = 3


def _eq(x, alpha, rho):
    pts = np.asarray(x, dtype=float).reshape(len(x), -1)
    return alpha**2 * np.exp(-cdist(pts, pts, "sqeuclidean") / (2 * rho**2))


# ---- exp_quad_cov -------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [np.linspace(0.0, 3.0, 5), np.random.default_rng(1).normal(size=(6, 3))])
def test_exp_quad_cov_of_data_matches_the_formula(x):
    K = fv.exp_quad_cov(x, 1.7, 0.8)
    assert isinstance(K, np.ndarray)
    np.testing.assert_allclose(K, _eq(x, 1.7, 0.8), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(K, K.T)


@pytest.mark.parametrize("params", [("alpha", "rho"), ("alpha",), ("rho",)])
@pytest.mark.parametrize("x", [np.linspace(0.0, 3.0, 7), np.random.default_rng(2).normal(size=(5, 2))])
def test_exp_quad_cov_values_and_gradients(params, x):
    m = fv.Model()
    fixed = {"alpha": 1.3, "rho": 0.9}
    args = {name: (m.param(name) if name in params else fixed[name]) for name in ("alpha", "rho")}
    K = m.deterministic("K", fv.exp_quad_cov(x, args["alpha"], args["rho"]))
    assert K.shape == (len(x), len(x)) and K.lower == 0.0
    w = _weights(K.shape)
    m.factor(w * K)
    zeta = np.random.default_rng(3).uniform(0.5, 2.0, size=(m.dim, DRAWS))

    def value(c):
        got = dict(fixed, **dict(zip(params, c)))
        return _eq(x, got["alpha"], got["rho"])

    np.testing.assert_allclose(m.constrain(zeta)["K"], [value(zeta[:, s]) for s in range(DRAWS)], rtol=1e-13)
    _check_batch(m, zeta, lambda c: (w * value(c)).sum())


def test_exp_quad_cov_at_zero_alpha_and_rho():
    # K = alpha^2 I at rho = 0 (the diagonal is alpha^2 at any rho), and finite gradients at alpha = 0
    m = fv.Model()
    alpha, rho = m.param("alpha"), m.param("rho")
    K = m.deterministic("K", fv.exp_quad_cov(np.arange(3.0), alpha, rho))
    m.factor(fv.sum(K))
    np.testing.assert_array_equal(m.constrain(np.array([2.0, 0.0]))["K"], 4.0 * np.eye(3))
    lp, grad = m.log_density(np.array([[0.0, 2.0], [1.0, 0.0]]))
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(grad))
    assert grad[0, 0] == 0.0 and grad[1, 1] == 0.0


# ---- add_diag -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k_param, d_shape, d_param",
    [
        (True, (), True),
        (True, (4,), True),
        (True, (4,), False),
        (False, (), True),
        (False, (4,), True),
        (True, (), False),
    ],
)
def test_add_diag_values_and_gradients(k_param, d_shape, d_param):
    rng = np.random.default_rng(4)
    k_data, d_data = rng.normal(size=(4, 4)), rng.normal(size=d_shape)
    m = fv.Model()
    K = m.param("K", shape=(4, 4)) if k_param else k_data
    d = m.param("d", shape=d_shape) if d_param else d_data
    out = m.deterministic("out", fv.add_diag(K, d))
    w = _weights((4, 4))
    m.factor(w * out * out)

    def value(c):
        kv = c[:16].reshape(4, 4) if k_param else k_data
        dv = c[16 if k_param else 0 :].reshape(d_shape) if d_param else d_data
        return kv + np.diag(np.broadcast_to(dv, (4,)))

    zeta = rng.normal(size=(m.dim, DRAWS))
    np.testing.assert_allclose(m.constrain(zeta)["out"], [value(zeta[:, s]) for s in range(DRAWS)], rtol=1e-15)
    _check_batch(m, zeta, lambda c: (w * value(c) ** 2).sum())


def test_add_diag_of_data_and_bounds():
    np.testing.assert_array_equal(fv.add_diag(np.ones((2, 2)), 2.0), [[3.0, 1.0], [1.0, 3.0]])
    m = fv.Model()
    s = m.param("s", lower=0.0)
    K = fv.exp_quad_cov(np.arange(3.0), s, 1.0)
    assert fv.add_diag(K, s).lower == 0.0  # K >= 0 and s >= 0
    assert fv.add_diag(K, -1.0).lower == -1.0


# ---- cholesky -----------------------------------------------------------------------------------


def _spd(a, n):
    return a @ a.T + n * np.eye(n)


def test_cholesky_of_data_matches_numpy():
    a = np.random.default_rng(5).normal(size=(5, 5))
    np.testing.assert_allclose(fv.cholesky(_spd(a, 5)), np.linalg.cholesky(_spd(a, 5)), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 5, 12, 30])  # 30: rows longer than a few SIMD registers
def test_cholesky_values_and_gradients(n):
    # K = A A^T + n I from a parameter matrix A (a symmetric construction, as covariances are)
    rng = np.random.default_rng(6 + n)
    m = fv.Model()
    A = m.param("A", shape=(n, n))
    L = m.deterministic("L", fv.cholesky(fv.add_diag(A @ A.T, float(n))))
    w = _weights((n, n), seed=n)
    m.factor(w * L)
    zeta = rng.normal(size=(m.dim, DRAWS))

    def value(c):
        return np.linalg.cholesky(_spd(c.reshape(n, n), n))

    got = m.constrain(zeta)["L"]
    for s in range(DRAWS):
        np.testing.assert_allclose(got[s], value(zeta[:, s]), rtol=1e-12, atol=1e-13)
        assert np.all(np.triu(got[s], 1) == 0.0)
    _check_batch(m, zeta, lambda c: (w * value(c)).sum(), rtol=1e-12)


def test_cholesky_of_a_non_symmetric_parameter_is_that_of_its_symmetric_part():
    # Every element of K is a free parameter: the node factors (K + K^T) / 2, and its gradient is
    # the derivative of exactly that, so finite differences in single (upper or lower) elements agree.
    n = 4
    rng = np.random.default_rng(7)
    m = fv.Model()
    K = m.param("K", shape=(n, n))
    w = _weights((n, n), seed=1)
    m.factor(w * fv.cholesky(K))
    base = _spd(rng.normal(size=(n, n)), n)
    zeta = np.stack([(base + 0.3 * rng.normal(size=(n, n))).ravel() for _ in range(DRAWS)], axis=1)
    _check_batch(m, zeta, lambda c: (w * np.linalg.cholesky(0.5 * (c.reshape(n, n) + c.reshape(n, n).T))).sum())


def test_a_draw_that_is_not_positive_definite_gives_a_nan_log_density():
    m = fv.Model()
    r = m.param("r")  # K = [[1, r], [r, 1]] is positive-definite for |r| < 1 only
    K = fv.stack([fv.stack([1.0, r]), fv.stack([r, 1.0])])
    m.add("multi_normal_cholesky", np.array([0.2, -0.4]), L=fv.cholesky(K))
    m.add("multi_normal", np.array([0.2, -0.4]), Sigma=K)
    lp, grad = m.log_density(np.array([[0.5, 1.5, -0.3, 1.0]]))
    assert np.isnan(lp[1]) and np.isnan(lp[3])
    assert np.all(np.isfinite(lp[[0, 2]])) and np.all(np.isfinite(grad[:, [0, 2]]))
    for s, r_value in ((0, 0.5), (2, -0.3)):  # the valid draws are unaffected by the invalid ones
        cov = np.array([[1.0, r_value], [r_value, 1.0]])
        want = 2 * stats.multivariate_normal.logpdf([0.2, -0.4], np.zeros(2), cov)
        assert lp[s] == pytest.approx(want, rel=1e-12)
        one, one_grad = m.log_density(np.array([r_value]))
        assert one == lp[s] and one_grad[0] == grad[0, s]


def test_a_fit_skips_draws_that_are_not_positive_definite():
    # r's posterior reaches towards |r| = 1, where K stops being positive-definite: some draws of
    # the fit are invalid, and the fit carries on past them
    m = fv.Model()
    r = m.param("r", lower=-1.5, upper=1.5)
    K = fv.stack([fv.stack([1.0, r]), fv.stack([r, 1.0])])
    y = np.random.default_rng(8).multivariate_normal([0, 0], [[1, 0.95], [0.95, 1]], size=30)
    m.add("multi_normal_cholesky", y, L=fv.cholesky(K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)  # tol=None: a fixed number of steps
        fit = fv.fit(m, "meanfield", seed=1, steps=3000, psis_draws=0, precondition=None, tol=None)
    assert fit.n_skipped > 0  # there were invalid draws
    assert np.isfinite(fit.mean()["r"]) and 0.8 < fit.mean()["r"] < 1.0


# ---- multi_normal -------------------------------------------------------------------------------


def _sigma(k, seed=9):
    a = np.random.default_rng(seed).normal(size=(k, k))
    return a @ a.T + k * np.eye(k)


@pytest.mark.parametrize("y_shape, mu_shape", [((3,), (3,)), ((5, 3), (3,)), ((5, 3), (5, 3)), ((5, 3), ())])
def test_multi_normal_with_data_sigma_matches_scipy(y_shape, mu_shape):
    k = y_shape[-1]
    rng = np.random.default_rng(10)
    sigma, y, mu = _sigma(k), rng.normal(size=y_shape), rng.normal(size=mu_shape)
    m = fv.Model()
    m.add("multi_normal", y, mu=m.param("mu", shape=mu_shape), Sigma=sigma)
    mus = np.broadcast_to(mu, y_shape).reshape(-1, k)
    want = sum(stats.multivariate_normal.logpdf(r, mean, sigma) for r, mean in zip(y.reshape(-1, k), mus))
    assert float(m.log_density(np.ravel(mu))[0]) == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("params", [["y", "mu", "Sigma"], ["y"], ["mu"], ["Sigma"]])
@pytest.mark.parametrize("y_shape, mu_shape", [((3,), (3,)), ((4, 3), (3,)), ((4, 3), (4, 3))])
def test_multi_normal_check_kernel(params, y_shape, mu_shape):
    # check_kernel perturbs single elements of Sigma: they agree with the gradient because the
    # density is that of Sigma's symmetric part
    rng = np.random.default_rng(11)
    values = {"y": rng.normal(size=y_shape), "mu": rng.normal(size=mu_shape), "Sigma": _sigma(3)}
    check = fv.check_kernel("multi_normal", values, params=params, raise_on_failure=False)
    assert check.passed, check


@pytest.mark.parametrize("k", [1, 3, 8, 25])
def test_multi_normal_with_a_sigma_built_from_parameters(k):
    # Sigma = A A^T + k I: lp against scipy, the gradient against finite differences through the
    # matmul node, and the same model written with multi_normal_cholesky(L=cholesky(Sigma)) agrees
    rng = np.random.default_rng(12 + k)
    y = rng.normal(size=(6, k))
    models = []
    for kernel in ("multi_normal", "multi_normal_cholesky"):
        m = fv.Model()
        A, mu = m.param("A", shape=(k, k)), m.param("mu", shape=(k,))
        sigma = fv.add_diag(A @ A.T, float(k))
        if kernel == "multi_normal":
            m.add(kernel, y, mu=mu, Sigma=sigma)
        else:
            m.add(kernel, y, mu=mu, L=fv.cholesky(sigma))
        models.append(m)
    zeta = rng.normal(size=(models[0].dim, DRAWS))

    def expected(c):
        a, mu = c[: k * k].reshape(k, k), c[k * k :]
        return stats.multivariate_normal.logpdf(y, mu, _spd(a, k)).sum()

    _check_batch(models[0], zeta, expected, rtol=1e-11)
    lp0, g0 = models[0].log_density(zeta)
    lp1, g1 = models[1].log_density(zeta)
    np.testing.assert_allclose(lp1, lp0, rtol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(
    "y, sigma, match",
    [
        (np.zeros(3), np.eye(2), r"input 'Sigma' must have shape \(3, 3\)"),
        (np.zeros(2), np.array([[1.0, 0.5], [0.4, 1.0]]), r"input 'Sigma' must be symmetric, got Sigma\[1, 0\] = 0.4"),
        (np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), "input 'Sigma' must be positive-definite"),
        (np.zeros(2), np.diag([1.0, 0.0]), r"input 'Sigma' must be a covariance matrix .*Sigma\[1, 1\] = 0"),
        (np.zeros((2, 2, 2)), np.eye(2), "input 'y' must have shape"),
    ],
)
def test_multi_normal_bad_inputs(y, sigma, match):
    m = fv.Model()
    mu = m.param("mu")
    with pytest.raises(ValueError, match=match):
        m.add("multi_normal", y, mu=mu, Sigma=sigma)


def test_multi_normal_is_listed_with_stan_names():
    spec = fv.kernel_spec("multi_normal")
    assert [i.name for i in spec.inputs] == ["y", "mu", "Sigma"]


# ---- shapes and bad inputs ------------------------------------------------------------------------


def test_bad_inputs_name_the_argument():
    m = fv.Model()
    a, v = m.param("a"), m.param("v", shape=(3,))
    M = m.param("M", shape=(3, 4))
    with pytest.raises(ValueError, match=r"fv.cholesky: K must be square \(N, N\), got \(3, 4\)"):
        fv.cholesky(M)
    with pytest.raises(ValueError, match=r"fv.cholesky: K must be square \(N, N\), got \(3,\)"):
        fv.cholesky(v)
    with pytest.raises(ValueError, match=r"fv.cholesky: K must be symmetric positive-definite \(it is not symmetric"):
        fv.cholesky(np.array([[2.0, 1.0], [0.0, 2.0]]))
    with pytest.raises(ValueError, match=r"K\[1, 1\] = -1.0 is not > 0"):
        fv.cholesky(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="fv.cholesky: K contains NaN or inf"):
        fv.cholesky(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"fv.add_diag: K must be square \(N, N\), got \(3, 4\)"):
        fv.add_diag(M, a)
    with pytest.raises(ValueError, match=r"fv.add_diag: d must be a scalar or have shape \(2,\), got \(3,\)"):
        fv.add_diag(np.eye(2), v)
    with pytest.raises(ValueError, match=r"fv.exp_quad_cov: x must have shape \(N,\) or \(N, D\), got \(2, 2, 2\)"):
        fv.exp_quad_cov(np.zeros((2, 2, 2)), a, 1.0)
    with pytest.raises(ValueError, match=r"fv.exp_quad_cov: alpha must be a scalar, got shape \(3,\)"):
        fv.exp_quad_cov(np.arange(3.0), v, 1.0)
    with pytest.raises(ValueError, match="fv.exp_quad_cov: rho must be > 0, got -1.0"):
        fv.exp_quad_cov(np.arange(3.0), a, -1.0)
    with pytest.raises(ValueError, match="fv.exp_quad_cov: x contains NaN or inf"):
        fv.exp_quad_cov(np.array([0.0, np.inf]), a, 1.0)
    with pytest.raises(TypeError, match="fv.exp_quad_cov: x must be data"):
        fv.exp_quad_cov(v, a, 1.0)
    other = fv.Model().param("b")
    with pytest.raises(ValueError, match="fv.exp_quad_cov: cannot combine expressions of different models"):
        fv.exp_quad_cov(np.arange(3.0), a, other)
    with pytest.raises(ValueError, match="fv.add_diag: cannot combine expressions of different models"):
        fv.add_diag(fv.exp_quad_cov(np.arange(3.0), a, 1.0), other)


def test_new_nodes_survive_copies_and_pickles():
    x = np.linspace(0.0, 4.0, 6)
    m = fv.Model()
    alpha, rho, sigma = m.param("alpha", lower=0.0), m.param("rho", lower=0.0), m.param("sigma", lower=0.0)
    m.add("multi_normal_cholesky", np.sin(x), L=fv.cholesky(fv.add_diag(fv.exp_quad_cov(x, alpha, rho), sigma**2)))
    zeta = np.random.default_rng(13).normal(size=(3, DRAWS))
    want = m.log_density(zeta)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        got = other.log_density(zeta)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# ---- GP regression --------------------------------------------------------------------------------


def _gp_model(x, y, kernel="multi_normal_cholesky"):
    m = fv.Model()
    alpha = m.param("alpha", lower=0.0)
    rho = m.param("rho", lower=0.0)
    sigma = m.param("sigma", lower=0.0)
    m.add("half_normal", alpha, scale=1.0)
    m.add("inv_gamma", rho, shape=5.0, scale=5.0)
    m.add("half_normal", sigma, scale=0.5)
    cov = fv.add_diag(fv.exp_quad_cov(x, alpha, rho), sigma**2)
    if kernel == "multi_normal_cholesky":
        m.add("multi_normal_cholesky", y, mu=0.0, L=fv.cholesky(cov))
    else:
        m.add("multi_normal", y, mu=0.0, Sigma=cov)
    return m


@pytest.mark.parametrize("kernel", ["multi_normal_cholesky", "multi_normal"])
def test_gp_marginal_likelihood_matches_scipy(kernel):
    ref = json.loads((DATA / "gp_reference.json").read_text())
    x, y = np.array(ref["x"]), np.array(ref["y"])
    m = _gp_model(x, y, kernel)
    zeta = np.log(np.array([[1.0, 0.6, 1.8], [1.2, 0.5, 2.5], [0.3, 0.2, 0.1]]))  # alpha, rho, sigma; 3 draws

    def expected(c):
        alpha, rho, sigma = np.exp(c)
        cov = _eq(x, alpha, rho) + sigma**2 * np.eye(len(x))
        prior = (
            stats.halfnorm.logpdf(alpha, scale=1.0)
            + stats.invgamma.logpdf(rho, 5.0, scale=5.0)
            + stats.halfnorm.logpdf(sigma, scale=0.5)
        )
        return stats.multivariate_normal.logpdf(y, np.zeros(len(x)), cov) + prior + c.sum()  # + log-Jacobian

    _check_batch(m, zeta, expected, rtol=1e-10, grad_tol=1e-5)


def test_gp_latent_posterior_with_fixed_hyperparameters_is_exact():
    # alpha, rho and sigma fixed (data): f ~ MultiNormal(0, K), y ~ Normal(f, sigma) has the exact
    # Gaussian posterior N((K^-1 + I / sigma^2)^-1 y / sigma^2, (K^-1 + I / sigma^2)^-1), which
    # the full-rank family contains. Tolerances: a converged fit promises its mean within
    # precision = 0.05 sd and its log sd within 0.05 (README, "Refinement"); the test allows twice that.
    ref = json.loads((DATA / "gp_reference.json").read_text())
    x, y = np.array(ref["x"]), np.array(ref["y"])
    alpha, rho, sigma, jitter = 1.0, 1.0, 0.3, 1e-6
    L = fv.cholesky(fv.add_diag(fv.exp_quad_cov(x, alpha, rho), jitter))
    assert isinstance(L, np.ndarray)
    m = fv.Model()
    f = m.param("f", shape=len(x))
    m.add("multi_normal_cholesky", f, mu=0.0, L=L)
    m.add("normal", y, loc=f, scale=sigma)
    K = _eq(x, alpha, rho) + jitter * np.eye(len(x))
    cov = np.linalg.inv(np.linalg.inv(K) + np.eye(len(x)) / sigma**2)
    mean, sd = cov @ y / sigma**2, np.sqrt(np.diag(cov))
    fit = fv.fit(m, "fullrank", seed=0)
    assert fit.converged
    np.testing.assert_array_less(np.abs(fit.mean()["f"] - mean), 0.1 * sd)
    np.testing.assert_allclose(fit.std()["f"], sd, rtol=0.1)


def test_gp_hyperparameter_posterior_matches_nuts():
    # The one-line GP (cholesky(add_diag(exp_quad_cov(...), sigma^2)) into multi_normal_cholesky),
    # fitted full-rank, against 100,000 NUTS draws (tests/make_gp_reference.py; ESS ~60,000, so
    # their Monte Carlo error is below 0.005 sd). Tolerances: q's log-space means within 0.1 sd and
    # sds within 10 %, twice what a converged fit promises (precision = 0.05 sd, 0.05 in log sd) on
    # top of the Gaussian approximation error, which is small here (measured: 0.015 sd, 4 %); the
    # PSIS-corrected constrained means within 0.1 sd and sds within 10 %, about 4 Monte Carlo sds
    # of estimates with an importance ESS of ~2,000 (measured: 0.013 sd, 5 %).
    ref = json.loads((DATA / "gp_reference.json").read_text())
    x, y = np.array(ref["x"]), np.array(ref["y"])
    m = _gp_model(x, y)
    fit = fv.fit(m, "fullrank", seed=0)
    assert fit.converged, fit.message
    assert fit.status.use in ("q", "psis"), fit.status
    zmean = fit.unconstrained_mean()
    zsd = np.sqrt(np.diag(fit.unconstrained_cov()))
    corrected_mean, corrected_sd = fit.mean(importance="psis"), fit.std(importance="psis")
    for i, name in enumerate(("alpha", "rho", "sigma")):
        post = ref["posterior"][name]
        assert abs(zmean[i] - post["log_mean"]) < 0.1 * post["log_sd"], (name, zmean[i], post)
        assert abs(zsd[i] / post["log_sd"] - 1) < 0.1, (name, zsd[i], post)
        assert abs(corrected_mean[name] - post["mean"]) < 0.1 * post["sd"], (name, corrected_mean[name], post)
        assert abs(corrected_sd[name] / post["sd"] - 1) < 0.1, (name, corrected_sd[name], post)
