"""categorical_logit, categorical and ordered_logistic against direct formulas and scipy.

Each kernel's log density is checked through Model.log_density against an independent numpy /
scipy transcription (scipy.special.log_softmax, scipy.stats.multinomial for one draw, expit
differences for the ordered logit), on per-outcome and shared rows, with the inputs as parameters
or data; gradients against central finite differences (fv.check_kernel); bad inputs raise errors
that name the input.
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
    cuts = np.sort(rng.normal(scale=2.0, size=cats - 1))
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
