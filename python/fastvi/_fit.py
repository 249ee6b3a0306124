"""Fitting a Gaussian approximation: ``fit`` validates its options, preconditions with the
Laplace approximation, runs the C++ loop and reports what happened (the result is an
``Approximation``, approximation.py)."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Dict, Literal, Optional, Tuple, Union

import numpy as np

from . import _core
from . import psis as _psis
from ._threads import one_blas_thread, warn_if_forked
from ._validate import bool_setting, float_setting, int_setting, seed_setting, threads_setting
from ._warm import warm_start
from ._warnings import ConvergenceWarning, ImproperPosteriorWarning, PosteriorShapeWarning
from .approximation import Approximation
from .laplace import Laplace, coordinate_names, find_laplace, name_list
from .model import Model

_FAMILIES = ("meanfield", "fullrank", "lowrank")
_METHODS = {"advi": "meanfield", "meanfield": "meanfield", "fullrank_advi": "fullrank", "fullrank": "fullrank"}

__all__ = ["Approximation", "ConvergenceWarning", "ImproperPosteriorWarning", "PosteriorShapeWarning", "fit"]


def fit(
    model: Model,
    family: Optional[Literal["meanfield", "fullrank", "lowrank"]] = None,
    *,
    method: Optional[Literal["advi", "fullrank_advi", "meanfield", "fullrank"]] = None,
    rank: Optional[int] = None,
    steps: Optional[int] = None,
    draws: int = 1,
    batch_size: Optional[int] = None,
    control_variate: bool = True,
    lr: float = 0.01,
    gradient: Literal["auto", "stl", "closed_form"] = "auto",
    seed: int = 0,
    tol: Optional[float] = 1e-5,
    tol_abs: float = 0.05,
    eval_every: Optional[int] = None,
    patience: int = 2,
    average: bool = True,
    precision: Optional[float] = 0.05,
    precondition: Optional[Literal["auto"]] = "auto",
    init: Union[Dict[str, Any], Approximation, None] = None,
    init_scale: Optional[float] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    callback: Optional[Callable[[int, int, float, int], Optional[bool]]] = None,
    psis_draws: int = _psis.DEFAULT_DRAWS,
) -> Approximation:
    """Fits a Gaussian approximation to the posterior of ``model`` by maximising the ELBO.

    The fit finds the posterior mode and preconditions with the Laplace approximation there
    (``precondition``), runs Adam on the reparameterised ELBO gradient in C++ with the GIL
    released until the stopping rule is met, averages the iterates (``average``), refines the
    step size to bound the remaining error (``precision``) and runs the PSIS diagnostic
    (``psis_draws``). README, "How a fit runs", describes each stage.

    Parameters
    ----------
    model : Model
        The model, with at least one parameter.
    family : {"meanfield", "fullrank", "lowrank"}, optional
        ``"meanfield"`` (default), ``"fullrank"`` or ``"lowrank"`` (covariance
        diag(d)^2 + B B^T with B of ``rank`` columns: correlations at O(D rank) cost per draw).
    method : {"advi", "fullrank_advi", "meanfield", "fullrank"}, optional
        A PyMC-style alias of ``family`` (``"advi"`` is mean-field, ``"fullrank_advi"``
        full-rank); it must not contradict ``family``.
    rank : int, optional
        Columns of B for ``family="lowrank"`` (only for that family), 1 <= rank <= the number of
        unconstrained parameters D; default round(sqrt(D)) (as Pyro's and NumPyro's low-rank
        guides). Meant for rank well below D: near D the best (d, B) is not unique (roughly once
        rank > D - sqrt(2 D)), the averaged iterates can come out with sds several % (up to
        ~10 %) too small at the default lr, and ``"fullrank"`` is the better choice anyway.
    steps : int, optional
        Maximum Adam steps, over every phase: by default 30,000, and for a minibatch fit
        without ``control_variate`` 30,000 + 5,000 N / batch_size (its blocks and averaging
        phases are longer, see ``control_variate``).
    draws : int, default 1
        Monte Carlo draws per step, evaluated as one batch.
    batch_size : int, optional
        Minibatch (stochastic) VI: each step evaluates the model's row-wise factors, the GLM
        kernels, on ``batch_size`` of their N rows, drawn anew each step from ``seed`` (the same
        for any thread count; independent uniform rows for batch_size <= N / 8, else a uniformly
        random subset), and weights those rows' log likelihood by N / batch_size, an unbiased
        estimate; every other factor (priors, element-wise terms without ``rows``) is evaluated
        whole. A step then costs O(batch_size x K) instead of O(N x K). The mode search and the
        PSIS diagnostic use all rows. Every row-wise factor must have the same N. An element-wise
        factor is row-wise too if added with ``rows=0`` (:meth:`Model.add`), its N rows the
        leading axis. ``None`` (or N): every row, every step.
    control_variate : bool, default True
        With ``batch_size``: each step also evaluates its rows at a reference point (q's mean,
        re-evaluated on all N rows when q's mean has moved more than 1 sd of q from it, at most
        once per N / batch_size steps) and
        estimates the log likelihood and its gradient as batch(draw) - batch(reference) +
        full(reference): still unbiased, but the subsampling noise is that of the change since the
        reference, which nearly vanishes once q is near the posterior. The fit then needs about
        as many steps as a full-batch fit, each costing about two draws on batch_size rows, plus a
        few full passes (``fit.full_evaluations``). False: the plain estimate, whose subsampling
        noise does not fade at the optimum: the stopping rule then uses windows of 40 N /
        batch_size steps by default with drift and scale thresholds raised above that noise, and
        each averaging phase lasts at least (N / batch_size) / precision**2 steps (about N /
        precision**2 rows in all, whatever the batch size); for data too large for even a few
        full passes.
    lr : float, default 0.01
        Adam step size.
    gradient : {"auto", "stl", "closed_form"}, default "auto"
        ``"stl"`` (sticking the landing: zero variance when q matches the posterior),
        ``"closed_form"`` (closed-form entropy gradient) or ``"auto"``: STL, except for a
        full-rank fit without preconditioning, where STL's path term L^-T eps explodes while L is
        still far from the posterior's and the fit can diverge (seen on a D = 30 regression).
    seed : int, default 0
        The same seed gives the same result, whatever the thread count; in [0, 2**64).
    tol, tol_abs : float, default 1e-5 and 0.05
        The stopping rule (README, "How a fit runs"). Every 5 windows of ``eval_every`` steps (a
        block) the fit is settled when the block mean of the ELBO changed from the block before,
        and from the block 4 blocks back, by less than ``max(tol_abs, tol * improvement)`` per
        block (``improvement``: the climb since the first window) or by less than twice its
        Monte Carlo standard error, and q has stopped moving: no coordinate of its mean moved by
        more than 0.5 of q's sd per block the same way twice (or 1 sd once), no log sd changed by
        more than 0.01 the same way 3 blocks running. Adding a constant to the log density
        changes nothing in the rule. ``tol=None`` or 0 runs all ``steps``.
    eval_every : int, optional
        Steps per window: the ELBO is recorded (``fit.elbo``) and the callback called at the end
        of each. By default 100, and 40 N / batch_size for a minibatch fit without control
        variate when that is more (see ``control_variate``).
    patience : int, default 2
        Settled checks running that make the fit converged; the averaging phase confirms it (or
        withdraws it, if q's means or scales trend over the phase).
    average : bool, default True
        Once converged, keep going for an averaging phase (as long as convergence took, and at
        least 4,000 draws) and return the mean of its iterates: this removes the jitter a
        constant step size leaves around the optimum. An unconverged fit averages its last two
        windows.
    precision : float or None, default 0.05
        What "converged" promises. A constant step size leaves the averaged q off the optimum by
        a bias that grows with ``lr`` (0.08 sd on a 31-coefficient logistic regression at
        lr = 0.01, the same at every seed), so after the averaging phase the fit restarts from
        the averaged q with a 4x smaller step size, converges and averages again, and estimates
        the remaining error from the change between the two averages (bias taken as proportional
        to the step size): ``fit.error_mean`` (largest |mean error| in q's sds over the
        unconstrained coordinates) and ``fit.error_scale`` (largest |log sd error|). It refines
        up to 3 times; ``converged`` is True only when both are below ``precision``. ``None``:
        no refinement, no error estimate (fastvi 0.1's behaviour: faster, less exact).
    precondition : {"auto", None}, default "auto"
        ``"auto"`` first finds the posterior mode and the Hessian there and runs the fit in
        coordinates whitened by that Laplace approximation (full Cholesky for full-rank, diagonal
        otherwise), which makes badly scaled and strongly correlated posteriors as easy as
        well-conditioned ones; models without a proper mode are fitted without it (``fit.laplace``
        says what happened). ``None`` turns it off. The low-rank family also starts B along the
        Laplace covariance's leading directions (when the full Hessian is formed, D <= 2000).
        The mode search runs numpy's and scipy's BLAS on one thread (its calls are too small for
        threads to pay, and on a loaded machine they cost several times the fit), Python kernels
        called meanwhile included; the setting is restored afterwards.
    init : dict of str to array_like, or Approximation, optional
        Constrained starting values by parameter name (others start at 0 in the unconstrained
        space): the start of the mode search, or of q's mean without preconditioning. Or an
        earlier fit (of this model, or of one with the same parameters; typically before
        :meth:`Model.set_data`): a warm start, which skips the mode search and starts from that
        fit's q, preconditioned by it as by a Laplace approximation (``precondition`` is not
        used; ``options["precondition"]`` records ``"init"``): exactly that q for the same
        family (low-rank: of the same rank), its mean and marginal scales otherwise.
    init_scale : float, optional
        Starting standard deviation of q, in the optimiser's coordinates (default 1 when
        preconditioned, i.e. the Laplace approximation's scale, or the earlier fit's with a warm
        start; 0.1 otherwise).
    threads : int, optional
        OpenMP threads for large kernels (default: OMP_NUM_THREADS or all cores). The result
        does not depend on it.
    progress : bool, default False
        Show a progress bar (``tqdm.auto``: a widget in notebooks; needs tqdm, ``pip install
        fastvi[progress]``), redrawn at most twice a second, so that a log file gets a few
        lines per second of fit.
    callback : callable, optional
        Called as ``callback(step, total, elbo, skipped)`` (``elbo``: the last window's ELBO,
        NaN before the first) at the end of every window of ``eval_every`` steps, and at least
        every 0.25 s while the fit runs. It returns None or True to go on, False to stop the fit
        (as Ctrl-C does); anything else is a TypeError.
    psis_draws : int, default 1000
        After the fit, draw this many points from q and run the PSIS diagnostic on them
        (``fit.khat``, ``fit.ess``, ``fit.psis``; :mod:`fastvi.psis` explains it); 0 skips it. Its
        cost is one batched log density evaluation of ``psis_draws`` points (3-5 % of a small
        fit's time at the default; bench/README.md). A k-hat between 0.5 and 0.7 is recomputed
        from 4 x psis_draws draws (k-hat's sampling sd is ~0.14 at 1,000 draws, and a fit near
        the 0.7 line deserves a firmer answer). The draws' seed is derived from ``seed``.

    Returns
    -------
    Approximation
        The fitted q, with what happened (``converged``, ``message``, ``status``, ...). Ctrl-C
        stops the fit and returns the approximation reached so far (``interrupted`` is True;
        PSIS is skipped).

    Raises
    ------
    TypeError
        If ``model`` is not a Model, an integer setting is not an int, a flag not a bool, a
        float setting not a number, ``init`` not a dict or Approximation, ``callback`` not callable (or it returns
        something other than None, True or False).
    ValueError
        If the model has no parameters, or a setting is out of range or contradicts another
        (``family`` and ``method``; ``rank`` for a family other than "lowrank" or above D), or
        ``init`` names unknown parameters or values outside their bounds, or is a fit of a model
        with other parameters.
    ImportError
        With ``progress=True`` when tqdm is not installed.
    MemoryError
        If the fit runs out of memory (the message names the settings that size it).

    Warns
    -----
    ConvergenceWarning
        When the fit did not converge (unless ``tol`` is None or 0), skipped non-finite steps, diverged,
        was interrupted, found no proper mode to precondition with, or its result is not finite
        in the constrained space (``converged`` is then False).
    ImproperPosteriorWarning
        When the posterior looks improper or unidentified: a flat direction at the mode, or q's
        scale still growing at the end (``converged`` is False).
    PosteriorShapeWarning
        When the PSIS k-hat is above 0.7 (q is a poor approximation of the posterior).

    See Also
    --------
    Approximation : The result.
    summary : A table of the fit's draws.

    Examples
    --------
    The textbook example: w ~ Normal(0, 1), x_i ~ Normal(w, 1); the exact posterior is
    Normal(sum(x) / 101, 1 / sqrt(101)).

    >>> import numpy as np, fastvi as fv
    >>> np.random.seed(42)
    >>> x = np.random.normal(2.0, 1.0, size=100)
    >>> model = fv.Model()
    >>> w = model.param("w")
    >>> model.add("normal", w, loc=0.0, scale=1.0)
    >>> model.add("normal", x, loc=w, scale=1.0)
    >>> approx = fv.fit(model, steps=10_000, seed=0)
    >>> bool(abs(approx.mean()["w"] - x.sum() / 101) < 0.01)
    True
    >>> bool(abs(approx.std()["w"] - 1 / np.sqrt(101)) < 0.01), approx.converged
    (True, True)

    The other families, and a callback that stops the fit after 1,000 steps:

    >>> fv.fit(model, family="fullrank", seed=0).status.use
    'q'
    >>> fv.fit(model, family="lowrank", rank=1, seed=0).rank
    1
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     stopped = fv.fit(model, seed=0, callback=lambda step, total, elbo, skipped: step < 1000)
    >>> stopped.interrupted, stopped.steps, caught[0].category.__name__
    (True, 1000, 'ConvergenceWarning')
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastvi.Model, got {type(model).__name__}")
    if model.dim == 0:
        raise ValueError("model has no parameters to fit: declare some with model.param")
    opts, settings = _validated_options(
        model, family, method, rank, steps, draws, lr, gradient, seed, tol, tol_abs, eval_every, patience, average,
        precision, precondition, threads, progress, callback, psis_draws, batch_size, control_variate,
    )  # fmt: skip
    fam = _core.Family(settings.family, model.dim, settings.rank)
    data_seen = dict(model._data_values)  # (set_data in another thread while this fit runs)
    if isinstance(init, Approximation):  # a warm start: the earlier q replaces the mode search
        scale = 1.0 if init_scale is None else float_setting(init_scale, "init_scale")
        precond, phi0 = warm_start(model, fam, init, settings.family, settings.rank, scale)
        settings.gradient = "stl" if settings.gradient == "auto" else settings.gradient
        settings.init_scale, settings.precondition = scale, "init"
        opts.gradient = getattr(_core.GradientEstimator, settings.gradient)
        result = _run(model, fam, phi0, opts, precond, settings)
        approx = Approximation(model, fam, result, settings.record(opts))
        approx._data_at_fit = data_seen
        _report(approx, result, None, opts, settings.psis_draws)
        return approx
    start = np.zeros(model.dim) if init is None else _initial_mean(model, init)
    laplace = None
    # the mode search and the factorisations of its Hessian: small BLAS calls that threads only
    # slow (without it, nothing here calls BLAS: no need to load scipy and threadpoolctl)
    with one_blas_thread() if precondition == "auto" else contextlib.nullcontext():
        if precondition == "auto":
            try:
                # the low-rank family uses the full Laplace covariance (if formed) to start B, see _start
                full = settings.family in ("fullrank", "lowrank")
                laplace = find_laplace(model, start, full=full, threads=opts.threads)
            except KeyboardInterrupt:
                return _interrupted_in_mode_search(model, fam, start, init_scale, settings, opts)
        precond = _preconditioner(laplace, settings.family)
        phi0, settings.gradient, settings.init_scale = _start(model, fam, start, laplace, precond, settings, init_scale)
    opts.gradient = getattr(_core.GradientEstimator, settings.gradient)
    result = _run(model, fam, phi0, opts, precond, settings)
    approx = Approximation(model, fam, result, settings.record(opts))
    approx._data_at_fit = data_seen
    approx.laplace = laplace
    _report(approx, result, laplace, opts, settings.psis_draws)
    return approx


@dataclass
class _Settings:
    """fit()'s validated settings that are not FitOptions fields (those are in opts)."""

    family: str
    rank: int
    gradient: str
    precondition: Optional[str]
    precision: Optional[float]
    psis_draws: int
    progress: bool
    callback: Optional[Callable[[int, int, float, int], Optional[bool]]]
    init_scale: Optional[float] = None

    def record(self, opts: Any) -> Dict[str, Any]:
        """The settings as Approximation.options records them."""
        return {
            "family": self.family,
            "steps": opts.steps,
            "draws": opts.draws,
            "batch_size": opts.batch_size or None,
            "control_variate": opts.control_variate if opts.batch_size else None,
            "lr": opts.lr,
            "gradient": self.gradient,
            "seed": opts.seed,
            "rank": self.rank if self.family == "lowrank" else None,
            "tol": opts.tol,
            "tol_abs": opts.tol_abs,
            "eval_every": opts.eval_every,
            "patience": opts.patience,
            "average": opts.average,
            "precision": self.precision,
            "precondition": self.precondition,
            "init_scale": self.init_scale,
            "threads": opts.threads,
        }


def _validated_options(model, family, method, rank, steps, draws, lr, gradient, seed, tol, tol_abs, eval_every,
                       patience, average, precision, precondition, threads, progress, callback,
                       psis_draws, batch_size=None, control_variate=True) -> Tuple[Any, _Settings]:  # fmt: skip
    """Every setting checked (naming the argument at fault) before any work: the C++ FitOptions
    and the rest."""
    family_name = _resolve_family(family, method)
    opts = _core.FitOptions()
    opts.batch_size = _batch_size_setting(model, batch_size)
    opts.control_variate = bool_setting(control_variate, "control_variate")
    plain_batch = 0 if opts.control_variate else opts.batch_size  # the noisy estimate's longer defaults
    opts.steps = _default_steps(model, plain_batch) if steps is None else int_setting(steps, "steps", 1)
    opts.draws = int_setting(draws, "draws", 1)
    opts.lr = float_setting(lr, "lr")
    if gradient not in ("auto", "stl", "closed_form"):
        raise ValueError(f"gradient must be 'auto', 'stl' or 'closed_form', got {gradient!r}")
    opts.seed = seed_setting(seed)
    opts.tol = 0.0 if tol is None else float_setting(tol, "tol", positive=False)
    if opts.tol < 0:
        raise ValueError(f"tol must be >= 0 or None, got {tol!r}")
    opts.tol_abs = float_setting(tol_abs, "tol_abs", positive=False)
    if opts.tol_abs < 0:
        raise ValueError(f"tol_abs must be >= 0, got {tol_abs!r}")
    if precondition not in ("auto", None):
        raise ValueError(f"precondition must be 'auto' or None, got {precondition!r}")
    opts.eval_every = (
        _default_eval_every(model, plain_batch) if eval_every is None else int_setting(eval_every, "eval_every", 1)
    )
    opts.patience = int_setting(patience, "patience", 1)
    opts.average = bool_setting(average, "average")
    if precision is None:
        opts.refine_levels = 0
    else:
        opts.precision = float_setting(precision, "precision")
    opts.threads = _core.max_threads() if threads is None else threads_setting(threads)
    warn_if_forked(opts.threads)
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable or None")
    settings = _Settings(
        family=family_name,
        rank=_resolve_rank(rank, family_name, model.dim),
        gradient=gradient,
        precondition=precondition,
        precision=precision,
        psis_draws=int_setting(psis_draws, "psis_draws", 0, 2**32),
        progress=bool_setting(progress, "progress"),
        callback=callback,
    )
    return opts, settings


def _default_eval_every(model: Model, batch_size: int) -> int:
    """eval_every=None: 100, and for a minibatch fit without control variate (batch_size > 0 here)
    40 w (w = N / batch_size) when that is more:
    a block of 5 windows then averages 200 w steps, whose mean scatters by about sqrt(1 / 200) =
    0.07 posterior sds under the subsampling noise, so that the stopping rule's drift and scale
    thresholds (raised to 3 sqrt(2) times that noise, fit.cpp) stay near 0.3."""
    if batch_size == 0:
        return 100
    return max(100, math.ceil(40 * model._core.data_rows / batch_size))


def _default_steps(model: Model, batch_size: int) -> int:
    """steps=None: 30,000, plus for a minibatch fit without control variate (batch_size > 0 here)
    room for its longer blocks (200 w steps, see
    _default_eval_every; convergence needs at least 5) and averaging phases (each at least
    w / 0.05**2 steps, w = N / batch_size; see FitOptions::batch_size), up to four of them (the
    refinement levels)."""
    if batch_size == 0:
        return 30_000
    w = model._core.data_rows / batch_size
    return 30_000 + math.ceil(5_000 * w)


def _batch_size_setting(model: Model, batch_size: Optional[int]) -> int:
    """FitOptions.batch_size: 0 for every row (None, or as many as there are)."""
    if batch_size is None:
        return 0
    b = int_setting(batch_size, "batch_size", 1)
    n = model._core.data_rows  # raises ValueError if two row-wise factors disagree
    if n == 0:
        raise ValueError(
            "batch_size: the model has no row-wise factors to subsample; minibatches subsample the rows of "
            "the GLM kernels (normal_id_glm, bernoulli_logit_glm, poisson_log_glm, neg_binomial_2_log_glm) "
            "and of element-wise factors added with rows=0 (model.add('normal', y, ..., rows=0))"
        )
    if b > n:
        raise ValueError(f"batch_size is {b} but the data have {n} rows")
    return 0 if b == n else b


def _interrupted_in_mode_search(model, fam, start, init_scale, settings: _Settings, opts) -> Approximation:
    """Ctrl-C during the mode search: return, as Ctrl-C in the loop does, the state reached so far,
    here the starting q (no optimisation step was taken)."""
    phi0 = fam.initialise(start, 0.1 if init_scale is None else float_setting(init_scale, "init_scale"))
    message = "interrupted during the mode search (preconditioning), before any optimisation step"
    result = _interrupted_result(phi0, message)
    approx = Approximation(
        model,
        fam,
        result,
        {"family": settings.family, "seed": opts.seed, "precondition": settings.precondition, "threads": opts.threads},
    )
    approx.laplace = Laplace(False, "interrupted by Ctrl-C during the mode search")
    warnings.warn(f"fit {approx.message}; returning the starting approximation", ConvergenceWarning, stacklevel=3)
    return approx


def _preconditioner(laplace: Optional[Laplace], family: str) -> Any:
    """zeta = mode + C u from the Laplace approximation (identity without a proper mode): C =
    chol(H^-1) for full-rank; mean-field and low-rank stay in their family only under a diagonal C."""
    precond = _core.Preconditioner()
    if laplace is not None and laplace.ok and laplace.mode is not None and laplace.hessian_diag is not None:
        precond.shift = laplace.mode
        if family == "fullrank" and laplace.covariance is not None:
            precond.lower = np.linalg.cholesky(laplace.covariance)
        else:
            precond.diagonal = 1.0 / np.sqrt(laplace.hessian_diag)
    return precond


def _start(model, fam, start, laplace, precond, settings: _Settings, init_scale) -> Tuple[np.ndarray, str, float]:
    """The starting phi, the gradient estimator and the initial scale."""
    whitened = laplace is not None and laplace.ok
    gradient = settings.gradient
    if gradient == "auto":
        gradient = "closed_form" if settings.family == "fullrank" and not whitened else "stl"
    scale = (1.0 if whitened else 0.1) if init_scale is None else float_setting(init_scale, "init_scale")
    phi0 = fam.initialise(np.zeros(model.dim) if whitened else start, scale)
    if settings.family == "lowrank" and laplace is not None and whitened and laplace.covariance is not None:
        phi0[2 * model.dim :] = _laplace_factor(laplace.covariance, precond.diagonal, settings.rank, scale)
    return phi0, gradient, scale


def _run(model, fam, phi0, opts, precond, settings: _Settings) -> Any:
    """The C++ loop (GIL released), with the progress bar and the user's callback as its monitor."""
    bar = _progress_bar(opts.steps) if settings.progress else None
    callback = settings.callback

    def monitor(step: int, total: int, elbo: float, skipped: int) -> Optional[bool]:
        if bar is not None:
            # update() redraws only once _PROGRESS_SECONDS have passed since the last redraw (the
            # monitor runs at every ELBO window, 100 steps by default: redrawing each time wrote
            # about 1,000 lines into a log file for a 3 s fit)
            bar.set_postfix(elbo=f"{elbo:.4g}", refresh=False)
            bar.update(step - bar.n)
        return _keep_going(callback(step, total, elbo, skipped)) if callback is not None else None

    try:
        return _core.fit(model._core, fam, phi0, opts, monitor if (bar or callback) else None, precond)
    except MemoryError as err:
        # C++ reports std::bad_alloc bare: say which settings size the fit's memory
        raise MemoryError(
            f"fit ran out of memory ({err}) with steps={opts.steps}, draws={opts.draws} and "
            f"{model.dim} unconstrained parameters: reduce steps or draws"
        ) from err
    finally:
        if bar is not None:
            bar.close()


def _report(approx: Approximation, result: Any, laplace: Optional[Laplace], opts: Any, psis_draws: int) -> None:
    """What the loop cannot judge by itself (_diagnose), the warnings, and the PSIS diagnostic."""
    warned = _diagnose(approx, result, laplace, opts.tol > 0)
    # (stacklevel 3: warn <- _report <- fit <- the user's call; _diagnose and run_psis are one deeper)
    if approx.n_skipped:
        warnings.warn(
            f"{approx.n_skipped} of {approx.steps} steps had a non-finite log density or gradient and "
            f"were skipped (step size halved {approx.lr_reductions} times). {approx.message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    if approx.divergences:
        warnings.warn(
            f"the ELBO fell away from its best {approx.divergences} time(s) (q's scale running away on a "
            "heavy-tailed posterior, or too large a step size); each time the fit went back to its best "
            f"iterate and halved the step size (now {result.final_lr:.3g}). {approx.message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    if approx.interrupted:
        warnings.warn(f"fit {approx.message}; returning the state reached so far", ConvergenceWarning, stacklevel=3)
    elif not approx.converged and opts.tol > 0 and not warned:
        warnings.warn(
            f"fit did not converge in {approx.steps} steps ({approx.message}); "
            "increase steps or lr, or pass tol=None to silence this",
            ConvergenceWarning,
            stacklevel=3,
        )
    if psis_draws and not approx.interrupted:  # the PSIS diagnostic (k-hat, ESS), warns if k-hat > 0.7
        approx.run_psis(psis_draws, threads=opts.threads, _stacklevel=4, _escalate=True)


def _interrupted_result(phi0: np.ndarray, message: str) -> Any:
    """What _core.fit returns, for a fit interrupted before its loop started."""
    return SimpleNamespace(
        phi=np.array(phi0),
        elbo=[],
        elbo_step=[],
        steps=0,
        converged=False,
        converged_step=-1,
        averaged_steps=0,
        interrupted=True,
        skipped=0,
        lr_reductions=0,
        divergences=0,
        message=message,
        drifting=[],
        growing=[],
        shrinking=[],
        refinements=0,
        error_mean=float("nan"),
        error_scale=float("nan"),
    )


def _keep_going(answer: Any) -> Optional[bool]:
    """The callback's answer as the C++ monitor takes it (None or a real bool). Anything else is
    refused here, naming the callback: the error propagates from fv.fit once the loop stops."""
    if answer is None or isinstance(answer, (bool, np.bool_)):
        return None if answer is None else bool(answer)
    raise TypeError(f"callback must return None, True or False, got {answer!r}")


# exp overflows beyond this
_LOG_MAX = math.log(np.finfo(np.float64).max)


def _diagnose(approx: Approximation, result: Any, laplace: Optional[Laplace], check: bool) -> bool:
    """Checks the fit's outcome for what the loop cannot judge by itself, sets ``converged`` to False
    and warns where it fails: non-finite results, an unidentified or improper posterior (a flat
    direction at the mode, or, unless ``check`` is off (tol=None), q's scale still growing at the
    end), and no proper mode. Returns whether it warned that the fit has not converged."""
    model = approx.model
    warned = False
    # name the coordinates the loop could only count
    for what, coordinates in (
        ("q's mean still moving along", result.drifting),
        ("q's scale still growing along", result.growing),
        ("q's scale still shrinking along", result.shrinking),
    ):
        if len(coordinates):
            approx.message = approx.message.replace(
                f"{what} {len(coordinates)} coordinate(s)",
                f"{what} {name_list(coordinate_names(model, list(coordinates)))}",
            )

    def unconverged(reason: str):
        if approx.converged:
            approx.message = f"{reason} (the stopping rule alone was met at step {approx.converged_step})"
        else:
            approx.message = f"{reason}; {approx.message}"
        approx.converged, approx.converged_step = False, None

    # Non-finite results, or moments that overflow once mapped to the constrained space.
    mu, log_sd = approx.phi[: model.dim], np.asarray(result.log_sd)
    overflow = []
    for p in model:
        sl = slice(p.offset, p.offset + p.free_size)
        m, ls = mu[sl], log_sd[sl]
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(ls))):
            overflow.append(f"{p.name} (q's mean or sd is not finite)")
        elif (
            p.transform is None
            and (math.isfinite(p.lower) != math.isfinite(p.upper))
            and np.any(m + 0.5 * np.exp(2 * np.minimum(ls, 300)) > _LOG_MAX)
        ):
            # one bound: a log-normal, whose mean exp(m + s^2 / 2) is beyond the largest double
            overflow.append(f"{p.name} (its mean exp(m + s^2/2) under q overflows)")
    if overflow:
        unconverged("q is not finite in the constrained space for " + ", ".join(overflow))
        warnings.warn(
            f"the fit's result is not usable: {approx.message}. The posterior may be improper "
            "along these parameters (give them proper priors), or the fit diverged (try a smaller lr or "
            "init_scale)",
            ConvergenceWarning,
            stacklevel=4,
        )
        warned = True

    # The mode search found a direction along which the log density is flat: unidentified.
    if laplace is not None and laplace.kind == "flat":
        names = name_list(laplace.parameters)
        unconverged(f"the posterior is improper or unidentified along {names}")
        warnings.warn(
            f"the posterior may be improper or unidentified: {laplace.message}. A Gaussian approximation "
            f"of it means nothing (its sds along that direction are arbitrary); give {names} proper priors, "
            "or remove the redundancy (fix one of them, or reparameterise)",
            ImproperPosteriorWarning,
            stacklevel=4,
        )
        return True
    # q's scale still moving the same way, block after block, when the fit ran out of steps:
    # growing (an improper or unidentified posterior, or too few steps), or shrinking (q collapsing
    # onto a point: the neck of a funnel, or a "mode" where the log density is unbounded).
    scale_words = {
        "growing": (
            "The posterior may be improper or unidentified along them (give them proper priors, check that "
            "the data determine them); if it is not, the fit needs more steps (or a smaller lr).",
            ImproperPosteriorWarning,
        ),
        "shrinking": (
            "Either the fit needs more steps (q is still narrowing towards a very small posterior sd: "
            "preconditioning, the default, avoids this) or q is collapsing onto a point (the neck of a "
            "funnel, or a log density that grows without bound as a scale parameter goes to 0), where its "
            "sds mean nothing: a non-centred parameterisation, or a prior that keeps the scale parameter "
            "away from 0, usually helps.",
            ConvergenceWarning,
        ),
    }
    for way, (advice, category) in scale_words.items():
        coordinates = list(getattr(result, way)) if check and not approx.converged and not approx.interrupted else []
        if coordinates:
            names = name_list(coordinate_names(model, coordinates))
            warnings.warn(
                f"fit did not converge in {approx.steps} steps: q's scale along {names} kept {way} to the end. "
                f"{advice} {approx.message}",
                category,
                stacklevel=4,
            )
            warned = True
    # No proper mode (a funnel, a saddle, or an improper posterior with a tilt): the fit ran without
    # preconditioning; whether it converged is the stopping rule's verdict, which sees q still
    # moving if the posterior is improper. (A funnel is proper and can be fitted: no verdict here.)
    if laplace is not None and not laplace.ok and laplace.kind != "flat":
        names = name_list(laplace.parameters) or "the parameters"
        warnings.warn(
            f"the mode search found no proper mode ({laplace.message}), so the fit ran without "
            f"preconditioning. If the posterior is improper (a flat or improper prior on {names} that the "
            "data do not pin down), give them proper priors; if it is a funnel (a hierarchical scale), a "
            "non-centred parameterisation fits much better",
            ConvergenceWarning,
            stacklevel=4,
        )
    return warned


def _resolve_family(family: Optional[str], method: Optional[str]) -> str:
    if method is not None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
        from_method = _METHODS[method]
        if family is not None and family != from_method:
            raise ValueError(f"family={family!r} contradicts method={method!r}")
        return from_method
    if family is None:
        return "meanfield"
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    return family


def _resolve_rank(rank: Optional[int], family: str, dim: int) -> int:
    """The rank to build the family with; 0 for families that have none."""
    if family != "lowrank":
        if rank is not None:
            raise ValueError(f"rank applies only to family='lowrank', not to family={family!r}")
        return 0
    if rank is None:
        return min(dim, max(1, round(math.sqrt(dim))))
    rank = int_setting(rank, "rank", 1)
    if rank > dim:
        raise ValueError(f"rank must be <= the number of unconstrained parameters ({dim}), got {rank}")
    return rank


def _laplace_factor(covariance: np.ndarray, diagonal: np.ndarray, rank: int, scale: float) -> np.ndarray:
    """The low-rank family's starting B in whitened coordinates u (zeta = mode + diag(c) u), from
    the Laplace covariance: its r leading eigenvectors v_k in u, scaled so that the start's
    variance along v_k, scale^2 + b_k^2, is the Laplace variance lambda_k (at least a tenth of
    scale, so that no column starts at zero, see LowRankGaussian::initialise). The diagonal
    preconditioner leaves the posterior's correlations in u; B must capture them, and from the
    default small start a strongly correlated posterior (lambda_k ~ 1e5 along a ridge) would take
    Adam tens of thousands of steps to stretch B that far. Returned column-major, as phi stores B."""
    cov_u = covariance / np.outer(diagonal, diagonal)
    d = cov_u.shape[0]
    try:
        import scipy.linalg

        lam, vec = scipy.linalg.eigh(cov_u, subset_by_index=[d - rank, d - 1])
    except ImportError:  # pragma: no cover - scipy is a dependency of preconditioning anyway
        lam, vec = np.linalg.eigh(cov_u)
        lam, vec = lam[d - rank :], vec[:, d - rank :]
    b = vec[:, ::-1] * np.sqrt(np.maximum(lam[::-1] - scale**2, (0.1 * scale) ** 2))
    return b.ravel(order="F")


def _initial_mean(model: Model, init: Dict[str, Any]) -> np.ndarray:
    if not isinstance(init, dict):
        raise TypeError("init must be a dict mapping parameter names to values, or an earlier fit (an Approximation)")
    values = {}
    for p in model:
        if p.name in init:
            values[p.name] = init[p.name]
        else:  # the point that maps to unconstrained 0
            values[p.name] = model._split_values(model._core.values(np.zeros((model.dim, 1)))[:, 0])[p.name]
    unknown = set(init) - set(model.params)
    if unknown:
        raise ValueError(f"init names unknown parameters: {sorted(unknown)}")
    return model.unconstrain(values)


# The progress bar redraws at most this often (tqdm's mininterval), so that a fit's log stays
# small when stderr goes to a file: a few lines per second, whatever the fit's speed.
_PROGRESS_SECONDS = 0.5


def _progress_bar(total: int):
    """A tqdm bar (tqdm.auto: a widget in notebooks, text elsewhere), redrawn by time only."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install tqdm (or fastvi[progress])") from None
    return tqdm(total=total, desc="fastvi", unit="step", mininterval=_PROGRESS_SECONDS)
