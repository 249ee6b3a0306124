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

    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> mu, tau = m.param("mu"), m.param("tau", lower=0.0)
    >>> theta_raw = m.param("theta_raw", shape=(8,))
    >>> theta = m.deterministic("theta", mu + tau * theta_raw)
    >>> theta.shape
    (8,)
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
        return element_count(self.shape)

    @property
    def ndim(self) -> int:
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
    """Element-wise exp of an expression."""
    return _unary(x, "exp", 0.0, math.inf)


def log(x: Expr) -> Expr:
    """Element-wise natural log of an expression (NaN draws where x <= 0 are skipped by the fit)."""
    return _unary(x, "log", -math.inf, math.inf)


def log1p_exp(x: Expr) -> Expr:
    """Element-wise log(1 + exp(x)) (softplus), computed without overflow."""
    return _unary(x, "log1p_exp", 0.0, math.inf)


def inv_logit(x: Expr) -> Expr:
    """Element-wise 1 / (1 + exp(-x))."""
    return _unary(x, "inv_logit", 0.0, 1.0)


def sum(x: Expr) -> Expr:
    """The sum of all elements of an expression (a scalar expression)."""
    if not isinstance(x, Expr):
        raise TypeError("fv.sum takes an expression or parameter; use numpy for data")
    label = f"sum({x._label})"
    lower = x.lower * x.size if x.lower >= 0 else -math.inf
    upper = math.inf if x.upper == math.inf else x.upper * x.size
    block = x._model._build("add_sum", x._operand("x"), label, lower, upper)
    return x._new(block, (), lower, upper, label)
