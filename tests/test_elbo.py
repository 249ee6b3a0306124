"""The reparameterised ELBO gradient estimator is unbiased, checked against closed forms.

Target: independent normals p(z) = prod_i Normal(z_i | m_i, s_i). For q = Normal(mu, L L^T):
  ELBO = sum_i [-log s_i - log(2 pi)/2 - ((mu_i - m_i)^2 + (L L^T)_ii) / (2 s_i^2)] + H(q)
  dELBO/dmu_i = -(mu_i - m_i) / s_i^2
  dELBO/dL_ij = -L_ij / s_i^2 (i > j);   dELBO/domega_i = 1 - L_ii^2 / s_i^2 with L_ii = exp(omega_i)
"""

import math

import fastvi as fv
import numpy as np
import pytest
from fastvi import _core

M = np.array([1.0, -2.0, 0.5])
S = np.array([0.5, 2.0, 1.5])


def _target():
    model = fv.Model()
    z = model.param("z", shape=(3,))
    model.add("normal", z, loc=M, scale=S)
    return model


def _exact(family, phi):
    d = 3
    mu = phi[:d]
    if family == "meanfield":
        L = np.diag(np.exp(phi[d:]))
    else:
        stored = phi[d:].reshape(d, d, order="F")
        L = np.tril(stored, -1) + np.diag(np.exp(np.diag(stored)))
    cov = L @ L.T
    entropy = 0.5 * d * (1 + math.log(2 * math.pi)) + np.log(np.diag(L)).sum()
    elbo = np.sum(-np.log(S) - 0.5 * math.log(2 * math.pi) - ((mu - M) ** 2 + np.diag(cov)) / (2 * S**2)) + entropy
    g_mu = -(mu - M) / S**2
    g_L = -L / (S**2)[:, None]
    g_L[np.diag_indices(d)] = 1 - np.diag(L) ** 2 / S**2
    if family == "meanfield":
        return elbo, np.concatenate([g_mu, np.diag(g_L)])
    return elbo, np.concatenate([g_mu, np.tril(g_L).ravel(order="F")])


@pytest.mark.parametrize("gradient", ["stl", "closed_form"])
@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
def test_gradient_estimator_is_unbiased(family, gradient):
    model = _target()
    fam = _core.Family(family, 3)
    rng = np.random.default_rng(3)
    phi = fam.initialise(rng.normal(size=3), 0.7)
    if family == "fullrank":  # a non-diagonal L, so off-diagonal gradients are exercised
        stored = phi[3:].reshape(3, 3, order="F")
        stored[np.tril_indices(3, -1)] = [0.3, -0.4, 0.2]
        phi[3:] = stored.ravel(order="F")
    exact_elbo, exact_grad = _exact(family, phi)
    elbos, grads = [], []
    for step in range(200):
        elbo, grad = _core.elbo_gradient(
            model._core, fam, phi, draws=100, seed=11, step=step, gradient=getattr(_core.GradientEstimator, gradient)
        )
        elbos.append(elbo)
        grads.append(grad)
    grads = np.array(grads)
    mean, se = grads.mean(axis=0), grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
    # 20,000 draws in all; each coordinate must sit within 4.5 standard errors of the exact value
    # (exactly-zero coordinates, the unused upper triangle of L, must be exactly zero).
    assert np.all(np.abs(mean - exact_grad) <= 4.5 * se + 1e-12), (mean, exact_grad, se)
    elbos = np.array(elbos)
    assert abs(elbos.mean() - exact_elbo) <= 4.5 * elbos.std(ddof=1) / math.sqrt(len(elbos)) + 1e-9


@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
def test_sticking_the_landing_has_zero_variance_at_the_posterior(family):
    # q equal to p: every draw's STL gradient is zero up to rounding, while the closed-form
    # entropy estimator still scatters around zero.
    model = _target()
    fam = _core.Family(family, 3)
    phi = fam.initialise(M, 1.0)
    phi[3:] = np.log(S) if family == "meanfield" else np.diag(np.log(S)).ravel(order="F")
    elbo, grad = _core.elbo_gradient(model._core, fam, phi, draws=10, seed=0, step=0)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    _, grad_cf = _core.elbo_gradient(
        model._core, fam, phi, draws=10, seed=0, step=0, gradient=_core.GradientEstimator.closed_form
    )
    assert np.abs(grad_cf).max() > 1e-3
    # and the ELBO is log Z = 0 exactly for a normalised target, with zero variance
    assert elbo == pytest.approx(0.0, abs=1e-12)
