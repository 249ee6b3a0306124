"""What surrounds the C++ fit, which a loop of small fits pays once per fit (issue 12): BLAS limited
to one thread in the mode search, and `import fastvi` without scipy."""

import subprocess
import sys
import threading

import fastvi as fv
import numpy as np
import pytest
from fastvi import _fit, _threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads() -> list:
    """The thread count of every BLAS library loaded (numpy's and scipy's)."""
    return sorted({lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"})


@pytest.fixture
def two_blas_threads():
    """BLAS at 2 threads for the test (the suite may run with OPENBLAS_NUM_THREADS=1), so that a
    limit to 1 shows; skipped where threadpoolctl controls no BLAS (Apple's Accelerate, say) or
    it cannot run 2 threads."""
    _threads._blas_controller()  # scipy's BLAS loaded, so that the limit below covers it too
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != [2]:
            pytest.skip(f"BLAS thread counts {blas_threads()} cannot be set to 2 here")
        yield


def small_regression() -> fv.Model:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    model = fv.Model()
    beta, sigma = model.param("beta", shape=(5,)), model.param("sigma", lower=0.0)
    model.add("normal", beta, scale=2.0)
    model.add("exponential", sigma, rate=1.0)
    model.add("normal_id_glm", X @ np.arange(1.0, 6.0) + rng.normal(size=200), X=X, beta=beta, scale=sigma)
    return model


def test_mode_search_runs_blas_on_one_thread_and_restores_it(monkeypatch, two_blas_threads):
    """Whatever the thread count BLAS had, the mode search sees 1 and the fit leaves it as it was."""
    seen = []
    find_laplace = _fit.find_laplace

    def recording_find_laplace(*args, **kwargs):
        seen.append(blas_threads())
        return find_laplace(*args, **kwargs)

    monkeypatch.setattr(_fit, "find_laplace", recording_find_laplace)
    fit = fv.fit(small_regression(), seed=0)
    assert fit.laplace.ok and seen == [[1]]
    assert blas_threads() == [2]


def test_overlapping_limits_restore_blas_when_the_last_one_ends(two_blas_threads):
    """Fits in several threads each limit BLAS (one setting for the process): the limit holds
    until the last one ends, and then the original count comes back, in whatever order they end."""
    first, second = _threads.one_blas_thread(), _threads.one_blas_thread()
    first.__enter__()
    second.__enter__()
    assert blas_threads() == [1]
    first.__exit__(None, None, None)  # the first to start ends first
    assert blas_threads() == [1]  # the second still searches
    second.__exit__(None, None, None)
    assert blas_threads() == [2]


def test_concurrent_fits_leave_blas_threads_as_they_were(two_blas_threads):
    models = [small_regression() for _ in range(4)]
    results = [None] * len(models)

    def run(i):
        results[i] = fv.fit(models[i], seed=i, threads=1).laplace.ok

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [True] * len(models)
    assert blas_threads() == [2]


def test_import_fastvi_does_not_import_scipy():
    """scipy is most of the import time: fastvi imports it at the first fit that needs it (the
    mode search), not at import, nor for a fit without preconditioning."""
    code = (
        "import sys, fastvi as fv\n"
        "def scipy_modules():\n"
        "    return sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.'))[:3]\n"
        "print(scipy_modules())\n"
        "m = fv.Model()\n"
        "m.add('normal', [0.5, 1.5], loc=m.param('mu'))\n"
        "fv.fit(m, precondition=None, steps=300, tol=None)\n"
        "print(scipy_modules())\n"
        "fv.fit(m, steps=300, tol=None)\n"
        "print('scipy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == ["[]", "[]", "True"], out
