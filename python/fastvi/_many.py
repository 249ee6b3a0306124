"""Many independent fits on a Dask cluster: :func:`fit_many` (issue 13, item 4).

One model per group or customer: ``build(data)`` makes each model, and each is fitted with
:func:`fastvi.fit` on a Dask worker. What makes the results trustworthy and the throughput good:

- Seeds are fixed by position, not by scheduling: the partition at position ``i`` (in the input's
  iteration order) is fitted with ``seed + i``, so the results equal the serial loop
  ``[fv.fit(build(d), seed=seed + i, **fit_kwargs) for i, d in enumerate(partitions)]``
  whatever the cluster, the chunking or the order in which tasks ran.
- Partitions are sent in chunks, one task per chunk: a small fit takes tens of milliseconds, and
  Dask's per-task overhead (about a millisecond on the scheduler, plus a round trip) would
  otherwise be a good part of it.
- Each fit runs on one thread (``threads=1``, and BLAS limited to one thread for the chunk): the
  parallelism is across workers, and a worker's threads competing for its core would only slow it.

Dask is optional (``pip install fastvi[dask]``): it is imported when ``fit_many`` is called, so
that ``import fastvi`` works without it.
"""

from __future__ import annotations

import inspect
import math
import pickle
import traceback
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Hashable,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._fit import fit
from ._threads import one_blas_thread
from ._validate import UINT64_END, int_setting, seed_setting
from .approximation import Approximation
from .model import Model

__all__ = ["fit_many"]

_INSTALL_HINT = "pip install fastvi[dask]"

# Default chunking: about this many tasks per worker thread. Many, because the work is shared out
# dynamically: a worker idles at the end while the last task runs elsewhere, about half a task's
# time, so a task should be a small part of each worker's share (here about 3 %); few enough that
# each task still carries many small fits (1,000 fits on 2 workers: 32 per task, ~2 s), so that
# Dask's per-task cost (about a millisecond) stays negligible.
_TASKS_PER_WORKER = 16

Key = TypeVar("Key", bound=Hashable)
FitOrError = Union[Approximation, BaseException]


@dataclass
class _Failure:
    """A partition whose build or fit raised, as a worker sends it back: the exception (pickled:
    an unpicklable one is replaced by a RuntimeError with its text) and its traceback on the
    worker, as text (a pickled exception loses its traceback)."""

    exception: BaseException
    worker_traceback: str


@overload
def fit_many(
    build: Callable[[Any], Model],
    partitions: Mapping[Key, Any],
    *,
    client: Optional[Any] = None,
    seed: int = 0,
    chunk_size: Optional[int] = None,
    errors: Literal["raise", "return"] = "raise",
    **fit_kwargs: Any,
) -> Dict[Key, FitOrError]: ...


@overload
def fit_many(
    build: Callable[[Any], Model],
    partitions: Iterable[Any],
    *,
    client: Optional[Any] = None,
    seed: int = 0,
    chunk_size: Optional[int] = None,
    errors: Literal["raise", "return"] = "raise",
    **fit_kwargs: Any,
) -> List[FitOrError]: ...


def fit_many(
    build: Callable[[Any], Model],
    partitions: Union[Mapping[Any, Any], Iterable[Any]],
    *,
    client: Optional[Any] = None,
    seed: int = 0,
    chunk_size: Optional[int] = None,
    errors: Literal["raise", "return"] = "raise",
    **fit_kwargs: Any,
) -> Union[Dict[Any, FitOrError], List[FitOrError]]:
    """Fits one model per data partition on a Dask cluster: ``fit(build(data), seed=seed + i)``
    for the i-th partition, as many at once as the cluster has worker threads.

    Needs Dask's distributed scheduler: ``pip install fastvi[dask]``.

    Parameters
    ----------
    build : callable
        ``build(data) -> Model``, called on a worker with one partition's data. It is pickled
        (by cloudpickle: lambdas and local functions work) and must build the same model for the
        same data. Python kernels it uses (``fv.register_kernel``) must be registered in the
        worker processes too: register them in ``build`` (with ``replace=True``) or in a module
        it imports.
    partitions : mapping or iterable
        Each item is one partition's data, passed to ``build`` (sent to the workers with the
        tasks). A mapping (e.g. ``dict(iter(df.groupby("customer")))``) gives a dict of fits with
        the same keys in the same order; any other iterable gives a list in its order.
    client : distributed.Client, optional
        The cluster to run on. Default: an embedded ``distributed.LocalCluster`` of processes,
        one thread each, as many as the machine has cores, started for this call and shut down
        after it. (Its workers are started with ``spawn``, which imports the script's
        ``__main__``: a script that calls ``fit_many`` without a client needs the usual
        ``if __name__ == "__main__":`` guard.)
    seed : int, default 0
        The partition at position ``i`` in the input's order is fitted with ``seed + i``
        (``seed + len(partitions) - 1`` must be below 2**64): the results do not depend on the
        cluster, the chunking or the order in which the tasks ran.
    chunk_size : int, optional
        Partitions per task. Default: enough for about 16 tasks per worker thread, which spreads
        the work evenly while each task carries many small fits.
    errors : {"raise", "return"}, default "raise"
        When ``build`` or ``fit`` raises for a partition: ``"raise"`` cancels the remaining
        work and raises a RuntimeError naming the partition (its key, or its index for a list),
        with the worker's traceback in the message and the original exception as its
        ``__cause__`` (if several partitions fail, the first one seen is named, which may depend
        on scheduling); ``"return"`` puts the exception in that partition's place in the
        results and fits the rest.
    **fit_kwargs
        Passed to :func:`fastvi.fit` for every partition (``family``, ``steps``, ``tol``, ...).
        ``threads`` defaults to 1 here: the parallelism is across workers. Warnings from the
        fits are issued in the workers (an embedded cluster's workers print them to this
        process's stderr), not here: each fit's ``converged``, ``message`` and ``khat`` say
        how it went.

    Returns
    -------
    dict or list of Approximation
        The fits, in the input's order: a dict keyed like ``partitions`` if it is a mapping, else
        a list. With ``errors="return"``, a failed partition's entry is its exception.

    Raises
    ------
    ImportError
        If Dask's ``distributed`` is not installed.
    TypeError
        If ``build`` is not callable, or ``fit_kwargs`` holds an argument :func:`fastvi.fit`
        does not take (before any work starts).
    ValueError
        If ``seed``, ``chunk_size`` or ``errors`` is out of range.
    RuntimeError
        With ``errors="raise"``, when a partition's build or fit failed.

    See Also
    --------
    fit : One fit; ``fit_many``'s results equal a loop of it.

    Examples
    --------
    The mean of each of three groups, w ~ Normal(0, 10), y ~ Normal(w, 1), on an embedded
    LocalCluster:

    >>> import numpy as np, fastvi as fv
    >>> def build(y):
    ...     model = fv.Model()
    ...     w = model.param("w")
    ...     model.add("normal", w, loc=0.0, scale=10.0)
    ...     model.add("normal", y, loc=w, scale=1.0)
    ...     return model
    >>> rng = np.random.default_rng(0)
    >>> groups = {name: rng.normal(loc, 1.0, 40) for name, loc in [("north", 1.0), ("south", -2.0), ("east", 5.0)]}
    >>> fits = fv.fit_many(build, groups, seed=7)
    >>> list(fits)
    ['north', 'south', 'east']
    >>> {group: round(float(f.mean()["w"])) for group, f in fits.items()}
    {'north': 1, 'south': -2, 'east': 5}

    The same as a serial loop with seeds 7, 8, 9 (bit for bit):

    >>> serial = [fv.fit(build(y), seed=7 + i) for i, y in enumerate(groups.values())]
    >>> all(f.mean()["w"] == s.mean()["w"] for f, s in zip(fits.values(), serial))
    True
    """
    distributed = _import_distributed()
    if not callable(build):
        raise TypeError(f"build must be callable (data -> fastvi.Model), got {type(build).__name__}")
    keys, data = _keys_and_data(partitions)
    seed = seed_setting(seed)
    if data and seed + len(data) - 1 >= UINT64_END:
        raise ValueError(
            f"seed + len(partitions) - 1 must be < 2**64 (partition i is fitted with seed + i), got seed={seed} "
            f"with {len(data)} partitions"
        )
    if chunk_size is not None:
        chunk_size = int_setting(chunk_size, "chunk_size", 1)
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    _check_fit_kwargs(fit_kwargs)
    fit_kwargs = {"threads": 1, **fit_kwargs}
    if not data:
        results: List[FitOrError] = []
    elif client is None:
        with _embedded_cluster(distributed) as cluster:
            with distributed.Client(cluster) as own_client:
                results = _run(distributed, own_client, build, data, keys, seed, chunk_size, errors, fit_kwargs)
    else:
        results = _run(distributed, client, build, data, keys, seed, chunk_size, errors, fit_kwargs)
    return results if keys is None else dict(zip(keys, results))


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"fv.fit_many needs Dask's distributed scheduler: {_INSTALL_HINT}") from e
    return distributed


def _embedded_cluster(distributed: Any, n_workers: Optional[int] = None) -> Any:
    """The LocalCluster fit_many starts without a client (n_workers: default one per core).

    Processes with one thread each: fits hold the GIL between their C++ loops, so threads in one
    process would wait on each other. No dashboard, and the scheduler's HTTP server on a free
    port (its default, 8787, may be taken: a warning, and a clash).

    Less background work, which is CPU the fits lack on a machine with few cores: no statistical
    profiler in the workers (it serves only the dashboard; its sampling every 10 ms took an idle
    worker from 2.7 % to 4.3 % of a core), and the event loops' diagnostics less often (the tick
    that detects a blocked loop every 1 s instead of 20 ms, the system monitor's CPU and memory
    readings for the dashboard every 2 s instead of 0.5 s): an idle 2-worker cluster then took
    4 % of a core instead of 11 % (scheduler 2 % instead of 5 %, each worker 1 % instead of
    2.8 %; measured on the shared 2-core machine). The memory limits are still watched every
    100 ms. The processes take the dask config current when they start, hence the set() here."""
    import dask

    quieter = {
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
    }
    with dask.config.set(quieter):
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        )


def _keys_and_data(partitions: Union[Mapping[Any, Any], Iterable[Any]]) -> Tuple[Optional[List[Any]], List[Any]]:
    """The keys (None for a list input, whose partitions are named by index) and the data."""
    if isinstance(partitions, Mapping):
        return list(partitions.keys()), list(partitions.values())
    if isinstance(partitions, (str, bytes)) or not isinstance(partitions, Iterable):
        raise TypeError(f"partitions must be a mapping or an iterable of data, got {type(partitions).__name__}")
    return None, list(partitions)


def _check_fit_kwargs(fit_kwargs: Dict[str, Any]) -> None:
    """Refuses arguments fit() does not take here, before any cluster starts: otherwise every
    partition would fail on a worker with the same TypeError."""
    if "model" in fit_kwargs:  # (seed= is fit_many's own argument)
        raise TypeError("fit_many passes 'model' to fit itself; got model= in fit_kwargs")
    try:
        inspect.signature(fit).bind(None, **fit_kwargs)
    except TypeError as e:
        raise TypeError(f"fit_kwargs: {e} (fit_many passes them to fastvi.fit)") from None


def _run(
    distributed: Any,
    client: Any,
    build: Callable[[Any], Model],
    data: Sequence[Any],
    keys: Optional[Sequence[Any]],
    seed: int,
    chunk_size: Optional[int],
    errors: str,
    fit_kwargs: Dict[str, Any],
) -> List[FitOrError]:
    """Submits one task per chunk and places each chunk's fits at their input positions."""
    n = len(data)
    if chunk_size is None:
        worker_threads = max(1, sum(client.nthreads().values()))
        chunk_size = max(1, math.ceil(n / (_TASKS_PER_WORKER * worker_threads)))
    starts = range(0, n, chunk_size)
    stop_early = errors == "raise"
    futures = [
        client.submit(
            _fit_chunk,
            build,
            [(seed + i, data[i]) for i in range(start, min(start + chunk_size, n))],
            fit_kwargs,
            stop_early,
            pure=False,  # the same data twice is two fits, not one result shared
        )
        for start in starts
    ]
    start_of = {future.key: start for future, start in zip(futures, starts)}
    results: List[Any] = [None] * n
    try:
        # loop=: this client's, not the default client's (there may be none, or another)
        for future, chunk_results in distributed.as_completed(futures, loop=client.loop, with_results=True):
            start = start_of[future.key]
            for offset, result in enumerate(chunk_results):
                if isinstance(result, _Failure):
                    if stop_early:
                        index = start + offset
                        name = f"index {index}" if keys is None else f"{keys[index]!r} (index {index})"
                        raise RuntimeError(
                            f"fit_many: partition {name} failed: {type(result.exception).__name__}: "
                            f"{result.exception}\nTraceback on the worker:\n{result.worker_traceback}"
                        ) from result.exception
                    result = result.exception
                results[start + offset] = result
    finally:
        client.cancel(futures)  # stops what is left after an error; nothing to do once all are done
    return results


def _fit_chunk(
    build: Callable[[Any], Model], items: List[Tuple[int, Any]], fit_kwargs: Dict[str, Any], stop_early: bool
) -> List[Union[Approximation, _Failure]]:
    """Runs on a worker: the fits of one chunk of (seed, data) items, in order. A failure is
    returned rather than raised, so that the client can name the partition (and, with
    errors="return", keep the chunk's other fits)."""
    out: List[Union[Approximation, _Failure]] = []
    # BLAS on one thread for the whole chunk (fit limits it only for its mode search): a worker
    # has one core's share, and BLAS threads would compete for it
    with one_blas_thread():
        for seed, data in items:
            try:
                model = build(data)
                if not isinstance(model, Model):
                    raise TypeError(f"build(data) must return a fastvi.Model, got {type(model).__name__}")
                out.append(fit(model, seed=seed, **fit_kwargs))
            except Exception as e:
                out.append(_Failure(_picklable(e), traceback.format_exc()))
                if stop_early:
                    break
    return out


def _picklable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling (to travel back to the client), else a
    RuntimeError with its type and text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
