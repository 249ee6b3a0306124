"""Loops of small fits (issue 12): the cost per fit of 50 small regressions, whatever BLAS does.

A loop that fits many small models (simulation studies, bootstraps, one model per group) pays for
what surrounds the C++ fit once per fit: the Laplace step's L-BFGS (scipy), the summaries, and
BLAS threads that a busy machine cannot run. This script builds a Bayesian linear regression
(N = 200 rows, D = 5 coefficients, an intercept and a noise scale; fresh data for every fit from a
fixed numpy seed), fits it ``--fits`` times in a loop with the default settings of ``fv.fit``, and
reports the median wall time per fit, and of ``fit.mean()`` plus ``fit.std()`` after it. It does
so twice, each in a fresh interpreter: with the BLAS threads the environment gives (this process's
environment less ``OPENBLAS_NUM_THREADS``) and with ``OPENBLAS_NUM_THREADS=1``, since BLAS reads
its thread count when it loads. It also reports the time of ``import fastvi`` (median over
``--imports`` fresh interpreters). The target of issue 12: per fit, default threads <= 2x one thread.

    python bench/fit_loop.py                 # both settings, a markdown table
    python bench/fit_loop.py --fits 20       # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

N_ROWS, N_COEFS = 200, 5


def run_loop(fits: int) -> dict:
    """In this interpreter: ``fits`` fits of fresh data, returning the median ms of each part."""
    import fastvi as fv
    import numpy as np

    rng = np.random.default_rng(12)
    fit_ms, summary_ms = [], []
    for _ in range(fits):
        X = rng.normal(size=(N_ROWS, N_COEFS))
        y = 0.5 + X @ rng.normal(size=N_COEFS) + rng.normal(scale=0.7, size=N_ROWS)
        model = fv.Model()
        alpha, beta = model.param("alpha"), model.param("beta", shape=(N_COEFS,))
        sigma = model.param("sigma", lower=0.0)
        model.add("normal", alpha, loc=0.0, scale=5.0)
        model.add("normal", beta, loc=0.0, scale=2.0)
        model.add("exponential", sigma, rate=1.0)
        model.add("normal_id_glm", y, X=X, alpha=alpha, beta=beta, scale=sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a rare unconverged fit still counts: its time is the point
            start = time.perf_counter()
            fit = fv.fit(model)
            fit_ms.append(1e3 * (time.perf_counter() - start))
        start = time.perf_counter()
        fit.mean()
        fit.std()
        summary_ms.append(1e3 * (time.perf_counter() - start))
    return {"fit_ms": statistics.median(fit_ms), "summary_ms": statistics.median(summary_ms)}


def import_ms(env: dict, runs: int) -> float:
    """Median wall time of ``import fastvi`` in fresh interpreters (measured inside each one)."""
    code = "import time; t = time.perf_counter(); import fastvi; print(time.perf_counter() - t)"
    times = [float(subprocess.check_output([sys.executable, "-c", code], env=env)) for _ in range(runs)]
    return 1e3 * statistics.median(times)


def measure(env: dict, fits: int, imports: int) -> dict:
    """This script's --worker run (the loop) in a fresh interpreter with ``env``, and the import time."""
    out = subprocess.check_output([sys.executable, __file__, "--worker", "--fits", str(fits)], env=env)
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["import_ms"] = import_ms(env, imports)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fits", type=int, default=50, help="fits per loop (default 50)")
    ap.add_argument("--imports", type=int, default=7, help="fresh interpreters timing `import fastvi` (default 7)")
    ap.add_argument("--worker", action="store_true", help="run the loop here and print its result as JSON")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(run_loop(args.fits)))
        return 0

    default_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    one_thread_env = {**default_env, "OPENBLAS_NUM_THREADS": "1"}
    default = measure(default_env, args.fits, args.imports)
    one = measure(one_thread_env, args.fits, args.imports)
    rows = [
        (f"`fv.fit`, ms per fit (median of {args.fits})", "fit_ms"),
        ("`fit.mean()` + `fit.std()`, ms", "summary_ms"),
        (f"`import fastvi`, ms (median of {args.imports})", "import_ms"),
    ]
    print(
        f"N = {N_ROWS} rows, {N_COEFS} coefficients (7 parameters with the intercept and scale); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| | default BLAS threads | `OPENBLAS_NUM_THREADS=1` |")
    print("|---|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {default[key]:.1f} | {one[key]:.1f} |")
    print(f"| fit, default / one thread | {default['fit_ms'] / one['fit_ms']:.2f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
