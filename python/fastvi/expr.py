"""Expressions: parameters combined with numbers, arrays and each other, evaluated in C++.

Every operation adds a node to the model's graph in C++; the graph is evaluated for the whole
batch of draws each step, with reverse-mode gradients and no Python in the loop.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _data
from ._data import Data
from ._validate import as_data, check_size, element_count

Number = Union[int, float]


def _bounds_of_data(arr: np.ndarray) -> Tuple[float, float]:
    return (float(arr.min()), float(arr.max())) if arr.size else (-math.inf, math.inf)


class Expr:
    """A value computed from parameters: a parameter itself, or an expression built from them.

    Supports ``+ - * / **`` with numbers, numpy arrays and other expressions (numpy broadcasting),
    ``abs(x)``, matrix products ``@`` with data or other expressions, indexing and slicing on any
    axis (``a[group]``, ``beta[1:]``, ``w[:, idx]``), ``.T``, :meth:`reshape`, :meth:`sum`, and
    the functions of this module (:func:`exp`, :func:`log_sum_exp`, :func:`softmax`,
    :func:`concatenate`, ...). numpy's ufuncs and functions dispatch to them (``np.exp(x)``,
    ``np.sum(x, axis=0)``, ``data * x``). Any kernel input accepts an expression, and
    :meth:`Model.factor` adds one to the log density.

    Every operation adds a node to the model's graph in C++, evaluated for the whole batch of
    draws at each fit step with reverse-mode gradients (no Python in the loop). Expressions are
    not constructed directly: they come from :meth:`Model.param` and from operations on
    parameters and other expressions of the same model.

    Attributes
    ----------
    shape : tuple of int
        The expression's shape (numpy broadcasting of its operands).
    lower, upper : float
        Bounds the expression is known to respect (``-inf`` / ``inf`` when unknown), tracked by
        interval arithmetic through every operation (sums, products and quotients of bounded
        terms, ``x ** 2``, ``abs``, monotone functions such as ``exp`` and ``inv_logit``,
        ``softmax`` in [0, 1], ...). They let an expression pass a kernel's support check:
        ``scale=tau * s`` or ``scale=1 / precision`` with positive parameters.
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
        On ``bool(expr)``, iteration, indexing with an expression, and numpy ufuncs or functions
        that have no expression counterpart (the message names them).
    IndexError
        When an index is out of range.

    See Also
    --------
    Model.deterministic : Record an expression so that its values appear in draws and summaries.
    exp, log, sqrt, pow, log_sum_exp, softmax, concatenate : Functions of expressions.
    Model.factor : Add an expression to the log density.

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
    >>> (2.0 * tau).lower, (tau + 1.0).lower, (mu * tau).lower, (1.0 / tau).lower
    (0.0, 1.0, -inf, 0.0)

    numpy functions dispatch to expressions:

    >>> np.exp(theta).lower, np.sum(theta).shape, (X @ theta).shape
    (0.0, (), (5,))
    """

    def __init__(
        self,
        model,
        block: int,
        shape: Tuple[int, ...],
        lower: float = -math.inf,
        upper: float = math.inf,
        label: str = "expression",
        reshaped: bool = False,
    ):
        self._model = model
        self._block = block
        self.shape = tuple(shape)
        self.lower = lower
        self.upper = upper
        self._label = label
        self._reshaped = reshaped  # reads its block's rows with another shape (see reshape)

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
        if self._reshaped:
            return ("reshaped", input_name, self._block, self.shape)
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
        if isinstance(other, Data):
            _same_model(other, self._model, what)
            return ("container", what, other.name), other.shape, _data.sign_bounds(other.value), other.name, None
        arr = as_data(other, f"{what}: operand")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: operand contains NaN or inf")
        return ("data", what, arr), arr.shape, _bounds_of_data(arr), "data", arr

    def _binary(self, other: Any, op: str, reverse: bool = False, bounds: Optional[Tuple[float, float]] = None) -> Expr:
        name = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "log_add_exp": "log_add_exp"}[op]
        o_op, o_shape, o_bounds, o_label, o_data = self._coerce(other, f"'{name}'")
        s_op, s_bounds = self._operand(f"'{name}'"), (self.lower, self.upper)
        a, b = (o_op, s_op) if reverse else (s_op, o_op)
        ab, bb = (o_bounds, s_bounds) if reverse else (s_bounds, o_bounds)
        la, lb = (o_label, self._label) if reverse else (self._label, o_label)
        sa, sb = (tuple(o_shape), self.shape) if reverse else (self.shape, tuple(o_shape))
        label = f"log_add_exp({la}, {lb})" if op == "log_add_exp" else f"({la} {name} {lb})"
        try:
            shape = np.broadcast_shapes(sa, sb)
        except ValueError:
            raise ValueError(f"{label}: shapes {sa} and {sb} do not broadcast") from None
        check_size(shape, label)
        if op == "div" and not reverse:
            _check_divisor(o_data, label)
        lower, upper = bounds if bounds is not None else _interval(op, ab, bb)
        if isinstance(other, Data):  # what this node assumes of the container, checked again by set_data
            # its sign only where the node's bounds depend on it (b * x with an unbounded b does not)
            unbounded = (-math.inf, math.inf)
            relies = bounds is not None or _interval(op, *((unbounded, bb) if reverse else (ab, unbounded))) != (
                lower,
                upper,
            )
            o_lower, o_upper = o_bounds if relies else unbounded
            self._model._build("check_data", other.name, o_lower, o_upper, op == "div" and not reverse, label)
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

    def __pow__(self, p):
        return pow(self, p)

    def __rpow__(self, base):
        return pow(base, self)

    def __neg__(self) -> Expr:
        return _unary(self, "neg")

    def __pos__(self) -> Expr:
        return self

    def __abs__(self) -> Expr:
        return _unary(self, "abs")

    def __rmatmul__(self, x: Any) -> Expr:
        return matmul(x, self)

    def __matmul__(self, other: Any) -> Expr:
        return matmul(self, other)

    # numpy ufuncs and functions called with an expression among their arguments come here (numpy's
    # binary operators too: ndarray * expr calls np.multiply, which defers to this).
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = getattr(ufunc, "__name__", str(ufunc))
        if method != "__call__":
            raise TypeError(f"numpy.{name}.{method} is not supported on fastvi expressions")
        if kwargs:
            raise TypeError(f"numpy.{name}: the arguments {sorted(kwargs)} are not supported on fastvi expressions")
        fn = _UFUNCS.get(name)
        if fn is None:
            raise TypeError(
                f"numpy.{name} is not supported on fastvi expressions (supported ufuncs: {', '.join(sorted(_UFUNCS))})"
            )
        return fn(*inputs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = getattr(func, "__name__", str(func))
        fn = _FUNCTIONS.get(name)
        if fn is None or getattr(np, name, None) is not func:
            raise TypeError(
                f"numpy.{name} is not supported on fastvi expressions "
                f"(supported: {', '.join(sorted(_FUNCTIONS))}, and the ufuncs {', '.join(sorted(_UFUNCS))})"
            )
        try:
            return fn(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"numpy.{name} on a fastvi expression: {err}") from None

    @property
    def T(self) -> Expr:
        """The transpose (axes reversed), as numpy's ``.T``.

        Examples
        --------
        >>> import fastvi as fv
        >>> fv.Model().param("w", shape=(2, 3)).T.shape
        (3, 2)
        """
        return self.transpose()

    def transpose(self, *axes: Any) -> Expr:
        """The expression with its axes permuted (reversed by default), as ``numpy.transpose``.

        Parameters
        ----------
        *axes : int or tuple of int, optional
            The permutation, as numpy takes it (``x.transpose(1, 0, 2)`` or ``x.transpose((1, 0,
            2))``); none reverses the axes.

        Returns
        -------
        Expr
            An expression with the same elements and bounds (a gather node; none for ``ndim < 2``
            without ``axes``).

        Examples
        --------
        >>> import fastvi as fv
        >>> w = fv.Model().param("w", shape=(2, 3, 4))
        >>> w.transpose().shape, w.transpose(1, 0, 2).shape
        ((4, 3, 2), (3, 2, 4))
        """
        order = None if not axes else (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes)
        flat = np.arange(self.size).reshape(self.shape)
        try:
            picked = np.transpose(flat, order)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{self._label}.transpose: {err}") from None
        if picked.shape == self.shape and np.array_equal(picked.ravel(), flat.ravel()):
            return self
        return self._gather(picked, f"{self._label}.T")

    def reshape(self, *shape: Any) -> Expr:
        """The same elements (in C order) with another shape, as ``numpy.reshape``.

        The result reads the same rows of the model's value matrix: no node, no copy.

        Parameters
        ----------
        *shape : int or tuple of int
            The new shape; one dimension may be -1 (inferred).

        Returns
        -------
        Expr
            The reshaped expression, with the same bounds.

        Raises
        ------
        ValueError
            If the shape does not have the expression's number of elements.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w", shape=(6,))
        >>> grid = m.deterministic("grid", w.reshape(2, 3))
        >>> grid.shape, w.reshape(-1, 2).shape
        ((2, 3), (3, 2))
        >>> m.constrain(np.arange(6.0))["grid"].tolist()
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        """
        target = shape[0] if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)) else shape
        try:
            new_shape = np.empty(self.shape, dtype=np.int8).reshape(target).shape
        except (ValueError, TypeError) as err:
            raise ValueError(f"{self._label}.reshape: {err}") from None
        if new_shape == self.shape:
            return self
        return Expr(self._model, self._block, new_shape, self.lower, self.upper, f"{self._label}.reshape", True)

    def _gather(self, picked: np.ndarray, label: str) -> Expr:
        """A node that takes the elements of this expression at the flat indices `picked` (shaped
        like the result)."""
        picked = np.asarray(picked)
        index = picked.ravel().astype(np.int64)
        index.setflags(write=False)  # kept in the model's build log
        block = self._model._build("add_gather", self._operand("index"), index, picked.shape, label)
        return self._new(block, picked.shape, self.lower, self.upper, label)

    def __getitem__(self, key: Any) -> Expr:
        if isinstance(key, Data):  # gather indices that set_data can replace
            _same_model(key, self._model, f"{self._label}[{key.name}]")
            label = f"{self._label}[{key.name}]"
            picked = _data.gather_positions(key.value, self.shape, key.name, label)
            block = self._model._build("add_gather_data", self._operand("index"), key.name, label)
            return self._new(block, picked.shape, self.lower, self.upper, label)
        if isinstance(key, Expr):
            raise TypeError("indices must be data (integer arrays, slices), not expressions")
        flat = np.arange(self.size).reshape(self.shape)
        try:
            picked = flat[key]
        except IndexError as err:
            raise IndexError(f"{self._label}[...]: {err}") from None
        return self._gather(np.asarray(picked), f"{self._label}[...]")

    def sum(self, axis: Any = None) -> Expr:
        """The sum of the elements, of all or along ``axis``: the same as ``fv.sum(self, axis)``.

        Parameters
        ----------
        axis : None, int or tuple of int, default None
            The axes to sum over (None: all, giving a scalar).

        Returns
        -------
        Expr
            The sums.

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
        return sum(self, axis)

    def __bool__(self):
        raise TypeError("an expression has no truth value: its value differs from draw to draw")

    # Python's sum() and len() would be surprising on an expression
    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar expression")
        return self.shape[0]

    def __iter__(self):
        raise TypeError("iterate over an expression by indexing it (x[i]) or use fv.sum(x)")


# ---- bounds -------------------------------------------------------------------------------------


def _nan_to(value: float, fallback: float) -> float:
    return fallback if math.isnan(value) else value


def _mul_interval(a: Tuple[float, float], b: Tuple[float, float]) -> Tuple[float, float]:
    """[a] * [b] over the extended reals (0 * inf counts as 0: an endpoint at infinity is never
    reached)."""
    products = [_nan_to(x * y, 0.0) for x in a for y in b]
    return min(products), max(products)


def _reciprocal_interval(b: Tuple[float, float]) -> Optional[Tuple[float, float]]:
    """[1 / b] when b does not straddle 0 (an endpoint at 0 maps to +-inf), else None."""
    lb, ub = b
    if lb >= 0 and ub > 0:
        return (0.0 if ub == math.inf else 1.0 / ub), (math.inf if lb == 0 else 1.0 / lb)
    if ub <= 0 and lb < 0:
        return (-math.inf if ub == 0 else 1.0 / ub), (-0.0 if lb == -math.inf else 1.0 / lb)
    return None


def _interval(op: str, a: Tuple[float, float], b: Tuple[float, float]) -> Tuple[float, float]:
    """Bounds of a (op) b given bounds of a and b, by interval arithmetic: they let `scale=tau * s`
    or `scale=1 / precision` pass a kernel's positivity check."""
    (la, ua), (lb, ub) = a, b
    with np.errstate(all="ignore"):
        if op == "add":
            return _nan_to(la + lb, -math.inf), _nan_to(ua + ub, math.inf)
        if op == "sub":
            return _nan_to(la - ub, -math.inf), _nan_to(ua - lb, math.inf)
        if op == "mul":
            return _mul_interval(a, b)
        if op == "div":
            inverse = _reciprocal_interval(b)
            if inverse is not None:
                return _mul_interval(a, inverse)
        if op == "log_add_exp":  # between max(a, b) and max(a, b) + log 2
            return max(la, lb), max(ua, ub) + math.log(2.0)
    return -math.inf, math.inf


def _monotone(f: Any, lo: float, hi: float, increasing: bool = True) -> Tuple[float, float]:
    """Bounds of f(x) for x in [lo, hi] and f monotone there (NaN: no bound)."""
    with np.errstate(all="ignore"):
        a, b = float(f(np.float64(lo))), float(f(np.float64(hi)))
    if not increasing:
        a, b = b, a
    return _nan_to(a, -math.inf) + 0.0, _nan_to(b, math.inf) + 0.0  # (+ 0.0: no -0.0)


def _square_interval(lo: float, hi: float) -> Tuple[float, float]:
    if lo >= 0:
        return lo * lo, hi * hi
    if hi <= 0:
        return hi * hi, lo * lo
    return 0.0, max(lo * lo, hi * hi)


def _abs_interval(lo: float, hi: float) -> Tuple[float, float]:
    if lo >= 0:
        return lo, hi
    if hi <= 0:
        return -hi, -lo
    return 0.0, max(-lo, hi)


def _inv_logit_np(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


# the bounds of each element-wise function's values, given its argument's
_UNARY_BOUNDS = {
    "neg": lambda lo, hi: (-hi, -lo),
    "exp": lambda lo, hi: _monotone(np.exp, lo, hi),
    "log": lambda lo, hi: _monotone(np.log, max(lo, 0.0), hi),
    "log1p_exp": lambda lo, hi: _monotone(lambda x: np.logaddexp(0.0, x), lo, hi),
    "inv_logit": lambda lo, hi: _monotone(_inv_logit_np, lo, hi),
    "sqrt": lambda lo, hi: _monotone(np.sqrt, max(lo, 0.0), hi),
    "square": _square_interval,
    "abs": _abs_interval,
    "log1m": lambda lo, hi: _monotone(lambda x: np.log1p(-x), lo, min(hi, 1.0), increasing=False),
    "lgamma": lambda lo, hi: (-math.inf, math.inf),
    "log1p": lambda lo, hi: _monotone(np.log1p, max(lo, -1.0), hi),
    "expm1": lambda lo, hi: _monotone(np.expm1, lo, hi),
    "tanh": lambda lo, hi: _monotone(np.tanh, lo, hi),
    "logit": lambda lo, hi: _monotone(lambda p: np.log(p) - np.log1p(-p), max(lo, 0.0), min(hi, 1.0)),
    "log_inv_logit": lambda lo, hi: _monotone(lambda x: -np.logaddexp(0.0, -x), lo, hi),
}


def _pow_bounds(x: Tuple[float, float], p: Tuple[float, float], p_data: Optional[np.ndarray]) -> Tuple[float, float]:
    """Bounds of x ** p: exact for data exponents on a non-negative base or integer exponents,
    [0, inf] for a non-negative base otherwise."""
    lo, hi = x
    if p_data is not None and p_data.size:
        parts = []
        with np.errstate(all="ignore"):
            for q in np.unique(p_data):
                q = float(q)
                if lo >= 0:
                    parts.append(_monotone(lambda v, q=q: np.power(v, q), lo, hi, increasing=q >= 0))
                elif q == int(q) and int(q) % 2 == 0:
                    base = _abs_interval(lo, hi)
                    parts.append(_monotone(lambda v, q=q: np.power(v, q), *base, increasing=q >= 0))
                elif q == int(q) and q > 0:
                    parts.append(_monotone(lambda v, q=q: np.power(v, q), lo, hi))
                else:
                    return -math.inf, math.inf
        return min(b[0] for b in parts), max(b[1] for b in parts)
    if lo >= 0:
        return 0.0, math.inf
    return -math.inf, math.inf


# ---- element-wise functions ---------------------------------------------------------------------


def _same_model(data: Data, model: Any, what: str) -> None:
    if data._model is not model:
        raise ValueError(f"{what}: data container {data.name!r} belongs to another model")


def _check_divisor(data: Optional[np.ndarray], label: str) -> None:
    """Division by data that contains 0 gives inf or NaN at every draw: every fit step would be
    skipped, so it is refused when the expression is built."""
    if data is None:
        return
    zeros = np.flatnonzero(data == 0)
    if zeros.size:
        raise ValueError(f"{label}: division by zero (the divisor contains 0 at flat index {int(zeros[0])})")


def _unary(x: Any, op: str) -> Expr:
    if not isinstance(x, Expr):
        raise TypeError(f"fv.{op} takes an expression or parameter; use numpy for data")
    lower, upper = _UNARY_BOUNDS[op](x.lower, x.upper)
    label = f"-{x._label}" if op == "neg" else f"{op}({x._label})"
    block = x._model._build("add_unary", op, x._operand("x"), label, lower, upper)
    return x._new(block, x.shape, lower, upper, label)


def _binary_any(a: Any, b: Any, op: str) -> Expr:
    """a (op) b where either side may be data (numpy's ufuncs pass the array first)."""
    if isinstance(a, Expr):
        return a._binary(b, op)
    if isinstance(b, Expr):
        return b._binary(a, op, reverse=True)
    raise TypeError(f"{op} needs an expression or parameter operand")


def exp(x: Expr) -> Expr:
    """Element-wise exp of an expression.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``exp(x)``, shaped like ``x``, with ``lower`` ``exp(x.lower)`` (at least 0): it passes a
        kernel's check that an input is positive (``scale=fv.exp(log_sigma)``).

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    log, log1p_exp, expm1

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
    return _unary(x, "exp")


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
        ``log(x)``, shaped like ``x``, with bounds ``log(x.lower)`` and ``log(x.upper)`` where
        ``x`` is known to be non-negative.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    exp, log1p, log1m

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
    return _unary(x, "log")


def log1p_exp(x: Expr) -> Expr:
    """Element-wise log(1 + exp(x)) (softplus), computed without overflow.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``log(1 + exp(x))``, shaped like ``x``, with ``lower`` at least 0.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    exp, inv_logit, log_inv_logit

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
    return _unary(x, "log1p_exp")


def inv_logit(x: Expr) -> Expr:
    """Element-wise 1 / (1 + exp(-x)), the logistic function.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).

    Returns
    -------
    Expr
        ``1 / (1 + exp(-x))``, shaped like ``x``, with bounds within 0 and 1: it passes a
        kernel's check for a "unit_interval" input.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.

    See Also
    --------
    logit, log_inv_logit, log1p_exp

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
    return _unary(x, "inv_logit")


def sqrt(x: Expr) -> Expr:
    """Element-wise square root of an expression (``x ** 0.5``).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters; a draw where it is negative gives NaN (the
        fit skips that step).

    Returns
    -------
    Expr
        ``sqrt(x)``, shaped like ``x``, non-negative.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> var = m.param("var", lower=0.0)
    >>> sd = m.deterministic("sd", fv.sqrt(var))
    >>> sd.lower, float(m.constrain(m.unconstrain({"var": 4.0}))["sd"])
    (0.0, 2.0)
    """
    return _unary(x, "sqrt")


def square(x: Expr) -> Expr:
    """Element-wise square of an expression (``x ** 2``).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``x * x``, shaped like ``x``, non-negative: usable as a scale.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> w2 = m.deterministic("w2", fv.square(w))
    >>> w2.lower, float(m.constrain(np.array([-3.0]))["w2"])
    (0.0, 9.0)
    """
    return _unary(x, "square")


def abs(x: Expr) -> Expr:
    """Element-wise absolute value of an expression (also ``abs(x)``).

    The gradient is the sign of ``x`` (0 at 0).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``|x|``, shaped like ``x``, non-negative.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> size = m.deterministic("size", abs(w))
    >>> size.lower, float(m.constrain(np.array([-1.5]))["size"])
    (0.0, 1.5)
    """
    return _unary(x, "abs")


def log1m(x: Expr) -> Expr:
    """Element-wise log(1 - x), accurate for small ``x`` (Stan's ``log1m``).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters, below 1.

    Returns
    -------
    Expr
        ``log(1 - x)``, shaped like ``x``.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> p = m.param("p", lower=0.0, upper=1.0)
    >>> q = m.deterministic("q", fv.log1m(p))
    >>> q.upper, round(float(m.constrain(np.array([0.0]))["q"]), 6)    # p = 0.5
    (0.0, -0.693147)
    """
    return _unary(x, "log1m")


def lgamma(x: Expr) -> Expr:
    """Element-wise log of the absolute value of the gamma function.

    Its gradient is the digamma function (defined everywhere but at 0 and negative integers).

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``log|Gamma(x)|``, shaped like ``x``.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> a = m.param("a", lower=0.0)
    >>> lg = m.deterministic("lg", fv.lgamma(a))
    >>> round(float(m.constrain(m.unconstrain({"a": 5.0}))["lg"]), 6)    # log(4!)
    3.178054
    """
    return _unary(x, "lgamma")


def log1p(x: Expr) -> Expr:
    """Element-wise log(1 + x), accurate for small ``x``.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters, above -1.

    Returns
    -------
    Expr
        ``log(1 + x)``, shaped like ``x``.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> r = m.param("r", lower=0.0)
    >>> g = m.deterministic("g", fv.log1p(r))
    >>> g.lower, round(float(m.constrain(m.unconstrain({"r": 1.0}))["g"]), 6)
    (0.0, 0.693147)
    """
    return _unary(x, "log1p")


def expm1(x: Expr) -> Expr:
    """Element-wise exp(x) - 1, accurate for small ``x``.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``exp(x) - 1``, shaped like ``x``, above -1.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> z = m.param("z")
    >>> e = m.deterministic("e", fv.expm1(z))
    >>> e.lower, float(m.constrain(np.array([1e-20]))["e"])
    (-1.0, 1e-20)
    """
    return _unary(x, "expm1")


def tanh(x: Expr) -> Expr:
    """Element-wise hyperbolic tangent.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``tanh(x)``, shaped like ``x``, within [-1, 1].

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> z = m.param("z")
    >>> rho = m.deterministic("rho", fv.tanh(z))
    >>> rho.lower, rho.upper, float(m.constrain(np.array([0.0]))["rho"])
    (-1.0, 1.0, 0.0)
    """
    return _unary(x, "tanh")


def logit(x: Expr) -> Expr:
    """Element-wise log(x / (1 - x)), the inverse of :func:`inv_logit`.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters, in (0, 1).

    Returns
    -------
    Expr
        ``log(x) - log(1 - x)``, shaped like ``x``.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> p = m.param("p", lower=0.0, upper=1.0)
    >>> z = m.deterministic("z", fv.logit(p))
    >>> round(float(m.constrain(m.unconstrain({"p": 0.75}))["z"]), 6)    # log 3
    1.098612
    """
    return _unary(x, "logit")


def log_inv_logit(x: Expr) -> Expr:
    """Element-wise log(inv_logit(x)) = -log(1 + exp(-x)), without overflow or underflow.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.

    Returns
    -------
    Expr
        ``log(inv_logit(x))``, shaped like ``x``, at most 0.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> z = m.param("z")
    >>> lp = m.deterministic("lp", fv.log_inv_logit(z))
    >>> lp.upper, float(m.constrain(np.array([-800.0]))["lp"])
    (0.0, -800.0)
    """
    return _unary(x, "log_inv_logit")


def pow(x: Any, p: Any) -> Expr:
    """Element-wise ``x ** p`` (also the ``**`` operator), for a base or exponent that is an
    expression.

    ``x ** 2`` and ``x ** 0.5`` with a number exponent become :func:`square` and :func:`sqrt`.

    Parameters
    ----------
    x : Expr or array_like
        The base. A negative base with a non-integer exponent gives NaN (the fit skips that step).
    p : Expr or array_like
        The exponent (numpy broadcasting with ``x``).

    Returns
    -------
    Expr
        ``x ** p``. Its bounds follow the base's: a non-negative base gives a non-negative
        power, an even integer exponent too.

    Raises
    ------
    TypeError
        If neither argument is an expression.
    ValueError
        If the shapes do not broadcast or data are not finite.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> sigma = m.param("sigma", lower=0.0)
    >>> var = m.deterministic("var", sigma ** 2)
    >>> inv = m.deterministic("inv", fv.pow(sigma, -1.5))
    >>> var.lower, inv.lower
    (0.0, 0.0)
    >>> values = m.constrain(m.unconstrain({"sigma": 4.0}))
    >>> float(values["var"]), float(values["inv"])
    (16.0, 0.125)
    """
    if isinstance(x, Expr) and not isinstance(p, Expr) and np.ndim(p) == 0 and isinstance(p, (int, float, np.number)):
        if float(p) == 2.0:
            return square(x)
        if float(p) == 0.5:
            return sqrt(x)
    if isinstance(x, Expr):
        if isinstance(p, Expr):
            bounds = _pow_bounds((x.lower, x.upper), (p.lower, p.upper), None)
        elif isinstance(p, Data):
            bounds = _pow_bounds((x.lower, x.upper), _data.sign_bounds(p.value), None)
        else:
            data = as_data(p, "'**': operand")
            bounds = _pow_bounds((x.lower, x.upper), _bounds_of_data(data), data if np.all(np.isfinite(data)) else None)
        return x._binary(p, "pow", bounds=bounds)
    if isinstance(p, Expr) and isinstance(x, Data):
        bounds = _pow_bounds(_data.sign_bounds(x.value), (p.lower, p.upper), None) if x.size else (-math.inf, math.inf)
        return p._binary(x, "pow", reverse=True, bounds=bounds)
    if isinstance(p, Expr):
        base = as_data(x, "'**': operand")
        bounds = _pow_bounds(_bounds_of_data(base), (p.lower, p.upper), None) if base.size else (-math.inf, math.inf)
        return p._binary(x, "pow", reverse=True, bounds=bounds)
    raise TypeError("fv.pow needs an expression or parameter as the base or the exponent; use numpy for data")


def log_add_exp(a: Any, b: Any) -> Expr:
    """Element-wise log(exp(a) + exp(b)), computed without overflow (Stan's two-argument
    ``log_sum_exp``, numpy's ``logaddexp``).

    Parameters
    ----------
    a, b : Expr or array_like
        At least one an expression; numpy broadcasting between them.

    Returns
    -------
    Expr
        The result, between ``max(a, b)`` and ``max(a, b) + log 2``.

    See Also
    --------
    log_sum_exp : Along an axis.
    log_mix : A two-component mixture.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> a = m.param("a", shape=(2,))
    >>> lse = m.deterministic("lse", fv.log_add_exp(a, 0.0))
    >>> np.round(m.constrain(np.array([0.0, 1000.0]))["lse"], 6).tolist()
    [0.693147, 1000.0]
    """
    return _binary_any(a, b, "log_add_exp")


# ---- reductions and normalisations --------------------------------------------------------------


def _axes(x: Expr, axis: Any, what: str) -> Tuple[int, ...]:
    """The normalised axes (sorted, unique) that `axis` (None, an int or a tuple) names."""
    if axis is None:
        return tuple(range(x.ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{what}: axis must be None, an int or a tuple of ints, got {axis!r}")
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"{what}: axis {a} is out of bounds for an expression of shape {x.shape}")
        out.append(int(a) % x.ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _groups(x: Expr, axes: Tuple[int, ...]) -> Tuple[np.ndarray, int, Tuple[int, ...]]:
    """(flat indices grouped, group length, the shape of the remaining axes): group j holds the
    elements along `axes` at position j (C order) of the other axes."""
    flat = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    moved = np.moveaxis(flat, axes, tuple(range(x.ndim - len(axes), x.ndim))) if axes else flat
    rest = moved.shape[: x.ndim - len(axes)]
    n = element_count(moved.shape[x.ndim - len(axes) :])
    return np.ascontiguousarray(moved).reshape(-1), n, tuple(rest)


def _segmented(x: Any, op: str, axis: Any, bounds: Any, what: str) -> Expr:
    if not isinstance(x, Expr):
        raise TypeError(f"fv.{what} takes an expression or parameter; use numpy for data")
    axes = _axes(x, axis, f"fv.{what}")
    index, n, rest = _groups(x, axes)
    reduces = op in ("sum", "log_sum_exp")
    shape = rest if reduces else x.shape
    groups = element_count(rest) if n else 0
    offsets = np.arange(groups + 1, dtype=np.int64) * n
    lower, upper = bounds(x.lower, x.upper, n)
    label = f"{what}({x._label}" + ("" if axis is None else f", axis={axis}") + ")"
    index.setflags(write=False)
    offsets.setflags(write=False)
    block = x._model._build("add_segmented", op, x._operand("x"), index, offsets, shape, label, lower, upper)
    return x._new(block, shape, lower, upper, label)


def _sum_bounds(lo: float, hi: float, n: int) -> Tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    return lo * n, hi * n


def sum(x: Expr, axis: Any = None) -> Expr:
    """The sum of the elements of an expression: of all of them, or along an axis.

    Python's built-in ``sum`` does not work on an expression (iterating over one is a
    TypeError); this one adds a single node to the graph. ``np.sum(x, axis=...)`` and
    ``x.sum(axis=...)`` call it.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters (for data, use numpy).
    axis : None, int or tuple of int, default None
        The axes to sum over; None sums everything into a scalar.

    Returns
    -------
    Expr
        The sums, shaped like ``x`` without the summed axes. Its bounds are ``n * x.lower`` and
        ``n * x.upper`` for ``n`` elements per sum.

    Raises
    ------
    TypeError
        If ``x`` is not an expression.
    ValueError
        If an axis is out of range.

    See Also
    --------
    Expr.sum : The method form.
    cumsum, log_sum_exp

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
    >>> w = m.param("w", shape=(2, 3))
    >>> rows = m.deterministic("rows", fv.sum(w, axis=1))
    >>> m.constrain(np.r_[np.zeros(3), np.arange(6.0)])["rows"].tolist()
    [3.0, 12.0]
    """
    if not isinstance(x, Expr):
        raise TypeError("fv.sum takes an expression or parameter; use numpy for data")
    if axis is None or _axes(x, axis, "fv.sum") == tuple(range(x.ndim)):
        label = f"sum({x._label})"
        lower, upper = _sum_bounds(x.lower, x.upper, x.size)
        block = x._model._build("add_sum", x._operand("x"), label, lower, upper)
        return x._new(block, (), lower, upper, label)
    return _segmented(x, "sum", axis, _sum_bounds, "sum")


def log_sum_exp(x: Expr, axis: Any = -1) -> Expr:
    """log(sum(exp(x))) along an axis, shifted by the maximum so that it never overflows.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.
    axis : None, int or tuple of int, default -1
        The axes to reduce (None: all).

    Returns
    -------
    Expr
        Shaped like ``x`` without the reduced axes.

    See Also
    --------
    log_add_exp : Of two expressions, element-wise.
    log_softmax, softmax

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> lp = m.param("lp", shape=(2, 2))
    >>> total = m.deterministic("total", fv.log_sum_exp(lp))
    >>> total.shape
    (2,)
    >>> np.round(m.constrain(np.array([0.0, 0.0, 1000.0, 1000.0]))["total"], 6).tolist()
    [0.693147, 1000.693147]
    """
    return _segmented(
        x, "log_sum_exp", axis, lambda lo, hi, n: (lo, hi + math.log(n) if n else -math.inf), "log_sum_exp"
    )


def log_softmax(x: Expr, axis: Any = -1) -> Expr:
    """``x - log_sum_exp(x, axis)``: log probabilities from unnormalised log weights.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.
    axis : None, int or tuple of int, default -1
        The axes each normalisation runs over (None: all).

    Returns
    -------
    Expr
        Shaped like ``x``, at most 0.

    See Also
    --------
    softmax, log_sum_exp

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> eta = m.param("eta", shape=(3,))
    >>> logp = m.deterministic("logp", fv.log_softmax(eta))
    >>> logp.upper, round(float(np.exp(m.constrain(np.array([1.0, 2.0, 3.0]))["logp"]).sum()), 12)
    (0.0, 1.0)
    """
    return _segmented(x, "log_softmax", axis, lambda lo, hi, n: (-math.inf, 0.0), "log_softmax")


def softmax(x: Expr, axis: Any = -1) -> Expr:
    """``exp(x) / sum(exp(x), axis)``: probabilities from unnormalised log weights, computed
    without overflow.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.
    axis : None, int or tuple of int, default -1
        The axes each normalisation runs over (None: all).

    Returns
    -------
    Expr
        Shaped like ``x``, within [0, 1] (so it passes a "unit_interval" support check).

    See Also
    --------
    log_softmax

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> eta = m.param("eta", shape=(2, 2))
    >>> p = m.deterministic("p", fv.softmax(eta, axis=1))
    >>> p.lower, p.upper
    (0.0, 1.0)
    >>> m.constrain(np.array([0.0, 0.0, 1000.0, 1000.0]))["p"].tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    return _segmented(x, "softmax", axis, lambda lo, hi, n: (0.0, 1.0), "softmax")


def cumsum(x: Expr, axis: Optional[int] = None) -> Expr:
    """Cumulative sums along an axis, as ``numpy.cumsum``.

    Parameters
    ----------
    x : Expr
        A parameter or an expression of parameters.
    axis : int or None, default None
        The axis; None runs over the flattened expression (and returns it flattened).

    Returns
    -------
    Expr
        Shaped like ``x`` (flattened with ``axis=None``).

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> steps = m.param("steps", shape=(4,), lower=0.0)
    >>> walk = m.deterministic("walk", fv.cumsum(steps))
    >>> walk.lower, m.constrain(np.zeros(4))["walk"].tolist()
    (0.0, [1.0, 2.0, 3.0, 4.0])
    """
    if not isinstance(x, Expr):
        raise TypeError("fv.cumsum takes an expression or parameter; use numpy for data")
    if isinstance(axis, tuple):
        raise TypeError("fv.cumsum: axis must be None or an int")
    if axis is None:
        if x.ndim != 1:
            x = x.reshape(-1)
        axis = 0

    def bounds(lo: float, hi: float, n: int) -> Tuple[float, float]:
        return min(lo, _nan_to(lo * n, lo)), max(hi, _nan_to(hi * n, hi))

    return _segmented(x, "cumsum", axis, bounds, "cumsum")


def log_mix(theta: Any, lp1: Any, lp2: Any = None) -> Expr:
    """log(theta exp(lp1) + (1 - theta) exp(lp2)), stable (Stan's ``log_mix``).

    With two arguments, ``log_mix(theta, lps)`` is the mixture of K components:
    ``log_sum_exp(log(theta) + lps, axis=-1)``, with the mixing weights ``theta`` (K,) (a simplex)
    and the components' log densities ``lps`` on the last axis.

    Parameters
    ----------
    theta : Expr or array_like
        The first component's weight, in [0, 1] (or K weights summing to 1).
    lp1, lp2 : Expr or array_like
        The two components' log densities (numpy broadcasting between the three arguments).

    Returns
    -------
    Expr
        The mixture's log density, element-wise; :meth:`Model.factor` adds its sum to the model.

    Examples
    --------
    A two-component normal mixture of data ``y``:

    >>> import numpy as np, fastvi as fv
    >>> y = np.array([-2.1, -1.9, 2.0, 2.2])
    >>> m = fv.Model()
    >>> w = m.param("w", lower=0.0, upper=1.0)
    >>> mu = m.param("mu", shape=(2,))
    >>> lp1 = -0.5 * (y - mu[0]) ** 2 - 0.5 * np.log(2 * np.pi)
    >>> lp2 = -0.5 * (y - mu[1]) ** 2 - 0.5 * np.log(2 * np.pi)
    >>> m.factor(fv.log_mix(w, lp1, lp2), name="mixture")
    >>> m.factors
    [('mixture', 'factor')]
    """
    if lp2 is None:
        lps = lp1
        if isinstance(theta, Expr):
            log_theta = log(theta)
        else:
            weights = as_data(theta, "log_mix: theta")
            if np.any(weights < 0) or not np.all(np.isfinite(weights)):
                raise ValueError("log_mix: theta must be finite and non-negative")
            with np.errstate(divide="ignore"):
                log_theta = np.log(weights)
            if np.any(np.isinf(log_theta)):
                raise ValueError("log_mix: theta contains 0 (drop that component instead)")
        return log_sum_exp(_binary_any(log_theta, lps, "add"), axis=-1)
    if isinstance(theta, Expr):
        first, second = log(theta), log1m(theta)
    else:
        t = as_data(theta, "log_mix: theta")
        if not np.all((t > 0) & (t < 1)):
            raise ValueError("log_mix: theta must lie strictly between 0 and 1 when it is data")
        first, second = np.log(t), np.log1p(-t)
    return log_add_exp(_binary_any(first, lp1, "add"), _binary_any(second, lp2, "add"))


# ---- shapes -------------------------------------------------------------------------------------


def _parts(seq: Any, what: str) -> Tuple[Any, list]:
    """The model and the operands of a sequence of expressions and data."""
    if isinstance(seq, Expr) or not isinstance(seq, (list, tuple)):
        raise TypeError(f"fv.{what} takes a list or tuple of expressions and arrays")
    exprs = [p for p in seq if isinstance(p, Expr)]
    if not exprs:
        raise TypeError(f"fv.{what} needs at least one expression or parameter; use numpy for data")
    model = exprs[0]._model
    parts = []
    for i, p in enumerate(seq):
        if isinstance(p, Expr):
            if p._model is not model:
                raise ValueError(f"fv.{what}: cannot combine expressions of different models")
            parts.append((p._operand(f"part {i}"), p.shape, (p.lower, p.upper), p._label))
        elif isinstance(p, Data):  # (_join records what it assumes of it)
            _same_model(p, model, f"fv.{what}")
            parts.append((("container", f"part {i}", p.name), p.shape, _data.sign_bounds(p.value), p.name))
        else:
            arr = as_data(p, f"fv.{what}: part {i}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"fv.{what}: part {i} contains NaN or inf")
            parts.append((("data", f"part {i}", arr), arr.shape, _bounds_of_data(arr), "data"))
    return model, parts


def _join(seq: Any, axis: int, what: str, join: Any) -> Expr:
    model, parts = _parts(seq, what)
    sources = [np.full(shape, i, dtype=np.int64) for i, (_, shape, _, _) in enumerate(parts)]
    elements = [np.arange(element_count(shape), dtype=np.int64).reshape(shape) for _, shape, _, _ in parts]
    try:
        part = join(sources, axis=axis)
        element = join(elements, axis=axis)
    except (ValueError, IndexError) as err:  # numpy's AxisError is both
        shapes = [shape for _, shape, _, _ in parts]
        raise ValueError(f"fv.{what}: {err} (shapes {shapes})") from None
    lower = min(b[0] for _, _, b, _ in parts)
    upper = max(b[1] for _, _, b, _ in parts)
    label = f"{what}([{', '.join(lab for *_, lab in parts)}])"
    for i, (op, _, (part_lower, part_upper), _) in enumerate(parts):
        if op[0] == "container":  # checked again by set_data: finite, and its sign where the bounds rely on it
            others = [b for j, (_, _, b, _) in enumerate(parts) if j != i]
            # the join's bound is finite (and so relies on this part's sign) where every part's is
            relies_lower = all(math.isfinite(b[0]) for b in [*others, (part_lower, part_upper)])
            relies_upper = all(math.isfinite(b[1]) for b in [*others, (part_lower, part_upper)])
            check_lower, check_upper = (0.0 if relies_lower else -math.inf), (0.0 if relies_upper else math.inf)
            model._build("check_data", op[2], check_lower, check_upper, False, f"{label} (part {i})")
    part_flat, element_flat = part.ravel(), element.ravel()
    part_flat.setflags(write=False)
    element_flat.setflags(write=False)
    operands = tuple(op for op, _, _, _ in parts)
    block = model._build("add_concat", operands, part_flat, element_flat, part.shape, label, lower, upper)
    return Expr(model, block, part.shape, lower, upper, label)


def concatenate(seq: Any, axis: int = 0) -> Expr:
    """Joins expressions (and arrays) along an existing axis, as ``numpy.concatenate``.

    Parameters
    ----------
    seq : list or tuple of Expr or array_like
        At least one expression; data parts become constants.
    axis : int, default 0
        The axis to join along.

    Returns
    -------
    Expr
        The joined expression; its bounds cover every part's.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> a = m.param("a", shape=(2,))
    >>> joined = m.deterministic("joined", fv.concatenate([np.zeros(1), a]))
    >>> joined.shape, m.constrain(np.array([1.0, 2.0]))["joined"].tolist()
    ((3,), [0.0, 1.0, 2.0])
    """
    return _join(seq, axis, "concatenate", np.concatenate)


def stack(seq: Any, axis: int = 0) -> Expr:
    """Joins expressions (and arrays) of one shape along a new axis, as ``numpy.stack``.

    Parameters
    ----------
    seq : list or tuple of Expr or array_like
        At least one expression; all of the same shape.
    axis : int, default 0
        Where the new axis goes.

    Returns
    -------
    Expr
        The stacked expression.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> a, b = m.param("a"), m.param("b")
    >>> v = m.deterministic("v", fv.stack([a, b, 1.0]))
    >>> v.shape, m.constrain(np.array([5.0, 6.0]))["v"].tolist()
    ((3,), [5.0, 6.0, 1.0])
    """
    return _join(seq, axis, "stack", np.stack)


def matmul(a: Any, b: Any) -> Expr:
    """Matrix product ``a @ b`` with at least one expression, as ``numpy.matmul`` for 1-D and 2-D
    operands.

    A data matrix times a parameter vector (``X @ beta``) is computed with blocked GEMMs over all
    draws; other products (a parameter matrix, ``X @ B``, ``A @ v``) are computed per draw.

    Parameters
    ----------
    a, b : Expr or array_like
        1-D or 2-D; a 1-D left operand is a row, a 1-D right operand a column (and that axis is
        dropped from the result).

    Returns
    -------
    Expr
        The product, with no known bounds.

    Raises
    ------
    ValueError
        If an operand is not 1-D or 2-D, the inner dimensions differ or data are not finite.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> B = m.param("B", shape=(2, 3))
    >>> X = np.ones((4, 2))
    >>> (X @ B).shape, (B @ np.ones(3)).shape, (B.T @ B).shape
    ((4, 3), (2,), (3, 3))
    """
    if isinstance(a, Expr):
        model, a_label = a._model, a._label
    elif isinstance(b, Expr):
        model, a_label = b._model, "X"
    else:
        raise TypeError("matmul needs an expression or parameter operand")
    b_label = b._label if isinstance(b, Expr) else b.name if isinstance(b, Data) else "data"
    if isinstance(a, Data):
        a_label = a.name
    label = f"({a_label} @ {b_label})"
    a_name = "A" if isinstance(a, Expr) else "X"
    b_name = "v" if (b.ndim if isinstance(b, (Expr, Data)) else np.ndim(b)) == 1 else "B"
    ops = []
    shapes = []
    for name, v in ((a_name, a), (b_name, b)):
        if isinstance(v, Expr):
            if v._model is not model:
                raise ValueError(f"{label}: cannot combine expressions of different models")
            ops.append(v._operand(name))
            shapes.append(v.shape)
        elif isinstance(v, Data):
            _same_model(v, model, label)
            model._build("check_data", v.name, -math.inf, math.inf, False, label)  # finite
            ops.append(("container", name, v.name))
            shapes.append(v.shape)
        else:
            arr = as_data(v, f"{a_name} @ {b_name}: {name}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{label}: {name} contains NaN or inf")
            ops.append(("data", name, arr))
            shapes.append(arr.shape)
    (sa, sb) = shapes
    if len(sa) not in (1, 2) or len(sb) not in (1, 2):
        raise ValueError(f"{label}: only 1-D and 2-D operands are supported, got shapes {sa} and {sb}")
    n, k = (1, sa[0]) if len(sa) == 1 else sa
    k2, mm = (sb[0], 1) if len(sb) == 1 else sb
    if k != k2:
        raise ValueError(f"{label}: {a_name} has shape {sa} but {b_name} has shape {sb} (inner dimensions differ)")
    shape = (() if len(sa) == 1 else (n,)) + (() if len(sb) == 1 else (mm,))
    check_size(shape, label)
    if not isinstance(a, Expr) and len(sa) == 2 and len(sb) == 1:
        # data matrix @ vector: the blocked GEMM node
        matrix = ops[0] if isinstance(a, Data) else ops[0][2]  # a container is recorded by name
        block = model._build("add_matvec", matrix, ops[1], label)
        return Expr(model, block, shape, -math.inf, math.inf, label)
    block = model._build("add_matmul", ops[0], ops[1], n, k, mm, shape, label)
    return Expr(model, block, shape, -math.inf, math.inf, label)


# numpy's ufuncs and functions that dispatch to expressions
_UFUNCS: Dict[str, Any] = {
    "add": lambda a, b: _binary_any(a, b, "add"),
    "subtract": lambda a, b: _binary_any(a, b, "sub"),
    "multiply": lambda a, b: _binary_any(a, b, "mul"),
    "true_divide": lambda a, b: _binary_any(a, b, "div"),
    "divide": lambda a, b: _binary_any(a, b, "div"),
    "power": lambda a, b: pow(a, b),
    "float_power": lambda a, b: pow(a, b),
    "logaddexp": lambda a, b: log_add_exp(a, b),
    "matmul": lambda a, b: matmul(a, b),
    "negative": lambda x: _unary(x, "neg"),
    "positive": lambda x: x,
    "exp": exp,
    "log": log,
    "sqrt": sqrt,
    "square": square,
    "absolute": abs,
    "fabs": abs,
    "log1p": log1p,
    "expm1": expm1,
    "tanh": tanh,
}


def _np_sum(a: Any, axis: Any = None, **kwargs: Any) -> Expr:
    _no_options(kwargs)
    return sum(a, axis)


def _np_cumsum(a: Any, axis: Any = None, **kwargs: Any) -> Expr:
    _no_options(kwargs)
    return cumsum(a, axis)


def _np_reshape(a: Any, *args: Any, **kwargs: Any) -> Expr:
    shape = args[0] if args else kwargs.pop("shape", kwargs.pop("newshape", None))
    _no_options({k: v for k, v in kwargs.items() if not (k == "order" and v == "C")})
    return a.reshape(shape)


def _np_transpose(a: Any, axes: Any = None) -> Expr:
    return a.transpose() if axes is None else a.transpose(tuple(axes))


def _no_options(kwargs: Dict[str, Any]) -> None:
    no_value = getattr(np, "_NoValue", None)  # numpy's marker for an argument not given
    given = sorted(k for k, v in kwargs.items() if v is not None and v is not no_value)
    if given:
        raise TypeError(f"the arguments {given} are not supported")


_FUNCTIONS: Dict[str, Any] = {
    "sum": _np_sum,
    "cumsum": _np_cumsum,
    "concatenate": lambda seq, axis=0: concatenate(seq, axis),
    "stack": lambda seq, axis=0: stack(seq, axis),
    "reshape": _np_reshape,
    "transpose": _np_transpose,
    "matmul": matmul,
    "shape": lambda a: a.shape,
    "ndim": lambda a: a.ndim,
    "size": lambda a: a.size,
}
