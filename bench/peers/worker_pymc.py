"""The PyMC (ADVI) worker of bench/peers/run.py: one configuration, fitted and timed in its own process."""

from __future__ import annotations

import time

from timing import CHUNKS, median_chunk, steady_steps


def run(cfg, data):
    import logging
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    import pymc as pm

    problem, family, S, steps = cfg["problem"], cfg["family"], cfg["draws"], cfg["steps"]
    method = "advi" if family == "meanfield" else "fullrank_advi"

    def build():
        with pm.Model() as model:
            if problem == "seed":
                w = pm.Normal("w", 0.0, 1.0)
                pm.Normal("x", w, 1.0, observed=data["x"])
            else:
                X = data["X"]
                alpha = pm.Normal("alpha", 0.0, 1.0)
                beta = pm.Normal("beta", 0.0, 1.0, shape=X.shape[1])
                eta = alpha + pm.math.dot(X, beta)
                if problem == "linreg":
                    sigma = pm.HalfNormal("sigma", 1.0)
                    pm.Normal("y", eta, sigma, observed=data["y"])
                else:
                    pm.Bernoulli("y", logit_p=eta, observed=data["y"])
        return model

    def e2e():
        t = time.perf_counter()
        model = build()
        approx = pm.fit(
            n=steps,
            method=method,
            model=model,
            obj_optimizer=pm.adam(learning_rate=0.01),
            obj_n_mc=S,
            progressbar=False,
            random_seed=0,
        )
        return time.perf_counter() - t, model, approx

    cold, model, approx = e2e()
    warm = e2e()[0] if cold <= cfg["budget"] else None

    n = steady_steps(cold, steps, cfg["budget"])
    inference = (pm.ADVI if family == "meanfield" else pm.FullRankADVI)(model=model, random_seed=1)
    step = inference.objective.step_function(obj_n_mc=S, obj_optimizer=pm.adam(learning_rate=0.01), score=True)
    step()

    def chunk():
        for _ in range(n):  # pm.fit's own loop: e = step_func(); check e for NaN; store it
            e = step()
            if np.isnan(e):
                raise FloatingPointError("PyMC loss became NaN")

    per_step = median_chunk(chunk, n)

    trace = approx.sample(10_000, random_seed=2, return_inferencedata=False)
    order = ["w"] if problem == "seed" else ["alpha", "beta"] + (["sigma"] if problem == "linreg" else [])
    stack = np.concatenate([np.asarray(trace.get_values(k), dtype=float).reshape(10_000, -1) for k in order], axis=1)
    blas = "OpenBLAS default threads"
    try:
        from threadpoolctl import threadpool_info

        info = [d for d in threadpool_info() if d.get("internal_api") == "openblas"]
        if info:
            blas = f"OpenBLAS {info[0].get('num_threads')} threads, {info[0].get('architecture')} kernels"
    except Exception:  # pragma: no cover - informational only
        pass
    return {
        "e2e_cold": cold,
        "e2e_warm": warm,
        "per_step": per_step,
        "steady_steps": n * CHUNKS,
        "mean": stack.mean(0).tolist(),
        "sd": stack.std(0, ddof=1).tolist(),
        "threads": blas,
    }
