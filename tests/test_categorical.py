"""categorical_logit, categorical, ordered_logistic, ordered_probit and multinomial_logit against
direct formulas and scipy.

Each kernel's log density is checked through Model.log_density against an independent numpy /
scipy transcription (scipy.special.log_softmax, scipy.stats.multinomial, expit differences for the
ordered logit, scipy.stats.norm CDF differences for the ordered probit, with mpmath far in the
tails), on per-outcome and shared rows, with the inputs as parameters or data; gradients against
central finite differences (fv.check_kernel); bad inputs raise errors that name the input.
"""

from __future__ import annotations

import fastvi as fv
import numpy as np
import pytest
from scipy import special, stats

RNG = np.random.default_rng(11)
N, C = 7, 4
Y = np.array([0, 3, 1, 1, 2, 0, 3], dtype=float)


def _lp(model, theta):
    lp, _ = model.log_density(np.asarray(theta, dtype=float))
    return float(lp)


# ---- categorical_logit ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N, C), (C,)])
def test_categorical_logit_matches_log_softmax(shape):
    m = fv.Model()
    logits = m.param("logits", shape=shape)
    m.add("categorical_logit", Y, logits=logits)
    z = RNG.normal(size=shape) * 2.0
    rows = np.broadcast_to(z, (N, C))
    expected = special.log_softmax(rows, axis=-1)[np.arange(N), Y.astype(int)].sum()
    assert _lp(m, z.ravel()) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_categorical_logit_one_outcome_matches_scipy_multinomial():
    z = np.array([0.3, -1.2, 2.0])
    m = fv.Model()
    logits = m.param("logits", shape=(3,))
    m.add("categorical_logit", 2.0, logits=logits)
    expected = stats.multinomial.logpmf([0, 0, 1], 1, special.softmax(z))
    assert _lp(m, z) == pytest.approx(expected, rel=1e-12)


def test_categorical_logit_is_stable_for_large_logits():
    # log_softmax shifted by the row maximum: 800 would overflow exp.
    z = np.array([800.0, 0.0, -800.0])
    m = fv.Model()
    logits = m.param("logits", shape=(3,))
    m.add("categorical_logit", np.array([0.0, 1.0]), logits=logits)
    assert _lp(m, z) == pytest.approx(0.0 + (-800.0), abs=1e-9)


@pytest.mark.parametrize("shape", [(N, C), (C,)])
def test_categorical_logit_gradient(shape):
    fv.check_kernel("categorical_logit", {"y": Y, "logits": RNG.normal(size=shape)}, params=["logits"])


# ---- categorical ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N, C), (C,)])
def test_categorical_matches_log_probabilities(shape):
    theta = special.softmax(RNG.normal(size=shape), axis=-1)
    m = fv.Model()
    m.param("unused")  # a model needs a parameter; theta is data here
    m.add("categorical", Y, theta=theta)
    rows = np.broadcast_to(theta, (N, C))
    expected = np.log(rows[np.arange(N), Y.astype(int)]).sum()
    assert _lp(m, [0.0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(N, C), (C,)])
def test_categorical_gradient(shape):
    theta = special.softmax(RNG.normal(size=shape), axis=-1)
    fv.check_kernel("categorical", {"y": Y, "theta": theta}, params=["theta"])


def test_categorical_theta_from_softmax_of_a_parameter_equals_categorical_logit():
    z = RNG.normal(size=C)
    lp = []
    for kernel in ("categorical_logit", "categorical"):
        m = fv.Model()
        w = m.param("w", shape=(C,))
        if kernel == "categorical_logit":
            m.add(kernel, Y, logits=w)
        else:
            m.add(kernel, Y, theta=fv.softmax(w))
        lp.append(m.log_density(z))
    assert lp[0][0] == pytest.approx(lp[1][0], rel=1e-12)
    np.testing.assert_allclose(lp[0][1], lp[1][1], rtol=1e-10, atol=1e-12)


# ---- ordered_logistic -------------------------------------------------------------------------


def _ordered_logistic_lp(y, eta, cuts):
    eta = np.broadcast_to(eta, y.shape)
    # P(y <= k) = expit(c_k - eta); P(y = k) = P(y <= k) - P(y <= k - 1)
    upper = np.concatenate([special.expit(cuts[None, :] - eta[:, None]), np.ones((len(y), 1))], axis=1)
    lower = np.concatenate([np.zeros((len(y), 1)), upper[:, :-1]], axis=1)
    p = upper - lower
    return np.log(p[np.arange(len(y)), y.astype(int)]).sum()


@pytest.mark.parametrize("eta_shape", [(N,), ()])
def test_ordered_logistic_matches_expit_differences(eta_shape):
    cuts = np.array([-1.0, 0.2, 1.5])
    eta = RNG.normal(size=eta_shape)
    m = fv.Model()
    e = m.param("eta", shape=eta_shape)
    c = m.param("c", shape=(3,))
    m.add("ordered_logistic", Y, eta=e, cutpoints=c)
    expected = _ordered_logistic_lp(Y, eta, cuts)
    assert _lp(m, np.concatenate([np.ravel(eta), cuts])) == pytest.approx(expected, rel=1e-12)


def test_ordered_logistic_is_accurate_far_in_the_tails():
    # P(y = 1) with eta 40 above both cutpoints: expit differences cancel to 0 in float64, the log
    # form does not. Reference: log(expit(a) - expit(b)) = log(expit(-b) - expit(-a)) for a > b,
    # both small there.
    cuts = np.array([-1.0, 0.0])
    eta = 40.0
    m = fv.Model()
    e = m.param("eta")
    m.add("ordered_logistic", np.array([1.0]), eta=e, cutpoints=cuts)
    a, b = eta - cuts[0], eta - cuts[1]
    expected = np.log(special.expit(-b) - special.expit(-a))
    assert np.isfinite(expected)
    assert _lp(m, [eta]) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("eta_shape", [(N,), ()])
def test_ordered_logistic_gradient(eta_shape):
    fv.check_kernel(
        "ordered_logistic",
        {"y": Y, "eta": RNG.normal(size=eta_shape), "cutpoints": np.array([-1.0, 0.2, 1.5])},
        params=["eta", "cutpoints"],
    )


def test_ordered_logistic_fit_recovers_a_shift():
    # Outcomes simulated at eta = 1 with known cutpoints: the posterior of eta (flat prior,
    # 600 outcomes) centres near 1, well inside its sd of about 0.09.
    rng = np.random.default_rng(5)
    cuts = np.array([-1.0, 0.5, 2.0])
    p_le = special.expit(cuts - 1.0)
    u = rng.uniform(size=600)
    y = (u[:, None] > p_le[None, :]).sum(axis=1).astype(float)
    m = fv.Model()
    e = m.param("eta")
    m.add("ordered_logistic", y, eta=e, cutpoints=cuts)
    fit = fv.fit(m, seed=0)
    assert fit.converged
    assert abs(float(fit.mean()["eta"]) - 1.0) < 3 * float(fit.std()["eta"])


# ---- ordered_probit -----------------------------------------------------------------------------


def _ordered_probit_lp(y, eta, cuts):
    # P(y = k) = P(y <= k) - P(y <= k - 1), P(y <= k) = Phi(c_k - eta) = norm.cdf; where both are
    # near 1 the same difference of survival functions (norm.sf), which does not cancel.
    eta = np.broadcast_to(eta, y.shape)
    z = np.concatenate([np.full((len(y), 1), -np.inf), cuts[None, :] - eta[:, None], np.full((len(y), 1), np.inf)], 1)
    lo, hi = z[np.arange(len(y)), y.astype(int)], z[np.arange(len(y)), y.astype(int) + 1]
    p = np.where(lo > 0, stats.norm.sf(lo) - stats.norm.sf(hi), stats.norm.cdf(hi) - stats.norm.cdf(lo))
    return np.log(p).sum()


@pytest.mark.parametrize("eta_shape", [(N,), ()])
@pytest.mark.parametrize("cuts_kind", ["param", "data"])
def test_ordered_probit_matches_normal_cdf_differences(eta_shape, cuts_kind):
    cuts = np.array([-1.0, 0.2, 1.5])
    eta = RNG.normal(size=eta_shape)
    m = fv.Model()
    e = m.param("eta", shape=eta_shape)
    c = m.param("c", shape=(3,)) if cuts_kind == "param" else cuts
    m.add("ordered_probit", Y, eta=e, cutpoints=c)
    z = np.concatenate([np.ravel(eta), cuts if cuts_kind == "param" else []])
    assert _lp(m, z) == pytest.approx(_ordered_probit_lp(Y, eta, cuts), rel=1e-12)


@pytest.mark.parametrize("n_cats", [2, 3, 6])
def test_ordered_probit_every_category_and_several_draws(n_cats):
    # Every category of C = 2, 3, 6 (the two ends and the middle ones), S = 5 draws in one batch.
    rng = np.random.default_rng(n_cats)
    y = np.arange(n_cats, dtype=float).repeat(2)
    cuts = np.sort(rng.normal(size=n_cats - 1)) * 2
    m = fv.Model()
    e = m.param("eta", shape=y.shape)
    m.add("ordered_probit", y, eta=e, cutpoints=cuts)
    zeta = rng.normal(size=(m.dim, 5)) * 2
    lp, _ = m.log_density(zeta)
    np.testing.assert_allclose(lp, [_ordered_probit_lp(y, zeta[:, s], cuts) for s in range(5)], rtol=1e-12)


@pytest.mark.parametrize("eta_shape", [(N,), ()])
def test_ordered_probit_gradient(eta_shape):
    fv.check_kernel(
        "ordered_probit",
        {"y": Y, "eta": RNG.normal(size=eta_shape), "cutpoints": np.array([-1.0, 0.2, 1.5])},
        params=["eta", "cutpoints"],
    )


def _mp_ordered_probit(y, eta, cuts):
    """log P(y) and its partials in eta and the cutpoints, in 50-digit arithmetic."""
    import mpmath

    mpmath.mp.dps = 50
    cdf = lambda x: mpmath.ncdf(mpmath.mpf(x))  # noqa: E731
    pdf = lambda x: mpmath.npdf(mpmath.mpf(x))  # noqa: E731
    k = len(cuts)
    a = eta - cuts[y - 1] if y > 0 else None  # upper end of the interval: Phi(a) - Phi(b)
    b = eta - cuts[y] if y < k else None
    # Phi(a) - Phi(b) on the side where neither is near 1 (1 - Phi(30) needs 200 digits).
    if a is None:
        p = cdf(-b)
    elif b is None:
        p = cdf(a)
    elif b >= 0:
        p = cdf(-b) - cdf(-a)
    else:
        p = cdf(a) - cdf(b)
    d_a = pdf(a) / p if a is not None else 0
    d_b = -pdf(b) / p if b is not None else 0
    d_cuts = np.zeros(k)
    if a is not None:
        d_cuts[y - 1] = float(-d_a)
    if b is not None:
        d_cuts[y] = float(-d_b)
    return float(mpmath.log(p)), float(d_a + d_b), d_cuts


# eta - cutpoint from about -40 to +40: every category deep in the left tail, deep in the right
# tail, and straddling; where Phi differences underflow or cancel to 0 in float64.
TAIL_CASES = [
    (0, 35.0, [5.0, 6.0, 7.0]),
    (0, -35.0, [5.0, 6.0, 7.0]),
    (3, -30.0, [5.0, 6.0, 7.0]),
    (3, 40.0, [5.0, 6.0, 7.0]),
    (1, 36.0, [5.0, 6.0, 7.0]),  # a = 31, b = 30: both far right
    (1, -25.0, [5.0, 6.0, 7.0]),  # a = -30, b = -31: both far left
    (2, -24.0, [5.0, 6.0, 7.0]),
    (1, 30.0, [0.0, 0.001, 7.0]),  # a narrow interval far right
    (1, -30.0, [0.0, 0.001, 7.0]),  # and far left
    (1, 0.0, [-0.5, 0.5, 7.0]),  # straddling 0
    (1, 0.0, [-30.0, 30.0, 40.0]),  # P ~ 1
    (2, 5.0, [-30.0, 0.0, 5.0 + 1e-6]),  # a tiny interval near one tail
]


@pytest.mark.parametrize("y,eta,cuts", TAIL_CASES)
def test_ordered_probit_is_accurate_far_in_the_tails(y, eta, cuts):
    cuts = np.array(cuts)
    m = fv.Model()
    e = m.param("eta")
    c = m.param("c", shape=(3,))
    m.add("ordered_probit", np.array([float(y)]), eta=e, cutpoints=c)
    lp, grad = m.log_density(np.concatenate([[eta], cuts]))
    ref_lp, ref_eta, ref_cuts = _mp_ordered_probit(y, eta, cuts)
    assert np.isfinite(lp) and np.isfinite(grad).all()
    assert float(lp) == pytest.approx(ref_lp, rel=1e-12, abs=1e-14)
    scale = max(1.0, abs(ref_eta))
    np.testing.assert_allclose(grad, np.concatenate([[ref_eta], ref_cuts]), rtol=1e-10, atol=1e-12 * scale)


def test_ordered_probit_fit_recovers_a_shift():
    rng = np.random.default_rng(6)
    cuts = np.array([-1.0, 0.5, 2.0])
    u = rng.normal(size=600) + 1.0  # latent eta = 1 plus standard normal noise
    y = (u[:, None] > cuts[None, :]).sum(axis=1).astype(float)
    m = fv.Model()
    e = m.param("eta")
    m.add("ordered_probit", y, eta=e, cutpoints=cuts)
    fit = fv.fit(m, seed=0)
    assert fit.converged
    assert abs(float(fit.mean()["eta"]) - 1.0) < 3 * float(fit.std()["eta"])


# ---- multinomial_logit ------------------------------------------------------------------------


def _multinomial_lp(y, gamma):
    y2, g2 = np.atleast_2d(y), np.broadcast_to(gamma, np.atleast_2d(y).shape)
    p = special.softmax(g2, axis=-1)
    return sum(stats.multinomial.logpmf(row, row.sum(), pr) for row, pr in zip(y2, p))


MULTINOMIAL_Y = np.array([[3, 0, 2, 1], [0, 0, 0, 0], [1, 5, 0, 7], [2, 2, 2, 2], [0, 9, 0, 0]], dtype=float)
MULTINOMIAL_SHAPES = [
    # (y, gamma's shape): one draw of counts, shared logits over rows, one row of logits per row
    (MULTINOMIAL_Y[2], (4,)),
    (MULTINOMIAL_Y, (4,)),
    (MULTINOMIAL_Y, (5, 4)),
    (MULTINOMIAL_Y[:, :2], (2,)),
    (MULTINOMIAL_Y[:, :2], (5, 2)),
]


@pytest.mark.parametrize("y,shape", MULTINOMIAL_SHAPES, ids=[f"y{y.shape}-gamma{s}" for y, s in MULTINOMIAL_SHAPES])
def test_multinomial_logit_matches_scipy_multinomial(y, shape):
    m = fv.Model()
    gamma = m.param("gamma", shape=shape)
    m.add("multinomial_logit", y, gamma=gamma)
    zeta = RNG.normal(size=(m.dim, 4)) * 2
    lp, _ = m.log_density(zeta)
    expected = [_multinomial_lp(y, zeta[:, s].reshape(shape)) for s in range(4)]
    np.testing.assert_allclose(lp, expected, rtol=1e-12)


@pytest.mark.parametrize("y,shape", MULTINOMIAL_SHAPES, ids=[f"y{y.shape}-gamma{s}" for y, s in MULTINOMIAL_SHAPES])
def test_multinomial_logit_gradient(y, shape):
    fv.check_kernel("multinomial_logit", {"y": y, "gamma": RNG.normal(size=shape)}, params=["gamma"])


def test_multinomial_logit_gamma_as_data_and_expression():
    # gamma as data is a constant; as softmax-invariant expression (gamma + w) its gradient in w
    # is sum(y - n softmax) = 0.
    gamma = np.array([0.3, -1.0, 2.0, 0.0])
    m = fv.Model()
    w = m.param("w")
    m.add("multinomial_logit", MULTINOMIAL_Y, gamma=gamma + w)
    lp, grad = m.log_density(np.array([0.7]))
    assert float(lp) == pytest.approx(_multinomial_lp(MULTINOMIAL_Y, gamma), rel=1e-12)
    assert abs(float(grad[0])) < 1e-12
    m2 = fv.Model()
    m2.param("w")
    m2.add("multinomial_logit", MULTINOMIAL_Y, gamma=gamma)
    assert _lp(m2, [0.0]) == pytest.approx(_multinomial_lp(MULTINOMIAL_Y, gamma), rel=1e-12)


def test_multinomial_logit_is_stable_for_large_logits_and_zero_counts():
    # 800 would overflow exp; a -inf-like logit on a zero count contributes nothing.
    y = np.array([4.0, 0.0, 1.0])
    z = np.array([800.0, -900.0, 799.0])
    m = fv.Model()
    gamma = m.param("gamma", shape=(3,))
    m.add("multinomial_logit", y, gamma=gamma)
    lp, grad = m.log_density(z)
    ref = _multinomial_lp(y, z)
    assert float(lp) == pytest.approx(ref, rel=1e-12)
    p = special.softmax(z)
    np.testing.assert_allclose(grad, y - 5 * p, rtol=1e-12, atol=1e-12)


def test_multinomial_logit_fit_recovers_probabilities():
    # 3 categories, reference-coded logits [0, g1, g2]; 20 rows of 50 counts.
    rng = np.random.default_rng(4)
    p_true = np.array([0.2, 0.5, 0.3])
    y = rng.multinomial(50, p_true, size=20).astype(float)
    m = fv.Model()
    g = m.param("g", shape=(2,))
    m.add("multinomial_logit", y, gamma=fv.concatenate([np.zeros(1), g]))
    fit = fv.fit(m, seed=0)
    assert fit.converged
    expected = np.log(y.sum(axis=0)[1:] / y.sum(axis=0)[0])  # the MLE, with a flat prior the mode
    assert np.all(np.abs(fit.mean()["g"] - expected) < 0.2 * fit.std()["g"] + 0.02)
    assert np.all(np.abs(fit.mean()["g"] - np.log(p_true[1:] / p_true[0])) < 4 * fit.std()["g"])


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, inputs, match",
    [
        ("categorical_logit", {"logits": np.zeros((N, C))}, None),
        ("categorical_logit", {"logits": np.zeros((N + 1, C))}, "input 'logits' has 8 rows but y has 7"),
        ("categorical_logit", {"logits": np.zeros((N, 1))}, "input 'logits' needs at least 2 categories"),
        ("categorical_logit", {"logits": np.zeros((N, 3))}, "input 'y' must be a category 0..2 of input 'logits'"),
        ("categorical", {"theta": np.full((N, C), 0.3)}, "input 'theta' must sum to 1 along its last axis"),
        ("ordered_logistic", {"eta": 0.0, "cutpoints": np.array([0.0, 1.0])}, "input 'y' must be a category 0..2"),
        ("ordered_logistic", {"eta": 0.0, "cutpoints": np.array([0.0, 1.0, 0.5])}, "strictly increasing"),
        ("ordered_logistic", {"eta": np.zeros(3), "cutpoints": np.array([0.0, 1.0, 2.0])}, "input 'eta' must have"),
        ("ordered_probit", {"eta": 0.0, "cutpoints": np.array([0.0, 1.0, 2.0])}, None),
        ("ordered_probit", {"eta": 0.0, "cutpoints": np.array([0.0, 1.0])}, "input 'y' must be a category 0..2"),
        ("ordered_probit", {"eta": 0.0, "cutpoints": np.array([0.0, 1.0, 0.5])}, "strictly increasing"),
        ("ordered_probit", {"eta": np.zeros(3), "cutpoints": np.array([0.0, 1.0, 2.0])}, "input 'eta' must have"),
        ("ordered_probit", {"eta": 0.0, "cutpoints": np.zeros((1, 3))}, r"input 'cutpoints' must have shape \(C-1,\)"),
    ],
)
def test_bad_inputs_name_the_input(kernel, inputs, match):
    m = fv.Model()
    m.param("unused")
    if match is None:
        m.add(kernel, Y, **inputs)  # the valid case
        return
    with pytest.raises(ValueError, match=match):
        m.add(kernel, Y, **inputs)


@pytest.mark.parametrize(
    "y, gamma, match",
    [
        (np.array([1.0, 2.0]), np.zeros(2), None),
        (np.array([1.0, 2.0]), np.zeros(3), r"input 'gamma' must have shape \(2,\) or y's shape \(2,\)"),
        (np.ones((3, 2)), np.zeros((2, 2)), r"input 'gamma' must have shape \(2,\) or y's shape \(3, 2\)"),
        (np.array([4.0]), np.zeros(1), "input 'y' needs at least 2 categories"),
        (np.array(4.0), np.zeros(1), r"input 'y' must have shape \(C,\) or \(N, C\)"),
        (np.array([1.0, 0.5]), np.zeros(2), "input 'y'"),
        (np.array([1.0, -1.0]), np.zeros(2), "input 'y'"),
    ],
)
def test_multinomial_logit_bad_inputs_name_the_input(y, gamma, match):
    m = fv.Model()
    m.param("unused")
    if match is None:
        m.add("multinomial_logit", y, gamma=gamma)
        return
    with pytest.raises(ValueError, match=match):
        m.add("multinomial_logit", y, gamma=gamma)


def test_y_must_be_integer_categories():
    m = fv.Model()
    w = m.param("w", shape=(C,))
    with pytest.raises(ValueError, match="input 'y'"):
        m.add("categorical_logit", np.array([0.5, 1.0]), logits=w)
    with pytest.raises(ValueError, match="input 'y'"):
        m.add("categorical_logit", np.array([-1.0, 1.0]), logits=w)


@pytest.mark.parametrize("eta_shape", ["rows", "scalar"])
@pytest.mark.parametrize("cats", [2, 6])
def test_ordered_logistic_many_rows(eta_shape, cats):
    # Enough rows for whole packet groups after the sort by category, one category left empty
    # (with 6), and two categories only (one cutpoint: every row is an end category).
    rng = np.random.default_rng(23)
    n = 301
    # cutpoints 2 apart: check_kernel's draws perturb each by 0.3 sd, which must not reorder them
    # (out-of-order cutpoints have no density: NaN, as the kernel documents)
    cuts = 2.0 * (np.arange(cats - 1) - (cats - 2) / 2) + rng.normal(scale=0.2, size=cats - 1)
    y = rng.integers(0, cats, size=n).astype(float)
    if cats > 2:
        y[y == 2] = 3
    eta = rng.normal(scale=3.0, size=n if eta_shape == "rows" else ())
    m = fv.Model()
    e = m.param("eta", shape=np.shape(eta))
    c = m.param("c", shape=(cats - 1,))
    m.add("ordered_logistic", y, eta=e, cutpoints=c)
    expected = _ordered_logistic_lp(y, eta, cuts)
    assert _lp(m, np.concatenate([np.ravel(eta), cuts])) == pytest.approx(expected, rel=1e-12)
    fv.check_kernel("ordered_logistic", {"y": y, "eta": eta, "cutpoints": cuts}, params=["eta", "cutpoints"])
    fv.check_kernel("ordered_logistic", {"y": y, "eta": eta, "cutpoints": cuts}, params=["cutpoints"])
