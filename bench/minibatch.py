"""Minibatch VI against full-batch VI (issue 13, item 2): a logistic regression with N = 10^6 rows
and K = 20 predictors (bernoulli_logit_glm; alpha, beta ~ Normal(0, 2); data simulated from a
fixed seed), fitted by ``fv.fit`` with its defaults (mean-field, stopping rule, averaging,
refinement, Laplace preconditioning, PSIS) once on every row per step and once with
``batch_size=B``.

Reported per fit: wall time, steps, time per step and whether it converged; for the minibatch fit
also the largest |mean difference| from the full-batch fit in units of the full-batch fit's
posterior sd, and the largest |sd ratio - 1|. The issue's target: means within 0.1 sd, sds within
10 %, at least 10x faster. Both fits share everything but the minibatches (mode search and PSIS
use all rows in both), so the speed-up includes those fixed costs.

    OPENBLAS_NUM_THREADS=1 python bench/minibatch.py                     # N = 10^6, B = 1,000
    OPENBLAS_NUM_THREADS=1 python bench/minibatch.py --rows 200000 --seeds 0
"""

from __future__ import annotations

import argparse
import time
import warnings

import fastvi as fv
import numpy as np
from logistic_model import logistic_model


def build(X, y):
    return logistic_model(X, y, prior_scale=2.0)


def moments(fit):
    mean, sd = fit.mean(), fit.std()
    return (
        np.concatenate([np.atleast_1d(mean[k]) for k in ("alpha", "beta")]),
        np.concatenate([np.atleast_1d(sd[k]) for k in ("alpha", "beta")]),
    )


def timed_fit(m, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        fit = fv.fit(m, **kw)
        seconds = time.perf_counter() - t
    return fit, seconds, [str(w.message) for w in caught]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--float32", action="store_true", help="X as float32")
    ap.add_argument("--plain", action="store_true", help="control_variate=False: the plain minibatch estimate")
    args = ap.parse_args()
    rng = np.random.default_rng(13)
    N, K = args.rows, args.cols
    X = rng.standard_normal((N, K)) / np.sqrt(K)
    beta = rng.normal(size=K)
    y = (rng.random(N) < 1 / (1 + np.exp(-(0.2 + X @ beta)))).astype(np.float64)
    if args.float32:
        X = X.astype(np.float32)
    m = build(X, y)
    print(
        f"logistic N={N} K={K}, X {X.dtype}, batch_size={args.batch}, control_variate={not args.plain}, "
        f"threads={args.threads}\n"
    )
    print(
        "| seed | fit | wall (s) | steps | full passes | ms / step | converged | max abs(mean diff) / sd "
        "| max abs(sd ratio - 1) | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        full, t_full, w_full = timed_fit(m, seed=seed, threads=args.threads)
        mb, t_mb, w_mb = timed_fit(
            m, seed=seed, threads=args.threads, batch_size=args.batch, control_variate=not args.plain
        )
        mean_f, sd_f = moments(full)
        mean_b, sd_b = moments(mb)
        dmean = np.max(np.abs(mean_b - mean_f) / sd_f)
        dsd = np.max(np.abs(sd_b / sd_f - 1))
        for label, f, t in (("full batch", full, t_full), (f"B = {args.batch}", mb, t_mb)):
            extra = f"{dmean:.3f} | {dsd * 100:.1f} % | {t_full / t_mb:.1f}x" if f is mb else "(reference) | | 1x"
            print(
                f"| {seed} | {label} | {t:.2f} | {f.steps} | {f.full_evaluations if f is mb else f.steps} "
                f"| {1000 * t / max(f.steps, 1):.3f} | {f.converged} | {extra} |",
                flush=True,
            )
        for w in w_full + w_mb:
            print(f"  warning: {w}")


if __name__ == "__main__":
    main()
