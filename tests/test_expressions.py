"""Expressions: values against numpy, gradients against finite differences, and fits that use them."""

import math

import fastvi as fv
import numpy as np
import pytest
import scipy.stats


def _fd_grad(model, zeta, h=1e-6):
    return np.array(
        [(model.log_density(zeta + h * e)[0] - model.log_density(zeta - h * e)[0]) / (2 * h) for e in np.eye(model.dim)]
    )


def _check(model, zeta, expected_lp):
    lp, grad = model.log_density(zeta)
    assert lp == pytest.approx(expected_lp, rel=1e-11, abs=1e-11)
    # central differences with h = 1e-6: truncation ~h^2 |f'''|, rounding ~1e-16 |f| / h
    np.testing.assert_allclose(grad, _fd_grad(model, zeta), rtol=1e-6, atol=1e-6)


def test_arithmetic_with_numbers_arrays_and_expressions():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 3))
    c = rng.uniform(1, 2, size=3)
    m = fv.Model()
    a = m.param("a", shape=(3,))
    b = m.param("b")
    s = m.param("s", lower=0.0)
    loc = 2.0 * a - b / c + (1.0 - a) * b - (-a) / (b * b + 1.0)
    m.add("normal", y, loc=loc, scale=s * c + 0.5)
    zeta = rng.normal(size=m.dim)
    av, bv, sv = zeta[:3], zeta[3], math.exp(zeta[4])
    loc_v = 2.0 * av - bv / c + (1.0 - av) * bv + av / (bv * bv + 1.0)
    expected = scipy.stats.norm.logpdf(y, loc_v, sv * c + 0.5).sum() + zeta[4]  # + log-Jacobian of s
    _check(m, zeta, expected)


def test_functions_matvec_indexing_slicing_and_sum():
    rng = np.random.default_rng(1)
    n, k, groups = 20, 3, 4
    X = rng.normal(size=(n, k))
    group = rng.integers(0, groups, size=n)
    y = rng.integers(0, 2, size=n)
    m = fv.Model()
    beta = m.param("beta", shape=(k + 1,))
    a = m.param("a", shape=(groups,))
    logit = a[group] + X @ beta[1:] + beta[0]
    m.add("bernoulli_logit", y, logit=logit)
    m.add("normal", fv.sum(fv.exp(a)), loc=3.0, scale=2.0)
    m.add("normal", fv.log1p_exp(beta), loc=fv.inv_logit(a[0]), scale=fv.exp(a[1:2]))
    m.add("normal", fv.log(fv.exp(beta) + 1.0), loc=0.0, scale=1.0)
    zeta = rng.normal(size=m.dim) * 0.5
    bv, av = zeta[: k + 1], zeta[k + 1 :]
    eta = av[group] + X @ bv[1:] + bv[0]
    expected = scipy.stats.bernoulli.logpmf(y, scipy.special.expit(eta)).sum()
    expected += scipy.stats.norm.logpdf(np.exp(av).sum(), 3.0, 2.0)
    expected += scipy.stats.norm.logpdf(np.log1p(np.exp(bv)), scipy.special.expit(av[0]), np.exp(av[1])).sum()
    expected += scipy.stats.norm.logpdf(np.log(np.exp(bv) + 1.0)).sum()
    _check(m, zeta, expected)


@pytest.mark.parametrize("n,k,draws", [(7, 3, 1), (1000, 5, 4), (300, 500, 40), (2000, 50, 33)])
def test_matvec_over_blocks_matches_numpy(n, k, draws):
    # X @ v is computed in blocks of rows, columns of X and draws (so that Eigen never allocates);
    # these shapes span several of each. v is a node (0.5 * beta), not the parameter itself.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    y = rng.normal(size=n)
    m = fv.Model()
    beta = m.param("beta", shape=(k,))
    m.add("normal", y, loc=X @ (beta * 0.5), scale=1.0)
    zeta = rng.normal(size=(k, draws))
    lp, grad = m.log_density(zeta)
    resid = y[:, None] - X @ (0.5 * zeta)  # (n, draws)
    np.testing.assert_allclose(lp, scipy.stats.norm.logpdf(resid).sum(axis=0), rtol=1e-12, atol=0)
    expected = 0.5 * X.T @ resid
    np.testing.assert_allclose(grad, expected, rtol=1e-11, atol=1e-12 * np.abs(expected).max())


def test_multi_dimensional_indexing_follows_numpy():
    m = fv.Model()
    w = m.param("w", shape=(3, 4))
    picked = w[1:, ::2]
    m.deterministic("picked", picked)
    m.deterministic("col", w[:, 3])
    zeta = np.arange(12.0)
    values = m.constrain(zeta)
    np.testing.assert_array_equal(values["picked"], zeta.reshape(3, 4)[1:, ::2])
    np.testing.assert_array_equal(values["col"], zeta.reshape(3, 4)[:, 3])


def test_positive_expressions_are_accepted_as_scales():
    m = fv.Model()
    tau = m.param("tau", lower=0.0)
    s = m.param("s", lower=0.0)
    m.add("normal", np.zeros(3), loc=0.0, scale=tau * s + 1.0)
    m.add("normal", np.zeros(3), loc=0.0, scale=fv.exp(m.param("log_sigma")))
    w = m.param("w")
    with pytest.raises(ValueError, match="must be > 0"):
        m.add("normal", np.zeros(3), loc=0.0, scale=w * tau)


def test_expression_errors_are_clear():
    m = fv.Model()
    w = m.param("w", shape=(3,))
    with pytest.raises(ValueError, match="do not broadcast"):
        w + np.ones(4)
    with pytest.raises(ValueError, match="X has shape"):
        np.ones((5, 4)) @ w
    with pytest.raises(IndexError):
        w[5]
    with pytest.raises(ValueError, match="NaN or inf"):
        w * np.array([1.0, np.nan, 1.0])
    with pytest.raises(TypeError, match="truth value"):
        bool(w)
    other = fv.Model().param("v", shape=(3,))
    with pytest.raises(ValueError, match="different models"):
        w + other


def test_non_centred_eight_schools_deterministic_in_samples_and_summaries():
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    m = fv.Model()
    mu = m.param("mu")
    tau = m.param("tau", lower=0.0)
    theta_raw = m.param("theta_raw", shape=(8,))
    theta = m.deterministic("theta", mu + tau * theta_raw)
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_cauchy", tau, scale=5.0)
    m.add("normal", theta_raw, loc=0.0, scale=1.0)
    m.add("normal", y, loc=theta, scale=sigma)
    approx = fv.fit(m, family="fullrank", steps=5000, draws=4, seed=0, tol=None)
    draws = approx.sample(2000, seed=0)
    assert draws["theta"].shape == (2000, 8)
    np.testing.assert_allclose(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_raw"])
    mean = approx.mean()
    assert mean["theta"].shape == (8,)
    # Monte Carlo mean of theta agrees with the mean of mu + tau * theta_raw computed from draws
    assert np.all(
        np.abs(mean["theta"] - draws["theta"].mean(axis=0)) < 4 * draws["theta"].std(axis=0) / math.sqrt(2000)
    )
    assert "theta[7]" in fv.summary(draws).rows


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_binary_operations_in_every_operand_layout(op):
    # Every pairing of contiguous, scalar and broadcast operands, parameters and data: the nodes'
    # vectorised path (contiguous or scalar operands, 16 >= kMinWholeDraw elements) and
    # element-wise path (broadcast ones) must give numpy's values, and gradients that match finite
    # differences.
    rng = np.random.default_rng(7)
    m = fv.Model()
    params = {
        "u": m.param("u", shape=(4, 4), lower=0.0),
        "v": m.param("v", shape=(4, 4), lower=0.0),
        "s": m.param("s", lower=0.0),
        "r": m.param("r", shape=(4,), lower=0.0),
    }
    data = {"D": rng.uniform(0.5, 1.5, size=(4, 4)), "d": 1.3, "row": rng.uniform(0.5, 1.5, size=4)}
    zeta = rng.normal(0.0, 0.3, size=m.dim)
    theta = {name: np.exp(zeta[p.offset : p.offset + p.size]).reshape(p.shape) for name, p in params.items()}
    apply = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}[op]
    expected = zeta.sum()  # log-Jacobians of the lower=0 parameters
    operands = [*params, *data]
    pairs = [(a, b) for a in operands for b in operands if a in params or b in params]
    for i, (a, b) in enumerate(pairs):
        expr = m.deterministic(f"e{i}", apply({**params, **data}[a], {**params, **data}[b]))
        value = apply({**theta, **data}[a], {**theta, **data}[b])
        # (numpy's exp and the transform's may differ by an ulp, which a difference can magnify)
        np.testing.assert_allclose(m.constrain(zeta)[f"e{i}"], value, rtol=1e-14, atol=1e-15, err_msg=f"{a} {op} {b}")
        m.add("normal", expr, loc=0.5, scale=2.0)
        expected += scipy.stats.norm.logpdf(value, 0.5, 2.0).sum()
    _check(m, zeta, expected)


def test_functions_at_extreme_arguments():
    # log1p_exp and inv_logit must stay finite and accurate where exp(x) under- or overflows.
    x = np.array([-800.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 800.0])
    m = fv.Model()
    w = m.param("w", shape=x.shape)
    soft = m.deterministic("soft", fv.log1p_exp(w))
    prob = m.deterministic("prob", fv.inv_logit(w))
    m.add("normal", soft, loc=0.0, scale=1.0)
    m.add("normal", prob, loc=0.0, scale=1.0)
    values = m.constrain(x)
    expit = scipy.special.expit(x)
    np.testing.assert_allclose(values["soft"], np.logaddexp(0.0, x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(values["prob"], expit, rtol=1e-15, atol=0)
    _, grad = m.log_density(x)
    # d/dw of -soft^2/2 - prob^2/2: soft' = expit(w), prob' = expit(w) expit(-w)
    np.testing.assert_allclose(
        grad, -values["soft"] * expit - values["prob"] * expit * scipy.special.expit(-x), rtol=1e-14, atol=0
    )


GLMS = {  # fused kernel, element-wise kernel and its linear-predictor input, data
    "bernoulli": (
        "bernoulli_logit_glm",
        "bernoulli_logit",
        "logit",
        lambda rng, eta: (rng.uniform(size=eta.size) < scipy.special.expit(eta)).astype(float),
    ),
    "poisson": ("poisson_log_glm", "poisson_log", "log_rate", lambda rng, eta: rng.poisson(np.exp(eta)).astype(float)),
    "normal": ("normal_id_glm", "normal", "loc", lambda rng, eta: eta + rng.normal(size=eta.size)),
}


@pytest.mark.parametrize("likelihood", list(GLMS))
def test_glm_as_expression_matches_fused_kernel(likelihood):
    # alpha + X @ beta through the expression nodes and an element-wise kernel gives the fused GLM
    # kernel's log density and gradient to rounding (different summation orders only). 1,000 rows
    # span several of the fused kernel's row blocks.
    fused_name, kernel, linear, outcome = GLMS[likelihood]
    rng = np.random.default_rng(3)
    n, k = 1000, 5
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    y = outcome(rng, 0.2 + X @ rng.normal(size=k))

    def build(fused):
        m = fv.Model()
        alpha = m.param("alpha")
        beta = m.param("beta", shape=(k,))
        m.add("normal", beta, loc=0.0, scale=1.0)
        extra = {}
        if likelihood == "normal":
            extra["sigma" if fused else "scale"] = m.param("sigma", lower=0.0)
        if fused:
            m.add(fused_name, y, X=X, alpha=alpha, beta=beta, **extra)
        else:
            m.add(kernel, y, **{linear: alpha + X @ beta}, **extra)
        return m

    fused, expression = build(True), build(False)
    zeta = rng.normal(0.0, 0.5, size=(fused.dim, 4))
    lp_f, g_f = fused.log_density(zeta)
    lp_e, g_e = expression.log_density(zeta)
    np.testing.assert_allclose(lp_e, lp_f, rtol=1e-12, atol=0)
    # every partial to 1e-12, relative to itself or to the largest one (single partials can cancel to ~0)
    np.testing.assert_allclose(g_e, g_f, rtol=1e-12, atol=1e-12 * np.abs(g_f).max())
