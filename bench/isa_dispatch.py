"""Runtime dispatch (issue 14): the per-step time of the engine builds a portable installation
carries, chosen with FASTVI_ISA, against each other and against a native (-march=native) install.

Logistic regression (``bernoulli_logit_glm``, N = 10^4, K = 50, mean-field), ``fv.fit`` for
1,000 steps (tol=None, precondition=None, psis_draws=0) at S = 1, 8, 32 draws on 1 and 2 threads.
Every configuration runs in a process of its own (one engine per process), in interleaved rounds;
the table gives each case's median over the rounds and its ratio to the first configuration.

    # a portable install with an AVX2 build beside the baseline one, into a directory of its own:
    pip install --no-deps --no-build-isolation --target /tmp/fastvi-portable . \\
        --config-settings=cmake.define.FASTVI_NATIVE=OFF \\
        --config-settings=cmake.define.FASTVI_ISA_VARIANTS=x86-64-v3 \\
        --config-settings=build-dir=build/portable
    OPENBLAS_NUM_THREADS=1 python bench/isa_dispatch.py --rounds 5 \\
        auto=/tmp/fastvi-portable baseline=/tmp/fastvi-portable native=<site-packages of a source install>

A configuration is ``FASTVI_ISA=PATH``: FASTVI_ISA's value (``native`` means "unset") and the
directory holding the fastvi package to run (put first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CASES = [(1, 1), (8, 1), (32, 1), (1, 2), (8, 2), (32, 2)]  # (draws, threads)


def worker(steps: int) -> None:
    import fastvi as fv
    from logistic_model import logistic_model

    rng = np.random.default_rng(2)
    X = rng.normal(size=(10_000, 50))
    y = (rng.random(10_000) < 0.5).astype(float)
    model = logistic_model(X, y, prior_scale=1.0)
    fv.fit(model, steps=100, draws=8, tol=None, precondition=None, psis_draws=0)  # warm-up
    times = {}
    for draws, threads in CASES:
        t = time.perf_counter()
        fv.fit(model, steps=steps, draws=draws, tol=None, precondition=None, threads=threads, psis_draws=0)
        times[f"{draws},{threads}"] = (time.perf_counter() - t) / steps * 1e6
    print(json.dumps({"isa": fv.get_isa(), "times": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="FASTVI_ISA=PATH, the first one the reference")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.steps)
    configs = [c.split("=", 1) for c in args.configs]
    here = os.path.dirname(os.path.abspath(__file__))
    results: dict = {name: [] for name, _ in configs}
    isas: dict = {}
    for r in range(args.rounds):
        for name, path in configs:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, here]))
            env.pop("FASTVI_ISA", None)
            if name != "native":
                env["FASTVI_ISA"] = name
            run = subprocess.run(
                [sys.executable, __file__, "--worker", "--steps", str(args.steps)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            out = json.loads(run.stdout.strip().splitlines()[-1])
            isas[name] = out["isa"]
            results[name].append(out["times"])
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    ref = configs[0][0]
    head = " | ".join(f"{name} (engine {isas[name]})" for name, _ in configs)
    print(f"| S, threads | {head} (us/step, ratio to {ref}) |")
    print("|---|" + "---:|" * len(configs))
    for draws, threads in CASES:
        key = f"{draws},{threads}"
        med = {name: float(np.median([t[key] for t in results[name]])) for name, _ in configs}
        cells = " | ".join(f"{med[name]:.0f} ({med[name] / med[ref]:.2f}x)" for name, _ in configs)
        print(f"| {draws}, {threads} | {cells} |")


if __name__ == "__main__":
    main()
