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

The parts: ``_sharded_workers`` (the shards: built, split into priors and likelihood, kept in
process or in Dask actors, summed in shard order, checked against shard 0), ``_sharded_loop`` (the
client's optimiser: q, the step's draws, Adam, the stopping rule, averaging) and this module (the
public function, its argument checks, preconditioning, and the result with its diagnostic and
warnings).
"""

from __future__ import annotations

import math
import time
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Iterable, List, Literal, Optional, Tuple

import numpy as np

from . import _core
from . import psis as _psis
from ._sharded_loop import _Q, _Loop, _Settings
from ._sharded_workers import _check_shards, _InProcess, _OnDask, _ShardedDensity
from ._validate import bool_setting, float_setting, int_setting, seed_setting, threads_setting
from ._warnings import ConvergenceWarning, PosteriorShapeWarning
from .approximation import Approximation
from .model import Model

__all__ = ["fit_sharded"]

_INSTALL_HINT = "pip install fastvi[dask]"


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


# ---- the fit, on the client: preconditioning, the loop, the result -------------------------------------


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
