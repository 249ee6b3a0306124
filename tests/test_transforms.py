"""Constraint transforms: log-Jacobians against numerical derivatives, gradients, round trips."""

import math

import fastvi as fv
import numpy as np
import pytest

BOUNDS = [
    (None, None),
    (0.0, None),
    (-3.0, None),
    (None, 2.0),
    (0.0, 1.0),
    (-2.0, 5.0),
]


def _model(lower, upper, shape=(4,)):
    m = fv.Model()
    m.param("p", shape=shape, lower=lower, upper=upper)
    return m


@pytest.mark.parametrize("lower,upper", BOUNDS)
def test_log_jacobian_matches_numerical_derivative(lower, upper):
    # With no factors the log density is exactly the log-Jacobian of zeta -> theta.
    m = _model(lower, upper)
    zeta = np.array([-3.0, -0.4, 0.7, 2.5])
    lp, grad = m.log_density(zeta)
    h = 1e-6
    dtheta = (m.constrain(zeta + h)["p"] - m.constrain(zeta - h)["p"]) / (2 * h)
    # the Jacobian is diagonal, so log|det J| is the sum of the log derivatives
    assert lp == pytest.approx(np.sum(np.log(np.abs(dtheta))), rel=1e-7, abs=1e-7)
    # the gradient of the log-Jacobian, by central differences of lp itself
    fd = np.array([(m.log_density(zeta + h * e)[0] - m.log_density(zeta - h * e)[0]) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lower,upper", BOUNDS)
def test_round_trip_and_support(lower, upper):
    m = _model(lower, upper)
    zeta = np.linspace(-6, 6, 4)
    theta = m.constrain(zeta)["p"]
    lo = -math.inf if lower is None else lower
    hi = math.inf if upper is None else upper
    assert np.all(theta > lo) and np.all(theta < hi)
    np.testing.assert_allclose(m.unconstrain({"p": theta}), zeta, rtol=1e-9, atol=1e-9)


def test_interval_log_jacobian_is_finite_far_out():
    # log p + log(1 - p) is computed stably: no -inf at |zeta| = 40 where p rounds to 1.
    m = _model(0.0, 1.0, shape=(2,))
    lp, grad = m.log_density(np.array([-40.0, 40.0]))
    assert lp == pytest.approx(-80.0 - 2 * 2 * math.log1p(math.exp(-40.0)), rel=1e-12)
    np.testing.assert_allclose(grad, [1.0, -1.0], atol=1e-12)


def test_blocks_are_laid_out_in_declaration_order():
    m = fv.Model()
    a = m.param("a", shape=(2, 3))
    b = m.param("b", lower=0.0)
    assert (a.offset, a.size, b.offset, b.size, m.dim) == (0, 6, 6, 1, 7)
    values = m.constrain(np.arange(7.0))
    np.testing.assert_array_equal(values["a"], np.arange(6.0).reshape(2, 3))
    assert values["b"] == pytest.approx(math.exp(6.0))
