"""Timing inside a worker (bench/peers/run.py): how many steps the steady-state loop runs, and the
median over timed chunks of it. Shared by the fastvi, NumPyro and PyMC workers."""

from __future__ import annotations

import statistics
import time

CHUNKS = 5  # the steady-state loop is timed in this many chunks; the median chunk counts


def steady_steps(cold_e2e, steps, budget):
    """Steps per steady-state chunk: CHUNKS chunks cover all steps unless that exceeds the budget."""
    per_step = cold_e2e / steps  # an over-estimate (it includes compilation)
    total = steps if per_step * steps <= budget else max(200, min(steps, int(budget / per_step)))
    return max(1, total // CHUNKS)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_chunk(run_chunk, n):
    """Per-step time: the median over CHUNKS timed calls of ``run_chunk()`` (n steps each).

    The median of chunks, rather than one long loop, keeps a burst of load from another process on
    this shared machine from landing in the result."""
    times = []
    for _ in range(CHUNKS):
        t = time.perf_counter()
        run_chunk()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / n
