"""Fitting a Gaussian approximation, and the approximation it returns."""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional

import numpy as np

from . import _core
from . import psis as _psis
from ._threads import warn_if_forked
from ._validate import INT64_END, bool_setting, int_setting, seed_setting, threads_setting
from .laplace import Laplace, coordinate_names, find_laplace, name_list
from .model import Model
from .status import FitStatus, status_of

_FAMILIES = ("meanfield", "fullrank", "lowrank")
_DETERMINISTIC_DRAWS = 10_000
_METHODS = {"advi": "meanfield", "meanfield": "meanfield", "fullrank_advi": "fullrank", "fullrank": "fullrank"}


class ConvergenceWarning(UserWarning):
    """The fit stopped before its convergence rule was met, skipped non-finite steps, found no
    proper mode to precondition with, or produced a result that is not finite."""


class ImproperPosteriorWarning(ConvergenceWarning):
    """The posterior looks improper or unidentified (a direction along which the log density is
    flat, or q's scale growing without end): no Gaussian approximation of it means anything."""


class PosteriorShapeWarning(ConvergenceWarning):
    """PSIS k-hat > 0.7: q is a poor approximation of the posterior (see ``fit.psis``)."""


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _float_setting(value: Any, name: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {value!r}")
    return out


class Approximation:
    """A fitted Gaussian approximation q, in the model's unconstrained space.

    ``mean()`` and ``std()`` are moments of the constrained parameters under q (exact for
    unconstrained parameters, by Gauss-Hermite quadrature of each marginal otherwise);
    ``sample()`` draws from q and maps the draws to the constrained space.

    An approximation can be pickled (with its model) and copied; ``copy.copy`` and
    ``copy.deepcopy`` both copy the model too. If a parameter or factor is added to the model after
    the fit, sampling and moments raise RuntimeError: refit.
    """

    def __init__(self, model: Model, family: _core.Family, result: Any, options: Dict[str, Any]):
        self.model = model
        self._family = family
        self.family: str = family.name
        self.rank: Optional[int] = family.rank  # columns of B for the lowrank family, else None
        self.phi: np.ndarray = np.array(result.phi)
        self.elbo: np.ndarray = np.array(result.elbo)  # windowed ELBO estimates
        self.elbo_steps: np.ndarray = np.array(result.elbo_step, dtype=np.int64)
        self.steps: int = result.steps
        self.converged: bool = result.converged
        self.converged_step: Optional[int] = result.converged_step if result.converged else None
        self.averaged_steps: int = result.averaged_steps  # iterates averaged into the result
        self.interrupted: bool = result.interrupted
        self.n_skipped: int = result.skipped  # steps whose log density or gradient was not finite
        self.lr_reductions: int = result.lr_reductions
        # times the ELBO fell away from its best and the fit went back there with half the step size
        self.divergences: int = result.divergences
        # Step-size refinements after the first convergence, and the estimated remaining error of q
        # (largest |mean error| / q's sd and |log sd error| over the unconstrained coordinates;
        # None until two step sizes were compared): see fit()'s ``precision``.
        self.refinements: int = result.refinements
        self.error_mean: Optional[float] = None if np.isnan(result.error_mean) else float(result.error_mean)
        self.error_scale: Optional[float] = None if np.isnan(result.error_scale) else float(result.error_scale)
        self.message: str = result.message
        self.options = dict(options)
        # the mode search behind preconditioning (None if precondition=None)
        self.laplace: Optional[Laplace] = None
        # PSIS diagnostic (fit's psis_draws; None when skipped): Pareto k-hat, importance ESS, details
        self.psis: Optional[_psis.PSIS] = None
        self._structure = model._structure()  # what the model was when fitted, see _check_model

    def _check_model(self) -> None:
        """phi describes the model as it was at fit time: a parameter added since would make the
        draws the wrong length, a factor a different posterior."""
        now = self.model._structure()
        if now != self._structure:
            (d0, p0, f0), (d1, p1, f1) = self._structure, now
            raise RuntimeError(
                f"the model changed after this fit (dim was {d0}, now {d1}; {p0} parameters, now "
                f"{p1}; {f0} factors, now {f1}): refit"
            )

    # ---- copies and pickling ------------------------------------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        fam = state.pop("_family")  # a C++ object: rebuilt from what fit.py built it from
        state["_family_spec"] = (fam.name, fam.dim, fam.rank or 0)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state = dict(state)
        name, dim, rank = state.pop("_family_spec")
        self.__dict__.update(state)
        self._family = _core.Family(name, dim, rank)

    def __copy__(self) -> Approximation:
        # a shallow copy would share the model, which can still be changed after the fit
        return copy.deepcopy(self)

    # ---- unconstrained moments ----------------------------------------------------------------

    def unconstrained_mean(self) -> np.ndarray:
        return np.array(self._family.mean(self.phi))

    def unconstrained_cov(self) -> np.ndarray:
        return np.array(self._family.covariance(self.phi))

    # ---- PSIS diagnostic ----------------------------------------------------------------------

    @property
    def khat(self) -> Optional[float]:
        """Pareto k-hat of the PSIS diagnostic (None if it was not run): below 0.5 q is close to the
        posterior; 0.5 to 0.7 q is off but the PSIS-corrected results (``importance="psis"``) are
        usually better; above 0.7 neither is reliable. See ``fastvi.psis``."""
        return None if self.psis is None else self.psis.khat

    @property
    def status(self) -> FitStatus:
        """What this fit can be trusted for: ``optimisation`` (converged, with the refinement's error
        estimate), ``shape`` (PSIS k-hat: good / fair / poor / unknown), ``corrected`` (PSIS
        results available and reliable) and ``use`` ("q", "psis" or "none"); ``print(fit.status)``
        says it in words. See ``fastvi.status``."""
        return status_of(self)

    @property
    def ess(self) -> Optional[float]:
        """Effective sample size of the PSIS draws' smoothed weights (None if PSIS was not run)."""
        return None if self.psis is None else self.psis.ess

    def run_psis(
        self,
        draws: int = _psis.DEFAULT_DRAWS,
        *,
        seed: Optional[int] = None,
        threads: Optional[int] = None,
        _stacklevel: int = 2,
        _escalate: bool = False,
    ) -> _psis.PSIS:
        """Runs (again) the PSIS diagnostic that ``fv.fit`` runs after every fit, with ``draws``
        draws from q (seed: by default derived from the fit's), stores it in ``psis`` (``khat``,
        ``ess``) and returns it; warns with a PosteriorShapeWarning when k-hat > 0.7."""
        draws = int_setting(draws, "draws", 1, 2**32)
        seed = None if seed is None else seed_setting(seed)
        threads = self.options.get("threads", 1) if threads is None else threads_setting(threads)
        self._check_model()
        self.psis = _psis.diagnose(self, draws, threads, seed)
        if _escalate and _psis.KHAT_GOOD < self.psis.khat <= _psis.KHAT_BAD:
            # k-hat's sd at M = 1000 is ~0.14 and it is biased low on heavy tails: near the 0.7
            # line decide with 4x the draws (eight schools centred, full-rank: 0.70 from 1000
            # draws, 0.83-0.94 from 4000). The draws are indexed, so the first M are the same.
            self.psis = _psis.diagnose(self, _psis.ESCALATE * draws, threads, seed)
        if not self.psis.khat <= _psis.KHAT_BAD and not math.isnan(self.psis.khat) and not _psis.tails_only(self.psis):
            warnings.warn(_psis.khat_message(self.psis, self.family), PosteriorShapeWarning, stacklevel=_stacklevel)
        return self.psis

    def _need_psis(self, what: str) -> _psis.PSIS:
        if self.psis is None:
            raise ValueError(
                f"{what} needs the PSIS draws, and this fit has none (psis_draws=0, or the fit was "
                f"interrupted): call fit.run_psis() first"
            )
        if self.psis.ess == 0:
            raise FloatingPointError(
                f"{what}: no PSIS draw has a finite importance ratio "
                f"({self.psis.note}); there is nothing to correct q with"
            )
        return self._corrected_psis()

    def _corrected_psis(self) -> _psis.PSIS:
        """The PSIS result behind the corrected results: the diagnostic's own if its ESS is at least
        _psis.CORRECTED_ESS, else PSIS over more draws of the same stream (at most
        _psis.CORRECTED_MAX_DRAWS), computed once and kept. The diagnostic's 1,000 draws are enough
        to judge q but not to correct it: at ESS 300 (breast-cancer logistic regression, full-rank,
        k-hat 0.3) the corrected means' Monte Carlo error alone reached 0.13 sd over 31 coordinates,
        twice q's own error."""
        result = self.psis
        if result is None:
            raise ValueError("the corrected results need the PSIS draws: call fit.run_psis() first")
        if result.ess >= _psis.CORRECTED_ESS or result.draws >= _psis.CORRECTED_MAX_DRAWS:
            return result
        cached = self.__dict__.get("_psis_corrected")
        if cached is not None and cached[0] == (result.seed, result.draws, result.khat):
            return cached[1]
        m = int(min(_psis.CORRECTED_MAX_DRAWS, math.ceil(result.draws * _psis.CORRECTED_ESS / max(result.ess, 1.0))))
        corrected = _psis.diagnose(self, m, self.options.get("threads", 1), result.seed)
        self._psis_corrected = ((result.seed, result.draws, result.khat), corrected)
        return corrected

    @staticmethod
    def _importance(importance: Optional[str]) -> Optional[str]:
        if importance not in (None, "psis"):
            raise ValueError(f"importance must be None (plain q) or 'psis', got {importance!r}")
        return importance

    # ---- constrained summaries ----------------------------------------------------------------

    def _marginal_moments(self):
        """Mean and sd of every constrained coordinate under q's Gaussian marginals."""
        mu = self.unconstrained_mean()
        sd = np.sqrt(np.diag(self.unconstrained_cov()))
        mean, std = mu.copy(), sd.copy()
        nodes, weights = np.polynomial.hermite_e.hermegauss(64)
        weights = weights / weights.sum()
        for p in self.model:
            sl = slice(p.offset, p.offset + p.size)
            m, s = mu[sl], sd[sl]
            if math.isfinite(p.lower) and math.isfinite(p.upper):
                # logit-normal: no closed form, but bounded, so quadrature is safe and accurate.
                z = m[:, None] + s[:, None] * nodes[None, :]
                theta = p.lower + (p.upper - p.lower) * _expit(z)
                mean[sl] = theta @ weights
                std[sl] = np.sqrt(np.maximum(((theta - mean[sl, None]) ** 2) @ weights, 0.0))
            elif math.isfinite(p.lower) or math.isfinite(p.upper):
                # log-normal moments, in log space so that only a truly huge result becomes inf
                with np.errstate(over="ignore", divide="ignore"):
                    log_m = m + 0.5 * s**2
                    shift = np.exp(log_m)
                    std[sl] = np.exp(log_m + 0.5 * np.log(np.expm1(s**2)))
                mean[sl] = p.lower + shift if math.isfinite(p.lower) else p.upper - shift
        return mean, std

    def _deterministic_moments(self):
        """Monte Carlo moments of the deterministics (no closed form in general), from a fixed
        stream of draws so that repeated calls agree."""
        if not self.model.deterministics:
            return {}, {}
        draws = self.sample(_DETERMINISTIC_DRAWS, seed=0)
        names = self.model.deterministics
        return ({n: draws[n].mean(axis=0) for n in names}, {n: draws[n].std(axis=0, ddof=1) for n in names})

    def mean(self, importance: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Mean under q of each parameter (constrained space, shaped like the parameter) and of
        each deterministic (Monte Carlo over 10,000 draws). Raises FloatingPointError, naming the
        parameter, where a mean is not a finite number (q too wide for the constraint's range).

        importance="psis": the self-normalised importance-sampling estimate of the *posterior*
        mean from the PSIS draws and their smoothed weights (``psis``), correcting q. Use it when
        0.5 < k-hat <= 0.7; below 0.5 q's own moments are fine (and have no Monte Carlo error),
        above 0.7 neither is reliable. Its Monte Carlo error is about sd / sqrt(ESS)."""
        self._check_model()
        if self._importance(importance) == "psis":
            return self._finite(
                _psis.weighted_moments(self, self._need_psis("mean(importance='psis')"))[0], "mean(importance='psis')"
            )
        out = self.model._split_zeta(self._marginal_moments()[0])
        out.update(self._deterministic_moments()[0])
        return self._finite(out, "mean()")

    def std(self, importance: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Standard deviation under q of each parameter and deterministic (as for mean(); with
        importance="psis", the self-normalised PSIS estimate of the posterior sd)."""
        self._check_model()
        if self._importance(importance) == "psis":
            return self._finite(
                _psis.weighted_moments(self, self._need_psis("std(importance='psis')"))[1], "std(importance='psis')"
            )
        out = self.model._split_zeta(self._marginal_moments()[1])
        out.update(self._deterministic_moments()[1])
        return self._finite(out, "std()")

    def _finite(self, values: Dict[str, np.ndarray], what: str) -> Dict[str, np.ndarray]:
        """values, if every entry is finite; else a FloatingPointError that names the entries and
        says why. fastvi never hands out inf or NaN as a result: a q whose log-normal mean
        overflows, or a fit that never moved from a non-finite region, is not an answer."""
        bad = {name: v for name, v in values.items() if not np.all(np.isfinite(v))}
        if not bad:
            return values
        mu, sd = self.unconstrained_mean(), np.sqrt(np.abs(np.diag(self.unconstrained_cov())))
        parts = []
        for name in bad:
            p = self.model.params.get(name)
            if p is None:
                parts.append(f"{name!r} (a deterministic)")
                continue
            sl = slice(p.offset, p.offset + p.size)
            parts.append(
                f"{name!r} (q's unconstrained mean up to {np.max(np.abs(mu[sl])):.3g}, sd up to {np.max(sd[sl]):.3g})"
            )
        state = "converged" if self.converged else f"did not converge: {self.message}"
        raise FloatingPointError(
            f"{what} is not finite for {', '.join(parts)}: q is too wide or too far out for the constrained value "
            f"to be a finite float64. The fit {state}. Check the model (a missing prior or an improper posterior), "
            f"or refit with better initial values (init=...)."
        )

    def sample(self, n: int, seed: int = 0, importance: Optional[str] = None) -> Dict[str, np.ndarray]:
        """``n`` draws from q, as a dict of constrained arrays with a leading draw axis.

        importance="psis": ``n`` draws resampled from the M PSIS draws with their smoothed weights
        (the diagnostic's draws, or more of them when their ESS is below 2,000: see
        ``fastvi.psis.CORRECTED_ESS``), an approximate sample from the posterior rather than from q. The
        resampling is systematic: draw s is taken floor(n w_s) or ceil(n w_s) times (n w_s on
        average, so the resampled draws' moments are unbiased for the weighted ones). When n w_s
        <= 1 for every draw, which is the case for n <= M / 4 or so unless the ESS is low, no draw
        is taken twice (a sample without replacement); otherwise the heavy draws repeat, and a
        sample of n has at most about ESS distinct draws' worth of information: for more, refit
        with a larger ``psis_draws`` (or call ``run_psis(draws)``). Use it when 0.5 < k-hat <=
        0.7; below 0.5 plain q is as good and has no duplicates, above 0.7 neither is reliable.
        """
        n = int_setting(n, "n", 1)
        seed = seed_setting(seed)
        self._check_model()
        if self._importance(importance) == "psis":
            return self._psis_sample(n, seed)
        # the largest array made holds n draws of every value-matrix row (or of the noise)
        rows = max(self.model._core.rows, self._family.noise_dim, 1)
        size = n * rows * 8
        if n > 2**32:  # the generator's draw counter is 32 bits: draw j + 2**32 would repeat draw j
            raise ValueError(
                f"n = {n} draws in one call: at most 2**32 (the generator's draw counter is 32 bits); "
                f"draw fewer at a time, with different seeds"
            )
        if size >= INT64_END:
            raise ValueError(
                f"n = {n} draws of {rows} values would take {size} bytes, more than an array can hold; "
                f"draw fewer at a time"
            )
        try:
            zeta = self._family.sample(self.phi, n, seed)
            return self._finite(self.model._split_values(self.model._core.values(zeta).T), f"sample({n})")
        except MemoryError:
            raise MemoryError(
                f"not enough memory for n = {n} draws of {rows} values ({size / 2**30:.3g} GiB per "
                f"copy); draw fewer at a time"
            ) from None

    def _psis_sample(self, n: int, seed: int) -> Dict[str, np.ndarray]:
        result = self._need_psis(f"sample({n}, importance='psis')")
        idx = _psis.resample(result, n, seed)
        values = np.empty((self.model._core.rows, n))
        for first, zeta in _psis.draws(self, result.draws, _psis._seed_of(result)):
            hit = (idx >= first) & (idx < first + zeta.shape[1])
            if hit.any():
                values[:, hit] = self.model._core.values(np.ascontiguousarray(zeta[:, idx[hit] - first]))
        return self._finite(self.model._split_values(values.T), f"sample({n}, importance='psis')")

    def __repr__(self) -> str:
        state = (
            f"converged at step {self.converged_step}"
            if self.converged
            else ("interrupted" if self.interrupted else "not converged")
        )
        if self.error_mean is not None:  # the refinement's estimate of the distance to the optimum
            state += f" (est. error {self.error_mean:.2g} sd, {self.error_scale:.2g} log sd)"

        elbo = f"{self.elbo[-1]:.6g}" if self.elbo.size else "n/a"
        rank = f" rank={self.rank}" if self.rank is not None else ""
        return (
            f"<Approximation family={self.family!r}{rank} dim={self.model.dim} steps={self.steps} "
            f"{state} elbo={elbo} skipped={self.n_skipped}{_psis.repr_part(self.psis)}>"
        )


def fit(
    model: Model,
    family: Optional[str] = None,
    *,
    method: Optional[str] = None,
    rank: Optional[int] = None,
    steps: int = 30_000,
    draws: int = 1,
    lr: float = 0.01,
    gradient: str = "auto",
    seed: int = 0,
    tol: Optional[float] = 1e-5,
    tol_abs: float = 0.05,
    eval_every: int = 100,
    patience: int = 2,
    average: bool = True,
    precision: Optional[float] = 0.05,
    precondition: Optional[str] = "auto",
    init: Optional[Dict[str, Any]] = None,
    init_scale: Optional[float] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    callback: Optional[Callable[[int, int, float, int], Optional[bool]]] = None,
    psis_draws: int = _psis.DEFAULT_DRAWS,
) -> Approximation:
    """Fits a Gaussian approximation to the posterior of ``model`` by maximising the ELBO.

    family: ``"meanfield"`` (default), ``"fullrank"`` or ``"lowrank"`` (covariance
        diag(d)^2 + B B^T with B of ``rank`` columns: correlations at O(D rank) cost per draw);
        ``method="advi"`` / ``"fullrank_advi"`` is accepted as a PyMC-style alias.
    rank: columns of B for ``family="lowrank"``, 1 <= rank <= the number of unconstrained
        parameters D; default round(sqrt(D)) (as Pyro's and NumPyro's low-rank guides). Only for
        the lowrank family. Meant for rank well below D: near D the best (d, B) is not unique
        (roughly once rank > D - sqrt(2 D)), the averaged iterates can come out with sds several %
        (up to ~10 %) too small at the default lr, and ``"fullrank"`` is the better choice anyway.
    steps: maximum Adam steps. draws: Monte Carlo draws per step, evaluated as one batch.
    lr: Adam step size.
    gradient: ``"stl"`` (sticking the landing: zero variance when q matches the posterior),
        ``"closed_form"`` (closed-form entropy gradient) or ``"auto"`` (default): STL, except for a
        full-rank fit without preconditioning, where STL's path term L^-T eps explodes while L is
        still far from the posterior's and the fit can diverge (seen on a D = 30 regression).
    seed: the same seed gives the same result, whatever the thread count.
    tol, tol_abs: the stopping rule (README, "How it works"). Every 5 windows of ``eval_every``
        steps (a block) the fit is settled when the block mean of the ELBO changed from the block
        before, and from the block 4 blocks back, by less than ``max(tol_abs, tol * improvement)``
        per block (``improvement``: the climb since the first window) or by less than twice its
        Monte Carlo standard error, and q has stopped moving: no coordinate of its mean moved by
        more than 0.5 of q's sd per block the same way twice (or 1 sd once), no log sd changed by
        more than 0.01 the same way 3 blocks running. ``patience`` settled checks running make the
        fit converged, and the averaging phase confirms it (or withdraws it, if q's means or
        scales trend over the phase). Adding a constant to the log density changes nothing in the
        rule. ``tol=None`` or 0 runs all ``steps``. An unconverged fit warns
        (``ConvergenceWarning``); so does a posterior that looks improper or unidentified (a flat
        direction at the mode, or q's scale still growing at the end: ``ImproperPosteriorWarning``,
        with ``converged`` False) and a result that is not finite in the constrained space.
    precondition: ``"auto"`` (default) first finds the posterior mode and the Hessian there and runs
        the fit in coordinates whitened by that Laplace approximation (full Cholesky for full-rank,
        diagonal otherwise), which makes badly scaled and strongly correlated posteriors as easy as
        well-conditioned ones; models without a proper mode are fitted without it (``fit.laplace``
        says what happened). ``None`` turns it off. The low-rank family also starts B along the
        Laplace covariance's leading directions (when the full Hessian is formed, D <= 2000).
    average: once converged, keep going for an averaging phase (as long as convergence took, and
        at least 4,000 draws) and return the mean of its iterates: this removes the jitter a
        constant step size leaves around the optimum. An unconverged fit averages its last two
        windows.
    precision: what "converged" promises (default 0.05). A constant step size leaves the averaged
        q off the optimum by a bias that grows with ``lr`` (0.08 sd on a 31-coefficient logistic
        regression at lr = 0.01, the same at every seed), so after the averaging phase the fit
        restarts from the averaged q with a 4x smaller step size, converges and averages again,
        and estimates the remaining error from the change between the two averages (bias taken
        as proportional to the step size): ``fit.error_mean`` (largest |mean error| in q's sds over
        the unconstrained coordinates) and ``fit.error_scale`` (largest |log sd error|). It
        refines up to 3 times; ``converged`` is True only when both are below ``precision``.
        ``None``: no refinement, no error estimate (fastvi 0.1's behaviour: faster, less exact).
    init: constrained starting values (dict by parameter name; others start at 0 in the
        unconstrained space): the start of the mode search, or of q's mean without preconditioning.
    init_scale: starting standard deviation of q, in the optimiser's coordinates (default 1 when
        preconditioned, i.e. the Laplace approximation's scale; 0.1 otherwise).
    threads: OpenMP threads for large kernels (default: OMP_NUM_THREADS or all cores).
    progress: show a tqdm progress bar. callback: called as ``callback(step, total, elbo,
        skipped)`` every ``eval_every`` steps; it returns None or True to go on, False to stop the
        fit (anything else is a TypeError).

    psis_draws: after the fit, draw this many points from q and run the PSIS diagnostic on them
        (``fit.khat``, ``fit.ess``, ``fit.psis``; ``fastvi.psis`` explains it), warning with a
        PosteriorShapeWarning when k-hat > 0.7; 0 skips it. Its cost is one batched log density
        evaluation of psis_draws points (3-5 % of a small fit's time at the default; bench/README.md).
        A k-hat between 0.5 and 0.7 is recomputed from 4 x psis_draws draws (k-hat's sampling sd
        is ~0.14 at 1,000 draws, and a fit near the 0.7 line deserves a firmer answer).
        The draws' seed is derived from ``seed``.

    Ctrl-C stops the fit and returns the approximation reached so far (``interrupted`` is True;
    PSIS is skipped).

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
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastvi.Model, got {type(model).__name__}")
    if model.dim == 0:
        raise ValueError("model has no parameters to fit: declare some with model.param")
    family_name = _resolve_family(family, method)
    rank = _resolve_rank(rank, family_name, model.dim)
    opts = _core.FitOptions()
    opts.steps = int_setting(steps, "steps", 1)
    opts.draws = int_setting(draws, "draws", 1)
    opts.lr = _float_setting(lr, "lr")
    if gradient not in ("auto", "stl", "closed_form"):
        raise ValueError(f"gradient must be 'auto', 'stl' or 'closed_form', got {gradient!r}")
    opts.seed = seed_setting(seed)
    opts.tol = 0.0 if tol is None else _float_setting(tol, "tol", positive=False)
    if opts.tol < 0:
        raise ValueError(f"tol must be >= 0 or None, got {tol!r}")
    opts.tol_abs = _float_setting(tol_abs, "tol_abs", positive=False)
    if opts.tol_abs < 0:
        raise ValueError(f"tol_abs must be >= 0, got {tol_abs!r}")
    if precondition not in ("auto", None):
        raise ValueError(f"precondition must be 'auto' or None, got {precondition!r}")
    opts.eval_every = int_setting(eval_every, "eval_every", 1)
    opts.patience = int_setting(patience, "patience", 1)
    opts.average = bool_setting(average, "average")
    if precision is None:
        opts.refine_levels = 0
    else:
        opts.precision = _float_setting(precision, "precision")
    opts.threads = _core.max_threads() if threads is None else threads_setting(threads)
    psis_draws = int_setting(psis_draws, "psis_draws", 0, 2**32)
    progress = bool_setting(progress, "progress")
    warn_if_forked(opts.threads)
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable or None")

    fam = _core.Family(family_name, model.dim, rank)
    start = np.zeros(model.dim) if init is None else _initial_mean(model, init)
    precond = _core.Preconditioner()
    laplace = None
    if precondition == "auto":
        # the low-rank family uses the full Laplace covariance (if formed) to start B, see below
        try:
            laplace = find_laplace(model, start, full=family_name in ("fullrank", "lowrank"), threads=opts.threads)
        except KeyboardInterrupt:
            # Ctrl-C during the mode search: return, as Ctrl-C in the loop does, the state reached
            # so far, here the starting q (no optimisation step was taken).
            laplace = Laplace(False, "interrupted by Ctrl-C during the mode search")
            phi0 = fam.initialise(start, 0.1 if init_scale is None else _float_setting(init_scale, "init_scale"))
            result = _interrupted_result(
                phi0, "interrupted during the mode search (preconditioning), before any optimisation step"
            )
            approx = Approximation(
                model,
                fam,
                result,
                {"family": family_name, "seed": opts.seed, "precondition": precondition, "threads": opts.threads},
            )
            approx.laplace = laplace
            warnings.warn(
                f"fit {approx.message}; returning the starting approximation", ConvergenceWarning, stacklevel=2
            )
            return approx
        if laplace.ok and laplace.mode is not None and laplace.hessian_diag is not None:
            precond.shift = laplace.mode
            if family_name == "fullrank" and laplace.covariance is not None:
                precond.lower = np.linalg.cholesky(laplace.covariance)
            else:  # mean-field and low-rank stay in their family only under a diagonal C
                precond.diagonal = 1.0 / np.sqrt(laplace.hessian_diag)
    whitened = laplace is not None and laplace.ok
    if gradient == "auto":
        gradient = "closed_form" if family_name == "fullrank" and not whitened else "stl"
    opts.gradient = getattr(_core.GradientEstimator, gradient)
    init_scale = (1.0 if whitened else 0.1) if init_scale is None else _float_setting(init_scale, "init_scale")
    phi0 = fam.initialise(np.zeros(model.dim) if whitened else start, init_scale)
    if family_name == "lowrank" and laplace is not None and whitened and laplace.covariance is not None:
        phi0[2 * model.dim :] = _laplace_factor(laplace.covariance, precond.diagonal, rank, init_scale)

    bar = _progress_bar(opts.steps) if progress else None

    def monitor(step: int, total: int, elbo: float, skipped: int) -> Optional[bool]:
        if bar is not None:
            bar.n = step
            bar.set_postfix(elbo=f"{elbo:.4g}", refresh=False)
            bar.refresh()
        return _keep_going(callback(step, total, elbo, skipped)) if callback is not None else None

    try:
        result = _core.fit(model._core, fam, phi0, opts, monitor if (bar or callback) else None, precond)
    except MemoryError as err:
        # C++ reports std::bad_alloc bare: say which settings size the fit's memory
        raise MemoryError(
            f"fit ran out of memory ({err}) with steps={opts.steps}, draws={opts.draws} and "
            f"{model.dim} unconstrained parameters: reduce steps or draws"
        ) from err
    finally:
        if bar is not None:
            bar.close()
    approx = Approximation(
        model,
        fam,
        result,
        {
            "family": family_name,
            "steps": opts.steps,
            "draws": opts.draws,
            "lr": opts.lr,
            "gradient": gradient,
            "seed": opts.seed,
            "rank": rank if family_name == "lowrank" else None,
            "tol": opts.tol,
            "tol_abs": opts.tol_abs,
            "eval_every": opts.eval_every,
            "patience": opts.patience,
            "average": opts.average,
            "precision": precision,
            "precondition": precondition,
            "init_scale": init_scale,
            "threads": opts.threads,
        },
    )
    approx.laplace = laplace
    warned = _diagnose(approx, result, laplace, opts.tol > 0)
    if approx.n_skipped:
        warnings.warn(
            f"{approx.n_skipped} of {approx.steps} steps had a non-finite log density or gradient and "
            f"were skipped (step size halved {approx.lr_reductions} times). {approx.message}",
            ConvergenceWarning,
            stacklevel=2,
        )
    if approx.divergences:
        warnings.warn(
            f"the ELBO fell away from its best {approx.divergences} time(s) (q's scale running away on a "
            "heavy-tailed posterior, or too large a step size); each time the fit went back to its best "
            f"iterate and halved the step size (now {result.final_lr:.3g}). {approx.message}",
            ConvergenceWarning,
            stacklevel=2,
        )
    if approx.interrupted:
        warnings.warn(f"fit {approx.message}; returning the state reached so far", ConvergenceWarning, stacklevel=2)
    elif not approx.converged and opts.tol > 0 and not warned:
        warnings.warn(
            f"fit did not converge in {approx.steps} steps ({approx.message}); "
            "increase steps or lr, or pass tol=None to silence this",
            ConvergenceWarning,
            stacklevel=2,
        )
    if psis_draws and not approx.interrupted:  # the PSIS diagnostic (k-hat, ESS), warns if k-hat > 0.7
        approx.run_psis(psis_draws, threads=opts.threads, _stacklevel=3, _escalate=True)
    return approx


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
        sl = slice(p.offset, p.offset + p.size)
        m, ls = mu[sl], log_sd[sl]
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(ls))):
            overflow.append(f"{p.name} (q's mean or sd is not finite)")
        elif (math.isfinite(p.lower) != math.isfinite(p.upper)) and np.any(
            m + 0.5 * np.exp(2 * np.minimum(ls, 300)) > _LOG_MAX
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
            stacklevel=3,
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
            stacklevel=3,
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
                stacklevel=3,
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
            stacklevel=3,
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
        raise TypeError("init must be a dict mapping parameter names to values")
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


def _progress_bar(total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install tqdm (or fastvi[progress])") from None
    return tqdm(total=total, desc="fastvi", unit="step")
