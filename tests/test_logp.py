"""fv.logp: kernels' log densities as expressions, against scipy.stats and the kernels.

For every element-wise built-in kernel: the element-wise values (summed by a factor) equal the
kernel added as a factor and scipy's logpdf/logpmf, with gradients equal to the kernel's (which
test_distributions checks against finite differences). Both ways fv.logp builds them are checked:
the closed-form expressions (LOGP_KERNELS) and the per-element kernel node (every other kernel,
and, cross-checked here, the closed-form ones too). All-data inputs give a numpy array; mixtures
through fv.log_mix match a direct scipy mixture, with gradients against finite differences; a
user's Python kernel works; bad input is refused like Model.add refuses it.
"""

from __future__ import annotations

import subprocess
import sys

import fastvi as fv
import numpy as np
import pytest
from fastvi._kernels import kernel_spec
from fastvi._logp import LOGP_KERNELS, _kernel_logp
from gradcheck import finite_difference  # tests/gradcheck.py
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
    "poisson": (
        np.array([0, 3, 5, 2, 1, 4.0]),
        {"rate": (2.4, True, 0.0)},
        stats.poisson.logpmf,
    ),
    "neg_binomial_2": (
        np.array([0, 3, 5, 2, 1, 14.0]),
        {"mu": (2.4, True, 0.0), "phi": (3.1, True, 0.0)},
        lambda y, mu, phi: stats.nbinom.logpmf(y, phi, phi / (mu + phi)),
    ),
    "neg_binomial_2_log": (
        np.array([0, 3, 5, 2, 1, 14.0]),
        {"log_mu": (0.9, True, None), "phi": (3.1, True, 0.0)},
        lambda y, log_mu, phi: stats.nbinom.logpmf(y, phi, phi / (np.exp(log_mu) + phi)),
    ),
    "beta_binomial": (
        np.array([0, 3, 5, 2, 1, 4.0]),
        {"trials": (np.full(N, 6.0), False, None), "a": (2.5, True, 0.0), "b": (1.7, True, 0.0)},
        stats.betabinom.logpmf,
    ),
    "weibull": (
        RNG.uniform(0.1, 3, N),
        {"shape": (1.8, True, 0.0), "scale": (1.3, True, 0.0)},
        lambda y, k, s: stats.weibull_min.logpdf(y, k, scale=s),
    ),
    "weibull_lccdf": (
        RNG.uniform(0.1, 3, N),
        {"shape": (1.8, True, 0.0), "scale": (1.3, True, 0.0)},
        lambda y, k, s: stats.weibull_min.logsf(y, k, scale=s),
    ),
    "weibull_lcdf": (
        RNG.uniform(0.1, 3, N),
        {"shape": (1.8, True, 0.0), "scale": (1.3, True, 0.0)},
        lambda y, k, s: stats.weibull_min.logcdf(y, k, scale=s),
    ),
    "exponential_lccdf": (
        RNG.uniform(0.1, 3, N),
        {"rate": (1.7, True, 0.0)},
        lambda y, rate: stats.expon.logsf(y, scale=1 / rate),
    ),
    "exponential_lcdf": (
        RNG.uniform(0.1, 3, N),
        {"rate": (1.7, True, 0.0)},
        lambda y, rate: stats.expon.logcdf(y, scale=1 / rate),
    ),
    "logistic": (RNG.normal(size=N), {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)}, stats.logistic.logpdf),
    "double_exponential": (
        RNG.normal(size=N),
        {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)},
        stats.laplace.logpdf,
    ),
    "inv_gamma": (
        RNG.uniform(0.1, 3, N),
        {"shape": (2.5, True, 0.0), "scale": (1.7, True, 0.0)},
        lambda y, a, b: stats.invgamma.logpdf(y, a, scale=b),
    ),
    "chi_square": (RNG.uniform(0.1, 3, N), {"df": (3.5, True, 0.0)}, stats.chi2.logpdf),
    # no closed form among the expression operations: fv.logp calls the kernel per element
    "pareto": (
        RNG.uniform(2.0, 4.0, N),
        {"y_min": (1.5, True, 0.0), "alpha": (2.5, True, 0.0)},
        lambda y, y_min, alpha: stats.pareto.logpdf(y, alpha, scale=y_min),
    ),
    "uniform": (
        RNG.uniform(0.0, 2.0, N),
        {"lower": (-1.0, True, None), "upper": (3.0, True, None)},
        lambda y, lo, hi: stats.uniform.logpdf(y, lo, hi - lo),
    ),
    "skew_normal": (
        RNG.normal(size=N),
        {"loc": (0.3, True, None), "scale": (1.7, True, 0.0), "alpha": (-2.0, True, None)},
        lambda y, loc, scale, alpha: stats.skewnorm.logpdf(y, alpha, loc, scale),
    ),
    "von_mises": (
        RNG.uniform(-3.0, 3.0, N),
        {"loc": (0.3, True, None), "kappa": (1.7, True, 0.0)},
        lambda y, loc, kappa: stats.vonmises.logpdf(y, kappa, loc),
    ),
    "normal_lcdf": (RNG.normal(size=N), {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)}, stats.norm.logcdf),
    "normal_lccdf": (RNG.normal(size=N), {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)}, stats.norm.logsf),
    "lognormal_lcdf": (
        RNG.uniform(0.1, 3, N),
        {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)},
        lambda y, loc, scale: stats.lognorm.logcdf(y, scale, scale=np.exp(loc)),
    ),
    "lognormal_lccdf": (
        RNG.uniform(0.1, 3, N),
        {"loc": (0.3, True, None), "scale": (1.7, True, 0.0)},
        lambda y, loc, scale: stats.lognorm.logsf(y, scale, scale=np.exp(loc)),
    ),
    "gamma_lcdf": (
        RNG.uniform(0.1, 3, N),
        {"shape": (2.5, True, 0.0), "rate": (1.7, True, 0.0)},
        lambda y, shape, rate: stats.gamma.logcdf(y, shape, scale=1 / rate),
    ),
    "gamma_lccdf": (
        RNG.uniform(0.1, 3, N),
        {"shape": (2.5, True, 0.0), "rate": (1.7, True, 0.0)},
        lambda y, shape, rate: stats.gamma.logsf(y, shape, scale=1 / rate),
    ),
}
ELEMENTWISE = sorted(k for k in fv.kernels() if kernel_spec(k).elementwise and k in CASES)


def test_every_elementwise_builtin_has_a_case():
    # Asked of a fresh interpreter: kernels that other test files register in this process
    # (laplace, concurrency_normal_*, ...) are not built-ins and have no case here.
    code = "import fastvi as fv; print(' '.join(k for k in fv.kernels() if fv.kernel_spec(k).elementwise))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    builtin = set(out.split())
    assert "normal" in builtin  # the subprocess saw the same package
    assert set(CASES) >= set(LOGP_KERNELS)
    assert builtin <= set(CASES), sorted(builtin - set(CASES))


def _model(kernel, how):
    """The kernel's log density as a factor ("factor"), through fv.logp ("logp") or through the
    per-element kernel node even where a closed form exists ("node")."""
    y, inputs, _ = CASES[kernel]
    m = fv.Model()
    args, z = {}, []
    for name, (value, is_param, lower) in inputs.items():
        if is_param:
            args[name] = m.param(name, lower=lower)
            z.append(np.log(value) if lower is not None else value)
        else:
            args[name] = value
    if how == "logp":
        m.factor(fv.logp(kernel, y, **args))
    elif how == "node":
        m.factor(_kernel_logp(kernel, "y", y, args))
    else:
        m.add(kernel, y, **args)
    return m, np.array(z, dtype=float)


@pytest.mark.parametrize("how", ["logp", "node"])
@pytest.mark.parametrize("kernel", ELEMENTWISE)
def test_logp_equals_the_kernel_and_scipy(kernel, how):
    y, inputs, reference = CASES[kernel]
    expr_model, z = _model(kernel, how)
    kernel_model, _ = _model(kernel, "factor")
    lp_e, g_e = expr_model.log_density(z)
    lp_k, g_k = kernel_model.log_density(z)
    jac = sum(np.log(v) for v, p, lo in inputs.values() if p and lo is not None)  # log|J| of exp transforms
    expected = reference(y, *[v for v, _, _ in inputs.values()]).sum() + jac
    # 1e-10: the closed forms reorder the kernels' arithmetic (nbinom's phi log phi - (y + phi)
    # log(mu + phi) cancels a few digits); scipy's own CDFs are good to ~1e-13 relative.
    assert float(lp_e) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert float(lp_e) == pytest.approx(float(lp_k), rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(g_e, g_k, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", ["skew_normal", "pareto", "gamma_lccdf", "normal"])
def test_all_data_gives_the_kernels_values(kernel):
    y, inputs, reference = CASES[kernel]
    values = [v for v, _, _ in inputs.values()]
    out = _kernel_logp(kernel, "y", y, dict(zip(inputs, values)))
    assert isinstance(out, np.ndarray) and out.shape == y.shape
    np.testing.assert_allclose(out, reference(y, *values), rtol=1e-12)


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
    with pytest.raises(NotImplementedError, match="'bernoulli_logit_glm' is not element-wise"):
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
    # an expression whose bounds do not fit the input's support: refused, not NaN later
    with pytest.raises(ValueError, match="input 'scale' must lie in its support"):
        fv.logp("normal", np.zeros(2), loc=0.0, scale=mu)
    with pytest.raises(ValueError, match="input 'kappa' must be > 0"):  # the kernel node's own check
        fv.logp("von_mises", np.zeros(2), loc=0.0, kappa=mu)
    with pytest.raises(ValueError, match="input 'y' must be > 0, got -1"):
        fv.logp("gamma_lccdf", np.array([1.0, -1.0]), shape=2.0, rate=fv.exp(mu))
    other = fv.Model().param("nu")
    with pytest.raises(ValueError, match="different models"):
        fv.logp("skew_normal", np.zeros(2), loc=mu, alpha=other)


def test_mixture_through_the_kernel_node_has_the_right_gradient():
    """log_mix of a skew-normal and a Student-t component: the node's backward pass scales each
    element's partials by log_mix's upstream gradient (not 1), checked by finite differences."""
    y = np.concatenate([RNG.normal(-2, 1, 15), RNG.standard_t(3, 10) + 3])
    m = fv.Model()
    loc = m.param("loc", shape=(2,))
    alpha = m.param("alpha")
    df = m.param("df", lower=1.0)
    w = m.param("w", lower=0.0, upper=1.0)
    m.factor(
        fv.log_mix(
            w,
            fv.logp("skew_normal", y, loc=loc[0], scale=1.2, alpha=alpha),
            fv.logp("student_t", y, df=df, loc=loc[1], scale=0.8),
        )
    )
    z = np.array([-1.7, 2.8, 0.7, np.log(4.0 - 1.0), special.logit(0.55)])
    lp, grad = m.log_density(z)
    wv, dfv = 0.55, 4.0
    mix = np.logaddexp(
        np.log(wv) + stats.skewnorm.logpdf(y, 0.7, -1.7, 1.2), np.log1p(-wv) + stats.t.logpdf(y, dfv, 2.8, 0.8)
    ).sum()
    jac = np.log(dfv - 1.0) + np.log(wv) + np.log1p(-wv)
    assert float(lp) == pytest.approx(mix + jac, rel=1e-11)
    # central differences with h = 1e-6 on an O(100) log density: error ~1e-8 relative
    np.testing.assert_allclose(grad, finite_difference(m, z), rtol=1e-6, atol=1e-6)


def test_logp_of_a_python_kernel_and_pickling():
    """A user's kernel (registered from Python) works through fv.logp, and a model holding such a
    node survives a pickle round trip (rebuilt from its recipe)."""
    import pickle

    name = "test_logp_laplace"
    if name not in fv.kernels():

        def laplace(y, loc, scale, params):
            r = y - loc
            lp = -np.log(2 * scale) - np.abs(r) / scale
            return lp, {"loc": np.sign(r) / scale, "scale": -1 / scale + np.abs(r) / scale**2}

        fv.register_kernel(name, ["y", "loc", "scale"], laplace, supports={"scale": "positive"})
    y = np.array([-1.0, 0.5, 2.0])
    m = fv.Model()
    loc = m.param("loc")
    m.factor(fv.log_mix(0.3, fv.logp(name, y, loc=loc, scale=1.5), fv.logp("normal", y, loc=loc, scale=1.0)))
    z = np.array([0.4])
    lp, grad = m.log_density(z)
    expected = np.logaddexp(
        np.log(0.3) + stats.laplace.logpdf(y, 0.4, 1.5), np.log(0.7) + stats.norm.logpdf(y, 0.4, 1.0)
    ).sum()
    assert float(lp) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, finite_difference(m, z), rtol=1e-6)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.log_density(z)[0] == pytest.approx(float(lp), rel=1e-15)
