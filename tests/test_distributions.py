"""Built-in element-wise distribution kernels against scipy.stats.

Every kernel is checked through the public API (Model.add / Model.log_density) for
  * its log density against scipy's logpdf/logpmf plus the transforms' log-Jacobians, computed
    here independently of the core (exp for lower=0, expit for (0, 1));
  * its gradient against central finite differences of log_density;
  * every way of binding inputs: every subset of the parameter-capable inputs as parameters (the
    rest data), on scalar, full-size and broadcast shapes, below and above the 16 elements from
    which the driver (fastvi/elementwise.hpp) takes its vectorised path, and across its runs (a
    draw of more than 1024 elements is cut into several); every mix of scalar and full-size inputs
    on the vectorised path; the two paths against each other to rounding;
  * input validation: bad data, badly bounded parameters, unknown or missing inputs.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Optional

import fastvi as fv
import numpy as np
import pytest
from scipy import special, stats


class In(NamedTuple):
    name: str
    support: str
    default: Optional[float] = None
    data_only: bool = False


# kernel -> (inputs as the registry must declare them, scipy log density of broadcast arrays)
CASES = {
    "normal": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.norm.logpdf(y, loc, scale),
    ),
    "student_t": (
        [In("y", "real"), In("df", "positive"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, df, loc, scale: stats.t.logpdf(y, df, loc, scale),
    ),
    "cauchy": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.cauchy.logpdf(y, loc, scale),
    ),
    "half_normal": (
        [In("y", "nonnegative"), In("scale", "positive", 1.0)],
        lambda y, scale: stats.halfnorm.logpdf(y, scale=scale),
    ),
    "half_cauchy": (
        [In("y", "nonnegative"), In("scale", "positive", 1.0)],
        lambda y, scale: stats.halfcauchy.logpdf(y, scale=scale),
    ),
    "exponential": (
        [In("y", "nonnegative"), In("rate", "positive", 1.0)],
        lambda y, rate: stats.expon.logpdf(y, scale=1.0 / rate),
    ),
    "gamma": (
        [In("y", "positive"), In("shape", "positive"), In("rate", "positive")],
        lambda y, shape, rate: stats.gamma.logpdf(y, a=shape, scale=1.0 / rate),
    ),
    "lognormal": (
        [In("y", "positive"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.lognorm.logpdf(y, s=scale, scale=np.exp(loc)),
    ),
    "beta": (
        [In("y", "unit_interval"), In("a", "positive"), In("b", "positive")],
        lambda y, a, b: stats.beta.logpdf(y, a, b),
    ),
    "bernoulli_logit": (
        [In("y", "binary", data_only=True), In("logit", "real")],
        lambda y, logit: stats.bernoulli.logpmf(y, special.expit(logit)),
    ),
    "binomial_logit": (
        [In("y", "count", data_only=True), In("trials", "count", data_only=True), In("logit", "real")],
        lambda y, trials, logit: stats.binom.logpmf(y, trials, special.expit(logit)),
    ),
    "poisson_log": (
        [In("y", "count", data_only=True), In("log_rate", "real")],
        lambda y, log_rate: stats.poisson.logpmf(y, np.exp(log_rate)),
    ),
    "poisson": (
        [In("y", "count", data_only=True), In("rate", "positive")],
        lambda y, rate: stats.poisson.logpmf(y, rate),
    ),
    # scipy's nbinom(n, p): n = phi, p = phi / (mu + phi).
    "neg_binomial_2": (
        [In("y", "count", data_only=True), In("mu", "positive"), In("phi", "positive")],
        lambda y, mu, phi: stats.nbinom.logpmf(y, phi, phi / (mu + phi)),
    ),
    "neg_binomial_2_log": (
        [In("y", "count", data_only=True), In("log_mu", "real"), In("phi", "positive")],
        lambda y, log_mu, phi: stats.nbinom.logpmf(y, phi, phi / (np.exp(log_mu) + phi)),
    ),
    "beta_binomial": (
        [
            In("y", "count", data_only=True),
            In("trials", "count", data_only=True),
            In("a", "positive"),
            In("b", "positive"),
        ],
        lambda y, trials, a, b: stats.betabinom.logpmf(y, trials, a, b),
    ),
    "weibull": (
        [In("y", "positive"), In("shape", "positive"), In("scale", "positive")],
        lambda y, shape, scale: stats.weibull_min.logpdf(y, shape, scale=scale),
    ),
    "logistic": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.logistic.logpdf(y, loc, scale),
    ),
    "double_exponential": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.laplace.logpdf(y, loc, scale),
    ),
    "inv_gamma": (
        [In("y", "positive"), In("shape", "positive"), In("scale", "positive")],
        lambda y, shape, scale: stats.invgamma.logpdf(y, shape, scale=scale),
    ),
    "chi_square": (
        [In("y", "positive"), In("df", "positive")],
        lambda y, df: stats.chi2.logpdf(y, df),
    ),
    "pareto": (
        [In("y", "positive"), In("y_min", "positive"), In("alpha", "positive")],
        lambda y, y_min, alpha: stats.pareto.logpdf(y, alpha, scale=y_min),
    ),
    "uniform": (
        [In("y", "real"), In("lower", "real"), In("upper", "real")],
        lambda y, lower, upper: stats.uniform.logpdf(y, lower, upper - lower),
    ),
    "skew_normal": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0), In("alpha", "real")],
        lambda y, loc, scale, alpha: stats.skewnorm.logpdf(y, alpha, loc, scale),
    ),
    "von_mises": (
        [In("y", "real"), In("loc", "real", 0.0), In("kappa", "positive")],
        # scipy's vonmises is supported on loc +- pi only; the density is periodic (as Stan's).
        lambda y, loc, kappa: -2 * kappa * np.sin((y - loc) / 2) ** 2 - np.log(2 * np.pi * special.i0e(kappa)),
    ),
    # Censoring companions: log CDF and log survival function.
    "normal_lcdf": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.norm.logcdf(y, loc, scale),
    ),
    "normal_lccdf": (
        [In("y", "real"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.norm.logsf(y, loc, scale),
    ),
    "lognormal_lcdf": (
        [In("y", "positive"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.lognorm.logcdf(y, s=scale, scale=np.exp(loc)),
    ),
    "lognormal_lccdf": (
        [In("y", "positive"), In("loc", "real", 0.0), In("scale", "positive", 1.0)],
        lambda y, loc, scale: stats.lognorm.logsf(y, s=scale, scale=np.exp(loc)),
    ),
    "exponential_lcdf": (
        [In("y", "positive"), In("rate", "positive", 1.0)],
        lambda y, rate: stats.expon.logcdf(y, scale=1.0 / rate),
    ),
    "exponential_lccdf": (
        [In("y", "nonnegative"), In("rate", "positive", 1.0)],
        lambda y, rate: stats.expon.logsf(y, scale=1.0 / rate),
    ),
    "weibull_lcdf": (
        [In("y", "positive"), In("shape", "positive"), In("scale", "positive")],
        lambda y, shape, scale: stats.weibull_min.logcdf(y, shape, scale=scale),
    ),
    "gamma_lcdf": (
        [In("y", "positive"), In("shape", "positive"), In("rate", "positive")],
        lambda y, shape, rate: np.log(special.gammainc(shape, rate * y)),
    ),
    "gamma_lccdf": (
        [In("y", "positive"), In("shape", "positive"), In("rate", "positive")],
        lambda y, shape, rate: np.log(special.gammaincc(shape, rate * y)),
    ),
    "weibull_lccdf": (
        [In("y", "positive"), In("shape", "positive"), In("scale", "positive")],
        lambda y, shape, scale: stats.weibull_min.logsf(y, shape, scale=scale),
    ),
}
KERNELS = list(CASES)

# How to declare a parameter for each support, and valid data for each support.
BOUNDS = {
    "real": {},
    "positive": {"lower": 0.0},
    "nonnegative": {"lower": 0.0},
    "unit_interval": {"lower": 0.0, "upper": 1.0},
}
SAMPLERS = {
    "real": lambda rng, shape: rng.normal(0.0, 1.0, shape),
    "positive": lambda rng, shape: rng.uniform(0.5, 2.5, shape),
    "nonnegative": lambda rng, shape: rng.uniform(0.0, 2.0, shape),
    "unit_interval": lambda rng, shape: rng.uniform(0.05, 0.95, shape),
    "binary": lambda rng, shape: rng.integers(0, 2, shape).astype(float),
    "count": lambda rng, shape: rng.integers(0, 6, shape).astype(float),  # successes / counts: 0..5
}
TRIALS = lambda rng, shape: rng.integers(6, 12, shape).astype(float)  # noqa: E731  (always >= any y)
BAD_VALUES = {
    "positive": [0.0, -1.0],
    "nonnegative": [-0.5],
    "unit_interval": [0.0, 1.0, 1.5],
    "binary": [2.0, 0.5, -1.0],
    "count": [-1.0, 2.5],
}


# Inputs whose support depends on another input (pareto's y >= y_min, uniform's lower <= y <= upper):
# (kernel, input) -> (sampler of data, bounds of a parameter), chosen so that any mix of data and
# parameters stays inside the support (y_min <= 0.5 <= y; lower <= -2 < y < 2 <= upper).
DOMAINS = {
    ("pareto", "y"): (SAMPLERS["positive"], {"lower": 0.5}),
    ("pareto", "y_min"): (lambda rng, shape: rng.uniform(0.1, 0.5, shape), {"lower": 0.0, "upper": 0.5}),
    ("uniform", "y"): (lambda rng, shape: rng.uniform(-1.5, 1.5, shape), {"lower": -2.0, "upper": 2.0}),
    ("uniform", "lower"): (lambda rng, shape: rng.uniform(-3.0, -2.0, shape), {"upper": -2.0}),
    ("uniform", "upper"): (lambda rng, shape: rng.uniform(2.0, 3.0, shape), {"lower": 2.0}),
    # Not coupled, but with shape = exp(zeta) up to ~8, t = (y / scale)^shape reached 1e9 and the
    # "runs" layout's log density ~1e9, too large for finite differences to resolve its gradient.
    **{(k, "shape"): (SAMPLERS["positive"], {"lower": 0.0, "upper": 2.5}) for k in ("weibull", "weibull_lccdf")},
}


def sample(inp: In, rng, shape, kernel=None):
    if (kernel, inp.name) in DOMAINS:
        return DOMAINS[kernel, inp.name][0](rng, shape)
    return (TRIALS if inp.name == "trials" else SAMPLERS[inp.support])(rng, shape)


def bounds_of(kernel, inp: In):
    """The bounds to declare a parameter for `inp` with."""
    return DOMAINS[kernel, inp.name][1] if (kernel, inp.name) in DOMAINS else BOUNDS[inp.support]


# Shapes of (variate, other inputs cycled) and number of draws (None: zeta of shape (dim,)).
LAYOUTS = {
    "full": ((4, 3), [(4, 3)], None),
    "scalar": ((4, 3), [()], 3),
    "broadcast": ((4, 3), [(3,), (4, 1), ()], 3),  # e.g. y (4,3), loc (3,), scale (4,1)
    "variate_broadcast": ((3,), [(4, 1), (4, 3), (1, 3)], 3),  # the variate itself is broadcast
    # At least kMinWholeDraw (16) elements: the driver's vectorised path (the layouts above are
    # smaller, so they take the element-by-element path), with every input full-size or scalar...
    "long": ((4, 5), [(4, 5), ()], 3),
    "long_scalar_variate": ((), [(4, 5), ()], 3),
    # ... and with broadcast inputs, which it gathers (and whose partials it scatters back, several
    # elements adding to one entry), the variate among them.
    "long_broadcast": ((4, 5), [(5,), (4, 1), ()], 3),
    "long_variate_broadcast": ((5,), [(4, 1), (4, 5), (1, 5)], 3),
    # More elements than one run (kChunk = 1024): two runs of 528 and 522 elements.
    "runs": ((3, 350), [(350,), (3, 1), ()], 2),
}


def shape_of(layout: str, i: int):
    variate, others, _ = LAYOUTS[layout]
    return variate if i == 0 else others[(i - 1) % len(others)]


def build(kernel, layout, params, seed=0, shapes=None):
    """Model with one factor of `kernel`: inputs in `params` are parameters, the rest random data.
    Input i has shape_of(layout, i), or shapes[i] if shapes are given."""
    inputs, _ = CASES[kernel]
    rng = np.random.default_rng(seed)
    m = fv.Model()
    handles, data = {}, {}
    for i, inp in enumerate(inputs):
        shape = shapes[i] if shapes is not None else shape_of(layout, i)
        if inp.name in params:
            handles[inp.name] = m.param("p_" + inp.name, shape=shape, **bounds_of(kernel, inp))
        else:
            data[inp.name] = sample(inp, rng, shape, kernel)
    values = {**handles, **data}
    m.add(kernel, values.pop(inputs[0].name), **values)
    return m, handles, data


def constrained(p, z):
    """A parameter's values from its unconstrained ones: lower + exp(z), upper - exp(z), or
    lower + (upper - lower) expit(z)."""
    if np.isfinite(p.lower) and np.isfinite(p.upper):
        return p.lower + (p.upper - p.lower) * special.expit(z)
    if np.isfinite(p.lower):
        return p.lower + np.exp(z)
    if np.isfinite(p.upper):
        return p.upper - np.exp(z)
    return z


def log_jacobian(handles, zeta):
    """Sum of the transforms' log-Jacobians per draw: log|d theta / d zeta|."""
    out = np.zeros(zeta.shape[1])
    for p in handles.values():
        z = zeta[p.offset : p.offset + p.size]
        if np.isfinite(p.lower) and np.isfinite(p.upper):
            out += (np.log(p.upper - p.lower) + special.log_expit(z) + special.log_expit(-z)).sum(axis=0)
        elif np.isfinite(p.lower) or np.isfinite(p.upper):
            out += z.sum(axis=0)
    return out


def reference(kernel, handles, data, zeta):
    """scipy's summed log density at the constrained values plus log-Jacobians, per draw (zeta: dim x S)."""
    draws = zeta.shape[1]
    ndim = max([len(p.shape) for p in handles.values()] + [d.ndim for d in data.values()])
    values = {}
    for name, p in handles.items():
        z = zeta[p.offset : p.offset + p.size]
        theta = constrained(p, z)
        # Leading axis: draws; then the parameter's own shape, left-padded to the common rank.
        values[name] = theta.T.reshape((draws,) + (1,) * (ndim - len(p.shape)) + p.shape)
    for name, d in data.items():
        values[name] = d.reshape((1,) * (1 + ndim - d.ndim) + d.shape)
    lp = CASES[kernel][1](**values)
    return np.broadcast_to(lp, (draws,) + lp.shape[1:]).reshape(draws, -1).sum(axis=1) + log_jacobian(handles, zeta)


def fd_gradient(m, zeta, h=1e-6):
    """Central differences of log_density; row i perturbs coordinate i in every draw at once (draws are independent)."""
    g = np.empty_like(zeta)
    for i in range(zeta.shape[0]):
        e = np.zeros_like(zeta)
        e[i] = h
        g[i] = (m.log_density(zeta + e)[0] - m.log_density(zeta - e)[0]) / (2 * h)
    return g


def random_zeta(m, draws, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.7, (m.dim,) if draws is None else (m.dim, draws))


def parameter_sets(kernel):
    """Every non-empty subset of the kernel's parameter-capable inputs."""
    capable = [i.name for i in CASES[kernel][0] if not i.data_only]
    return [c for r in range(1, len(capable) + 1) for c in itertools.combinations(capable, r)]


def scenarios():
    """(kernel, layout, parameter set): every set of parameters on every layout."""
    out = []
    for kernel in CASES:
        for layout in LAYOUTS:
            for params in parameter_sets(kernel):
                out.append(pytest.param(kernel, layout, params, id=f"{kernel}-{layout}-{'+'.join(params)}"))
    return out


# Values: scipy and the kernels use different but accurate formulas; the sums have ~12 O(1)
# terms, so agreement is ~1e-14 relative (1.3e-14 observed). atol covers sums that cancel to ~0.
LP_TOL = dict(rtol=1e-10, atol=1e-10)
# Gradients: central differences with h = 1e-6 have truncation error ~h^2 * f''' ~ 1e-12 and
# rounding error ~ulp(lp) / h ~ 1e-14 * 30 / 1e-6 ~ 3e-7 at worst; 1e-6 sits above both, far
# below the size of any real mistake in a partial (O(0.1) or more). Observed: <= 6e-9.
GRAD_TOL = dict(rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel,layout,params", scenarios())
def test_log_density_matches_scipy(kernel, layout, params):
    m, handles, data = build(kernel, layout, params)
    zeta = random_zeta(m, LAYOUTS[layout][2])
    lp, _ = m.log_density(zeta)
    expected = reference(kernel, handles, data, zeta.reshape(m.dim, -1))
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(np.reshape(lp, -1), expected, **LP_TOL)


@pytest.mark.parametrize("kernel,layout,params", scenarios())
def test_gradient_matches_finite_differences(kernel, layout, params):
    m, _, _ = build(kernel, layout, params)
    zeta = random_zeta(m, LAYOUTS[layout][2])
    _, grad = m.log_density(zeta)
    assert grad.shape == zeta.shape
    # "runs" sums over 1,050 elements: a log density in the thousands, whose rounding, divided by
    # h = 1e-6, reached the tolerance; a larger step keeps the difference quotient's error small.
    np.testing.assert_allclose(grad, fd_gradient(m, zeta, h=1e-5 if layout == "runs" else 1e-6), **GRAD_TOL)


def vectorised_layouts():
    """(kernel, shapes, parameter set) for every mix of scalar and (4, 5) inputs with 20 elements,
    with every parameter-capable input a parameter and with none but the last: each compiled
    layout of the driver's vectorised path, parameters and data."""
    out = []
    for kernel, (inputs, _) in CASES.items():
        capable = [i.name for i in inputs if not i.data_only]
        for full in itertools.product([False, True], repeat=len(inputs)):
            if not any(full):
                continue  # one element: the element-by-element path
            shapes = [(4, 5) if f else () for f in full]
            tag = "".join("f" if f else "s" for f in full)
            for params in dict.fromkeys([tuple(capable), (capable[-1],)]):
                out.append(pytest.param(kernel, shapes, params, id=f"{kernel}-{tag}-{'+'.join(params)}"))
    return out


@pytest.mark.parametrize("kernel,shapes,params", vectorised_layouts())
def test_every_layout_of_the_vectorised_path(kernel, shapes, params):
    m, handles, data = build(kernel, None, params, shapes=shapes)
    zeta = random_zeta(m, 2)
    lp, grad = m.log_density(zeta)
    np.testing.assert_allclose(lp, reference(kernel, handles, data, zeta), **LP_TOL)
    np.testing.assert_allclose(grad, fd_gradient(m, zeta), **GRAD_TOL)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scalar_params", [False, True])
def test_vectorised_and_element_paths_agree(kernel, scalar_params):
    # The same 20 elements as one factor (vectorised path) and as two factors of 10 (element by
    # element, through slices of the same parameters): equal to rounding, far tighter than scipy.
    inputs, _ = CASES[kernel]
    rng = np.random.default_rng(4)
    whole, halves = fv.Model(), fv.Model()
    values_whole, values_halves = {}, [{}, {}]
    for inp in inputs:
        if inp.data_only or inp.name == inputs[0].name:
            d = sample(inp, rng, (20,), kernel)
            values_whole[inp.name] = d
            values_halves[0][inp.name], values_halves[1][inp.name] = d[:10], d[10:]
        else:
            shape = () if scalar_params else (20,)
            p_whole = whole.param("p_" + inp.name, shape=shape, **bounds_of(kernel, inp))
            p_halves = halves.param("p_" + inp.name, shape=shape, **bounds_of(kernel, inp))
            values_whole[inp.name] = p_whole
            values_halves[0][inp.name] = p_halves if scalar_params else p_halves[:10]
            values_halves[1][inp.name] = p_halves if scalar_params else p_halves[10:]
    whole.add(kernel, values_whole.pop(inputs[0].name), **values_whole)
    for v in values_halves:
        halves.add(kernel, v.pop(inputs[0].name), **v)
    zeta = random_zeta(whole, 3)
    lp_whole, grad_whole = whole.log_density(zeta)
    lp_halves, grad_halves = halves.log_density(zeta)
    np.testing.assert_allclose(lp_whole, lp_halves, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_whole, grad_halves, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["broadcast", "long_broadcast", "runs"])
def test_results_do_not_depend_on_thread_count(kernel, layout):
    inputs, _ = CASES[kernel]
    m, _, _ = build(kernel, layout, [i.name for i in inputs if not i.data_only])
    zeta = random_zeta(m, 5)
    lp1, grad1 = m.log_density(zeta, threads=1)
    lp2, grad2 = m.log_density(zeta, threads=2)
    assert np.array_equal(lp1, lp2) and np.array_equal(grad1, grad2)


@pytest.mark.parametrize("kernel", KERNELS)
def test_factors_add_to_log_density_and_gradient(kernel):
    # The same factor twice: each kernel must add to lp and grad, never overwrite them.
    inputs, _ = CASES[kernel]
    capable = [i.name for i in inputs if not i.data_only]
    m, handles, data = build(kernel, "broadcast", capable)
    values = {**handles, **data}
    m.add(kernel, values.pop(inputs[0].name), **values)
    zeta = random_zeta(m, 2)
    lp, grad = m.log_density(zeta)
    log_jac = log_jacobian(handles, zeta)
    np.testing.assert_allclose(lp, 2 * (reference(kernel, handles, data, zeta) - log_jac) + log_jac, **LP_TOL)
    np.testing.assert_allclose(grad, fd_gradient(m, zeta), **GRAD_TOL)


@pytest.mark.parametrize(
    "kernel", [k for k, (inputs, _) in CASES.items() if any(i.default is not None for i in inputs)]
)
def test_defaults(kernel):
    # Omit every input that has a default; the variate is a parameter so the model has a dimension.
    inputs, logpdf = CASES[kernel]
    m = fv.Model()
    y = m.param("y", shape=(5,), **BOUNDS[inputs[0].support])
    rng = np.random.default_rng(3)
    required = {i.name: sample(i, rng, ()) for i in inputs[1:] if i.default is None}
    m.add(kernel, y, **required)
    zeta = rng.normal(0.0, 0.7, 5)
    theta = m.constrain(zeta)["y"]
    log_jac = zeta.sum() if inputs[0].support != "real" else 0.0
    defaults = {i.name: i.default for i in inputs[1:] if i.default is not None}
    expected = logpdf(theta, **required, **defaults).sum() + log_jac
    np.testing.assert_allclose(m.log_density(zeta)[0], expected, **LP_TOL)


@pytest.mark.parametrize("kernel", KERNELS)
def test_registry_metadata(kernel):
    spec = fv.kernel_spec(kernel)
    inputs, _ = CASES[kernel]
    assert spec.elementwise
    assert spec.doc and spec.doc != kernel
    got = [(i.name, i.support, i.default, i.data_only) for i in spec.inputs]
    assert got == [tuple(i) for i in inputs]
    assert all(i.doc for i in spec.inputs)


# ---- numerically extreme but valid inputs -------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,y,extra,eta,expected",
    [
        # Near-certain outcomes: log p ~ -exp(-40) must not round to 0 (y * eta - log1p_exp(eta) would).
        ("bernoulli_logit", [1.0], {}, [40.0], lambda eta: special.log_expit(40.0)),
        ("bernoulli_logit", [0.0], {}, [-40.0], lambda eta: special.log_expit(40.0)),
        ("binomial_logit", [10.0], {"trials": 10.0}, [50.0], lambda eta: 10 * special.log_expit(50.0)),
        ("binomial_logit", [0.0], {"trials": 10.0}, [-50.0], lambda eta: 10 * special.log_expit(50.0)),
        # Nearly impossible outcomes stay finite (no exp overflow).
        ("bernoulli_logit", [1.0, 0.0], {}, [-800.0, 800.0], lambda eta: -1600.0),
        (
            "binomial_logit",
            [10.0, 3.0],
            {"trials": 10.0},
            [-700.0, 0.0],
            lambda eta: -7000.0 + stats.binom.logpmf(3, 10, 0.5),
        ),
        (
            "poisson_log",
            [0.0, 3.0, 700.0],
            {},
            [-30.0, 1.0, np.log(700.0)],
            lambda eta: stats.poisson.logpmf([0.0, 3.0, 700.0], np.exp(eta)).sum(),
        ),
    ],
)
@pytest.mark.parametrize("copies", [1, 16])  # 16 copies: enough elements for the kernels' vectorised path
def test_extreme_linear_predictors(kernel, y, extra, eta, expected, copies):
    m = fv.Model()
    linear = CASES[kernel][0][-1].name  # logit / log_rate, as an unbounded parameter: theta = zeta
    m.add(kernel, np.tile(y, copies), **{linear: m.param("eta", shape=len(eta) * copies)}, **extra)
    lp, grad = m.log_density(np.tile(eta, copies))
    assert np.isfinite(lp) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(lp, copies * expected(np.array(eta)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("elements", [8, 40])  # the element path (math.hpp) and the vectorised one
def test_shape_parameters_over_a_wide_range(elements):
    # log Gamma and digamma of parameters, from 1e-2 to 1e6 (the vectorised path has its own packet
    # forms of both): gamma's log density against scipy, its shape partial against scipy's digamma.
    shape = np.logspace(-2, 6, elements)
    y = np.random.default_rng(5).uniform(0.5, 2.0, elements)
    m = fv.Model()
    m.add("gamma", y, shape=m.param("shape", shape=elements, lower=0.0), rate=1.5)
    zeta = np.log(shape)
    lp, grad = m.log_density(zeta)
    expected = stats.gamma.logpdf(y, a=shape, scale=1 / 1.5).sum() + zeta.sum()
    np.testing.assert_allclose(lp, expected, rtol=1e-12)
    d_shape = np.log(1.5) - special.digamma(shape) + np.log(y)
    np.testing.assert_allclose(grad, shape * d_shape + 1.0, rtol=1e-9, atol=1e-9)


def test_binomial_edge_counts_match_scipy():
    # y = 0 and y = trials (terms the kernel skips) and trials = 0.
    m = fv.Model()
    eta = m.param("eta", shape=(4,))
    y, trials = np.array([0.0, 7.0, 0.0, 3.0]), np.array([7.0, 7.0, 0.0, 3.0])
    m.add("binomial_logit", y, trials=trials, logit=eta)
    zeta = np.array([0.3, -1.1, 2.0, 0.0])
    expected = stats.binom.logpmf(y, trials, special.expit(zeta)).sum()
    np.testing.assert_allclose(m.log_density(zeta)[0], expected, **LP_TOL)
    np.testing.assert_allclose(m.log_density(zeta)[1], fd_gradient(m, zeta), **GRAD_TOL)


def one_factor(kernel, params, values, copies=1):
    """A model with one factor of `kernel`: inputs named in `params` become parameters (declared
    with their support's bounds), the rest data; every input tiled `copies` times. Returns the
    model, zeta at `values`, and a function of zeta giving the log density without the
    log-Jacobians and its gradient in the parameters themselves (theta, not zeta)."""
    m = fv.Model()
    supports = {i.name: i.support for i in CASES[kernel][0]}
    inputs, zeta, positive = {}, [], []
    for name, v in values.items():
        v = np.asarray(v, dtype=float)
        v = np.tile(v, copies) if v.ndim else v
        if name in params:
            inputs[name] = m.param(name, shape=v.shape, **BOUNDS[supports[name]])
            is_positive = supports[name] == "positive"
            zeta.append(np.ravel(np.log(v) if is_positive else v))  # a scalar parameter is one coordinate
            positive.append(np.full(v.size, is_positive))
        else:
            inputs[name] = v
    variate = CASES[kernel][0][0].name
    m.add(kernel, inputs.pop(variate), **inputs)
    mask = np.concatenate(positive)

    def evaluate(z):
        lp, grad = m.log_density(z)
        theta = z.copy()
        theta[mask] = np.exp(z[mask])
        grad = grad.copy()
        grad[mask] = (grad[mask] - 1.0) / theta[mask]
        return lp - z[mask].sum(), grad

    return m, np.concatenate(zeta), evaluate


@pytest.mark.parametrize("copies", [1, 16])  # 16 copies: the vectorised path
def test_neg_binomial_2_huge_phi_is_poisson(copies):
    # phi -> infinity: the Poisson limit to rounding (the textbook lgamma(y + phi) - lgamma(phi)
    # is off by ~ulp(lgamma(1e12)) ~ 6e-3 here). NB - Poisson = O(y^2 / phi), < 1e-9.
    y, mu, phi = np.array([0.0, 2.0, 7.0, 40.0]), np.array([3.0, 0.5, 7.2, 35.0]), 1e12
    expected = copies * stats.poisson.logpmf(y, mu).sum()
    _, zeta, evaluate = one_factor("neg_binomial_2", ["phi"], {"y": y, "mu": mu, "phi": np.full(4, phi)}, copies)
    lp, grad = evaluate(zeta)
    np.testing.assert_allclose(lp, expected, rtol=0, atol=1e-9)
    # d/dphi ~ ((y - mu)^2 - y) / (2 phi^2) < 1e-21: no cancellation noise of ~1e-14.
    assert np.all(np.abs(grad) < 1e-20)
    values = {"y": y, "log_mu": np.log(mu), "phi": np.full(4, phi)}
    _, zeta, evaluate = one_factor("neg_binomial_2_log", ["phi"], values, copies)
    lp, grad = evaluate(zeta)
    np.testing.assert_allclose(lp, expected, rtol=0, atol=1e-9)
    assert np.all(np.abs(grad) < 1e-20)


@pytest.mark.parametrize("copies", [1, 16])
@pytest.mark.parametrize("phi", [0.01, 9.999, 10.0, 10.001, 1e3, 1e5])  # both sides of the switch to series at 10
def test_neg_binomial_2_over_phi_matches_scipy(copies, phi):
    y, mu = np.array([0.0, 1.0, 5.0, 60.0]), np.array([2.0, 0.3, 9.0, 50.0])
    for kernel, loc in (("neg_binomial_2", "mu"), ("neg_binomial_2_log", "log_mu")):
        values = {"y": y, loc: mu if loc == "mu" else np.log(mu), "phi": np.full(4, phi)}
        m, zeta, evaluate = one_factor(kernel, [loc, "phi"], values, copies)
        lp, grad = evaluate(zeta)
        np.testing.assert_allclose(lp, copies * stats.nbinom.logpmf(y, phi, phi / (mu + phi)).sum(), rtol=1e-11)
        d_phi = special.digamma(y + phi) - special.digamma(phi) - np.log1p(mu / phi) + (mu - y) / (mu + phi)
        np.testing.assert_allclose(grad[4 * copies :], np.tile(d_phi, copies), rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(m.log_density(zeta)[1], fd_gradient(m, zeta), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("copies", [1, 16])
def test_neg_binomial_2_log_extreme_log_mu(copies):
    # exp(800) overflows: the kernel works with log_mu - log(phi) throughout.
    y, eta, phi = np.array([0.0, 3.0, 100.0]), np.array([800.0, 750.0, -700.0]), np.array([2.0, 0.5, 4.0])
    _, zeta, evaluate = one_factor("neg_binomial_2_log", ["log_mu", "phi"], {"y": y, "log_mu": eta, "phi": phi}, copies)
    lp, grad = evaluate(zeta)
    assert np.isfinite(lp) and np.all(np.isfinite(grad))
    r = special.gammaln(y + phi) - special.gammaln(phi) - y * np.log(phi)
    d = eta - np.log(phi)
    expected = r + y * eta - (y + phi) * np.logaddexp(0.0, d) - special.gammaln(y + 1)
    np.testing.assert_allclose(lp, copies * expected.sum(), rtol=1e-13)
    d_eta = y - (y + phi) * special.expit(d)
    np.testing.assert_allclose(grad[: 3 * copies], np.tile(d_eta, copies), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [5, 46])  # the element path and the vectorised path under the phi groups
@pytest.mark.parametrize("phi", [0.3, 2.5, 9.999, 10.0, 1e3, 1e12])
@pytest.mark.parametrize("kernel, loc", [("neg_binomial_2", "mu"), ("neg_binomial_2_log", "log_mu")])
def test_neg_binomial_2_scalar_phi_sums_by_distinct_count(n, phi, kernel, loc):
    # A scalar phi parameter takes the phi-only terms once per distinct count (small counts by
    # their recurrences, large ones by lgamma and digamma): the same model with phi one per
    # count (element by element) is the reference, and scipy where its lgamma differences hold.
    rng = np.random.default_rng(7)
    y = np.concatenate([rng.poisson(3.0, size=n - 4), [0.0, 150.0, 2000.0, 1e6]])
    mu = np.concatenate([rng.uniform(0.5, 8.0, size=n - 4), [0.7, 160.0, 1900.0, 1.1e6]])
    v = {"y": y, loc: mu if loc == "mu" else np.log(mu)}
    _, zeta, evaluate = one_factor(kernel, [loc, "phi"], {**v, "phi": phi})
    lp, grad = evaluate(zeta)
    _, zeta_ref, evaluate_ref = one_factor(kernel, [loc, "phi"], {**v, "phi": np.full(n, phi)})
    lp_ref, grad_ref = evaluate_ref(zeta_ref)
    assert zeta.size == n + 1
    # The count 1e6 brings terms of ~1.4e7 (lgamma(1e6 + phi)) that cancel to ~1e2: an ulp of them is
    # ~2e-9, so the two summation orders may differ by a few of those whatever the result's size.
    np.testing.assert_allclose(lp, lp_ref, rtol=1e-10, atol=1e-7)
    np.testing.assert_allclose(grad[:n], grad_ref[:n], rtol=1e-13, atol=1e-13)
    # (1e-9: the sums of digamma differences over n counts, in two orders, came out 1.2e-10 apart
    # relative in an -O1 AddressSanitizer build, whose floating point contracts differently.)
    np.testing.assert_allclose(grad[n], grad_ref[n:].sum(), rtol=1e-9, atol=1e-12 * n)
    if phi <= 1e3:
        np.testing.assert_allclose(lp, stats.nbinom.logpmf(y, phi, phi / (mu + phi)).sum(), rtol=1e-9)


@pytest.mark.parametrize("copies", [1, 16])
def test_beta_binomial_huge_shapes_is_binomial(copies):
    # a, b -> infinity with a / (a + b) = p fixed: the binomial limit; log B(y + a, ...) - log B(a, b)
    # of lgamma values ~3e13 would lose ~1e-2 to rounding.
    y, trials, p = np.array([0.0, 3.0, 10.0, 6.0]), np.array([10.0, 10.0, 10.0, 20.0]), 0.3
    values = {"y": y, "trials": trials, "a": np.full(4, p * 1e12), "b": np.full(4, (1 - p) * 1e12)}
    _, zeta, evaluate = one_factor("beta_binomial", ["a", "b"], values, copies)
    lp, grad = evaluate(zeta)
    # BB - binomial = O(trials^2 / (a + b)) ~ 1e-10 per element.
    np.testing.assert_allclose(lp, copies * stats.binom.logpmf(y, trials, p).sum(), rtol=0, atol=1e-9 * copies)
    # d/da = y / a - trials / (a + b) + O(1 / a^2), d/db = (trials - y) / b - trials / (a + b) + ...
    a, b = p * 1e12, (1 - p) * 1e12
    d_a, d_b = y / a - trials / (a + b), (trials - y) / b - trials / (a + b)
    expected = np.concatenate([np.tile(d_a, copies), np.tile(d_b, copies)])
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-20)


@pytest.mark.parametrize("copies", [1, 16])
def test_beta_binomial_over_shapes_matches_scipy(copies):
    y, trials = np.array([0.0, 3.0, 10.0, 6.0, 50.0]), np.array([10.0, 10.0, 10.0, 20.0, 200.0])
    a, b = np.array([0.01, 9.99, 10.0, 1e4, 3e6]), np.array([0.5, 10.01, 1e5, 2.0, 1e6])
    _, zeta, evaluate = one_factor("beta_binomial", ["a", "b"], {"y": y, "trials": trials, "a": a, "b": b}, copies)
    lp, grad = evaluate(zeta)
    np.testing.assert_allclose(lp, copies * stats.betabinom.logpmf(y, trials, a, b).sum(), rtol=1e-10)
    psi_ab = special.digamma(trials + a + b) - special.digamma(a + b)
    d_a = special.digamma(y + a) - special.digamma(a) - psi_ab
    d_b = special.digamma(trials - y + b) - special.digamma(b) - psi_ab
    expected = np.concatenate([np.tile(d_a, copies), np.tile(d_b, copies)])
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-13)


NORMAL_TAIL = np.array([-1e4, -300.0, -40.0, -38.0, -37.0, -35.4, -35.3, -20.0, -5.0, -0.5, 0.0, 0.5, 5.0, 10.0, 40.0])


@pytest.mark.parametrize("copies", [1, 2])  # 15 and 30 elements: element path and vectorised path
def test_normal_lcdf_and_lccdf_far_into_the_tails(copies):
    # log Phi(z) and log Phi(-z) against scipy's log_ndtr, accurate far out (log Phi(-40) = -804.6),
    # with slope phi(z) / Phi(z) -> -z there; both sides of the switch to the series at z = -25 sqrt 2.
    z = NORMAL_TAIL
    for kernel, sign in (("normal_lcdf", 1.0), ("normal_lccdf", -1.0)):
        each = [one_factor(kernel, ["y"], {"y": [v], "loc": 0.0, "scale": 1.0}) for v in z]
        lps = np.array([evaluate(zeta)[0] for _, zeta, evaluate in each])
        np.testing.assert_allclose(lps, special.log_ndtr(sign * z), rtol=1e-13, atol=1e-300)
        _, zeta, evaluate = one_factor(kernel, ["y"], {"y": z, "loc": 0.0, "scale": 1.0}, copies)
        lp, grad = evaluate(zeta)
        np.testing.assert_allclose(lp, copies * special.log_ndtr(sign * z).sum(), rtol=1e-13)
        # phi(z) / Phi(sign z) = sqrt(2 / pi) exp(-z^2 / 2) / erfc(-sign z / sqrt 2) = sqrt(2 / pi) / erfcx(...)
        mills = np.sqrt(2 / np.pi) / special.erfcx(-sign * z / np.sqrt(2))
        np.testing.assert_allclose(grad, np.tile(sign * mills, copies), rtol=1e-12, atol=1e-300)


def test_lognormal_and_skew_normal_tails():
    y = np.exp(np.array([-60.0, -3.0, 0.0, 2.0, 70.0]))  # z = log(y) / 0.5 out to +-140
    for kernel, ref in (("lognormal_lcdf", stats.lognorm.logcdf), ("lognormal_lccdf", stats.lognorm.logsf)):
        _, zeta, evaluate = one_factor(kernel, ["loc"], {"y": y, "loc": np.zeros(5), "scale": 0.5})
        np.testing.assert_allclose(evaluate(zeta)[0], ref(y, s=0.5).sum(), rtol=1e-13)
    # skew_normal where alpha z is far in Phi's left tail.
    y, alpha = np.array([-3.0, -2.0, 1.0, 4.0]), np.array([15.0, 30.0, -45.0, -20.0])
    _, zeta, evaluate = one_factor("skew_normal", ["alpha"], {"y": y, "loc": 0.0, "scale": 1.0, "alpha": alpha})
    lp, grad = evaluate(zeta)
    np.testing.assert_allclose(lp, stats.skewnorm.logpdf(y, alpha).sum(), rtol=1e-13)
    np.testing.assert_allclose(grad, y * np.exp(stats.norm.logpdf(alpha * y) - special.log_ndtr(alpha * y)), rtol=1e-12)


@pytest.mark.parametrize("copies", [1, 16])
def test_exponential_and_weibull_lcdf_near_zero_and_far_out(copies):
    # log(1 - exp(-x)) for x from 1e-300 (= log x: no cancellation to log 0) to 800 (-exp(-800) ~ 0).
    x = np.array([1e-300, 1e-20, 1e-5, 0.3, 0.6931, 0.6932, 5.0, 40.0, 800.0])
    _, zeta, evaluate = one_factor("exponential_lcdf", ["rate"], {"y": x, "rate": np.ones(9)}, copies)
    lp, grad = evaluate(zeta)
    np.testing.assert_allclose(lp, copies * np.log(-np.expm1(-x)).sum(), rtol=1e-14)
    # d/drate at rate 1 (atol: the gradient in log(rate) is 1 + x / expm1(x), whose ulp is 2e-16)
    np.testing.assert_allclose(grad, np.tile(x * np.exp(-x) / -np.expm1(-x), copies), rtol=1e-12, atol=3e-16)
    # weibull_lcdf with t = (y / scale)^shape: the same function, and down to t = 1e-400 (shape 400,
    # z = 0.1), which underflows, where log P = shape log z = -921.03 (not -inf).
    y, shape = np.array([1e-300, 1e-5, 0.6931, 40.0, 0.1]), np.array([1.0, 1.0, 1.0, 1.0, 400.0])
    _, zeta, evaluate = one_factor("weibull_lcdf", ["y"], {"y": y, "shape": shape, "scale": np.ones(5)}, copies)
    lp, grad = evaluate(zeta)
    expected = np.append(np.log(-np.expm1(-y[:4])), 400 * np.log(0.1))
    np.testing.assert_allclose(lp, copies * expected.sum(), rtol=1e-14)
    d_y = np.append(1.0 / np.expm1(y[:4]), 400 / 0.1)  # shape t / (y expm1(t)) with t = y here
    # (atol: y = 40's partial, 4e-18, is seen through the gradient in log(y), 1 + 1.7e-16, whose ulp is 2e-16)
    np.testing.assert_allclose(grad, np.tile(d_y, copies), rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("copies", [1, 16])
def test_von_mises_concentration_over_a_wide_range(copies):
    # log I0(kappa): a series below 1, std::cyl_bessel_i below 500 and the scaled asymptotic series
    # above (I0 overflows near 713); the partial in kappa is cos(y - loc) - I1 / I0.
    kappa = np.array([1e-8, 0.3, 5.0, 80.0, 499.999, 500.001, 2e3, 1e6])
    y = np.linspace(-3.0, 3.0, 8) / np.sqrt(kappa + 1.0)
    _, zeta, evaluate = one_factor("von_mises", ["kappa"], {"y": y, "loc": 0.0, "kappa": kappa}, copies)
    lp, grad = evaluate(zeta)
    expected = -2 * kappa * np.sin(y / 2) ** 2 - np.log(2 * np.pi * special.i0e(kappa))
    np.testing.assert_allclose(lp, copies * expected.sum(), rtol=1e-13)
    d_kappa = -2 * np.sin(y / 2) ** 2 + (special.i0e(kappa) - special.i1e(kappa)) / special.i0e(kappa)
    np.testing.assert_allclose(grad, np.tile(d_kappa, copies), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("copies", [1, 16])
def test_gamma_lcdf_and_lccdf_over_shape_and_tails(copies):
    # log P(a, x) and log Q(a, x) on both sides of the series / continued-fraction switch at
    # x = a + 1, for shapes from 0.01 to 1e6, against scipy's gammainc / gammaincc where those are
    # representable; the shape partial against central differences of scipy's (h = 1e-6 a).
    a = np.array([0.01, 0.5, 3.7, 9.99, 10.01, 50.0, 50.0, 1e4, 1e4, 1e6, 1e6])
    x = np.array([1.0, 0.2, 5.0, 9.0, 12.0, 20.0, 60.0, 9.9e3, 1.01e4, 1.0e6, 1.003e6])
    for kernel, f in (("gamma_lcdf", special.gammainc), ("gamma_lccdf", special.gammaincc)):
        _, zeta, evaluate = one_factor(kernel, ["shape"], {"y": x, "shape": a, "rate": 1.0}, copies)
        lp, grad = evaluate(zeta)
        np.testing.assert_allclose(lp, copies * np.log(f(a, x)).sum(), rtol=1e-11)
        h = 1e-6 * a
        fd = (np.log(f(a + h, x)) - np.log(f(a - h, x))) / (2 * h)
        np.testing.assert_allclose(grad, np.tile(fd, copies), rtol=1e-5, atol=1e-8)
    # Far tails, where P or Q underflows: log Q(2, x) = -x + log(1 + x) exactly, and
    # log P(1, x) = log(1 - exp(-x)) -> log(x) for tiny x.
    for kernel, shape, y, expected in (
        ("gamma_lccdf", 2.0, np.array([800.0, 1e5]), lambda y: -y + np.log1p(y)),
        ("gamma_lcdf", 1.0, np.array([1e-300, 1e-20, 40.0]), lambda y: np.log(-np.expm1(-y))),
    ):
        _, zeta, evaluate = one_factor(kernel, ["y"], {"y": y, "shape": shape, "rate": 1.0}, copies)
        lp, grad = evaluate(zeta)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(lp, copies * expected(y).sum(), rtol=1e-13)


# ---- input validation ---------------------------------------------------------------------------


def valid_inputs(kernel, rng, shape=()):
    inputs, _ = CASES[kernel]
    return {i.name: sample(i, rng, shape, kernel) for i in inputs}


def add(m, kernel, values):
    variate = CASES[kernel][0][0].name
    values = dict(values)
    m.add(kernel, values.pop(variate), **values)


def each_input(predicate=lambda i: True):
    return [pytest.param(k, i, id=f"{k}-{i.name}") for k, (inputs, _) in CASES.items() for i in inputs if predicate(i)]


@pytest.mark.parametrize("kernel,inp", each_input())
def test_nan_data_rejected(kernel, inp):
    values = valid_inputs(kernel, np.random.default_rng(0))
    values[inp.name] = np.array([values[inp.name], np.nan, values[inp.name]])
    with pytest.raises(ValueError, match=rf"input '{inp.name}' contains nan at flat index 1"):
        add(fv.Model(), kernel, values)


@pytest.mark.parametrize(
    "kernel,inp,bad",
    [
        pytest.param(k, i, v, id=f"{k}-{i.name}-{v}")
        for k, (inputs, _) in CASES.items()
        for i in inputs
        for v in BAD_VALUES.get(i.support, [])
    ],
)
def test_data_outside_support_rejected(kernel, inp, bad):
    values = valid_inputs(kernel, np.random.default_rng(0))
    values[inp.name] = np.array([values[inp.name], bad])
    with pytest.raises(ValueError, match=rf"input '{inp.name}' must be .* at flat index 1"):
        add(fv.Model(), kernel, values)


@pytest.mark.parametrize("kernel,inp", each_input(lambda i: not i.data_only and i.support != "real"))
def test_badly_bounded_parameter_rejected(kernel, inp):
    # e.g. a scale parameter declared without lower=0; for (0, 1) inputs a lower bound alone is not enough.
    for bounds in ({}, {"lower": -1.0}) + (({"lower": 0.0},) if inp.support == "unit_interval" else ()):
        m = fv.Model()
        values = valid_inputs(kernel, np.random.default_rng(0))
        values[inp.name] = m.param("p", **bounds)
        with pytest.raises(ValueError, match=rf"input '{inp.name}' must be .*declare it with matching"):
            add(m, kernel, values)


@pytest.mark.parametrize("kernel,inp", each_input(lambda i: i.data_only))
def test_data_only_input_rejects_parameter(kernel, inp):
    m = fv.Model()
    values = valid_inputs(kernel, np.random.default_rng(0))
    values[inp.name] = m.param("p", lower=0.0)
    with pytest.raises(ValueError, match=rf"input '{inp.name}' must be data"):
        add(m, kernel, values)


@pytest.mark.parametrize("kernel,inp", each_input(lambda i: i.default is None and i.name != "y"))
def test_missing_required_input_rejected(kernel, inp):
    values = valid_inputs(kernel, np.random.default_rng(0))
    del values[inp.name]
    with pytest.raises(ValueError, match=rf"needs input '{inp.name}'"):
        add(fv.Model(), kernel, values)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unknown_input_rejected(kernel):
    values = valid_inputs(kernel, np.random.default_rng(0))
    with pytest.raises(ValueError, match="has no input 'sigma'"):
        add(fv.Model(), kernel, {**values, "sigma": 1.0})


@pytest.mark.parametrize(
    "kernel,values,match",
    [
        ("half_normal", {"y": [1.0], "scale": 0.0}, "input 'scale' must be > 0"),
        ("normal", {"y": [0.0, np.nan]}, "input 'y' contains nan"),
        ("bernoulli_logit", {"y": [0.0, 2.0], "logit": 0.0}, "input 'y' must be 0 or 1"),
        ("poisson_log", {"y": [-1.0], "log_rate": 0.0}, "input 'y' must be a non-negative integer"),
        ("binomial_logit", {"y": [1.5], "trials": 3.0, "logit": 0.0}, "input 'y' must be a non-negative integer"),
        ("beta", {"y": [0.5, 1.0], "a": 1.0, "b": 1.0}, r"input 'y' must be in the open interval \(0, 1\)"),
        (
            "beta_binomial",
            {"y": [3.0, 7.0], "trials": [5.0, 6.0], "a": 1.0, "b": 1.0},
            r"input 'y' must not exceed input 'trials', got y = 7 > trials = 6 at flat index 1",
        ),
        ("pareto", {"y": [2.0, 0.5], "y_min": 1.0, "alpha": 1.0}, r"input 'y' must be >= input 'y_min', got y = 0.5"),
        ("uniform", {"y": [0.5], "lower": 1.0, "upper": 1.0}, r"input 'lower' must be < input 'upper'"),
        ("uniform", {"y": [0.5, -2.0], "lower": -1.0, "upper": 1.0}, r"input 'y' must be >= input 'lower'.* index 1"),
        ("uniform", {"y": [0.5, 2.0], "lower": -1.0, "upper": 1.0}, r"input 'y' must be <= input 'upper'.* index 1"),
        ("neg_binomial_2", {"y": [1.5], "mu": 1.0, "phi": 1.0}, "input 'y' must be a non-negative integer"),
        ("weibull_lcdf", {"y": [0.0], "shape": 1.0, "scale": 1.0}, "input 'y' must be > 0"),
        # y > trials, found after broadcasting: y (2, 3) against trials (3,); flat index 4 is y[1, 1].
        (
            "binomial_logit",
            {"y": [[1.0, 2.0, 3.0], [4.0, 6.0, 0.0]], "trials": [5.0, 5.0, 9.0], "logit": 0.0},
            r"input 'y' must not exceed input 'trials', got y = 6 > trials = 5 at flat index 4",
        ),
    ],
)
def test_specific_bad_inputs(kernel, values, match):
    with pytest.raises(ValueError, match=match):
        add(fv.Model(), kernel, {k: np.asarray(v) for k, v in values.items()})


def test_scale_parameter_without_lower_bound_rejected():
    m = fv.Model()
    s = m.param("s")
    with pytest.raises(ValueError, match=r"input 'scale' must be > 0, but parameter 's'"):
        m.add("normal", np.zeros(3), scale=s)
