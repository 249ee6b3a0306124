"""fv.check_kernel: a kernel's gradients against central finite differences."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._kernels import kernel_spec
from .model import Model

# How check_kernel declares a parameter for an input of each support (bounds, open interval).
_BOUNDS = {
    "real": (-math.inf, math.inf),
    "positive": (0.0, math.inf),
    "nonnegative": (0.0, math.inf),
    "unit_interval": (0.0, 1.0),
}


@dataclass(frozen=True)
class InputCheck:
    """How one parameter input's analytic gradient compares with finite differences.

    An entry of :attr:`KernelCheck.inputs`.

    Attributes
    ----------
    name : str
        The input.
    max_abs_error : float
        Max ``|analytic - numerical|`` over the input's elements and the draws.
    max_rel_error : float
        Max of the same divided by ``max(|analytic|, |numerical|)``, over the elements where that
        exceeds ``atol`` (0 if there are none).
    passed : bool
        Whether every element passed ``|analytic - numerical| <= atol + rtol * max(|analytic|,
        |numerical|)``.
    worst : str
        The element and draw furthest outside the tolerance (or closest to it), with both values.

    Examples
    --------
    >>> import fastvi as fv
    >>> check = fv.check_kernel("normal").inputs["scale"]
    >>> check.name, check.passed, check.max_abs_error < 1e-6
    ('scale', True, True)
    """

    name: str
    max_abs_error: float  # max |analytic - numerical| over the input's elements and the draws
    max_rel_error: float  # max of the same divided by max(|analytic|, |numerical|), where that exceeds atol
    passed: bool
    worst: str  # the element and draw furthest outside the tolerance (or closest to it)


@dataclass(frozen=True)
class KernelCheck:
    """The report of :func:`check_kernel`; ``print(report)`` shows a table of errors per input.

    Attributes
    ----------
    kernel : str
        The kernel checked.
    params : tuple of str
        The inputs made parameters (their gradients were checked).
    draws : int
        The number of points.
    lp : ndarray
        The kernel's log density at each point, shape ``(draws,)``.
    reference_error : float or None
        Max ``|lp - reference| / max(1, |reference|)`` over the points, if a reference was given.
    inputs : dict of str to InputCheck
        The gradient check of each parameter input.
    failures : tuple of str
        One line per problem found; empty if the check passed.
    passed : bool
        True if nothing failed.

    Examples
    --------
    A kernel with a sign error in one gradient:

    >>> import fastvi as fv
    >>> def wrong(y, loc, params):
    ...     return -0.5 * (y - loc) ** 2, {"y": -(y - loc), "loc": -(y - loc)}   # d/d loc is +(y - loc)
    >>> _ = fv.register_kernel("doc_wrong_normal", ["y", "loc"], wrong)
    >>> report = fv.check_kernel("doc_wrong_normal", raise_on_failure=False)
    >>> report.passed, report.inputs["y"].passed, report.inputs["loc"].passed
    (False, True, False)
    >>> print(report)    # doctest: +ELLIPSIS
    check_kernel('doc_wrong_normal'): FAILED (3 draws)
      input             max abs error  max rel error
      y ... ok
      loc ... FAILED: loc at draw ...
    """

    kernel: str
    params: Tuple[str, ...]  # the inputs made parameters (their gradients were checked)
    draws: int
    lp: np.ndarray  # the kernel's log density at each draw (S,)
    reference_error: Optional[float]  # max |lp - reference| / max(1, |reference|), if a reference was given
    inputs: Dict[str, InputCheck]
    failures: Tuple[str, ...]  # one line per problem found; empty if the check passed

    @property
    def passed(self) -> bool:
        """True if the check found no problem (``failures`` is empty).

        Examples
        --------
        >>> import fastvi as fv
        >>> fv.check_kernel("exponential").passed
        True
        """
        return not self.failures

    def __str__(self) -> str:
        lines = [f"check_kernel({self.kernel!r}): {'passed' if self.passed else 'FAILED'} ({self.draws} draws)"]
        if self.reference_error is not None:
            lines.append(f"  log density vs reference: max relative error {self.reference_error:.3g}")
        lines.append(f"  {'input':<16}{'max abs error':>15}{'max rel error':>15}")
        for c in self.inputs.values():
            lines.append(
                f"  {c.name:<16}{c.max_abs_error:>15.3g}{c.max_rel_error:>15.3g}  "
                f"{'ok' if c.passed else 'FAILED: ' + c.worst}"
            )
        lines.extend(f"  {f}" for f in self.failures if not f.startswith("gradient of"))
        return "\n".join(lines)


def check_kernel(
    kernel: str,
    values: Optional[Mapping[str, Any]] = None,
    *,
    params: Optional[Sequence[str]] = None,
    shape: Sequence[int] = (),
    draws: int = 3,
    seed: int = 0,
    h: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    reference: Optional[Callable[..., Any]] = None,
    reference_rtol: float = 1e-9,
    raise_on_failure: bool = True,
) -> KernelCheck:
    """Checks a registered kernel's gradients against central finite differences.

    Works for any kernel (built-in, Python or C++), in the constrained space where the kernel is
    defined (no transform Jacobians): the inputs in ``params`` become parameters of a small
    model, the log density and its gradient are evaluated at ``draws`` points in one batch, and
    each gradient is compared with central differences of the log density.

    Parameters
    ----------
    kernel : str
        The kernel's registered name.
    values : dict of str to array_like, optional
        ``{input: value}`` (numbers or arrays). Every input not in ``params`` takes its value
        from here or, if omitted, the kernel's default (an input with neither is an error). A
        parameter input's value must lie strictly inside its support.
    params : sequence of str or str, optional
        The inputs to differentiate; default: every input that can be a parameter (not data
        only, support not "binary" or "count"). A parameter's shape is that of its value in
        ``values``, else ``shape``. Parameters are declared with bounds that match their support
        (``lower=0`` for a positive input).
    shape : int or tuple of int, default ()
        The shape of parameters without a value (default: scalars).
    draws : int, default 3
        The number of points, evaluated as one batch: a parameter with a given value takes it at
        draw 0 and random perturbations of it at the others; one without takes random values
        (unconstrained standard normal draws, mapped into its support).
    seed : int, default 0
        The seed of those random values.
    h : float, default 1e-6
        The finite-difference step, relative to ``max(1, |value|)`` (and kept inside the
        support).
    rtol, atol : float, default 1e-5 and 1e-6
        An element passes if ``|analytic - numerical| <= atol + rtol * max(|analytic|,
        |numerical|)``.
    reference : callable, optional
        A function of the inputs (as keywords, each in its own shape) returning element-wise log
        densities, e.g. ``lambda y, loc, scale: scipy.stats.laplace.logpdf(y, loc, scale)``: the
        kernel's log density must match its sum to ``reference_rtol`` (relative to
        ``max(1, |reference|)``).
    reference_rtol : float, default 1e-9
        The tolerance of that comparison.
    raise_on_failure : bool, default True
        Raise AssertionError (with the report) if anything fails; else just return the report.

    Returns
    -------
    KernelCheck
        The report (print it for a table of errors per input).

    Raises
    ------
    AssertionError
        If a gradient or the reference comparison fails, or the log density is not finite at a
        point (unless ``raise_on_failure=False``).
    ValueError
        For an unknown kernel or input, an input that cannot be a parameter in ``params``, no
        input that can be, a parameter value outside its support, a missing value without a
        default, or invalid ``draws``, ``h``, ``rtol``, ``atol`` or ``reference_rtol``.

    See Also
    --------
    register_kernel : Register a kernel written in Python.
    KernelCheck : The report.

    Examples
    --------
    >>> import fastvi as fv
    >>> report = fv.check_kernel("normal", {"y": [0.5, -1.0]}, draws=4)
    >>> report.passed, report.params
    (True, ('y', 'loc', 'scale'))
    >>> report.inputs["scale"].max_abs_error < 1e-6
    True

    Against scipy's log density, with the data fixed and only the rate as a parameter:

    >>> from scipy import stats
    >>> report = fv.check_kernel("gamma", {"y": [0.5, 2.0], "shape": 3.0}, params=["rate"],
    ...                          reference=lambda y, shape, rate: stats.gamma.logpdf(y, shape, scale=1 / rate))
    >>> report.params, report.reference_error < 1e-9
    (('rate',), True)
    """
    spec = kernel_spec(kernel)
    names = [i.name for i in spec.inputs]
    by_name = {i.name: i for i in spec.inputs}
    where = f"check_kernel({kernel!r})"
    values = dict(values or {})
    unknown = [k for k in values if k not in by_name]
    if unknown:
        raise ValueError(f"{where}: values names unknown inputs {unknown} (inputs: {names})")

    def can_be_param(n: str) -> bool:
        return not by_name[n].data_only and by_name[n].support in _BOUNDS

    if params is None:
        params = tuple(n for n in names if can_be_param(n))
    else:
        params = (params,) if isinstance(params, str) else tuple(params)
        for n in params:
            if n not in by_name:
                raise ValueError(f"{where}: params names unknown input {n!r} (inputs: {names})")
            if not can_be_param(n):
                raise ValueError(
                    f"{where}: input {n!r} cannot be a parameter "
                    f"(support {by_name[n].support!r}, data_only={by_name[n].data_only})"
                )
        if len(set(params)) != len(params):
            raise ValueError(f"{where}: params has repeated names: {params}")
    if not params:
        raise ValueError(f"{where}: none of the inputs can be a parameter: there is no gradient to check")
    if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
        raise ValueError(f"{where}: draws must be an int >= 1, got {draws!r}")
    for label, x in (("h", h), ("rtol", rtol), ("atol", atol), ("reference_rtol", reference_rtol)):
        if not (isinstance(x, numbers.Real) and math.isfinite(x) and x >= 0) or (label == "h" and x <= 0):
            raise ValueError(
                f"{where}: {label} must be a {'positive' if label == 'h' else 'non-negative'} finite number, got {x!r}"
            )
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    shape = tuple(int(d) for d in shape)

    # The model: one parameter per checked input, every other input as data or its default.
    model = Model()
    given: Dict[str, np.ndarray] = {}
    declared = {}
    for n in params:
        lo, hi = _BOUNDS[by_name[n].support]
        if n in values:
            base = np.asarray(values[n], dtype=np.float64)
            if not (np.all(np.isfinite(base)) and np.all(base > lo) and np.all(base < hi)):
                raise ValueError(
                    f"{where}: the value of parameter input {n!r} must lie strictly inside "
                    f"({float(lo)!r}, {float(hi)!r})"
                )
            given[n] = base
        declared[n] = model.param(
            n,
            shape=given[n].shape if n in given else shape,
            lower=None if math.isinf(lo) else lo,
            upper=None if math.isinf(hi) else hi,
        )
    args: Dict[str, Any] = {}
    for n in names:
        if n in declared:
            args[n] = declared[n]
        elif n in values:
            args[n] = values[n]
        elif by_name[n].default is None:
            raise ValueError(
                f"{where}: input {n!r} is not a parameter here and has no default: give its value in values"
            )
    model.add(kernel, args.pop(names[0]), name=f"{kernel} under check", **args)

    # The points: random in the unconstrained space, mapped into each support; given values at draw 0.
    rng = np.random.default_rng(seed)
    dim = model.dim
    zeta = rng.standard_normal((dim, draws))
    if given:
        theta0 = _theta(model, zeta[:, :1])[:, 0]
        for n, base in given.items():
            p = declared[n]
            theta0[p.offset : p.offset + p.size] = base.ravel()
        z0 = model._core.unconstrain(theta0)
        for n in given:
            p = declared[n]
            rows = slice(p.offset, p.offset + p.size)
            zeta[rows] = z0[rows, None] + 0.3 * rng.standard_normal((p.size, draws))
            zeta[rows, 0] = z0[rows]
    theta = _theta(model, zeta)
    for n, base in given.items():  # exactly the given values, not their round trip
        p = declared[n]
        theta[p.offset : p.offset + p.size, 0] = base.ravel()

    def evaluate(t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return model._core.log_density_constrained(np.asfortranarray(t), 1)

    lp, grad = evaluate(theta)
    failures = []
    bad = np.flatnonzero(~np.isfinite(lp))
    if bad.size:
        failures.append(f"the log density is not finite at draw(s) {bad.tolist()}: {lp[bad].tolist()}")

    # Central differences, one coordinate at a time for all draws at once.
    numerical = np.empty_like(grad)
    lower = np.empty(dim)
    upper = np.empty(dim)
    for p in declared.values():
        lower[p.offset : p.offset + p.size] = p.lower
        upper[p.offset : p.offset + p.size] = p.upper
    for i in range(dim):
        x = theta[i]
        step = h * np.maximum(1.0, np.abs(x))
        step = np.minimum(step, 0.5 * np.minimum(x - lower[i], upper[i] - x))
        plus, minus = theta.copy(), theta.copy()
        plus[i] = x + step
        minus[i] = x - step
        numerical[i] = (evaluate(plus)[0] - evaluate(minus)[0]) / (plus[i] - minus[i])

    checks: Dict[str, InputCheck] = {}
    for n, p in declared.items():
        rows = slice(p.offset, p.offset + p.size)
        g, f = grad[rows], numerical[rows]
        err = np.abs(g - f)
        scale = np.maximum(np.abs(g), np.abs(f))
        excess = np.where(np.isfinite(err), err - (atol + rtol * scale), np.inf)
        big = scale > atol  # the relative error means little for a gradient that is ~0
        rel = np.where(big, err / np.where(big, scale, 1.0), 0.0)
        e, s = np.unravel_index(int(np.argmax(excess)), excess.shape)
        element = f"[{', '.join(str(int(k)) for k in np.unravel_index(e, p.shape))}]" if p.shape else ""
        worst = (
            f"{n}{element} at draw {s} (value {theta[p.offset + e, s]:.6g}): analytic {g[e, s]:.10g}, "
            f"numerical {f[e, s]:.10g}"
        )
        ok = bool(np.all(excess <= 0))
        checks[n] = InputCheck(n, float(np.max(err)), float(np.max(rel)), ok, worst)
        if not ok:
            failures.append(f"gradient of {worst} (tolerance atol={atol:g}, rtol={rtol:g})")

    reference_error = None
    if reference is not None:
        ref = np.empty(draws)
        for s in range(draws):
            kwargs = {}
            for spec_in in spec.inputs:
                n = spec_in.name
                if n in declared:
                    p = declared[n]
                    kwargs[n] = theta[p.offset : p.offset + p.size, s].reshape(p.shape)
                else:
                    kwargs[n] = np.asarray(values[n], dtype=np.float64) if n in values else spec_in.default
            ref[s] = np.sum(reference(**kwargs))
        rel_err = np.abs(lp - ref) / np.maximum(1.0, np.abs(ref))
        reference_error = float(np.max(rel_err)) if np.all(np.isfinite(rel_err)) else math.inf
        if not reference_error <= reference_rtol:
            s = int(np.argmax(np.where(np.isfinite(rel_err), rel_err, np.inf)))
            failures.append(
                f"log density at draw {s} is {lp[s]:.12g}, the reference says {ref[s]:.12g} "
                f"(relative error {rel_err[s]:.3g} > {reference_rtol:g})"
            )

    report = KernelCheck(kernel, tuple(declared), draws, lp, reference_error, checks, tuple(failures))
    if failures and raise_on_failure:
        raise AssertionError(f"{where} failed:\n  " + "\n  ".join(failures) + "\n" + str(report))
    return report


def _theta(model: Model, zeta: np.ndarray) -> np.ndarray:
    """Constrained parameter values at unconstrained draws, stacked like zeta (dim x S)."""
    values = model._core.values(np.asfortranarray(zeta))
    theta = np.empty_like(zeta)
    for p in model:
        theta[p.offset : p.offset + p.size] = values[p.row : p.row + p.size]
    return theta
