"""The 12 posteriordb reference posteriors of tests/data/posteriordb, written with fastvi's API.

Each builder takes the posteriordb ``data`` dict (and optionally a fresh ``model`` to build into,
e.g. a subclass that reparameterises; default ``fv.Model()``) and returns ``(model, targets)``:

- ``model``: a :class:`fastvi.Model` with the same log density as the Stan program, up to a
  constant (fastvi's kernels carry full normalising constants; that does not move the posterior);
- ``targets``: ``{reference name: (fastvi name, index)}``, e.g. ``"beta[1]": ("beta", 0)`` and
  ``"sigma": ("sigma", None)``. The reference names are the keys of the JSON file's ``reference``
  or ``reference_derived``. A name ``log(x)`` is compared with the *unconstrained* coordinate of
  the fastvi parameter ``x`` (fastvi maps a ``lower=0`` parameter through x = exp(ζ), so ζ = log x):
  that is the coordinate the Gaussian q actually lives in. Likewise ``logit((x+1)/2)`` (tests/gallery.py)
  is the unconstrained coordinate of an interval parameter x on (-1, 1).

Conventions (the same for every model):

- Stan's 1-based ``beta[k]`` is fastvi's ``beta[k-1]``.
- When the Stan model puts the intercept in ``beta[1]``, the design matrix gets a leading column of
  ones, so that ``beta`` keeps Stan's numbering.
- A parameter with no prior factor has fastvi's flat (improper) prior, as in Stan. The log-Jacobian
  of a bounded parameter's transform is added by fastvi itself, as Stan does.
- Stan's ``cauchy(0, s)`` / ``normal(0, s)`` on a ``real<lower=0>`` parameter is written as
  fastvi's ``half_cauchy`` / ``half_normal``: the same density up to the constant log 2.
- Normal linear likelihoods go through :func:`normal_linear`, which uses the fused
  ``normal_id_glm`` kernel when this build has it and the equivalent expression
  ``normal(y | X @ beta, sigma)`` otherwise.

Also here (used by bench/accuracy.py and tests/test_posteriordb.py): :func:`load`, :func:`build`,
:func:`reference_moments` and :func:`compare`.

This module and its data live under tests/ because the tests use them; the benchmark scripts in
bench/ import them from here (bench may depend on tests, never the reverse). Test modules import
it as ``import posteriors``: pytest's default (prepend) import mode puts tests/ on sys.path.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import fastvi as fv
import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data" / "posteriordb"

Targets = Dict[str, Tuple[str, Optional[int]]]


# ---------------------------------------------------------------------------------------------
# shared building blocks


def has_glm() -> bool:
    """True when this fastvi build registers the fused ``normal_id_glm`` kernel."""
    return "normal_id_glm" in fv.kernels()


def normal_linear(m: fv.Model, y: np.ndarray, X: np.ndarray, beta, sigma, alpha=None) -> None:
    """y ~ Normal(alpha + X @ beta, sigma), with the fused GLM kernel when it is available."""
    if has_glm():
        inputs = dict(X=X, beta=beta, scale=sigma)
        if alpha is not None:
            inputs["alpha"] = alpha
        m.add("normal_id_glm", y, **inputs)
    else:
        loc = X @ beta if alpha is None else alpha + X @ beta
        m.add("normal", y, loc=loc, scale=sigma)


def _vector(name: str, n: int) -> Targets:
    """{"name[1]": (name, 0), ..., "name[n]": (name, n-1)}."""
    return {f"{name}[{k + 1}]": (name, k) for k in range(n)}


def _col(data: dict, key: str) -> np.ndarray:
    return np.asarray(data[key], dtype=float)


def _with_intercept(*columns: np.ndarray) -> np.ndarray:
    """Design matrix [1, columns...] (Stan's beta[1] is the intercept)."""
    return np.column_stack([np.ones_like(columns[0]), *columns])


def _flat_beta_regression(
    y: np.ndarray, X: np.ndarray, sigma_prior: Optional[float], model: Optional[fv.Model] = None
) -> Tuple[fv.Model, Targets]:
    """The ARM pattern: y ~ Normal(X beta, sigma), flat beta, and on sigma either a half-Cauchy
    with the given scale or (None) a flat prior on (0, inf)."""
    m = fv.Model() if model is None else model
    K = X.shape[1]
    beta = m.param("beta", shape=(K,))  # flat (improper) prior: no factor
    sigma = m.param("sigma", lower=0.0)
    if sigma_prior is not None:
        m.add("half_cauchy", sigma, scale=sigma_prior)
    normal_linear(m, y, X, beta, sigma)
    return m, {**_vector("beta", K), "sigma": ("sigma", None), "log(sigma)": ("sigma", None)}


# ---------------------------------------------------------------------------------------------
# the posteriors


def eight_schools_noncentered(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """theta_trans ~ N(0, 1), mu ~ N(0, 5), tau ~ HalfCauchy(0, 5), theta = mu + tau * theta_trans,
    y_j ~ N(theta_j, sigma_j) with sigma_j known.

    The model's own coordinates are (theta_trans, mu, log tau): theta_trans[j] is compared with
    ``reference_derived`` (posteriordb only stores theta). theta is also recorded as a deterministic
    and compared with the reference theta (its moments under q are Monte Carlo, 10,000 draws)."""
    J = int(data["J"])
    y, s = _col(data, "y"), _col(data, "sigma")
    m = fv.Model() if model is None else model
    mu = m.param("mu")
    tau = m.param("tau", lower=0.0)
    theta_trans = m.param("theta_trans", shape=(J,))
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_cauchy", tau, scale=5.0)  # cauchy(0, 5) on real<lower=0>
    m.add("normal", theta_trans, loc=0.0, scale=1.0)
    theta = m.deterministic("theta", mu + tau * theta_trans)
    m.add("normal", y, loc=theta, scale=s)
    targets = {
        **_vector("theta_trans", J),
        "mu": ("mu", None),
        "tau": ("tau", None),
        "log(tau)": ("tau", None),
        **_vector("theta", J),
    }
    return m, targets


def eight_schools_centered(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """theta_j ~ N(mu, tau), mu ~ N(0, 5), tau ~ HalfCauchy(0, 5), y_j ~ N(theta_j, sigma_j).

    The same posterior as the non-centred model, but in (theta, mu, log tau) coordinates it is a
    funnel: no Gaussian fits it well (see bench/README.md)."""
    J = int(data["J"])
    y, s = _col(data, "y"), _col(data, "sigma")
    m = fv.Model() if model is None else model
    mu = m.param("mu")
    tau = m.param("tau", lower=0.0)
    theta = m.param("theta", shape=(J,))
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_cauchy", tau, scale=5.0)
    m.add("normal", theta, loc=mu, scale=tau)
    m.add("normal", y, loc=theta, scale=s)
    return m, {**_vector("theta", J), "mu": ("mu", None), "tau": ("tau", None), "log(tau)": ("tau", None)}


def kidiq_kidscore_momiq(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """kid_score ~ N(beta1 + beta2 mom_iq, sigma); flat beta; sigma ~ HalfCauchy(0, 2.5).
    mom_iq is left uncentred (≈100), as in the Stan program: corr(beta1, beta2) ≈ −0.99."""
    X = _with_intercept(_col(data, "mom_iq"))
    return _flat_beta_regression(_col(data, "kid_score"), X, sigma_prior=2.5, model=model)


def kidiq_kidscore_interaction(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """kid_score ~ N(beta1 + beta2 mom_hs + beta3 mom_iq + beta4 mom_hs*mom_iq, sigma); flat beta;
    sigma ~ HalfCauchy(0, 2.5). The interaction column is Stan's transformed data."""
    hs, iq = _col(data, "mom_hs"), _col(data, "mom_iq")
    X = _with_intercept(hs, iq, hs * iq)
    return _flat_beta_regression(_col(data, "kid_score"), X, sigma_prior=2.5, model=model)


def mesquite_logmesquite(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """log weight ~ N(beta1 + beta2 log diam1 + beta3 log diam2 + beta4 log canopy_height
    + beta5 log total_height + beta6 log density + beta7 group, sigma); flat beta and flat sigma > 0.
    The logs are Stan's transformed data; group (0/1) enters untransformed."""
    logs = [np.log(_col(data, k)) for k in ("diam1", "diam2", "canopy_height", "total_height", "density")]
    X = _with_intercept(*logs, _col(data, "group"))
    return _flat_beta_regression(np.log(_col(data, "weight")), X, sigma_prior=None, model=model)


def earnings_logearn_interaction(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """log earn ~ N(beta1 + beta2 height + beta3 male + beta4 height*male, sigma); flat beta and
    sigma. log(earn) (all earn > 0 in this data) and height*male are Stan's transformed data;
    height is uncentred (≈66 in), hence the near-collinear design."""
    h, male = _col(data, "height"), _col(data, "male")
    X = _with_intercept(h, male, h * male)
    return _flat_beta_regression(np.log(_col(data, "earn")), X, sigma_prior=None, model=model)


def earnings_earn_height(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """earn ~ N(beta1 + beta2 height, sigma) on the raw dollar scale; flat beta and sigma.
    Deliberately left unscaled (beta1 ≈ −6e4, sigma ≈ 1.9e4): this tests the engine's robustness
    to scale, which is the point of this posterior."""
    X = _with_intercept(_col(data, "height"))
    return _flat_beta_regression(_col(data, "earn"), X, sigma_prior=None, model=model)


def nes2000_nes(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """partyid7 ~ N(beta1 + beta2 real_ideo + beta3 race_adj + beta4 age30_44 + beta5 age45_64
    + beta6 age65up + beta7 educ1 + beta8 gender + beta9 income, sigma); flat beta and sigma.
    The age dummies are Stan's transformed data: age_discrete == 2, 3, 4 (1 is the baseline).
    The data's ``year`` column is unused."""
    age = np.asarray(data["age_discrete"])
    dummies = [(age == k).astype(float) for k in (2, 3, 4)]
    X = _with_intercept(
        _col(data, "real_ideo"),
        _col(data, "race_adj"),
        *dummies,
        _col(data, "educ1"),
        _col(data, "gender"),
        _col(data, "income"),
    )
    return _flat_beta_regression(_col(data, "partyid7"), X, sigma_prior=None, model=model)


def sblr(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """y ~ N(X beta, sigma), no intercept; beta_d ~ N(0, 10); sigma ~ HalfNormal(0, 10).
    Used for both sblrc (correlated design) and sblri (independent design)."""
    X = np.asarray(data["X"], dtype=float)
    y = _col(data, "y")
    D = X.shape[1]
    m = fv.Model() if model is None else model
    beta = m.param("beta", shape=(D,))
    sigma = m.param("sigma", lower=0.0)
    m.add("normal", beta, loc=0.0, scale=10.0)
    m.add("half_normal", sigma, scale=10.0)  # normal(0, 10) on real<lower=0>
    normal_linear(m, y, X, beta, sigma)
    return m, {**_vector("beta", D), "sigma": ("sigma", None), "log(sigma)": ("sigma", None)}


def ark(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """AR(K): y[t] ~ N(alpha + sum_k beta[k] y[t-k], sigma) for t = K+1..T; alpha, beta ~ N(0, 10);
    sigma ~ HalfCauchy(0, 2.5). Written as a regression on the lag matrix whose row for t is
    [y[t-1], ..., y[t-K]] (the intercept is the separate parameter alpha, as in Stan)."""
    K, T = int(data["K"]), int(data["T"])
    y = _col(data, "y")
    assert y.shape == (T,)
    # 0-based: response y[K..T-1]; lag k of row t is y[t-k]
    lags = np.column_stack([y[K - k : T - k] for k in range(1, K + 1)])
    m = fv.Model() if model is None else model
    alpha = m.param("alpha")
    beta = m.param("beta", shape=(K,))
    sigma = m.param("sigma", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=10.0)
    m.add("normal", beta, loc=0.0, scale=10.0)
    m.add("half_cauchy", sigma, scale=2.5)
    normal_linear(m, y[K:], lags, beta, sigma, alpha=alpha)
    return m, {"alpha": ("alpha", None), **_vector("beta", K), "sigma": ("sigma", None), "log(sigma)": ("sigma", None)}


def kilpisjarvi(data: dict, model: Optional[fv.Model] = None) -> Tuple[fv.Model, Targets]:
    """y ~ N(alpha + beta x, sigma) with x = year + 2000 (3952..4013, uncentred on purpose);
    alpha ~ N(pmualpha, psalpha), beta ~ N(pmubeta, psbeta) from the data; flat sigma > 0.
    corr(alpha, beta) ≈ −0.99999: the hardest conditioning in the set. ``xpred`` is unused."""
    x, y = _col(data, "x"), _col(data, "y")
    m = fv.Model() if model is None else model
    alpha = m.param("alpha")
    beta = m.param("beta")
    sigma = m.param("sigma", lower=0.0)  # flat prior on (0, inf)
    m.add("normal", alpha, loc=float(data["pmualpha"]), scale=float(data["psalpha"]))
    m.add("normal", beta, loc=float(data["pmubeta"]), scale=float(data["psbeta"]))
    m.add("normal", y, loc=alpha + beta * x, scale=sigma)
    return m, {
        "alpha": ("alpha", None),
        "beta": ("beta", None),
        "sigma": ("sigma", None),
        "log(sigma)": ("sigma", None),
    }


BUILDERS: Dict[str, Callable[[dict], Tuple[fv.Model, Targets]]] = {
    "eight_schools-eight_schools_noncentered": eight_schools_noncentered,
    "eight_schools-eight_schools_centered": eight_schools_centered,
    "kidiq-kidscore_momiq": kidiq_kidscore_momiq,
    "kidiq-kidscore_interaction": kidiq_kidscore_interaction,
    "mesquite-logmesquite": mesquite_logmesquite,
    "earnings-logearn_interaction": earnings_logearn_interaction,
    "earnings-earn_height": earnings_earn_height,
    "nes2000-nes": nes2000_nes,
    "sblrc-blr": sblr,
    "sblri-blr": sblr,
    "arK-arK": ark,
    "kilpisjarvi_mod-kilpisjarvi": kilpisjarvi,
}
NAMES: List[str] = list(BUILDERS)

# Posteriors that are not close to Gaussian in fastvi's unconstrained space, so that no Gaussian q
# (whatever the family) can meet the accuracy target; docs/performance-notes.md gives the evidence.
# They are still fitted and reported, but not counted against the target.
NOT_GAUSSIAN: Dict[str, str] = {
    "eight_schools-eight_schools_centered": "funnel: the sd of theta_j - mu is 0.22 when log tau < -1 and 8.9 when log tau > 2; a Gaussian "
    "has one covariance for all tau",
    "eight_schools-eight_schools_noncentered": "log tau is skewed with a long left tail (exact marginal by quadrature: skewness -1.31, excess "
    "kurtosis 3.2); the KL(q||p)-optimal Gaussian fits the bulk and its log tau sd is ~0.66x the "
    "reference",
}


# ---------------------------------------------------------------------------------------------
# loading and comparing


def load(name: str) -> dict:
    """The JSON file of posterior ``name`` from the in-repo copy."""
    with open(DATA_DIR / f"{name}.json") as f:
        return json.load(f)


def build(name: str, info: Optional[dict] = None) -> Tuple[fv.Model, Targets, dict]:
    """(model, targets, JSON file) for posterior ``name``."""
    info = load(name) if info is None else info
    model, targets = BUILDERS[name](info["data"])
    missing = [k for k in targets if k not in info["reference"] and k not in info.get("reference_derived", {})]
    if missing:
        raise KeyError(f"{name}: no reference for {missing}")
    return model, targets, info


def reference_moments(info: dict, key: str) -> Tuple[float, float]:
    """(mean, sd) of ``key`` in the reference draws (``reference``, else ``reference_derived``)."""
    ref = info["reference"].get(key) or info["reference_derived"][key]
    return float(ref["mean"]), float(ref["sd"])


def mf_sd_ratio(info: dict) -> float:
    """The README's MF-sd ratio: the smallest sd ratio a KL-optimal mean-field Gaussian would give
    if the posterior were Gaussian with the reference draws' covariance (unconstrained space)."""
    return float(info["reference_unconstrained_summary"]["min_meanfield_sd_ratio"])


@dataclass
class Row:
    """One compared quantity: fitted and reference moments."""

    key: str
    mean: float
    sd: float
    ref_mean: float
    ref_sd: float

    @property
    def mean_err(self) -> float:
        """(mean − reference mean) / reference sd."""
        return (self.mean - self.ref_mean) / self.ref_sd

    @property
    def log_sd_ratio(self) -> float:
        """log(sd / reference sd); −inf or nan when the fitted sd is 0 or not finite."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.log(self.sd / self.ref_sd))


def psis_unconstrained_moments(approx: fv.Approximation) -> Tuple[np.ndarray, np.ndarray]:
    """Self-normalised PSIS mean and sd of every unconstrained coordinate, from the fit's PSIS
    draws and smoothed weights (``approx.psis``)."""
    from fastvi import psis

    result = approx.psis
    w = result.weights
    total, sq = np.zeros(approx.model.dim), np.zeros(approx.model.dim)
    shift = approx.unconstrained_mean()
    for first, zeta in psis.draws(approx, result.draws, result.seed):
        wb = w[first : first + zeta.shape[1]]
        keep = wb > 0
        dev = zeta[:, keep] - shift[:, None]
        total += dev @ wb[keep]
        sq += (dev * dev) @ wb[keep]
    m = total / w.sum()
    return shift + m, np.sqrt(np.maximum(sq / w.sum() - m * m, 0.0))


def fitted_moments(
    approx: fv.Approximation, targets: Targets, importance: Optional[str] = None
) -> Dict[str, Tuple[float, float]]:
    """(mean, sd) under q of every target: constrained moments from ``approx.mean()/std()``, and for
    ``log(x)`` / ``logit(...)`` targets the Gaussian moments of x's unconstrained coordinate. ``importance="psis"``:
    the PSIS-corrected moments instead (``approx.mean(importance="psis")``, and weighted moments of
    the unconstrained coordinate)."""
    means, sds = approx.mean(importance=importance), approx.std(importance=importance)
    if importance is None:
        mu = approx.unconstrained_mean()
        sd_u = np.sqrt(np.maximum(np.diag(approx.unconstrained_cov()), 0.0))
    else:
        mu, sd_u = psis_unconstrained_moments(approx)
    params = approx.model.params
    out = {}
    for key, (name, index) in targets.items():
        if key.startswith(("log(", "logit(")):
            p = params[name]
            # log(x) for lower=0, log(x-a) for lower=a (tests/gallery_applied.py's nu > 1)
            if key.startswith("log(") and not (math.isfinite(p.lower) and math.isinf(p.upper)):
                raise ValueError(f"{key}: {name} is not a lower-bounded parameter, so its coordinate is not a log")
            if key.startswith("logit(") and not (math.isfinite(p.lower) and math.isfinite(p.upper)):
                raise ValueError(f"{key}: {name} is not an interval parameter, so its coordinate is not a logit")
            j = p.offset + (0 if index is None else index)
            out[key] = (float(mu[j]), float(sd_u[j]))
        else:
            m, s = np.asarray(means[name]), np.asarray(sds[name])
            out[key] = (
                float(m if index is None else m.ravel()[index]),
                float(s if index is None else s.ravel()[index]),
            )
    return out


def compare(approx: fv.Approximation, targets: Targets, info: dict, importance: Optional[str] = None) -> List[Row]:
    """One :class:`Row` per target, in the order of ``targets`` (``importance``: see fitted_moments)."""
    fitted = fitted_moments(approx, targets, importance)
    return [Row(k, *fitted[k], *reference_moments(info, k)) for k in targets]


def worst(rows: List[Row]) -> Tuple[Row, Row]:
    """(row with the largest |mean error|, row with the largest |log sd ratio|); a non-finite
    error counts as the largest."""

    def key_of(f):
        return lambda r: math.inf if not math.isfinite(f(r)) else abs(f(r))

    return (max(rows, key=key_of(lambda r: r.mean_err)), max(rows, key=key_of(lambda r: r.log_sd_ratio)))
