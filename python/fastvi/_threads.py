"""How many threads a fit or evaluation may use, and the fork caveat.

libgomp cannot start threads in a process forked after its parent ran an OpenMP team (its
thread pool is copied as bookkeeping only, and the child would wait for it forever). fastvi's core
notices this (cpp/include/fastvi/parallel.hpp) and runs such a child serially, with identical
results; this module tells the user once, so that a slower fit in a forked worker is explained.
"""

from __future__ import annotations

import warnings

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
