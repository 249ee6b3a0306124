"""fv.logp: built-in log densities as expressions, against scipy.stats and the kernels.

For every kernel in LOGP_KERNELS: the element-wise values (summed by a factor) equal the kernel
added as a factor and scipy's logpdf/logpmf, with gradients equal to the kernel's (which
test_distributions checks against finite differences); all-data inputs give a numpy array; a
two-component normal mixture through fv.log_mix matches a direct scipy mixture; bad input is
refused like Model.add refuses it.
"""

from __future__ import annotations

import fastvi as fv
import numpy as np
import pytest
from fastvi._logp import LOGP_KERNELS
from scipy import special, stats

RNG = np.random.default_rng(4)
N = 6

# kernel -> (variate data, {input: (value, is_param, lower)}, scipy reference of arrays)
CASES = {
    "normal": (RNG.normal(size=N), {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)}, stats.norm.logpdf),
    "student_t": (
        RNG.normal(size=N),
        {"df": (4.5, True, 0.0), "loc": (0.3, True, None), "scale": (1.7, True, 0.0)},
        lambda y, df, loc, scale: stats.t.logpdf(y, df, loc, scale),
    ),
    "cauchy": (RNG.normal(size=N), {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)}, stats.cauchy.logpdf),
    "half_normal": (
        RNG.uniform(0.1, 2, N),
        {"scale": (1.7, True, 0.0)},
        lambda y, scale: stats.halfnorm.logpdf(y, scale=scale),
    ),
    "half_cauchy": (
        RNG.uniform(0.1, 2, N),
        {"scale": (1.7, True, 0.0)},
        lambda y, scale: stats.halfcauchy.logpdf(y, scale=scale),
    ),
    "exponential": (
        RNG.uniform(0.1, 2, N),
        {"rate": (1.7, True, 0.0)},
        lambda y, rate: stats.expon.logpdf(y, scale=1 / rate),
    ),
    "gamma": (
        RNG.uniform(0.1, 2, N),
        {"shape": (2.5, True, 0.0), "rate": (1.7, True, 0.0)},
        lambda y, shape, rate: stats.gamma.logpdf(y, shape, scale=1 / rate),
    ),
    "lognormal": (
        RNG.uniform(0.1, 2, N),
        {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)},
        lambda y, loc, scale: stats.lognorm.logpdf(y, scale, scale=np.exp(loc)),
    ),
    "beta": (
        RNG.uniform(0.1, 0.9, N),
        {"a": (2.5, True, 0.0), "b": (1.7, True, 0.0)},
        stats.beta.logpdf,
    ),
    "bernoulli_logit": (
        np.array([0, 1, 1, 0, 1, 0.0]),
        {"logit": (0.8, True, None)},
        lambda y, logit: stats.bernoulli.logpmf(y, special.expit(logit)),
    ),
    "binomial_logit": (
        np.array([0, 3, 5, 2, 1, 4.0]),
        {"trials": (np.full(N, 5.0), False, None), "logit": (-0.4, True, None)},
        lambda y, trials, logit: stats.binom.logpmf(y, trials, special.expit(logit)),
    ),
    "poisson_log": (
        np.array([0, 3, 5, 2, 1, 4.0]),
        {"log_rate": (0.9, True, None)},
        lambda y, log_rate: stats.poisson.logpmf(y, np.exp(log_rate)),
    ),
}


def test_every_logp_kernel_has_a_case():
    assert set(CASES) == set(LOGP_KERNELS)


def _model(kernel, as_expression):
    y, inputs, _ = CASES[kernel]
    m = fv.Model()
    args, z = {}, []
    for name, (value, is_param, lower) in inputs.items():
        if is_param:
            args[name] = m.param(name, lower=lower)
            z.append(np.log(value) if lower is not None else value)
        else:
            args[name] = value
    if as_expression:
        m.factor(fv.logp(kernel, y, **args))
    else:
        m.add(kernel, y, **args)
    return m, np.array(z, dtype=float)


@pytest.mark.parametrize("kernel", sorted(LOGP_KERNELS))
def test_logp_equals_the_kernel_and_scipy(kernel):
    y, inputs, reference = CASES[kernel]
    expr_model, z = _model(kernel, True)
    kernel_model, _ = _model(kernel, False)
    lp_e, g_e = expr_model.log_density(z)
    lp_k, g_k = kernel_model.log_density(z)
    jac = sum(np.log(v) for v, p, lo in inputs.values() if p and lo is not None)  # log|J| of exp transforms
    expected = reference(y, *[v for v, _, _ in inputs.values()]).sum() + jac
    assert float(lp_e) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert float(lp_e) == pytest.approx(float(lp_k), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(g_e, g_k, rtol=1e-10, atol=1e-12)


def test_logp_of_data_is_an_array():
    y = np.array([0.5, 2.0])
    out = fv.logp("normal", y, loc=1.0, scale=2.0)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, stats.norm.logpdf(y, 1.0, 2.0), rtol=1e-14)


def test_logp_is_element_wise_with_broadcasting():
    m = fv.Model()
    mu = m.param("mu", shape=(3, 1))
    lp = fv.logp("normal", np.arange(4.0), loc=mu)
    assert lp.shape == (3, 4)


def test_two_component_mixture_matches_scipy():
    y = np.concatenate([RNG.normal(-2, 1, 30), RNG.normal(3, 0.5, 20)])
    m = fv.Model()
    mu = m.param("mu", shape=(2,))
    w = m.param("w", lower=0.0, upper=1.0)
    m.factor(fv.log_mix(w, fv.logp("normal", y, loc=mu[0], scale=1.0), fv.logp("normal", y, loc=mu[1], scale=0.5)))
    mu0, wv = np.array([-1.8, 2.9]), 0.6
    z = np.array([*mu0, special.logit(wv)])
    lp, _ = m.log_density(z)
    mix = np.log(wv * stats.norm.pdf(y, mu0[0], 1.0) + (1 - wv) * stats.norm.pdf(y, mu0[1], 0.5)).sum()
    jac = np.log(wv) + np.log1p(-wv)  # interval (0, 1): log w (1 - w)
    assert float(lp) == pytest.approx(mix + jac, rel=1e-11)


def test_bad_input():
    m = fv.Model()
    mu = m.param("mu")
    with pytest.raises(NotImplementedError, match="no expression form of 'bernoulli_logit_glm'"):
        fv.logp("bernoulli_logit_glm", np.zeros(3), X=np.ones((3, 1)), beta=mu)
    with pytest.raises(ValueError, match="no input 'sigma'"):
        fv.logp("normal", np.zeros(3), loc=mu, sigma=1.0)
    with pytest.raises(ValueError, match="needs input 'shape'"):
        fv.logp("gamma", np.ones(3), rate=1.0)
    with pytest.raises(ValueError, match="input 'y' is outside its support"):
        fv.logp("poisson_log", np.array([1.0, 2.5]), log_rate=mu)
    with pytest.raises(ValueError, match="input 'scale' is outside its support"):
        fv.logp("normal", np.zeros(2), loc=mu, scale=-1.0)
    with pytest.raises(TypeError, match="input 'y' must be data"):
        fv.logp("poisson_log", mu, log_rate=1.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        fv.logp("no_such_kernel", 1.0)
