"""Element-wise log densities of registered kernels as expressions: ``fv.logp``.

``fv.logp("normal", y, loc=mu, scale=s)`` is Stan's ``normal_lpdf`` / PyMC's ``pm.logp`` inside an
expression: one log density per element (the inputs broadcast together). Use it where a kernel
cannot be added as a factor of its own, chiefly mixtures::

    model.factor(fv.log_mix(w, fv.logp("normal", y, loc=m1, scale=s1),
                               fv.logp("normal", y, loc=m2, scale=s2)))

Two ways to build one, chosen per kernel:

- the built-ins whose density is a closed form of fastvi's expression operations (``LOGP_KERNELS``)
  are written as that formula: a few vectorised nodes, their gradients from the nodes';
- every other element-wise kernel (special functions such as ``skew_normal`` or ``normal_lcdf``,
  densities with a parameter-dependent support such as ``pareto``, and kernels users register)
  becomes one node that calls the kernel once per element (``Model.add_kernel_logp`` in C++), with
  the kernel's own partials. Slower per element, but it is exactly the kernel's density.

A term that is added on its own is better written ``model.add(kernel, y, ...)``: the kernel is
one fused pass with analytic partials. Kernels that are not element-wise (GLMs, multivariate)
have no density per element and raise ``NotImplementedError``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict

import numpy as np

from . import _core
from ._kernels import kernel_spec, registry_name
from ._validate import as_data
from .expr import Expr, exp, expm1, lgamma, log, log1m, log1p, log1p_exp, log_add_exp

__all__ = ["LOGP_KERNELS", "logp"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# Each operation on an expression or on data (numpy), so that one formula serves both.
def _log(x: Any) -> Any:
    return log(x) if isinstance(x, Expr) else np.log(x)


def _log1p(x: Any) -> Any:
    return log1p(x) if isinstance(x, Expr) else np.log1p(x)


def _log1m(x: Any) -> Any:
    return log1m(x) if isinstance(x, Expr) else np.log1p(-np.asarray(x))


def _log1p_exp(x: Any) -> Any:
    return log1p_exp(x) if isinstance(x, Expr) else np.logaddexp(0.0, x)


def _exp(x: Any) -> Any:
    return exp(x) if isinstance(x, Expr) else np.exp(x)


def _gammaln(x: Any) -> Any:
    """scipy.special.gammaln, with scipy imported at the first call rather than with fastvi."""
    from scipy import special

    return special.gammaln(x)


def _lgamma(x: Any) -> Any:
    return lgamma(x) if isinstance(x, Expr) else _gammaln(x)


def _expm1(x: Any) -> Any:
    return expm1(x) if isinstance(x, Expr) else np.expm1(x)


def _log_add_exp(a: Any, b: Any) -> Any:
    return log_add_exp(a, b) if isinstance(a, Expr) or isinstance(b, Expr) else np.logaddexp(a, b)


def _log1m_exp(x: Any) -> Any:
    """log(1 - exp(x)) for x < 0, accurate near 0 (where 1 - exp(x) ~ -x)."""
    return _log(-_expm1(x))


def _lchoose(n: Any, k: Any) -> Any:  # data only (counts)
    return _gammaln(np.asarray(n) + 1.0) - _gammaln(np.asarray(k) + 1.0) - _gammaln(np.asarray(n) - np.asarray(k) + 1.0)


def _normal(y, loc, scale):
    z = (y - loc) / scale
    return -0.5 * (z * z) - _log(scale) - _HALF_LOG_2PI


def _student_t(y, df, loc, scale):
    z = (y - loc) / scale
    return (
        _lgamma((df + 1.0) * 0.5)
        - _lgamma(df * 0.5)
        - 0.5 * _log(df)
        - 0.5 * math.log(math.pi)
        - _log(scale)
        - (df + 1.0) * 0.5 * _log1p(z * z / df)
    )


def _cauchy(y, loc, scale):
    z = (y - loc) / scale
    return -math.log(math.pi) - _log(scale) - _log1p(z * z)


def _half_normal(y, scale):
    z = y / scale
    return math.log(2.0) - _HALF_LOG_2PI - _log(scale) - 0.5 * (z * z)


def _half_cauchy(y, scale):
    z = y / scale
    return math.log(2.0 / math.pi) - _log(scale) - _log1p(z * z)


def _exponential(y, rate):
    return _log(rate) - rate * y


def _gamma(y, shape, rate):
    return shape * _log(rate) - _lgamma(shape) + (shape - 1.0) * _log(y) - rate * y


def _lognormal(y, loc, scale):
    log_y = _log(y)
    return _normal(log_y, loc, scale) - log_y


def _beta(y, a, b):
    return (a - 1.0) * _log(y) + (b - 1.0) * _log1m(y) + _lgamma(a + b) - _lgamma(a) - _lgamma(b)


def _bernoulli_logit(y, logit):
    return y * logit - _log1p_exp(logit)


def _binomial_logit(y, trials, logit):
    choose = _gammaln(trials + 1.0) - _gammaln(y + 1.0) - _gammaln(trials - y + 1.0)
    return choose + y * logit - trials * _log1p_exp(logit)


def _poisson_log(y, log_rate):
    return y * log_rate - _exp(log_rate) - _gammaln(np.asarray(y) + 1.0)


def _poisson(y, rate):
    return y * _log(rate) - rate - _gammaln(np.asarray(y) + 1.0)


def _neg_binomial_2(y, mu, phi):
    y = np.asarray(y, dtype=float)
    return (
        _lgamma(y + phi)
        - _lgamma(phi)
        - _gammaln(y + 1.0)
        + y * _log(mu)
        + phi * _log(phi)
        - (y + phi) * _log(mu + phi)
    )


def _neg_binomial_2_log(y, log_mu, phi):
    y = np.asarray(y, dtype=float)
    return (
        _lgamma(y + phi)
        - _lgamma(phi)
        - _gammaln(y + 1.0)
        + y * log_mu
        + phi * _log(phi)
        - (y + phi) * _log_add_exp(log_mu, _log(phi))
    )


def _beta_binomial(y, trials, a, b):
    y, n = np.asarray(y, dtype=float), np.asarray(trials, dtype=float)
    return (
        _lchoose(n, y)
        + _lgamma(y + a)
        + _lgamma(n - y + b)
        - _lgamma(n + a + b)
        - _lgamma(a)
        - _lgamma(b)
        + _lgamma(a + b)
    )


def _weibull_log_z(y, shape, scale):
    """shape * log(y / scale): (y / scale) ** shape is its exp."""
    return shape * (_log(y) - _log(scale))


def _weibull(y, shape, scale):
    t = _weibull_log_z(y, shape, scale)
    return _log(shape) - _log(y) + t - _exp(t)


def _weibull_lccdf(y, shape, scale):
    return -_exp(_weibull_log_z(y, shape, scale))


def _weibull_lcdf(y, shape, scale):
    return _log1m_exp(-_exp(_weibull_log_z(y, shape, scale)))


def _exponential_lccdf(y, rate):
    return -rate * y


def _exponential_lcdf(y, rate):
    return _log1m_exp(-rate * y)


def _logistic(y, loc, scale):
    z = (y - loc) / scale
    return -z - _log(scale) - 2.0 * _log1p_exp(-z)


def _double_exponential(y, loc, scale):
    return -math.log(2.0) - _log(scale) - abs(y - loc) / scale


def _inv_gamma(y, shape, scale):
    return shape * _log(scale) - _lgamma(shape) - (shape + 1.0) * _log(y) - scale / y


def _chi_square(y, df):
    half = df * 0.5
    return (half - 1.0) * _log(y) - 0.5 * y - half * math.log(2.0) - _lgamma(half)


# kernel -> its log density in the kernel's input order (variate first). Inputs a kernel declares
# as data only (counts, outcomes) are numpy arrays here.
LOGP_KERNELS: Dict[str, Callable[..., Any]] = {
    "normal": _normal,
    "student_t": _student_t,
    "cauchy": _cauchy,
    "half_normal": _half_normal,
    "half_cauchy": _half_cauchy,
    "exponential": _exponential,
    "gamma": _gamma,
    "lognormal": _lognormal,
    "beta": _beta,
    "bernoulli_logit": _bernoulli_logit,
    "binomial_logit": _binomial_logit,
    "poisson_log": _poisson_log,
    "poisson": _poisson,
    "neg_binomial_2": _neg_binomial_2,
    "neg_binomial_2_log": _neg_binomial_2_log,
    "beta_binomial": _beta_binomial,
    "weibull": _weibull,
    "weibull_lccdf": _weibull_lccdf,
    "weibull_lcdf": _weibull_lcdf,
    "exponential_lccdf": _exponential_lccdf,
    "exponential_lcdf": _exponential_lcdf,
    "logistic": _logistic,
    "double_exponential": _double_exponential,
    "inv_gamma": _inv_gamma,
    "chi_square": _chi_square,
}


def logp(kernel: str, value: Any, /, **inputs: Any) -> Any:
    """The element-wise log density of a registered kernel, as an expression.

    Stan's ``normal_lpdf(y | mu, sigma)`` (one value per element, not summed) or PyMC's
    ``pm.logp``, for use inside expressions: mixtures (:func:`log_mix`), or any term added with
    :meth:`Model.factor`. Inputs follow :meth:`Model.add`: the variate first, then the kernel's
    named inputs (data or expressions), broadcast together; omitted inputs take the kernel's
    defaults.

    Parameters
    ----------
    kernel : str
        Any element-wise kernel: a built-in (``fv.kernels()``; those in ``LOGP_KERNELS`` are
        built as a closed-form expression, the others, e.g. ``skew_normal``, ``von_mises``,
        ``pareto``, ``normal_lcdf``, call the kernel once per element) or one registered with
        :func:`register_kernel` or from C++.
    value : Expr or array_like
        The variate.
    **inputs : Expr or array_like
        The kernel's other inputs by name.

    Returns
    -------
    Expr or numpy.ndarray
        One log density per element of the broadcast inputs: an expression if any input is one,
        else an array.

    Raises
    ------
    NotImplementedError
        For a kernel that is not element-wise (a GLM, a multivariate distribution): it has no
        log density per element.
    ValueError, TypeError
        For an unknown input name, a missing input, data outside the input's support, or an
        expression whose bounds do not fit the input's support (as :meth:`Model.add` does).

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> from scipy import stats
    >>> m = fv.Model()
    >>> mu = m.param("mu")
    >>> lp = fv.logp("normal", np.array([0.5, 2.0]), loc=mu, scale=2.0)
    >>> lp.shape
    (2,)
    >>> m.factor(lp)
    >>> value, _ = m.log_density(np.array([1.0]))
    >>> bool(np.isclose(value, stats.norm.logpdf([0.5, 2.0], 1.0, 2.0).sum()))
    True

    A kernel with no closed form here, evaluated by the kernel itself (data only: an array):

    >>> out = fv.logp("skew_normal", np.array([0.0, 1.0]), loc=0.0, scale=1.0, alpha=2.0)
    >>> bool(np.allclose(out, stats.skewnorm.logpdf([0.0, 1.0], 2.0)))
    True
    """
    spec = kernel_spec(kernel)
    if not spec.elementwise:
        raise NotImplementedError(
            f"fv.logp: kernel {kernel!r} is not element-wise (its density is not a sum over elements), "
            f"so it has no log density per element; add it as a factor with model.add instead"
        )
    names = [i.name for i in spec.inputs]
    variate = names[0]
    if variate in inputs:
        raise TypeError(f"{kernel}: the variate {variate!r} is the first argument; do not pass it again by keyword")
    if kernel not in LOGP_KERNELS:
        return _kernel_logp(kernel, variate, value, inputs)
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise ValueError(f"{kernel}: no input {unknown[0]!r} (its inputs are: {', '.join(names)})")
    args = []
    for i in spec.inputs:
        v = value if i.name == variate else inputs.get(i.name, i.default)
        if v is None:
            raise ValueError(f"{kernel}: needs input {i.name!r}")
        if isinstance(v, Expr):
            if i.data_only:
                raise TypeError(f"{kernel}: input {i.name!r} must be data, got the expression {v._label!r}")
            _check_bounds(kernel, i.name, i.support, v)
        else:
            v = as_data(v, f"{kernel}: input {i.name!r}")
            bad = [float(x) for x in np.unique(v) if not _core.in_support(i.support, float(x))]
            if bad:
                where = int(np.flatnonzero(v.ravel() == bad[0])[0])
                raise ValueError(
                    f"{kernel}: input {i.name!r} is outside its support ({i.support}): {bad[0]!r} at flat index {where}"
                )
            if v.ndim == 0:
                v = float(v)
        args.append(v)
    return LOGP_KERNELS[kernel](*args)


def _check_bounds(kernel: str, name: str, support: str, v: Expr) -> None:
    """An expression given for a bounded input must be bounded as the input's support requires
    (as Model.add checks a factor's inputs): a formula would otherwise return NaN silently."""
    ok = {
        "positive": v.lower >= 0,
        "nonnegative": v.lower >= 0,
        "unit_interval": v.lower >= 0 and v.upper <= 1,
    }.get(support, True)
    if not ok:
        raise ValueError(
            f"{kernel}: input {name!r} must lie in its support ({support}), but {v._label!r} can take values in "
            f"[{v.lower!r}, {v.upper!r}]: build it from parts whose bounds give the support"
        )


def _kernel_logp(kernel: str, variate: str, value: Any, inputs: Dict[str, Any]) -> Any:
    """fv.logp through the kernel itself: one node (C++ Model.add_kernel_logp) whose element n is
    the kernel's density at element n. With no expression among the inputs, the node is built
    in a scratch model and its values returned as an array."""
    from .model import Model, _check_broadcast_size

    given = [(variate, value), *inputs.items()]
    models = {id(v._model): v._model for _, v in given if isinstance(v, Expr)}
    if len(models) > 1:
        raise ValueError(f"fv.logp({kernel!r}): the inputs are expressions of different models")
    model = next(iter(models.values())) if models else Model()
    label = f"logp({kernel} on {Model._describe(value)})"
    operands, shapes = [], []
    for key, v in given:
        if isinstance(v, Expr):
            operands.append(v._operand(key))
            shapes.append(v.shape)
        else:
            data = as_data(v, f"{label}: input {key!r}")
            operands.append(("data", key, data))
            shapes.append(data.shape)
    _check_broadcast_size(shapes, label)
    block = model._build("add_kernel_logp", registry_name(kernel), tuple(operands), label)
    shape = tuple(model._core.block(block)["shape"])
    out = Expr(model, block, shape, -math.inf, math.inf, label)
    if models:
        return out
    row = model._core.block(block)["row"]
    values = model._core.values(np.zeros((0, 1)))[row : row + out.size, 0]
    return values.reshape(shape)
