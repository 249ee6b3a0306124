"""The no-allocation-per-step invariant (docs/ARCHITECTURE.md) as a test: configures and builds
tests/cpp/alloc_check (CMake, -DFASTVI_BUILD_TESTS=ON, no Python module, no Google Benchmark) into
build/alloc-check and runs it. It counts every malloc inside the optimisation step of every family
and kernel kind and inside run_fit's loop, and compares 1 and 2 threads bit for bit.

Also the packet math and the GLM row kernel compiled for each x86-64 level (SSE2, AVX2, AVX-512:
tests/cpp/packet_math_check.cpp), run at the levels this CPU has.

The first build takes a few minutes (fastvi_core is compiled again, as a static library); later
runs rebuild only what changed. Skipped without cmake or Eigen, except under CI (CI is set), where
the test extra brings both."""

import os
import platform
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


def _build(target: str) -> None:
    """Configures build/alloc-check (once) and builds `target` in it."""
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
        [cmake, "--build", str(BUILD), "--target", target, "-j", str(os.cpu_count() or 1)],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="alloc_check replaces malloc, which the sanitizer run (tools/sanitize.sh) has replaced")  # fmt: skip
def test_nothing_allocates_in_the_optimisation_loop():
    _build("alloc_check")
    exe = BUILD / "tests" / "cpp" / "alloc_check"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    dgemm_library = _scipy_blas_library()
    if dgemm_library:  # section 1': the GLM kernels through scipy's BLAS, as fastvi uses it
        env["FASTVI_ALLOC_CHECK_DGEMM"] = dgemm_library
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=1800, env=env)
    failures = [line for line in run.stdout.splitlines() if not line.startswith("ok")]
    assert run.returncode == 0, "\n".join(failures[-50:]) + run.stderr[-3000:]
    assert "PASSED: 0 failure(s)" in run.stdout
    if dgemm_library:
        assert "-- 1'. GLM kernels through" in run.stdout


def _scipy_blas_library():
    """The shared library of scipy's own OpenBLAS (its wheels' scipy-openblas), or None (another
    BLAS: fastvi calls it through scipy's cython_blas, which alloc_check cannot load)."""
    import scipy.linalg  # noqa: F401  (loads it)
    from threadpoolctl import threadpool_info

    scipy_dir = os.path.dirname(os.path.dirname(scipy.linalg.__file__))
    for lib in threadpool_info():
        path = lib.get("filepath") or ""
        if lib.get("internal_api") == "openblas" and os.path.basename(path).startswith("libscipy_openblas"):
            if os.path.dirname(path).startswith(scipy_dir) and "openblas64" not in path:
                return path
    return None


# The CPU flags each x86-64 level needs (the psABI's levels, as GCC's -march names them).
_LEVEL_FLAGS = {
    "x86-64": {"sse2"},
    "x86-64-v3": {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 levels only")
def test_packet_math_and_row_kernel_at_every_x86_level(cpu_flags):
    """tests/cpp/packet_math_check.cpp, compiled for SSE2, AVX2 and AVX-512: exp, log1p and 2^n
    against the C library, and the GLM row kernel against long-double sums, on the paths a
    portable or an AVX2 build of fastvi takes, whatever this machine's own level."""
    _build("packet_math_checks")
    flags, ran, needs = cpu_flags or set(), [], set()
    for level, level_flags in _LEVEL_FLAGS.items():  # in order: each level needs the ones before
        needs |= level_flags
        exe = BUILD / "tests" / "cpp" / f"packet_math_check_{level}"
        if not exe.exists() or not needs <= flags:
            continue
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{level}:\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
        assert "PASSED: 0 failure(s)" in run.stdout
        ran.append(level)
    assert "x86-64" in ran, "the SSE2 level did not build or run"


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401

        return shutil.which(os.path.join(os.path.dirname(sys.executable), "ninja")) is not None
    except ImportError:
        return False
