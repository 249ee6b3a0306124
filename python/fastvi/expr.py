"""Expressions: parameters combined with numbers, arrays and each other, evaluated in C++.

Every operation adds a node to the model's graph in C++; the graph is evaluated for the whole
batch of draws each step, with reverse-mode gradients and no Python in the loop.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._validate import as_data, check_size, element_count

Number = Union[int, float]


def _bounds_of_data(arr: np.ndarray) -> Tuple[float, float]:
    return (float(arr.min()), float(arr.max())) if arr.size else (-math.inf, math.inf)


class Expr:
    """A value computed from parameters: a parameter itself, or an expression built from them.

    Supports ``+ - * /`` with numbers, numpy arrays and other expressions (numpy broadcasting),
    ``X @ beta`` with a data matrix, indexing and slicing (``a[group]``, ``beta[1:]``), and the
    functions :func:`exp`, :func:`log`, :func:`log1p_exp`, :func:`inv_logit` and :func:`sum`.
    Any kernel input accepts an expression.

    Every operation adds a node to the model's graph in C++, evaluated for the whole batch of
    draws at each fit step with reverse-mode gradients (no Python in the loop). Expressions are
    not constructed directly: they come from :meth:`Model.param` and from operations on
    parameters and other expressions of the same model.

    Attributes
    ----------
    shape : tuple of int
        The expression's shape (numpy broadcasting of its operands).
    lower, upper : float
        Bounds the expression is known to respect (``-inf`` / ``inf`` when unknown). They are
        tracked only where they are easy and certain (a sum of bounded terms, a product or
        quotient of non-negative ones, ``exp``, ``inv_logit``, ...), and let an expression pass
        a kernel's support check: ``scale=tau * s`` with ``tau`` and ``s`` positive parameters.
    size : int
        The number of elements.
    ndim : int
        The number of dimensions.

    Raises
    ------
    ValueError
        When an operation combines expressions of different models, shapes that do not
        broadcast, data containing NaN or inf, or divides by data that contains 0.
    TypeError
        On ``bool(expr)``, iteration, ``expr @ X`` (only ``X @ expr`` with a data matrix ``X``) and
        indexing with an expression.
    IndexError
        When an index is out of range.

    See Also
    --------
    Model.deterministic : Record an expression so that its values appear in draws and summaries.
    exp, log, log1p_exp, inv_logit, sum : Element-wise functions and the sum of an expression.

    Examples
    --------
    A non-centred hierarchical effect, recorded as a deterministic:

    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> mu, tau = m.param("mu"), m.param("tau", lower=0.0)
    >>> theta_raw = m.param("theta_raw", shape=(8,))
    >>> theta = m.deterministic("theta", mu + tau * theta_raw)
    >>> theta.shape
    (8,)

    A linear predictor and bounds:

    >>> X = np.ones((5, 8))
    >>> (X @ theta).shape, theta[1:].shape, theta[np.array([0, 0, 3])].shape
    ((5,), (7,), (3,))
    >>> (2.0 * tau).lower, (tau + 1.0).lower, (mu * tau).lower
    (0.0, 1.0, -inf)
    """

    # numpy defers to our reflected operators, so X @ beta and 2.0 * beta build expressions
    __array_ufunc__ = None

    def __init__(
        self,
        model,
        block: int,
        shape: Tuple[int, ...],
        lower: float = -math.inf,
        upper: float = math.inf,
        label: str = "expression",
    ):
        self._model = model
        self._block = block
        self.shape = tuple(shape)
        self.lower = lower
        self.upper = upper
        self._label = label

    @property
    def size(self) -> int:
        """The number of elements (1 for a scalar).

        Examples
        --------
        >>> import fastvi as fv
        >>> fv.Model().param("beta", shape=(2, 3)).size
        6
        """
        return element_count(self.shape)

    @property
    def ndim(self) -> int:
        """The number of dimensions (0 for a scalar).

        Examples
        --------
        >>> import fastvi as fv
        >>> fv.Model().param("beta", shape=(2, 3)).ndim
        2
        """
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<Expr {self._label} shape={self.shape}>"

    # An expression is pickled with its model (rebuilt from the model's build log, see Model);
    # the block id stays valid because the rebuild adds the same nodes in the same order. A copy
    # is a deep copy: a shallow one would share the C++ model with the original.
    def __copy__(self) -> Expr:
        return copy.deepcopy(self)

    # ---- building nodes -------------------------------------------------------------------------

    def _operand(self, input_name: str) -> tuple:
        """This expression as the input `input_name` of a node or factor, in the form the model's
        build log records (Model._decode turns it into the C++ operand)."""
        return ("block", input_name, self._block)

    def _new(self, block: int, shape, lower: float, upper: float, label: str) -> Expr:
        return Expr(self._model, block, tuple(shape), lower, upper, label)

    def _coerce(self, other: Any, what: str):
        """(operand, shape, bounds, label, data) for the other side of a binary operation; data
        is None for an expression."""
        if isinstance(other, Expr):
            if other._model is not self._model:
                raise ValueError(f"{what}: cannot combine expressions of different models")
            return other._operand(what), other.shape, (other.lower, other.upper), other._label, None
        arr = as_data(other, f"{what}: operand")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: operand contains NaN or inf")
        return ("data", what, arr), arr.shape, _bounds_of_data(arr), "data", arr

    def _binary(self, other: Any, op: str, reverse: bool = False) -> Expr:
        name = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
        o_op, o_shape, o_bounds, o_label, o_data = self._coerce(other, f"'{name}'")
        s_op, s_bounds = self._operand(f"'{name}'"), (self.lower, self.upper)
        a, b = (o_op, s_op) if reverse else (s_op, o_op)
        ab, bb = (o_bounds, s_bounds) if reverse else (s_bounds, o_bounds)
        la, lb = (o_label, self._label) if reverse else (self._label, o_label)
        sa, sb = (tuple(o_shape), self.shape) if reverse else (self.shape, tuple(o_shape))
        label = f"({la} {name} {lb})"
        try:
            shape = np.broadcast_shapes(sa, sb)
        except ValueError:
            raise ValueError(f"{label}: shapes {sa} and {sb} do not broadcast") from None
        check_size(shape, label)
        if op == "div" and not reverse:
            _check_divisor(o_data, label)
        lower, upper = _interval(op, ab, bb)
        block = self._model._build("add_binary", op, a, b, label, lower, upper)
        return self._new(block, shape, lower, upper, label)

    def __add__(self, other):
        return self._binary(other, "add")

    def __radd__(self, other):
        return self._binary(other, "add", reverse=True)

    def __sub__(self, other):
        return self._binary(other, "sub")

    def __rsub__(self, other):
        return self._binary(other, "sub", reverse=True)

    def __mul__(self, other):
        return self._binary(other, "mul")

    def __rmul__(self, other):
        return self._binary(other, "mul", reverse=True)

    def __truediv__(self, other):
        return self._binary(other, "div")

    def __rtruediv__(self, other):
        return self._binary(other, "div", reverse=True)

    def __neg__(self) -> Expr:
        return _unary(self, "neg", -self.upper, -self.lower)

    def __pos__(self) -> Expr:
        return self

    def __rmatmul__(self, x: Any) -> Expr:
        X = as_data(x, "X @ v: X")
        label = f"(X @ {self._label})"
        if X.ndim != 2:
            raise ValueError(f"{label}: X must be a 2-D data matrix, got shape {X.shape}")
        if self.ndim != 1 or self.shape[0] != X.shape[1]:
            raise ValueError(f"{label}: X has shape {X.shape}, so v must have shape ({X.shape[1]},), got {self.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{label}: X contains NaN or inf")
        block = self._model._build("add_matvec", X, self._operand("v"), label)
        return self._new(block, (X.shape[0],), -math.inf, math.inf, label)

    def __matmul__(self, other: Any) -> Expr:
        raise TypeError("only data @ expression is supported (write X @ beta with X a data matrix)")

    def __getitem__(self, key: Any) -> Expr:
        if isinstance(key, Expr):
            raise TypeError("indices must be data (integer arrays, slices), not expressions")
        flat = np.arange(self.size).reshape(self.shape)
        try:
            picked = flat[key]
        except IndexError as err:
            raise IndexError(f"{self._label}[...]: {err}") from None
        picked = np.asarray(picked)
        label = f"{self._label}[...]"
        index = picked.ravel().astype(np.int64)
        index.setflags(write=False)  # kept in the model's build log
        block = self._model._build("add_gather", self._operand("index"), index, picked.shape, label)
        return self._new(block, picked.shape, self.lower, self.upper, label)

    def sum(self) -> Expr:
        """The sum of all elements, a scalar expression: the same as ``fv.sum(self)``.

        Returns
        -------
        Expr
            A scalar expression.

        See Also
        --------
        sum : The function form.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> b = m.param("b", shape=(3,))
        >>> total = m.deterministic("total", b.sum())
        >>> float(m.constrain(np.array([1.0, 2.0, 3.0]))["total"])
        6.0
        """
        return sum(self)

    def __bool__(self):
        raise TypeError("an expression has no truth value: its value differs from draw to draw")

    # Python's sum() and len() would be surprising on an expression
    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar expression")
        return self.shape[0]

    def __iter__(self):
        raise TypeError("iterate over an expression by indexing it (x[i]) or use fv.sum(x)")


def _check_divisor(data: Optional[np.ndarray], label: str) -> None:
    """Division by data that contains 0 gives inf or NaN at every draw: every fit step would be
    skipped, so it is refused when the expression is built."""
    if data is None:
        return
    zeros = np.flatnonzero(data == 0)
    if zeros.size:
        raise ValueError(f"{label}: division by zero (the divisor contains 0 at flat index {int(zeros[0])})")


def _interval(op: str, a: Tuple[float, float], b: Tuple[float, float]) -> Tuple[float, float]:
    """Bounds of a (op) b given bounds of a and b, kept only where they are easy and certain; they
    let `scale=tau * s` pass a kernel's positivity check when both factors are positive."""
    (la, ua), (lb, ub) = a, b
    with np.errstate(invalid="ignore"):
        if op == "add":
            return la + lb, ua + ub
        if op == "sub":
            return la - ub, ua - lb
        if op == "mul" and la >= 0 and lb >= 0:
            return la * lb, ua * ub
        if op == "div" and la >= 0 and lb > 0:
            return la / ub, (ua / lb)
    return -math.inf, math.inf


def _unary(x: Expr, op: str, lower: float, upper: float) -> Expr:
    if not isinstance(x, Expr):
        raise TypeError(f"fv.{op} takes an expression or parameter; use numpy for data")
    label = f"{op}({x._label})"
    block = x._model._build("add_unary", op, x._operand("x"), label, lower, upper)
    return x._new(block, x.shape, lower, upper, label)


def exp(x: Expr) -> Expr:
    """Element-wise exp of an expression.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``exp(x)``, shaped like ``x``, with ``lower`` 0: it passes a kernel's check that an input
        is positive (``scale=fv.exp(log_sigma)``).

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    log, log1p_exp

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> log_sigma = m.param("log_sigma")
    >>> sigma = m.deterministic("sigma", fv.exp(log_sigma))
    >>> sigma.lower
    0.0
    >>> m.add("normal", np.array([0.3, -0.2]), loc=0.0, scale=sigma)
    >>> round(float(m.constrain(np.array([np.log(2.0)]))["sigma"]), 6)
    2.0
    """
    return _unary(x, "exp", 0.0, math.inf)


def log(x: Expr) -> Expr:
    """Element-wise natural log of an expression.

    A draw at which ``x <= 0`` gives NaN or ``-inf``: the fit skips that step (see :func:`fit`),
    so apply it to expressions that are positive (a parameter declared with ``lower=0``, say).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``log(x)``, shaped like ``x``, with no known bounds.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    exp

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> x = m.param("x", lower=0.0)
    >>> log_x = m.deterministic("log_x", fv.log(x))
    >>> values = m.constrain(m.unconstrain({"x": 2.0}))
    >>> round(float(values["log_x"]), 4)
    0.6931
    """
    return _unary(x, "log", -math.inf, math.inf)


def log1p_exp(x: Expr) -> Expr:
    """Element-wise log(1 + exp(x)) (softplus), computed without overflow.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``log(1 + exp(x))``, shaped like ``x``, with ``lower`` 0.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    exp, inv_logit

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> z = m.param("z")
    >>> softplus = m.deterministic("softplus", fv.log1p_exp(z))
    >>> round(float(m.constrain(np.array([0.0]))["softplus"]), 4)
    0.6931
    >>> float(m.constrain(np.array([800.0]))["softplus"])    # exp(800) would overflow
    800.0
    """
    return _unary(x, "log1p_exp", 0.0, math.inf)


def inv_logit(x: Expr) -> Expr:
    """Element-wise 1 / (1 + exp(-x)), the logistic function.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``1 / (1 + exp(-x))``, shaped like ``x``, with bounds 0 and 1: it passes a kernel's check
        for a "unit_interval" input.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    log1p_exp

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> z = m.param("z")
    >>> p = m.deterministic("p", fv.inv_logit(z))
    >>> p.lower, p.upper
    (0.0, 1.0)
    >>> float(m.constrain(np.array([0.0]))["p"])
    0.5
    """
    return _unary(x, "inv_logit", 0.0, 1.0)


def sum(x: Expr) -> Expr:
    """The sum of all elements of an expression (a scalar expression).

    Python's built-in ``sum`` does not work on an expression (iterating over one is a
    TypeError); this one adds a single node to the graph.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        A scalar expression. Its lower bound is ``size * x.lower`` when ``x.lower >= 0`` (else
        none), its upper bound ``size * x.upper`` when ``x.upper`` is finite.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    Expr.sum : The method form.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> b = m.param("b", shape=(3,), lower=0.0)
    >>> total = m.deterministic("total", fv.sum(b))
    >>> total.shape, total.lower
    ((), 0.0)
    >>> float(m.constrain(np.zeros(3))["total"])    # each element is 0 + exp(0) = 1
    3.0
    """
    if not isinstance(x, Expr):
        raise TypeError("fv.sum takes an expression or parameter; use numpy for data")
    label = f"sum({x._label})"
    lower = x.lower * x.size if x.lower >= 0 else -math.inf
    upper = math.inf if x.upper == math.inf else x.upper * x.size
    block = x._model._build("add_sum", x._operand("x"), label, lower, upper)
    return x._new(block, (), lower, upper, label)
