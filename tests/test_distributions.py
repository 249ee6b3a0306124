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


def sample(inp: In, rng, shape):
    return (TRIALS if inp.name == "trials" else SAMPLERS[inp.support])(rng, shape)


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
            handles[inp.name] = m.param("p_" + inp.name, shape=shape, **BOUNDS[inp.support])
        else:
            data[inp.name] = sample(inp, rng, shape)
    values = {**handles, **data}
    m.add(kernel, values.pop(inputs[0].name), **values)
    return m, handles, data


def log_jacobian(handles, zeta):
    """Sum of the transforms' log-Jacobians per draw: log|d theta / d zeta| for exp and expit."""
    out = np.zeros(zeta.shape[1])
    for p in handles.values():
        z = zeta[p.offset : p.offset + p.size]
        if p.lower == 0.0 and p.upper == 1.0:
            out += (special.log_expit(z) + special.log_expit(-z)).sum(axis=0)
        elif p.lower == 0.0:
            out += z.sum(axis=0)
    return out


def reference(kernel, handles, data, zeta):
    """scipy's summed log density at the constrained values plus log-Jacobians, per draw (zeta: dim x S)."""
    draws = zeta.shape[1]
    ndim = max([len(p.shape) for p in handles.values()] + [d.ndim for d in data.values()])
    values = {}
    for name, p in handles.items():
        z = zeta[p.offset : p.offset + p.size]
        theta = special.expit(z) if p.upper == 1.0 else np.exp(z) if p.lower == 0.0 else z
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
            d = sample(inp, rng, (20,))
            values_whole[inp.name] = d
            values_halves[0][inp.name], values_halves[1][inp.name] = d[:10], d[10:]
        else:
            shape = () if scalar_params else (20,)
            p_whole = whole.param("p_" + inp.name, shape=shape, **BOUNDS[inp.support])
            p_halves = halves.param("p_" + inp.name, shape=shape, **BOUNDS[inp.support])
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


# ---- input validation ---------------------------------------------------------------------------


def valid_inputs(kernel, rng, shape=()):
    inputs, _ = CASES[kernel]
    return {i.name: sample(i, rng, shape) for i in inputs}


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
