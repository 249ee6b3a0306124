"""Linear algebra for Gaussian processes and learned covariances: ``fv.exp_quad_cov``,
``fv.add_diag`` and ``fv.cholesky``.

Each builds one C++ node (linalg_nodes.cpp) evaluated per draw with an analytic reverse pass, so
a GP regression is one line::

    L = fv.cholesky(fv.add_diag(fv.exp_quad_cov(x, alpha, rho), sigma**2))
    model.add("multi_normal_cholesky", y, mu=0.0, L=L)

With data only (numbers and arrays) each function returns a numpy array computed here, so the
same code serves hyperparameters that are fixed and ones that are fitted. Shapes and data are
checked when the expression is built, with errors that name the argument.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._data import Data
from ._validate import as_data
from .expr import Expr, _bounds_of_data, _interval, _square_interval

__all__ = ["add_diag", "cholesky", "exp_quad_cov"]

# Data covariance matrices must be symmetric to this fraction of sqrt(K_ii K_jj) (the scale an
# (i, j) element lives on), as the multi_normal kernel checks its data Sigma.
_SYMMETRY_RTOL = 1e-8


def _model_of(what: str, *args: Any) -> Any:
    """The model of the expressions among args (None if there are none); they must share it."""
    models = [a._model for a in args if isinstance(a, Expr)]
    if any(m is not models[0] for m in models[1:]):
        raise ValueError(f"fv.{what}: cannot combine expressions of different models")
    return models[0] if models else None


def _operand(what: str, name: str, v: Any) -> Tuple[tuple, Tuple[int, ...], Tuple[float, float], str]:
    """(build-log operand, shape, bounds, label) of an expression or finite data argument."""
    if isinstance(v, Expr):
        return v._operand(name), v.shape, (v.lower, v.upper), v._label
    arr = _data(what, name, v)
    return ("data", name, arr), arr.shape, _bounds_of_data(arr), "data"


def _data(what: str, name: str, v: Any) -> np.ndarray:
    arr = as_data(v, f"fv.{what}: {name}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"fv.{what}: {name} contains NaN or inf")
    return arr


def _square_shape(what: str, shape: Tuple[int, ...]) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"fv.{what}: K must be square (N, N), got {shape}")
    return shape[0]


def _points(x: Any) -> np.ndarray:
    """x as an (N, D) array of points (a data container's current values)."""
    if isinstance(x, Expr):
        raise TypeError("fv.exp_quad_cov: x must be data (the points), not an expression")
    arr = _data("exp_quad_cov", "x", x.value if isinstance(x, Data) else x)
    if arr.ndim not in (1, 2):
        raise ValueError(f"fv.exp_quad_cov: x must have shape (N,) or (N, D), got {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"fv.exp_quad_cov: x needs at least one point, got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def _sq_dist(points: np.ndarray) -> np.ndarray:
    """Squared distances, summed coordinate by coordinate (as the C++ node does)."""
    return ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)


def exp_quad_cov(x: Any, alpha: Any, rho: Any) -> Union[Expr, np.ndarray]:
    """The exponentiated quadratic (squared exponential, RBF) covariance of points ``x``.

    ``K[i, j] = alpha**2 * exp(-|x_i - x_j|**2 / (2 * rho**2))``: Stan's ``gp_exp_quad_cov``.
    The squared distances are computed once, when the expression is built; each draw then costs
    N (N + 1) / 2 exponentials, and the gradients with respect to ``alpha`` and ``rho`` are
    analytic.

    Parameters
    ----------
    x : array_like or Data
        The points (data, or a data container that ``Model.set_data`` can replace): shape (N,)
        for scalars or (N, D) for D-dimensional points.
    alpha : Expr or float
        The marginal standard deviation, a scalar parameter or expression, or a number > 0.
    rho : Expr or float
        The length scale, a scalar parameter or expression, or a number > 0.

    Returns
    -------
    Expr or numpy.ndarray
        The (N, N) covariance, symmetric, with ``lower`` 0. A numpy array when ``alpha`` and
        ``rho`` are both numbers.

    Raises
    ------
    ValueError
        If ``x`` is not (N,) or (N, D) or not finite, ``alpha`` or ``rho`` is not a scalar, a
        number is not > 0, or the expressions belong to different models.
    TypeError
        If ``x`` is an expression.

    See Also
    --------
    add_diag : Add noise variance or jitter to the diagonal.
    cholesky : Factor the covariance for ``multi_normal_cholesky``.

    Examples
    --------
    A GP regression's marginal likelihood, ``y ~ MultiNormal(0, K + sigma^2 I)``:

    >>> import numpy as np, fastvi as fv
    >>> x = np.linspace(0.0, 5.0, 20)
    >>> y = np.sin(x)
    >>> m = fv.Model()
    >>> alpha, rho = m.param("alpha", lower=0.0), m.param("rho", lower=0.0)
    >>> sigma = m.param("sigma", lower=0.0)
    >>> K = fv.exp_quad_cov(x, alpha, rho)
    >>> K.shape, K.lower
    ((20, 20), 0.0)
    >>> m.add("multi_normal_cholesky", y, mu=0.0, L=fv.cholesky(fv.add_diag(K, sigma**2)))

    With numbers for ``alpha`` and ``rho`` it is a numpy array:

    >>> fv.exp_quad_cov(np.array([0.0, 1.0]), 2.0, 1.0).round(4).tolist()
    [[4.0, 2.4261], [2.4261, 4.0]]
    """
    points = _points(x)
    model = _model_of("exp_quad_cov", alpha, rho)
    if model is None and isinstance(x, Data):  # a node of the container's model, to follow set_data
        model = x._model
    for name, v in (("alpha", alpha), ("rho", rho)):
        if isinstance(v, Expr):
            if v.shape != ():
                raise ValueError(f"fv.exp_quad_cov: {name} must be a scalar, got shape {v.shape}")
        else:
            arr = _data("exp_quad_cov", name, v)
            if arr.shape != ():
                raise ValueError(f"fv.exp_quad_cov: {name} must be a scalar, got shape {arr.shape}")
            if not arr > 0:
                raise ValueError(f"fv.exp_quad_cov: {name} must be > 0, got {float(arr)!r}")
    if model is None:
        a, r = float(alpha), float(rho)
        return a * a * np.exp(-_sq_dist(points) / (2.0 * r * r))
    a_op, _, a_bounds, a_label = _operand("exp_quad_cov", "alpha", alpha)
    r_op, _, _, r_label = _operand("exp_quad_cov", "rho", rho)
    upper = _square_interval(*a_bounds)[1]
    label = f"exp_quad_cov(x, {a_label}, {r_label})"
    points.setflags(write=False)  # kept in the model's build log
    n = points.shape[0]
    if isinstance(x, Data):  # recorded by name; the model reshapes its values into points
        if x._model is not model:
            raise ValueError(f"fv.exp_quad_cov: data container {x.name!r} belongs to another model")
        model._build("check_data", x.name, -math.inf, math.inf, False, label)
        block = model._build("add_exp_quad_cov", ("container", "x", x.name), a_op, r_op, label, upper)
        return Expr(model, block, (n, n), 0.0, upper, label)
    block = model._build("add_exp_quad_cov", points, a_op, r_op, label, upper)
    return Expr(model, block, (n, n), 0.0, upper, label)


def add_diag(K: Any, d: Any) -> Union[Expr, np.ndarray]:
    """``K`` with ``d`` added to its diagonal: ``K + diag(d)`` (Stan's ``add_diag``).

    The usual way to add a GP's noise variance (``sigma**2``) or a small jitter before
    :func:`cholesky`.

    Parameters
    ----------
    K : Expr or array_like
        An (N, N) matrix: an expression or data.
    d : Expr or array_like
        What to add: a scalar, or one value per diagonal element (shape (N,)); an expression or
        data.

    Returns
    -------
    Expr or numpy.ndarray
        The (N, N) sum; a numpy array when both arguments are data. Its bounds cover ``K``'s and
        ``K``'s plus ``d``'s.

    Raises
    ------
    ValueError
        If ``K`` is not square, ``d`` is neither a scalar nor (N,), data are not finite, or the
        expressions belong to different models.

    See Also
    --------
    exp_quad_cov, cholesky

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> s = m.param("s", lower=0.0)
    >>> K = m.deterministic("K", fv.add_diag(np.ones((2, 2)), s))
    >>> m.constrain(m.unconstrain({"s": 0.5}))["K"].tolist()
    [[1.5, 1.0], [1.0, 1.5]]
    >>> fv.add_diag(np.zeros((2, 2)), np.array([1.0, 2.0])).tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    """
    model = _model_of("add_diag", K, d)
    k_op, k_shape, k_bounds, k_label = _operand("add_diag", "K", K)
    d_op, d_shape, d_bounds, d_label = _operand("add_diag", "d", d)
    n = _square_shape("add_diag", k_shape)
    if d_shape not in ((), (n,)):
        raise ValueError(f"fv.add_diag: d must be a scalar or have shape ({n},), got {d_shape}")
    if model is None:
        return k_op[2] + np.diag(np.broadcast_to(d_op[2], (n,)))
    on_diag = _interval("add", k_bounds, d_bounds)
    lower, upper = min(k_bounds[0], on_diag[0]), max(k_bounds[1], on_diag[1])
    label = f"add_diag({k_label}, {d_label})"
    block = model._build("add_add_diag", k_op, d_op, label, lower, upper)
    return Expr(model, block, (n, n), lower, upper, label)


def _check_covariance(a: np.ndarray) -> Optional[str]:
    """Why the data matrix a is not symmetric positive-definite (None if it is)."""
    diag = np.diag(a)
    bad = np.flatnonzero(~(diag > 0))
    if bad.size:
        i = int(bad[0])
        return f"K[{i}, {i}] = {float(a[i, i])!r} is not > 0"
    scale = np.sqrt(np.outer(diag, diag))
    asym = np.abs(a - a.T) > _SYMMETRY_RTOL * scale
    if asym.any():
        i, j = (int(v) for v in np.argwhere(asym)[0])
        return f"it is not symmetric: K[{i}, {j}] = {float(a[i, j])!r} but K[{j}, {i}] = {float(a[j, i])!r}"
    return None


def cholesky(K: Any) -> Union[Expr, np.ndarray]:
    """The lower-triangular Cholesky factor ``L`` of a symmetric positive-definite matrix ``K``
    (``K = L @ L.T``, ``L``'s diagonal positive, its upper triangle 0): Stan's
    ``cholesky_decompose``.

    Computed per draw in C++ (O(N^3)), with the symmetric reverse pass of Murray (2016). The factor
    is taken of ``(K + K.T) / 2``, so for a symmetric ``K`` it is the usual one, and the gradient
    is correct however ``K`` was built. A draw at which ``K`` is not positive-definite (a
    length scale or variance that makes it numerically singular, say) gets NaN in all of ``L``:
    its log density is NaN and the fit skips it, as it does any invalid draw. Add a small jitter
    with :func:`add_diag` where ``K`` can come close to singular.

    Parameters
    ----------
    K : Expr or array_like
        An (N, N) symmetric positive-definite matrix: an expression or data.

    Returns
    -------
    Expr or numpy.ndarray
        ``L``, shape (N, N); a numpy array for data (``numpy.linalg.cholesky`` of it).

    Raises
    ------
    ValueError
        If ``K`` is not square, or is data that is not finite, not symmetric (to 1e-8 relative)
        or not positive-definite.

    See Also
    --------
    exp_quad_cov, add_diag

    Examples
    --------
    A covariance built from parameters, factored for ``multi_normal_cholesky``:

    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> s = m.param("s", shape=(2,), lower=0.0)
    >>> L = m.deterministic("L", fv.cholesky(fv.add_diag(np.full((2, 2), 0.5), s)))
    >>> m.add("multi_normal_cholesky", np.array([0.3, -0.1]), L=L)
    >>> m.constrain(m.unconstrain({"s": np.array([0.5, 0.5])}))["L"].round(4).tolist()
    [[1.0, 0.0], [0.5, 0.866]]

    Data gives numpy's factor, and a matrix that is not positive-definite is refused:

    >>> fv.cholesky(np.array([[4.0, 2.0], [2.0, 2.0]])).tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    >>> fv.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]))
    Traceback (most recent call last):
        ...
    ValueError: fv.cholesky: K must be symmetric positive-definite (its Cholesky factorisation fails)
    """
    if isinstance(K, Expr):
        n = _square_shape("cholesky", K.shape)
        label = f"cholesky({K._label})"
        block = K._model._build("add_cholesky", K._operand("K"), label)
        return Expr(K._model, block, (n, n), -math.inf, math.inf, label)
    a = _data("cholesky", "K", K)
    _square_shape("cholesky", a.shape)
    why = _check_covariance(a)
    if why is not None:
        raise ValueError(f"fv.cholesky: K must be symmetric positive-definite ({why})")
    try:
        return np.linalg.cholesky(0.5 * (a + a.T))
    except np.linalg.LinAlgError:
        pass
    raise ValueError("fv.cholesky: K must be symmetric positive-definite (its Cholesky factorisation fails)")
