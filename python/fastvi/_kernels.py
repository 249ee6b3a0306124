"""The kernel registry, as seen from Python, and user-defined kernels (Python and C++)."""

from __future__ import annotations

import keyword
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import _core

SUPPORTS = tuple(_core.support_keys())  # from the core's one table (registry.cpp)

# The kernels the core registers when it loads. Nothing else can be registered before this line
# runs: an extension module with C++ kernels imports fastvi (and so this module) first.
_BUILTIN_KERNELS = frozenset(_core.kernel_names())

# Kernels registered with register_kernel: the user's name -> the core-registry names of its
# definitions, oldest first. The core's registry never removes or replaces an entry (a model's
# factors are made by the entry's factory when they are added, and keep what it made), so a
# replacement (register_kernel(..., replace=True)) is registered under a fresh name,
# "<name> (definition 2)" and so on, and the user's name points at the newest definition from then
# on. The first definition keeps the user's own name in the core.
_python_definitions: Dict[str, List[str]] = {}
_user_names: Dict[str, str] = {}  # core-registry name of a replacement -> the user's name
_registration_lock = threading.Lock()  # two threads replacing one kernel must not pick the same name


def registry_name(name: str) -> str:
    """The core-registry name that ``name`` currently stands for: its newest definition for a
    kernel replaced with ``register_kernel(..., replace=True)``, else ``name`` itself."""
    definitions = _python_definitions.get(name)
    return definitions[-1] if definitions else name


def user_name(name: str) -> str:
    """The name users know the kernel by, for a core-registry name (the inverse of registry_name;
    an older definition's registry name gives the name it was registered under)."""
    return _user_names.get(name, name)


@dataclass(frozen=True)
class InputSpec:
    """One named input of a kernel (an entry of :attr:`KernelSpec.inputs`).

    Attributes
    ----------
    name : str
        The input's name: the keyword of :meth:`Model.add` (the variate is passed positionally).
    support : str
        Where its values must lie: "real", "positive", "nonnegative", "unit_interval", "binary"
        or "count". ``Model.add`` refuses data outside it, and parameters whose bounds do not lie
        inside it.
    data_only : bool
        True if the input cannot be a parameter (a design matrix, a count outcome).
    default : float or None
        The value used when the input is omitted; None if it is required.
    doc : str
        A short description.
    aliases : tuple of str
        Other keywords accepted for this input: former names kept working after a rename
        (``normal_id_glm``'s ``sigma``, now ``scale`` as in every other kernel).

    See Also
    --------
    kernel_spec

    Examples
    --------
    >>> import fastvi as fv
    >>> scale = fv.kernel_spec("normal").inputs[2]
    >>> scale
    InputSpec(name='scale', support='positive', data_only=False, default=1.0, doc='standard deviation', aliases=())
    >>> fv.kernel_spec("normal_id_glm").inputs[4].aliases
    ('sigma',)
    """

    name: str
    support: str  # "real", "positive", "nonnegative", "unit_interval", "binary" or "count"
    data_only: bool  # True if the input cannot be a parameter (a design matrix, a count outcome)
    default: Optional[float]  # value used when the input is omitted; None if required
    doc: str
    aliases: Tuple[str, ...] = ()  # other names accepted for it (former spellings, e.g. sigma for scale)


@dataclass(frozen=True)
class KernelSpec:
    """A registered log-density kernel: its name, inputs (variate first) and documentation.

    ``str(spec)`` gives a one-line signature: ``name(variate | input=default, ...): doc``.

    Attributes
    ----------
    name : str
        The name to pass to :meth:`Model.add`.
    doc : str
        A short description of the density.
    inputs : tuple of InputSpec
        The inputs, variate first.
    elementwise : bool
        True if the inputs broadcast together with numpy's rules (an element-wise density);
        False for kernels that take each input in its own shape (the GLMs, multivariate
        densities).

    See Also
    --------
    kernel_spec, kernels, register_kernel

    Examples
    --------
    >>> import fastvi as fv
    >>> spec = fv.kernel_spec("normal_id_glm")
    >>> print(spec)    # doctest: +NORMALIZE_WHITESPACE
    normal_id_glm(y | X, alpha=0, beta, scale, offset=0): Normal linear regression:
    y_n ~ Normal(offset_n + alpha + X[n] . beta, scale), fused over the rows of X
    >>> [i.name for i in spec.inputs if i.data_only], spec.elementwise
    (['y', 'X', 'offset'], False)
    """

    name: str
    doc: str
    inputs: Tuple[InputSpec, ...]
    elementwise: bool  # inputs broadcast together with numpy's rules

    @property
    def variate(self) -> InputSpec:
        """The input passed as the first argument of ``Model.add`` (``inputs[0]``).

        Examples
        --------
        >>> import fastvi as fv
        >>> fv.kernel_spec("poisson_log").variate.name, fv.kernel_spec("poisson_log").variate.support
        ('y', 'count')
        """
        return self.inputs[0]

    def __str__(self) -> str:
        args = ", ".join(i.name if i.default is None else f"{i.name}={i.default:g}" for i in self.inputs[1:])
        return f"{self.name}({self.variate.name} | {args}): {self.doc}"


def kernel_spec(name: str) -> KernelSpec:
    """The specification of the kernel registered as ``name``.

    Parameters
    ----------
    name : str
        A registered kernel's name (built-in, registered from Python, or by an extension module).

    Returns
    -------
    KernelSpec
        Its name, documentation and inputs.

    Raises
    ------
    ValueError
        If no kernel is registered under ``name`` (the message lists the registered ones).
    TypeError
        If ``name`` is not a str.

    See Also
    --------
    kernels : Every registered kernel.

    Examples
    --------
    >>> import fastvi as fv
    >>> print(fv.kernel_spec("student_t"))
    student_t(y | df, loc=0, scale=1): Student-t(y | df, loc, scale)
    >>> [(i.name, i.default) for i in fv.kernel_spec("student_t").inputs]
    [('y', None), ('df', None), ('loc', 0.0), ('scale', 1.0)]
    """
    if not isinstance(name, str):
        raise TypeError(f"kernel name must be a str, got {type(name).__name__}")
    info = _core.kernel_info(registry_name(name))
    return KernelSpec(
        name=user_name(info["name"]),
        doc=info["doc"],
        inputs=tuple(InputSpec(**i) for i in info["inputs"]),
        elementwise=info["elementwise"],
    )


def kernels() -> Dict[str, KernelSpec]:
    """All registered kernels by name: the built-in ones and those registered since.

    Returns
    -------
    dict of str to KernelSpec
        A new dict, in the registry's order (alphabetical).

    See Also
    --------
    kernel_spec : One kernel's specification.
    register_kernel : Add a kernel written in Python.

    Examples
    --------
    >>> import fastvi as fv
    >>> print(fv.kernels()["normal"])
    normal(y | loc=0, scale=1): Normal(y | loc, scale)
    >>> {"normal", "bernoulli_logit_glm", "poisson_log"} <= set(fv.kernels())
    True
    """
    return {name: kernel_spec(name) for name in _core.kernel_names() if name not in _user_names}


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
    replace: bool = False,
) -> KernelSpec:
    """Registers a log-density kernel computed by a Python function.

    Parameters
    ----------
    name : str
        The kernel's name for ``Model.add``, an identifier-like str. It must not be taken (by a
        built-in or an earlier registration) unless ``replace`` is True; registrations last for
        the life of the process.
    inputs : sequence of str
        The input names, variate first (``["y", "loc", "scale"]``); they become the keywords of
        ``Model.add``, so each must be a Python identifier (not a keyword), unique, and the inputs
        after the variate must not be called ``name``.
    fn : callable
        ``fn(*arrays, params) -> (lp, grads)``, the log density and its gradient (below).
    supports : dict of str to str, optional
        ``{input: support}`` with support one of "real" (the default), "positive",
        "nonnegative", "unit_interval", "binary", "count". Data outside it is refused by
        ``Model.add``; a parameter must be declared with bounds inside it (``lower=0`` for
        "positive"); "binary" and "count" inputs can only be data.
    data_only : iterable of str, default ()
        Inputs that cannot be parameters (a single name is accepted as a str).
    defaults : dict of str to float, optional
        ``{input: number}`` used when an input is omitted (not the variate); each inside the
        input's support.
    elementwise : bool, default True
        True if the inputs broadcast together with numpy's rules; False to receive each input in
        its own shape (a multivariate density, say).
    doc : str, default ""
        A short description, shown by ``str(spec)`` and :func:`kernels`.
    replace : bool, default False
        True to replace a kernel registered earlier under ``name`` with this function (re-running
        a notebook cell that registers it); its inputs may change too. Models built afterwards use
        the new definition; models built before, and their copies (``copy.deepcopy``), keep the
        one they bound; an unpickled model binds the definition current when it is unpickled.
        Built-in kernels and kernels registered by extension modules cannot be replaced. Without
        an earlier registration, True registers the kernel as usual. Messages about a
        replacement's return values call it ``"<name> (definition 2)"`` (3, ...).

    Returns
    -------
    KernelSpec
        The registered kernel's specification.

    Raises
    ------
    ValueError
        If the name is not identifier-like, is taken (and ``replace`` is False), or is a built-in
        kernel's or an extension module's (whatever ``replace``); the input names are empty,
        invalid or repeated; ``supports``, ``data_only`` or ``defaults`` name unknown inputs; a
        support is unknown; the variate has a default; or a default is outside its support.
    TypeError
        If ``fn`` is not callable, ``inputs`` is not a sequence of names, a default is not a
        number, ``elementwise`` or ``replace`` is not a bool or ``doc`` not a str.

    See Also
    --------
    check_kernel : Check the kernel's gradients against finite differences.
    get_include : Write a kernel in C++ instead, in an extension module.

    Notes
    -----
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

    The call costs a Python round trip per step (tens of microseconds), so a Python kernel suits
    prototypes and small data; a C++ kernel (README, "Custom kernels") costs nothing extra.

    Examples
    --------
    The Laplace density, its gradients checked with :func:`fastvi.check_kernel`:

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
    >>> report.passed
    True

    It is used like a built-in kernel:

    >>> y = np.random.default_rng(0).laplace(1.0, 2.0, size=200)
    >>> model = fv.Model()
    >>> loc, scale = model.param("loc"), model.param("scale", lower=0.0)
    >>> model.add("doc_laplace", y, loc=loc, scale=scale)
    >>> model.factors
    [('factor 0 (doc_laplace on data of shape (200,))', 'doc_laplace')]

    Registering the name again is refused, unless the new definition replaces the old one (a
    notebook cell run twice); ``model`` keeps the function it bound:

    >>> spec = fv.register_kernel("doc_laplace", ["y", "loc", "scale"], laplace,
    ...                           supports={"scale": "positive"}, defaults={"loc": 0.0, "scale": 1.0},
    ...                           doc="Laplace(y | loc, scale), again", replace=True)
    >>> fv.kernel_spec("doc_laplace").doc
    'Laplace(y | loc, scale), again'
    """
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ValueError(f"register_kernel: name must be a non-empty identifier-like str, got {name!r}")
    if not isinstance(replace, bool):
        raise TypeError(f"register_kernel({name!r}): replace must be a bool, got {replace!r}")
    _check_name_free(name, replace)
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
        if i > 0 and n in ("name", "dims"):
            raise ValueError(f"register_kernel({name!r}): {n!r} is Model.add's own keyword; rename that input")
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
    with _registration_lock:
        _check_name_free(name, replace)  # again: another thread may have registered it meanwhile
        definitions = _python_definitions.get(name, [])
        taken = set(_core.kernel_names())
        new_name, number = name, len(definitions) + 1
        while new_name in taken:  # the first free "<name> (definition k)"
            new_name, number = f"{name} (definition {number})", number + 1
        _core.register_python_kernel(new_name, doc, specs, fn, elementwise)
        _python_definitions[name] = [*definitions, new_name]
        if new_name != name:
            _user_names[new_name] = name
    return kernel_spec(name)


def _check_name_free(name: str, replace: bool) -> None:
    """Refuses a name register_kernel cannot take: a built-in's or an extension module's, and,
    unless ``replace``, one registered from Python before."""
    if name in _BUILTIN_KERNELS:
        raise ValueError(
            f"register_kernel: {name!r} is a built-in kernel, which cannot be replaced; choose another name"
        )
    if name in _python_definitions:
        if not replace:
            raise ValueError(
                f"register_kernel: a kernel named {name!r} is already registered; choose another name, "
                "or pass replace=True to replace it"
            )
    elif name in _core.kernel_names():
        raise ValueError(
            f"register_kernel: a kernel named {name!r} is already registered by an extension module "
            "(a C++ kernel), which cannot be replaced; choose another name"
        )


def get_include() -> str:
    """The directory holding fastvi's C++ headers, for extension modules with C++ kernels.

    The headers (``fastvi/kernel.hpp``, ``fastvi/extension.hpp``, ...) are what an extension
    module with C++ kernels is built against (see examples/custom_kernel). They include Eigen
    (``<Eigen/Core>``), from the cmeel-eigen package or any Eigen 3.4.

    Returns
    -------
    str
        The installed package's ``include`` directory, or, in a source checkout (an editable
        install), the repository's ``cpp/include``.

    Raises
    ------
    RuntimeError
        If the headers are in neither place.

    See Also
    --------
    get_compile_flags : The flags such a module must be compiled with.

    Examples
    --------
    >>> import os, fastvi as fv
    >>> os.path.isfile(os.path.join(fv.get_include(), "fastvi", "extension.hpp"))
    True
    """
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.isfile(os.path.join(installed, "fastvi", "extension.hpp")):
        return installed
    source = os.path.normpath(os.path.join(here, "..", "..", "cpp", "include"))  # an editable install
    if os.path.isfile(os.path.join(source, "fastvi", "extension.hpp")):
        return source
    raise RuntimeError(f"fastvi's C++ headers are missing from {installed}: reinstall fastvi")


def get_compile_flags() -> List[str]:
    """Compiler flags an extension module with C++ kernels must use to match fastvi's own build.

    Kernels and the core share Eigen objects, whose memory alignment depends on these flags; a
    mismatch is caught when the extension module is imported.

    Returns
    -------
    list of str
        The flags, e.g. ``["-march=native"]`` for a native build, ``[]`` for a portable one.

    See Also
    --------
    get_include

    Examples
    --------
    >>> import fastvi as fv
    >>> flags = fv.get_compile_flags()
    >>> isinstance(flags, list) and all(isinstance(f, str) for f in flags)
    True
    """
    return list(_core.compile_flags())
