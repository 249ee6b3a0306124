"""Expression vs fused GLM: time per fit step of a GLM likelihood written as an expression against
the fused kernel, for logistic, Poisson and Normal linear regression.

    python bench/expression_gap.py [--n 10000] [--k 50] [--steps 500] [--repeats 5] [--markdown]

Each model has N rows and K covariates, a standard normal prior on alpha and beta (and a
half-normal one on sigma), and is fitted with
``fv.fit(m, steps=steps, draws=S, tol=None, precondition=None, threads=1)``; the time per step is
the fit's wall time divided by ``steps``. Fused and expression fits alternate, and each cell is the
median of ``repeats`` runs (the machine may be shared and noisy).

    bernoulli: bernoulli_logit_glm(y, X, alpha, beta)  vs  bernoulli_logit(y, logit=alpha + X @ beta)
    poisson:   poisson_log_glm(y, X, alpha, beta)      vs  poisson_log(y, log_rate=alpha + X @ beta)
    normal:    normal_id_glm(y, X, alpha, beta, scale) vs  normal(y, loc=alpha + X @ beta, scale=sigma)
"""

import argparse
import os
import statistics
import time

# One thread throughout: numpy's BLAS threads would otherwise spin on the (shared) cores after the
# data are generated.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import fastvi as fv  # noqa: E402
import numpy as np  # noqa: E402

LIKELIHOODS = ("bernoulli", "poisson", "normal")
FUSED = {"bernoulli": "bernoulli_logit_glm", "poisson": "poisson_log_glm", "normal": "normal_id_glm"}


def make_data(likelihood, n, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    beta = rng.normal(size=k)
    eta = 0.3 + X @ beta
    if likelihood == "bernoulli":
        y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    elif likelihood == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = eta + 0.5 * rng.normal(size=n)
    return X, y


def build(likelihood, fused, X, y):
    m = fv.Model()
    alpha = m.param("alpha")
    beta = m.param("beta", shape=(X.shape[1],))
    m.add("normal", alpha, loc=0.0, scale=1.0)
    m.add("normal", beta, loc=0.0, scale=1.0)
    if likelihood == "normal":
        sigma = m.param("sigma", lower=0.0)
        m.add("half_normal", sigma, scale=1.0)
    if fused:
        extra = {"scale": sigma} if likelihood == "normal" else {}
        m.add(FUSED[likelihood], y, X=X, alpha=alpha, beta=beta, **extra)
    else:
        eta = alpha + X @ beta
        if likelihood == "bernoulli":
            m.add("bernoulli_logit", y, logit=eta)
        elif likelihood == "poisson":
            m.add("poisson_log", y, log_rate=eta)
        else:
            m.add("normal", y, loc=eta, scale=sigma)
    return m


def time_per_step(model, draws, steps):
    start = time.perf_counter()
    fv.fit(model, steps=steps, draws=draws, tol=None, precondition=None, threads=1)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--draws", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--likelihoods", nargs="+", default=list(LIKELIHOODS), choices=LIKELIHOODS)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()

    rows = []
    for likelihood in args.likelihoods:
        X, y = make_data(likelihood, args.n, args.k)
        models = {fused: build(likelihood, fused, X, y) for fused in (True, False)}
        for s in args.draws:
            for fused in (True, False):  # warm-up: reserve, caches, page faults
                time_per_step(models[fused], s, max(10, args.steps // 10))
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for fused in (True, False):
                    times[fused].append(time_per_step(models[fused], s, args.steps))
            f, e = statistics.median(times[True]), statistics.median(times[False])
            rows.append((likelihood, s, f * 1e6, e * 1e6, e / f))
            if not args.markdown:
                print(
                    f"{likelihood:9s} S={s:3d}  fused {f * 1e6:8.0f} us  expression {e * 1e6:8.0f} us  "
                    f"ratio {e / f:5.2f}",
                    flush=True,
                )

    if args.markdown:
        print(
            f"N = {args.n}, K = {args.k}, {args.steps} steps, median of {args.repeats} runs, one thread; "
            "time per step in µs\n"
        )
        print("| likelihood | S | fused | expression | ratio |")
        print("|---|---|---|---|---|")
        for likelihood, s, f, e, r in rows:
            print(f"| {likelihood} | {s} | {f:.0f} | {e:.0f} | {r:.2f} |")


if __name__ == "__main__":
    main()
