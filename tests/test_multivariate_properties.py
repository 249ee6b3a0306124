"""Property-based tests (hypothesis) of the multivariate and categorical kernels over dimensions,
row counts and scales: multi_normal_cholesky, multi_normal, dirichlet, categorical,
categorical_logit, multinomial_logit, categorical_logit_glm, ordered_logistic and ordered_probit.

tests/test_properties.py fuzzes the element-wise and GLM kernels; the multivariate ones take
vectors and matrices with constraints of their own (a Cholesky factor, a covariance, a simplex),
so they are generated here, valid by construction, over a range of conditioning:

* the log density through Model.log_density matches an independent reference (a triangular solve,
  scipy.stats) to a tolerance scaled by the conditioning where that matters;
* the gradient of every input that can be a parameter matches central finite differences
  (fv.check_kernel);
* one row per draw and several rows give the same as the sum of single-row models.
"""

from __future__ import annotations

import math

import fastvi as fv
import numpy as np
import pytest
from scipy import linalg, special, stats

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _lp(model, z):
    lp, _ = model.log_density(np.atleast_1d(np.asarray(z, dtype=float)))
    return float(lp)


def _rng(draw):
    """A numpy generator seeded by hypothesis (so that examples shrink and replay)."""
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def cholesky_factor(draw, k):
    """A lower-triangular L with diagonal e^u, u in [-3, 3], and off-diagonal entries in [-5, 5]
    (condition numbers up to about 10^4)."""
    rng = _rng(draw)
    log_diag = draw(st.floats(-3, 3))
    spread = draw(st.floats(0, 3))
    diag = np.exp(log_diag + spread * rng.uniform(-1, 1, size=k))
    off = draw(st.floats(0, 5)) * rng.uniform(-1, 1, size=(k, k))
    return np.tril(off, -1) + np.diag(diag)


@st.composite
def gaussian_case(draw):
    k = draw(st.integers(1, 6))
    rows = draw(st.sampled_from([None, 1, 3]))
    L = draw(cholesky_factor(k))
    rng = _rng(draw)
    shape = (k,) if rows is None else (rows, k)
    scale = draw(st.sampled_from([0.1, 1.0, 20.0]))
    y = scale * rng.normal(size=shape)
    mu = rng.normal(size=(k,))
    return y, mu, L


def _gaussian_reference(y, mu, L):
    """sum over rows of log N(y | mu, L L^T), by a triangular solve: independent of scipy's eigh."""
    k = L.shape[0]
    r = np.atleast_2d(y) - mu
    z = linalg.solve_triangular(L, r.T, lower=True)
    return float(-0.5 * np.sum(z**2) - r.shape[0] * (np.sum(np.log(np.diag(L))) + 0.5 * k * math.log(2 * math.pi)))


def _tolerance(L, reference):
    # Both sides solve with L: their rounding differs by about cond(L) eps per element of the
    # quadratic form. 1e3 eps cond(L) relative to the terms' size (at least 1) covers that with room.
    return 1e3 * np.finfo(float).eps * np.linalg.cond(L) * max(1.0, abs(reference))


@PROPS
@given(gaussian_case())
def test_multi_normal_cholesky_matches_a_triangular_solve(case):
    y, mu, L = case
    m = fv.Model()
    p = m.param("mu", shape=mu.shape)
    m.add("multi_normal_cholesky", y, mu=p, L=L)
    want = _gaussian_reference(y, mu, L)
    assert abs(_lp(m, mu) - want) <= _tolerance(L, want)


@PROPS
@given(gaussian_case())
def test_multi_normal_matches_a_triangular_solve(case):
    y, mu, L = case
    sigma = L @ L.T
    m = fv.Model()
    p = m.param("mu", shape=mu.shape)
    m.add("multi_normal", y, mu=p, Sigma=sigma)
    want = _gaussian_reference(y, mu, L)
    # Sigma = L L^T is factored again (its condition number is cond(L)^2)
    assert abs(_lp(m, mu) - want) <= _tolerance(L, want) * np.linalg.cond(L)


@PROPS
@given(gaussian_case())
def test_multi_normal_cholesky_rows_add_up(case):
    y, mu, L = case
    y = np.atleast_2d(y)
    whole = fv.Model()
    whole.param("unused")
    whole.add("multi_normal_cholesky", y, mu=mu, L=L)
    total = 0.0
    for row in y:
        single = fv.Model()
        single.param("unused")
        single.add("multi_normal_cholesky", row, mu=mu, L=L)
        total += _lp(single, [0.0])
    assert _lp(whole, [0.0]) == pytest.approx(total, rel=1e-12, abs=1e-12)


@PROPS
@given(gaussian_case(), st.sampled_from([["y", "mu", "L"], ["mu"], ["L"]]))
def test_multi_normal_cholesky_gradients(case, params):
    y, mu, L = case
    if np.linalg.cond(L) > 1e3:  # finite differences in L lose their digits beyond that
        L = np.tril(np.clip(L, -2, 2), -1) + np.diag(np.clip(np.diag(L), 0.5, 2))
    check = fv.check_kernel(
        "multi_normal_cholesky", {"y": y, "mu": mu, "L": L}, params=params, raise_on_failure=False, rtol=1e-4
    )
    assert check.passed, check


@st.composite
def dirichlet_case(draw):
    k = draw(st.integers(2, 6))
    rows = draw(st.sampled_from([None, 1, 3]))
    rng = _rng(draw)
    alpha = np.exp(rng.uniform(draw(st.floats(-3, 0)), draw(st.floats(0, 4)), size=k))
    shape = (k,) if rows is None else (rows, k)
    theta = rng.dirichlet(alpha, size=None if rows is None else rows)
    theta = np.clip(theta, 1e-12, None)  # a draw can underflow to 0 for small alpha
    theta /= theta.sum(axis=-1, keepdims=True)
    return theta.reshape(shape), alpha


@PROPS
@given(dirichlet_case())
def test_dirichlet_matches_scipy(case):
    theta, alpha = case
    m = fv.Model()
    a = m.param("alpha", shape=alpha.shape, lower=0.0)
    m.add("dirichlet", theta, alpha=a)
    want = sum(stats.dirichlet.logpdf(row, alpha) for row in np.atleast_2d(theta))
    lp, _ = m.log_density(np.log(alpha))  # zeta = log alpha; the log-Jacobian is sum(log alpha)
    got = float(lp) - float(np.sum(np.log(alpha)))
    # log theta_i down to log(1e-12) = -28 times alpha_i - 1 up to 54: terms of ~1e3, each rounded
    assert got == pytest.approx(want, rel=1e-10, abs=1e-9 * (1 + np.sum(np.abs((alpha - 1) * np.log(theta)))))


@PROPS
@given(dirichlet_case())
def test_dirichlet_gradient(case):
    theta, alpha = case
    theta = np.clip(theta, 1e-3, None)  # finite differences in theta need room inside the simplex
    theta /= theta.sum(axis=-1, keepdims=True)
    check = fv.check_kernel("dirichlet", {"theta": theta, "alpha": alpha}, params=["alpha"], raise_on_failure=False)
    assert check.passed, check


@st.composite
def logits_case(draw):
    c = draw(st.integers(2, 6))
    rows = draw(st.integers(1, 5))
    rng = _rng(draw)
    scale = draw(st.sampled_from([0.1, 1.0, 30.0]))  # 30: softmax probabilities down to e^-100
    logits = scale * rng.normal(size=(rows, c))
    return rng, logits


@PROPS
@given(logits_case())
def test_categorical_logit_matches_log_softmax(case):
    rng, logits = case
    y = rng.integers(0, logits.shape[1], size=logits.shape[0])
    m = fv.Model()
    g = m.param("logits", shape=logits.shape)
    m.add("categorical_logit", y, logits=g)
    want = float(np.sum(special.log_softmax(logits, axis=1)[np.arange(len(y)), y]))
    assert _lp(m, logits.ravel()) == pytest.approx(want, rel=1e-12, abs=1e-12 * (1 + np.abs(logits).sum()))
    check = fv.check_kernel("categorical_logit", {"y": y, "logits": logits}, params=["logits"], raise_on_failure=False)
    assert check.passed, check


@PROPS
@given(logits_case())
def test_multinomial_logit_matches_scipy(case):
    rng, logits = case
    counts = rng.integers(0, 7, size=logits.shape)
    m = fv.Model()
    g = m.param("gamma", shape=logits.shape)
    m.add("multinomial_logit", counts, gamma=g)
    p = special.softmax(logits, axis=1)
    want = float(sum(stats.multinomial.logpmf(c, c.sum(), q) for c, q in zip(counts, p)))
    # scipy forms log p from p, which underflows below e^-745 and loses digits well before: compare
    # with log_softmax where it is finite, and with the exact form otherwise
    exact = float(
        np.sum(special.gammaln(counts.sum(axis=1) + 1))
        - np.sum(special.gammaln(counts + 1))
        + np.sum(counts * special.log_softmax(logits, axis=1))
    )
    assert math.isfinite(exact)
    if math.isfinite(want):
        assert exact == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert _lp(m, logits.ravel()) == pytest.approx(exact, rel=1e-11, abs=1e-11 * (1 + np.abs(counts * logits).sum()))
    check = fv.check_kernel(
        "multinomial_logit", {"y": counts, "gamma": logits}, params=["gamma"], raise_on_failure=False
    )
    assert check.passed, check


@st.composite
def ordinal_case(draw):
    c = draw(st.integers(2, 6))
    n = draw(st.integers(1, 6))
    rng = _rng(draw)
    spread = draw(st.sampled_from([0.05, 1.0, 10.0]))  # cutpoints close together, or far apart
    cutpoints = np.cumsum(spread * rng.uniform(0.1, 1.0, size=c - 1)) + rng.normal()
    eta = draw(st.sampled_from([1.0, 10.0, 40.0])) * rng.normal(size=n)  # 40: far into the tails
    y = rng.integers(0, c, size=n)
    return y, eta, cutpoints


def _ordinal_reference(y, eta, cutpoints, log_cdf, log_sf):
    """sum_n log P(y_n | eta_n): the first and last categories by log cdf / log sf, the middle ones
    as log(F(c_k - eta) - F(c_{k-1} - eta)) formed on whichever tail keeps its digits."""
    total = 0.0
    c = len(cutpoints) + 1
    for k, e in zip(y, eta):
        if k == 0:
            total += log_cdf(cutpoints[0] - e)
        elif k == c - 1:
            total += log_sf(cutpoints[-1] - e)
        else:
            hi, lo = cutpoints[k] - e, cutpoints[k - 1] - e
            if lo > 0:  # both in the upper tail: P = sf(lo) - sf(hi)
                a, b = log_sf(lo), log_sf(hi)
            else:
                a, b = log_cdf(hi), log_cdf(lo)
            total += a + math.log1p(-math.exp(b - a))
    return total


ORDINAL = {
    "ordered_logistic": (lambda x: -np.logaddexp(0.0, -x), lambda x: -np.logaddexp(0.0, x)),
    "ordered_probit": (stats.norm.logcdf, stats.norm.logsf),
}


@PROPS
@given(ordinal_case(), st.sampled_from(sorted(ORDINAL)))
def test_ordinal_kernels_match_a_stable_reference(case, kernel):
    y, eta, cutpoints = case
    m = fv.Model()
    e = m.param("eta", shape=eta.shape)
    m.add(kernel, y, eta=e, cutpoints=cutpoints)
    want = _ordinal_reference(y, eta, cutpoints, *ORDINAL[kernel])
    # The middle categories' differences lose digits as the cutpoints close in (0.05 apart: the
    # difference of two probabilities of order 1 that agree to about 2 digits)
    assert _lp(m, eta) == pytest.approx(want, rel=1e-9, abs=1e-9)
    if np.max(np.abs(eta)) < 30:  # beyond that, central differences of log P in the far tail are noise
        check = fv.check_kernel(
            kernel, {"y": y, "eta": eta, "cutpoints": cutpoints}, params=["eta"], raise_on_failure=False, rtol=1e-4
        )
        assert check.passed, check


@st.composite
def categorical_glm_case(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 6))
    c = draw(st.integers(2, 5))
    rng = _rng(draw)
    X = rng.normal(size=(n, k)) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    beta = rng.normal(size=(k, c))
    alpha = rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    return y, X, alpha, beta


@PROPS
@given(categorical_glm_case())
def test_categorical_logit_glm_matches_log_softmax(case):
    y, X, alpha, beta = case
    m = fv.Model()
    a = m.param("alpha", shape=alpha.shape)
    b = m.param("beta", shape=beta.shape)
    m.add("categorical_logit_glm", y, X=X, alpha=a, beta=b)
    logits = alpha + X @ beta
    want = float(np.sum(special.log_softmax(logits, axis=1)[np.arange(len(y)), y]))
    got = _lp(m, np.concatenate([alpha, beta.ravel()]))
    assert got == pytest.approx(want, rel=1e-11, abs=1e-11 * (1 + np.abs(logits).sum()))
    check = fv.check_kernel(
        "categorical_logit_glm",
        {"y": y, "X": X, "alpha": alpha, "beta": beta},
        params=["alpha", "beta"],
        raise_on_failure=False,
    )
    assert check.passed, check


@st.composite
def categorical_case(draw):
    c = draw(st.integers(2, 6))
    n = draw(st.integers(1, 5))
    rng = _rng(draw)
    theta = rng.dirichlet(np.full(c, draw(st.sampled_from([0.2, 1.0, 5.0]))), size=n)
    theta = np.clip(theta, 1e-10, None)
    theta /= theta.sum(axis=1, keepdims=True)
    y = rng.integers(0, c, size=n)
    return y, theta


@PROPS
@given(categorical_case())
def test_categorical_matches_log_theta(case):
    y, theta = case
    m = fv.Model()
    m.param("unused")
    m.add("categorical", y, theta=theta)  # theta as data
    want = float(np.sum(np.log(theta[np.arange(len(y)), y])))
    assert _lp(m, [0.0]) == pytest.approx(want, rel=1e-12, abs=1e-12)
    if np.min(theta) > 1e-3:  # theta as a parameter (on the simplex's interior), by finite differences
        check = fv.check_kernel("categorical", {"y": y, "theta": theta}, params=["theta"], raise_on_failure=False)
        assert check.passed, check
