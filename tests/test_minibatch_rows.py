"""Minibatch VI for element-wise factors made row-wise with ``model.add(..., rows=0)``.

A factor added with ``rows=0`` has N = the length of its broadcast shape's leading axis, and a
minibatch of rows R with weight w adds w times the terms of those rows' elements (every term,
data-only constants included) and w times their partials. Tested here:

- the weighted-subset identity: the minibatch log density and gradient are w times those of the
  same model built on the rows R alone (parameters that vary along the rows read at R), for
  kernels and operand layouts of every kind (scalar parameters, a local latent per row, a
  parameter broadcast along the other axis, an expression over the rows, runs longer than the
  kernel's chunk, repeated rows);
- exact unbiasedness: the average over every B-subset with w = N / B is the full log density;
- fits with batch_size land on the full-batch fit, and do not depend on the thread count;
- the errors for rows= where it cannot apply.
"""

import copy
import itertools
import pickle

import fastvi as fv
import numpy as np
import pytest


def _data(case, N, seed=0):
    rng = np.random.default_rng(seed)
    if case == "normal_scalar":
        return {"y": rng.normal(1.0, 2.0, size=N)}
    if case == "student_t_local":
        return {"y": rng.normal(size=N)}
    if case == "poisson_broadcast":
        return {"y": rng.poisson(3.0, size=(N, 3)).astype(float)}
    if case == "bernoulli_logit_expr":
        x = rng.normal(size=N)
        return {"x": x, "y": (rng.random(N) < 1 / (1 + np.exp(-x))).astype(float)}
    if case == "gamma_local":
        return {"y": rng.gamma(2.0, 1.5, size=N)}
    if case == "lognormal_mapped":
        return {"y": rng.lognormal(size=(N, 2))}
    if case == "neg_binomial_2_phi":
        return {"y": rng.poisson(4.0, size=N).astype(float)}
    if case == "normal_long_rows":  # rows of 300 elements: minibatches longer than one run (1024)
        return {"y": rng.normal(size=(N, 300))}
    raise ValueError(case)


CASES = [
    "normal_scalar",
    "student_t_local",
    "poisson_broadcast",
    "bernoulli_logit_expr",
    "gamma_local",
    "lognormal_mapped",
    "neg_binomial_2_phi",
    "normal_long_rows",
]


def _model(case, d, idx=None, factor=True, priors=False):
    """The case's model on all its rows (idx None, the factor row-wise) or on the rows idx alone
    (an ordinary factor, with every parameter that varies along the rows read at idx). The
    parameters are the same either way, so that both models share zeta's layout. factor=False:
    the parameters alone (their transforms' log-Jacobians)."""
    m = fv.Model()
    N = len(d["y"])
    pick = (lambda a: a) if idx is None else (lambda a: a[idx])
    kw = {"rows": 0} if idx is None else {}
    y = pick(d["y"])
    if case == "normal_scalar":
        mu, sigma = m.param("mu"), m.param("sigma", lower=0.0)
        args = ("normal", y), dict(loc=mu, scale=sigma)
        prior = [("normal", mu, dict(loc=0.0, scale=5.0))]
    elif case == "student_t_local":
        z, s = m.param("z", N), m.param("s", lower=0.0)
        args = ("student_t", y), dict(df=4.0, loc=pick(z), scale=s)
        prior = [("normal", z, dict(loc=0.0, scale=1.0))]
    elif case == "poisson_broadcast":
        rate = m.param("rate", (1, 3), lower=0.0)
        args = ("poisson", y), dict(rate=rate)
        prior = [("gamma", rate, dict(shape=2.0, rate=1.0))]
    elif case == "bernoulli_logit_expr":
        a, b = m.param("a"), m.param("b")
        x = d["x"] if idx is None else d["x"][idx]
        args = ("bernoulli_logit", y), dict(logit=a + b * x)
        prior = [("normal", b, dict(loc=0.0, scale=2.0))]
    elif case == "gamma_local":
        alpha, beta = m.param("alpha", lower=0.0), m.param("beta", N, lower=0.0)
        args = ("gamma", y), dict(shape=alpha, rate=pick(beta))
        prior = [("exponential", beta, dict(rate=1.0))]
    elif case == "lognormal_mapped":
        loc, scale = m.param("loc", (N, 1)), m.param("scale", (2,), lower=0.0)
        args = ("lognormal", y), dict(loc=pick(loc), scale=scale)
        prior = [("normal", loc, dict(loc=0.0, scale=1.0))]
    elif case == "neg_binomial_2_phi":  # a scalar phi parameter: the kernel that groups the counts
        mu, phi = m.param("mu", N, lower=0.0), m.param("phi", lower=0.0)
        args = ("neg_binomial_2", y), dict(mu=pick(mu), phi=phi)
        prior = [("exponential", phi, dict(rate=0.1))]
    else:  # normal_long_rows
        loc = m.param("loc", 300)
        args = ("normal", y), dict(loc=loc, scale=1.5)
        prior = []
    if priors:
        for kernel, value, inputs in prior:
            m.add(kernel, value, **inputs)
    if factor:
        (kernel, value), inputs = args
        m.add(kernel, value, **inputs, **kw)
    return m


def _zeta(m, S, seed):
    return np.random.default_rng(seed).normal(scale=0.4, size=(m.dim, S))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("N", [6, 40])  # the element-by-element and the vectorised full-batch paths
@pytest.mark.parametrize("S", [1, 5])
def test_minibatch_is_the_weighted_subset_model(case, N, S):
    d = _data(case, N, seed=1)
    full = _model(case, d)
    assert full._core.data_rows == N
    rng = np.random.default_rng(2)
    rows = np.sort(rng.choice(N, size=N // 2, replace=False))
    if case == "normal_long_rows":
        rows = np.array([0, 3, 3, 5])  # a repeated row, and 1,200 elements: two runs
    sub = _model(case, d, idx=rows)
    bare = _model(case, d, factor=False)  # the transforms' log-Jacobians, which count once
    zeta = _zeta(full, S, 3)
    w = 2.75
    lp_mb, g_mb = full._core.log_density_rows(zeta, rows.tolist(), w)
    lp_sub, g_sub = sub.log_density(zeta)
    lp_jac, g_jac = bare.log_density(zeta)
    # constants included: the element-wise kernels weight every term of the chosen rows
    np.testing.assert_allclose(lp_mb - lp_jac, w * (lp_sub - lp_jac), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g_mb - g_jac, w * (g_sub - g_jac), rtol=1e-12, atol=1e-9)


def test_repeated_rows_count_twice():
    d = _data("student_t_local", 10, seed=4)
    full = _model("student_t_local", d)
    zeta = _zeta(full, 2, 5)
    twice = full._core.log_density_rows(zeta, [4, 4], 1.0)
    once = full._core.log_density_rows(zeta, [4], 2.0)
    sub = _model("student_t_local", d, idx=np.array([4, 4]))
    for a, b in zip(twice, once):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    bare = _model("student_t_local", d, factor=False)
    np.testing.assert_allclose(
        twice[1] - bare.log_density(zeta)[1], sub.log_density(zeta)[1] - bare.log_density(zeta)[1], rtol=1e-13
    )
    # the local latent of row 4 alone (and the shared scale) has a gradient from the likelihood
    g = twice[1] - bare.log_density(zeta)[1]
    assert (np.count_nonzero(g[:10], axis=0) == 1).all() and (g[4] != 0).all()


@pytest.mark.parametrize("case", ["normal_scalar", "student_t_local", "poisson_broadcast", "lognormal_mapped"])
@pytest.mark.parametrize("B", [1, 2, 4])
def test_average_over_all_minibatches_is_the_full_log_density(case, B):
    # Exact unbiasedness (constants included): with w = N / B each row is in a fraction B / N of
    # the subsets. The priors are not row-wise: evaluated whole in every minibatch.
    N = 6
    d = _data(case, N, seed=6)
    m = _model(case, d, priors=True)
    zeta = _zeta(m, 3, 7)
    lp_full, g_full = m.log_density(zeta)
    subsets = list(itertools.combinations(range(N), B))
    lps, grads = zip(*(m._core.log_density_rows(zeta, list(r), N / B) for r in subsets))
    np.testing.assert_allclose(np.mean(lps, axis=0), lp_full, rtol=1e-12)
    np.testing.assert_allclose(np.mean(grads, axis=0), g_full, rtol=1e-10, atol=1e-10)


def test_full_batch_evaluation_is_unchanged_by_rows():
    # rows= changes only minibatches: a full-batch evaluation is the plain factor's, bit for bit
    for case in CASES:
        d = _data(case, 40, seed=8)
        plain = _model(case, d, idx=np.arange(40))
        rowwise = _model(case, d)
        zeta = _zeta(plain, 3, 9)
        for a, b in zip(plain.log_density(zeta), rowwise.log_density(zeta)):
            np.testing.assert_array_equal(a, b)


def _compare_fits(full, mb, names):
    assert full.converged, full.message
    assert mb.converged, mb.message
    sd = np.concatenate([np.atleast_1d(full.std()[k]) for k in names])
    mean_full = np.concatenate([np.atleast_1d(full.mean()[k]) for k in names])
    mean_mb = np.concatenate([np.atleast_1d(mb.mean()[k]) for k in names])
    sd_mb = np.concatenate([np.atleast_1d(mb.std()[k]) for k in names])
    assert np.max(np.abs(mean_mb - mean_full) / sd) < 0.1, (mean_mb, mean_full, sd)
    assert np.max(np.abs(sd_mb / sd - 1)) < 0.1, (sd_mb, sd)


def test_minibatch_fit_of_a_normal_matches_the_full_batch_fit():
    N = 50_000
    y = np.random.default_rng(10).normal(1.5, 2.0, size=N)
    m = fv.Model()
    mu, sigma = m.param("mu"), m.param("sigma", lower=0.0)
    m.add("normal", mu, loc=0.0, scale=10.0)
    m.add("half_normal", sigma, scale=5.0)
    m.add("normal", y, loc=mu, scale=sigma, rows=0)
    full = fv.fit(m, seed=0)
    mb = fv.fit(m, seed=0, batch_size=500)
    assert mb.options["batch_size"] == 500
    _compare_fits(full, mb, ("mu", "sigma"))


def test_minibatch_fit_of_a_poisson_regression_with_an_expression_matches():
    # log_rate = alpha + X @ beta: an expression over the rows (computed whole; the kernel reads
    # the minibatch's rows of it)
    rng = np.random.default_rng(11)
    N, K = 20_000, 3
    X = rng.normal(size=(N, K)) * 0.5
    y = rng.poisson(np.exp(0.2 + X @ np.array([0.5, -0.3, 0.1]))).astype(float)
    m = fv.Model()
    alpha, beta = m.param("alpha"), m.param("beta", K)
    m.add("normal", alpha, loc=0.0, scale=2.0)
    m.add("normal", beta, loc=0.0, scale=2.0)
    m.add("poisson_log", y, log_rate=alpha + X @ beta, rows=0)
    full = fv.fit(m, seed=0)
    mb = fv.fit(m, seed=0, batch_size=500)
    _compare_fits(full, mb, ("alpha", "beta"))


def test_minibatch_fit_is_thread_independent():
    rng = np.random.default_rng(12)
    N = 1_000
    y = rng.normal(size=(N, 4)) + np.arange(4)
    m = fv.Model()
    loc, z = m.param("loc", 4), m.param("z", (N, 1))
    m.add("normal", z, loc=0.0, scale=0.5)
    m.add("normal", y, loc=loc + z, scale=1.0, rows=0)
    kw = dict(batch_size=100, draws=4, steps=200, tol=None, seed=13, psis_draws=0)
    f1, f2 = fv.fit(m, threads=1, **kw), fv.fit(m, threads=2, **kw)
    for name in ("loc", "z"):
        np.testing.assert_array_equal(f1.mean()[name], f2.mean()[name])
        np.testing.assert_array_equal(f1.std()[name], f2.std()[name])
    other = fv.fit(m, threads=1, **{**kw, "seed": 14})
    assert not np.array_equal(other.mean()["loc"], f1.mean()["loc"])


def test_rows_survive_copies_pickles_and_set_data():
    d = _data("gamma_local", 12, seed=15)
    m = _model("gamma_local", d)
    zeta = _zeta(m, 2, 16)
    ref = m._core.log_density_rows(zeta, [1, 5, 5], 4.0)
    for other in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other._core.data_rows == 12
        for a, b in zip(ref, other._core.log_density_rows(zeta, [1, 5, 5], 4.0)):
            np.testing.assert_array_equal(a, b)
    assert m.__getstate__()["format"] == 3  # a fastvi without rows= cannot read it
    # a data container of a new length: N follows the rows axis
    c = fv.Model()
    y = c.data("y", np.ones(8))
    mu = c.param("mu")
    c.add("normal", y, loc=mu, rows=0)
    assert c._core.data_rows == 8
    c.set_data("y", np.ones(20))
    assert c._core.data_rows == 20


def test_rows_errors_name_the_problem():
    m = fv.Model()
    mu, b = m.param("mu"), m.param("b", 2)
    y = np.zeros((5, 2))
    with pytest.raises(ValueError, match="only the leading axis"):
        m.add("normal", y, loc=mu, rows=1)
    with pytest.raises(ValueError, match="only the leading axis"):
        m.add("normal", y, loc=mu, rows=-1)
    with pytest.raises(ValueError, match=r"rows=2 is not an axis.*\(5, 2\)"):
        m.add("normal", y, loc=mu, rows=2)
    with pytest.raises(ValueError, match="rows=0 is not an axis"):
        m.add("normal", mu, loc=0.0, rows=0)  # a scalar factor has no axes
    with pytest.raises(TypeError, match="rows must be an int"):
        m.add("normal", y, loc=mu, rows=0.0)
    with pytest.raises(TypeError, match="rows must be an int"):
        m.add("normal", y, loc=mu, rows=True)
    X = np.ones((5, 2))
    with pytest.raises(ValueError, match="rows: kernel 'bernoulli_logit_glm' is not element-wise"):
        m.add("bernoulli_logit_glm", np.zeros(5), X=X, beta=b, rows=0)
    with pytest.raises(ValueError, match="rows: kernel 'categorical_logit' is not element-wise"):
        m.add("categorical_logit", np.zeros(5), logits=b, rows=0)
    assert m.factors == [] and m._core.data_rows == 0  # nothing was added
    m.add("normal", y, loc=mu, rows=-2, name="y")  # -2 is the leading axis of (5, 2)
    assert m._core.data_rows == 5
    m.add("normal", np.zeros(7), loc=mu, rows=0, name="other")
    with pytest.raises(ValueError, match="same rows.*'y' has 5 and 'other' has 7"):
        fv.fit(m, batch_size=2, steps=10)


def test_batch_size_without_row_wise_factors_mentions_rows():
    m = fv.Model()
    mu = m.param("mu")
    m.add("normal", np.zeros(10), loc=mu)
    with pytest.raises(ValueError, match="rows=0"):
        fv.fit(m, batch_size=5, steps=10)
