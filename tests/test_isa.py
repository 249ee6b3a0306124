"""Runtime dispatch over x86-64 levels (python/fastvi/_isa.py, CMake's FASTVI_ISA_VARIANTS).

The choice is a pure function of the installed builds, the CPU's level and FASTVI_ISA, tested
here on every combination that matters; the CPU's level (fastvi._cpu) is checked against the
kernel's /proc/cpuinfo flags; and every engine build this installation carries that the CPU runs
is loaded in a process of its own and must fit the textbook model to its exact posterior.
"""

import importlib.machinery
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import fastvi as fv
import numpy as np
import pytest
from fastvi import _isa

V2, V3, V4 = "x86-64-v2", "x86-64-v3", "x86-64-v4"


@pytest.mark.parametrize(
    "installed, cpu, setting, expected",
    [
        ([], 4, "auto", None),  # a native or plain portable build: always _core
        ([V3, V4], 4, "auto", V4),
        ([V3, V4], 3, "auto", V3),
        ([V3, V4], 2, "auto", None),  # nothing this CPU runs: the baseline
        ([V3, V4], 0, "auto", None),  # not an x86-64 CPU
        ([V3], 4, "", V3),
        ([V3, V4], 4, "baseline", None),
        ([V3, V4], 4, " X86-64-V3 ", V3),  # case and spaces do not matter
        ([V2, V3, V4], 3, V2, V2),
    ],
)
def test_choice_without_warning(installed, cpu, setting, expected):
    assert _isa.choose(installed, cpu, setting) == (expected, None)


@pytest.mark.parametrize(
    "installed, cpu, setting, expected, says",
    [
        ([V3, V4], 3, V4, V3, "this CPU does not run x86-64-v4"),  # never a build the CPU lacks
        ([V3], 4, V4, V3, "no engine built for it (built: x86-64-v3)"),
        ([], 4, V3, None, "(built: none): using the default build"),
        ([V3], 3, "avx2", V3, "is not one of auto, baseline, x86-64-v2, x86-64-v3, x86-64-v4"),
    ],
)
def test_choice_with_warning(installed, cpu, setting, expected, says):
    level, message = _isa.choose(installed, cpu, setting)
    assert level == expected
    assert message is not None and "FASTVI_ISA=" in message and says in message


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_cpu_level_matches_the_kernels_flags(cpu_flags):
    flags = cpu_flags
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    from fastvi import _cpu

    v2 = {"ssse3", "sse4_1", "sse4_2", "popcnt", "cx16"} <= flags
    v3 = v2 and {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"} <= flags
    v4 = v3 and {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags
    assert _cpu.x86_64_level() == (4 if v4 else 3 if v3 else 2 if v2 else 1)


def test_loaded_engine_describes_itself():
    isa = fv.get_isa()
    assert isa in ("native", "baseline", V2, V3, V4)
    assert fv.get_compile_flags() == ([] if isa == "baseline" else [f"-march={isa}"])
    assert sys.modules["fastvi._core"] is fv._core
    # Every build goes by _core's name: classes pickle and print the same whichever was loaded.
    assert fv._core.Model.__module__ == "fastvi._core"
    installed = _isa.installed_levels()
    if installed and os.environ.get("FASTVI_ISA", "auto").strip().lower() in ("", "auto"):
        from fastvi import _cpu

        best = _isa.choose(installed, _cpu.x86_64_level())[0]
        assert isa == (best or "baseline"), f"a portable install with {installed} loaded {isa}"


def _run(code, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **env),
    )


def test_a_bad_setting_warns_and_loads_the_automatic_choice():
    run = _run(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastvi as fv
        print(fv.get_isa())
        print("|".join(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)))
        """,
        FASTVI_ISA="sse9",
    )
    assert run.returncode == 0, run.stderr
    isa, warned = run.stdout.strip().splitlines()
    assert isa == fv.get_isa()
    assert "FASTVI_ISA='sse9' is not one of" in warned


_FIT_TEXTBOOK = """
    import numpy as np, fastvi as fv
    np.random.seed(42)
    x = np.random.normal(2.0, 1.0, size=100)
    model = fv.Model()
    w = model.param("w")
    model.add("normal", w, loc=0.0, scale=1.0)
    model.add("normal", x, loc=w, scale=1.0)
    approx = fv.fit(model, family="meanfield", seed=0)
    print(fv.get_isa(), approx.converged, float(approx.mean()["w"]), float(approx.std()["w"]))
"""


@pytest.mark.parametrize("level", ["baseline", V2, V3, V4])
def test_every_installed_build_the_cpu_runs_fits_the_exact_posterior(level):
    from fastvi import _cpu

    if level != "baseline" and (level not in _isa.installed_levels() or _isa.LEVELS[level] > _cpu.x86_64_level()):
        pytest.skip(f"no {level} build installed, or this CPU does not run it")
    run = _run(_FIT_TEXTBOOK, FASTVI_ISA=level)
    assert run.returncode == 0, run.stderr
    isa, converged, mean, sd = run.stdout.split()
    # FASTVI_ISA=baseline loads _core: the baseline build of a portable install with others beside
    # it, the only build (this process's) otherwise, e.g. a native one
    default = "baseline" if _isa.installed_levels() else fv._core.isa
    assert isa == (default if level == "baseline" else level)
    assert converged == "True"
    np.random.seed(42)
    x = np.random.normal(2.0, 1.0, size=100)
    exact_mean, exact_sd = x.sum() / 101, 1 / np.sqrt(101)
    # the fit's own stated precision is far tighter; 0.05 posterior sd and 5 % leave room for the
    # Monte Carlo noise of a converged stochastic fit
    assert abs(float(mean) - exact_mean) < 0.05 * exact_sd
    assert abs(float(sd) / exact_sd - 1) < 0.05


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_a_build_the_cpu_lacks_is_never_loaded(tmp_path):
    """A copy of this fastvi with an engine file for every level above the CPU's (a wheel's AVX-512
    engine on an AVX2 CPU): neither the automatic choice nor FASTVI_ISA asking for it imports it.
    The files are not modules at all, so importing one would fail loudly."""
    from fastvi import _cpu

    above = [lvl for lvl in _isa.LEVELS if _isa.LEVELS[lvl] > _cpu.x86_64_level()]
    if not above:
        pytest.skip("this CPU runs every level")
    package = Path(fv.__file__).parent
    copy = tmp_path / "fastvi"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for level in above:
        (copy / (_isa.module_name(level).split(".")[1] + suffix)).write_bytes(b"not a shared object")
    code = """
        import warnings
        warnings.simplefilter("always")
        import fastvi as fv
        from fastvi import _isa
        print(fv.__file__)
        print(fv.get_isa(), ",".join(_isa.installed_levels()))
    """
    real = _isa.installed_levels()  # a portable install's real engine builds, or none
    best = _isa.choose(real, _cpu.x86_64_level())[0]
    expected = best or ("baseline" if real else fv._core.isa)
    for request in ["auto", *above]:
        run = _run(code, FASTVI_ISA=request, PYTHONPATH=str(tmp_path))
        assert run.returncode == 0, run.stderr
        where, line = run.stdout.strip().splitlines()[-2:]
        assert Path(where).parent == copy
        isa, installed = line.split()
        assert set(above) <= set(installed.split(","))
        assert isa == expected, "not the real engine the automatic choice gives"
        if request != "auto":
            assert f"this CPU does not run {request}" in run.stderr


def test_an_installed_build_the_cpu_lacks_is_never_loaded():
    """The same on this installation's own engine builds, if it has one above the CPU's level."""
    from fastvi import _cpu

    above = [lvl for lvl in _isa.installed_levels() if _isa.LEVELS[lvl] > _cpu.x86_64_level()]
    if not above:
        pytest.skip("no installed build above this CPU's level")
    for level in above:
        run = _run(
            """
            import warnings
            warnings.simplefilter("always")
            import fastvi as fv
            print(fv.get_isa())
            """,
            FASTVI_ISA=level,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() != level
        assert f"this CPU does not run {level}" in run.stderr


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_a_damaged_engine_gives_way_to_the_next_one_with_a_warning(tmp_path):
    """A copy of this fastvi whose engine for the CPU's own level is a damaged file: import fastvi
    warns, naming that engine, and loads the next one down (the default build, unless the real
    installation has an engine for a lower level), and a fit runs on it."""
    from fastvi import _cpu

    level = max(
        (lvl for lvl in _isa.LEVELS if _isa.LEVELS[lvl] <= _cpu.x86_64_level()), key=_isa.LEVELS.get, default=None
    )
    if level is None:
        pytest.skip("the CPU runs no x86-64 level above the baseline")
    package = Path(fv.__file__).parent
    copy = tmp_path / "fastvi"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stem = _isa.module_name(level).split(".")[1]
    for old in copy.glob(stem + ".*"):
        old.unlink()
    (copy / (stem + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"\x7fELF damaged")
    installed = _isa.installed_levels()
    lower = [lvl for lvl in installed if _isa.LEVELS[lvl] < _isa.LEVELS[level]]
    expected = max(lower, key=_isa.LEVELS.get) if lower else ("baseline" if installed else fv._core.isa)
    code = (
        'import warnings; warnings.simplefilter("always"); import fastvi; print(fastvi.__file__)\n'
        + textwrap.dedent(_FIT_TEXTBOOK)
    )
    run = _run(code, PYTHONPATH=str(tmp_path))
    assert run.returncode == 0, run.stderr
    where, line = run.stdout.strip().splitlines()[-2:]
    assert Path(where).parent == copy
    isa, converged, _, _ = line.split()
    assert isa == expected
    assert converged == "True"
    assert f"the engine {_isa.module_name(level)} could not be loaded" in run.stderr
