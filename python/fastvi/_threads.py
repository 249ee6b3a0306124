"""How many threads a fit or evaluation may use: the fork caveat, and one BLAS thread for the
small linear algebra around a fit.

libgomp cannot start threads in a process forked after its parent ran an OpenMP team (its
thread pool is copied as bookkeeping only, and the child would wait for it forever). fastvi's core
notices this (cpp/include/fastvi/parallel.hpp) and runs such a child serially, with identical
results; this module tells the user once, so that a slower fit in a forked worker is explained.

The mode search before a fit (scipy's L-BFGS, the Hessian's factorisations) calls BLAS on vectors
of D numbers and matrices of a few dozen rows. BLAS's own threads cannot speed that up, and on a
loaded machine they wait for cores instead: a small fit (D = 7) took 100-240 ms with OpenBLAS's
default threads against 35-55 ms with one, on a busy 2-core machine (bench/fit_loop.py).
:func:`one_blas_thread` limits BLAS (numpy's and scipy's) to one thread for such a step, through
threadpoolctl.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from typing import Any, Iterator

from . import _core

_warned = False


def warn_if_forked(threads: int) -> None:
    """Warns (once per process) when ``threads > 1`` is asked for in a forked child that must run serially."""
    global _warned
    if threads > 1 and not _warned and _core.forked_serial():
        _warned = True
        warnings.warn(
            "fastvi runs on one thread in this process: it was forked after its parent ran fastvi on several "
            "threads, and OpenMP cannot start threads after such a fork. Results are the same, only slower; use "
            "multiprocessing's 'spawn' or 'forkserver' start method to keep threads in worker processes.",
            RuntimeWarning,
            stacklevel=3,
        )


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded, found once per process: looking them up
    costs about 2 ms (it inspects every loaded library), a good part of a small fit."""
    # scipy ships its own BLAS, loaded with scipy.linalg: load it first, since the controller only
    # sees the libraries loaded when it is made
    import scipy.linalg
    import scipy.optimize  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


# Several threads may fit at once, and BLAS's thread count is one setting for the whole process:
# the first to enter limits it, the last to leave restores it (a thread leaving early must not
# restore it under another one still searching, nor the last one restore a limit of 1 for good).
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, BLAS (numpy's and scipy's) runs on one thread; afterwards as before."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
