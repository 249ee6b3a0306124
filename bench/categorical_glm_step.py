"""Fused vs unfused multi-logit regression: time per fit step of categorical_logit_glm against
categorical_logit on the expression alpha + X @ B.

    python bench/categorical_glm_step.py [--n 2000] [--k 10] [--c 4] [--draws 1 16] [--steps 1000]
                                         [--repeats 5] [--threads 1]

Both models have alpha (C,) and beta (K, C) with standard normal priors and are fitted with
``fv.fit(m, steps=steps, draws=S, tol=None, precondition=None, psis_draws=0, threads=threads)``;
the time per step is the fit's wall time divided by ``steps``. The two alternate, and each figure
is the median of ``repeats`` runs (the machine may be shared and noisy). It also prints the time
of one ``model.log_density`` call at S draws (the likelihood and priors alone).
"""

import argparse
import os
import statistics
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import fastvi as fv  # noqa: E402
import numpy as np  # noqa: E402


def make_model(fused: bool, n: int, k: int, c: int, seed: int = 0) -> fv.Model:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    eta = X @ rng.normal(size=(k, c))
    p = np.exp(eta - eta.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, c - 1).astype(float)
    m = fv.Model()
    alpha, beta = m.param("alpha", c), m.param("beta", (k, c))
    m.add("normal", alpha, loc=0.0, scale=1.0)
    m.add("normal", beta, loc=0.0, scale=1.0)
    if fused:
        m.add("categorical_logit_glm", y, X=X, alpha=alpha, beta=beta)
    else:
        m.add("categorical_logit", y, logits=X @ beta + alpha)
    return m


def step_time(m: fv.Model, draws: int, steps: int, threads: int) -> float:
    t0 = time.perf_counter()
    fv.fit(m, steps=steps, draws=draws, tol=None, precondition=None, psis_draws=0, threads=threads, seed=1)
    return (time.perf_counter() - t0) / steps


def log_density_time(m: fv.Model, draws: int, threads: int, calls: int = 200) -> float:
    zeta = np.random.default_rng(2).normal(size=(m.dim, draws)) * 0.1
    m.log_density(zeta, threads=threads)
    t0 = time.perf_counter()
    for _ in range(calls):
        m.log_density(zeta, threads=threads)
    return (time.perf_counter() - t0) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--c", type=int, default=4)
    ap.add_argument("--draws", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    models = {kind: make_model(kind == "fused", args.n, args.k, args.c) for kind in ("fused", "unfused")}
    print(f"N={args.n} K={args.k} C={args.c} threads={args.threads}, median of {args.repeats}")
    print("S   fused step   unfused step   ratio   | fused log_density   unfused log_density")
    for S in args.draws:
        steps = {kind: [] for kind in models}
        evals = {kind: [] for kind in models}
        for _ in range(args.repeats):
            for kind, m in models.items():
                steps[kind].append(step_time(m, S, args.steps, args.threads))
                evals[kind].append(log_density_time(m, S, args.threads))
        f, u = statistics.median(steps["fused"]), statistics.median(steps["unfused"])
        fe, ue = statistics.median(evals["fused"]), statistics.median(evals["unfused"])
        print(
            f"{S:<3} {f * 1e6:9.1f} us   {u * 1e6:10.1f} us   {u / f:5.2f}x  | {fe * 1e6:12.1f} us {ue * 1e6:17.1f} us"
        )


if __name__ == "__main__":
    main()
