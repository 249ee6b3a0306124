"""The no-allocation-per-step invariant (docs/ARCHITECTURE.md) as a test: configures and builds
tests/cpp/alloc_check (CMake, -DFASTVI_BUILD_TESTS=ON, no Python module, no Google Benchmark) into
build/alloc-check and runs it. It counts every malloc inside the optimisation step of every family
and kernel kind and inside run_fit's loop, and compares 1 and 2 threads bit for bit.

The first build takes a few minutes (fastvi_core is compiled again, as a static library); later
runs rebuild only what changed. Skipped without cmake or Eigen, except under CI (CI is set), where
the test extra brings both."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "alloc-check"


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"alloc_check cannot be built: {what}")
    pytest.skip(what)


def _cmake() -> str:
    try:
        import cmake  # the PyPI package: its binary sits in its data dir

        exe = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
        if os.path.exists(exe):
            return exe
    except ImportError:
        pass
    exe = shutil.which("cmake")
    if not exe:
        _missing("cmake is not installed")
    return exe


def _eigen_prefix() -> list:
    try:
        import cmeel

        return [f"-DCMAKE_PREFIX_PATH={Path(cmeel.__path__[0]).parent / 'cmeel.prefix'}"]
    except ImportError:
        return []  # a system Eigen3 CMake package, if any


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="alloc_check replaces malloc, which the sanitizer run (tools/sanitize.sh) has replaced")  # fmt: skip
def test_nothing_allocates_in_the_optimisation_loop():
    cmake = _cmake()
    generator = ["-G", "Ninja"] if shutil.which("ninja") or _has_ninja_module() else []
    if not (BUILD / "CMakeCache.txt").exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        configure = subprocess.run(
            [cmake, "-S", str(ROOT), "-B", str(BUILD), *generator, "-DCMAKE_BUILD_TYPE=Release",
             "-DFASTVI_BUILD_PYTHON=OFF", "-DFASTVI_BUILD_TESTS=ON", *_eigen_prefix()],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if configure.returncode != 0:
            shutil.rmtree(BUILD, ignore_errors=True)
            if "Eigen3" in configure.stdout + configure.stderr:
                _missing("no Eigen3 CMake package (pip install cmeel-eigen)")
            raise AssertionError(configure.stdout + configure.stderr)
    build = subprocess.run(
        [cmake, "--build", str(BUILD), "--target", "alloc_check", "-j", str(os.cpu_count() or 1)],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    exe = BUILD / "tests" / "cpp" / "alloc_check"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=1800,
                         env=dict(os.environ, OMP_NUM_THREADS="2"))  # fmt: skip
    failures = [line for line in run.stdout.splitlines() if not line.startswith("ok")]
    assert run.returncode == 0, "\n".join(failures[-50:]) + run.stderr[-3000:]
    assert "PASSED: 0 failure(s)" in run.stdout


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401

        return shutil.which(os.path.join(os.path.dirname(sys.executable), "ninja")) is not None
    except ImportError:
        return False
