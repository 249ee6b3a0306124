"""The result of a fit: a Gaussian q in the model's unconstrained space, its moments, draws,
PSIS diagnostic and corrected results (``fastvi.fit`` builds it, in _fit.py)."""

from __future__ import annotations

import copy
import functools
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


@functools.lru_cache(maxsize=1)
def _gauss_hermite_rule(points: int = 64):
    """Nodes and normalised weights of the probabilists' Gauss-Hermite rule: E f(Z), Z ~ N(0, 1),
    is about f(nodes) @ weights. Computed once: hermegauss solves an eigenproblem (1-12 ms on a
    busy machine), and mean() / std() need the rule at every call. Read-only arrays, since
    every caller shares them."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    weights = weights / weights.sum()
    nodes.flags.writeable = False
    weights.flags.writeable = False
    return nodes, weights


# Vector transforms whose moments under q have no closed form: Monte Carlo (_sampled_moments).
_SAMPLED_TRANSFORMS = ("simplex", "cholesky_corr")


def _vector_moments(p: Any, mu: np.ndarray, cov: np.ndarray):
    """Exact mean and sd under the Gaussian q (mean mu, covariance cov in the unconstrained space)
    of a parameter with an ordered, positive_ordered or cholesky_cov transform.

    cholesky_cov: its entries are normal (below the diagonal) or log-normal (the diagonal).
    ordered / positive_ordered: x = cumsum(u), u_0 = y_0 (or exp(y_0)), u_j = exp(y_j) for
    Gaussian y; E[exp y_j] = exp(m_j + S_jj / 2), Cov(exp y_i, exp y_j) = E_i E_j expm1(S_ij) and
    (Stein's lemma) Cov(y_0, exp y_j) = S_0j E_j, so var(x_k) is the sum of Cov(u) over i, j <= k.
    """
    K = p.shape[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        if p.transform == "cholesky_cov":
            free = K * (K + 1) // 2
            count = p.free_size // free
            rows, cols = np.tril_indices(K)  # row by row, as the free coordinates are laid out
            idx = p.offset + np.arange(p.free_size).reshape(count, free)
            m, s2 = mu[idx], np.diag(cov)[idx]
            on_diagonal = rows == cols
            log_normal_mean = np.exp(m + 0.5 * s2)
            mean, sd = np.zeros((count, K, K)), np.zeros((count, K, K))
            mean[:, rows, cols] = np.where(on_diagonal, log_normal_mean, m)
            sd[:, rows, cols] = np.where(on_diagonal, log_normal_mean * np.sqrt(np.expm1(s2)), np.sqrt(s2))
            return mean.reshape(p.shape), sd.reshape(p.shape)
        count = p.free_size // K
        idx = p.offset + np.arange(p.free_size).reshape(count, K)
        m = mu[idx]  # (count, K)
        S = cov[idx[:, :, None], idx[:, None, :]]  # (count, K, K)
        e = np.exp(m + 0.5 * np.diagonal(S, axis1=1, axis2=2))
        cu = e[:, :, None] * e[:, None, :] * np.expm1(S)
        eu = e.copy()
        if p.transform == "ordered":  # u_0 = y_0
            eu[:, 0] = m[:, 0]
            cu[:, 0, :] = S[:, 0, :] * e
            cu[:, :, 0] = cu[:, 0, :]
            cu[:, 0, 0] = S[:, 0, 0]
        var = np.diagonal(np.cumsum(np.cumsum(cu, axis=1), axis=2), axis1=1, axis2=2)
        return np.cumsum(eu, axis=1).reshape(p.shape), np.sqrt(np.maximum(var, 0.0)).reshape(p.shape)


class Approximation:
    """A fitted Gaussian approximation q, in the model's unconstrained space.

    Returned by :func:`fastvi.fit`, not constructed directly. ``mean()`` and ``std()`` are
    moments of the constrained parameters under q (exact for unconstrained parameters and
    log-normal ones, by Gauss-Hermite quadrature of each marginal for interval-bounded ones);
    ``sample()`` draws from q and maps the draws to the constrained space. ``status`` says what
    the fit can be trusted for, and the PSIS diagnostic (``khat``, ``ess``, ``psis``) how well q
    describes the posterior.

    Attributes
    ----------
    model : Model
        The fitted model.
    family : str
        "meanfield", "fullrank" or "lowrank".
    rank : int or None
        The columns of B for the low-rank family; None for the others.
    phi : ndarray
        q's parameters in the unconstrained space: ``[mu, log sd]`` (mean-field),
        ``[mu, L]`` (full-rank: the Cholesky factor column-major, its diagonal as logs),
        ``[mu, log d, B]`` (low-rank, B column-major).
    elbo : ndarray
        The ELBO estimate of each window of ``eval_every`` steps (the mean of its single-step
        estimates).
    elbo_steps : ndarray of int64
        The step at which each window ended.
    steps : int
        Steps run in all (skipped ones included), over every phase: convergence, averaging and
        the refinements.
    converged : bool
        Whether the fit converged (and, with ``precision``, reached it; see :func:`fit`).
    converged_step : int or None
        If the fit converged, the step at which the stopping rule was met at the final step size
        (after the last refinement, if any); else None.
    averaged_steps : int
        Iterates averaged into the result.
    interrupted : bool
        Whether the fit was stopped by Ctrl-C or by the callback.
    n_skipped : int
        Steps whose log density or gradient was not finite (skipped).
    lr_reductions : int
        Times the step size was halved after non-finite steps.
    divergences : int
        Times the ELBO fell away from its best and the fit went back there with half the step size.
    refinements : int
        Step-size refinements after the first convergence.
    full_evaluations : int
        A minibatch fit's evaluations on every row (its control variate's reference points); 0
        for a full-batch fit.
    error_mean, error_scale : float or None
        The refinement's estimate of q's remaining error: the largest |mean error| in q's sds
        and the largest |log sd error| over the unconstrained coordinates; None until two step
        sizes were compared (``precision=None``, or no convergence).
    message : str
        How the fit ended, in words.
    options : dict
        The settings the fit ran with (after defaults and validation).
    laplace : Laplace or None
        The mode search behind preconditioning (``kind``, ``message``, ``parameters``: why there
        was no proper mode, and where); None with ``precondition=None``.
    psis : PSIS or None
        The PSIS diagnostic (see :mod:`fastvi.psis`); None when it was skipped (``psis_draws=0``,
        or an interrupted fit).

    See Also
    --------
    fit : Makes an approximation.
    summary : A table of its draws.
    FitStatus : What ``status`` says.

    Notes
    -----
    An approximation can be pickled (with its model) and copied; ``copy.copy`` and
    ``copy.deepcopy`` both copy the model too. If a parameter or factor is added to the model after
    the fit, sampling and moments raise RuntimeError: refit. After ``model.set_data`` (same
    parameters, new data) q is unchanged: sampling and moments still work, with deterministics
    evaluated on the current data (predictions on new data), while ``run_psis`` and
    ``importance="psis"``, which compare q with the log density of the data it was fitted to,
    raise RuntimeError until the data is set back.

    Examples
    --------
    The textbook example, whose exact posterior is Normal(sum(x) / 101, 1 / sqrt(101)):

    >>> import numpy as np, fastvi as fv
    >>> np.random.seed(42)
    >>> x = np.random.normal(2.0, 1.0, size=100)
    >>> model = fv.Model()
    >>> w = model.param("w")
    >>> model.add("normal", w, loc=0.0, scale=1.0)
    >>> model.add("normal", x, loc=w, scale=1.0)
    >>> fit = fv.fit(model, seed=0)
    >>> fit.family, fit.converged, fit.status.use
    ('meanfield', True, 'q')
    >>> bool(abs(fit.mean()["w"] - x.sum() / 101) < 0.01), bool(abs(fit.std()["w"] - 1 / np.sqrt(101)) < 0.01)
    (True, True)
    >>> fit.elbo.shape == fit.elbo_steps.shape, int(fit.elbo_steps[0])
    (True, 100)
    >>> fit          # doctest: +ELLIPSIS
    <Approximation family='meanfield' dim=1 steps=... converged at step ... elbo=... skipped=0 khat=... ess=.../1000>
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
        # a minibatch fit's evaluations on every row (control variate references)
        self.full_evaluations: int = getattr(result, "full_evaluations", 0)
        self.error_mean: Optional[float] = None if np.isnan(result.error_mean) else float(result.error_mean)
        self.error_scale: Optional[float] = None if np.isnan(result.error_scale) else float(result.error_scale)
        self.message: str = result.message
        self.options = dict(options)
        # the mode search behind preconditioning (None if precondition=None)
        self.laplace: Optional[Laplace] = None
        # PSIS diagnostic (fit's psis_draws; None when skipped): Pareto k-hat, importance ESS, details
        self.psis: Optional[_psis.PSIS] = None
        self._structure = model._structure()  # what the model was when fitted, see _check_model
        self._data_at_fit = dict(model._data_values)  # its data containers' values, see _check_data

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

    def _check_data(self, what: str) -> None:
        """q stays a distribution over the same parameters after model.set_data, so draws and
        moments stay valid; what compares q with the log density (PSIS) must not silently use
        data the fit never saw."""
        now = self.model._data_values
        changed = [
            name
            for name, values in getattr(self, "_data_at_fit", {}).items()
            if now[name] is not values and not np.array_equal(now[name], values)
        ]
        if changed:
            names = ("data container " if len(changed) == 1 else "data containers ") + ", ".join(
                repr(n) for n in changed
            )
            raise RuntimeError(
                f"{what} compares q with the model's log density, and the model's {names} "
                f"changed (set_data) after this fit: refit (fv.fit(model, init=this_fit) starts from it), "
                f"or set the data back"
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
        """The mean of q in the unconstrained space.

        Returns
        -------
        ndarray
            Shape ``(dim,)``, ordered as the model's coordinates (``Param.offset``).

        See Also
        --------
        mean : The means of the constrained parameters.

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> sigma = m.param("sigma", lower=0.0)
        >>> m.add("lognormal", sigma, loc=0.0, scale=0.5)     # log(sigma) ~ Normal(0, 0.5)
        >>> fit = fv.fit(m, seed=0)
        >>> fit.unconstrained_mean().shape, bool(abs(fit.unconstrained_mean()[0]) < 0.02)
        ((1,), True)
        """
        return np.array(self._family.mean(self.phi))

    def unconstrained_cov(self) -> np.ndarray:
        """The covariance matrix of q in the unconstrained space.

        Diagonal for the mean-field family, ``L L^T`` for full-rank, ``diag(d)^2 + B B^T`` for
        low-rank.

        Returns
        -------
        ndarray
            Shape ``(dim, dim)``.

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> sigma = m.param("sigma", lower=0.0)
        >>> m.add("lognormal", sigma, loc=0.0, scale=0.5)     # log(sigma) ~ Normal(0, 0.5)
        >>> fit = fv.fit(m, seed=0)
        >>> cov = fit.unconstrained_cov()
        >>> cov.shape, bool(abs(cov[0, 0] - 0.25) < 0.01)
        ((1, 1), True)
        """
        return np.array(self._family.covariance(self.phi))

    # ---- PSIS diagnostic ----------------------------------------------------------------------

    @property
    def khat(self) -> Optional[float]:
        """Pareto k-hat of the PSIS diagnostic (None if it was not run).

        Below 0.5 q is close to the posterior; 0.5 to 0.7 q is off but the PSIS-corrected results
        (``importance="psis"``) are usually better; above 0.7 neither is reliable. See
        :mod:`fastvi.psis` and ``status``.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> bool(fit.khat < 0.5)
        True
        >>> fv.fit(m, seed=0, psis_draws=0).khat is None
        True
        """
        return None if self.psis is None else self.psis.khat

    @property
    def status(self) -> FitStatus:
        """What this fit can be trusted for, as a :class:`FitStatus`.

        ``optimisation`` (converged, with the refinement's error estimate), ``shape`` (PSIS k-hat:
        good / fair / poor / unknown), ``corrected`` (PSIS results available and reliable) and
        ``use`` ("q", "psis" or "none"); ``print(fit.status)`` says it in words. See
        :mod:`fastvi.status`. Computed afresh at each access (after ``run_psis`` it reflects the
        new diagnostic).

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> fit.status.optimisation, fit.status.shape, fit.status.use
        ('converged', 'good', 'q')
        """
        return status_of(self)

    @property
    def ess(self) -> Optional[float]:
        """Effective sample size of the PSIS draws' smoothed weights (None if PSIS was not run).

        ``1 / sum(w^2)`` of the normalised weights: between 1 and the number of draws (0 if no
        draw has a finite importance ratio). Near the number of draws when q matches the
        posterior.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> bool(fit.ess > 0.9 * fit.psis.draws)
        True
        """
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
        """Runs (again) the PSIS diagnostic that ``fv.fit`` runs after every fit.

        More draws give a firmer k-hat (its sampling sd is about 0.14 at 1,000 draws and 0.10 at
        4,000), and more PSIS draws for the corrected results (``importance="psis"``). The result
        replaces ``psis`` (and so ``khat``, ``ess`` and ``status``).

        Parameters
        ----------
        draws : int, default 1000
            Draws from q, in [1, 2**32).
        seed : int, optional
            Their seed; by default derived from the fit's (``fastvi.psis.psis_seed``), so that
            the first draws are those of the fit's own diagnostic.
        threads : int, optional
            OpenMP threads for the log density (default: the fit's); results do not depend on it.

        Returns
        -------
        PSIS
            The new diagnostic, also stored in ``psis``.

        Raises
        ------
        RuntimeError
            If the model gained a parameter or factor since the fit, or its data changed
            (``set_data``).

        Warns
        -----
        PosteriorShapeWarning
            When k-hat > 0.7 (unless only the tails are heavy: the weights hardly vary).

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> result = fit.run_psis(4000)
        >>> result.draws, fit.psis is result, bool(fit.khat < 0.5)
        (4000, True, True)
        """
        draws = int_setting(draws, "draws", 1, 2**32)
        seed = None if seed is None else seed_setting(seed)
        threads = self.options.get("threads", 1) if threads is None else threads_setting(threads)
        self._check_model()
        self._check_data("run_psis")
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
        self._check_data(what)
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
        """Mean and sd of every constrained coordinate under q's Gaussian marginals, in the
        unconstrained layout, and the exact moments of the vector transforms that have them
        (ordered, positive_ordered, cholesky_cov: dicts by name)."""
        mu = self.unconstrained_mean()
        cov = self.unconstrained_cov()
        sd = np.sqrt(np.diag(cov))
        mean, std = mu.copy(), sd.copy()
        vector_mean, vector_sd = {}, {}
        for p in self.model:
            if p.transform is not None and p.transform not in _SAMPLED_TRANSFORMS:
                vector_mean[p.name], vector_sd[p.name] = _vector_moments(p, mu, cov)
        nodes, weights = _gauss_hermite_rule()
        for p in self.model:
            if p.transform is not None:
                continue  # vector transforms: _vector_moments above, or _sampled_moments
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
        return mean, std, vector_mean, vector_sd

    def _sampled_moments(self):
        """Monte Carlo moments (ddof=1 sds) of the deterministics and of the parameters with a
        vector transform (no closed form in general), over the draws of ``sample(10_000,
        seed=0)`` (a fixed stream, so that repeated calls agree), taken in batches so that only
        their rows are kept."""
        names = [p.name for p in self.model if p.transform in _SAMPLED_TRANSFORMS] + list(self.model.deterministics)
        if not names:
            return {}, {}
        exprs = {**self.model.params, **self.model.deterministics}
        first = [self.model._core.block(exprs[n]._block)["row"] for n in names]
        rows = np.concatenate([np.arange(r, r + exprs[n].size) for n, r in zip(names, first)])
        n = _DETERMINISTIC_DRAWS
        shift = total = sq = None
        for _, zeta in _psis.draws(self, n, 0):
            values = self.model._core.values(zeta)[rows]
            if shift is None:  # centred on the first batch's mean, against cancellation
                shift = values.mean(axis=1)
                total, sq = np.zeros_like(shift), np.zeros_like(shift)
            dev = values - shift[:, None]
            total += dev.sum(axis=1)
            sq += (dev * dev).sum(axis=1)
        assert shift is not None and total is not None and sq is not None
        mean_dev = total / n
        with np.errstate(invalid="ignore"):
            sd = np.sqrt(np.maximum(sq - n * mean_dev * mean_dev, 0.0) / (n - 1))
        mean = shift + mean_dev
        means, sds, at = {}, {}, 0
        for name in names:
            e = exprs[name]
            means[name] = mean[at : at + e.size].reshape(e.shape)
            sds[name] = sd[at : at + e.size].reshape(e.shape)
            at += e.size
        return means, sds

    def _moments(self, which: int) -> Dict[str, np.ndarray]:
        """Means (which = 0) or sds (1) of every parameter and deterministic, in declaration order."""
        marginal = self._marginal_moments()
        exact = self.model._split_zeta(marginal[which])
        exact.update(marginal[2 + which])
        sampled = self._sampled_moments()[which]
        return {n: exact[n] if n in exact else sampled[n] for n in [*self.model.params, *self.model.deterministics]}

    def mean(self, importance: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Mean under q of each parameter and deterministic, in the constrained space.

        Parameters are exact (Gauss-Hermite quadrature for interval-bounded ones), except those
        with a vector transform (``transform=``: simplex, ordered, ...), whose values mix several
        coordinates of q: they and the deterministics are Monte Carlo over 10,000 draws from q
        (``sample(10_000, seed=0)``, so repeated calls agree; the Monte Carlo error of a mean is
        about 1 % of its sd, and the sd's about 0.7 % of itself).

        Parameters
        ----------
        importance : {None, "psis"}, default None
            ``"psis"``: the self-normalised importance-sampling estimate of the *posterior* mean
            from the PSIS draws and their smoothed weights (``psis``, extended to an ESS of about
            2,000 when it is lower), correcting q. Use it when 0.5 < k-hat <= 0.7; below 0.5 q's
            own moments are fine (and have no Monte Carlo error), above 0.7 neither is reliable.
            Its Monte Carlo error is about sd / sqrt(ESS).

        Returns
        -------
        dict of str to ndarray
            The mean of every parameter and deterministic, by name, shaped like it.

        Raises
        ------
        FloatingPointError
            Naming the parameter, where a mean is not a finite number (q too wide for the
            constraint's range); with ``"psis"``, also when no PSIS draw has a finite ratio.
        ValueError
            If ``importance`` is not None or "psis", or ``"psis"`` is asked of a fit without PSIS
            draws (``psis_draws=0``: call ``run_psis()`` first).
        RuntimeError
            If the model gained a parameter or factor since the fit; with ``"psis"``, also if
            its data changed (``set_data``).

        See Also
        --------
        std, sample, unconstrained_mean

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> round(float(fit.mean()["w"]), 2)
        1.5
        >>> bool(abs(fit.mean(importance="psis")["w"] - 1.5) < 0.05)
        True
        """
        self._check_model()
        if self._importance(importance) == "psis":
            return self._finite(
                _psis.weighted_moments(self, self._need_psis("mean(importance='psis')"))[0], "mean(importance='psis')"
            )
        return self._finite(self._moments(0), "mean()")

    def std(self, importance: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Standard deviation under q of each parameter and deterministic, in the constrained space.

        As for :meth:`mean`: exact for parameters, Monte Carlo over 10,000 draws (ddof=1) for
        deterministics and parameters with a vector transform.

        Parameters
        ----------
        importance : {None, "psis"}, default None
            ``"psis"``: the self-normalised PSIS estimate of the posterior sd (see :meth:`mean`).

        Returns
        -------
        dict of str to ndarray
            The sd of every parameter and deterministic, by name, shaped like it.

        Raises
        ------
        FloatingPointError, ValueError, RuntimeError
            As for :meth:`mean`.

        See Also
        --------
        mean, unconstrained_cov

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> round(float(fit.std()["w"]), 2)
        0.5
        >>> bool(abs(fit.std(importance="psis")["w"] - 0.5) < 0.05)
        True
        """
        self._check_model()
        if self._importance(importance) == "psis":
            return self._finite(
                _psis.weighted_moments(self, self._need_psis("std(importance='psis')"))[1], "std(importance='psis')"
            )
        return self._finite(self._moments(1), "std()")

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
            sl = slice(p.offset, p.offset + p.free_size)
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

        The draws come from a counter-based generator: the same ``seed`` gives the same draws,
        whatever the thread count, and a pickled fit gives bit-identical draws.

        Parameters
        ----------
        n : int
            The number of draws, in [1, 2**32].
        seed : int, default 0
            Their seed, in [0, 2**64).
        importance : {None, "psis"}, default None
            ``"psis"``: ``n`` draws resampled from the M PSIS draws with their smoothed weights
            (the diagnostic's draws, or more of them when their ESS is below 2,000: see
            ``fastvi.psis.CORRECTED_ESS``), an approximate sample from the posterior rather than
            from q. The resampling is systematic: draw s is taken floor(n w_s) or ceil(n w_s)
            times (n w_s on average, so the resampled draws' moments are unbiased for the
            weighted ones). When n w_s <= 1 for every draw, which is the case for n <= M / 4 or
            so unless the ESS is low, no draw is taken twice (a sample without replacement);
            otherwise the heavy draws repeat, and a sample of n has at most about ESS distinct
            draws' worth of information: for more, refit with a larger ``psis_draws`` (or call
            ``run_psis(draws)``). Use it when 0.5 < k-hat <= 0.7; below 0.5 plain q is as good
            and has no duplicates, above 0.7 neither is reliable.

        Returns
        -------
        dict of str to ndarray
            Every parameter and deterministic, by name, with shape ``(n,) + shape``.

        Raises
        ------
        TypeError
            If ``n`` or ``seed`` is not an int.
        ValueError
            If ``n`` or ``seed`` is out of range, the draws would not fit in an array, or
            ``importance`` is invalid or ``"psis"`` is asked of a fit without PSIS draws.
        MemoryError
            If the draws do not fit in memory (the message says how much they need).
        FloatingPointError
            If a draw is not finite in the constrained space.
        RuntimeError
            If the model gained a parameter or factor since the fit.

        See Also
        --------
        summary : A table of the draws.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
        >>> fit = fv.fit(m, seed=0)        # the posterior is Normal(1.5, 0.5)
        >>> draws = fit.sample(1000, seed=1)
        >>> draws["w"].shape
        (1000,)
        >>> bool(abs(draws["w"].mean() - 1.5) < 0.05)
        True
        >>> bool(np.array_equal(fit.sample(5, seed=1)["w"], draws["w"][:5]))   # the same stream
        True
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

    # ---- ArviZ and pandas (optional dependencies, see _inference_data.py) ------------------------

    def to_inference_data(
        self,
        n: int = 1000,
        seed: int = 0,
        importance: Optional[str] = None,
        *,
        log_likelihood: bool = True,
        posterior_predictive: bool = True,
        threads: Optional[int] = None,
    ) -> Any:
        """The fit as an ArviZ ``InferenceData``, for ``az.summary``, ``az.plot_posterior``,
        ``az.loo``, ``az.compare``, ``az.plot_ppc`` ...

        Needs ArviZ (0.17 to 0.23), xarray and pandas: ``pip install fastvi[arviz]``.

        Groups:

        - ``posterior``: one chain of the ``n`` draws of ``sample(n, seed, importance)`` (every
          parameter and deterministic, constrained), with the axis names given as ``dims=``
          and labelled by the model's ``coords``;
        - ``sample_stats``: ``lp``, the model's log density at each draw (in the unconstrained
          space, with the transforms' log-Jacobians, as Stan's ``lp__``), and ``log_q``, q's log
          density there (``lp - log_q`` are the draws' log importance ratios);
        - ``observed_data``: the data of each factor added with ``model.add(kernel, data, ...)``,
          named by the factor's ``name=`` (give one: the default label is long) with its ``dims``;
        - ``log_likelihood``: each observation's log density at each draw (for ``az.loo`` and
          ``az.compare``): element-wise kernels by the kernel itself, the GLMs (``normal_id_glm``,
          ``bernoulli_logit_glm``, ``poisson_log_glm``, ``neg_binomial_2_log_glm``,
          ``categorical_logit_glm``) one term per row, ``categorical``, ``categorical_logit``,
          ``ordered_logistic`` and ``ordered_probit`` one per element of y,
          ``multinomial_logit``, ``dirichlet``, ``multi_normal`` and ``multi_normal_cholesky``
          one per row of the variate; factors of other kernels (``lkj_corr_cholesky`` on data,
          kernels registered with ``elementwise=False``) are left out with a warning that names
          them;
        - ``posterior_predictive``: new observations of each observed factor drawn from its kernel
          at each draw (see :meth:`posterior_predictive` for the kernels; the others are left out
          with a warning);
        - ``approximation``: the ELBO trace (``elbo``, ``elbo_step``) and q's mean and sd in the
          unconstrained space.

        Every group carries the fit's description as attributes (``family``, ``elbo``,
        ``converged``, ``steps``, ``status``, ``khat``, ...).

        Parameters
        ----------
        n : int, default 1000
            The number of draws.
        seed : int, default 0
            Their seed (the same draws as ``sample(n, seed)``); the predictive draws use a
            generator seeded from it too.
        importance : {None, "psis"}, default None
            ``"psis"``: PSIS-resampled draws, as ``sample(n, seed, importance="psis")``.
        log_likelihood, posterior_predictive : bool, default True
            Whether to compute those groups.
        threads : int, optional
            OpenMP threads for ``lp`` (default: the fit's).

        Returns
        -------
        arviz.InferenceData

        Raises
        ------
        ImportError
            If ArviZ, xarray or pandas is missing.
        ValueError, TypeError, FloatingPointError, RuntimeError
            As for :meth:`sample`.

        Warns
        -----
        UserWarning
            Naming the observed factors left out of ``log_likelihood`` or
            ``posterior_predictive``.

        See Also
        --------
        sample, to_dataframe

        Examples
        --------
        >>> import numpy as np, fastvi as fv, arviz as az
        >>> y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
        >>> schools = ["A", "B", "C", "D", "E", "F", "G", "H"]
        >>> m = fv.Model(coords={"school": schools})
        >>> theta = m.param("theta", shape=8, dims="school")
        >>> m.add("normal", theta, loc=0.0, scale=10.0)
        >>> m.add("normal", y, loc=theta, scale=15.0, name="y", dims="school")
        >>> fit = fv.fit(m, seed=0)
        >>> idata = fit.to_inference_data(1000, seed=1)
        >>> idata.posterior["theta"].dims, idata.posterior["theta"].shape
        (('chain', 'draw', 'school'), (1, 1000, 8))
        >>> idata.posterior["theta"].sel(school="C").shape
        (1, 1000)
        >>> bool(np.array_equal(idata.posterior["theta"][0], fit.sample(1000, seed=1)["theta"]))
        True
        >>> sorted(idata.groups())     # doctest: +NORMALIZE_WHITESPACE
        ['approximation', 'log_likelihood', 'observed_data', 'posterior', 'posterior_predictive',
         'sample_stats']
        >>> loo = az.loo(idata)
        >>> bool(np.isfinite(loo.elpd_loo))
        True
        """
        from ._inference_data import to_inference_data

        return to_inference_data(
            self,
            n,
            seed,
            importance,
            log_likelihood=log_likelihood,
            posterior_predictive=posterior_predictive,
            threads=threads,
        )

    def posterior_predictive(
        self, n: int = 1000, seed: int = 0, importance: Optional[str] = None
    ) -> Dict[str, np.ndarray]:
        """New observations of every observed factor, one set per draw of ``sample(n, seed)``.

        For each factor added with ``model.add(kernel, data, name=...)``, ``n`` draws of data
        like it from the kernel at the parameters' draws: the posterior predictive distribution
        (of q's draws, or of the PSIS-resampled ones). The same draws as the
        ``posterior_predictive`` group of :meth:`to_inference_data` with the same arguments.
        Kernels with a sampler: ``normal``, ``student_t``, ``cauchy``, ``logistic``,
        ``double_exponential``, ``lognormal``, ``half_normal``, ``half_cauchy``, ``exponential``,
        ``gamma``, ``inv_gamma``, ``chi_square``, ``weibull``, ``beta``, ``uniform``, ``pareto``,
        ``von_mises``, ``bernoulli_logit``, ``binomial_logit``, ``beta_binomial``, ``poisson``,
        ``poisson_log``, ``neg_binomial_2``, ``neg_binomial_2_log``, the GLMs
        (``normal_id_glm``, ``bernoulli_logit_glm``, ``poisson_log_glm``,
        ``neg_binomial_2_log_glm``, ``categorical_logit_glm``), ``categorical``,
        ``categorical_logit``, ``ordered_logistic``, ``ordered_probit``, ``multinomial_logit``
        (each row's total count as observed), ``dirichlet``, ``multi_normal`` and
        ``multi_normal_cholesky``.

        Parameters
        ----------
        n : int, default 1000
            The number of draws.
        seed : int, default 0
            The parameters' draws are ``sample(n, seed, importance)``; the observations come from
            a numpy Generator seeded from it too.
        importance : {None, "psis"}, default None
            ``"psis"``: at PSIS-resampled draws (see :meth:`sample`).

        Returns
        -------
        dict of str to ndarray
            By factor name, shape ``(n,) + the observations' shape``, float64.

        Raises
        ------
        ValueError, TypeError, RuntimeError
            As for :meth:`sample`.

        Warns
        -----
        UserWarning
            Naming the observed factors whose kernel has no sampler (left out).

        See Also
        --------
        to_inference_data

        Examples
        --------
        w ~ Normal(0, 1), x_i ~ Normal(w, 1): the predictive of a new x is Normal(m, sqrt(1 + v))
        for the posterior's mean m and variance v = 1 / 4.

        >>> import numpy as np, fastvi as fv
        >>> x = np.array([1.9, 2.1, 2.0])
        >>> m = fv.Model()
        >>> w = m.param("w")
        >>> m.add("normal", w, loc=0.0, scale=1.0)
        >>> m.add("normal", x, loc=w, scale=1.0, name="x")
        >>> pred = fv.fit(m, seed=0).posterior_predictive(4000, seed=1)
        >>> pred["x"].shape
        (4000, 3)
        >>> bool(abs(pred["x"].mean() - 1.5) < 0.05), bool(abs(pred["x"][:, 0].std() - np.sqrt(1.25)) < 0.05)
        (True, True)
        """
        from ._inference_data import unconstrained_draws
        from ._observed import predictive_draws

        n = int_setting(n, "n", 1, 2**32)
        seed = seed_setting(seed)
        self._check_model()
        zeta, _ = unconstrained_draws(self, n, seed, importance, "posterior_predictive")
        return predictive_draws(self.model, zeta, seed, stacklevel=2)

    def to_dataframe(self, n: int = 1000, seed: int = 0, importance: Optional[str] = None) -> Any:
        """``n`` draws as a pandas DataFrame, one column per scalar (``w``, ``beta[0]``,
        ``L[1, 0]``, as in summaries: an axis declared with ``dims`` shows its ``coords`` labels,
        ``theta[Choate]``), one row per draw.

        Needs pandas (``pip install fastvi[arviz]`` brings it).

        Parameters
        ----------
        n : int, default 1000
            The number of draws.
        seed : int, default 0
            Their seed: the rows are ``sample(n, seed, importance)``.
        importance : {None, "psis"}, default None
            ``"psis"``: PSIS-resampled draws (see :meth:`sample`).

        Returns
        -------
        pandas.DataFrame
            Indexed by draw (0 to n - 1), every parameter and deterministic in C order.

        Raises
        ------
        ImportError
            If pandas is missing.
        ValueError, TypeError, FloatingPointError, RuntimeError
            As for :meth:`sample`.

        See Also
        --------
        sample, to_inference_data, summary

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> m = fv.Model()
        >>> beta = m.param("beta", shape=2)
        >>> m.add("normal", beta, loc=np.array([0.0, 1.0]), scale=1.0)
        >>> df = fv.fit(m, seed=0).to_dataframe(500)
        >>> df.shape, list(df.columns)
        ((500, 2), ['beta[0]', 'beta[1]'])
        >>> bool(abs(df["beta[1]"].mean() - 1.0) < 0.2)
        True
        """
        from ._inference_data import to_dataframe

        return to_dataframe(self, n, seed, importance)

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
