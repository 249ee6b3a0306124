"""The applied-model gallery (issue 11, section 6): ten models written with fastvi's built-ins only.

With three models of tests/gallery.py (``varying_intercepts``, ``horseshoe_logit``, ``stoch_vol``)
and posteriordb's non-centred eight schools (tests/posteriors.py, reused with its posteriordb
reference), these make the fourteen models of bench/README.md's "Applied-model gallery" table.
Each model has a data function (simulated from a fixed numpy seed) and a fastvi builder written
the way a Stan or PyMC user would, one line per likelihood:

- ``negbin_regression``: y_i ~ NegBinomial2(exp(alpha + x_i . beta), phi), N = 400, K = 3;
  alpha ~ N(0, 2.5), beta_k ~ N(0, 1), phi ~ Exponential(0.1).
- ``ordered_logistic``: y_i in {0..4} ~ OrderedLogistic(x_i . beta, c), N = 500, K = 2;
  beta_k ~ N(0, 2.5), c (ordered, 4 cutpoints) ~ N(0, 5).
- ``softmax_regression``: y_i in {0, 1, 2} ~ CategoricalLogit(x_i B), N = 400, x_i = (1, 3
  features), B (4 x 3) with B_kc ~ N(0, 1) (identified by the prior, as PyMC users write it).
- ``ar1``: y_t ~ N(alpha + rho y_{t-1}, sigma) for t = 2..T given y_1, T = 200 (Stan User's
  Guide); alpha ~ N(0, 5), rho ~ Uniform(-1, 1), sigma ~ HalfNormal(2).
- ``normal_mixture``: y_i ~ w N(mu_1, sigma_1) + (1 - w) N(mu_2, sigma_2), N = 300, mu ordered
  (identifies the components), mu_k ~ N(0, 5), sigma_k ~ HalfNormal(2), w ~ Beta(2, 2).
- ``weibull_survival``: t_i ~ Weibull(k, exp(alpha + x_i . beta)), N = 300, K = 2, right-censored
  at a per-row time (25 % of rows: their log survival function); alpha ~ N(0, 5),
  beta_k ~ N(0, 1), k ~ Gamma(2, 1).
- ``poisson_exposure``: y_i ~ Poisson(E_i exp(alpha + x_i . beta)), N = 300, K = 3, exposures E_i
  log-normal (offset log E_i); alpha ~ N(0, 2.5), beta_k ~ N(0, 1).
- ``student_t_df``: y_i ~ StudentT(nu, mu, sigma), N = 150 (true nu = 4); mu ~ N(0, 10),
  sigma ~ HalfNormal(5), nu > 1 ~ Gamma(2, 0.1) (Stan's prior recommendations; truncated at 1).
- ``simplex_categorical``: y_i in {0..4} ~ Categorical(theta), N = 200, theta (simplex) ~
  Dirichlet(2, ..., 2). The posterior is Dirichlet(2 + counts): exact moments are known.
- ``gp_regression``: y ~ MultiNormal(0, K + sigma^2 I), K_ij = alpha^2 exp(-(x_i - x_j)^2 /
  (2 rho^2)), N = 50 points on [0, 10]; rho ~ InvGamma(5, 5), alpha ~ HalfNormal(1), sigma ~
  HalfNormal(1) (the Stan case study's priors). Needs ``fv.cholesky``, ``fv.add_diag`` and
  ``fv.exp_quad_cov`` (not in every build: :func:`gp_available`).

The reference JSON files (tests/data/gallery/<name>.json) are written by
bench/nuts_reference_applied.py (NumPyro NUTS) and hold the data. Key conventions are
tests/gallery.py's and tests/posteriors.py's, extended to the new bounds and matrices: ``B[2,3]``
(1-based row, column) for a matrix element; ``log(x)`` for a lower=0 parameter's unconstrained
coordinate, ``log(nu-1)`` for lower=1, ``logit(w)`` for (0, 1) and ``logit((rho+1)/2)`` for
(-1, 1). Vector-transformed parameters (ordered, simplex) are compared in the constrained space
only. :data:`SPECS` lists the parameters as (name, shape, lower, upper, transform) in declaration
order, so that the unconstrained layout is known without fastvi (the NumPyro script uses it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

try:  # the NumPyro script imports this module (data, SPECS) in a venv without fastvi
    import fastvi as fv
except ImportError:  # pragma: no cover
    fv = None

DATA_DIR = Path(__file__).resolve().parent / "data" / "gallery"

# ---------------------------------------------------------------------------------------------
# data (fixed seeds)


def _rng(k: int) -> np.random.Generator:
    return np.random.default_rng(20261210 + k)


def data_negbin_regression() -> dict:
    rng = _rng(1)
    N, K, phi = 400, 3, 2.5
    X = rng.standard_normal((N, K))
    mu = np.exp(1.0 + X @ np.array([0.5, -0.3, 0.2]))
    y = rng.poisson(rng.gamma(phi, mu / phi))  # gamma-Poisson = NB2(mu, phi)
    return {"N": N, "K": K, "X": X.tolist(), "y": y.tolist()}


def data_ordered_logistic() -> dict:
    rng = _rng(2)
    N = 500
    X = rng.standard_normal((N, 2))
    cut = np.array([-1.5, -0.3, 0.6, 1.8])
    latent = X @ np.array([1.0, -0.5]) + rng.logistic(size=N)
    y = (latent[:, None] > cut).sum(axis=1)
    return {"N": N, "K": 2, "C": 5, "X": X.tolist(), "y": y.tolist()}


def data_softmax_regression() -> dict:
    rng = _rng(3)
    N, C = 400, 3
    X = np.column_stack([np.ones(N), rng.standard_normal((N, 3))])
    B = np.column_stack([np.zeros(4), [0.5, 1.0, -0.5, 0.0], [-0.3, 0.0, 0.8, -1.0]])
    eta = X @ B
    p = np.exp(eta - eta.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.uniform(size=N)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return {"N": N, "K": 4, "C": C, "X": X.tolist(), "y": y.tolist()}


def data_ar1() -> dict:
    rng = _rng(4)
    T, alpha, rho, sigma = 200, 0.5, 0.7, 1.0
    y = np.empty(T)
    y[0] = alpha / (1 - rho) + sigma / math.sqrt(1 - rho**2) * rng.standard_normal()
    for t in range(1, T):
        y[t] = alpha + rho * y[t - 1] + sigma * rng.standard_normal()
    return {"T": T, "y": y.tolist()}


def data_normal_mixture() -> dict:
    rng = _rng(5)
    N = 300
    z = rng.uniform(size=N) < 0.35
    y = np.where(z, -1.5 + 0.8 * rng.standard_normal(N), 2.0 + 1.2 * rng.standard_normal(N))
    return {"N": N, "y": y.tolist()}


def data_weibull_survival() -> dict:
    rng = _rng(6)
    N, k = 300, 1.5
    X = rng.standard_normal((N, 2))
    scale = np.exp(1.0 + X @ np.array([0.5, -0.4]))
    t = scale * rng.weibull(k, size=N)
    c = rng.uniform(1.0, 8.0, size=N)  # administrative censoring times
    event = t <= c
    return {"N": N, "K": 2, "X": X.tolist(), "t": np.minimum(t, c).tolist(), "event": event.astype(int).tolist()}


def data_poisson_exposure() -> dict:
    rng = _rng(7)
    N, K = 300, 3
    X = rng.standard_normal((N, K))
    exposure = rng.lognormal(1.0, 0.7, size=N)
    y = rng.poisson(exposure * np.exp(-0.5 + X @ np.array([0.3, -0.2, 0.1])))
    return {"N": N, "K": K, "X": X.tolist(), "y": y.tolist(), "exposure": exposure.tolist()}


def data_student_t_df() -> dict:
    rng = _rng(8)
    N = 150
    y = 1.0 + 2.0 * rng.standard_t(4.0, size=N)
    return {"N": N, "y": y.tolist()}


def data_simplex_categorical() -> dict:
    rng = _rng(9)
    N, K = 200, 5
    y = rng.choice(K, size=N, p=[0.1, 0.15, 0.2, 0.25, 0.3])
    return {"N": N, "K": K, "y": y.tolist()}


def data_gp_regression() -> dict:
    rng = _rng(10)
    N = 50
    x = np.sort(rng.uniform(0.0, 10.0, size=N))
    y = np.sin(x) + 0.5 * np.cos(2.5 * x) * np.exp(-0.1 * x) + 0.3 * rng.standard_normal(N)
    return {"N": N, "x": x.tolist(), "y": y.tolist()}


# ---------------------------------------------------------------------------------------------
# the fastvi models (parameters declared in SPECS order; built-ins only)


def _arr(data: dict, key: str, dtype=float) -> np.ndarray:
    return np.asarray(data[key], dtype=dtype)


def build_negbin_regression(data: dict, m):
    X, y = _arr(data, "X"), _arr(data, "y")
    alpha, beta, phi = m.param("alpha"), m.param("beta", shape=(int(data["K"]),)), m.param("phi", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("exponential", phi, rate=0.1)
    m.add("neg_binomial_2_log", y, log_mu=alpha + X @ beta, phi=phi)


def build_ordered_logistic(data: dict, m):
    X, y = _arr(data, "X"), _arr(data, "y", np.int64)
    beta = m.param("beta", shape=(int(data["K"]),))
    c = m.param("c", shape=(int(data["C"]) - 1,), transform="ordered")
    m.add("normal", beta, loc=0.0, scale=2.5)
    m.add("normal", c, loc=0.0, scale=5.0)
    m.add("ordered_logistic", y, eta=X @ beta, cutpoints=c)


def build_softmax_regression(data: dict, m):
    X, y = _arr(data, "X"), _arr(data, "y", np.int64)
    B = m.param("B", shape=(int(data["K"]), int(data["C"])))
    m.add("normal", B, loc=0.0, scale=1.0)
    m.add("categorical_logit", y, logits=X @ B)


def build_ar1(data: dict, m):
    y = _arr(data, "y")
    alpha, rho, sigma = m.param("alpha"), m.param("rho", lower=-1.0, upper=1.0), m.param("sigma", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=5.0)
    m.add("half_normal", sigma, scale=2.0)  # rho: flat on (-1, 1)
    m.add("normal", y[1:], loc=alpha + rho * y[:-1], scale=sigma)


def build_normal_mixture(data: dict, m):
    y = _arr(data, "y")
    w = m.param("w", lower=0.0, upper=1.0)
    mu = m.param("mu", shape=(2,), transform="ordered")
    sigma = m.param("sigma", shape=(2,), lower=0.0)
    m.add("beta", w, a=2.0, b=2.0)
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_normal", sigma, scale=2.0)
    lp1 = fv.logp("normal", y, loc=mu[0], scale=sigma[0])
    lp2 = fv.logp("normal", y, loc=mu[1], scale=sigma[1])
    m.factor(fv.log_mix(w, lp1, lp2), name="mixture")


def build_weibull_survival(data: dict, m):
    X, t, event = _arr(data, "X"), _arr(data, "t"), _arr(data, "event", bool)
    alpha, beta, k = m.param("alpha"), m.param("beta", shape=(int(data["K"]),)), m.param("k", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=5.0)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("gamma", k, shape=2.0, rate=1.0)
    m.add("weibull", t[event], shape=k, scale=fv.exp(alpha + X[event] @ beta))
    m.add("weibull_lccdf", t[~event], shape=k, scale=fv.exp(alpha + X[~event] @ beta))  # right-censored


def build_poisson_exposure(data: dict, m):
    X, y, E = _arr(data, "X"), _arr(data, "y"), _arr(data, "exposure")
    alpha, beta = m.param("alpha"), m.param("beta", shape=(int(data["K"]),))
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("poisson_log_glm", y, X=X, alpha=alpha, beta=beta, offset=np.log(E))


def build_student_t_df(data: dict, m):
    y = _arr(data, "y")
    mu, sigma, nu = m.param("mu"), m.param("sigma", lower=0.0), m.param("nu", lower=1.0)
    m.add("normal", mu, loc=0.0, scale=10.0)
    m.add("half_normal", sigma, scale=5.0)
    m.add("gamma", nu, shape=2.0, rate=0.1)
    m.add("student_t", y, df=nu, loc=mu, scale=sigma)


def build_simplex_categorical(data: dict, m):
    y, K = _arr(data, "y", np.int64), int(data["K"])
    theta = m.param("theta", shape=(K,), transform="simplex")
    m.add("dirichlet", theta, alpha=np.full(K, 2.0))
    m.add("categorical", y, theta=theta)


def gp_available() -> bool:
    """Whether this fastvi has the GP building blocks (``fv.cholesky``, ``fv.add_diag``,
    ``fv.exp_quad_cov``); added after the gallery was written."""
    return fv is not None and all(hasattr(fv, f) for f in ("cholesky", "add_diag", "exp_quad_cov"))


def build_gp_regression(data: dict, m):
    if not gp_available():
        raise NotImplementedError("gp_regression needs fv.cholesky, fv.add_diag and fv.exp_quad_cov")
    x, y = _arr(data, "x"), _arr(data, "y")
    rho, alpha, sigma = m.param("rho", lower=0.0), m.param("alpha", lower=0.0), m.param("sigma", lower=0.0)
    m.add("inv_gamma", rho, shape=5.0, scale=5.0)
    m.add("half_normal", alpha, scale=1.0)
    m.add("half_normal", sigma, scale=1.0)
    L = fv.cholesky(fv.add_diag(fv.exp_quad_cov(x, alpha, rho), sigma**2))  # type: ignore[attr-defined]
    m.add("multi_normal_cholesky", y, mu=0.0, L=L)


# ---------------------------------------------------------------------------------------------
# specs: parameters (name, shape, lower, upper, transform) in declaration order

Spec = Tuple[str, Tuple[int, ...], Optional[float], Optional[float], Optional[str]]
_R, _POS = (None, None, None), (0.0, None, None)


def _p(name: str, shape=(), bounds=_R) -> Spec:
    return (name, tuple(shape), *bounds)


SPECS: Dict[str, dict] = {
    "negbin_regression": dict(
        data=data_negbin_regression,
        build=build_negbin_regression,
        params=[_p("alpha"), _p("beta", (3,)), _p("phi", (), _POS)],
    ),
    "ordered_logistic": dict(
        data=data_ordered_logistic,
        build=build_ordered_logistic,
        params=[_p("beta", (2,)), _p("c", (4,), (None, None, "ordered"))],
    ),
    "softmax_regression": dict(data=data_softmax_regression, build=build_softmax_regression, params=[_p("B", (4, 3))]),
    "ar1": dict(
        data=data_ar1, build=build_ar1, params=[_p("alpha"), _p("rho", (), (-1.0, 1.0, None)), _p("sigma", (), _POS)]
    ),
    "normal_mixture": dict(
        data=data_normal_mixture,
        build=build_normal_mixture,
        params=[_p("w", (), (0.0, 1.0, None)), _p("mu", (2,), (None, None, "ordered")), _p("sigma", (2,), _POS)],
    ),
    "weibull_survival": dict(
        data=data_weibull_survival,
        build=build_weibull_survival,
        params=[_p("alpha"), _p("beta", (2,)), _p("k", (), _POS)],
    ),
    "poisson_exposure": dict(
        data=data_poisson_exposure, build=build_poisson_exposure, params=[_p("alpha"), _p("beta", (3,))]
    ),
    "student_t_df": dict(
        data=data_student_t_df,
        build=build_student_t_df,
        params=[_p("mu"), _p("sigma", (), _POS), _p("nu", (), (1.0, None, None))],
    ),
    "simplex_categorical": dict(
        data=data_simplex_categorical,
        build=build_simplex_categorical,
        params=[_p("theta", (5,), (None, None, "simplex"))],
    ),
    "gp_regression": dict(
        data=data_gp_regression,
        build=build_gp_regression,
        params=[_p("rho", (), _POS), _p("alpha", (), _POS), _p("sigma", (), _POS)],
    ),
}
NAMES: List[str] = list(SPECS)


def _size(shape) -> int:
    return int(np.prod(shape)) if shape else 1


def free_size(spec: Spec) -> int:
    """Unconstrained coordinates of a parameter block (a K-simplex has K - 1)."""
    name, shape, lo, hi, tr = spec
    return _size(shape) - (_size(shape[:-1]) if tr == "simplex" else 0)


def elements(name: str, shape) -> List[Tuple[str, Optional[int]]]:
    """[(key, flat index)]: ("tau", None), ("theta[1]", 0), ..., ("B[1,2]", 1), ..."""
    if not shape:
        return [(name, None)]
    return [(f"{name}[{','.join(str(i + 1) for i in idx)}]", k) for k, idx in enumerate(np.ndindex(*shape))]


def unconstrained_key(key: str, spec: Spec) -> Optional[str]:
    """The name of the unconstrained coordinate of element ``key`` of a bounded block (None for
    unbounded and vector-transformed blocks)."""
    name, shape, lo, hi, tr = spec
    if tr is not None or (lo is None and hi is None):
        return None
    if hi is None:
        return f"log({key})" if lo == 0.0 else f"log({key}-{lo:g})"
    if (lo, hi) == (0.0, 1.0):
        return f"logit({key})"
    if (lo, hi) == (-1.0, 1.0):
        return f"logit(({key}+1)/2)"
    raise NotImplementedError(f"{key}: bounds ({lo}, {hi})")


def to_unconstrained(x: np.ndarray, spec: Spec) -> np.ndarray:
    """fastvi's transform of a block inverted, on draws with a leading axis: (draws,) + shape ->
    (draws, free size)."""
    name, shape, lo, hi, tr = spec
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    if tr == "ordered":
        return np.column_stack([x[:, 0], np.log(np.diff(x, axis=1))])
    if tr == "simplex":  # Stan's stick-breaking: z_k = x_k / (1 - x_0 - ... - x_{k-1})
        K = x.shape[1]
        rest = 1.0 - np.cumsum(x, axis=1) + x
        z = x[:, :-1] / rest[:, :-1]
        return np.log(z) - np.log1p(-z) + np.log(K - 1 - np.arange(K - 1))
    if tr is not None:
        raise NotImplementedError(tr)
    if lo is None and hi is None:
        return x
    if hi is None:
        return np.log(x - lo)
    u = (x - lo) / (hi - lo)
    return np.log(u) - np.log1p(-u)


def quantities(name: str) -> Dict[str, Tuple[str, str, Optional[int]]]:
    """Every compared quantity: key -> (kind, block, flat index), kind "param" or "unconstrained"."""
    out: Dict[str, Tuple[str, str, Optional[int]]] = {}
    for spec in SPECS[name]["params"]:
        for key, k in elements(spec[0], spec[1]):
            out[key] = ("param", spec[0], k)
    for spec in SPECS[name]["params"]:
        for key, k in elements(spec[0], spec[1]):
            ukey = unconstrained_key(key, spec)
            if ukey is not None:
                out[ukey] = ("unconstrained", spec[0], k)
    return out


def targets(name: str) -> Dict[str, Tuple[str, Optional[int]]]:
    """posteriors.Targets of model ``name``: {key: (block, flat index)}."""
    return {key: (block, k) for key, (kind, block, k) in quantities(name).items()}


def zeta_layout(name: str) -> List[Tuple[str, int, int]]:
    """[(param name, offset, free size)] in fastvi's unconstrained vector."""
    out, off = [], 0
    for spec in SPECS[name]["params"]:
        out.append((spec[0], off, free_size(spec)))
        off += free_size(spec)
    return out


# ---------------------------------------------------------------------------------------------
# loading


def path(name: str) -> Path:
    return DATA_DIR / f"{name}.json"


def available() -> List[str]:
    """Models whose reference JSON exists."""
    return [n for n in NAMES if path(n).exists()]


def load(name: str) -> dict:
    with open(path(name)) as f:
        return json.load(f)


def make_model(name: str, data: dict):
    m = fv.Model()
    SPECS[name]["build"](data, m)
    return m


def build(name: str, info: Optional[dict] = None):
    """(model, targets, JSON file), like posteriors.build and gallery.build."""
    info = load(name) if info is None else info
    model = make_model(name, info["data"])
    tg = targets(name)
    missing = [k for k in tg if k not in info["reference"] and k not in info.get("reference_derived", {})]
    if missing:
        raise KeyError(f"{name}: no reference for {missing[:5]}")
    return model, tg, info


def _main(argv=None) -> int:
    """``python tests/gallery_applied.py --log-density IN.json OUT.json``: fastvi's log density of
    model ``name`` at the points ``zeta`` (S, dim) of IN (for bench/nuts_reference_applied.py
    --check, which runs where fastvi is not installed)."""
    import argparse

    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("--log-density", nargs=2, metavar=("IN", "OUT"), required=True)
    args = ap.parse_args(argv)
    src = json.loads(Path(args.log_density[0]).read_text())
    model = make_model(src["name"], src["data"])
    lp, _ = model.log_density(np.asarray(src["zeta"], dtype=float).T)
    Path(args.log_density[1]).write_text(json.dumps({"log_density": np.atleast_1d(lp).tolist()}))
    return 0


if __name__ == "__main__":
    import sys

    if fv is None:
        import fastvi as fv  # noqa: F811
    sys.exit(_main())
