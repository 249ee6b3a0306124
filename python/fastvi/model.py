"""Model building: parameter blocks and factors bound to registered kernels.

Every call that changes the C++ model goes through ``Model._build``, which also appends it to the
model's build log (its recipe): a tuple per call, of plain values (names, shapes, bounds, arrays;
operands as ``("block", input name, block id)``, ``("data", input name, array)`` or
``("container", input name, container name)`` for a data container, see _data.py). Replaying
the recipe on a fresh C++ model rebuilds the same model, block ids included: that is how models
(and the expressions and approximations that refer to them) are copied and pickled, and how
``set_data`` swaps a container's values.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _blas, _core, _data, _spill
from ._data import Data
from ._kernels import kernel_spec, registry_name, user_name
from ._threads import warn_if_forked
from ._validate import as_data, as_real_array, check_size, threads_setting
from .expr import Expr

Shape = Union[int, Sequence[int]]
Dims = Union[str, Sequence[str]]

# ArviZ names the axes of every draw "chain" and "draw": a variable's own axes cannot take them.
_RESERVED_DIMS = ("chain", "draw")


class Param(Expr):
    """A parameter block of a :class:`Model`: pass it (or expressions of it) as kernel inputs.

    Returned by :meth:`Model.param`, not constructed directly. A parameter is an :class:`Expr`:
    it combines with numbers, arrays and other expressions of its model.

    Attributes
    ----------
    name : str
        The parameter's name: the key of its values in ``fit.mean()``, ``fit.sample()``, ...
    shape : tuple of int
        The block's shape (``()`` for a scalar).
    lower, upper : float
        Its bounds (``-inf`` / ``inf`` where there is none); for a vector transform, the range
        its values lie in (a simplex's in (0, 1), a Cholesky factor of a correlation matrix's in
        [-1, 1], a positive_ordered vector's above 0).
    transform : str or None
        The vector transform (``"simplex"``, ``"ordered"``, ``"positive_ordered"``,
        ``"cholesky_corr"``, ``"cholesky_cov"``), or None for a real or bounded parameter.
    constrained : bool
        Whether it has a finite bound or a vector transform (and so a transform to the
        unconstrained space).
    offset : int
        The first coordinate of the block in the model's unconstrained vector (the block takes
        coordinates ``offset`` to ``offset + free_size - 1``, in C order).
    free_size : int
        The block's unconstrained coordinates: ``size``, or fewer for a vector transform (a
        K-simplex has K - 1, a K x K Cholesky factor K(K + 1)/2 or K(K - 1)/2 for a correlation
        matrix's).
    row : int
        The first row of the block in the model's value matrix (internal bookkeeping).

    See Also
    --------
    Model.param

    Examples
    --------
    >>> import fastvi as fv
    >>> m = fv.Model()
    >>> sigma = m.param("sigma", lower=0.0)
    >>> beta = m.param("beta", shape=(3,))
    >>> sigma
    Param('sigma', shape=(), lower=0)
    >>> sigma.constrained, beta.constrained, beta.offset, beta.size
    (True, False, 1, 3)
    >>> w = m.param("w", shape=(3,), transform="simplex")
    >>> w
    Param('w', shape=(3,), transform='simplex')
    >>> w.size, w.free_size, w.offset, m.dim
    (3, 2, 4, 6)
    """

    def __init__(
        self,
        model: Model,
        name: str,
        shape: Tuple[int, ...],
        lower: float,
        upper: float,
        block: int,
        offset: int,
        row: int,
        transform: Optional[str] = None,
        free_size: Optional[int] = None,
    ):
        super().__init__(model, block, shape, lower, upper, label=name)
        self.name = name
        self.offset = offset  # first coordinate of the block in the unconstrained vector
        self.row = row  # first row of the block in the value matrix
        self.transform = transform  # a vector transform's name, or None
        self.free_size = self.size if free_size is None else free_size  # coordinates in zeta

    def __reduce__(self):
        # pickled (and deep-copied) as "parameter `name` of the model", so that a parameter
        # unpickled together with its model is that model's own Param object
        return _param_of, (self._model, self.name)

    @property
    def constrained(self) -> bool:
        """Whether the parameter has a finite ``lower`` or ``upper`` bound or a vector transform.

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> m.param("p", lower=0.0, upper=1.0).constrained, m.param("z").constrained
        (True, False)
        >>> m.param("c", shape=(3,), transform="ordered").constrained
        True
        """
        return self.transform is not None or math.isfinite(self.lower) or math.isfinite(self.upper)

    def __repr__(self) -> str:
        if self.transform is not None:
            return f"Param({self.name!r}, shape={self.shape}, transform={self.transform!r})"
        bounds = ""
        if math.isfinite(self.lower):
            bounds += f", lower={self.lower:g}"
        if math.isfinite(self.upper):
            bounds += f", upper={self.upper:g}"
        return f"Param({self.name!r}, shape={self.shape}{bounds})"


def _param_of(model: Model, name: str) -> Param:
    return model._params[name]


def _as_shape(shape: Shape, name: str) -> Tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        dims = list(shape)  # type: ignore[arg-type]  # (an int was handled above; anything else may raise)
        out = tuple(int(d) for d in dims)
        ok = all(not isinstance(d, bool) and int(d) == d for d in dims)
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
        raise ValueError(
            f"parameter {name!r}: the width of (lower, upper) = ({float(lo)!r}, {float(hi)!r}) overflows to inf; "
            f"use a one-sided bound or rescale the parameter"
        )


class Model:
    """A probabilistic model: parameters and the log-density factors that involve them.

    Declare parameters with :meth:`param`, add log-density terms (priors and likelihoods alike)
    with :meth:`add`, record derived quantities with :meth:`deterministic`, then fit with
    :func:`fastvi.fit`. The log density is the sum of the factors, with the log-Jacobians of the
    constraint transforms, in the unconstrained space of dimension :attr:`dim`.

    Parameters
    ----------
    coords : mapping of str to array_like, optional
        Labels of named dimensions (see :meth:`add_coords`): ``{"county": names}`` labels the
        axes declared with ``dims=("county",)`` in ``fit.to_inference_data()``.

    Attributes
    ----------
    params : dict of str to Param
        Declared parameters, in declaration order.
    deterministics : dict of str to Expr
        Recorded deterministic quantities, in the order they were recorded.
    factors : list of (str, str)
        ``(label, kernel name)`` of every factor, in the order they were added.
    dim : int
        Number of unconstrained coordinates (the total size of the parameter blocks, less the
        coordinates vector transforms remove: a K-simplex has K - 1).
    coords : dict of str to ndarray
        Labels of the named dimensions.
    dims : dict of str to tuple of str
        The axis names of the parameters and deterministics declared with ``dims``.

    See Also
    --------
    fit : Fit a Gaussian approximation to the model's posterior.
    kernels : The kernels ``add`` accepts.

    Notes
    -----
    Models can be pickled, and ``copy.copy`` and ``copy.deepcopy`` give independent models (both
    rebuild the model from its build log). Use the copy's own parameters (``copy.params``), or
    copy a model together with expressions of it (``copy.deepcopy((model, expr))``). A model that
    uses a kernel registered from Python (``fv.register_kernel``) or by an extension module can
    only be unpickled where that kernel is registered (under the same name) first. An unpickled
    model binds the kernel's definition current there, while a copy keeps the one the original
    bound (see ``register_kernel``'s ``replace``).

    While the model is being fitted or evaluated in another thread, it cannot change: ``param``,
    ``add`` and new expressions raise RuntimeError until that returns.

    Examples
    --------
    The posterior of a normal mean:

    >>> import numpy as np, fastvi as fv
    >>> np.random.seed(42)
    >>> x = np.random.normal(2.0, 1.0, size=100)
    >>> model = fv.Model()
    >>> w = model.param("w")
    >>> model.add("normal", w, loc=0.0, scale=1.0)
    >>> model.add("normal", x, loc=w, scale=1.0)
    >>> model.dim, list(model.params)
    (1, ['w'])

    A copy is independent of the original:

    >>> import copy
    >>> other = copy.deepcopy(model)
    >>> _ = other.param("extra")
    >>> model.dim, other.dim
    (1, 2)
    """

    def __init__(self, coords: Optional[Mapping[str, Any]] = None) -> None:
        self._reset()
        if coords is not None:
            self.add_coords(coords)

    def _reset(self) -> None:
        self._core = _core.Model()
        self._params: Dict[str, Param] = {}
        self._deterministics: Dict[str, Expr] = {}
        self._factors: list = []
        self._recipe: list = []  # the build log: one tuple per call that changed self._core
        self._data: Dict[str, Data] = {}  # data containers by name (model.data)
        self._data_values: Dict[str, np.ndarray] = {}  # their current values (read-only arrays)
        # Named dimensions live on the Python side only (the C++ model has no use for them):
        # labels per dimension name, and the dimension names of each variable that has them.
        # Parameters and deterministics are keyed by name, factors by their index in _factors.
        self._coords: Dict[str, np.ndarray] = {}
        self._var_dims: Dict[str, Tuple[str, ...]] = {}
        # factor index -> (axis names, shape) of its observed value
        self._factor_dims: Dict[int, Tuple[Tuple[str, ...], Tuple[int, ...]]] = {}

    # ---- parameters -----------------------------------------------------------------------------

    def param(
        self,
        name: str,
        shape: Shape = (),
        lower: Optional[float] = None,
        upper: Optional[float] = None,
        transform: Optional[str] = None,
        dims: Optional[Dims] = None,
    ) -> Param:
        """Declares a parameter block and returns a reference to use as a kernel input.

        ``lower`` and/or ``upper`` constrain it (through log or logit transforms; the fit works in
        the unconstrained space and accounts for the Jacobian): lower-bounded ``lower + exp(z)``,
        upper-bounded ``upper - exp(z)``, interval ``lower + (upper - lower) * inv_logit(z)``. A
        parameter with no factor acting on it has a flat, improper prior.

        ``transform`` declares a vector-valued constraint instead (Stan's definitions, with their
        log-Jacobians), on the last axis of ``shape`` (the last two for the Cholesky factors; any
        leading axes hold independent vectors or matrices):

        - ``"simplex"``, shape ``(K,)``, K >= 2: positive, summing to 1, from K - 1 free
          coordinates by stick-breaking, ``x_k = stick_k * inv_logit(z_k - log(K - 1 - k))``
          (``stick_0 = 1``, ``stick_{k+1} = stick_k - x_k``, ``x_{K-1} = stick_{K-1}``), so that
          z = 0 is the uniform simplex. With no factor on it, its density is uniform on the
          simplex (a flat Dirichlet(1, ..., 1)).
        - ``"ordered"``, shape ``(K,)``: strictly increasing, ``x_0 = z_0``,
          ``x_k = x_{k-1} + exp(z_k)``.
        - ``"positive_ordered"``, shape ``(K,)``: positive and strictly increasing,
          ``x_0 = exp(z_0)``, ``x_k = x_{k-1} + exp(z_k)``.
        - ``"cholesky_corr"``, shape ``(K, K)``, K >= 2: the lower-triangular Cholesky factor L of
          a correlation matrix (L @ L.T has a unit diagonal), from K(K - 1)/2 free coordinates
          (``tanh`` gives the canonical partial correlations, row by row below the diagonal).
          The log-Jacobian is that of the free (strictly lower) entries, as in Stan: with no
          factor on it, L is uniform in them, not LKJ(1) over L @ L.T (that needs a prior).
        - ``"cholesky_cov"``, shape ``(K, K)``: lower-triangular with a positive diagonal (the
          Cholesky factor of a covariance matrix), from K(K + 1)/2 free coordinates: the lower
          triangle row by row, ``exp`` on the diagonal. Its flat density is flat in L.

        :attr:`dim` counts the free coordinates; ``fit.sample()``, ``mean()`` and ``std()``
        report the constrained values, with the parameter's full shape.

        Parameters
        ----------
        name : str
            A non-empty name, unique among the model's parameters and deterministics.
        shape : int or tuple of int, default ()
            The block's shape; ``()`` is a scalar. Every dimension must be >= 1, and a block has
            at most 2**40 elements.
        lower, upper : float or None, default None
            Bounds (``None``: unbounded on that side). With both, ``lower < upper`` and the width
            ``upper - lower`` must be a finite float.
        transform : str or None, default None
            A vector transform: ``"simplex"``, ``"ordered"``, ``"positive_ordered"``,
            ``"cholesky_corr"`` or ``"cholesky_cov"``; not together with ``lower`` / ``upper``.
        dims : str or sequence of str, optional
            A name for each axis of ``shape`` (a str for a vector), as in PyMC: the axes of the
            parameter in ``fit.to_inference_data()``, labelled by the model's :attr:`coords`
            where it has labels for them. Axes sharing a name must have the same length.

        Returns
        -------
        Param
            The parameter, to pass as a kernel input or combine into expressions.

        Raises
        ------
        TypeError
            If ``name`` is not a non-empty str, ``shape`` is not an int or a tuple of ints, or a
            bound is not a real number (``bool`` is refused).
        ValueError
            If the name is already taken, a dimension is < 1, the block is too large, a bound is
            NaN, ``lower >= upper``, or the interval's width overflows; if ``transform`` is not
            one of those names, is given with ``lower`` or ``upper``, or does not fit the shape
            (a simplex needs K >= 2, a Cholesky factor a square (K, K) shape, ...); if ``dims``
            does not name every axis once, or an axis's length differs from the labels in
            :attr:`coords` or from another variable's axis of the same name.
        RuntimeError
            If the model is being fitted or evaluated in another thread.

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> m.param("mu")
        Param('mu', shape=())
        >>> m.param("sigma", lower=0.0)
        Param('sigma', shape=(), lower=0)
        >>> m.param("p", shape=(2, 3), lower=0.0, upper=1.0)
        Param('p', shape=(2, 3), lower=0, upper=1)
        >>> m.dim
        8

        Named axes, labelled by the model's coords (they appear in ``fit.to_inference_data()``):

        >>> m = fv.Model(coords={"county": ["Aitkin", "Anoka", "Becker"]})
        >>> a = m.param("a", shape=3, dims="county")
        >>> m.dims
        {'a': ('county',)}
        >>> m.param("b", shape=4, dims="county")
        Traceback (most recent call last):
            ...
        ValueError: parameter 'b': axis 0 ('county') has length 4, but the model's coords label 'county' with 3 values

        Vector transforms: a 3-simplex has 2 free coordinates, a 3 x 3 correlation matrix's
        Cholesky factor 3.

        >>> import numpy as np
        >>> m = fv.Model()
        >>> theta = m.param("theta", shape=3, transform="simplex")
        >>> L = m.param("L", shape=(3, 3), transform="cholesky_corr")
        >>> m.dim
        5
        >>> values = m.constrain(np.zeros(5))
        >>> np.round(values["theta"], 4).tolist()          # zeta = 0: the uniform simplex
        [0.3333, 0.3333, 0.3333]
        >>> np.allclose(values["L"], np.eye(3))            # and the identity correlation matrix
        True
        >>> m.param("c", shape=(2, 3), transform="cholesky_cov")   # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: parameter 'c': transform 'cholesky_cov' needs square matrices, ... got (2, 3)
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"parameter name must be a non-empty str, got {name!r}")
        if name in self._deterministics:
            raise ValueError(f"parameter {name!r}: the name is already used by a deterministic")
        shape = _as_shape(shape, name)
        axis_names = self._check_dims(f"parameter {name!r}", name, shape, dims)
        if transform is not None:
            if not isinstance(transform, str):
                raise TypeError(f"parameter {name!r}: transform must be a str or None, got {transform!r}")
            if transform not in TRANSFORMS:
                raise ValueError(
                    f"parameter {name!r}: unknown transform {transform!r}; expected one of "
                    + ", ".join(repr(t) for t in TRANSFORMS)
                )
            if lower is not None or upper is not None:
                raise ValueError(
                    f"parameter {name!r}: transform={transform!r} cannot be combined with lower or upper bounds "
                    f"(the transform defines the constraint)"
                )
            param = self._build("add_param_transform", name, shape, transform)
            self._set_dims(name, axis_names)
            return param
        lo = _as_bound(lower, "lower", name)
        hi = _as_bound(upper, "upper", name)
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"parameter {name!r}: lower ({float(lo)!r}) must be less than upper ({float(hi)!r})")
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        _check_interval(lo, hi, name)
        param = self._build("add_param", name, shape, lo, hi)
        self._set_dims(name, axis_names)
        return param

    def deterministic(self, name: str, expr: Expr, dims: Optional[Dims] = None) -> Expr:
        """Records ``expr`` under ``name``: its values appear in ``sample()``, ``mean()``, ``std()``
        and summaries.

        Parameters
        ----------
        name : str
            A non-empty name, unique among the model's parameters and deterministics.
        expr : Expr
            An expression of this model's parameters.
        dims : str or sequence of str, optional
            A name for each axis of ``expr`` (as for :meth:`param`).

        Returns
        -------
        Expr
            ``expr`` itself, so that it can be used as a kernel input too.

        Raises
        ------
        TypeError
            If ``name`` is not a non-empty str, or ``expr`` is not an expression of this model.
        ValueError
            If the name is already used, or ``dims`` does not fit ``expr``'s shape (see
            :meth:`param`).

        See Also
        --------
        Approximation.mean : A deterministic's mean is a Monte Carlo estimate over 10,000 draws.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> log_sigma = m.param("log_sigma")
        >>> sigma = m.deterministic("sigma", fv.exp(log_sigma))
        >>> list(m.deterministics)
        ['sigma']
        >>> float(m.constrain(np.array([0.0]))["sigma"])
        1.0
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"deterministic name must be a non-empty str, got {name!r}")
        if name in self._params or name in self._deterministics:
            raise ValueError(f"deterministic {name!r}: the name is already used")
        if not isinstance(expr, Expr) or expr._model is not self:
            raise TypeError(f"deterministic {name!r}: expected an expression of this model's parameters")
        axis_names = self._check_dims(f"deterministic {name!r}", name, expr.shape, dims)
        self._build("deterministic", name, expr._block, expr.shape, expr.lower, expr.upper, expr._label)
        self._deterministics[name] = expr  # the caller's own object, rather than the replay's equal one
        self._set_dims(name, axis_names)
        return expr

    @property
    def deterministics(self) -> Dict[str, Expr]:
        """Recorded deterministic quantities, in the order they were recorded (a new dict).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> a = m.param("a")
        >>> _ = m.deterministic("twice_a", 2.0 * a)
        >>> m.deterministics
        {'twice_a': <Expr (data * a) shape=()>}
        """
        return dict(self._deterministics)

    @property
    def params(self) -> Dict[str, Param]:
        """Declared parameters, in declaration order (a new dict).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> _ = m.param("mu"), m.param("tau", lower=0.0)
        >>> m.params
        {'mu': Param('mu', shape=()), 'tau': Param('tau', shape=(), lower=0)}
        """
        return dict(self._params)

    # ---- named dimensions -----------------------------------------------------------------------

    @property
    def coords(self) -> Dict[str, np.ndarray]:
        """Labels of the named dimensions, by dimension name (a new dict of read-only arrays).

        Given to the constructor (``fv.Model(coords=...)``) or to :meth:`add_coords`; they label
        the axes that :meth:`param`, :meth:`deterministic` and :meth:`add` name with ``dims``
        in ``fit.to_inference_data()``.

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model(coords={"county": ["Aitkin", "Anoka"]})
        >>> m.coords["county"].tolist()
        ['Aitkin', 'Anoka']
        """
        return dict(self._coords)

    @property
    def dims(self) -> Dict[str, Tuple[str, ...]]:
        """The axis names of every parameter and deterministic declared with ``dims`` (a new dict).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> _ = m.param("beta", shape=(2, 3), dims=("group", "predictor"))
        >>> _ = m.param("sigma", lower=0.0)
        >>> m.dims
        {'beta': ('group', 'predictor')}
        """
        return dict(self._var_dims)

    def add_coords(self, coords: Mapping[str, Any]) -> None:
        """Adds labels for named dimensions (PyMC's ``model.add_coords``).

        Parameters
        ----------
        coords : mapping of str to array_like
            For each dimension name, a 1-D sequence of labels (strings, numbers, dates), one per
            position along that axis.

        Raises
        ------
        TypeError
            If a dimension name is not a non-empty str.
        ValueError
            If labels are not 1-D or empty; if the dimension already has different labels; if a
            variable already declared has that axis with another length; or if the name is
            ``"chain"`` or ``"draw"`` (ArviZ's axes of the draws).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> theta = m.param("theta", shape=2, dims="school")
        >>> m.add_coords({"school": ["Choate", "Deerfield"]})
        >>> m.add_coords({"school": ["A", "B", "C"]})
        Traceback (most recent call last):
            ...
        ValueError: coords: dimension 'school' already has labels ['Choate', 'Deerfield']; labels cannot change
        """
        if not isinstance(coords, Mapping):
            raise TypeError(f"coords must be a mapping of dimension name to labels, got {type(coords).__name__}")
        lengths = self._dim_lengths()
        new: Dict[str, np.ndarray] = {}
        for dim, labels in coords.items():
            if not isinstance(dim, str) or not dim:
                raise TypeError(f"coords: dimension names must be non-empty str, got {dim!r}")
            if dim in _RESERVED_DIMS:
                raise ValueError(f"coords: {dim!r} is reserved for the axes of the draws ('chain', 'draw')")
            arr = np.array(labels)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(
                    f"coords: the labels of {dim!r} must be a non-empty 1-D sequence, got shape {arr.shape}"
                )
            old = self._coords.get(dim)
            if old is not None:
                if old.shape != arr.shape or not np.array_equal(old, arr):
                    raise ValueError(
                        f"coords: dimension {dim!r} already has labels {old.tolist()!r}; labels cannot change"
                    )
                continue
            if dim in lengths and lengths[dim][0] != arr.size:
                length, owner = lengths[dim]
                raise ValueError(
                    f"coords: {arr.size} labels for {dim!r}, but {owner} has that axis with length {length}"
                )
            arr.flags.writeable = False
            new[dim] = arr
        self._coords.update(new)  # all or nothing: nothing is added if one entry is refused

    def _dim_lengths(self) -> Dict[str, Tuple[int, str]]:
        """{dimension name: (length, the first variable that has it)} over every declared axis."""
        out: Dict[str, Tuple[int, str]] = {}
        exprs = {**self._params, **self._deterministics}
        named = [
            (exprs[n].shape, f"{'parameter' if n in self._params else 'deterministic'} {n!r}", d)
            for n, d in self._var_dims.items()
        ]
        for index, (d, shape) in self._factor_dims.items():
            named.append((shape, f"factor {self._factors[index][0]!r}", d))
        for shape, owner, axis_names in named:
            for length, dim in zip(shape, axis_names):
                out.setdefault(dim, (length, owner))
        return out

    def _check_dims(
        self, what: str, name: Optional[str], shape: Tuple[int, ...], dims: Optional[Dims]
    ) -> Optional[Tuple[str, ...]]:
        """dims as a tuple of names, checked against shape, coords and the other variables' axes
        (before anything is built, so that a refused call leaves the model unchanged)."""
        if name is not None and (name in self._coords or name in self._dim_lengths()):
            raise ValueError(f"{what}: {name!r} is the name of a dimension; rename one of them")
        if dims is None:
            return None
        names = (dims,) if isinstance(dims, str) else dims
        try:
            names = tuple(names)
        except TypeError:
            raise TypeError(f"{what}: dims must be a str or a sequence of str, got {dims!r}") from None
        if not all(isinstance(d, str) and d for d in names):
            raise TypeError(f"{what}: dims must be non-empty str, got {dims!r}")
        if len(names) != len(shape):
            raise ValueError(f"{what}: dims {names!r} names {len(names)} axes, but its shape {shape} has {len(shape)}")
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: dims {names!r} names an axis twice")
        # a dimension named like a variable would clash with it in the InferenceData's datasets
        observed = {label for label, _ in self._factors}
        variables = {*self._params, *self._deterministics, *observed, *([name] if name else [])}
        lengths = self._dim_lengths()
        for axis, (dim, length) in enumerate(zip(names, shape)):
            if dim in _RESERVED_DIMS:
                raise ValueError(f"{what}: {dim!r} is reserved for the axes of the draws ('chain', 'draw')")
            if dim in variables:
                raise ValueError(f"{what}: dimension {dim!r} has the name of a variable; rename one of them")
            labels = self._coords.get(dim)
            if labels is not None and labels.size != length:
                raise ValueError(
                    f"{what}: axis {axis} ({dim!r}) has length {length}, but the model's coords label {dim!r} "
                    f"with {labels.size} values"
                )
            if dim in lengths and lengths[dim][0] != length:
                raise ValueError(
                    f"{what}: axis {axis} ({dim!r}) has length {length}, but {lengths[dim][1]} has that axis "
                    f"with length {lengths[dim][0]}"
                )
        return names

    def _set_dims(self, name: str, axis_names: Optional[Tuple[str, ...]]) -> None:
        if axis_names is not None:
            self._var_dims[name] = axis_names

    @property
    def dim(self) -> int:
        """Number of unconstrained coordinates: the total number of parameter elements, less
        what vector transforms take away (a K-simplex has K - 1 coordinates).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> _ = m.param("mu"), m.param("beta", shape=(2, 3))
        >>> m.dim
        7
        >>> _ = m.param("w", shape=(4,), transform="simplex")
        >>> m.dim
        10
        """
        return self._core.dim

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    # ---- data containers ------------------------------------------------------------------------

    def data(self, name: str, value: Any) -> Data:
        """Declares a named data container: data that :meth:`set_data` can replace later.

        Use the returned :class:`Data` wherever the model takes data: a kernel's variate or input
        in :meth:`add`, an operand of expressions (``X @ beta``, ``a + b * x``, ``mu / exposure``),
        gather indices (``alpha[group]``, integers along the first axis) and the points of
        :func:`exp_quad_cov`. The model records
        the container, not its values, so that ``set_data`` can refit or predict on new data
        without building the model again (PyMC's ``pm.Data``).

        Parameters
        ----------
        name : str
            A non-empty name, unique among the model's data containers.
        value : array_like
            Real numbers (stored as a read-only float64 copy). Where it is used is where it is
            checked (NaN, a kernel's support), as for plain arrays.

        Returns
        -------
        Data
            The container.

        Raises
        ------
        TypeError
            If ``name`` is not a non-empty str, or ``value`` is not real numbers.
        ValueError
            If the name is already taken by a container.

        See Also
        --------
        set_data : Replace the values.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> x = m.data("x", np.array([0.0, 1.0, 2.0]))
        >>> y = m.data("y", np.array([0.1, 0.9, 2.2]))
        >>> b = m.param("b")
        >>> m.add("normal", b, loc=0.0, scale=1.0)
        >>> m.add("normal", y, loc=b * x, scale=0.5)
        >>> m.factors[1]
        ("factor 1 (normal on data 'y')", 'normal')
        >>> m.data_containers
        {'x': Data('x', shape=(3,)), 'y': Data('y', shape=(3,))}
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"data container name must be a non-empty str, got {name!r}")
        if name in self._data:
            raise ValueError(f"data container {name!r}: the name is already used")
        return self._build("declare_data", name, as_data(value, f"data container {name!r}"))

    def set_data(self, name: Union[str, Dict[str, Any]], value: Any = None) -> None:
        """Replaces the values of data containers and rebuilds the model on them.

        ``model.set_data("x", new_x)`` or, for several at once, ``model.set_data({"x": new_x,
        "y": new_y})``. The model is rebuilt from its build log with the new values, and every
        check made when it was built runs again (NaN, a kernel's support, shapes that must
        broadcast), with messages that name the container and the factor or expression at fault;
        if one fails, the model is left as it was. The parameters (and :attr:`dim`) never change.

        The same shape always works. A different shape (a new number of rows, say) works where
        the model still builds consistently: kernels, element-wise arithmetic, ``X @ beta``, sums,
        ``a[g]`` with a container ``g`` and :func:`exp_quad_cov` points follow the new shapes
        (so ``x`` and ``y`` of a new length N together are fine, and deterministics take their
        new shapes); what picks
        elements at positions fixed when it was built (indexing with a constant array or slice,
        ``fv.sum`` along an axis, ``concatenate``, ``reshape``) refuses an input whose shape
        changed, naming it. A container used in an expression must stay finite, keep the sign of
        its values where the expression's bounds rely on it (``sigma * exposure`` with a positive
        ``sigma``; not ``b * x`` with an unbounded ``b``) and, as a divisor, have no zero.

        A fit made before keeps q: ``sample()``, ``mean()`` and ``std()`` still work, and
        deterministics are evaluated on the current data (how to predict on new data); what
        needs the log density of the data it was fitted to (``run_psis``, ``importance="psis"``)
        raises until the data is set back. Pass the old fit as ``init`` to refit from it.
        Expressions created before a change of shape keep their old ``shape`` attribute. The
        rebuilt model is a new C++ model: a fit running in another thread finishes on the old data.

        Parameters
        ----------
        name : str or dict of str to array_like
            A container's name, or a dict of names to new values.
        value : array_like, optional
            The new values (with a name; not with a dict).

        Raises
        ------
        KeyError
            If a name is not a data container of this model.
        TypeError
            If a value is not real numbers, or the arguments are mixed up (a dict and a value).
        ValueError
            If the model does not build on the new values (the message names the container).

        See Also
        --------
        data : Declare a container.
        fit : ``init=previous_fit`` starts from an earlier fit.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> from scipy import stats
        >>> m = fv.Model()
        >>> y = m.data("y", np.array([1.0, 2.0]))
        >>> w = m.param("w")
        >>> m.add("normal", y, loc=w, scale=1.0)
        >>> lp, _ = m.log_density(np.array([0.5]))
        >>> bool(np.isclose(lp, stats.norm.logpdf([1.0, 2.0], 0.5).sum()))
        True
        >>> m.set_data("y", np.array([0.0, 3.0, 4.0]))        # a new length: nothing depends on it
        >>> lp, _ = m.log_density(np.array([0.5]))
        >>> bool(np.isclose(lp, stats.norm.logpdf([0.0, 3.0, 4.0], 0.5).sum()))
        True
        >>> m.set_data("y", np.array([0.0, np.nan]))     # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: set_data: the new values of data container 'y' do not fit the model: ... contains nan ...

        Refit on new data, starting from the earlier fit (w has a flat prior here, so its
        posterior is Normal(mean(y), 1 / sqrt(len(y)))):

        >>> fit = fv.fit(m, seed=0)
        >>> m.set_data("y", np.array([2.0, 2.5, 3.0, 2.5]))
        >>> refit = fv.fit(m, init=fit, seed=0)
        >>> refit.converged, bool(abs(refit.mean()["w"] - 2.5) < 0.01), bool(abs(refit.std()["w"] - 0.5) < 0.01)
        (True, True, True)
        """
        if isinstance(name, dict):
            if value is not None:
                raise TypeError("set_data takes a dict of new values, or a name and a value, not both")
            updates = dict(name)
        elif isinstance(name, str):
            updates = {name: value}
        else:
            raise TypeError(f"set_data takes a container name or a dict of them, got {type(name).__name__}")
        new_values = {}
        for key, v in updates.items():
            if key not in self._data:
                known = ", ".join(repr(n) for n in self._data) or "none"
                raise KeyError(f"no data container named {key!r} (this model's: {known})")
            new_values[key] = as_data(v, f"set_data: data container {key!r}")
        _data.rebuild(self, new_values)

    @property
    def data_containers(self) -> Dict[str, Data]:
        """The model's data containers, in declaration order (a new dict).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> _ = m.data("x", [1.0, 2.0])
        >>> m.data_containers
        {'x': Data('x', shape=(2,))}
        """
        return dict(self._data)

    # ---- factors --------------------------------------------------------------------------------

    def add(
        self,
        kernel: str,
        value: Any,
        /,
        *,
        name: Optional[str] = None,
        dims: Optional[Dims] = None,
        rows: Optional[int] = None,
        **inputs: Any,
    ) -> None:
        """Adds the log density of the registered ``kernel`` to the model.

        Everything is checked here, before any fit: unknown names, shapes, NaN or inf in data,
        data outside the kernel's support, parameters whose bounds do not lie inside it.

        Parameters
        ----------
        kernel : str
            The name of a registered kernel (:func:`fastvi.kernels` lists them).
        value : array_like or Expr
            The variate (positional only): data, a parameter or an expression.
        name : str, optional
            A label for the factor in messages (default: ``"factor <i> (<kernel> on <value>)"``);
            for observed data, the name of its variable in ``fit.to_inference_data()``.
        dims : str or sequence of str, optional
            Names for the axes of an observed value (data), as for :meth:`param`: the axes of
            its ``observed_data``, ``log_likelihood`` and ``posterior_predictive`` variables.
        rows : int, optional
            Marks an element-wise factor as row-wise along this axis of its broadcast shape (only
            the leading axis, ``rows=0`` or its negative equivalent, is supported): its N rows are
            that axis's entries, and ``fit(model, batch_size=B)`` evaluates it on B of them per
            step, weighted by N / B, as it does the GLM kernels' rows. Inputs may vary along the
            axis (a local latent per row, an expression ``loc`` of shape (N,)); every row-wise
            factor of a model must have the same N. Unlike the GLMs', a minibatch's estimate
            includes the data-only constant terms of its rows only, weighted (still unbiased).
        **inputs : array_like or Expr
            The kernel's other named inputs, each data (an array or number) or a parameter (or an
            expression); an omitted input takes the kernel's default. For an element-wise kernel
            the inputs broadcast together with numpy's rules.

        Raises
        ------
        ValueError
            For an unknown kernel or input, shapes that do not broadcast, non-finite data, data
            outside the kernel's support, a parameter for an input that must be data, or an
            expression of another model; for ``dims`` given with a variate that is not data, or
            that do not fit its shape (see :meth:`param`); for ``rows`` on a kernel that is not
            element-wise (the GLMs are row-wise already), or an axis that is not the leading one.
        TypeError
            If ``kernel`` is not a str, the variate is passed again by keyword, ``name`` is not a
            non-empty str, ``rows`` is not an int, or data is not real numbers.
        RuntimeError
            If the model is being fitted or evaluated in another thread.

        See Also
        --------
        kernels, kernel_spec : The registered kernels and their inputs.
        register_kernel : Add a kernel written in Python.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> mu, sigma = m.param("mu"), m.param("sigma", lower=0.0)
        >>> m.add("normal", mu, loc=0.0, scale=10.0)
        >>> m.add("half_normal", sigma)                   # scale defaults to 1
        >>> m.add("normal", np.array([1.2, 0.8, 1.1]), loc=mu, scale=sigma, name="likelihood")
        >>> for label, kernel in m.factors:
        ...     print(f"{label}: {kernel}")
        factor 0 (normal on mu): normal
        factor 1 (half_normal on sigma): half_normal
        likelihood: normal
        >>> m.add("normal", np.array([1.0, np.nan]), loc=mu)
        Traceback (most recent call last):
            ...
        ValueError: factor 3 (normal on data of shape (2,)): input 'y' contains nan at flat index 1

        A likelihood whose rows a fit may subsample (``fit(m, batch_size=...)``):

        >>> m.add("normal", np.array([1.0, 0.9, 1.3, 1.1]), loc=mu, scale=sigma, rows=0, name="y")
        >>> m._core.data_rows
        4
        """
        spec = kernel_spec(kernel)
        variate = spec.variate.name
        if variate in inputs:
            raise TypeError(f"{kernel}: the variate {variate!r} is the first argument; do not pass it again by keyword")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{kernel}: name must be a non-empty str or None, got {name!r}")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, (int, np.integer))):
            raise TypeError(f"{kernel}: rows must be an int (an axis, e.g. rows=0) or None, got {rows!r}")
        index = len(self._factors)
        label = name if name is not None else f"factor {index} ({kernel} on {self._describe(value)})"
        operands, shapes = [], []
        for key, v in [(variate, value), *inputs.items()]:
            if isinstance(v, Expr):
                if v._model is not self:
                    raise ValueError(f"{label}: input {key!r} is {v._label!r} of another model")
                operands.append(v._operand(key))
                shapes.append(v.shape)
            elif isinstance(v, Data):
                if v._model is not self:
                    raise ValueError(f"{label}: input {key!r} is data container {v.name!r} of another model")
                operands.append(("container", key, v.name))
                shapes.append(v.shape)
            else:
                data = as_data(v, f"{label}: input {key!r}", factor_input=True)
                operands.append(("data", key, data))
                shapes.append(data.shape)
        if spec.elementwise:
            _check_broadcast_size(shapes, label)
        axis_names = None
        if dims is not None and isinstance(value, Expr):
            raise ValueError(f"{label}: dims names the axes of observed data, but the variate is {value._label!r}")
        if not isinstance(value, Expr):  # observed data: a variable of the InferenceData, named `name`
            axis_names = self._check_dims(label, name, shapes[0], dims)
        # the build log records the definition bound now (register_kernel(..., replace=True) may
        # point the name at another one later; this model keeps what it bound)
        # the rows axis goes at the end of the entry, and only when given: entries without it stay
        # as older fastvi versions wrote and read them
        rows_arg = () if rows is None else (int(rows),)
        self._build("add_factor", registry_name(kernel), tuple(operands), label, *rows_arg)
        if axis_names is not None:
            self._factor_dims[index] = (axis_names, shapes[0])

    def factor(self, expr: Expr, name: Optional[str] = None) -> None:
        """Adds the sum of an expression to the log density (Stan's ``target +=``, PyMC's
        ``Potential``).

        Any log-density term that is not a registered kernel can be written this way: a mixture
        (:func:`fastvi.log_mix`), a soft constraint, a Jacobian adjustment. The factor is recorded
        like one added with :meth:`add` (in :attr:`factors`, as kernel ``"factor"``; copies and
        pickles keep it) and is evaluated in C++ with the rest of the model.

        Parameters
        ----------
        expr : Expr
            An expression of this model's parameters, of any shape: its elements are summed.
        name : str, optional
            A label for the factor in messages (default: ``"factor <i> (factor on <expr>)"``).

        Raises
        ------
        TypeError
            If ``expr`` is data (a constant does not change the posterior) or not an expression,
            or ``name`` is not a non-empty str.
        ValueError
            If ``expr`` belongs to another model.
        RuntimeError
            If the model is being fitted or evaluated in another thread.

        See Also
        --------
        add : Add a registered kernel's log density.
        log_mix : A mixture's log density, to pass here.

        Examples
        --------
        A standard normal prior written by hand, the same log density as the kernel's up to a
        constant:

        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w", shape=(2,))
        >>> m.factor(-0.5 * w ** 2, name="prior")
        >>> m.factors
        [('prior', 'factor')]
        >>> lp, grad = m.log_density(np.array([1.0, 2.0]))
        >>> float(lp), grad.tolist()
        (-2.5, [-1.0, -2.0])
        """
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"factor: name must be a non-empty str or None, got {name!r}")
        if not isinstance(expr, Expr):
            raise TypeError(
                f"factor: expected an expression of this model's parameters, got {type(expr).__name__} "
                f"(data alone adds a constant, which does not change the posterior)"
            )
        if expr._model is not self:
            raise ValueError(f"factor: {expr._label!r} is an expression of another model")
        label = name if name is not None else f"factor {len(self._factors)} (factor on {expr._label})"
        self._build("add_target", expr._operand("expr"), label)

    @staticmethod
    def _describe(value: Any) -> str:
        if isinstance(value, Expr):
            return value._label
        if isinstance(value, Data):
            return f"data {value.name!r}"
        return f"data of shape {np.shape(value)}"

    @property
    def factors(self) -> list:
        """(label, kernel name) of every factor, in the order they were added (a new list).

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> m.add("normal", m.param("w"), name="prior")
        >>> m.factors
        [('prior', 'normal')]
        """
        return list(self._factors)

    # ---- the build log --------------------------------------------------------------------------

    def _build(self, *entry: Any) -> Any:
        """Applies one build step to the C++ model and logs it. A step that fails raises before it
        is logged, and the C++ model refuses it whole, so both stay unchanged."""
        try:
            result = self._apply(entry)
        except (ValueError, IndexError) as err:
            used = _data.containers_in(entry)
            if not used or "data container" in str(err):
                raise
            # the core names the factor and its input: say which container that input is
            which = ", ".join(f"input {key!r} is data container {name!r}" for name, key in used.items())
            raise type(err)(f"{err} ({which})") from None
        self._recipe.append(entry)
        return result

    def _apply(self, entry: tuple) -> Any:
        """Runs one recipe entry against self._core, with the Python-side bookkeeping it implies;
        returns the new Param, Expr or block id."""
        op, *args = entry
        core, operand = self._core, self._decode
        if op == "declare_data":
            name, values = args
            self._data[name] = Data(self, name)
            self._data_values[name] = values
            return self._data[name]
        if op == "check_data":
            name, lo, hi, nonzero, label = args
            _data.check_values(name, self._data_values[name], lo, hi, nonzero, label)
            return None
        if op == "add_gather_data":
            a, name, label = args
            picked = _data.gather_positions(self._data_values[name], _data.operand_shape(self, a), name, label)
            return core.add_gather(operand(a), picked.ravel().tolist(), list(picked.shape), label)
        if op == "add_param":
            name, shape, lo, hi = args
            block = core.add_param(name, list(shape), lo, hi)
            p = Param(self, name, shape, lo, hi, block, core.param_offset(name), core.block(block)["row"])
            self._params[name] = p
            return p
        if op == "add_param_transform":
            name, shape, transform = args
            block = core.add_param(name, list(shape), transform)
            info = core.block(block)
            p = Param(
                self,
                name,
                shape,
                info["lower"],
                info["upper"],
                block,
                core.param_offset(name),
                info["row"],
                transform,
                core.param_free(name),
            )
            self._params[name] = p
            return p
        if op == "deterministic":
            name, block, shape, lo, hi, label = args
            self._deterministics[name] = Expr(self, block, shape, lo, hi, label)
            return self._deterministics[name]
        if op == "add_factor":
            kernel, operands, label, *rows = args  # rows: the rows axis, if given (Model.add's rows=)
            if kernel.endswith("_glm"):
                _blas.ensure()  # the BLAS its GEMM-shaped products use (_blas.py), before it is built
            core.add_factor(kernel, [self._decode(o, view=True) for o in operands], label, *rows)
            self._factors.append((label, user_name(kernel)))
            return None
        if op == "add_kernel_logp":
            kernel, operands, label = args
            return core.add_kernel_logp(kernel, [operand(o) for o in operands], label)
        if op == "add_target":
            a, label = args
            core.add_target(operand(a), label)
            self._factors.append((label, "factor"))
            return None
        if op == "add_segmented":
            name, a, index, offsets, shape, label, lo, hi = args
            return core.add_segmented(
                getattr(_core.SegmentOp, name), operand(a), index.tolist(), offsets.tolist(), list(shape), label, lo, hi
            )
        if op == "add_concat":
            operands, part, element, shape, label, lo, hi = args
            return core.add_concat(
                [operand(o) for o in operands], part.tolist(), element.tolist(), list(shape), label, lo, hi
            )
        if op == "add_matmul":
            a, b, n, k, m, shape, label = args
            return core.add_matmul(operand(a), operand(b), n, k, m, list(shape), label)
        if op == "add_binary":
            name, a, b, label, lo, hi = args
            return core.add_binary(getattr(_core.BinaryOp, name), operand(a), operand(b), label, lo, hi)
        if op == "add_unary":
            name, a, label, lo, hi = args
            return core.add_unary(getattr(_core.UnaryOp, name), operand(a), label, lo, hi)
        if op == "add_matvec":
            x, v, label = args
            _blas.ensure()  # as for a GLM factor: X @ v over many draws is GEMM-shaped
            return core.add_matvec(self._array(x), operand(v), label)
        if op == "add_gather":
            a, index, shape, label = args
            return core.add_gather(operand(a), index.tolist(), list(shape), label)
        if op == "add_sum":
            a, label, lo, hi = args
            return core.add_sum(operand(a), label, lo, hi)
        if op == "add_exp_quad_cov":
            x, alpha, rho, label, hi = args
            if isinstance(x, tuple):  # a container: its current values as points
                x = _data.points_of(self._array(x), x[2], label)
            return core.add_exp_quad_cov(x, operand(alpha), operand(rho), label, hi)
        if op == "add_add_diag":
            k, d, label, lo, hi = args
            return core.add_add_diag(operand(k), operand(d), label, lo, hi)
        if op == "add_cholesky":
            k, label = args
            return core.add_cholesky(operand(k), label)
        raise ValueError(f"unknown model build step {op!r}")

    def _decode(self, encoded: tuple, view: bool = False) -> _core.Operand:
        """The C++ operand for a recipe operand: ("block", input, block id), ("reshaped", input,
        block id, shape), ("data", input, array) or ("container", input, container name).
        With `view` (a factor's inputs), data is passed by reference: the core reads it in place
        where the kernel can (a GLM's X, float32 or float64) and copies it as float64 otherwise."""
        kind, input_name, source = encoded[:3]
        if kind == "reshaped":
            return self._core.reshaped_operand(input_name, source, list(encoded[3]))
        if kind == "block":
            return self._core.block_operand(input_name, source)
        values = self._data_values[source] if kind == "container" else source
        return (_core.view_operand if view else _core.data_operand)(input_name, values)

    def _array(self, x: Any) -> np.ndarray:
        """A recipe's data matrix: an array, or a ("container", input, name) reference to one."""
        return self._data_values[x[2]] if isinstance(x, tuple) else x

    def _structure(self) -> Tuple[int, int, int]:
        """(dim, parameters, factors): what a fit depends on. Expressions and deterministics
        added later leave a fit valid; a new parameter or factor does not."""
        return self.dim, len(self._params), len(self._factors)

    # ---- copies and pickling --------------------------------------------------------------------

    _OWN = (
        "_core",
        "_params",
        "_deterministics",
        "_factors",
        "_recipe",
        "_data",
        "_data_values",
        "_coords",
        "_var_dims",
        "_factor_dims",
    )

    _KERNEL_STEPS = ("add_factor", "add_kernel_logp")  # recipe entries (op, kernel, operands, label)

    def __getstate__(self) -> Dict[str, Any]:
        # a pickle holds the data's values, memory-mapped data too (a file may not exist where the
        # pickle is read, and a spilled array's file has no name): warn when that is a lot
        _spill.warn_if_pickling_mapped(self._recipe, stacklevel=3)
        return self._state(by_user_name=True)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._restore(state, rebind_kernels=True)

    def _state(self, by_user_name: bool) -> Dict[str, Any]:
        """The build log and a subclass's attributes. by_user_name: kernels named as users name
        them (for a pickle, read where replaced kernels' definitions have other registry names),
        rather than by the definitions bound here (register_kernel(..., replace=True))."""
        extra = {k: v for k, v in self.__dict__.items() if k not in self._OWN}  # a subclass's attributes
        recipe = list(self._recipe)
        if by_user_name:
            recipe = [(e[0], user_name(e[1]), *e[2:]) if e[0] in self._KERNEL_STEPS else e for e in recipe]
        # names of dimensions: Python-side only, so not in the recipe (a model pickled before they
        # existed has none, which _restore accepts)
        names = {"coords": dict(self._coords), "dims": dict(self._var_dims), "factor_dims": dict(self._factor_dims)}
        # format 2: the recipe may hold data containers (declare_data steps, container operands),
        # which a fastvi that reads only format 1 would not understand; without them, format 1.
        # Format 3: a factor has a rows axis (add_factor entries of 5 items, Model.add's rows=).
        fmt = 2 if self._data else 1
        if any(e[0] == "add_factor" and len(e) > 4 for e in recipe):
            fmt = 3
        return {"format": fmt, "recipe": recipe, "extra": extra, "names": names}

    def _restore(self, state: Dict[str, Any], rebind_kernels: bool) -> None:
        """Rebuilds the model from a _state. rebind_kernels: kernels are users' names, bound to
        their current definitions (an unpickled model); else the definitions to bind (a copy)."""
        if state.get("format") not in (1, 2, 3):
            raise ValueError(f"cannot restore a fastvi.Model from state format {state.get('format')!r}")
        self._reset()
        for entry in state["recipe"]:
            if entry[0] in self._KERNEL_STEPS:
                if rebind_kernels:
                    entry = (entry[0], registry_name(entry[1]), *entry[2:])
                _require_kernel(entry[1], entry[3])
            self._build(*entry)
        names = state.get("names", {})
        for dim, labels in names.get("coords", {}).items():
            self._coords[dim] = np.array(labels)
            self._coords[dim].flags.writeable = False
        self._var_dims.update(names.get("dims", {}))
        self._factor_dims.update(names.get("factor_dims", {}))
        self.__dict__.update(state["extra"])

    def __copy__(self) -> Model:
        # a shallow copy would share the C++ model: what is added to one would appear in the other
        return self.__deepcopy__({})

    def __deepcopy__(self, memo: Dict[int, Any]) -> Model:
        new = type(self).__new__(type(self))
        memo[id(self)] = new  # expressions copied along with the model refer to the new one
        state = self._state(by_user_name=False)  # a copy binds what this model bound
        # recipe entries are immutable (tuples, read-only arrays): the copy can share them
        state["extra"] = copy.deepcopy(state["extra"], memo)
        new._restore(state, rebind_kernels=False)
        return new

    # ---- evaluation -----------------------------------------------------------------------------

    def log_density(self, zeta: Any, threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Log density (with the transforms' log-Jacobians) and its gradient at unconstrained points.

        This is the function a fit maximises the ELBO of: the sum of the factors at the
        constrained values, plus the log-Jacobians of the transforms, as a function of the
        unconstrained coordinates.

        Parameters
        ----------
        zeta : array_like
            One point, shape ``(dim,)``, or S points as the columns of a ``(dim, S)`` array,
            evaluated as one batch.
        threads : int, default 1
            OpenMP threads for large kernels (the result does not depend on it).

        Returns
        -------
        lp : float or ndarray
            The log density: a 0-d value for one point, shape ``(S,)`` for S points.
        grad : ndarray
            Its gradient with respect to zeta: shape ``(dim,)`` or ``(dim, S)``.

        Raises
        ------
        ValueError
            If ``zeta`` does not have one of those shapes, or ``threads`` is not in [1, 2**31).
        TypeError
            If ``zeta`` is not real numbers, or ``threads`` is not an int.

        Examples
        --------
        The textbook model at w = 2 (no transform, so the log density is the sum of the two
        factors):

        >>> import numpy as np, fastvi as fv
        >>> from scipy import stats
        >>> np.random.seed(42)
        >>> x = np.random.normal(2.0, 1.0, size=100)
        >>> model = fv.Model()
        >>> w = model.param("w")
        >>> model.add("normal", w, loc=0.0, scale=1.0)
        >>> model.add("normal", x, loc=w, scale=1.0)
        >>> lp, grad = model.log_density(np.array([2.0]))
        >>> bool(np.isclose(lp, stats.norm.logpdf(2.0) + stats.norm.logpdf(x, 2.0).sum()))
        True
        >>> bool(np.isclose(grad[0], -2.0 + (x - 2.0).sum()))
        True
        >>> lp, grad = model.log_density(np.zeros((1, 5)))     # 5 points in one batch
        >>> lp.shape, grad.shape
        ((5,), (1, 5))
        """
        threads = threads_setting(threads)
        z, single = self._as_zeta(zeta)
        warn_if_forked(threads)
        lp, grad = self._core.log_density(z, threads)
        return (lp[0], grad[:, 0]) if single else (lp, grad)

    def constrain(self, zeta: Any) -> Dict[str, np.ndarray]:
        """Constrained parameter values and deterministics at unconstrained points.

        Parameters
        ----------
        zeta : array_like
            One point, shape ``(dim,)``, or S points as the columns of a ``(dim, S)`` array.

        Returns
        -------
        dict of str to ndarray
            The value of every parameter and deterministic, by name, shaped like it; with S
            points each array has a leading draw axis of length S.

        Raises
        ------
        ValueError
            If ``zeta`` does not have one of those shapes.

        See Also
        --------
        unconstrain : The inverse map, for parameters.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> p = m.param("p", lower=0.0, upper=1.0)
        >>> sigma = m.param("sigma", lower=0.0)
        >>> values = m.constrain(np.array([0.0, 0.0]))     # inv_logit(0) and 0 + exp(0)
        >>> float(values["p"]), float(values["sigma"])
        (0.5, 1.0)
        >>> m.constrain(np.zeros((2, 4)))["p"].shape
        (4,)
        """
        z, single = self._as_zeta(zeta)
        values = self._core.values(z)
        return self._split_values(values[:, 0] if single else values.T)

    def _as_zeta(self, zeta: Any) -> Tuple[np.ndarray, bool]:
        z = as_real_array(zeta, "zeta")
        if z.ndim not in (1, 2) or z.shape[0] != self.dim:
            raise ValueError(f"zeta must have shape ({self.dim},) or ({self.dim}, S), got {z.shape}")
        return (z[:, None] if z.ndim == 1 else z), z.ndim == 1

    def unconstrain(self, values: Dict[str, Any]) -> np.ndarray:
        """Maps a dict of constrained values (every parameter) to the unconstrained vector.

        Parameters
        ----------
        values : dict of str to array_like
            A value for every parameter (broadcast to its shape), strictly inside its bounds, or
            satisfying its vector transform's constraint (a simplex positive and summing to 1
            within 1e-8, an ordered vector strictly increasing, a Cholesky factor lower
            triangular with a positive diagonal and, for ``cholesky_corr``, rows of unit length
            within 1e-8).

        Returns
        -------
        ndarray
            The unconstrained point, shape ``(dim,)``.

        Raises
        ------
        ValueError
            If a parameter is missing, a name is unknown, a value has the wrong shape, is not
            finite, is not strictly inside the parameter's bounds or does not satisfy its
            vector constraint.

        See Also
        --------
        constrain : The forward map.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> p = m.param("p", lower=0.0, upper=1.0)
        >>> sigma = m.param("sigma", lower=0.0)
        >>> zeta = m.unconstrain({"p": 0.5, "sigma": np.e})
        >>> np.round(zeta, 6).tolist()
        [0.0, 1.0]
        >>> m.unconstrain({"p": 1.5, "sigma": 1.0})
        Traceback (most recent call last):
            ...
        ValueError: value of 'p' must lie strictly inside (0.0, 1.0)

        A vector transform's value has fewer free coordinates (the uniform 3-simplex is zeta = 0):

        >>> m = fv.Model()
        >>> w = m.param("w", shape=3, transform="simplex")
        >>> zeta = m.unconstrain({"w": np.full(3, 1 / 3)})
        >>> zeta.shape, bool(np.allclose(zeta, 0.0))
        ((2,), True)
        """
        theta = np.empty(self._core.param_values)
        missing = [n for n in self._params if n not in values]
        if missing:
            raise ValueError(f"values missing for parameters {missing}")
        first = {}
        at = 0
        for p in self._params.values():
            first[p.name] = at
            at += p.size
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
            if p.transform is not None:
                _check_transform_value(arr, p)
            elif np.any(arr <= p.lower) or np.any(arr >= p.upper):
                raise ValueError(f"value of {n!r} must lie strictly inside ({float(p.lower)!r}, {float(p.upper)!r})")
            theta[first[n] : first[n] + p.size] = arr.ravel()
        return self._core.unconstrain(theta)

    def _split_zeta(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """Splits the last axis of `flat` (one entry per unconstrained coordinate) by parameter,
        for parameters without a vector transform (whose coordinates are their values)."""
        lead = flat.shape[:-1]
        return {
            p.name: flat[..., p.offset : p.offset + p.size].reshape(lead + p.shape).copy()
            for p in self._params.values()
            if p.transform is None
        }

    def _split_values(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """Splits the last axis of `flat` (one entry per value-matrix row) into parameters and
        deterministics."""
        lead = flat.shape[:-1]
        out = {}
        for name, e in [*self._params.items(), *self._deterministics.items()]:
            row = self._core.block(e._block)["row"]
            out[name] = flat[..., row : row + e.size].reshape(lead + e.shape).copy()
        return out


TRANSFORMS = ("simplex", "ordered", "positive_ordered", "cholesky_corr", "cholesky_cov")
"""The vector transforms ``Model.param(..., transform=...)`` takes."""

# How far a value may be from its constraint (sum to 1, unit rows) and still be unconstrained:
# Stan's tolerance.
_CONSTRAINT_TOL = 1e-8


def _check_transform_value(x: np.ndarray, p: Param) -> None:
    """Refuses a value that does not satisfy p's vector constraint, with a message that names p."""
    t, what = p.transform, f"value of {p.name!r}"
    if t == "simplex":
        if np.any(x <= 0) or np.any(np.abs(x.sum(axis=-1) - 1.0) > _CONSTRAINT_TOL):
            raise ValueError(f"{what} must be a simplex: positive, summing to 1 along the last axis")
    elif t in ("ordered", "positive_ordered"):
        if np.any(np.diff(x, axis=-1) <= 0):
            raise ValueError(f"{what} must be strictly increasing along the last axis")
        if t == "positive_ordered" and np.any(x[..., 0] <= 0):
            raise ValueError(f"{what} must be positive")
    else:  # Cholesky factors
        upper = np.triu(np.ones(p.shape[-2:], dtype=bool), 1)
        diag = np.diagonal(x, axis1=-2, axis2=-1)
        if np.any(x[..., upper] != 0) or np.any(diag <= 0):
            raise ValueError(f"{what} must be lower triangular with a positive diagonal")
        if t == "cholesky_corr" and np.any(np.abs(np.sum(x * x, axis=-1) - 1.0) > _CONSTRAINT_TOL):
            raise ValueError(f"{what} must have rows of unit length (L @ L.T with a unit diagonal)")


def _check_broadcast_size(shapes: Sequence[Tuple[int, ...]], label: str) -> None:
    """An element-wise factor works on its inputs' broadcast shape: refuse an absurd one here
    (the core would fail allocating it). Shapes that do not broadcast are left to the core, whose
    message names the input at fault."""
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        return
    check_size(shape, f"{label}: the inputs' broadcast shape")


def _require_kernel(kernel: str, label: str) -> None:
    """Before replaying a factor: a kernel registered by name in the process that built the model
    (from Python, or by an extension module) must be registered again in this one."""
    if kernel not in _core.kernel_names():
        raise RuntimeError(
            f"cannot restore the model: factor {label!r} uses kernel {kernel!r}, which is not "
            f"registered in this process; register it (fv.register_kernel, or import the module "
            f"that defines it) before unpickling the model"
        )
