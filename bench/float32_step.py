"""Per-step time of a logistic regression fit with X in float32 against X in float64 (issue 13,
item 1): ``bernoulli_logit_glm``, N = 10^4, K = 50, mean-field, ``fv.fit`` for 2,000 steps
(tol=None, precondition=None, psis_draws=0, threads=1), the two dtypes alternated, 5 runs each;
the median per step. The float32 model reads X in place and widens it as it reads (S = 1), per
pass of rows (row kernel, 2 <= S <= 8) or per block of rows (GEMM path, larger S).

    OPENBLAS_NUM_THREADS=1 python bench/float32_step.py 1 8 32     # draws per step
"""

from __future__ import annotations

import sys
import time

import fastvi as fv
import numpy as np
from logistic_model import logistic_model


def build(X, y):
    return logistic_model(X, y, prior_scale=1.0)


def main() -> None:
    rng = np.random.default_rng(2)
    N, K, steps = 10_000, 50, 2000
    X = rng.normal(size=(N, K))
    y = (rng.random(N) < 0.5).astype(float)
    models = {"float64": build(X, y), "float32": build(X.astype(np.float32), y)}
    print("| S | float64 (us/step) | float32 (us/step) | float32 / float64 |")
    print("|---|---:|---:|---:|")
    for S in [int(s) for s in sys.argv[1:]] or [1, 8, 32]:
        times: dict = {k: [] for k in models}
        for _ in range(5):
            for name, m in models.items():
                t = time.perf_counter()
                fv.fit(m, steps=steps, draws=S, tol=None, precondition=None, threads=1, psis_draws=0)
                times[name].append((time.perf_counter() - t) / steps * 1e6)
        t64, t32 = np.median(times["float64"]), np.median(times["float32"])
        print(f"| {S} | {t64:.0f} | {t32:.0f} | {t32 / t64:.2f} |", flush=True)


if __name__ == "__main__":
    main()
