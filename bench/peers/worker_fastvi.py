"""The fastvi worker of bench/peers/run.py: one configuration, fitted and timed in its own process."""

from __future__ import annotations

import time

from timing import CHUNKS, median_chunk, steady_steps, timed


def run(cfg, data):
    import fastvi as fv
    import numpy as np

    problem, family, S, threads, steps = cfg["problem"], cfg["family"], cfg["draws"], cfg["threads"], cfg["steps"]
    variant = cfg.get("variant", "fused")
    fused = variant in ("fused", "auto")
    precondition = "auto" if variant == "auto" else None
    if fused:
        needed = {"seed": "normal", "linreg": "normal_id_glm", "logistic": "bernoulli_logit_glm"}[problem]
    else:
        needed = {"linreg": "normal", "logistic": "bernoulli_logit"}[problem]
    if needed not in fv.kernels():
        return {"skipped": f"this fastvi build has no {needed!r} kernel"}

    X = data["X"].astype(np.float32) if cfg.get("float32") and "X" in data else data.get("X")

    def build():
        m = fv.Model()
        if problem == "seed":
            w = m.param("w")
            m.add("normal", w, loc=0.0, scale=1.0)
            m.add("normal", data["x"], loc=w, scale=1.0)
            return m
        k = X.shape[1]
        alpha = m.param("alpha")
        beta = m.param("beta", shape=(k,))
        m.add("normal", alpha, loc=0.0, scale=1.0)
        m.add("normal", beta, loc=0.0, scale=1.0)
        if problem == "linreg":
            sigma = m.param("sigma", lower=0.0)
            m.add("half_normal", sigma, scale=1.0)
            if fused:
                m.add("normal_id_glm", data["y"], X=X, alpha=alpha, beta=beta, scale=sigma)
            else:
                m.add("normal", data["y"], loc=alpha + data["X"] @ beta, scale=sigma)
        elif fused:
            m.add("bernoulli_logit_glm", data["y"], X=X, alpha=alpha, beta=beta)
        else:
            m.add("bernoulli_logit", data["y"], logit=alpha + data["X"] @ beta)
        return m

    def run(m, n, **extra):
        return fv.fit(
            m,
            family=family,
            steps=n,
            draws=S,
            lr=0.01,
            seed=0,
            tol=None,
            threads=threads,
            precondition=precondition,
            **extra,
        )

    t = time.perf_counter()
    fit = run(build(), steps)
    cold = time.perf_counter() - t
    warm = timed(lambda: run(build(), steps)) if cold <= cfg["budget"] else None
    m = build()
    n = steady_steps(cold, steps, cfg["budget"])
    # The steady-state chunks time the loop alone, as NumPyro's and PyMC's do: without the PSIS
    # diagnostic fv.fit runs after its last step (the end-to-end times above include it). With it,
    # each chunk of 2,000 steps at S = 1 on the logistic problem also paid ~330 ms of PSIS (1,000
    # draws on all rows), which doubled the per-step figure (310 against 145 us, 2026-12-02).
    per_step = median_chunk(lambda: run(m, n, psis_draws=0), n)

    mean, sd = fit.mean(), fit.std()
    order = ["w"] if problem == "seed" else ["alpha", "beta"] + (["sigma"] if problem == "linreg" else [])
    flat = lambda d: np.concatenate([np.atleast_1d(np.asarray(d[k], dtype=float)).ravel() for k in order])
    return {
        "e2e_cold": cold,
        "e2e_warm": warm,
        "per_step": per_step,
        "steady_steps": n * CHUNKS,
        "mean": flat(mean).tolist(),
        "sd": flat(sd).tolist(),
        "threads": f"threads={threads}",
        "variant": cfg.get("variant", "fused"),
    }
