"""A model's observed factors, evaluated at draws: pointwise log-likelihoods and predictive draws.

An *observed factor* is one added with ``model.add(kernel, data, ...)``: its variate is data. For
each, at S draws of the parameters, this module computes

- the log density of every observation (``pointwise_log_likelihood``), what ``az.loo`` and
  ``az.compare`` need: for an element-wise kernel it is the kernel's own density of each element,
  evaluated in C++ by one ``add_kernel_logp`` node per factor, built on a *copy* of the model (the
  user's model keeps the nodes it had, so its later fits cost what they did); for the GLM kernels
  (one observation per row of X) it is the linear predictor in numpy and the matching element-wise
  density (``_logp.LOGP_KERNELS``); for the categorical, ordinal, multinomial, Dirichlet and
  multivariate normal kernels, one term per observation (per row of a multinomial's, Dirichlet's
  or multivariate normal's variate), in numpy;
- new observations drawn from the factor's kernel given each draw (``predictive_draws``), with a
  numpy Generator, for the built-in kernels that have a sampler here (``PREDICTIVE_KERNELS``).

Factors whose kernel has neither (``lkj_corr_cholesky`` on data, non-element-wise kernels
registered from Python or C++; censoring terms and registered kernels for predictions) are left
out, with one warning naming them.

The values of a factor's inputs at a draw come from the model's value matrix (``_core.values``):
the recipe of the factor (see ``model.py``) says which block feeds which input.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from scipy import special

from . import _data
from ._kernels import kernel_spec
from ._logp import LOGP_KERNELS
from .model import Model

__all__ = ["ObservedFactor", "observed_factors", "pointwise_log_likelihood", "predictive_draws"]

# Working memory of one batch of draws (the copy's value matrix): as in psis.py.
_BATCH_BYTES = 64 * 2**20

# The GLM kernels: y_n ~ kernel(offset_n + alpha + X[n] . beta, ...), with the element-wise kernel
# that has the same density for one observation, and its other inputs (after the linear predictor).
_GLMS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "normal_id_glm": ("normal", ("scale",)),
    "bernoulli_logit_glm": ("bernoulli_logit", ()),
    "poisson_log_glm": ("poisson_log", ()),
    "neg_binomial_2_log_glm": ("neg_binomial_2_log", ("phi",)),
}


@dataclass(frozen=True)
class ObservedFactor:
    """A factor whose variate is data, as the recipe of ``model.add`` recorded it.

    Attributes
    ----------
    index : int
        Its position in ``model.factors``.
    name : str
        Its label: the ``name=`` given to ``model.add`` (or the default label); unique among the
        model's observed factors (a repeated label gets `` #<index>`` appended).
    kernel : str
        The kernel's name.
    value : ndarray
        The observed data.
    operands : tuple
        The recipe's operands: ``("data", input, array)``, ``("block", input, block id)`` or
        ``("reshaped", input, block id, shape)``, the variate first.
    dims : tuple of str or None
        Axis names of ``value`` given to ``model.add(..., dims=...)``.
    """

    index: int
    name: str
    kernel: str
    value: np.ndarray
    operands: tuple
    dims: Optional[Tuple[str, ...]]

    def dims_for(self, shape: Tuple[int, ...]) -> Optional[List[str]]:
        """Axis names for an array of ``shape`` that describes this factor's observations: the
        declared dims where ``shape`` is the leading part of the value's shape, else None (ArviZ
        then names the axes ``<name>_dim_<i>``)."""
        if self.dims is None or tuple(self.value.shape[: len(shape)]) != tuple(shape):
            return None
        return list(self.dims[: len(shape)])


def observed_factors(model: Model) -> List[ObservedFactor]:
    """The model's observed factors (variate given as data), in the order they were added.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> from fastvi._observed import observed_factors
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", w, loc=0.0, scale=1.0)                      # a prior: not observed
    >>> m.add("normal", np.array([0.5, 1.5]), loc=w, name="y")
    >>> [(f.index, f.name, f.kernel, f.value.tolist()) for f in observed_factors(m)]
    [(1, 'y', 'normal', [0.5, 1.5])]
    """
    out: List[ObservedFactor] = []
    index = -1
    for entry in model._recipe:
        if entry[0] == "add_target":
            index += 1
        if entry[0] != "add_factor":
            continue
        index += 1
        kernel, operands, label = entry[1:4]  # then the rows axis, if the factor has one
        operands = tuple(_data.with_values(model, op) for op in operands)  # containers: current values
        if operands[0][0] != "data":
            continue
        # the axis names given with the data, unless set_data has changed its shape since
        axes, shape = model._factor_dims.get(index, (None, None))
        dims = axes if shape == np.shape(operands[0][2]) else None
        out.append(ObservedFactor(index, label, kernel, operands[0][2], operands, dims))
    seen: Dict[str, int] = {}
    for f in out:
        seen[f.name] = seen.get(f.name, 0) + 1
    return [
        f
        if seen[f.name] == 1
        else ObservedFactor(f.index, f"{f.name} #{f.index}", f.kernel, f.value, f.operands, f.dims)
        for f in out
    ]


# ---- input values at draws ------------------------------------------------------------------------


def _input_values(model: Model, factor: ObservedFactor, values: np.ndarray) -> Dict[str, np.ndarray]:
    """Every input of the factor by its spec name (aliases resolved, defaults filled in), each
    with a leading draw axis: length S for an input fed by parameters (rows of ``values``, the
    value matrix of S draws), 1 for data."""
    spec = kernel_spec(factor.kernel)
    canonical = {alias: i.name for i in spec.inputs for alias in (i.name, *i.aliases)}
    s = values.shape[1]
    out: Dict[str, np.ndarray] = {}
    for encoded in factor.operands:
        kind, name = encoded[0], canonical.get(encoded[1], encoded[1])
        if kind == "data":
            out[name] = np.asarray(encoded[2], dtype=np.float64)[None]
            continue
        info = model._core.block(encoded[2])
        shape = tuple(encoded[3]) if kind == "reshaped" else tuple(info["shape"])
        out[name] = values[info["row"] : info["row"] + info["size"]].T.reshape((s, *shape))
    for i in spec.inputs:
        if i.name not in out and i.default is not None:
            out[i.name] = np.full((1,), i.default)
    return out


def _aligned(a: np.ndarray, ndim: int) -> np.ndarray:
    """``a`` (a leading draw axis, then its own shape) with its own shape padded on the left with
    axes of length 1 to ``ndim`` axes, so that it broadcasts as numpy aligns shapes: on the right."""
    lead: Tuple[int, ...] = (a.shape[0],)
    return a.reshape(lead + (1,) * (ndim - a.ndim + 1) + tuple(a.shape[1:]))


def _broadcast_inputs(inputs: Dict[str, np.ndarray], names: Sequence[str], ndim: int) -> List[np.ndarray]:
    """The named inputs (leading draw axis) with their per-draw shapes aligned on the right to
    ``ndim`` axes, as numpy broadcasts an element-wise kernel's inputs: (S or 1, 1, ..., *shape)."""
    return [_aligned(inputs[n], ndim) for n in names]


def _linear_predictor(inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """offset + alpha + X @ beta of a GLM, shape (S, N)."""
    x, beta = inputs["X"][0], inputs["beta"]  # X is data: (N, K); beta (S or 1, K)
    alpha = _aligned(inputs["alpha"], 1)  # (S or 1, 1)
    offset = _aligned(inputs["offset"], 1)  # (S or 1, 1) or (S or 1, N)
    return beta @ x.T + alpha + offset


# ---- pointwise log-likelihood --------------------------------------------------------------------


def _glm_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    elementwise, extra = _GLMS[factor.kernel]
    eta = _linear_predictor(inputs)
    others = [_aligned(inputs[n], 1) for n in extra]  # scalars per draw: (S or 1, 1)
    y = np.asarray(factor.value, dtype=np.float64)[None]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.broadcast_to(LOGP_KERNELS[elementwise](y, eta, *others), eta.shape)


def _categorical_logit_glm_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    x, beta = inputs["X"][0], inputs["beta"]  # (N, K), (S or 1, K, C)
    alpha = inputs["alpha"]
    alpha = alpha.reshape(alpha.shape[0], 1, -1)  # (S or 1, 1, C or 1)
    logits = np.einsum("nk,skc->snc", x, beta) + alpha
    log_prob = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    y = np.asarray(factor.value, dtype=np.int64)
    return np.take_along_axis(log_prob, np.broadcast_to(y[None, :, None], (log_prob.shape[0], y.size, 1)), axis=-1)[
        ..., 0
    ]


def _per_category(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """values (L, C) or (L, *y.shape, C), one row per category; y (categories, from 0) -> the
    value of each y's category, shape (L, *y.shape)."""
    lead, c = values.shape[0], values.shape[-1]
    per_observation = np.broadcast_to(_aligned(values, y.ndim + 1), (lead, *y.shape, c))
    index = np.broadcast_to(y.astype(np.int64)[None, ..., None], (lead, *y.shape, 1))
    return np.take_along_axis(per_observation, index, axis=-1)[..., 0]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    return x - special.logsumexp(x, axis=-1, keepdims=True)


def _categorical_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return _per_category(np.log(inputs["theta"]), np.asarray(factor.value))


def _categorical_logit_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    return _per_category(_log_softmax(inputs["logits"]), np.asarray(factor.value))


def _multinomial_logit_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """One term per row of counts y (C,) or (N, C): log(n! / prod y_c!) + sum_c y_c log softmax(gamma)_c."""
    y = np.asarray(factor.value, dtype=np.float64)
    gamma = _aligned(inputs["gamma"], y.ndim)
    coefficient = special.gammaln(y.sum(axis=-1) + 1.0) - special.gammaln(y + 1.0).sum(axis=-1)
    return coefficient + np.sum(np.where(y > 0, y * _log_softmax(gamma), 0.0), axis=-1)


def _log1m_exp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0, accurate at both ends."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


# log F and log(1 - F) of the ordinal kernels' latent noise: logistic and standard normal
_ORDINAL_LOG_CDF: Dict[str, Tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "ordered_logistic": (lambda x: -np.logaddexp(0.0, -x), lambda x: -np.logaddexp(0.0, x)),
    "ordered_probit": (special.log_ndtr, lambda x: special.log_ndtr(-x)),
}


def _ordinal_bounds(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(c_{y-1} - eta, c_y - eta) for each observation, shape (L, *y.shape), with c_{-1} = -inf
    and c_{C-1} = inf: P(y) = F(upper) - F(lower)."""
    y = np.asarray(factor.value).astype(np.int64)
    cut = inputs["cutpoints"]  # (L, C - 1)
    ends = np.full((cut.shape[0], 1), np.inf)
    padded = np.concatenate([-ends, cut, ends], axis=1)  # (L, C + 1)
    eta = _aligned(inputs["eta"], y.ndim)
    lower = padded[:, y.ravel()].reshape((-1, *y.shape))
    upper = padded[:, y.ravel() + 1].reshape((-1, *y.shape))
    return lower - eta, upper - eta


def _ordinal_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """log(F(b) - F(a)), from the side where it does not cancel: log F(b) + log(1 - F(a) / F(b))
    below the median, log S(a) + log(1 - S(b) / S(a)) above it (S = 1 - F)."""
    log_cdf, log_ccdf = _ORDINAL_LOG_CDF[factor.kernel]
    a, b = _ordinal_bounds(factor, inputs)
    with np.errstate(invalid="ignore"):
        below = log_cdf(b) + _log1m_exp(log_cdf(a) - log_cdf(b))
        above = log_ccdf(a) + _log1m_exp(log_ccdf(b) - log_ccdf(a))
    return np.where(a > 0, above, below)


def _cholesky_factors(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """The covariance's lower Cholesky factor per draw, (L, K, K); NaN for a draw whose Sigma is
    not positive-definite (the model's log density is NaN there too)."""
    if factor.kernel == "multi_normal_cholesky":
        return np.tril(inputs["L"])
    sigma = inputs["Sigma"]
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        out = np.full(sigma.shape, np.nan)
        for i, matrix in enumerate(sigma):
            try:
                out[i] = np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                pass
        return out


def _multi_normal_parts(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(mu broadcast to (L, *y.shape), Cholesky factors (L, K, K))."""
    y = np.asarray(factor.value, dtype=np.float64)
    mu = _aligned(inputs["mu"], y.ndim)
    chol = _cholesky_factors(factor, inputs)
    lead = max(mu.shape[0], chol.shape[0])
    return np.broadcast_to(mu, (lead, *y.shape)), np.broadcast_to(chol, (lead, *chol.shape[1:]))


def _multi_normal_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """One term per row of y (K,) or (N, K)."""
    y = np.asarray(factor.value, dtype=np.float64)
    mu, chol = _multi_normal_parts(factor, inputs)
    diff = (y - mu).reshape(mu.shape[0], -1, y.shape[-1])  # (L, rows, K)
    z = np.linalg.solve(chol, np.swapaxes(diff, 1, 2))  # (L, K, rows): L^-1 (y - mu)
    k = y.shape[-1]
    log_det = np.log(np.abs(np.diagonal(chol, axis1=1, axis2=2))).sum(axis=1)
    lp = -0.5 * np.sum(z * z, axis=1) - log_det[:, None] - 0.5 * k * math.log(2 * math.pi)
    return lp.reshape((mu.shape[0], *y.shape[:-1]))


# The kernels that are not element-wise but have one log density per observation (or row), in
# numpy from the inputs' values: factor, inputs -> (S or 1, *observations' shape).
def _dirichlet_log_likelihood(factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """One term per simplex (row of theta (K,) or (N, K))."""
    theta = np.asarray(factor.value, dtype=np.float64)
    alpha = _aligned(inputs["alpha"], theta.ndim)
    normaliser = special.gammaln(alpha.sum(axis=-1)) - special.gammaln(alpha).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return normaliser + np.sum((alpha - 1.0) * np.log(theta), axis=-1)


_PER_OBSERVATION: Dict[str, Callable[[ObservedFactor, Dict[str, np.ndarray]], np.ndarray]] = {
    **{k: _glm_log_likelihood for k in _GLMS},
    "categorical_logit_glm": _categorical_logit_glm_log_likelihood,
    "categorical": _categorical_log_likelihood,
    "categorical_logit": _categorical_logit_log_likelihood,
    "multinomial_logit": _multinomial_logit_log_likelihood,
    "ordered_logistic": _ordinal_log_likelihood,
    "ordered_probit": _ordinal_log_likelihood,
    "multi_normal": _multi_normal_log_likelihood,
    "multi_normal_cholesky": _multi_normal_log_likelihood,
    "dirichlet": _dirichlet_log_likelihood,
}


def _draw_batches(zeta: np.ndarray, rows: int) -> Iterator[Tuple[int, np.ndarray]]:
    """(first, columns of zeta) in batches whose value matrix (rows x batch) fits _BATCH_BYTES."""
    size = max(1, min(zeta.shape[1], _BATCH_BYTES // (8 * max(rows, 1))))
    for first in range(0, zeta.shape[1], size):
        yield first, np.asfortranarray(zeta[:, first : first + size])


def pointwise_log_likelihood(
    model: Model,
    zeta: np.ndarray,
    factors: Optional[List[ObservedFactor]] = None,
    warn: bool = True,
    stacklevel: int = 1,
) -> Dict[str, np.ndarray]:
    """The log density of every observation of every observed factor at S draws.

    Parameters
    ----------
    model : Model
        The model (left unchanged: the element-wise terms are built on a copy).
    zeta : ndarray
        The draws in the unconstrained space, shape ``(dim, S)``.
    factors : list of ObservedFactor, optional
        Default: ``observed_factors(model)``.
    warn : bool, default True
        Warn, naming them, about factors whose pointwise terms cannot be computed (left out).
    stacklevel : int, default 1
        Where the warning points: 1 at the line that called this function, one more per
        function between the user and that line.

    Returns
    -------
    dict of str to ndarray
        By factor name, shape ``(S,) + the observations' shape``: the broadcast shape of an
        element-wise kernel's inputs, ``(N,)`` for a GLM, y's shape for the categorical and
        ordinal kernels, the variate's shape less its last axis for ``multinomial_logit``,
        ``dirichlet``, ``multi_normal`` and ``multi_normal_cholesky``. Summed over the observations, each is the
        factor's log density at each draw.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> from scipy import stats
    >>> from fastvi._observed import pointwise_log_likelihood
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", np.array([0.5, 1.5]), loc=w, scale=2.0, name="y")
    >>> ll = pointwise_log_likelihood(m, np.array([[0.0, 1.0]]))
    >>> ll["y"].shape
    (2, 2)
    >>> bool(np.allclose(ll["y"], stats.norm.logpdf([[0.5, 1.5]], [[0.0], [1.0]], 2.0)))
    True
    """
    factors = observed_factors(model) if factors is None else factors
    supported: List[ObservedFactor] = []
    left_out: List[ObservedFactor] = []
    for f in factors:
        (supported if kernel_spec(f.kernel).elementwise or f.kernel in _PER_OBSERVATION else left_out).append(f)
    if left_out and warn:
        warnings.warn(
            "no pointwise log-likelihood for "
            + ", ".join(f"{f.name!r} (kernel {f.kernel!r})" for f in left_out)
            + ": the kernel has no per-observation form here; left out of log_likelihood",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    if not supported:
        return {}
    # The element-wise terms: one add_kernel_logp node per factor, on a copy of the model, whose
    # blocks have the same ids as the original's (the copy replays its recipe). Without them (GLMs
    # only) the model's own value matrix is all that is needed.
    elementwise = [f for f in supported if f.kernel not in _PER_OBSERVATION]
    scratch = copy.deepcopy(model) if elementwise else model
    nodes = {
        f.name: scratch._build("add_kernel_logp", f.kernel, f.operands, f"pointwise log-likelihood of {f.name}")
        for f in elementwise
    }
    s = zeta.shape[1]
    out: Dict[str, np.ndarray] = {}
    for first, batch in _draw_batches(zeta, scratch._core.rows):
        values = scratch._core.values(batch)
        for f in supported:
            if f.name in nodes:
                info = scratch._core.block(nodes[f.name])
                part = values[info["row"] : info["row"] + info["size"]].T.reshape((batch.shape[1], *info["shape"]))
            else:
                part = _PER_OBSERVATION[f.kernel](f, _input_values(scratch, f, values))
            if f.name not in out:
                out[f.name] = np.empty((s, *part.shape[1:]))
            out[f.name][first : first + batch.shape[1]] = part
    return out


# ---- predictive draws ------------------------------------------------------------------------------


def _expit(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


def _neg_binomial_2_draw(rng: np.random.Generator, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """NegBinomial2(mu, phi) as its gamma-Poisson mixture: Poisson(Gamma(phi, rate phi / mu))."""
    mu, phi = np.broadcast_arrays(mu, phi)
    return rng.poisson(rng.gamma(phi, mu / phi)).astype(np.float64)


# kernel -> (its inputs after the variate, a sampler given those inputs broadcast together)
PREDICTIVE_KERNELS: Dict[str, Tuple[Tuple[str, ...], Callable[..., np.ndarray]]] = {
    "normal": (("loc", "scale"), lambda rng, loc, scale: rng.normal(loc, scale)),
    "student_t": (("df", "loc", "scale"), lambda rng, df, loc, scale: loc + scale * rng.standard_t(df)),
    "cauchy": (
        ("loc", "scale"),
        lambda rng, loc, scale: loc + scale * rng.standard_cauchy(np.broadcast(loc, scale).shape),
    ),
    "logistic": (("loc", "scale"), lambda rng, loc, scale: rng.logistic(loc, scale)),
    "double_exponential": (("loc", "scale"), lambda rng, loc, scale: rng.laplace(loc, scale)),
    "lognormal": (("loc", "scale"), lambda rng, loc, scale: np.exp(rng.normal(loc, scale))),
    "half_normal": (("scale",), lambda rng, scale: np.abs(rng.normal(0.0, scale))),
    "half_cauchy": (("scale",), lambda rng, scale: np.abs(scale * rng.standard_cauchy(np.shape(scale)))),
    "exponential": (("rate",), lambda rng, rate: rng.exponential(1.0 / rate)),
    "gamma": (("shape", "rate"), lambda rng, shape, rate: rng.gamma(shape, 1.0 / rate)),
    "inv_gamma": (("shape", "scale"), lambda rng, shape, scale: scale / rng.gamma(shape)),
    "chi_square": (("df",), lambda rng, df: rng.chisquare(df)),
    "weibull": (
        ("shape", "scale"),
        lambda rng, shape, scale: scale * rng.weibull(np.broadcast_to(shape, np.broadcast(shape, scale).shape)),
    ),
    "beta": (("a", "b"), lambda rng, a, b: rng.beta(a, b)),
    "uniform": (("lower", "upper"), lambda rng, lower, upper: rng.uniform(lower, upper)),
    "pareto": (
        ("y_min", "alpha"),
        lambda rng, y_min, alpha: y_min * (1.0 + rng.pareto(np.broadcast_to(alpha, np.broadcast(y_min, alpha).shape))),
    ),
    "von_mises": (("loc", "kappa"), lambda rng, loc, kappa: rng.vonmises(loc, kappa)),
    "bernoulli_logit": (
        ("logit",),
        lambda rng, logit: (rng.random(np.shape(logit)) < _expit(logit)).astype(np.float64),
    ),
    "binomial_logit": (
        ("trials", "logit"),
        lambda rng, trials, logit: rng.binomial(trials.astype(np.int64), _expit(logit)).astype(np.float64),
    ),
    "beta_binomial": (
        ("trials", "a", "b"),
        lambda rng, trials, a, b: rng.binomial(trials.astype(np.int64), rng.beta(a, b)).astype(np.float64),
    ),
    "poisson": (("rate",), lambda rng, rate: rng.poisson(rate).astype(np.float64)),
    "poisson_log": (("log_rate",), lambda rng, log_rate: rng.poisson(np.exp(log_rate)).astype(np.float64)),
    "neg_binomial_2": (("mu", "phi"), _neg_binomial_2_draw),
    "neg_binomial_2_log": (("log_mu", "phi"), lambda rng, log_mu, phi: _neg_binomial_2_draw(rng, np.exp(log_mu), phi)),
}


def _glm_draw(rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    elementwise, extra = _GLMS[factor.kernel]
    eta = _linear_predictor(inputs)
    others = [_aligned(inputs[n], 1) for n in extra]
    with np.errstate(over="ignore"):
        return PREDICTIVE_KERNELS[elementwise][1](rng, eta, *others)


def _categorical_logit_glm_draw(
    rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]
) -> np.ndarray:
    x, beta = inputs["X"][0], inputs["beta"]
    alpha = inputs["alpha"]
    logits = np.einsum("nk,skc->snc", x, beta) + alpha.reshape(alpha.shape[0], 1, -1)
    # Gumbel-max: the argmax of logits + Gumbel noise is a draw from softmax(logits)
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1).astype(np.float64)


# The samplers of the kernels that are not element-wise: their inputs have one entry per draw
# (leading axis S), data included (predictive_draws broadcasts them).


def _categories(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """values (S, C) or (S, *y.shape, C) -> (S, *y.shape, C): one row of categories per observation."""
    return np.broadcast_to(_aligned(values, y.ndim + 1), (values.shape[0], *y.shape, values.shape[-1]))


def _categorical_draw(rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """The first category whose cumulative probability exceeds a uniform draw."""
    cumulative = np.cumsum(_categories(inputs["theta"], np.asarray(factor.value)), axis=-1)
    u = rng.random((*cumulative.shape[:-1], 1)) * cumulative[..., -1:]
    return np.minimum(np.sum(cumulative <= u, axis=-1), cumulative.shape[-1] - 1).astype(np.float64)


def _categorical_logit_draw(
    rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]
) -> np.ndarray:
    logits = _categories(inputs["logits"], np.asarray(factor.value))
    # Gumbel-max: the argmax of logits + Gumbel noise is a draw from softmax(logits)
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1).astype(np.float64)


def _multinomial_logit_draw(
    rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]
) -> np.ndarray:
    """Each row's total count (the observed row's) spread over the categories by softmax(gamma)."""
    y = np.asarray(factor.value, dtype=np.float64)
    gamma = _aligned(inputs["gamma"], y.ndim)
    p = np.broadcast_to(special.softmax(gamma, axis=-1), (gamma.shape[0], *y.shape))
    totals = np.broadcast_to(y.sum(axis=-1).astype(np.int64), p.shape[:-1])
    return rng.multinomial(totals, p).astype(np.float64)


def _ordinal_draw(rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """The number of cutpoints below a latent eta + noise (logistic or standard normal)."""
    y = np.asarray(factor.value)
    eta = np.broadcast_to(_aligned(inputs["eta"], y.ndim), (inputs["eta"].shape[0], *y.shape))
    noise = rng.logistic(size=eta.shape) if factor.kernel == "ordered_logistic" else rng.standard_normal(eta.shape)
    cut = _aligned(inputs["cutpoints"], y.ndim + 1)  # (S, 1, ..., C - 1)
    return np.sum(cut < (eta + noise)[..., None], axis=-1).astype(np.float64)


def _multi_normal_draw(rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """mu + L z for standard normal z, row by row."""
    mu, chol = _multi_normal_parts(factor, inputs)
    noise = rng.standard_normal(mu.shape).reshape(mu.shape[0], -1, mu.shape[-1])
    return mu + np.einsum("sij,snj->sni", chol, noise).reshape(mu.shape)


def _dirichlet_draw(rng: np.random.Generator, factor: ObservedFactor, inputs: Dict[str, np.ndarray]) -> np.ndarray:
    """Independent Gamma(alpha_k) draws, normalised (numpy's dirichlet takes one alpha at a time)."""
    theta = np.asarray(factor.value)
    alpha = np.broadcast_to(_aligned(inputs["alpha"], theta.ndim), (inputs["alpha"].shape[0], *theta.shape))
    g = rng.standard_gamma(alpha)
    return g / g.sum(axis=-1, keepdims=True)


# The samplers of the kernels that are not element-wise: rng, factor, inputs -> (S, *y.shape).
_NON_ELEMENTWISE_SAMPLERS: Dict[
    str, Callable[[np.random.Generator, ObservedFactor, Dict[str, np.ndarray]], np.ndarray]
] = {
    **{k: _glm_draw for k in _GLMS},
    "categorical_logit_glm": _categorical_logit_glm_draw,
    "categorical": _categorical_draw,
    "categorical_logit": _categorical_logit_draw,
    "multinomial_logit": _multinomial_logit_draw,
    "ordered_logistic": _ordinal_draw,
    "ordered_probit": _ordinal_draw,
    "multi_normal": _multi_normal_draw,
    "multi_normal_cholesky": _multi_normal_draw,
    "dirichlet": _dirichlet_draw,
}


def predictive_draws(
    model: Model,
    zeta: np.ndarray,
    seed: int,
    factors: Optional[List[ObservedFactor]] = None,
    warn: bool = True,
    stacklevel: int = 1,
) -> Dict[str, np.ndarray]:
    """New observations of every observed factor, one set per draw of the parameters.

    Parameters
    ----------
    model : Model
        The model.
    zeta : ndarray
        The draws in the unconstrained space, shape ``(dim, S)``.
    seed : int
        The seed of the numpy Generator that draws the observations.
    factors : list of ObservedFactor, optional
        Default: ``observed_factors(model)``.
    warn : bool, default True
        Warn, naming them, about factors whose kernel has no sampler here (left out).
    stacklevel : int, default 1
        Where the warning points (as for :func:`pointwise_log_likelihood`).

    Returns
    -------
    dict of str to ndarray
        By factor name, shape ``(S,) + the observations' shape`` (as
        :func:`pointwise_log_likelihood`), float64.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> from fastvi._observed import predictive_draws
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("poisson_log", np.array([3.0, 0.0, 1.0]), log_rate=w, name="counts")
    >>> draws = predictive_draws(m, np.zeros((1, 4000)), seed=0)     # rate exp(0) = 1
    >>> draws["counts"].shape, round(float(draws["counts"].mean()), 1)
    ((4000, 3), 1.0)
    """
    factors = observed_factors(model) if factors is None else factors
    supported = [f for f in factors if f.kernel in PREDICTIVE_KERNELS or f.kernel in _NON_ELEMENTWISE_SAMPLERS]
    left_out = [f for f in factors if f not in supported]
    if left_out and warn:
        warnings.warn(
            "no predictive draws for "
            + ", ".join(f"{f.name!r} (kernel {f.kernel!r})" for f in left_out)
            + ": the kernel has no sampler here; left out of posterior_predictive",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x50505244])))
    s = zeta.shape[1]
    out: Dict[str, np.ndarray] = {}
    for first, batch in _draw_batches(zeta, model._core.rows):
        values = model._core.values(batch)
        for f in supported:
            inputs = _input_values(model, f, values)
            if f.kernel in _NON_ELEMENTWISE_SAMPLERS:
                # every input with one entry per draw, so that each draw gets its own
                # observations even where the inputs are data
                full = {k: np.broadcast_to(v, (batch.shape[1], *v.shape[1:])) for k, v in inputs.items()}
                part = _NON_ELEMENTWISE_SAMPLERS[f.kernel](rng, f, full)
            else:
                names, sampler = PREDICTIVE_KERNELS[f.kernel]
                ndim = max([f.value.ndim] + [inputs[n].ndim - 1 for n in names])
                args = _broadcast_inputs(inputs, names, ndim)
                # every input at full size, so that each draw of the parameters gets its own
                # observations even where the inputs are data
                shape = (batch.shape[1], *np.broadcast_shapes(f.value.shape, *(a.shape[1:] for a in args)))
                with np.errstate(over="ignore"):
                    part = sampler(rng, *(np.broadcast_to(a, shape) for a in args))
            if f.name not in out:
                out[f.name] = np.empty((s, *part.shape[1:]))
            out[f.name][first : first + batch.shape[1]] = part
    return out
