"""One model, its rows sharded across Dask workers: :func:`fit_sharded` (issue 13, item 4).

Data-parallel variational inference: every shard of the data lives on a worker, in a model that
``build(shard)`` made there once; at every step the client sends the same draws zeta to every
shard, the shards send back their log density and gradient at them, and the client sums them in
shard order and takes the Adam step. What makes this trustworthy:

- **Priors counted once.** Each shard's model has the parameters and the priors of the whole
  model, and the likelihood of its own rows. A factor whose variate is data (``model.add(kernel,
  data, ...)``) is a likelihood term; one whose variate is a parameter or an expression of
  parameters is a prior (the model's build log records which is which). Shard 0 contributes its
  whole log density (priors, log-Jacobians, its likelihood); every other shard evaluates a copy of
  its model without the priors, minus a model of the parameters alone (their log-Jacobians), so
  that what it sends is its likelihood only. The only cancellation is of the log-Jacobians, and the
  prior-free copy costs what the full model does (the priors and Jacobians are O(dim)). Before the
  first step the shards' parameters (names, shapes, bounds, transforms) and priors (their log
  density and gradient at a few points) are compared with shard 0's: a shard whose priors or
  parameters differ is refused, naming it. ``model.factor`` terms are refused: whether one is a
  prior or a likelihood cannot be told from the model.
- **The same result as one process.** The draws of step t depend only on (seed, t), the shards'
  sums are added in shard order on the client and the optimiser runs on the client, so a fit on
  any cluster equals the in-process fit (``client=None``) with the same seed, bit for bit: a
  shard's log density is the same computation wherever it runs, and the result of the C++ log
  density does not depend on its thread count.
- **Little traffic.** A shard's model is built once, on a worker, and kept there in a Dask actor
  (one per worker, holding its shards): a step sends dim x draws numbers to each worker and
  receives draws + dim x draws per shard back. Actor calls go from the client to the worker
  directly, without a scheduler round trip.

The optimiser is fit()'s in outline (README, "How a fit runs"), run in Python on the client: the
Laplace approximation found by L-BFGS through the shards preconditions (whitens) the problem, Adam
with the sticking-the-landing gradient, a windowed stopping rule and Polyak-Ruppert averaging once
converged; no step-size refinement (each refinement would take as many round trips again).

Dask is optional (``pip install fastvi[dask]``): it is imported only when a client is given.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, List, Literal, Optional, Sequence, Tuple

import numpy as np

from . import _core
from . import psis as _psis
from ._many import _picklable
from ._validate import bool_setting, float_setting, int_setting, seed_setting, threads_setting
from ._warnings import ConvergenceWarning, PosteriorShapeWarning
from .approximation import Approximation
from .model import Model

__all__ = ["fit_sharded"]

_INSTALL_HINT = "pip install fastvi[dask]"

# Adam's constants (those of fv.fit's C++ loop).
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
# Windows per block of the stopping rule: a block's mean ELBO and q are compared with the block before.
_BLOCK = 5
# q's mean has stopped moving when no coordinate's block mean moved by more than this many of q's
# sds since the block before; its scales when no log sd moved by more than _SCALE_MOVE.
_MEAN_MOVE = 0.1
_SCALE_MOVE = 0.05
# Least steps averaged once converged (the averaging phase is as long as convergence took, and at
# least this): the jitter Adam's constant step size leaves is then averaged over many steps.
_MIN_AVERAGE_STEPS = 1000
# Non-finite steps running after which the fit gives up.
_MAX_SKIPPED_RUNNING = 50
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


# ---- the result -------------------------------------------------------------------------------------


class _ShardedApproximation(Approximation):
    """An Approximation whose model is shard 0's without its likelihood: the parameters, priors and
    deterministics (evaluated on shard 0's data), enough for draws and moments. The log density
    of the whole data lives on the workers, so the PSIS diagnostic is the one fit_sharded ran."""

    def run_psis(self, draws: int = _psis.DEFAULT_DRAWS, **kwargs: Any) -> _psis.PSIS:
        raise RuntimeError(
            "run_psis needs the log density of every shard, which lives on the workers: fit_sharded ran "
            "the PSIS diagnostic with its psis_draws draws (fit.psis); refit with more psis_draws for a firmer one"
        )

    def _corrected_psis(self) -> _psis.PSIS:
        # fit() would draw more for an ESS below CORRECTED_ESS; here only the fit's own draws exist
        if self.psis is None:
            raise ValueError("the corrected results need the PSIS draws: refit with psis_draws > 0")
        return self.psis


# ---- fit_sharded --------------------------------------------------------------------------------------


def fit_sharded(
    build: Callable[[Any], Model],
    shards: Iterable[Any],
    *,
    client: Optional[Any] = None,
    family: Literal["meanfield", "fullrank"] = "meanfield",
    steps: int = 30_000,
    draws: int = 1,
    lr: float = 0.01,
    gradient: Literal["auto", "stl", "closed_form"] = "auto",
    seed: int = 0,
    tol: Optional[float] = 1e-5,
    tol_abs: float = 0.05,
    eval_every: int = 100,
    patience: int = 2,
    average: bool = True,
    precondition: Optional[Literal["auto"]] = "auto",
    threads: Optional[int] = None,
    psis_draws: int = _psis.DEFAULT_DRAWS,
) -> Approximation:
    """Fits one model whose data rows are sharded: each shard's model is built and kept on a Dask
    worker, and every step sums the shards' log-density gradients, in shard order, on the client.

    ``build(shard)`` must make the whole model's parameters and priors and the likelihood of that
    shard's rows. The priors (factors on a parameter or expression) are counted once, the
    likelihoods (factors on data) once per shard, so the posterior is that of one model with all
    the rows. The result equals the in-process fit (``client=None``) with the same seed bit for bit,
    whatever the cluster.

    Needs Dask's distributed scheduler for ``client``: ``pip install fastvi[dask]``.

    Parameters
    ----------
    build : callable
        ``build(shard) -> Model``, called once per shard, on the worker that keeps it (pickled by
        cloudpickle: lambdas and local functions work). Every shard's model must have the same
        parameters (names, shapes, bounds, transforms) and the same priors; likelihood terms are
        factors whose variate is data (``model.add(kernel, y, ...)``). ``model.factor`` terms are
        refused (a prior or a likelihood? the model cannot say). Python kernels must be registered
        in the workers too (in ``build``, or a module it imports).
    shards : iterable
        One item per shard, passed to ``build``, in the order their log densities are summed. Each
        is pickled to its worker: for large data pass something small (a file name, a row range)
        and let ``build`` load the rows on the worker.
    client : distributed.Client, optional
        The cluster: shard ``i`` is kept by worker ``i mod W`` (workers sorted by address), a
        worker's shards in one Dask actor, for the whole fit; a step is one call per worker.
        ``None``: the shards are built and evaluated in this process, one after another (the
        reference a cluster reproduces bit for bit; also for debugging).
    family : {"meanfield", "fullrank"}, default "meanfield"
        q's family, as in :func:`fastvi.fit` (the low-rank family is not supported here).
    steps : int, default 30_000
        Maximum Adam steps, the averaging phase included; each is one round trip to every shard.
    draws : int, default 1
        Monte Carlo draws per step, evaluated by every shard as one batch.
    lr : float, default 0.01
        Adam step size.
    gradient : {"auto", "stl", "closed_form"}, default "auto"
        As in :func:`fastvi.fit`: sticking the landing, except for a full-rank fit without
        preconditioning.
    seed : int, default 0
        The draws of step t depend on (seed, t) only; in [0, 2**64).
    tol, tol_abs : float, default 1e-5 and 0.05
        The stopping rule: every window of ``eval_every`` steps, the mean ELBO of the last 5
        windows (a block) is compared with that of the 5 before; the fit is settled when it
        changed by less than ``max(tol_abs, tol * improvement)`` (``improvement``: the climb
        since the first window) or by less than twice its Monte Carlo standard error, and no
        coordinate of q's mean (scale) moved by more than 0.1 of q's sd (0.05 in log sd) between
        the blocks. ``patience`` settled windows running make it converged; ``tol=None`` runs all
        ``steps`` (and the fit is not converged).
    eval_every : int, default 100
        Steps per window: the ELBO trace (``fit.elbo``) holds each window's mean.
    patience : int, default 2
        Settled checks running that make the fit converged.
    average : bool, default True
        Once converged, keep going for as many steps as convergence took (at least 1,000) and
        return the mean of those iterates (Polyak-Ruppert averaging), which removes the jitter of
        Adam's constant step size (``False``: the iterate at convergence). An unconverged fit
        returns the mean of its last two windows' iterates.
    precondition : {"auto", None}, default "auto"
        ``"auto"``: find the mode (L-BFGS, each evaluation a round trip to the shards) and the
        Hessian there (one batched evaluation of 2 x dim points), and run Adam in the coordinates
        the Laplace approximation whitens, as :func:`fastvi.fit` does. ``None``: start at zero with
        scale 0.1.
    threads : int, optional
        OpenMP threads of each shard's log density: default 1 on a cluster (the parallelism is
        across workers), all cores in process. Results do not depend on it.
    psis_draws : int, default 1000
        The PSIS diagnostic (``fit.khat``, ``fit.status``) on this many draws from q, their log
        density summed over the shards (a few batched round trips); 0 skips it.

    Returns
    -------
    Approximation
        q, with ``converged``, ``message``, ``elbo`` and the PSIS diagnostic. Its ``model`` is shard
        0's model without the likelihood terms (parameters, priors, deterministics, the latter on
        shard 0's data): ``sample``, ``mean``, ``std`` and ``summary`` work as for :func:`fastvi.fit`;
        ``run_psis`` raises (the log density lives on the workers) and ``importance="psis"`` uses
        the fit's own PSIS draws. ``options`` records the settings, ``"shards"`` and
        ``"seconds_evaluating"`` (time spent waiting for the shards). Ctrl-C returns the state
        reached so far (``interrupted``).

    Raises
    ------
    ImportError
        If a client is given and Dask's ``distributed`` is not installed.
    TypeError
        If ``build`` is not callable, ``shards`` is not an iterable of shard data, ``client`` is
        not a Dask client, or a setting has the wrong type.
    ValueError
        If there are no shards, a setting is out of range, or shards cannot be combined: a shard
        whose parameters or priors differ from shard 0's, a ``model.factor`` term.
    RuntimeError
        When a shard's build or evaluation raised: the message names the shard and shows the
        worker's traceback (the original exception is its ``__cause__``).

    Warns
    -----
    ConvergenceWarning
        When the fit did not converge (``tol`` not None), skipped non-finite steps, found no proper
        mode to precondition with, or was interrupted.
    PosteriorShapeWarning
        When the PSIS k-hat is above 0.7.

    See Also
    --------
    fit : The same model fitted in one process.
    fit_many : Many independent models on a Dask cluster.

    Examples
    --------
    w ~ Normal(0, 1), x_i ~ Normal(w, 1) with the 100 rows in two shards: the posterior is
    Normal(sum(x) / 101, 1 / sqrt(101)), with the prior counted once. In process:

    >>> import numpy as np, fastvi as fv
    >>> def build(x):
    ...     model = fv.Model()
    ...     w = model.param("w")
    ...     model.add("normal", w, loc=0.0, scale=1.0)      # the prior: in every shard, counted once
    ...     model.add("normal", x, loc=w, scale=1.0)        # this shard's rows
    ...     return model
    >>> x = np.random.default_rng(42).normal(2.0, 1.0, size=100)
    >>> fit = fv.fit_sharded(build, [x[:50], x[50:]], seed=0)
    >>> fit.converged, fit.options["shards"]
    (True, 2)
    >>> bool(abs(fit.mean()["w"] - x.sum() / 101) < 0.01), bool(abs(fit.std()["w"] - 1 / np.sqrt(101)) < 0.01)
    (True, True)

    On a cluster, pass ``client=distributed.Client(...)``: the same fit, bit for bit.
    """
    if not callable(build):
        raise TypeError(f"build must be callable (shard data -> fastvi.Model), got {type(build).__name__}")
    data = _shard_list(shards)
    if family not in ("meanfield", "fullrank"):
        raise ValueError(f"family must be 'meanfield' or 'fullrank' for fit_sharded, got {family!r}")
    settings = _Settings(
        family=family,
        steps=int_setting(steps, "steps", 1),
        draws=int_setting(draws, "draws", 1, 2**31),
        lr=float_setting(lr, "lr"),
        gradient=_choice(gradient, "gradient", ("auto", "stl", "closed_form")),
        seed=seed_setting(seed),
        tol=0.0 if tol is None else float_setting(tol, "tol", positive=False),
        tol_abs=float_setting(tol_abs, "tol_abs", positive=False),
        eval_every=int_setting(eval_every, "eval_every", 1),
        patience=int_setting(patience, "patience", 1),
        average=bool_setting(average, "average"),
        precondition=_choice(precondition, "precondition", ("auto", None)),
        psis_draws=int_setting(psis_draws, "psis_draws", 0, 2**32),
    )
    if settings.tol < 0:
        raise ValueError(f"tol must be >= 0 or None, got {tol!r}")
    if settings.tol_abs < 0:
        raise ValueError(f"tol_abs must be >= 0, got {tol_abs!r}")
    if threads is not None:
        threads = threads_setting(threads)
    if client is not None:
        _import_distributed()
        if not (hasattr(client, "submit") and hasattr(client, "nthreads")):
            raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    # in process, the shards take turns and each may use every core; on a cluster, one thread each
    threads = threads if threads is not None else (_core.max_threads() if client is None else 1)
    backend: Any = None
    try:
        backend = _InProcess(build, data, threads) if client is None else _OnDask(client, build, data, threads)
        structure = _check_shards(backend.infos())
        density = _ShardedDensity(backend, structure)
        return _fit(density, settings, len(data), backend.name, threads)
    finally:
        if backend is not None:
            backend.close()


def _prior_points(dim: int) -> np.ndarray:
    """Where the shards' priors are compared: a few fixed points of N(0, I) in zeta (dim x k)."""
    rng = np.random.default_rng(0x5052494F52)
    return np.asfortranarray(rng.standard_normal((dim, _PRIOR_CHECK_POINTS)))


@dataclass
class _Settings:
    family: str
    steps: int
    draws: int
    lr: float
    gradient: str
    seed: int
    tol: float
    tol_abs: float
    eval_every: int
    patience: int
    average: bool
    precondition: Optional[str]
    psis_draws: int

    def record(self, shards: int, where: str, threads: int, seconds: float) -> Dict[str, Any]:
        return {
            "family": self.family,
            "steps": self.steps,
            "draws": self.draws,
            "lr": self.lr,
            "gradient": self.gradient,
            "seed": self.seed,
            "rank": None,
            "tol": self.tol,
            "tol_abs": self.tol_abs,
            "eval_every": self.eval_every,
            "patience": self.patience,
            "average": self.average,
            "precision": None,
            "precondition": self.precondition,
            "threads": threads,
            "shards": shards,
            "where": where,
            "seconds_evaluating": seconds,
        }


def _choice(value: Any, name: str, allowed: Tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def _shard_list(shards: Any) -> List[Any]:
    if isinstance(shards, (str, bytes, dict)) or not isinstance(shards, Iterable):
        raise TypeError(f"shards must be a list (or other iterable) of shard data, got {type(shards).__name__}")
    data = list(shards)
    if not data:
        raise ValueError("shards is empty: give at least one shard of data")
    return data


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"fv.fit_sharded with a client needs Dask's distributed scheduler: {_INSTALL_HINT}") from e
    return distributed


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


# ---- the optimisation, on the client ------------------------------------------------------------------


class _Q:
    """q in the whitened coordinates u (zeta = shift + C u; C a diagonal c or a lower-triangular
    matrix) as one flat vector x: [mu, omega] (mean-field, omega = log sd) or [mu, L] (full-rank,
    L's D x D array row-major with its diagonal as logs; the upper triangle stays 0)."""

    def __init__(self, family: str, dim: int, shift: np.ndarray, scale: Any, start: np.ndarray, init_scale: float):
        self.family, self.dim = family, dim
        self.shift = shift
        self.diagonal_c = scale if np.ndim(scale) == 1 else None
        self.lower_c = scale if np.ndim(scale) == 2 else None
        D = dim
        if family == "meanfield":
            self.x = np.concatenate([start, np.full(D, math.log(init_scale))])
        else:
            L = np.zeros((D, D))
            L[np.diag_indices(D)] = math.log(init_scale)
            self.x = np.concatenate([start, L.ravel()])
        self._tril = np.tril(np.ones((D, D), dtype=bool))

    def parts(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """mu and the factor: sd (mean-field) or L (full-rank)."""
        D = self.dim
        mu = x[:D]
        if self.family == "meanfield":
            return mu, np.exp(x[D:])
        raw = x[D:].reshape(D, D)
        L = np.tril(raw, -1)
        L[np.diag_indices(D)] = np.exp(np.diag(raw))
        return mu, L

    def log_sd(self, x: np.ndarray) -> np.ndarray:
        """The log sd of each coordinate of u under q."""
        _, f = self.parts(x)
        if self.family == "meanfield":
            return np.log(f)
        return 0.5 * np.log(np.sum(f * f, axis=1))

    def entropy(self, x: np.ndarray) -> float:
        """q's entropy in u (without its constant)."""
        D = self.dim
        return float(np.sum(x[D:]) if self.family == "meanfield" else np.sum(np.diag(x[D:].reshape(D, D))))

    def to_zeta(self, u: np.ndarray) -> np.ndarray:
        if self.diagonal_c is not None:
            return self.shift[:, None] + self.diagonal_c[:, None] * u
        if self.lower_c is not None:
            return self.shift[:, None] + self.lower_c @ u
        return self.shift[:, None] + u

    def grad_to_u(self, g: np.ndarray) -> np.ndarray:
        if self.diagonal_c is not None:
            return self.diagonal_c[:, None] * g
        if self.lower_c is not None:
            return self.lower_c.T @ g
        return g

    def log_det_c(self) -> float:
        if self.diagonal_c is not None:
            return float(np.sum(np.log(self.diagonal_c)))
        if self.lower_c is not None:
            return float(np.sum(np.log(np.diag(self.lower_c))))
        return 0.0

    def gradient(self, x: np.ndarray, eps: np.ndarray, g_u: np.ndarray, stl: bool) -> np.ndarray:
        """The reparameterised gradient of the ELBO with respect to x, from the draws eps (D x S) and
        the log density's gradient at them (in u). STL: the path derivative of log p - log q with
        q's parameters held fixed inside log q (zero variance when q is the posterior);
        closed form: E[grad log p * dz/dx] + the entropy's gradient."""
        D, S = eps.shape
        _, f = self.parts(x)
        if self.family == "meanfield":
            h = g_u + eps / f[:, None] if stl else g_u
            grad_omega = np.mean(h * eps, axis=1) * f + (0.0 if stl else 1.0)
            return np.concatenate([np.mean(h, axis=1), grad_omega])
        if stl:
            import scipy.linalg

            h = g_u + scipy.linalg.solve_triangular(f.T, eps, lower=False)  # + L^-T eps = - grad_u log q
        else:
            h = g_u
        G = np.where(self._tril, h @ eps.T / S, 0.0)
        diag = np.diag(G) * np.diag(f) + (0.0 if stl else 1.0)  # the diagonal is log-parameterised
        G[np.diag_indices(D)] = diag
        return np.concatenate([np.mean(h, axis=1), G.ravel()])

    def phi(self, x: np.ndarray) -> np.ndarray:
        """q in zeta, in _core.Family's layout: [mu, log sd] or [mu, L column-major, log diagonal]."""
        mu, f = self.parts(x)
        D = self.dim
        if self.family == "meanfield":
            c = self.diagonal_c if self.diagonal_c is not None else np.ones(D)
            return np.concatenate([self.shift + c * mu, np.log(f) + np.log(c)])
        C = (
            np.diag(self.diagonal_c)
            if self.diagonal_c is not None
            else (self.lower_c if self.lower_c is not None else np.eye(D))
        )
        L = C @ f
        L[np.diag_indices(D)] = np.log(np.diag(L))
        return np.concatenate([self.shift + C @ mu, L.ravel(order="F")])


def _noise(seed: int, step: int, dim: int, draws: int) -> np.ndarray:
    """The standard normal draws of a step: a function of (seed, step) only (SeedSequence mixes the
    two into a Philox key), whatever the cluster or the number of shards."""
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, step, 0x53484152])))
    return rng.standard_normal((dim, draws))


def _fit(density: _ShardedDensity, settings: _Settings, n_shards: int, where: str, threads: int) -> Approximation:
    """Preconditioning, the Adam loop with its stopping rule and averaging, and the result."""
    from ._fit import _preconditioner
    from .laplace import find_laplace

    D, fam_name = density.dim, settings.family
    laplace = None
    interrupted = False
    warned: List[str] = []
    shift, scale = np.zeros(D), None
    if settings.precondition == "auto":
        try:
            laplace = find_laplace(density, np.zeros(D), full=fam_name == "fullrank", threads=threads)
        except KeyboardInterrupt:
            interrupted = True
        if laplace is not None and laplace.ok:
            precond = _preconditioner(laplace, fam_name)
            shift = np.array(precond.shift)
            scale = np.array(precond.lower) if fam_name == "fullrank" and laplace.covariance is not None else None
            if scale is None:
                scale = np.array(precond.diagonal)
        elif laplace is not None:
            warned.append(f"no proper mode to precondition with ({laplace.message}): fitted without preconditioning")
    whitened = scale is not None
    gradient = settings.gradient
    if gradient == "auto":
        gradient = "closed_form" if fam_name == "fullrank" and not whitened else "stl"
    q = _Q(fam_name, D, shift, scale, np.zeros(D), 1.0 if whitened else 0.1)
    run = _Loop(q, density, settings, gradient == "stl")
    if not interrupted:
        try:
            run.go()
        except KeyboardInterrupt:
            run.interrupted = True
    x = run.result_x()
    fam = _core.Family(fam_name, D)
    result = SimpleNamespace(
        phi=q.phi(x),
        elbo=run.window_elbo,
        elbo_step=run.window_step,
        steps=run.step,
        converged=run.converged and not run.interrupted,
        converged_step=run.converged_step if run.converged_step is not None else -1,
        averaged_steps=run.averaged,
        interrupted=interrupted or run.interrupted,
        skipped=run.skipped,
        lr_reductions=run.lr_reductions,
        divergences=0,
        refinements=0,
        error_mean=float("nan"),
        error_scale=float("nan"),
        message=run.message() if not interrupted else "interrupted during the mode search, before any step",
    )
    options = settings.record(n_shards, where, threads, 0.0)
    options["gradient"] = gradient
    approx = _ShardedApproximation(density.structure, fam, result, options)
    approx.laplace = laplace
    if settings.psis_draws and not approx.interrupted:
        approx.psis = _diagnose(approx, density, settings.psis_draws)
    approx.options["seconds_evaluating"] = density.seconds
    approx.options["evaluations"] = density.evaluations
    _warn(approx, run, warned, settings)
    return approx


def _warn(approx: Approximation, run: _Loop, warned: List[str], settings: _Settings) -> None:
    for text in warned:
        warnings.warn(f"fit_sharded: {text}", ConvergenceWarning, stacklevel=4)
    if approx.n_skipped:
        warnings.warn(
            f"fit_sharded: {approx.n_skipped} of {approx.steps} steps had a non-finite log density or gradient "
            f"and were skipped (step size halved {approx.lr_reductions} times)",
            ConvergenceWarning,
            stacklevel=4,
        )
    if approx.interrupted:
        warnings.warn(f"fit_sharded {approx.message}; returning the state reached so far", ConvergenceWarning, 4)
    elif not approx.converged and settings.tol > 0:
        warnings.warn(
            f"fit_sharded did not converge in {approx.steps} steps ({approx.message}); increase steps or lr, or "
            f"pass tol=None to silence this",
            ConvergenceWarning,
            stacklevel=4,
        )
    result = approx.psis
    if result is not None and not result.khat <= _psis.KHAT_BAD and not math.isnan(result.khat):
        if not _psis.tails_only(result):
            warnings.warn(_psis.khat_message(result, approx.family), PosteriorShapeWarning, stacklevel=4)


def _diagnose(approx: Approximation, density: _ShardedDensity, m: int) -> _psis.PSIS:
    """fastvi.psis.diagnose with the log density summed over the shards (the same draws a fit's
    diagnostic takes: fit.sample's stream for psis_seed(seed))."""
    t0, c0 = time.perf_counter(), time.process_time()
    seed = _psis.psis_seed(approx.options["seed"])
    log_ratios = np.empty(m)
    magnitude = 1.0
    for first, zeta, log_q in _psis.draws(approx, m, seed, log_q=True):
        lp, _ = density.batch(zeta)
        with np.errstate(invalid="ignore"):
            log_ratios[first : first + zeta.shape[1]] = lp - log_q
        both = np.abs(np.concatenate([lp, log_q]))
        magnitude = max(magnitude, float(np.max(both[np.isfinite(both)], initial=0.0)))
    result = _psis.psislw(log_ratios, flat_tol=_psis._FLAT_RTOL * magnitude)
    result.seed = seed
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    return result


class _Loop:
    """Adam on q's parameters x, the windowed stopping rule and the averaging phase."""

    def __init__(self, q: _Q, density: _ShardedDensity, settings: _Settings, stl: bool):
        self.q, self.density, self.s, self.stl = q, density, settings, stl
        self.step = 0
        self.lr = settings.lr
        self.skipped = self.lr_reductions = 0
        self.interrupted = self.converged = False
        self.converged_step: Optional[int] = None
        self.averaged = 0
        self.window_elbo: List[float] = []
        self.window_step: List[int] = []
        self.step_elbo: List[float] = []  # of the current and last 2 * _BLOCK windows
        self.window_stats: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (mean mu, mean log sd, ELBOs)
        self.window_sums: List[np.ndarray] = []  # sums of x over the last two windows
        self.settled = 0
        self.stopped_by = ""
        self.x_sum: Optional[np.ndarray] = None
        self.average_until: Optional[int] = None

    def go(self) -> None:
        q, s = self.q, self.s
        D = q.dim
        x = q.x
        m, v = np.zeros_like(x), np.zeros_like(x)
        t_adam = 0
        entropy_const = 0.5 * D * (1.0 + math.log(2 * math.pi)) + q.log_det_c()
        mu_acc, lsd_acc, x_acc = np.zeros(D), np.zeros(D), np.zeros_like(x)
        in_window = 0
        elbos: List[float] = []
        running_skips = 0
        while self.step < s.steps:
            eps = _noise(s.seed, self.step, D, s.draws)
            mu, f = q.parts(x)
            u = mu[:, None] + (f[:, None] * eps if q.family == "meanfield" else f @ eps)
            lp, g = self.density.batch(q.to_zeta(u))
            self.step += 1
            if not (np.all(np.isfinite(lp)) and np.all(np.isfinite(g))):
                self.skipped += 1
                running_skips += 1
                self.lr *= 0.5
                self.lr_reductions += 1
                if running_skips >= _MAX_SKIPPED_RUNNING:
                    self.stopped_by = f"{running_skips} non-finite steps running"
                    break
                continue
            running_skips = 0
            grad = q.gradient(x, eps, q.grad_to_u(g), self.stl)
            elbo = float(np.mean(lp)) + q.entropy(x) + entropy_const
            t_adam += 1
            m = _BETA1 * m + (1 - _BETA1) * grad
            v = _BETA2 * v + (1 - _BETA2) * grad * grad
            m_hat = m / (1 - _BETA1**t_adam)
            v_hat = v / (1 - _BETA2**t_adam)
            x = x + self.lr * m_hat / (np.sqrt(v_hat) + _ADAM_EPS)
            q.x = x
            if self.x_sum is not None:
                self.x_sum += x
                self.averaged += 1
                if self.average_until is not None and self.step >= self.average_until:
                    break
            elbos.append(elbo)
            mu_acc += x[:D]
            lsd_acc += q.log_sd(x)
            x_acc += x
            in_window += 1
            if self.step % s.eval_every == 0 and in_window:
                self._window(mu_acc / in_window, lsd_acc / in_window, np.array(elbos), x_acc / in_window)
                mu_acc, lsd_acc, x_acc = np.zeros(D), np.zeros(D), np.zeros_like(x)
                elbos, in_window = [], 0
                if self.converged and self.x_sum is None:
                    if not s.average:
                        break
                    self.x_sum = np.zeros_like(x)
                    self.average_until = self.step + max(self.step, _MIN_AVERAGE_STEPS // s.draws)

    def _window(self, mu: np.ndarray, log_sd: np.ndarray, elbos: np.ndarray, x_mean: np.ndarray) -> None:
        s = self.s
        self.window_elbo.append(float(np.mean(elbos)))
        self.window_step.append(self.step)
        self.window_sums = [*self.window_sums, x_mean][-2:]
        self.window_stats = [*self.window_stats, (mu, log_sd, elbos)][-2 * _BLOCK :]
        if s.tol <= 0 or self.converged or len(self.window_stats) < 2 * _BLOCK:
            return
        old, new = self.window_stats[:_BLOCK], self.window_stats[_BLOCK:]
        e_old, e_new = np.concatenate([w[2] for w in old]), np.concatenate([w[2] for w in new])
        change = float(np.mean(e_new) - np.mean(e_old))
        noise = math.sqrt(np.var(e_new) / e_new.size + np.var(e_old) / e_old.size)
        improvement = abs(float(np.mean(e_new)) - self.window_elbo[0])
        elbo_ok = abs(change) <= max(s.tol_abs, s.tol * improvement) or abs(change) <= 2 * noise
        mu_old, mu_new = np.mean([w[0] for w in old], axis=0), np.mean([w[0] for w in new], axis=0)
        lsd_old, lsd_new = np.mean([w[1] for w in old], axis=0), np.mean([w[1] for w in new], axis=0)
        mean_ok = bool(np.all(np.abs(mu_new - mu_old) <= _MEAN_MOVE * np.exp(lsd_new)))
        scale_ok = bool(np.all(np.abs(lsd_new - lsd_old) <= _SCALE_MOVE))
        self.settled = self.settled + 1 if (elbo_ok and mean_ok and scale_ok) else 0
        self.last_check = (elbo_ok, mean_ok, scale_ok)
        if self.settled >= s.patience:
            self.converged = True
            self.converged_step = self.step

    def result_x(self) -> np.ndarray:
        if self.x_sum is not None and self.averaged:
            return self.x_sum / self.averaged
        if self.converged and not self.s.average:
            return self.q.x  # average=False: the iterate at convergence
        if self.window_sums:
            return np.mean(self.window_sums, axis=0)
        return self.q.x

    def message(self) -> str:
        if self.interrupted:
            return f"interrupted at step {self.step}"
        if self.stopped_by:
            return f"stopped at step {self.step}: {self.stopped_by}"
        if self.converged:
            return (
                f"converged at step {self.converged_step}"
                + (f", then averaged {self.averaged} iterates" if self.averaged else "")
                + ("" if self.x_sum is None or self.step >= (self.average_until or 0) else " (steps ran out)")
            )
        if self.s.tol <= 0:
            return f"ran all {self.step} steps (tol=None)"
        what = getattr(self, "last_check", None)
        if what is None:
            return f"not converged in {self.step} steps (too few windows to judge)"
        moving = [name for name, ok in zip(("the ELBO", "q's mean", "q's scales"), what) if not ok]
        return f"not converged in {self.step} steps: {', '.join(moving) or 'not settled long enough'} still moving"
