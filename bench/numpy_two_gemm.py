"""numpy's time for the two products of a GLM step, eta = X B and g = X^T R (float64, X N x K,
B K x S, R N x S): the reference bench/README.md's AVX2 section sets fastvi's S = 32 step against
(issue 14: <= 1.3x numpy's best of 1 thread and its default threads). numpy's BLAS threads are set
by OPENBLAS_NUM_THREADS (or the BLAS's own variable) before numpy starts, so each thread count runs
in its own process:

    python bench/numpy_two_gemm.py                # N = 10^4, K = 50, S = 1 8 32, threads 1 and default
    python bench/numpy_two_gemm.py --draws 32 --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(n: int, k: int, draws: list[int], repeats: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, k))
    out = {}
    for s in draws:
        b, r = rng.normal(size=(k, s)), rng.normal(size=(n, s))
        eta, g = np.empty((n, s)), np.empty((k, s))
        runs = []
        for _ in range(repeats):
            loops, t0 = 0, time.perf_counter()
            while True:
                np.matmul(x, b, out=eta)
                np.matmul(x.T, r, out=g)
                loops += 1
                if time.perf_counter() - t0 > 0.2:
                    break
            runs.append((time.perf_counter() - t0) / loops * 1e6)
        out[s] = sorted(runs)[len(runs) // 2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--draws", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.n, a.k, a.draws, a.repeats)))
        return
    rows = {}
    for label, threads in (("1 thread", "1"), (f"default ({os.cpu_count()} threads)", None)):
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(var, None)
            if threads:
                env[var] = threads
        cmd = [sys.executable, __file__, "--child", "--n", str(a.n), "--k", str(a.k), "--repeats", str(a.repeats)]
        res = subprocess.run([*cmd, "--draws", *map(str, a.draws)], env=env, capture_output=True, text=True, check=True)
        rows[label] = json.loads(res.stdout)
    print(f"numpy X @ B + X.T @ R, float64, N = {a.n}, K = {a.k} (median of {a.repeats}, us)")
    print("| S | " + " | ".join(rows) + " | best |")
    print("|---|" + "---:|" * (len(rows) + 1))
    for s in a.draws:
        vals = [rows[label][str(s)] for label in rows]
        print(f"| {s} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {min(vals):.0f} |")


if __name__ == "__main__":
    main()
