"""Experiments behind the diagnosis in bench/README.md ("Accuracy against posteriordb").

These are prototypes of changes to fastvi's defaults and algorithm, built only from the public API
(fit() arguments, and reparameterised models), so that the proposed engine changes can be judged
by numbers before anyone writes them in C++. Nothing here changes fastvi.

    python bench/accuracy_experiments.py settings      # full-rank / mean-field under candidate fixes
    python bench/accuracy_experiments.py convergence   # the ELBO convergence rule
    python bench/accuracy_experiments.py eight_schools # exact log(tau) marginal by quadrature

"re-whitened" is the MAP-free alternative: four rounds of 2,000 steps, each in the coordinates
whitened by the previous round's q.

"Laplace-whitened" fits the same posterior in coordinates w with zeta = m + A w, where m is the
mode of fastvi's log density in its unconstrained space (scipy L-BFGS on Model.log_density) and
A = chol(H^-1) with H the Hessian there (finite differences of the gradient). A Gaussian in w is a
Gaussian in zeta, so the family is unchanged; only the coordinates Adam works in change. This is
what an engine-side "precondition the unconstrained space from a Laplace approximation" would do.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import scipy.optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastvi as fv  # noqa: E402
import posteriors as P  # noqa: E402

GAUSSIAN = [n for n in P.NAMES if n not in P.NOT_GAUSSIAN]


# ---------------------------------------------------------------------------------------------
# Laplace approximation in fastvi's unconstrained space


def laplace(model: fv.Model):
    """(mode, covariance = inverse negative Hessian) of the model's log density (with Jacobians)."""
    def f(z):
        lp, g = model.log_density(z)
        return -lp, -g
    z = np.zeros(model.dim)
    for _ in range(3):  # restarts: L-BFGS stops early on the badly scaled posteriors
        z = scipy.optimize.minimize(f, z, jac=True, method="L-BFGS-B",
                                    options=dict(maxiter=50_000, ftol=1e-15, gtol=1e-10, maxcor=30)).x
    D = model.dim
    H = np.empty((D, D))
    for i in range(D):
        h = 1e-5 * max(1.0, abs(z[i]))
        e = np.zeros(D)
        e[i] = h
        H[:, i] = (model.log_density(z + e)[1] - model.log_density(z - e)[1]) / (2 * h)
    H = -(H + H.T) / 2
    return z, np.linalg.inv(H)


class GaussianQ:
    """A Gaussian q in the original model's unconstrained space, with the methods P.compare uses.
    Moments: exact for unconstrained and log-normal coordinates, Monte Carlo for deterministics."""

    def __init__(self, model: fv.Model, mean: np.ndarray, cov: np.ndarray, steps: int = 0, converged: bool = False):
        self.model, self._mean, self._cov = model, mean, cov
        self.steps, self.converged = steps, converged

    def unconstrained_mean(self):
        return self._mean

    def unconstrained_cov(self):
        return self._cov

    def _moments(self):
        sd = np.sqrt(np.diag(self._cov))
        means, sds = {}, {}
        for p in self.model:
            sl = slice(p.offset, p.offset + p.size)
            m, s = self._mean[sl], sd[sl]
            if math.isinf(p.lower) and math.isinf(p.upper):
                means[p.name], sds[p.name] = m, s
            else:
                assert p.lower == 0.0 and math.isinf(p.upper), "only lower=0 bounds are used here"
                means[p.name] = np.exp(m + s**2 / 2)
                sds[p.name] = means[p.name] * np.sqrt(np.expm1(s**2))
            means[p.name], sds[p.name] = means[p.name].reshape(p.shape), sds[p.name].reshape(p.shape)
        if self.model.deterministics:
            L = np.linalg.cholesky(self._cov)
            z = self._mean[:, None] + L @ np.random.default_rng(0).standard_normal((len(self._mean), 100_000))
            draws = self.model.constrain(z)
            for n in self.model.deterministics:
                means[n], sds[n] = draws[n].mean(0), draws[n].std(0, ddof=1)
        return means, sds

    def mean(self):
        return self._moments()[0]

    def std(self):
        return self._moments()[1]


class WhitenedModel(fv.Model):
    """A model whose parameters are expressions of w, zeta = centre + A @ w; the builders of
    posteriors.py build into it unchanged. Lower-bounded parameters become exp(zeta_i) plus their
    log-Jacobian zeta_i (added as exponential(0 | rate = exp(zeta_i)), whose log density is zeta_i)."""

    def __init__(self, centre: np.ndarray, A: np.ndarray):
        super().__init__()
        self.w = super().param("w", shape=(len(centre),))
        self.zeta = centre + A @ self.w
        self._next = 0

    def param(self, name, shape=(), lower=None, upper=None):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape)) if shape else 1
        u = self.zeta[self._next] if shape == () else self.zeta[self._next:self._next + size]
        self._next += size
        if lower is None and upper is None:
            return u
        if not (lower == 0.0 and upper is None):
            raise NotImplementedError("only lower=0 bounds are used by the posteriors")
        x = fv.exp(u)
        self.add("exponential", np.zeros(shape), rate=x)  # log-Jacobian of x = exp(u): + u
        return x


def fit_whitened(name: str, centre: np.ndarray, A: np.ndarray, **fit_args) -> GaussianQ:
    model, _, info = P.build(name)
    wm = WhitenedModel(centre, A)
    P.BUILDERS[name](info["data"], model=wm)
    approx = fv.fit(wm, **fit_args)
    mw, Cw = approx.unconstrained_mean(), approx.unconstrained_cov()
    return GaussianQ(model, centre + A @ mw, A @ Cw @ A.T, approx.steps, approx.converged)


def fit_from(model: fv.Model, family: str, mean: np.ndarray, cov: np.ndarray, seed: int = 0) -> fv.Approximation:
    """fv.fit with the *default settings* but q started at N(mean, cov) instead of N(init, 0.1^2 I).
    fv.fit cannot set the starting covariance, so this goes through the private core (prototype
    only; the layout of phi is the full-rank family's: mean, then the column-major d x d matrix
    with log-diagonal)."""
    from fastvi import _core
    from fastvi.fit import Approximation

    D = model.dim
    L = np.linalg.cholesky(cov)
    S = np.tril(L, -1)
    S[np.diag_indices(D)] = np.log(np.diag(L))
    phi0 = np.concatenate([mean, S.ravel(order="F")])
    fam = _core.Family(family, D)
    opts = _core.FitOptions()
    opts.seed = seed
    opts.threads = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _core.fit(model._core, fam, phi0, opts, None)
    return Approximation(model, fam, res, {})


# ---------------------------------------------------------------------------------------------
# experiments


def rewhitened(name: str, rounds: int = 4, steps: int = 2000, seed: int = 0) -> GaussianQ:
    """MAP-free alternative: `rounds` full-rank fits of `steps` steps, each in the coordinates
    whitened by the previous q (its mean and Cholesky factor), the first from zeta = 0."""
    model = P.build(name)[0]
    centre, A, total = np.zeros(model.dim), np.eye(model.dim), 0
    for r in range(rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = fit_whitened(name, centre, A, family="fullrank", seed=seed + r, steps=steps, tol=None)
        centre, A, total = q.unconstrained_mean(), np.linalg.cholesky(q.unconstrained_cov()), total + q.steps
    q.steps = total
    return q


def _cell(approx, targets, info) -> str:
    rows = P.compare(approx, targets, info)
    wm, ws = P.worst(rows)
    ok = all(abs(r.mean_err) <= 0.1 and abs(r.sd / r.ref_sd - 1) <= 0.1 for r in rows)
    e = abs(wm.mean_err)
    return f"{e:.2f} / {ws.log_sd_ratio:+.2f} {'✓' if ok else '✗'}" if e < 1e3 else f"{e:.1e} / {ws.log_sd_ratio:+.1f} ✗"


def _quiet_fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fv.fit(model, **kw)


def settings(names: List[str], seed: int) -> None:
    """One row per posterior: worst |mean err| (ref sd) / worst log sd ratio, ✓ when the target is met."""
    full = {
        "defaults": lambda n, m, z, C: _quiet_fit(m, family="fullrank", seed=seed),
        "lr=1e-3, 100k steps": lambda n, m, z, C: _quiet_fit(m, family="fullrank", seed=seed, lr=1e-3, steps=100_000),
        "lr=1e-4, 300k steps": lambda n, m, z, C: _quiet_fit(m, family="fullrank", seed=seed, lr=1e-4, steps=300_000),
        "draws=10": lambda n, m, z, C: _quiet_fit(m, family="fullrank", seed=seed, draws=10),
        "init=MAP": lambda n, m, z, C: _quiet_fit(
            m, family="fullrank", seed=seed, init={k: v for k, v in m.constrain(z).items() if k in m.params}),
        "start at Laplace (μ, L)": lambda n, m, z, C: fit_from(m, "fullrank", z, C, seed),
        "diag-whitened": lambda n, m, z, C: fit_whitened(
            n, z, np.diag(np.sqrt(np.diag(C))), family="fullrank", seed=seed),
        "Laplace-whitened": lambda n, m, z, C: fit_whitened(n, z, np.linalg.cholesky(C), family="fullrank", seed=seed),
        "re-whitened 4 × 2k steps, no mode": lambda n, m, z, C: rewhitened(n, seed=seed),
        "(Laplace itself)": lambda n, m, z, C: GaussianQ(m, z, C),
    }
    mf = {
        "MF defaults": lambda n, m, z, C: _quiet_fit(m, family="meanfield", seed=seed),
        "MF diag-whitened": lambda n, m, z, C: fit_whitened(
            n, z, np.diag(np.sqrt(np.diag(C))), family="meanfield", seed=seed),
    }
    for title, exps in (("full-rank", full), ("mean-field", mf)):
        print(f"\n{title}: worst |mean error| in reference sds / worst log(sd / reference sd); "
              f"✓ = mean within 0.1 sd and every sd within 10 % (seed {seed})\n")
        print("| posterior | " + " | ".join(exps) + (" | log MF-sd ratio |" if title == "mean-field" else " |"))
        print("|---" * (len(exps) + 1 + (title == "mean-field")) + "|")
        for name in names:
            model, targets, info = P.build(name)
            z, C = laplace(model)
            cells = []
            for label, run in exps.items():
                t0 = time.perf_counter()
                cells.append(_cell(run(name, model, z, C), targets, info))
                print(f"  {name} / {label}: {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
            extra = [f"{math.log(P.mf_sd_ratio(info)):+.2f}"] if title == "mean-field" else []
            print(f"| {name} | " + " | ".join(cells + extra) + " |", flush=True)


def _rule_relative(e, tol=1e-4, patience=3) -> Optional[int]:
    """fastvi's rule: |E_k - E_{k-1}| / max(|E_k|, 1) < tol for `patience` windows running."""
    below = 0
    for k in range(1, len(e)):
        below = below + 1 if abs(e[k] - e[k - 1]) / max(abs(e[k]), 1.0) < tol else 0
        if below >= patience:
            return k + 1
    return None


def _rule_block(e, tol=0.05, block=5, patience=2) -> Optional[int]:
    """Proposed: |mean of the last `block` windows - mean of the `block` before| < tol nats,
    `patience` times running. Absolute, so independent of additive constants in the log density."""
    below = 0
    for k in range(2 * block, len(e) + 1, block):
        d = abs(np.mean(e[k - block:k]) - np.mean(e[k - 2 * block:k - block]))
        below = below + 1 if d < tol else 0
        if below >= patience:
            return k
    return None


def convergence(names: List[str], seed: int) -> None:
    """The relative-ELBO rule at the optimum, and when each rule fires on preconditioned fits."""
    print("\nELBO noise at the optimum (Laplace-whitened full-rank, 30,000 steps, last 200 windows of 100 steps),")
    print("and when each rule fires on the same fit (started at the mode); 'acc.' = accuracy of a fit")
    print("stopped where the proposed rule fires (worst |mean err| / worst log sd ratio)\n")
    print("| posterior | \\|ELBO\\| | sd of window-to-window change (nats) | relative noise | "
          "P(rel. change < 1e-4) | P(3 windows running) | current rule fires at | proposed rule fires at | acc. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        model, targets, info = P.build(name)
        z, C = laplace(model)
        A = np.linalg.cholesky(C)
        wm = WhitenedModel(z, A)
        P.BUILDERS[name](info["data"], model=wm)
        a = _quiet_fit(wm, family="fullrank", seed=seed, steps=30_000, tol=None, average=False)
        e = a.elbo[-200:]
        d = np.diff(e)
        rel = np.abs(d) / np.maximum(np.abs(e[1:]), 1.0)
        below = rel < 1e-4
        run3 = np.mean([below[i:i + 3].all() for i in range(len(below) - 2)])
        k0, k1 = _rule_relative(a.elbo), _rule_block(a.elbo)
        stop = (k1 or 300) * 100
        q = fit_whitened(name, z, A, family="fullrank", seed=seed, steps=stop, tol=None)
        print(f"| {name} | {abs(e.mean()):.1f} | {d.std():.3f} | {d.std() / abs(e.mean()):.1e} | {below.mean():.2f} | "
              f"{run3:.3f} | {'never' if k0 is None else k0 * 100} | {'never' if k1 is None else k1 * 100} | "
              f"{_cell(q, targets, info)} |", flush=True)


def eight_schools() -> None:
    """The exact marginal of log(tau) (theta integrated out analytically; grid over mu, log tau)."""
    from scipy import stats

    info = P.load("eight_schools-eight_schools_noncentered")
    y, s = np.asarray(info["data"]["y"], float), np.asarray(info["data"]["sigma"], float)
    mu = np.linspace(-40, 50, 1801)[:, None]
    u = np.linspace(-15, 6, 2101)[None, :]
    tau = np.exp(u)
    lp = stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5) + u
    for yj, sj in zip(y, s):
        lp = lp + stats.norm.logpdf(yj, mu, np.sqrt(sj**2 + tau**2))
    w = np.exp(lp - lp.max())
    pu = (w / w.sum()).sum(0)
    uu = u.ravel()
    m = pu @ uu
    sd = math.sqrt(pu @ (uu - m) ** 2)
    skew, kurt = pu @ ((uu - m) / sd) ** 3, pu @ ((uu - m) / sd) ** 4 - 3
    ref = info["reference_derived"]["log(tau)"]
    print(f"log(tau): mean {m:.3f}, sd {sd:.3f} (reference {ref['mean']:.3f}, {ref['sd']:.3f}); "
          f"skewness {skew:.2f}, excess kurtosis {kurt:.2f}")
    cdf = np.cumsum(pu)
    qs = (0.01, 0.05, 0.5, 0.95, 0.99)
    print("quantiles", ", ".join(f"{p:.0%}: {uu[np.searchsorted(cdf, p)]:+.2f}" for p in qs))
    print("Gaussian ", ", ".join(f"{p:.0%}: {m + sd * stats.norm.ppf(p):+.2f}" for p in qs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", choices=["settings", "convergence", "eight_schools"])
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = [n for n in GAUSSIAN if not args.only or any(s in n for s in args.only)]
    if args.experiment == "settings":
        settings(names, args.seed)
    elif args.experiment == "convergence":
        convergence(names, args.seed)
    else:
        eight_schools()
    return 0


if __name__ == "__main__":
    sys.exit(main())
