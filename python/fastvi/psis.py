"""Pareto smoothed importance sampling (PSIS): how well q fits the posterior, and corrected results.

With draws zeta_1..zeta_M from q, the importance ratios r_s = p(zeta_s) / q(zeta_s) (p unnormalised)
tell how far q is from the posterior. Their right tail is what matters: if q misses mass that the
posterior has, a few draws get huge ratios. PSIS (Vehtari, Simpson, Gelman, Yao and Gabry 2024,
"Pareto smoothed importance sampling", JMLR 25(72)) fits a generalised Pareto distribution (GPD) to
the M_tail = ceil(min(M / 5, 3 sqrt(M))) largest ratios; its shape k-hat says how heavy the tail
is (the ratios have about 1 / k-hat finite moments) and, used as a diagnostic of a variational
approximation (Yao, Vehtari, Simpson and Gelman 2018, "Yes, but did it work?"):

- k-hat < 0.5: q is close to the posterior; its moments can be used as they are;
- 0.5 < k-hat <= 0.7: q is off, but importance sampling with the smoothed weights corrects it:
  the self-normalised PSIS estimates are usually better than q's;
- k-hat > 0.7: q is a poor approximation (it misses some of the posterior's mass) and neither q
  nor the corrected estimates can be relied on.

(The paper's sample-size-dependent threshold, min(1 - 1 / log10(M), 0.7), is 0.67 at the default
M = 1000 and 0.7 from M of about 2150 on; ``PSIS.threshold`` gives it.) k-hat is an estimate: its sampling
sd is about 0.14 at M = 1000, so a value near 0.7 is not conclusive (``fit.run_psis(4000)`` gives a
firmer one). The ratios are smoothed by replacing the tail's values with the
fitted GPD's quantiles, truncated at the largest raw ratio and normalised; the effective sample
size of the smoothed weights w is ESS = 1 / sum(w^2).

This module is numpy only. :func:`psislw` does the computation on any vector of log ratios;
:func:`diagnose` draws from a fitted approximation and computes it (``fv.fit`` calls it after every
fit, see ``psis_draws``).

>>> import numpy as np, fastvi as fv
>>> m = fv.Model()
>>> w = m.param("w")
>>> m.add("normal", w, loc=0.0, scale=1.0)
>>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
>>> fit = fv.fit(m, seed=0)
>>> fit.psis.draws, bool(fit.psis.khat < fv.psis.KHAT_GOOD), bool(fit.psis.ess > 900)
(1000, True, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "DEFAULT_DRAWS",
    "KHAT_BAD",
    "KHAT_GOOD",
    "PSIS",
    "diagnose",
    "gpd_fit",
    "psis_seed",
    "psislw",
    "tail_length",
]

# Pareto k-hat thresholds (Vehtari et al. 2024): below GOOD q is fine; above BAD even the smoothed
# importance weights are unreliable.
KHAT_GOOD = 0.5
KHAT_BAD = 0.7

# The GPD fit's weakly informative prior on k (Vehtari et al. 2024, appendix; as loo and ArviZ): a
# normal prior centred at 0.5 worth 10 observations, applied to the Zhang-Stephens estimate.
_PRIOR_K, _PRIOR_WEIGHT = 0.5, 10.0
# Draws from q for the diagnostic after every fit (fv.fit's psis_draws), from bench/psis_draws.py
# on the 36 posteriordb fits: k-hat's sampling sd (median over the fits) is 0.16 / 0.14 / 0.12 /
# 0.10 at M = 500 / 1000 / 2000 / 4000 (it falls as M^-1/4: the tail grows as sqrt(M)), while the
# PSIS step costs 3.0 / 5.1 / 9.6 / 18.5 % of the fit's CPU time (median; at most 4.8 / 8.7 / 17.1
# / 34.5 %), on one thread. 1000 is the largest M that keeps every fit's PSIS step under 10 %.
DEFAULT_DRAWS = 1000
# k-hat above KHAT_BAD with an importance ESS of at least this fraction of the draws (and every
# ratio finite) is "tails only": the ratios' tail is heavy, but the weights hardly vary. Measured
# on the posteriordb fits (bench/accuracy.py): every full-rank fit with k-hat > 0.7 had ESS of
# 92-100 % and means within 0.025 sd (a scale parameter's posterior in log space has an
# exponential right tail, heavier than q's Gaussian one), while every inaccurate fit with k-hat >
# 0.7 (centred eight schools; mean-field on correlated posteriors, sds 2-5x too small) had ESS
# below 60 %, most below 20 %.
TAILS_ONLY_ESS = 0.9
# k-hat <= KHAT_GOOD says "good" only with an importance ESS of at least this fraction of the
# draws: k-hat sees the tail of the ratios, the ESS their overall spread. On posteriordb every
# full-rank or low-rank fit within 0.1 sd / 10 % of the reference with k-hat <= 0.5 had ESS >= 91 %;
# the misses with k-hat <= 0.5 had 48-62 % (non-centred eight schools, tau 0.17 sd off and its log
# sd 36 % too small) and 78-80 % (mesquite full-rank: the KL-optimal Gaussian's sds 11 % small).
ESS_GOOD = 0.85
# The corrected results (importance="psis") come from PSIS over enough draws of q for an ESS of
# about this many (the diagnostic's draws if their ESS already is; else up to CORRECTED_MAX_DRAWS
# draws of the same stream): Monte Carlo error of a corrected mean about sd / sqrt(2000) = 0.02 sd.
CORRECTED_ESS = 2000
CORRECTED_MAX_DRAWS = 64000
# After a fit, a k-hat between KHAT_GOOD and KHAT_BAD from DEFAULT_DRAWS draws is recomputed from
# this many times as many (fv.fit only; run_psis does what it is asked).
ESCALATE = 4
# Fewer tail draws than this and no GPD is fitted (as loo and ArviZ).
_MIN_TAIL = 5
# Log ratios within this much of each other, relative to the largest |log p| or |log q|, count as
# equal (1e-12: about 2**13 roundings of the largest term).
_FLAT_RTOL = 1e-12
# Draws per batch: 256 keeps an expression model's value and gradient matrices in cache (log
# density of 2000 draws of kilpisjarvi: 0.8 ms in batches of 256, 2.9 ms in one batch; the GLM
# kernels are as fast either way), and a batch's working memory (draws, log density gradient,
# value matrix) is at most _BATCH_BYTES.
_BATCH_DRAWS = 256
_BATCH_BYTES = 64 * 2**20


@dataclass
class PSIS:
    """The result of Pareto smoothed importance sampling of M draws from q.

    Made by :func:`psislw` and :func:`diagnose` (``fit.psis``); not constructed directly.

    Attributes
    ----------
    khat : float
        The Pareto shape of the ratios' right tail (see the module docstring); ``inf`` when no
        draw has a finite ratio or the tail cannot be fitted, ``-inf`` when every ratio is equal
        (q has exactly the posterior's shape), ``nan`` when M is too small (fewer than 5 tail
        draws, M < 21).
    ess : float
        Effective sample size of the smoothed weights, 1 / sum(w^2), between 1 and M (0 when no
        ratio is finite).
    log_weights : ndarray
        The smoothed, truncated, normalised log weights (M,); ``-inf`` for draws whose ratio was
        not finite.
    log_ratios : ndarray
        The raw log p - log q (M,), with the non-finite ones as computed.
    draws : int
        M.
    tail : int
        The number of largest ratios the GPD was fitted to (:func:`tail_length`).
    sigma : float
        The GPD's scale, relative to the largest ratio (``nan`` when not fitted).
    smoothed : bool
        Whether the tail was replaced by GPD quantiles.
    n_nonfinite : int
        Draws whose log p (or log q) was not finite: they get weight 0.
    seed : int or None
        For a fitted approximation, the draws are ``fit.sample(M, seed=seed)`` (unconstrained:
        ``fit._family.sample(fit.phi, M, seed)``), weight s belonging to draw s; bit for bit for
        the mean-field and low-rank families, to rounding for full-rank (drawn in batches of 256,
        whose blocked product rounds by batch width). None for :func:`psislw` of given ratios.
    seconds, cpu_seconds : float
        The wall and process CPU time of drawing, evaluating and smoothing.
    note : str
        Why k-hat is not a finite estimate, when it is not ("" otherwise).
    weights : ndarray
        The normalised smoothed weights.
    threshold : float
        The sample-size-dependent k-hat threshold.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> result = fv.psis.psislw(np.random.default_rng(0).normal(size=4000))
    >>> result.draws, result.tail, result.smoothed, bool(result.khat < 0.5)
    (4000, 190, True, True)
    >>> fv.psis.psislw(np.zeros(100))       # q exactly the posterior's shape
    PSIS(khat=-inf, ess=100 of 100 draws, tail=20, every finite ratio is equal)
    """

    khat: float
    ess: float
    log_weights: np.ndarray
    log_ratios: np.ndarray
    draws: int
    tail: int
    sigma: float = math.nan
    smoothed: bool = False
    n_nonfinite: int = 0
    seed: Optional[int] = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    note: str = field(default="")

    @property
    def weights(self) -> np.ndarray:
        """The normalised smoothed weights (sum 1; 0 for non-finite draws).

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> w = fv.psis.psislw([0.0, 1.0, -np.inf] * 10).weights
        >>> round(float(w.sum()), 12), float(w[2])
        (1.0, 0.0)
        """
        return np.exp(self.log_weights)

    @property
    def threshold(self) -> float:
        """The sample-size-dependent k-hat threshold min(1 - 1 / log10(M), 0.7) of Vehtari et al.
        (2024): above it, even more draws would not make the PSIS estimates reliable.

        ``-inf`` for M <= 10.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> round(fv.psis.psislw(np.zeros(1000)).threshold, 4), fv.psis.psislw(np.zeros(4000)).threshold
        (0.6667, 0.7)
        """
        return min(1.0 - 1.0 / math.log10(self.draws), KHAT_BAD) if self.draws > 10 else -math.inf

    def __repr__(self) -> str:
        extra = f", {self.n_nonfinite} non-finite" if self.n_nonfinite else ""
        return (
            f"PSIS(khat={self.khat:.3g}, ess={self.ess:.4g} of {self.draws} draws, tail={self.tail}"
            f"{extra}{', ' + self.note if self.note else ''})"
        )


def tail_length(m: int) -> int:
    """The number of largest ratios the GPD is fitted to, M_tail = ceil(min(M / 5, 3 sqrt(M))).

    Vehtari et al. (2024), with relative efficiency 1: the draws from q are independent.

    Parameters
    ----------
    m : int
        The number of draws M.

    Returns
    -------
    int
        M_tail.

    Examples
    --------
    >>> import fastvi as fv
    >>> fv.psis.tail_length(1000), fv.psis.tail_length(50)
    (95, 10)
    """
    return math.ceil(min(m / 5.0, 3.0 * math.sqrt(m)))


def gpd_fit(x: np.ndarray) -> Tuple[float, float]:
    """Fits a generalised Pareto distribution with location 0 to exceedances.

    The estimate of Zhang and Stephens (2009, Technometrics 51(3)): the profile likelihood of
    theta = -k / sigma, averaged over a grid of m = 30 + floor(sqrt(n)) values of theta placed by
    their empirical-Bayes rule, each weighted by its likelihood; then k = mean(log(1 - theta x)),
    sigma = -k / theta, and k is shrunk towards 0.5 by a prior worth 10 observations (Vehtari et
    al. 2024, appendix C). Here k > 0 is a heavy tail (the sign convention of PSIS, the opposite
    of Zhang and Stephens').

    Parameters
    ----------
    x : array_like
        The exceedances: positive, sorted in increasing order, at least 5 of them (not checked).

    Returns
    -------
    k : float
        The shape (``nan`` if no grid value has a finite likelihood).
    sigma : float
        The scale.

    Examples
    --------
    Exceedances drawn from a GPD with k = 0.5 and sigma = 2 (by inverting its distribution
    function):

    >>> import numpy as np, fastvi as fv
    >>> u = np.random.default_rng(1).random(1000)
    >>> x = np.sort(2.0 * ((1 - u) ** -0.5 - 1) / 0.5)
    >>> k, sigma = fv.psis.gpd_fit(x)
    >>> bool(abs(k - 0.5) < 0.1), bool(abs(sigma - 2.0) < 0.2)
    (True, True)
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    m = 30 + int(math.sqrt(n))
    # the grid: theta_j = 1 / x_(n) + (1 - sqrt(m / (j - 1/2))) / (3 x_(q)), q the first quartile
    quartile = x[int(n / 4.0 + 0.5) - 1]
    j = np.arange(1, m + 1, dtype=np.float64)
    theta = 1.0 / x[-1] + (1.0 - np.sqrt(m / (j - 0.5))) / (3.0 * quartile)
    # profile log likelihood of each theta: k(theta) = mean log(1 - theta x),
    # l(theta) = n (log(-theta / k) - k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log1p(-np.outer(theta, x)).mean(axis=1)
        loglik = n * (np.log(-theta / k) - k - 1.0)
    loglik = np.where(np.isfinite(loglik), loglik, -np.inf)
    top = np.max(loglik)
    if not np.isfinite(top):
        return math.nan, math.nan
    weight = np.exp(loglik - top)
    weight /= weight.sum()
    theta_hat = float(weight @ theta)
    k_hat = float(np.log1p(-theta_hat * x).mean())
    sigma = -k_hat / theta_hat
    k_hat = (n * k_hat + _PRIOR_WEIGHT * _PRIOR_K) / (n + _PRIOR_WEIGHT)
    return k_hat, sigma


def _gpd_quantile(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    """Quantiles of GPD(0, sigma, k) at probabilities 0 < p < 1."""
    if abs(k) < np.finfo(float).eps:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def _logsumexp(x: np.ndarray) -> float:
    top = np.max(x)
    return float(top + np.log(np.sum(np.exp(x - top))))


def psislw(log_ratios: Any, flat_tol: float = 0.0) -> PSIS:
    """Pareto smoothed importance sampling of one vector of log importance ratios log p - log q.

    The computation follows Vehtari et al. (2024) as loo and ArviZ implement it (``az.psislw`` gives
    the same k-hat and weights for finite ratios with at least 5 tail draws), except in cases they
    do not distinguish: ratios that are all equal give k-hat = -inf (there is no tail; ArviZ's is
    inf), fewer than 21 draws give nan (too few to estimate; ArviZ's is inf); a tail that cannot
    be fitted because of ties gives inf, as theirs.

    Parameters
    ----------
    log_ratios : array_like
        The log ratios, with any constant offset (flattened); non-finite entries get weight 0 and
        are counted in ``n_nonfinite``.
    flat_tol : float, default 0.0
        Finite log ratios that all lie within ``flat_tol`` of each other count as equal (for the
        rounding error of log p - log q, see :func:`diagnose`).

    Returns
    -------
    PSIS
        The k-hat, the ESS and the smoothed normalised log weights (``seed`` is None).

    Raises
    ------
    ValueError
        If ``log_ratios`` is empty.

    See Also
    --------
    diagnose : PSIS of draws from a fitted approximation.

    Examples
    --------
    Light-tailed ratios (log-normal), then ratios with a Pareto tail of k = 1 (their logs are
    exponential):

    >>> import numpy as np, fastvi as fv
    >>> rng = np.random.default_rng(0)
    >>> r = fv.psis.psislw(rng.normal(size=4000))
    >>> bool(r.khat < 0.5), r.tail
    (True, 190)
    >>> heavy = fv.psis.psislw(rng.standard_exponential(size=4000))
    >>> bool(heavy.khat > 0.7), bool(heavy.ess < 100)
    (True, True)
    >>> fv.psis.psislw(np.arange(10.0)).note
    'too few draws to fit the tail (M = 10; at least 21 are needed)'
    """
    lr = np.array(log_ratios, dtype=np.float64).ravel()
    m = lr.size
    if m == 0:
        raise ValueError("log_ratios is empty")
    finite = np.isfinite(lr)
    n_nonfinite = int(m - finite.sum())
    tail = tail_length(m)
    x = np.where(finite, lr, -np.inf)
    base: Dict[str, Any] = dict(log_ratios=np.array(lr), draws=m, tail=tail, n_nonfinite=n_nonfinite)
    if not finite.any():
        return PSIS(khat=math.inf, ess=0.0, log_weights=np.full(m, -np.inf), note="no draw has a finite ratio", **base)
    x -= np.max(x)  # the largest ratio is 1: exp cannot overflow
    if tail >= _MIN_TAIL and np.min(x[finite]) >= -flat_tol:  # every finite ratio equal: IS is exact
        lw = x - _logsumexp(x)
        return PSIS(khat=-math.inf, ess=float(finite.sum()), log_weights=lw, note="every finite ratio is equal", **base)
    khat, sigma, smoothed, note = math.nan, math.nan, False, ""
    if tail < _MIN_TAIL:
        note = f"too few draws to fit the tail (M = {m}; at least 21 are needed)"
    else:
        # the cutoff is the largest ratio below the tail (not below the smallest positive float)
        cutoff = max(float(np.partition(x, m - tail - 1)[m - tail - 1]), math.log(np.finfo(float).tiny))
        in_tail = np.flatnonzero(x > cutoff)
        if in_tail.size < _MIN_TAIL:
            khat, note = math.inf, "the tail has fewer than 5 distinct largest ratios: not fitted"
        else:
            in_tail = in_tail[np.argsort(x[in_tail], kind="stable")]
            exp_cutoff = math.exp(cutoff)
            excess = np.exp(x[in_tail]) - exp_cutoff
            khat, sigma = gpd_fit(excess)
            if math.isfinite(khat) and sigma > 0:
                n = in_tail.size
                p = (np.arange(n) + 0.5) / n
                x[in_tail] = np.log(_gpd_quantile(p, khat, sigma) + exp_cutoff)
                np.minimum(x, 0.0, out=x)  # truncate at the largest raw ratio
                smoothed = True
            else:
                khat, note = math.inf, "the GPD fit failed"
    lw = x - _logsumexp(x)
    ess = float(1.0 / np.sum(np.exp(2.0 * lw)))
    return PSIS(khat=float(khat), ess=ess, log_weights=lw, sigma=float(sigma), smoothed=smoothed, note=note, **base)


def psis_seed(fit_seed: int) -> int:
    """The seed of the PSIS draws of a fit with seed ``fit_seed``.

    Derived from it (SeedSequence, stable across numpy versions) so that it is reproducible but
    not the stream of ``fit.sample(n, seed=fit_seed)``.

    Parameters
    ----------
    fit_seed : int
        The fit's ``seed``.

    Returns
    -------
    int
        A seed in [0, 2**64).

    Examples
    --------
    >>> import fastvi as fv
    >>> m = fv.Model()
    >>> m.add("normal", m.param("w"), loc=0.0, scale=1.0)
    >>> fit = fv.fit(m, seed=3)
    >>> fit.psis.seed == fv.psis.psis_seed(3)
    True
    """
    return int(np.random.SeedSequence([int(fit_seed), 0x50534953]).generate_state(1, dtype=np.uint64)[0])


def batch_size(approx: Any, m: int) -> int:
    """Draws per batch for M draws of ``approx``: 256, or fewer if 256 would take more than 64 MB
    of working memory (depends on the model's size only, so results do not depend on the
    machine)."""
    model, fam = approx.model, approx._family
    per_draw = 8 * (2 * model.dim + fam.noise_dim + 2 * max(model._core.rows, 1) + 2)
    return max(1, min(m, _BATCH_DRAWS, _BATCH_BYTES // per_draw))


def draws(approx: Any, m: int, seed: int, log_q: bool = False):
    """Yields (first, zeta[, log q]) for batches of the M unconstrained draws of ``approx`` with
    ``seed``; batch b holds draws first .. first + n - 1, the same as one call for all M."""
    size = batch_size(approx, m)
    for first in range(0, m, size):
        n = min(size, m - first)
        out = approx._family.sample(approx.phi, n, seed, first=first, log_q=log_q)
        yield (first, *out) if log_q else (first, out)


def diagnose(approx: Any, m: int, threads: int = 1, seed: Optional[int] = None) -> PSIS:
    """PSIS of ``m`` draws from the fitted approximation ``approx``.

    The log ratios are log p at each draw (``model.log_density``, which includes the transforms'
    log-Jacobians) minus log q (the density of q in the same unconstrained space). Unlike
    :meth:`Approximation.run_psis` it neither stores the result nor warns.

    Parameters
    ----------
    approx : Approximation
        A fitted approximation.
    m : int
        The number of draws.
    threads : int, default 1
        OpenMP threads for the log density (results do not depend on it).
    seed : int, optional
        The draws' seed; by default :func:`psis_seed` of the fit's.

    Returns
    -------
    PSIS
        With ``seed``, ``seconds`` and ``cpu_seconds`` set.

    See Also
    --------
    Approximation.run_psis : The same, stored in ``fit.psis``.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", w, loc=0.0, scale=1.0)
    >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
    >>> fit = fv.fit(m, seed=0)
    >>> result = fv.psis.diagnose(fit, 2000)
    >>> result.draws, result.seed == fit.psis.seed, bool(result.khat < 0.5)
    (2000, True, True)
    >>> bool(np.allclose(result.log_ratios[:1000], fit.psis.log_ratios))   # the same first draws
    True
    """
    t0, c0 = time.perf_counter(), time.process_time()
    seed = psis_seed(approx.options.get("seed", 0)) if seed is None else int(seed)
    log_ratios = np.empty(m)
    magnitude = 1.0
    for first, zeta, log_q in draws(approx, m, seed, log_q=True):
        lp, _ = approx.model._core.log_density(zeta, threads)
        with np.errstate(invalid="ignore"):
            log_ratios[first : first + zeta.shape[1]] = lp - log_q
        both = np.abs(np.concatenate([lp, log_q]))
        magnitude = max(magnitude, float(np.max(both[np.isfinite(both)], initial=0.0)))
    # log p and log q are sums of many terms, each rounded: ratios closer than this are equal
    # (a q that is exactly the posterior, or p equal to q up to a truncation)
    result = psislw(log_ratios, flat_tol=_FLAT_RTOL * magnitude)
    result.seed = seed
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    return result


def _seed_of(result: PSIS) -> int:
    """The seed of a result's draws from q (only results of a fitted approximation have one)."""
    if result.seed is None:
        raise ValueError("this PSIS result has no draws from q (psislw of given ratios): nothing to correct with")
    return result.seed


def weighted_moments(approx: Any, result: PSIS) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Self-normalised PSIS mean and sd of every parameter and deterministic (constrained) over the
    draws of ``result``; draws with weight 0 are left out (their values may not be finite)."""
    w = result.weights
    seed = _seed_of(result)
    total: Optional[np.ndarray] = None
    shift: Optional[np.ndarray] = None
    sq: Optional[np.ndarray] = None
    for first, zeta in draws(approx, result.draws, seed):
        wb = w[first : first + zeta.shape[1]]
        keep = wb > 0
        if not keep.any():
            continue
        values = approx.model._core.values(np.ascontiguousarray(zeta[:, keep]))  # rows x n
        wb = wb[keep]
        if shift is None:  # centre on the first batch's weighted mean, against cancellation
            shift = values @ wb / wb.sum()
            total, sq = np.zeros_like(shift), np.zeros_like(shift)
        dev = values - shift[:, None]
        total += dev @ wb
        sq += (dev * dev) @ wb
    if shift is None or total is None or sq is None:
        raise FloatingPointError("no PSIS draw has a finite importance ratio: there are no corrected moments")
    wsum = float(w.sum())
    mean_dev = total / wsum
    mean = shift + mean_dev
    sd = np.sqrt(np.maximum(sq / wsum - mean_dev * mean_dev, 0.0))
    split = approx.model._split_values
    return split(mean), split(sd)


def resample(result: PSIS, n: int, seed: int) -> np.ndarray:
    """Indices of n of the PSIS draws, by systematic resampling with the smoothed weights: draw s
    appears floor(n w_s) or ceil(n w_s) times, n w_s on average (so moments of the resampled draws
    are unbiased for the weighted ones), and never twice when n w_s <= 1 (a sample without
    replacement). Returned in random order."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x52455341])))
    cw = np.cumsum(result.weights)
    cw /= cw[-1]
    positions = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(cw, positions, side="right")
    idx = np.minimum(idx, result.draws - 1)
    return rng.permutation(idx)


def shape(result: Optional[PSIS]) -> str:
    """q's shape against the posterior from a PSIS result: "good" (k-hat <= KHAT_GOOD and ESS >=
    ESS_GOOD of the draws), "fair" (k-hat <= KHAT_BAD, or a tails-only k-hat), "poor", or "unknown"
    (no result, or k-hat not computed with some finite ratios)."""
    if result is None:
        return "unknown"
    k = result.khat
    if math.isnan(k):
        return "unknown" if result.ess > 0 else "poor"
    if k <= KHAT_GOOD and result.ess >= ESS_GOOD * result.draws:
        return "good"
    if k <= KHAT_BAD or tails_only(result):
        return "fair"
    return "poor"


def tails_only(result: PSIS) -> bool:
    """k-hat > KHAT_BAD, yet the weights hardly vary (ESS >= TAILS_ONLY_ESS of the draws, every
    ratio finite): the posterior's tails are heavier than q's, while q matches it where its mass is.
    q's moments can be used; importance weighting (and tail probabilities) cannot."""
    return (
        math.isfinite(result.khat)
        and result.khat > KHAT_BAD
        and result.n_nonfinite == 0
        and result.ess >= TAILS_ONLY_ESS * result.draws
    )


def khat_message(result: PSIS, family: str) -> str:
    """What k-hat says about a fit, and what to try."""
    k = result.khat
    lead = (
        f"PSIS k-hat = {k:.2f} > {KHAT_BAD} (from {result.draws} draws of q, importance ESS {result.ess:.0f})"
        if math.isfinite(k)
        else f"PSIS k-hat = {k} ({result.note})"
    )
    if result.n_nonfinite:
        lead += f"; {result.n_nonfinite} of the draws had a non-finite log density"
    advice = ["a reparameterisation (e.g. non-centring a hierarchical model's group effects)"]
    if family != "fullrank":
        advice.insert(0, f"the full-rank family (family='fullrank'; this fit is {family!r})")
    advice.append(
        "fit.sample(n, importance='psis') / fit.mean(importance='psis') (also unreliable at this "
        "k-hat, but they show which way q is off)"
    )
    text = (
        f"{lead}: q is a poor approximation of the posterior, which has mass that q misses; q's means, sds "
        f"and draws may be off. Try " + "; ".join(advice) + "."
    )
    return text


def repr_part(result: Optional[PSIS]) -> str:
    """The k-hat part of ``repr(fit)``."""
    if result is None:
        return ""
    k = result.khat
    ess = f" ess={result.ess:.0f}/{result.draws}"
    if math.isnan(k):
        return f" khat=n/a ({result.note})"
    if tails_only(result):
        return f" khat={k:.2f}{ess} (heavy tails only: the weights hardly vary, q's moments are usable)"
    if k > KHAT_BAD:
        return f" khat={k:.2f}{ess} (> {KHAT_BAD}: q is a poor approximation, its moments may be off)"
    if k > KHAT_GOOD:
        return (
            f" khat={k:.2f}{ess} ({KHAT_GOOD}-{KHAT_BAD}: q is somewhat off; importance='psis' "
            f"results are usually better)"
        )
    if shape(result) == "fair":
        return (
            f" khat={k:.2f}{ess} (ESS below {ESS_GOOD:.0%}: q is somewhat off; importance='psis' results "
            f"are usually better)"
        )
    return f" khat={k:.2f}{ess}"
