"""Built-in kernels against Python kernels on the applied-model gallery (issue 11, section 6).

For each model of tests/gallery_applied.py that needs more than the pre-issue built-ins, the same
model is built a second time with its likelihood as a Python kernel (``fv.register_kernel``: a
numpy log density with its analytic gradient; priors stay built-in), and ``fv.fit`` is timed on
both with the same seed, family and a fixed number of steps (``tol=None``: no stopping rule, so
both run exactly ``--steps`` steps; the mode search runs on both, as in a default fit;
``psis_draws=0``). Before timing, the two models' log densities and gradients are compared at
random unconstrained points (they must agree to 1e-8 relative), so the Python kernel is the same
model, and each Python kernel's gradient is checked against finite differences
(``fv.check_kernel``).

    OPENBLAS_NUM_THREADS=1 python bench/gallery_speed.py              # medians of 3 runs
    OPENBLAS_NUM_THREADS=1 python bench/gallery_speed.py --only student_t_df --repeats 5 --markdown --per-step

Run with OPENBLAS_NUM_THREADS=1 (scipy's L-BFGS in the mode search, on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import digamma, expit, gammaln, log_expit, logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fastvi as fv  # noqa: E402
import gallery_applied as GA  # noqa: E402

# ---------------------------------------------------------------------------------------------
# the likelihoods as Python kernels: fn(*arrays, params) -> (lp, grads), arrays shape + (S,)


def _nb2_log(y, log_mu, phi, params):
    lse = np.logaddexp(np.log(phi), log_mu)  # log(phi + mu)
    lp = gammaln(y + phi) - gammaln(y + 1) - gammaln(phi) + phi * (np.log(phi) - lse) + y * (log_mu - lse)
    frac = np.exp(log_mu - lse)  # mu / (phi + mu)
    return lp, {
        "log_mu": y - (y + phi) * frac,
        "phi": digamma(y + phi) - digamma(phi) + np.log(phi) + 1.0 - lse - (y + phi) * np.exp(-lse),
    }


def _ordered_logistic(y, eta, cutpoints, params):
    # own shapes: y (N, 1), eta (N, S) or (1, S) for a scalar, cutpoints (C-1, S)
    yi = y[:, 0].astype(np.int64)
    S = cutpoints.shape[1]
    inf = np.full((1, S), np.inf)
    c = np.concatenate([-inf, cutpoints, inf])  # c[k] .. c[k+1] bounds category k
    a, b = c[yi + 1] - eta, c[yi] - eta  # upper, lower (a > b)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.where(np.isfinite(a) & np.isfinite(b), np.exp(b - a), 0.0)
        lp = np.where(np.isfinite(a), log_expit(a), 0.0) + np.where(np.isfinite(b), log_expit(-b), 0.0) + np.log1p(-r)
        da = np.where(np.isfinite(a), expit(-a), 0.0) + r / (1.0 - r)
        db = -np.where(np.isfinite(b), expit(b), 0.0) - r / (1.0 - r)
    gc = np.zeros((cutpoints.shape[0] + 2, S))
    np.add.at(gc, yi + 1, da)
    np.add.at(gc, yi, db)
    return lp.sum(axis=0), {"eta": -(da + db), "cutpoints": gc[1:-1]}


def _categorical_logit(y, logits, params):
    # own shapes: y (N, 1), logits (N, C, S)
    yi = y[:, 0].astype(np.int64)
    lse = logsumexp(logits, axis=1)  # (N, S)
    lp = logits[np.arange(len(yi)), yi, :] - lse
    g = -np.exp(logits - lse[:, None, :])
    g[np.arange(len(yi)), yi, :] += 1.0
    return lp.sum(axis=0), {"logits": g}


def _normal_mix2(y, w, mu1, mu2, s1, s2, params):
    z1, z2 = (y - mu1) / s1, (y - mu2) / s2
    l1 = np.log(w) - 0.5 * z1 * z1 - np.log(s1) - 0.5 * np.log(2 * np.pi)
    l2 = np.log1p(-w) - 0.5 * z2 * z2 - np.log(s2) - 0.5 * np.log(2 * np.pi)
    lp = np.logaddexp(l1, l2)
    r1 = np.exp(l1 - lp)
    r2 = 1.0 - r1
    return lp, {
        "w": r1 / w - r2 / (1.0 - w),
        "mu1": r1 * z1 / s1,
        "mu2": r2 * z2 / s2,
        "s1": r1 * (z1 * z1 - 1.0) / s1,
        "s2": r2 * (z2 * z2 - 1.0) / s2,
    }


def _weibull_censored(t, event, k, scale, params):
    # an event's log density, or a censored row's log survival function -(t / scale)^k
    u = np.log(t) - np.log(scale)
    z = np.exp(k * u)
    lp = event * (np.log(k) - np.log(scale) + (k - 1.0) * u) - z
    return lp, {"k": event * (1.0 / k + u) - z * u, "scale": k * (z - event) / scale}


def _poisson_log(y, log_rate, params):
    rate = np.exp(log_rate)
    return y * log_rate - rate - gammaln(y + 1), {"log_rate": y - rate}


def _student_t(y, df, loc, scale, params):
    z = (y - loc) / scale
    q = z * z / df
    lp = gammaln((df + 1) / 2) - gammaln(df / 2) - 0.5 * np.log(df * np.pi) - np.log(scale) - (df + 1) / 2 * np.log1p(q)
    w = (df + 1) / (df + z * z)
    return lp, {
        "loc": w * z / scale,
        "scale": (w * z * z - 1.0) / scale,
        "df": 0.5 * (digamma((df + 1) / 2) - digamma(df / 2) - 1.0 / df - np.log1p(q) + w * z * z / df),
    }


def _categorical(y, theta, params):
    # own shapes: y (N, 1), theta (K, S)
    counts = np.bincount(y[:, 0].astype(np.int64), minlength=theta.shape[0])[:, None]
    return (counts * np.log(theta)).sum(axis=0), {"theta": counts / theta}


def _gp_marginal(y, x, alpha, rho, sigma, params):
    # own shapes: y, x (N, 1); alpha, rho, sigma (S,) or (1,). y ~ MultiNormal(0, K + sigma^2 I)
    S = max(a.shape[-1] for a in (alpha, rho, sigma))
    yv, d2 = y[:, 0], (x[:, 0][:, None] - x[:, 0][None, :]) ** 2
    lp, ga, gr, gs = (np.zeros(S) for _ in range(4))
    for s in range(S):
        a, r, sg = (float(v.reshape(-1)[s if v.size > 1 else 0]) for v in (alpha, rho, sigma))
        E = np.exp(-0.5 * d2 / (r * r))
        K = a * a * E + sg * sg * np.eye(len(yv))
        L = np.linalg.cholesky(K)
        v = np.linalg.solve(L, yv)
        Kinv = np.linalg.inv(K)  # dlp/dK = (beta beta' - K^-1) / 2, beta = K^-1 y
        beta = Kinv @ yv
        G = 0.5 * (np.outer(beta, beta) - Kinv)
        lp[s] = -0.5 * v @ v - np.log(np.diag(L)).sum() - 0.5 * len(yv) * np.log(2 * np.pi)
        ga[s] = np.sum(G * 2 * a * E)
        gr[s] = np.sum(G * a * a * E * d2 / r**3)
        gs[s] = 2 * sg * np.trace(G)
    return lp, {"alpha": ga.reshape(alpha.shape), "rho": gr.reshape(rho.shape), "sigma": gs.reshape(sigma.shape)}


KERNELS = {
    "py_nb2_log": (["y", "log_mu", "phi"], _nb2_log, dict(supports={"y": "count", "phi": "positive"})),
    "py_ordered_logistic": (["y", "eta", "cutpoints"], _ordered_logistic, dict(data_only=("y",), elementwise=False)),
    "py_categorical_logit": (["y", "logits"], _categorical_logit, dict(data_only=("y",), elementwise=False)),
    "py_normal_mix2": (
        ["y", "w", "mu1", "mu2", "s1", "s2"],
        _normal_mix2,
        dict(supports={"w": "unit_interval", "s1": "positive", "s2": "positive"}),
    ),
    "py_weibull_censored": (
        ["t", "event", "k", "scale"],
        _weibull_censored,
        dict(supports={"t": "positive", "event": "binary", "k": "positive", "scale": "positive"}),
    ),
    "py_poisson_log": (["y", "log_rate"], _poisson_log, dict(supports={"y": "count"})),
    "py_student_t": (["y", "df", "loc", "scale"], _student_t, dict(supports={"df": "positive", "scale": "positive"})),
    "py_categorical": (["y", "theta"], _categorical, dict(data_only=("y",), elementwise=False)),
    "py_gp_marginal": (
        ["y", "x", "alpha", "rho", "sigma"],
        _gp_marginal,
        dict(
            data_only=("y", "x"),
            elementwise=False,
            supports={"alpha": "positive", "rho": "positive", "sigma": "positive"},
        ),
    ),
}


def register():
    for name, (inputs, fn, kw) in KERNELS.items():
        if name not in fv.kernels():
            fv.register_kernel(name, inputs, fn, **kw)


# ---------------------------------------------------------------------------------------------
# the same models with the Python likelihoods (priors as in tests/gallery_applied.py)


def _py_negbin(d, m):
    X, y = np.asarray(d["X"]), np.asarray(d["y"], dtype=float)
    alpha, beta, phi = m.param("alpha"), m.param("beta", shape=(int(d["K"]),)), m.param("phi", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("exponential", phi, rate=0.1)
    m.add("py_nb2_log", y, log_mu=alpha + X @ beta, phi=phi)


def _py_ordered(d, m):
    X, y = np.asarray(d["X"]), np.asarray(d["y"], dtype=float)
    beta = m.param("beta", shape=(int(d["K"]),))
    c = m.param("c", shape=(int(d["C"]) - 1,), transform="ordered")
    m.add("normal", beta, loc=0.0, scale=2.5)
    m.add("normal", c, loc=0.0, scale=5.0)
    m.add("py_ordered_logistic", y, eta=X @ beta, cutpoints=c)


def _py_softmax(d, m):
    X, y = np.asarray(d["X"]), np.asarray(d["y"], dtype=float)
    B = m.param("B", shape=(int(d["K"]), int(d["C"])))
    m.add("normal", B, loc=0.0, scale=1.0)
    m.add("py_categorical_logit", y, logits=X @ B)


def _py_mixture(d, m):
    y = np.asarray(d["y"])
    w = m.param("w", lower=0.0, upper=1.0)
    mu = m.param("mu", shape=(2,), transform="ordered")
    sigma = m.param("sigma", shape=(2,), lower=0.0)
    m.add("beta", w, a=2.0, b=2.0)
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_normal", sigma, scale=2.0)
    m.add("py_normal_mix2", y, w=w, mu1=mu[0], mu2=mu[1], s1=sigma[0], s2=sigma[1])


def _py_weibull(d, m):
    X, t, ev = np.asarray(d["X"]), np.asarray(d["t"]), np.asarray(d["event"], dtype=float)
    alpha, beta, k = m.param("alpha"), m.param("beta", shape=(int(d["K"]),)), m.param("k", lower=0.0)
    m.add("normal", alpha, loc=0.0, scale=5.0)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("gamma", k, shape=2.0, rate=1.0)
    m.add("py_weibull_censored", t, event=ev, k=k, scale=fv.exp(alpha + X @ beta))


def _py_poisson(d, m):
    X, y, E = np.asarray(d["X"]), np.asarray(d["y"], dtype=float), np.asarray(d["exposure"])
    alpha, beta = m.param("alpha"), m.param("beta", shape=(int(d["K"]),))
    m.add("normal", alpha, loc=0.0, scale=2.5)
    m.add("normal", beta, loc=0.0, scale=1.0)
    m.add("py_poisson_log", y, log_rate=alpha + X @ beta + np.log(E))


def _py_student(d, m):
    y = np.asarray(d["y"])
    mu, sigma, nu = m.param("mu"), m.param("sigma", lower=0.0), m.param("nu", lower=1.0)
    m.add("normal", mu, loc=0.0, scale=10.0)
    m.add("half_normal", sigma, scale=5.0)
    m.add("gamma", nu, shape=2.0, rate=0.1)
    m.add("py_student_t", y, df=nu, loc=mu, scale=sigma)


def _py_simplex(d, m):
    y, K = np.asarray(d["y"], dtype=float), int(d["K"])
    theta = m.param("theta", shape=(K,), transform="simplex")
    m.add("dirichlet", theta, alpha=np.full(K, 2.0))
    m.add("py_categorical", y, theta=theta)


def _py_gp(d, m):
    x, y = np.asarray(d["x"]), np.asarray(d["y"])
    rho, alpha, sigma = m.param("rho", lower=0.0), m.param("alpha", lower=0.0), m.param("sigma", lower=0.0)
    m.add("inv_gamma", rho, shape=5.0, scale=5.0)
    m.add("half_normal", alpha, scale=1.0)
    m.add("half_normal", sigma, scale=1.0)
    m.add("py_gp_marginal", y, x=x, alpha=alpha, rho=rho, sigma=sigma)


PY_BUILDERS = {
    "negbin_regression": _py_negbin,
    "ordered_logistic": _py_ordered,
    "softmax_regression": _py_softmax,
    "normal_mixture": _py_mixture,
    "weibull_survival": _py_weibull,
    "poisson_exposure": _py_poisson,
    "student_t_df": _py_student,
    "simplex_categorical": _py_simplex,
    "gp_regression": _py_gp,
}


def py_model(name, data):
    register()
    m = fv.Model()
    PY_BUILDERS[name](data, m)
    return m


def same_density(name, data, builtin, python, points=4):
    """Max relative difference of the two models' log densities (differences between points) and
    gradients at random unconstrained points."""
    rng = np.random.default_rng(1)
    Z = 0.3 * rng.standard_normal((builtin.dim, points))
    la, ga = builtin.log_density(Z)
    lb, gb = python.log_density(Z)
    dl = np.abs((la - la[0]) - (lb - lb[0])).max() / max(1.0, np.abs(la - la[0]).max())
    dg = np.abs(ga - gb).max() / max(1.0, np.abs(ga).max())
    return float(max(dl, dg))


def time_fit(model, family, steps, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit = fv.fit(model, family=family, steps=steps, tol=None, seed=seed, psis_draws=0)
        dt = time.perf_counter() - t0
    assert fit.steps == steps, (fit.steps, steps)
    return dt


def per_step(model, family, repeats, short=1000, long=6000):
    """Microseconds per step: (time of a long fit - time of a short one) / (long - short), each the
    minimum of ``repeats`` runs, so that the mode search and set-up cancel."""
    t = [min(time_fit(model, family, n) for _ in range(repeats)) for n in (short, long)]
    return 1e6 * (t[1] - t[0]) / (long - short)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(PY_BUILDERS))
    ap.add_argument("--families", nargs="+", default=["meanfield", "fullrank"])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--per-step", action="store_true", help="also the cost of one step (long minus short fits)")
    args = ap.parse_args(argv)
    register()
    for name, (inputs, fn, kw) in KERNELS.items():
        # the GP's and the simplex's inputs need structured values (check_kernel draws the others
        # freely); same_density below checks them against the built-in model, gradients included
        if name not in ("py_gp_marginal", "py_categorical"):
            params = [i for i in inputs[1:] if i not in kw.get("data_only", ()) and i != "event"]
            fv.check_kernel(name, values=_check_values(name), params=params)
    rows = []
    for name in args.only or list(PY_BUILDERS):
        data = GA.SPECS[name]["data"]()
        python = py_model(name, data)
        if name == "gp_regression" and not GA.gp_available():
            builtin, diff = None, float("nan")
        else:
            builtin = GA.make_model(name, data)
            diff = same_density(name, data, builtin, python)
            assert diff < 1e-8, (name, diff)
        for family in args.families:
            # no built-in GP before fv.cholesky: the Python kernel's time alone
            tb = [time_fit(builtin, family, args.steps) for _ in range(args.repeats)] if builtin else [float("nan")]
            tp = [time_fit(python, family, args.steps) for _ in range(args.repeats)]
            b, p = statistics.median(tb), statistics.median(tp)
            steps = ""
            if args.per_step:
                sb = per_step(builtin, family, args.repeats) if builtin else float("nan")
                sp = per_step(python, family, args.repeats)
                steps = f"{sb:.1f} / {sp:.1f} (x{sp / sb:.1f})"
            rows.append((name, family, b, p, p / b, diff, steps))
            print(
                f"  {name} / {family}: built-in {b:.3f} s, Python kernel {p:.3f} s, x{p / b:.1f} {steps}",
                file=sys.stderr,
            )
    head = ["model", "family", "built-in (s)", "Python kernel (s)", "speed-up", "max rel. density/gradient diff"]
    head += ["us per step: built-in / Python"] if args.per_step else []
    sep = " | " if args.markdown else "  "
    print(("| " if args.markdown else "") + sep.join(head) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in head) + "|")
    for name, family, b, p, r, diff, steps in rows:
        cells = [name, family, f"{b:.3f}", f"{p:.3f}", f"{r:.1f}x", f"{diff:.1e}"] + ([steps] if args.per_step else [])
        print(("| " if args.markdown else "") + sep.join(cells) + (" |" if args.markdown else ""))
    print(
        f"\n{args.steps} steps per fit (tol=None), medians of {args.repeats} runs; fastvi {fv.__version__}; "
        f"Python kernels: numpy {np.__version__}"
    )
    return 0


def _check_values(name):
    """Points inside each Python kernel's support for fv.check_kernel (data for the variate and
    data-only inputs)."""
    rng = np.random.default_rng(0)
    if name == "py_ordered_logistic":
        return {"y": np.array([0, 1, 2, 3, 1]), "eta": rng.standard_normal(5), "cutpoints": np.array([-1.0, 0.0, 0.5])}
    if name == "py_categorical_logit":
        return {"y": np.array([0, 2, 1]), "logits": rng.standard_normal((3, 3))}
    if name == "py_categorical":
        return {"y": np.array([0, 2, 1, 2]), "theta": np.array([0.2, 0.3, 0.5])}
    if name == "py_weibull_censored":
        return {"t": np.array([0.5, 1.5, 2.0]), "event": np.array([1.0, 0.0, 1.0]), "k": 1.3, "scale": 1.7}
    if name == "py_nb2_log":
        return {"y": np.array([0.0, 3.0, 10.0]), "log_mu": 0.5, "phi": 2.0}
    if name == "py_poisson_log":
        return {"y": np.array([0.0, 3.0, 10.0]), "log_rate": 0.5}
    if name == "py_normal_mix2":
        return {"y": np.array([-2.0, 0.1, 1.5]), "w": 0.3, "mu1": -1.0, "mu2": 1.0, "s1": 0.8, "s2": 1.2}
    if name == "py_student_t":
        return {"y": np.array([-2.0, 0.1, 5.0]), "df": 3.5, "loc": 0.5, "scale": 1.5}
    raise KeyError(name)


if __name__ == "__main__":
    sys.exit(main())
