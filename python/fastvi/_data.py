"""Data containers: named data a model is built with, which ``Model.set_data`` replaces.

``Model.data(name, values)`` declares a container and returns a :class:`Data` reference. Wherever
it is used (a kernel's input, an operand of an expression, gather indices) the model's build log
records ``("container", input name, container name)`` instead of the array, and one
``("declare_data", name, values)`` entry holds the current values. ``Model.set_data`` swaps the
values in those entries and replays the log into a fresh C++ model (:func:`rebuild`): every check
the first build made (kernel supports, NaN, shapes that must broadcast) runs again on the new
values, and a failure leaves the model as it was.

Expressions need more of their data than kernels do, and record it as ``("check_data", ...)``
steps so that the replay checks it too: finite values, the sign of the values where the
expression's bounds rely on it (a container contributes its sign, not its range, see
:func:`sign_bounds`; ``sigma * exposure`` relies on it, ``b * x`` with an unbounded ``b`` does
not) and, for a divisor, no zero.

A different length is allowed when the rebuilt model is consistent: operations whose shape the
C++ core works out (kernels, element-wise arithmetic, ``X @ beta``, sums, ``a[g]`` with a
container ``g``, exp_quad_cov's points, add_diag, cholesky) follow the new shapes; operations
that picked elements at fixed positions (indexing with a constant, ``fv.sum`` along an axis,
concatenation, ``reshape``) refuse an input whose shape changed, naming it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Iterator, Tuple

import numpy as np

from ._validate import element_count

if TYPE_CHECKING:  # (model.py imports this module)
    from .model import Model


class Data:
    """A named data container of a :class:`Model`: data that :meth:`Model.set_data` can replace.

    Returned by :meth:`Model.data`, not constructed directly. Use it wherever the model takes
    data: as a kernel's variate or input in :meth:`Model.add`, as an operand of expressions
    (``X @ beta``, ``alpha + beta * x``, ``mu / exposure``), as gather indices (``a[group]``,
    integer values along the first axis) and as the points of :func:`fastvi.exp_quad_cov`.
    Arithmetic on containers alone is not recorded: compute derived data with numpy before
    declaring it.

    Attributes
    ----------
    name : str
        The container's name, unique among the model's containers.
    value : ndarray
        The current values (float64, read-only).
    shape : tuple of int
        Their shape.

    See Also
    --------
    Model.data, Model.set_data

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> x = m.data("x", np.array([1.0, 2.0, 3.0]))
    >>> x
    Data('x', shape=(3,))
    >>> x.value.tolist(), x.shape, x.ndim, x.size
    ([1.0, 2.0, 3.0], (3,), 1, 3)
    """

    _is_data_container = True  # recognised by _validate.as_real_array without importing this module

    def __init__(self, model: Model, name: str):
        self._model = model
        self.name = name

    @property
    def value(self) -> np.ndarray:
        """The container's current values (float64, read-only).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> m.data("y", [1, 2]).value
        array([1., 2.])
        """
        return self._model._data_values[self.name]

    @property
    def shape(self) -> Tuple[int, ...]:
        """The shape of the current values.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> fv.Model().data("X", np.zeros((4, 2))).shape
        (4, 2)
        """
        return tuple(self.value.shape)

    @property
    def ndim(self) -> int:
        """The number of dimensions of the current values.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> fv.Model().data("X", np.zeros((4, 2))).ndim
        2
        """
        return self.value.ndim

    @property
    def size(self) -> int:
        """The number of elements of the current values.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> fv.Model().data("X", np.zeros((4, 2))).size
        8
        """
        return int(self.value.size)

    def __reduce__(self):
        # pickled as "container `name` of the model", like Param: unpickled together with its
        # model, it is that model's own container
        return _data_of, (self._model, self.name)

    def __repr__(self) -> str:
        return f"Data({self.name!r}, shape={self.shape})"

    def __bool__(self):
        raise TypeError(f"data container {self.name!r} has no truth value; use its .value")

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError(f"len() of the scalar data container {self.name!r}")
        return self.shape[0]


def _data_of(model: Model, name: str) -> Data:
    return model._data[name]


# ---- what expressions record about their data -----------------------------------------------------


def sign_bounds(values: np.ndarray) -> Tuple[float, float]:
    """The bounds an expression may assume for a container operand: the sign of its values (lower
    0 if none is negative, upper 0 if none is positive), not their range, so that set_data can
    bring values of any size as long as the sign stays (a positive exposure stays positive)."""
    if values.size == 0:
        return -math.inf, math.inf
    lower = 0.0 if float(values.min()) >= 0 else -math.inf
    upper = 0.0 if float(values.max()) <= 0 else math.inf
    return lower, upper


def check_values(name: str, values: np.ndarray, lower: float, upper: float, nonzero: bool, used_by: str) -> None:
    """The checks an expression made of its container operand: finite, within the bounds it
    derived from it, no zero in a divisor. Raises ValueError naming the container and the
    expression."""
    where = f"data container {name!r} (used in {used_by})"
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{where} contains {values.flat[bad[0]]} at flat index {int(bad[0])}")
    if lower == 0.0 and np.any(values < 0):
        raise ValueError(f"{where} must stay >= 0: the expression's bounds were derived from non-negative values")
    if upper == 0.0 and np.any(values > 0):
        raise ValueError(f"{where} must stay <= 0: the expression's bounds were derived from non-positive values")
    if nonzero:
        zeros = np.flatnonzero(values == 0)
        if zeros.size:
            raise ValueError(f"{where}: division by zero (the divisor contains 0 at flat index {int(zeros[0])})")


def gather_positions(values: np.ndarray, a_shape: Tuple[int, ...], name: str, used_by: str) -> np.ndarray:
    """The flat positions of ``a[values]`` (integer indices along a's first axis, as numpy takes
    them, negative ones counting from the end), shaped like the result."""
    where = f"data container {name!r} (indices of {used_by})"
    if not a_shape:
        raise ValueError(f"{where}: cannot index a scalar")
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise ValueError(f"{where} must hold integers")
    n = a_shape[0]
    if values.size and (values.min() < -n or values.max() >= n):
        raise ValueError(
            f"{where}: index out of range for axis 0 of length {n} (values from {values.min():g} to {values.max():g})"
        )
    flat = np.arange(element_count(a_shape), dtype=np.int64).reshape(a_shape)
    return flat[values.astype(np.int64)]


def points_of(values: np.ndarray, name: str, used_by: str) -> np.ndarray:
    """A container's values as the (N, D) points of fv.exp_quad_cov."""
    if values.ndim not in (1, 2) or values.shape[0] < 1:
        raise ValueError(
            f"data container {name!r} (the points of {used_by}) must have shape (N,) or (N, D) with N >= 1, "
            f"got {values.shape}"
        )
    return values.reshape(values.shape[0], -1)


# ---- the build log ------------------------------------------------------------------------------

_OPERAND_KINDS = ("block", "reshaped", "data", "container")

# Build steps that pick elements of their inputs at positions fixed when they were built: an input
# whose shape changed would silently be read wrong, so the rebuild refuses it.
_FIXED_POSITIONS = ("add_gather", "add_segmented", "add_concat")


def operands(entry: tuple) -> Iterator[tuple]:
    """The operands of a build-log entry (some steps hold a tuple of them)."""
    for arg in entry[1:]:
        if isinstance(arg, tuple) and arg and arg[0] in _OPERAND_KINDS and isinstance(arg[1], str):
            yield arg
        elif isinstance(arg, tuple):
            for inner in arg:
                if isinstance(inner, tuple) and inner and inner[0] in _OPERAND_KINDS:
                    yield inner


def containers_in(entry: tuple) -> Dict[str, str]:
    """{container name: the input it is} for the containers a build-log entry uses."""
    used = {o[2]: o[1] for o in operands(entry) if o[0] == "container"}
    if entry[0] == "check_data":  # ("check_data", name, lower, upper, nonzero, label)
        used[entry[1]] = "operand"
    elif entry[0] == "add_gather_data":  # ("add_gather_data", a, name, label)
        used[entry[2]] = "indices"
    return used


# The model attributes that replaying the build log rebuilds.
_REPLAYED = ("_core", "_params", "_deterministics", "_factors", "_recipe", "_data", "_data_values")


def rebuild(model: Model, new_values: Dict[str, np.ndarray]) -> None:
    """Replays the model's build log with new container values into a fresh C++ model. On any
    failure the model is restored as it was and the error names the containers at fault."""
    saved = {key: model.__dict__[key] for key in model._OWN}
    recipe = [
        ("declare_data", entry[1], new_values[entry[1]])
        if entry[0] == "declare_data" and entry[1] in new_values
        else entry
        for entry in model._recipe
    ]
    old_core = saved["_core"]
    model._reset()
    entry: tuple = ()
    try:
        for entry in recipe:
            if entry[0] in _FIXED_POSITIONS or any(o[0] == "reshaped" for o in operands(entry)):
                _require_same_shapes(entry, model, old_core, saved["_data_values"])
            if entry[0] == "add_matmul":
                entry = _matmul_with_current_shapes(entry, model)
            elif entry[0] == "deterministic":
                entry = _deterministic_with_current_shape(entry, model, old_core)
            model._build(*entry)
    except (ValueError, IndexError, RuntimeError) as err:
        model.__dict__.update(saved)
        culprits = [n for n in containers_in(entry) if n in new_values] or sorted(new_values)
        names = ("data container " if len(culprits) == 1 else "data containers ") + ", ".join(repr(n) for n in culprits)
        raise type(err)(f"set_data: the new values of {names} do not fit the model: {err}") from None
    except BaseException:  # (Ctrl-C, MemoryError): never leave the model half rebuilt
        model.__dict__.update(saved)
        raise
    if model.dim != saved["_core"].dim:  # cannot happen: set_data never changes a parameter
        model.__dict__.update(saved)
        raise RuntimeError("set_data changed the model's dimension")
    # what the replay does not rebuild (Python-side state a model may keep outside its build log)
    # stays as it was
    for key, value in saved.items():
        if key not in _REPLAYED:
            setattr(model, key, value)
    # the caller's objects stay the model's: parameters and containers are unchanged, and the
    # deterministics keep their identity with their shapes brought up to date
    model._params = saved["_params"]
    model._data = saved["_data"]
    for name, rebuilt in model._deterministics.items():
        mine = saved["_deterministics"][name]
        mine.shape = rebuilt.shape
        model._deterministics[name] = mine


def _require_same_shapes(entry: tuple, model: Model, old_core: Any, old_values: Dict[str, np.ndarray]) -> None:
    label = next((a for a in reversed(entry) if isinstance(a, str)), entry[0])
    for o in operands(entry):
        if o[0] in ("block", "reshaped", "container"):
            if o[0] == "container":
                name = f"data container {o[2]!r}"
                before, now = old_values[o[2]].shape, model._data_values[o[2]].shape
            else:
                name = model._core.block(o[2])["name"]
                before, now = tuple(old_core.block(o[2])["shape"]), tuple(model._core.block(o[2])["shape"])
            if before != now:
                raise ValueError(
                    f"{label}: its input {name} changes shape from {before} to {now}, and {label} picks "
                    f"elements at positions fixed when it was built; keep the shape of the data it depends on"
                )


def with_values(model: Model, encoded: tuple) -> tuple:
    """A build-log operand with a container reference replaced by its current values,
    ``("data", input, array)``, for code that reads data out of the recipe (observed values)."""
    if encoded[0] == "container":
        return ("data", encoded[1], model._data_values[encoded[2]])
    return encoded


def operand_shape(model: Model, encoded: tuple) -> Tuple[int, ...]:
    """The current shape of a build-log operand."""
    kind = encoded[0]
    if kind == "reshaped":
        return tuple(encoded[3])
    if kind == "block":
        return tuple(model._core.block(encoded[2])["shape"])
    if kind == "container":
        return tuple(model._data_values[encoded[2]].shape)
    return tuple(np.shape(encoded[2]))


def _matmul_with_current_shapes(entry: tuple, model: Model) -> tuple:
    """An add_matmul step with n, k, m and the result's shape worked out from the operands' current
    shapes (a container operand may have a new length)."""
    op, a, b, n, k, m, shape, label = entry
    sa, sb = operand_shape(model, a), operand_shape(model, b)
    n, k = (1, sa[0]) if len(sa) == 1 else sa
    k2, m = (sb[0], 1) if len(sb) == 1 else sb
    if k != k2:
        raise ValueError(f"{label}: the operands now have shapes {sa} and {sb} (inner dimensions differ)")
    shape = (() if len(sa) == 1 else (n,)) + (() if len(sb) == 1 else (m,))
    return (op, a, b, n, k, m, shape, label)


def _deterministic_with_current_shape(entry: tuple, model: Model, old_core: Any) -> tuple:
    """A deterministic step with the shape its block has now. A deterministic recorded with another
    shape than its block's (a reshape) must keep its block's shape."""
    op, name, block, shape, lower, upper, label = entry
    before, now = tuple(old_core.block(block)["shape"]), tuple(model._core.block(block)["shape"])
    if before == now:
        return entry
    if tuple(shape) != before:
        raise ValueError(
            f"deterministic {name!r}: {label} changes shape from {before} to {now}, and {name!r} reshapes it "
            f"to {tuple(shape)}; keep the shape of the data it depends on"
        )
    return (op, name, block, now, lower, upper, label)
