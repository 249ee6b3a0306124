"""Model building: parameter blocks and factors bound to registered kernels."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._validate import as_data, as_real_array, check_size, threads_setting
from .expr import Expr
from .kernels import kernel_spec

Shape = Union[int, Sequence[int]]


class Param(Expr):
    """A parameter block of a :class:`Model`: pass it (or expressions of it) as kernel inputs."""

    def __init__(self, model: "Model", name: str, shape: Tuple[int, ...], lower: float, upper: float,
                 block: int, offset: int, row: int):
        super().__init__(model, block, shape, lower, upper, label=name)
        self.name = name
        self.offset = offset  # first coordinate of the block in the unconstrained vector
        self.row = row        # first row of the block in the value matrix

    @property
    def constrained(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)

    def __repr__(self) -> str:
        bounds = ""
        if math.isfinite(self.lower):
            bounds += f", lower={self.lower:g}"
        if math.isfinite(self.upper):
            bounds += f", upper={self.upper:g}"
        return f"Param({self.name!r}, shape={self.shape}{bounds})"


def _as_shape(shape: Shape, name: str) -> Tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        out = tuple(int(d) for d in shape)
        ok = all(not isinstance(d, bool) and int(d) == d for d in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(f"parameter {name!r}: shape must be an int or a tuple of ints, got {shape!r}")
    if any(d < 1 for d in out):
        raise ValueError(f"parameter {name!r}: every dimension of shape must be >= 1, got {out}")
    check_size(out, f"parameter {name!r}")
    return out


def _as_bound(value: Optional[float], what: str, name: str) -> Optional[float]:
    if value is None:
        return None
    # float("0") and float(True) would convert silently: only real numbers (or 0-d arrays of them)
    if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.number):
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"parameter {name!r}: {what} must be a number or None, got {value!r}")
    out = float(value)
    if math.isnan(out):
        raise ValueError(f"parameter {name!r}: {what} must not be NaN")
    return out


def _check_interval(lo: float, hi: float, name: str) -> None:
    """The interval transform maps through upper - lower, which must be a finite float."""
    if math.isfinite(lo) and math.isfinite(hi) and not math.isfinite(hi - lo):
        raise ValueError(f"parameter {name!r}: the width of (lower, upper) = ({lo:g}, {hi:g}) overflows to inf; "
                         f"use a one-sided bound or rescale the parameter")


class Model:
    """A probabilistic model: parameters and the log-density factors that involve them.

    Example (the posterior of a normal mean):

    >>> import numpy as np, fastvi as fv
    >>> x = np.random.default_rng(0).normal(2.0, 1.0, size=100)
    >>> model = fv.Model()
    >>> w = model.param("w")
    >>> model.add("normal", w, loc=0.0, scale=1.0)
    >>> model.add("normal", x, loc=w, scale=1.0)
    >>> model.dim
    1
    """

    def __init__(self) -> None:
        self._core = _core.Model()
        self._params: Dict[str, Param] = {}
        self._deterministics: Dict[str, Expr] = {}
        self._factors: list = []

    # ---- parameters -----------------------------------------------------------------------------

    def param(self, name: str, shape: Shape = (), lower: Optional[float] = None,
              upper: Optional[float] = None) -> Param:
        """Declares a parameter block and returns a reference to use as a kernel input.

        ``lower`` and/or ``upper`` constrain it (through log or logit transforms; the fit works in
        the unconstrained space and accounts for the Jacobian). A parameter with no factor acting on
        it has a flat, improper prior. A block has at most 2**40 elements.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"parameter name must be a non-empty str, got {name!r}")
        if name in self._deterministics:
            raise ValueError(f"parameter {name!r}: the name is already used by a deterministic")
        shape = _as_shape(shape, name)
        lo = _as_bound(lower, "lower", name)
        hi = _as_bound(upper, "upper", name)
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"parameter {name!r}: lower ({lo:g}) must be less than upper ({hi:g})")
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        _check_interval(lo, hi, name)
        block = self._core.add_param(name, list(shape), lo, hi)
        p = Param(self, name, shape, lo, hi, block, self._core.param_offset(name), self._core.block(block)["row"])
        self._params[name] = p
        return p

    def deterministic(self, name: str, expr: Expr) -> Expr:
        """Records ``expr`` under ``name``: its values appear in ``sample()``, ``mean()``, ``std()``
        and summaries. Returns ``expr``, so it can be used as a kernel input too."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"deterministic name must be a non-empty str, got {name!r}")
        if name in self._params or name in self._deterministics:
            raise ValueError(f"deterministic {name!r}: the name is already used")
        if not isinstance(expr, Expr) or expr._model is not self:
            raise TypeError(f"deterministic {name!r}: expected an expression of this model's parameters")
        self._deterministics[name] = expr
        return expr

    @property
    def deterministics(self) -> Dict[str, Expr]:
        """Recorded deterministic quantities, in the order they were recorded."""
        return dict(self._deterministics)

    @property
    def params(self) -> Dict[str, Param]:
        """Declared parameters, in declaration order."""
        return dict(self._params)

    @property
    def dim(self) -> int:
        """Number of unconstrained coordinates."""
        return self._core.dim

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    # ---- factors --------------------------------------------------------------------------------

    def add(self, kernel: str, value: Any, /, *, name: Optional[str] = None, **inputs: Any) -> None:
        """Adds the log density of the registered ``kernel`` to the model.

        ``value`` is the variate (data or a parameter); keywords are the kernel's named inputs,
        each data (an array or number), or a parameter. Inputs broadcast together with numpy's
        rules. Everything is checked here, before any fit: unknown names, shapes, NaN or inf in
        data, data outside the kernel's support. ``name`` labels the factor in messages.
        """
        spec = kernel_spec(kernel)
        variate = spec.variate.name
        if variate in inputs:
            raise TypeError(f"{kernel}: the variate {variate!r} is the first argument; do not pass it again by keyword")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{kernel}: name must be a non-empty str or None, got {name!r}")
        index = len(self._factors)
        label = name if name is not None else f"factor {index} ({kernel} on {self._describe(value)})"
        operands, shapes = [], []
        for key, v in [(variate, value), *inputs.items()]:
            if isinstance(v, Expr):
                if v._model is not self:
                    raise ValueError(f"{label}: input {key!r} is {v._label!r} of another model")
                operands.append(v._operand(key))
                shapes.append(v.shape)
            else:
                data = as_data(v, f"{label}: input {key!r}")
                operands.append(_core.data_operand(key, data))
                shapes.append(data.shape)
        if spec.elementwise:
            _check_broadcast_size(shapes, label)
        self._core.add_factor(kernel, operands, label)
        self._factors.append((label, kernel))

    @staticmethod
    def _describe(value: Any) -> str:
        if isinstance(value, Expr):
            return value._label
        return f"data of shape {np.shape(value)}"

    @property
    def factors(self) -> list:
        """(label, kernel name) of every factor, in the order they were added."""
        return list(self._factors)

    # ---- evaluation -----------------------------------------------------------------------------

    def log_density(self, zeta: Any, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Log density (with the transforms' log-Jacobians) and its gradient at unconstrained points.

        ``zeta`` has shape (dim,) or (dim, S); the results have shapes () / (dim,) or (S,) / (dim, S).
        """
        threads = threads_setting(threads)
        z, single = self._as_zeta(zeta)
        lp, grad = self._core.log_density(z, threads)
        return (lp[0], grad[:, 0]) if single else (lp, grad)

    def constrain(self, zeta: Any) -> Dict[str, np.ndarray]:
        """Constrained parameter values and deterministics at unconstrained points (dim,) or
        (dim, S); with S draws each array has a leading draw axis."""
        z, single = self._as_zeta(zeta)
        values = self._core.values(z)
        return self._split_values(values[:, 0] if single else values.T)

    def _as_zeta(self, zeta: Any) -> Tuple[np.ndarray, bool]:
        z = as_real_array(zeta, "zeta")
        if z.ndim not in (1, 2) or z.shape[0] != self.dim:
            raise ValueError(f"zeta must have shape ({self.dim},) or ({self.dim}, S), got {z.shape}")
        return (z[:, None] if z.ndim == 1 else z), z.ndim == 1

    def unconstrain(self, values: Dict[str, Any]) -> np.ndarray:
        """Maps a dict of constrained values (every parameter) to the unconstrained vector."""
        theta = np.empty(self.dim)
        missing = [n for n in self._params if n not in values]
        if missing:
            raise ValueError(f"values missing for parameters {missing}")
        for n, v in values.items():
            if n not in self._params:
                raise ValueError(f"no parameter named {n!r}")
            p = self._params[n]
            arr = as_real_array(v, f"value of {n!r}")
            try:
                arr = np.broadcast_to(arr, p.shape)
            except ValueError:
                raise ValueError(f"value of {n!r} has shape {arr.shape}, expected {p.shape}") from None
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"value of {n!r} must be finite")
            if np.any(arr <= p.lower) or np.any(arr >= p.upper):
                raise ValueError(f"value of {n!r} must lie strictly inside ({p.lower:g}, {p.upper:g})")
            theta[p.offset:p.offset + p.size] = arr.ravel()
        return self._core.unconstrain(theta)

    def _split_zeta(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """Splits the last axis of `flat` (one entry per unconstrained coordinate) by parameter."""
        lead = flat.shape[:-1]
        return {
            p.name: flat[..., p.offset:p.offset + p.size].reshape(lead + p.shape).copy()
            for p in self._params.values()
        }

    def _split_values(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """Splits the last axis of `flat` (one entry per value-matrix row) into parameters and
        deterministics."""
        lead = flat.shape[:-1]
        out = {}
        for name, e in [*self._params.items(), *self._deterministics.items()]:
            row = self._core.block(e._block)["row"]
            out[name] = flat[..., row:row + e.size].reshape(lead + e.shape).copy()
        return out


def _check_broadcast_size(shapes: Sequence[Tuple[int, ...]], label: str) -> None:
    """An element-wise factor works on its inputs' broadcast shape: refuse an absurd one here
    (the core would fail allocating it). Shapes that do not broadcast are left to the core, whose
    message names the input at fault."""
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        return
    check_size(shape, f"{label}: the inputs' broadcast shape")
