"""The docstrings' examples run as tests, and every public function and class has one.

The examples (numpydoc ``Examples`` sections) are collected from the *imported* fastvi package,
so that CI, which installs the package, tests the installed code and docstrings rather than the
source tree. One test per module; a failure shows doctest's report. fastvi's warnings are errors
while the examples run: an example that expects one catches it itself.

Examples that need an optional dependency are listed in OPTIONAL and run in a test of their own,
skipped where that dependency is missing. The examples register two kernels (``doc_laplace``,
``doc_wrong_normal``): kernel names are process-wide, so each module's examples can run once per
process.
"""

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import warnings

import fastvi as fv
import pytest

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# doctest name -> the optional package its example needs
OPTIONAL = {
    "fastvi._many.fit_many": "distributed",
    "fastvi._summary.Summary.to_dataframe": "pandas",
    "fastvi.approximation.Approximation.to_inference_data": "arviz",
    "fastvi.approximation.Approximation.to_dataframe": "pandas",
}


def _modules():
    """fastvi and its Python modules (not the compiled _core, whose docstrings come from C++)."""
    names = ["fastvi"]
    for info in pkgutil.iter_modules(fv.__path__, prefix="fastvi."):
        # Python sources only, checked before importing: a portable install's other engine builds
        # (_core_x86_64_v4, ...) must not be imported (one engine per process; fastvi/_isa.py).
        spec = importlib.util.find_spec(info.name)
        if spec is not None and (spec.origin or "").endswith(".py"):
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def _doctests(module_name):
    module = importlib.import_module(module_name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, module_name) if t.examples]


def _run(tests):
    """Runs the doctests; fails with doctest's report if any example fails."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", fv.ConvergenceWarning)
        for test in tests:
            failed += runner.run(test, out=report.append).failed
    if failed:
        pytest.fail(f"{failed} example(s) failed:\n" + "".join(report), pytrace=False)


def test_modules_found():
    assert {"fastvi", "fastvi._fit", "fastvi.model", "fastvi.expr", "fastvi.psis"} <= set(MODULES)
    assert "fastvi._core" not in MODULES


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name):
    tests = [t for t in _doctests(module_name) if t.name not in OPTIONAL]
    if not tests:
        pytest.skip(f"{module_name} has no examples")
    _run(tests)


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_examples_with_optional_dependencies_run(name):
    module_name = max((m for m in MODULES if name.startswith(m + ".")), key=len)
    tests = [t for t in _doctests(module_name) if t.name == name]
    assert tests, f"no docstring example named {name} (OPTIONAL is out of date)"
    pytest.importorskip(OPTIONAL[name])
    _run(tests)


def _has_examples(doc):
    """A numpydoc Examples section (the heading underlined) with at least one example in it."""
    lines = inspect.cleandoc(doc or "").splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == "Examples" and set(lines[i + 1].strip()) == {"-"}:
            return any(rest.lstrip().startswith(">>>") for rest in lines[i + 2 :])
    return False


def _public_objects():
    """(name, object) for every function and class in fastvi.__all__ and fastvi.psis.__all__, and
    the public methods and properties those classes define themselves."""
    out = []
    for namespace, names in (("fv", fv.__all__), ("fv.psis", fv.psis.__all__)):
        owner = fv if namespace == "fv" else fv.psis
        for name in names:
            obj = getattr(owner, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            out.append((f"{namespace}.{name}", obj))
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        out.append((f"{namespace}.{name}.{attr}", member))
    return out


PUBLIC = _public_objects()


def test_public_objects_found():
    names = {n for n, _ in PUBLIC}
    assert {"fv.fit", "fv.Model.add", "fv.Approximation.sample", "fv.Approximation.khat", "fv.psis.psislw"} <= names


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_api_has_examples(name, obj):
    assert _has_examples(obj.__doc__), f"{name}: its docstring has no numpydoc Examples section with >>> lines"
