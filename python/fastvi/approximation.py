"""The result of a fit: a Gaussian q in the model's unconstrained space, its moments, draws,
PSIS diagnostic and corrected results (``fastvi.fit`` builds it, in _fit.py)."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Dict, Optional

import numpy as np

from . import _core
from . import psis as _psis
from ._validate import INT64_END, int_setting, seed_setting, threads_setting
from ._warnings import PosteriorShapeWarning
from .laplace import Laplace
from .model import Model
from .status import FitStatus, status_of

_DETERMINISTIC_DRAWS = 10_000


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


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
        fam = state.pop("_family")  # a C++ object: rebuilt from what _fit.py built it from
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
