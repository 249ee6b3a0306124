"""The kernel registry, as seen from Python, and user-defined kernels (Python and C++)."""

from __future__ import annotations

import keyword
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import _core

SUPPORTS = tuple(_core.support_keys())  # from the core's one table (registry.cpp)


@dataclass(frozen=True)
class InputSpec:
    """One named input of a kernel."""

    name: str
    support: str  # "real", "positive", "nonnegative", "unit_interval", "binary" or "count"
    data_only: bool  # True if the input cannot be a parameter (a design matrix, a count outcome)
    default: Optional[float]  # value used when the input is omitted; None if required
    doc: str
    aliases: Tuple[str, ...] = ()  # other names accepted for it (former spellings, e.g. sigma for scale)


@dataclass(frozen=True)
class KernelSpec:
    """A registered log-density kernel: its name, inputs (variate first) and documentation."""

    name: str
    doc: str
    inputs: Tuple[InputSpec, ...]
    elementwise: bool  # inputs broadcast together with numpy's rules

    @property
    def variate(self) -> InputSpec:
        """The input passed as the first argument of ``Model.add``."""
        return self.inputs[0]

    def __str__(self) -> str:
        args = ", ".join(i.name if i.default is None else f"{i.name}={i.default:g}" for i in self.inputs[1:])
        return f"{self.name}({self.variate.name} | {args}): {self.doc}"


def kernel_spec(name: str) -> KernelSpec:
    """The specification of the kernel registered as ``name`` (ValueError if there is none)."""
    if not isinstance(name, str):
        raise TypeError(f"kernel name must be a str, got {type(name).__name__}")
    info = _core.kernel_info(name)
    return KernelSpec(
        name=info["name"],
        doc=info["doc"],
        inputs=tuple(InputSpec(**i) for i in info["inputs"]),
        elementwise=info["elementwise"],
    )


def kernels() -> Dict[str, KernelSpec]:
    """All registered kernels by name.

    >>> import fastvi as fv
    >>> print(fv.kernels()["normal"])
    normal(y | loc=0, scale=1): Normal(y | loc, scale)
    """
    return {name: kernel_spec(name) for name in _core.kernel_names()}


# ---- user-defined kernels ------------------------------------------------------------------------


def _in_support(support: str, x: float) -> bool:
    return bool(_core.in_support(support, float(x)))


def register_kernel(
    name: str,
    inputs: Sequence[str],
    fn: Callable,
    *,
    supports: Optional[Mapping[str, str]] = None,
    data_only: Iterable[str] = (),
    defaults: Optional[Mapping[str, float]] = None,
    elementwise: bool = True,
    doc: str = "",
) -> KernelSpec:
    """Registers a log-density kernel computed by a Python function; returns its :class:`KernelSpec`.

    name: the kernel's name for ``Model.add``. It must not be taken (by a built-in or an earlier
        registration: ValueError); registrations last for the life of the process.
    inputs: the input names, variate first (``["y", "loc", "scale"]``); they become the keywords of
        ``Model.add``, so each must be a Python identifier other than ``name``.
    supports: ``{input: support}`` with support one of "real" (the default), "positive",
        "nonnegative", "unit_interval", "binary", "count". Data outside it is refused by
        ``Model.add``; a parameter must be declared with bounds inside it (``lower=0`` for
        "positive"); "binary" and "count" inputs can only be data.
    data_only: inputs that cannot be parameters. defaults: ``{input: number}`` used when an input is
        omitted (not the variate).
    elementwise: True (the default) if the inputs broadcast together with numpy's rules; False to
        receive each input in its own shape (a multivariate density, say).

    ``fn(*arrays, params)`` is called once per batch of S draws (once per fit step; S = ``draws``),
    with one read-only float64 array per input, in the order of ``inputs``:

    * a parameter (or an expression of parameters) as an array of shape ``shape + (S,)``: column
      ``[..., s]`` is draw s;
    * data as an array of shape ``shape + (1,)``, so it broadcasts against the parameters;

    where ``shape`` is the factor's broadcast shape (for ``elementwise=False``, the input's own
    shape). The arrays may be broadcast views: do not write to them, and copy what you keep after
    the call. ``params`` is a tuple of the names of the inputs that are parameters in this factor.

    ``fn`` returns ``(lp, grads)``:

    * ``lp``: the log density of each draw, shape (S,); for an element-wise kernel also accepted with
      the inputs' shape ``shape + (S,)`` (element-wise terms, summed here). A trailing axis of 1
      instead of S (a term of data alone) counts for every draw;
    * ``grads``: ``{input name: d lp / d input}`` for the parameter inputs, each shaped like that
      input's array, ``shape + (S,)`` (or the input's own shape + (S,), already summed over the
      elements it was broadcast to). A missing or None entry means zero; entries for data inputs are
      ignored; any other key is an error.

    A wrong return type or shape raises TypeError or ValueError naming the kernel and input. An
    exception raised by ``fn`` stops ``fv.fit`` (or ``Model.log_density``) and propagates as it is;
    Ctrl-C inside ``fn`` stops a fit the usual way (returning the state reached so far; the few
    steps until the fit notices count as skipped). A draw
    outside the support may return -inf or NaN: the fit skips that step.

    Check the gradients with :func:`fastvi.check_kernel`. Example (the Laplace density):

    >>> import numpy as np, fastvi as fv
    >>> def laplace(y, loc, scale, params):
    ...     z = y - loc
    ...     lp = -np.log(2 * scale) - np.abs(z) / scale
    ...     grads = {"y": -np.sign(z) / scale, "loc": np.sign(z) / scale,
    ...              "scale": (np.abs(z) / scale - 1) / scale}
    ...     return lp, grads          # lp shaped like the inputs: summed over the elements
    >>> spec = fv.register_kernel("doc_laplace", ["y", "loc", "scale"], laplace,
    ...                           supports={"scale": "positive"}, defaults={"loc": 0.0, "scale": 1.0},
    ...                           doc="Laplace(y | loc, scale)")
    >>> print(spec)
    doc_laplace(y | loc=0, scale=1): Laplace(y | loc, scale)
    >>> report = fv.check_kernel("doc_laplace")   # finite differences at random points
    """
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ValueError(f"register_kernel: name must be a non-empty identifier-like str, got {name!r}")
    if name in _core.kernel_names():
        raise ValueError(f"register_kernel: a kernel named {name!r} is already registered; choose another name")
    if not callable(fn):
        raise TypeError(f"register_kernel({name!r}): fn must be callable, got {type(fn).__name__}")
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise TypeError(f"register_kernel({name!r}): inputs must be a list of names (variate first), got {inputs!r}")
    inputs = list(inputs)
    if not inputs:
        raise ValueError(f"register_kernel({name!r}): inputs must name at least the variate")
    for i, n in enumerate(inputs):
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise ValueError(f"register_kernel({name!r}): input names must be Python identifiers, got {n!r}")
        if i > 0 and n == "name":
            raise ValueError(f"register_kernel({name!r}): 'name' is Model.add's own keyword; rename that input")
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"register_kernel({name!r}): input names must be unique, got {inputs}")

    def _known(what: str, keys: Iterable[str]) -> None:
        unknown = [k for k in keys if k not in inputs]
        if unknown:
            raise ValueError(f"register_kernel({name!r}): {what} names unknown inputs {unknown} (inputs: {inputs})")

    supports = dict(supports or {})
    _known("supports", supports)
    for k, v in supports.items():
        if v not in SUPPORTS:
            raise ValueError(f"register_kernel({name!r}): support of {k!r} must be one of {SUPPORTS}, got {v!r}")
    if isinstance(data_only, str):
        data_only = [data_only]
    data_only = set(data_only)
    _known("data_only", data_only)
    defaults = dict(defaults or {})
    _known("defaults", defaults)
    if inputs[0] in defaults:
        raise ValueError(f"register_kernel({name!r}): the variate {inputs[0]!r} cannot have a default")
    for k, given in defaults.items():
        try:
            value = float(given)
        except (TypeError, ValueError):
            raise TypeError(f"register_kernel({name!r}): default of {k!r} must be a number, got {given!r}") from None
        support = supports.get(k, "real")
        if not _in_support(support, value):
            raise ValueError(
                f"register_kernel({name!r}): default of {k!r} ({value!r}) is outside its support {support!r}"
            )
        defaults[k] = value
    if not isinstance(elementwise, bool):
        raise TypeError(f"register_kernel({name!r}): elementwise must be a bool")
    if not isinstance(doc, str):
        raise TypeError(f"register_kernel({name!r}): doc must be a str")
    specs: List[tuple] = [
        (n, supports.get(n, "real"), n in data_only, defaults.get(n), "variate" if i == 0 else "")
        for i, n in enumerate(inputs)
    ]
    _core.register_python_kernel(name, doc, specs, fn, elementwise)
    return kernel_spec(name)


def get_include() -> str:
    """The directory holding fastvi's C++ headers (``fastvi/kernel.hpp``, ``fastvi/extension.hpp``,
    ...), for building an extension module with C++ kernels (see examples/custom_kernel). The headers
    include Eigen (``<Eigen/Core>``), from the cmeel-eigen package or any Eigen 3.4."""
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.isfile(os.path.join(installed, "fastvi", "extension.hpp")):
        return installed
    source = os.path.normpath(os.path.join(here, "..", "..", "cpp", "include"))  # an editable install
    if os.path.isfile(os.path.join(source, "fastvi", "extension.hpp")):
        return source
    raise RuntimeError(f"fastvi's C++ headers are missing from {installed}: reinstall fastvi")


def get_compile_flags() -> List[str]:
    """Compiler flags an extension module with C++ kernels must use to match fastvi's own build
    (e.g. ``["-march=native"]``): kernels and the core share Eigen objects, whose memory alignment
    depends on them."""
    return list(_core.compile_flags())
