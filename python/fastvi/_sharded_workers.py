"""fit_sharded's shards: each built once where it is kept, its model split by the build log
into priors and likelihood, and evaluated at every step; where they are kept (in this process, or
one Dask actor per worker); their parts summed, in shard order, into the whole model's log density;
and the check of every shard against shard 0 before the first step.

A module of its own because this is the side of fit_sharded that runs on the workers: what a
worker unpickles and holds (``_WorkerShards``, ``_Shard``) lives here, away from the client's
optimiser (``_sharded_loop``) and the public function (``_sharded``). Dask is not imported here:
``_OnDask`` works through the client it is given.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._many import _picklable
from .model import Model

# The priors of every shard are compared with shard 0's at this many points (and must agree to
# this relative tolerance: the same computation on the same numbers gives the same result, so
# anything beyond rounding is a different prior).
_PRIOR_CHECK_POINTS = 3
_PRIOR_RTOL = 1e-10


# ---- the shards: built and evaluated on a worker (or in this process) -------------------------------


class _Unsplittable(ValueError):
    """A shard's model that fit_sharded cannot split into priors and likelihood."""


@dataclass
class _Failure:
    """A shard's build or evaluation that raised, as it travels back to the client."""

    exception: BaseException
    worker_traceback: str


@dataclass
class _ShardInfo:
    """What the client checks a shard against shard 0 with."""

    dim: int
    params: List[Tuple[Any, ...]]
    prior_kernels: List[str]
    likelihood_factors: int
    prior_lp: np.ndarray
    prior_grad: np.ndarray
    structure: Optional[Model] = None  # shard 0 only: its model without the likelihood factors
    extra: Dict[str, Any] = field(default_factory=dict)


def _variate_is_data(entry: tuple) -> bool:
    """Whether a factor's build-log entry ("add_factor", kernel, operands, label) has data as its
    variate (a likelihood term) rather than a parameter or expression (a prior)."""
    variate = entry[2][0]
    return variate[0] in ("data", "container")


def _replay(model: Model, keep: Callable[[tuple], bool], keep_names: bool) -> Model:
    """A new model built from the entries of ``model``'s build log that ``keep`` accepts (the same
    kernel definitions bound). keep_names: keep the coords and dims of parameters and
    deterministics (the observed factors' axis names go: their factors' positions change)."""
    state = model._state(by_user_name=False)
    state["recipe"] = [entry for entry in state["recipe"] if keep(entry)]
    names = state.get("names", {})
    state["names"] = {"coords": names.get("coords", {}), "dims": names.get("dims", {})} if keep_names else {}
    new = type(model).__new__(type(model))
    new._restore(state, rebind_kernels=False)
    return new


class _Shard:
    """One shard's models, kept where it was built (a Dask actor on a worker, or in the client's
    process), and the one computation a step asks of it.

    The constructor never raises: a failure is kept and reported by ``info()``, which the client
    calls first, so that it can name the shard and show the worker's traceback."""

    def __init__(self, build: Callable[[Any], Model], data: Any, index: int, threads: int):
        self.index = index
        self.threads = threads
        self.failure: Optional[_Failure] = None
        self._info: Optional[_ShardInfo] = None
        try:
            self._setup(build, data)
        except Exception as e:
            self.failure = _Failure(_picklable(e), traceback.format_exc())

    def _setup(self, build: Callable[[Any], Model], data: Any) -> None:
        model = build(data)
        if not isinstance(model, Model):
            raise TypeError(f"build(shard) must return a fastvi.Model, got {type(model).__name__}")
        if model.dim == 0:
            raise ValueError("the model has no parameters to fit: declare some with model.param")
        recipe = model._state(by_user_name=False)["recipe"]
        for entry in recipe:
            if entry[0] == "add_target":
                raise _Unsplittable(
                    f"factor {entry[2]!r} was added with model.factor: fit_sharded cannot tell whether it is a "
                    f"prior (to count once) or a likelihood term (one per shard); write priors as "
                    f"model.add(kernel, parameter, ...) and likelihood terms as model.add(kernel, data, ...)"
                )
        factors = [e for e in recipe if e[0] == "add_factor"]
        prior_model = _replay(model, lambda e: not (e[0] == "add_factor" and _variate_is_data(e)), keep_names=True)
        # the same points in every shard of this dim (a shard of another dim is refused anyway)
        prior_lp, prior_grad = prior_model._core.log_density(_prior_points(model.dim), self.threads)
        self._info = _ShardInfo(
            dim=model.dim,
            params=[(p.name, tuple(p.shape), p.lower, p.upper, p.transform, p.offset, p.free_size) for p in model],
            prior_kernels=[e[1] for e in factors if not _variate_is_data(e)],
            likelihood_factors=sum(_variate_is_data(e) for e in factors),
            prior_lp=np.asarray(prior_lp).ravel(),
            prior_grad=np.asarray(prior_grad),
            structure=prior_model if self.index == 0 else None,
        )
        if self.index == 0:
            self._full: Optional[Model] = model  # priors, log-Jacobians and shard 0's likelihood
            self._likelihood: Optional[Model] = None
            self._jacobian: Optional[Model] = None
        else:
            self._full = None
            # its likelihood and the log-Jacobians, and the log-Jacobians alone (parameters, no factor)
            self._likelihood = _replay(model, lambda e: not (e[0] == "add_factor" and not _variate_is_data(e)), False)
            self._jacobian = _replay(model, lambda e: e[0] in ("add_param", "add_param_transform"), False)

    def info(self) -> Any:
        """The shard's _ShardInfo, or its _Failure."""
        return self.failure if self.failure is not None else self._info

    def evaluate(self, zeta: np.ndarray) -> Any:
        """(lp (S,), grad (D, S)) of this shard's part of the log density at zeta (D x S): the whole
        log density for shard 0, the likelihood only for the others. A failure is returned."""
        try:
            zeta = np.asfortranarray(zeta, dtype=np.float64)
            if self._full is not None:
                lp, grad = self._full._core.log_density(zeta, self.threads)
                return np.asarray(lp).ravel(), np.asarray(grad)
            assert self._likelihood is not None and self._jacobian is not None
            lp, grad = self._likelihood._core.log_density(zeta, self.threads)
            jlp, jgrad = self._jacobian._core.log_density(zeta, self.threads)
            return np.asarray(lp).ravel() - np.asarray(jlp).ravel(), np.asarray(grad) - np.asarray(jgrad)
        except Exception as e:
            return _Failure(_picklable(e), traceback.format_exc())


def _prior_points(dim: int) -> np.ndarray:
    """Where the shards' priors are compared: a few fixed points of N(0, I) in zeta (dim x k)."""
    rng = np.random.default_rng(0x5052494F52)
    return np.asfortranarray(rng.standard_normal((dim, _PRIOR_CHECK_POINTS)))


# ---- where the shards run ----------------------------------------------------------------------------


class _InProcess:
    """The shards in this process, evaluated one after another (client=None)."""

    name = "in-process"

    def __init__(self, build: Callable[[Any], Model], data: Sequence[Any], threads: int):
        self.shards = [_Shard(build, d, i, threads) for i, d in enumerate(data)]

    def infos(self) -> List[Any]:
        return [s.info() for s in self.shards]

    def evaluate(self, zeta: np.ndarray) -> List[Any]:
        return [s.evaluate(zeta) for s in self.shards]

    def close(self) -> None:
        self.shards = []


class _WorkerShards:
    """The shards one worker keeps, in one Dask actor: a step is one call per worker, whatever the
    number of shards it holds (their log densities are computed one after another there, as they
    would be anyway on a worker's one thread)."""

    def __init__(self, build: Callable[[Any], Model], items: List[Tuple[int, Any]], threads: int):
        self.shards = [_Shard(build, d, i, threads) for i, d in items]

    def info(self) -> List[Any]:
        return [s.info() for s in self.shards]

    def evaluate(self, zeta: np.ndarray) -> List[Any]:
        return [s.evaluate(zeta) for s in self.shards]


class _OnDask:
    """The shards on the client's workers, shard i on worker i mod W (workers sorted by address, so
    the placement does not depend on the order they joined), each worker's in one actor. A step
    calls every actor before waiting for any, so the workers compute at the same time.

    Actors rather than tasks: a shard's model is built once and stays in the worker's memory, and an
    actor call goes from the client to the worker directly (no scheduler in between). One actor per
    worker rather than per shard: the client's cost per call (about a millisecond on the loaded
    2-core machine, bench/README.md) is then paid per worker."""

    name = "dask"

    def __init__(self, client: Any, build: Callable[[Any], Model], data: Sequence[Any], threads: int):
        self.client = client
        # nthreads(): every worker's address (scheduler_info() lists only the first 5 in some
        # versions of distributed)
        workers = sorted(client.nthreads())
        if not workers:
            raise RuntimeError("fit_sharded: the Dask client has no workers")
        self.groups: List[List[int]] = [list(range(w, len(data), len(workers))) for w in range(len(workers))]
        self.groups = [g for g in self.groups if g]
        self.futures = [
            client.submit(
                _WorkerShards,
                build,
                [(i, data[i]) for i in group],
                threads,
                actor=True,
                workers=[workers[group[0] % len(workers)]],
                allow_other_workers=False,
                pure=False,
            )
            for group in self.groups
        ]
        self.n = len(data)
        self.actors: List[Any] = []
        try:
            for group, future in zip(self.groups, self.futures):
                try:
                    self.actors.append(future.result())
                except Exception as e:  # e.g. the shards' data could not be unpickled on the worker
                    names = ", ".join(str(i) for i in group)
                    raise RuntimeError(f"fit_sharded: shards {names} could not be placed on their worker: {e}") from e
        except BaseException:
            self.close()
            raise

    def _in_order(self, per_actor: List[List[Any]]) -> List[Any]:
        out: List[Any] = [None] * self.n
        for group, results in zip(self.groups, per_actor):
            for i, result in zip(group, results):
                out[i] = result
        return out

    def infos(self) -> List[Any]:
        # as_current: an actor binds to the current client at its first call (get_client), and this
        # one need not be the default client
        with self.client.as_current():
            calls = [a.info() for a in self.actors]
            return self._in_order([c.result() for c in calls])

    def evaluate(self, zeta: np.ndarray) -> List[Any]:
        calls = [a.evaluate(zeta) for a in self.actors]
        return self._in_order([c.result() for c in calls])

    def close(self) -> None:
        self.actors = []
        if self.futures:
            self.client.cancel(self.futures)  # releases the actors and their models on the workers
            self.futures = []


class _ShardedDensity:
    """The whole model's log density as the sum of the shards' parts, in shard order; quacks like a
    Model for find_laplace (``log_density`` and iteration over the parameters)."""

    def __init__(self, backend: Any, structure: Model):
        self.backend = backend
        self.structure = structure
        self.dim = structure.dim
        self.evaluations = 0
        self.seconds = 0.0

    def __iter__(self) -> Any:
        return iter(self.structure)

    def batch(self, zeta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """lp (S,) and grad (D, S) at zeta (D x S)."""
        t0 = time.perf_counter()
        parts = self.backend.evaluate(np.asfortranarray(zeta))
        self.seconds += time.perf_counter() - t0
        self.evaluations += 1
        lp: Optional[np.ndarray] = None
        grad: Optional[np.ndarray] = None
        for index, part in enumerate(parts):  # fixed order: the same sums wherever the shards ran
            if isinstance(part, _Failure):
                raise RuntimeError(
                    f"fit_sharded: shard {index} failed to evaluate its log density: "
                    f"{type(part.exception).__name__}: {part.exception}\nTraceback on the worker:\n"
                    f"{part.worker_traceback}"
                ) from part.exception
            if lp is None:
                lp, grad = part[0].copy(), part[1].copy()
            else:
                lp += part[0]
                grad += part[1]
        assert lp is not None and grad is not None
        return lp, grad

    def log_density(self, zeta: Any, threads: int = 1) -> Tuple[Any, np.ndarray]:
        z = np.asarray(zeta, dtype=np.float64)
        if z.ndim == 1:
            lp, grad = self.batch(z[:, None])
            return lp[0], grad[:, 0]
        return self.batch(z)


# ---- the shards checked against shard 0 ---------------------------------------------------------------


def _check_shards(infos: List[Any]) -> Model:
    """Raises for a shard whose build failed or that cannot be combined with shard 0; returns shard
    0's model without its likelihood (the structure of the result)."""
    for index, info in enumerate(infos):
        if isinstance(info, _Failure) and isinstance(info.exception, _Unsplittable):
            raise ValueError(f"fit_sharded: shard {index}: {info.exception}")
        if isinstance(info, _Failure):
            raise RuntimeError(
                f"fit_sharded: shard {index} failed to build: {type(info.exception).__name__}: {info.exception}\n"
                f"Traceback on the worker:\n{info.worker_traceback}"
            ) from info.exception
    first = infos[0]
    for index, info in enumerate(infos[1:], start=1):
        if info.params != first.params:
            raise ValueError(
                f"fit_sharded: shard {index}'s parameters differ from shard 0's (every shard must declare the "
                f"same parameters: names, shapes, bounds, transforms): {_param_difference(first.params, info.params)}"
            )
        if info.prior_kernels != first.prior_kernels:
            raise ValueError(
                f"fit_sharded: shard {index}'s priors (factors on parameters) differ from shard 0's: kernels "
                f"{info.prior_kernels} against {first.prior_kernels}; every shard must declare the same priors"
            )
        same = np.allclose(info.prior_lp, first.prior_lp, rtol=_PRIOR_RTOL, atol=0.0, equal_nan=True) and np.allclose(
            info.prior_grad, first.prior_grad, rtol=_PRIOR_RTOL, atol=1e-300, equal_nan=True
        )
        if not same:
            raise ValueError(
                f"fit_sharded: shard {index}'s priors have another log density than shard 0's (compared at "
                f"{_PRIOR_CHECK_POINTS} points): a prior computed from the shard's data? Every shard must declare "
                f"the same priors, counted once"
            )
    structure = first.structure
    assert structure is not None
    return structure


def _param_difference(a: List[Tuple[Any, ...]], b: List[Tuple[Any, ...]]) -> str:
    fields = ("name", "shape", "lower", "upper", "transform", "offset", "free size")
    if len(a) != len(b):
        return (
            f"{len(b)} parameter blocks ({', '.join(p[0] for p in b)}) against {len(a)} ({', '.join(p[0] for p in a)})"
        )
    for pa, pb in zip(a, b):
        for name, x, y in zip(fields, pa, pb):
            if x != y:
                return f"parameter {pb[0]!r}: {name} {y!r} against {x!r}"
    return "?"
