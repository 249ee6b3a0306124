"""Which build of fastvi's C++ engine a process loads: runtime dispatch over x86-64 levels.

A source install (``pip install .``) compiles the engine for the machine it runs on
(``-march=native``) and has one build, ``fastvi._core``. A portable build (``FASTVI_NATIVE=OFF``,
as for wheels) compiles ``_core`` for the x86-64 baseline and can carry builds for higher levels
beside it (CMake's ``FASTVI_ISA_VARIANTS``, e.g. ``_core_x86_64_v3`` for AVX2 + FMA and
``_core_x86_64_v4`` for AVX-512). On import, fastvi loads the highest level that is installed and
that the CPU runs, and registers it as ``fastvi._core``, which the rest of the package imports.

The environment variable ``FASTVI_ISA`` overrides the choice: ``baseline``, ``x86-64-v2``,
``x86-64-v3`` or ``x86-64-v4`` (honoured when that build is installed and the CPU runs it;
otherwise a RuntimeWarning, and the automatic choice), or ``auto`` (the default).

An engine build that is installed but fails to import (a damaged file) is skipped with a
RuntimeWarning naming it, for the next level down, and in the end the default build.

Two rules keep this safe. The CPU's level is read by ``fastvi._cpu``, a module built for the
baseline, before any engine module is imported: an engine built for a level the CPU lacks may
fault while it loads. And a process loads one engine only: they register the same C++ classes
with pybind11.
"""

import importlib
import importlib.util
import os
import sys
import warnings
from typing import List, Optional, Sequence, Tuple

# The levels a portable build may carry an engine for, and their rank.
LEVELS = {"x86-64-v2": 2, "x86-64-v3": 3, "x86-64-v4": 4}
_AUTO = ("", "auto")


def module_name(level: Optional[str]) -> str:
    """The engine module built for `level` (None: the default build, fastvi._core)."""
    return "fastvi._core" if level is None else "fastvi._core_" + level.replace("-", "_")


def installed_levels() -> List[str]:
    """The x86-64 levels this installation has an engine build for, lowest first (no import)."""
    return [level for level in LEVELS if importlib.util.find_spec(module_name(level)) is not None]


def choose(installed: Sequence[str], cpu_level: int, request: str = "auto") -> Tuple[Optional[str], Optional[str]]:
    """The level to load (None: the default build) and a warning, if the request cannot be met.

    installed: the levels with an engine build; cpu_level: what the CPU runs (fastvi._cpu: 1 for
    the x86-64 baseline to 4, 0 for another architecture); request: FASTVI_ISA's value.
    """
    runnable = [level for level in installed if LEVELS[level] <= cpu_level]
    best = max(runnable, key=LEVELS.__getitem__, default=None)
    request = request.strip().lower()
    if request in _AUTO:
        return best, None
    if request == "baseline":
        return None, None
    fallback = f"using {best or 'the default build'}"
    if request not in LEVELS:
        choices = ", ".join(["auto", "baseline", *LEVELS])
        return best, f"FASTVI_ISA={request!r} is not one of {choices}: {fallback}"
    if request not in installed:
        have = ", ".join(installed) or "none"
        return best, f"FASTVI_ISA={request!r}: this installation has no engine built for it (built: {have}): {fallback}"
    if LEVELS[request] > cpu_level:
        return best, f"FASTVI_ISA={request!r}: this CPU does not run {request} (it runs level {cpu_level}): {fallback}"
    return request, None


def _cpu_level() -> int:
    try:
        from . import _cpu  # type: ignore[attr-defined]
    except ImportError:  # a build without it: stay on the default engine
        return 0
    return int(_cpu.x86_64_level())


def load():  # -> the engine module
    """Imports the engine build to use and registers it as fastvi._core (see the module's doc)."""
    request = os.environ.get("FASTVI_ISA", "auto")
    installed = installed_levels()
    level: Optional[str] = None
    cpu_level = 0
    if installed or request.strip().lower() not in (*_AUTO, "baseline"):
        cpu_level = _cpu_level()
        level, message = choose(installed, cpu_level, request)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    # An engine that fails to load (a damaged or half-installed file) gives way to the next one
    # down, with a warning that names it, rather than making fastvi unusable. Only a failure of
    # the default build itself is raised.
    candidates: List[Optional[str]] = [None]
    if level is not None:
        lower = [lvl for lvl in installed if LEVELS[lvl] < LEVELS[level] and LEVELS[lvl] <= cpu_level]
        candidates = [level, *sorted(lower, key=LEVELS.__getitem__, reverse=True), None]
    for candidate, following in zip(candidates, [*candidates[1:], None]):
        try:
            module = importlib.import_module(module_name(candidate))
            break
        except ImportError as error:
            if candidate is None:
                raise
            warnings.warn(
                f"fastvi: the engine {module_name(candidate)} could not be loaded ({error}); "
                f"using {module_name(following)} instead. Reinstalling fastvi should repair it.",
                RuntimeWarning,
                stacklevel=2,
            )
    sys.modules["fastvi._core"] = module
    vars(sys.modules[__package__])["_core"] = module  # the package attribute, as an import would set it
    return module


def get_isa() -> str:
    """The CPU level fastvi's loaded C++ engine was compiled for.

    ``"native"`` for a source install optimised for its machine, an x86-64 level such as
    ``"x86-64-v3"`` when a portable installation chose that build at import (environment variable
    ``FASTVI_ISA`` overrides the choice), or ``"baseline"``.

    Examples
    --------
    >>> import fastvi as fv
    >>> fv.get_isa() in ("native", "baseline", "x86-64-v2", "x86-64-v3", "x86-64-v4")
    True
    """
    return str(sys.modules["fastvi._core"].isa)


# Importing this module loads the engine (fastvi/__init__.py imports it before anything else).
CORE = load()
