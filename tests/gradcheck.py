"""Finite-difference checks of a model's log density, shared by the expression and linear-algebra
tests (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np


def finite_difference(model, zeta, h=1e-6):
    """Central differences of model.log_density at one point (h = 1e-6: truncation error ~h^2 and
    rounding ~eps |lp| / h, both ~1e-9 relative for log densities of order 1-100)."""
    return np.array(
        [(model.log_density(zeta + h * e)[0] - model.log_density(zeta - h * e)[0]) / (2 * h) for e in np.eye(model.dim)]
    )


def check_batch(model, zeta, expected, rtol=1e-10, grad_tol=1e-6):
    """log_density of the batch zeta (dim x S) against expected(column) for every draw, and each
    draw's gradient against finite differences."""
    lp, grad = model.log_density(zeta)
    want = np.array([expected(zeta[:, s]) for s in range(zeta.shape[1])])
    np.testing.assert_allclose(lp, want, rtol=rtol, atol=rtol)
    for s in range(zeta.shape[1]):
        np.testing.assert_allclose(grad[:, s], finite_difference(model, zeta[:, s]), rtol=grad_tol, atol=grad_tol)


def weights(shape, seed=0):
    """Fixed weights for a factor: sum(w * f(x)) exercises every element's gradient separately."""
    return np.random.default_rng(seed).uniform(0.5, 1.5, size=shape)
