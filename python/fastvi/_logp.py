"""Element-wise log densities of built-in distributions as expressions: ``fv.logp``.

``fv.logp("normal", y, loc=mu, scale=s)`` is Stan's ``normal_lpdf`` / PyMC's ``pm.logp`` inside an
expression: one log density per element (the inputs broadcast together), built from fastvi's
expression operations, so its gradients come from them. Use it where a kernel cannot be added
as a factor of its own, chiefly mixtures::

    model.factor(fv.log_mix(w, fv.logp("normal", y, loc=m1, scale=s1),
                               fv.logp("normal", y, loc=m2, scale=s2)))

A term that is added on its own is better written ``model.add(kernel, y, ...)``: the kernel is
one fused pass with analytic partials, while an expression is several nodes. Covered: the
element-wise built-ins whose density is a closed form of these operations (see ``LOGP_KERNELS``);
other kernels raise ``NotImplementedError``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict

import numpy as np
from scipy import special

from . import _core
from ._kernels import kernel_spec
from ._validate import as_data
from .expr import Expr, exp, lgamma, log, log1m, log1p, log1p_exp

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


def _lgamma(x: Any) -> Any:
    return lgamma(x) if isinstance(x, Expr) else special.gammaln(x)


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
    choose = special.gammaln(trials + 1.0) - special.gammaln(y + 1.0) - special.gammaln(trials - y + 1.0)
    return choose + y * logit - trials * _log1p_exp(logit)


def _poisson_log(y, log_rate):
    return y * log_rate - _exp(log_rate) - special.gammaln(np.asarray(y) + 1.0)


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
}


def logp(kernel: str, value: Any, /, **inputs: Any) -> Any:
    """The element-wise log density of a built-in distribution, as an expression.

    Stan's ``normal_lpdf(y | mu, sigma)`` (one value per element, not summed) or PyMC's
    ``pm.logp``, for use inside expressions: mixtures (:func:`log_mix`), or any term added with
    :meth:`Model.factor`. Inputs follow :meth:`Model.add`: the variate first, then the kernel's
    named inputs (data or expressions), broadcast together; omitted inputs take the kernel's
    defaults.

    Parameters
    ----------
    kernel : str
        A kernel in ``LOGP_KERNELS`` (the element-wise built-ins: normal, student_t, cauchy,
        half_normal, half_cauchy, exponential, gamma, lognormal, beta, bernoulli_logit,
        binomial_logit, poisson_log).
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
        For a registered kernel with no closed form here (a GLM, a multivariate or a user kernel).
    ValueError, TypeError
        For an unknown input name, a missing input, or data outside the input's support (as
        :meth:`Model.add` does).

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
    """
    spec = kernel_spec(kernel)
    if kernel not in LOGP_KERNELS:
        raise NotImplementedError(
            f"fv.logp has no expression form of {kernel!r}; it covers {', '.join(sorted(LOGP_KERNELS))}. "
            f"Add {kernel!r} as a factor with model.add instead"
        )
    names = [i.name for i in spec.inputs]
    variate = names[0]
    if variate in inputs:
        raise TypeError(f"{kernel}: the variate {variate!r} is the first argument; do not pass it again by keyword")
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
