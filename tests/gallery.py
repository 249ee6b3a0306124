"""A gallery of harder posteriors than posteriordb's, with NUTS references (issue 9).

Five models, each with a data function (deterministic: fixed numpy seeds, or scikit-learn's bundled
breast-cancer set) and a fastvi builder:

- ``hier_5groups_centered``: y_ij ~ N(theta_j, sigma), theta_j ~ N(mu, tau) (centred), 5 groups of
  4; mu ~ N(0, 5), tau ~ HalfNormal(2), sigma ~ HalfNormal(2). Few groups: tau is poorly
  identified, so (theta, log tau) is a funnel.
- ``horseshoe_logit``: logistic regression, N = 500, K = 50, 3 non-zero true coefficients;
  alpha ~ N(0, 2.5), beta = z * lambda * tau (non-centred), z_k ~ N(0, 1), lambda_k ~ HalfCauchy(1),
  tau ~ HalfCauchy(1) (the plain horseshoe).
- ``stoch_vol``: T = 500 returns y_t ~ N(0, exp(h_t / 2)), centred AR(1) log-volatility
  h_1 ~ N(mu, sigma / sqrt(1 - phi^2)), h_t ~ N(mu + phi (h_{t-1} - mu), sigma);
  mu ~ Cauchy(0, 10), phi ~ Uniform(-1, 1), sigma ~ HalfCauchy(5) (the Stan User's Guide priors).
- ``breast_cancer_logit``: scikit-learn's breast cancer set (569 x 30, columns standardised with
  the population sd), y = 1 for benign; alpha ~ N(0, 2.5), beta_k ~ N(0, 2.5).
- ``varying_intercepts``: y_i ~ N(a[g_i] + b x_i, sigma_y), a = mu_a + sigma_a * a_raw
  (non-centred), 85 groups, N = 900, radon-like group sizes (1 to ~100) and a binary x;
  mu_a, b ~ N(0, 10), sigma_a, sigma_y ~ HalfNormal(1).

The reference JSON files (tests/data/gallery/<name>.json) are written by bench/nuts_reference.py
(NumPyro NUTS) and hold the data, so this module needs neither scikit-learn nor jax to fit. Key
conventions are tests/posteriors.py's (1-based ``theta[1]``; ``log(x)`` is the unconstrained
coordinate of a lower=0 parameter), plus ``logit((phi+1)/2)`` for the (-1, 1) parameter phi
(fastvi maps it through phi = -1 + 2 logit^-1(zeta)). :data:`SPECS` lists each model's parameters
in declaration order, so that the unconstrained layout is known without fastvi (the NumPyro
script uses it). (This module and its data lived in bench/ until issue 10; the stored files'
``data_seed`` still names bench/gallery.py, the same code.)

Not expressible with built-ins directly: sqrt / pow (the stationary sd sigma / sqrt(1 - phi^2) is
written ``sigma * exp(-0.5 log(1 - phi*phi))``) and an AR(1) / time-series kernel (written as two
normal factors on slices of h).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

try:  # the NumPyro script imports this module (for the data and SPECS) in a venv without fastvi
    import fastvi as fv
    import posteriors as P
except ImportError:  # pragma: no cover
    fv = P = None

DATA_DIR = Path(__file__).resolve().parent / "data" / "gallery"

# ---------------------------------------------------------------------------------------------
# data


def data_hier_5groups_centered() -> dict:
    rng = np.random.default_rng(20261201)
    J, n = 5, 4
    theta = 1.0 + 0.5 * rng.standard_normal(J)
    g = np.repeat(np.arange(J), n)
    y = theta[g] + 1.0 * rng.standard_normal(J * n)
    return {"J": J, "N": J * n, "g": g.tolist(), "y": y.tolist()}


def data_horseshoe_logit() -> dict:
    rng = np.random.default_rng(20261202)
    N, K = 500, 50
    X = rng.standard_normal((N, K))
    beta = np.zeros(K)
    beta[[0, 1, 2]] = [2.0, -1.5, 1.0]
    p = 1.0 / (1.0 + np.exp(-(X @ beta)))
    y = (rng.uniform(size=N) < p).astype(int)
    return {"N": N, "K": K, "X": X.tolist(), "y": y.tolist(), "true_beta": beta.tolist()}


def data_stoch_vol() -> dict:
    rng = np.random.default_rng(20261203)
    T, mu, phi, sigma = 500, -1.0, 0.95, 0.25
    h = np.empty(T)
    h[0] = mu + sigma / math.sqrt(1 - phi**2) * rng.standard_normal()
    for t in range(1, T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.standard_normal()
    y = np.exp(h / 2) * rng.standard_normal(T)
    return {"T": T, "y": y.tolist(), "true": {"mu": mu, "phi": phi, "sigma": sigma}}


def data_breast_cancer_logit() -> dict:
    import sklearn
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    X = np.asarray(bc.data, dtype=float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return {
        "N": X.shape[0],
        "K": X.shape[1],
        "X": X.tolist(),
        "y": np.asarray(bc.target, dtype=int).tolist(),
        "source": f"sklearn.datasets.load_breast_cancer (scikit-learn {sklearn.__version__}); columns "
        f"standardised (x - mean) / sd with the population sd; y = 1 for benign",
    }


def data_varying_intercepts() -> dict:
    rng = np.random.default_rng(20261205)
    J, N = 85, 900
    # radon-like group sizes: very uneven, every group has at least one observation
    w = rng.lognormal(0.0, 1.2, size=J)
    sizes = 1 + np.floor(w / w.sum() * (N - J)).astype(int)
    sizes[np.argsort(-w)[: N - sizes.sum()]] += 1
    g = rng.permutation(np.repeat(np.arange(J), sizes))
    x = (rng.uniform(size=N) < 0.8).astype(float)  # like radon's floor indicator
    a = 1.5 + 0.3 * rng.standard_normal(J)
    y = a[g] - 0.7 * x + 0.75 * rng.standard_normal(N)
    return {
        "J": J,
        "N": N,
        "g": g.tolist(),
        "x": x.tolist(),
        "y": y.tolist(),
        "group_sizes": {"min": int(sizes.min()), "max": int(sizes.max())},
    }


# ---------------------------------------------------------------------------------------------
# the fastvi models (parameters declared in SPECS order)


def _arr(data: dict, key: str, dtype=float) -> np.ndarray:
    return np.asarray(data[key], dtype=dtype)


def build_hier_5groups_centered(data: dict, m):
    y, g = _arr(data, "y"), _arr(data, "g", np.int64)
    mu = m.param("mu")
    tau = m.param("tau", lower=0.0)
    sigma = m.param("sigma", lower=0.0)
    theta = m.param("theta", shape=(int(data["J"]),))
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_normal", tau, scale=2.0)
    m.add("half_normal", sigma, scale=2.0)
    m.add("normal", theta, loc=mu, scale=tau)
    m.add("normal", y, loc=theta[g], scale=sigma)


def build_horseshoe_logit(data: dict, m):
    X, y = _arr(data, "X"), _arr(data, "y")
    K = int(data["K"])
    alpha = m.param("alpha")
    z = m.param("z", shape=(K,))
    lam = m.param("lambda", shape=(K,), lower=0.0)
    tau = m.param("tau", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", z, loc=0.0, scale=1.0)
    m.add("half_cauchy", lam, scale=1.0)
    m.add("half_cauchy", tau, scale=1.0)
    beta = m.deterministic("beta", z * lam * tau)
    m.add("bernoulli_logit_glm", y, X=X, alpha=alpha, beta=beta)


def build_stoch_vol(data: dict, m):
    y = _arr(data, "y")
    T = int(data["T"])
    mu = m.param("mu")
    phi = m.param("phi", lower=-1.0, upper=1.0)
    sigma = m.param("sigma", lower=0.0)
    h = m.param("h", shape=(T,))
    m.add("cauchy", mu, loc=0.0, scale=10.0)
    m.add("half_cauchy", sigma, scale=5.0)  # phi: flat on (-1, 1) = Uniform(-1, 1)
    # no sqrt/pow in fastvi's expressions: sigma / sqrt(1 - phi^2) = sigma * exp(-log(1 - phi^2) / 2)
    m.add("normal", h[0], loc=mu, scale=sigma * fv.exp(-0.5 * fv.log(1.0 - phi * phi)))
    m.add("normal", h[1:], loc=mu + phi * (h[:-1] - mu), scale=sigma)
    m.add("normal", y, loc=0.0, scale=fv.exp(0.5 * h))


def build_breast_cancer_logit(data: dict, m):
    X, y = _arr(data, "X"), _arr(data, "y")
    alpha = m.param("alpha")
    beta = m.param("beta", shape=(int(data["K"]),))
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", beta, loc=0.0, scale=2.5)
    m.add("bernoulli_logit_glm", y, X=X, alpha=alpha, beta=beta)


def build_varying_intercepts(data: dict, m):
    y, x, g = _arr(data, "y"), _arr(data, "x"), _arr(data, "g", np.int64)
    a_raw = m.param("a_raw", shape=(int(data["J"]),))
    mu_a = m.param("mu_a")
    b = m.param("b")
    sigma_a = m.param("sigma_a", lower=0.0)
    sigma_y = m.param("sigma_y", lower=0.0)
    m.add("normal", a_raw, loc=0.0, scale=1.0)
    m.add("normal", mu_a, loc=0.0, scale=10.0)
    m.add("normal", b, loc=0.0, scale=10.0)
    m.add("half_normal", sigma_a, scale=1.0)
    m.add("half_normal", sigma_y, scale=1.0)
    a = m.deterministic("a", mu_a + sigma_a * a_raw)
    m.add("normal", y, loc=a[g] + b * x, scale=sigma_y)


# ---------------------------------------------------------------------------------------------
# specs: parameters (name, shape, lower, upper) in declaration order, and deterministics as numpy
# functions of constrained draws (dict name -> array with a leading draw axis)

ParamSpec = Tuple[str, Tuple[int, ...], Optional[float], Optional[float]]  # (name, shape, lower, upper)


def _specs() -> Dict[str, dict]:
    return {
        "hier_5groups_centered": dict(
            data=data_hier_5groups_centered,
            build=build_hier_5groups_centered,
            params=[
                ("mu", (), None, None),
                ("tau", (), 0.0, None),
                ("sigma", (), 0.0, None),
                ("theta", (5,), None, None),
            ],
            deterministics={},
        ),
        "horseshoe_logit": dict(
            data=data_horseshoe_logit,
            build=build_horseshoe_logit,
            params=[
                ("alpha", (), None, None),
                ("z", (50,), None, None),
                ("lambda", (50,), 0.0, None),
                ("tau", (), 0.0, None),
            ],
            deterministics={"beta": lambda d: d["z"] * d["lambda"] * d["tau"][:, None]},
            # lambda_k's posterior tail is ~ lambda^-3 where the data pin beta_k down (the z_k = beta_k /
            # (lambda_k tau) integral adds a 1/lambda to the half-Cauchy's lambda^-2): its variance is
            # infinite, so its NUTS sd (138 for lambda[1]) is no reference. log(lambda_k) is compared.
            unconstrained_only={"lambda"},
        ),
        "stoch_vol": dict(
            data=data_stoch_vol,
            build=build_stoch_vol,
            params=[
                ("mu", (), None, None),
                ("phi", (), -1.0, 1.0),
                ("sigma", (), 0.0, None),
                ("h", (500,), None, None),
            ],
            deterministics={},
        ),
        "breast_cancer_logit": dict(
            data=data_breast_cancer_logit,
            build=build_breast_cancer_logit,
            params=[("alpha", (), None, None), ("beta", (30,), None, None)],
            deterministics={},
        ),
        "varying_intercepts": dict(
            data=data_varying_intercepts,
            build=build_varying_intercepts,
            params=[
                ("a_raw", (85,), None, None),
                ("mu_a", (), None, None),
                ("b", (), None, None),
                ("sigma_a", (), 0.0, None),
                ("sigma_y", (), 0.0, None),
            ],
            deterministics={"a": lambda d: d["mu_a"][:, None] + d["sigma_a"][:, None] * d["a_raw"]},
        ),
    }


SPECS = _specs()
NAMES: List[str] = list(SPECS)


def _size(shape) -> int:
    return int(np.prod(shape)) if shape else 1


def _elements(name: str, shape) -> List[Tuple[str, Optional[int]]]:
    """[(key, flat index)] of a block: ("tau", None) or ("theta[1]", 0), ..."""
    if not shape:
        return [(name, None)]
    return [(f"{name}[{k + 1}]", k) for k in range(_size(shape))]


def unconstrained_key(key: str, lower: Optional[float], upper: Optional[float]) -> Optional[str]:
    """The name of the unconstrained coordinate of a bounded scalar ``key`` (None if unbounded)."""
    if lower is None and upper is None:
        return None
    if lower == 0.0 and upper is None:
        return f"log({key})"
    if lower == -1.0 and upper == 1.0:
        return f"logit(({key}+1)/2)"
    raise NotImplementedError(f"{key}: bounds ({lower}, {upper})")


def to_unconstrained(x: np.ndarray, lower: Optional[float], upper: Optional[float]) -> np.ndarray:
    """fastvi's transform of a bounded parameter, inverted: log(x) or logit((x - a) / (b - a))."""
    if lower is None and upper is None:
        return x
    if upper is None:
        return np.log(x - lower)
    u = (x - lower) / (upper - lower)
    return np.log(u) - np.log1p(-u)


def quantities(name: str) -> Dict[str, Tuple[str, str, Optional[int]]]:
    """Every compared quantity of model ``name``: key -> (kind, block name, flat index) with kind
    "param" (constrained), "unconstrained" or "deterministic"."""
    spec, out = SPECS[name], {}
    for pname, shape, lo, hi in spec["params"]:
        for key, k in _elements(pname, shape):
            out[key] = ("param", pname, k)
    for pname, shape, lo, hi in spec["params"]:
        for key, k in _elements(pname, shape):
            ukey = unconstrained_key(key, lo, hi)
            if ukey is not None:
                out[ukey] = ("unconstrained", pname, k)
    return out


def det_quantities(name: str, det_shapes: Dict[str, tuple]) -> Dict[str, Tuple[str, str, Optional[int]]]:
    return {key: ("deterministic", d, k) for d, shape in det_shapes.items() for key, k in _elements(d, shape)}


def targets(name: str, model) -> P.Targets:
    """posteriors.Targets of model ``name``: every parameter (but those in the spec's
    ``unconstrained_only``), its unconstrained coordinate where bounded, and every deterministic."""
    dets = {d: e.shape for d, e in model.deterministics.items()}
    qs = {**quantities(name), **det_quantities(name, dets)}
    skip = SPECS[name].get("unconstrained_only", set())
    return {key: (block, k) for key, (kind, block, k) in qs.items() if not (kind == "param" and block in skip)}


# ---------------------------------------------------------------------------------------------
# loading (the tests/posteriors.py interface)


def path(name: str) -> Path:
    return DATA_DIR / f"{name}.json"


def available() -> List[str]:
    """Gallery models whose reference JSON exists."""
    return [n for n in NAMES if path(n).exists()]


def load(name: str) -> dict:
    with open(path(name)) as f:
        return json.load(f)


def make_model(name: str, data: dict):
    m = fv.Model()
    SPECS[name]["build"](data, m)
    return m


def build(name: str, info: Optional[dict] = None):
    """(model, targets, JSON file) for gallery model ``name``, like posteriors.build."""
    info = load(name) if info is None else info
    model = make_model(name, info["data"])
    tg = targets(name, model)
    missing = [k for k in tg if k not in info["reference"] and k not in info.get("reference_derived", {})]
    if missing:
        raise KeyError(f"{name}: no reference for {missing[:5]}")
    return model, tg, info


def zeta_layout(name: str) -> List[Tuple[str, int, int]]:
    """[(param name, offset, size)] in fastvi's unconstrained vector (declaration order)."""
    out, off = [], 0
    for pname, shape, lo, hi in SPECS[name]["params"]:
        out.append((pname, off, _size(shape)))
        off += _size(shape)
    return out


def _main(argv=None) -> int:
    """``python tests/gallery.py --log-density IN.json OUT.json``: fastvi's log density of model
    ``name`` with ``data`` at the points ``zeta`` (S, dim) of IN, written to OUT (used by
    bench/nuts_reference.py --check, which runs where fastvi is not installed)."""
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

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if fv is None:
        import fastvi as fv  # noqa: F811
        import posteriors as P  # noqa: F811
    sys.exit(_main())
