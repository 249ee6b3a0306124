"""Per-step time in ``fv.fit`` of the GLM GEMM path with scipy's BLAS against Eigen's products, in
one process, alternated (issue 14): logistic regression (``bernoulli_logit_glm``, N = 10^4,
K = 50, mean-field), ``draws`` per step, ``tol=None``, ``precondition=None``, ``psis_draws=0``.
Each round fits once with each BLAS (the model rebuilt under that choice, as ``FASTVI_BLAS``
would build it) on 1 and on 2 threads; the table gives the median per-step times over the rounds
and the median of the per-round ratios.

    python bench/blas_step.py                      # S = 32, 5 rounds of 400 steps
    python bench/blas_step.py --draws 8 32 --rounds 7
"""

from __future__ import annotations

import argparse
import time

import fastvi as fv
import numpy as np
from fastvi import _blas, _core
from logistic_model import logistic_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, nargs="+", default=[32])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=50)
    a = ap.parse_args()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(a.n, a.k)) / np.sqrt(a.k)
    y = (rng.random(a.n) < 0.5).astype(float)
    _blas.ensure()
    process_choice = _core.dgemm_address()
    choices = {"eigen": 0, "scipy": _blas._scipy_dgemm()}
    print(f"BLAS: {_blas.get_blas()}; ISA: {fv.get_isa()}")
    print("| S | threads | Eigen (us/step) | scipy BLAS (us/step) | BLAS / Eigen (median of rounds) |")
    print("|---|---|---:|---:|---:|")
    try:
        for S in a.draws:
            for threads in (1, 2):
                times: dict = {name: [] for name in choices}
                for _ in range(a.rounds):
                    for name, address in choices.items():
                        _core.set_dgemm(address)
                        m = logistic_model(X, y)  # built under this choice
                        t = time.perf_counter()
                        fv.fit(m, steps=a.steps, draws=S, tol=None, precondition=None, threads=threads, psis_draws=0)
                        times[name].append((time.perf_counter() - t) / a.steps * 1e6)
                e, b = np.array(times["eigen"]), np.array(times["scipy"])
                print(
                    f"| {S} | {threads} | {np.median(e):.0f} | {np.median(b):.0f} | {np.median(b / e):.2f} "
                    f"({(b / e).min():.2f}-{(b / e).max():.2f}) |",
                    flush=True,
                )
    finally:
        _core.set_dgemm(process_choice)


if __name__ == "__main__":
    main()
