#!/usr/bin/env python
"""Peer comparison: fastvi vs NumPyro (SVI) vs PyMC (ADVI) on the same problems and data.

Run from the venv made by ``bench/peers/setup_venv.sh``::

    bench/peers/.venv/bin/python bench/peers/run.py --repeats 3

Every measurement runs in a fresh Python subprocess (a *worker*), so that "end to end" really
includes everything a user pays for a first fit in a session: building the model, tracing and
compiling (JAX / PyTensor), and the 10,000 steps. Imports are done before the clock starts, and for
JAX the CPU backend is initialised before it too (``jax.devices()`` and one tiny op), since a user
pays that once per process, not per fit.

What each worker measures (all wall clock, ``time.perf_counter``):

* ``e2e cold``: the first fit in the process, from the Python call that starts building the model
  to the fit's result being on the host (``block_until_ready`` for JAX). For PyMC, PyTensor's
  on-disk cache of compiled C modules (``~/.pytensor``) is warm after the very first run on a
  machine; the first run ever pays several seconds more of g++ (see bench/README.md).
* ``e2e warm``: the same fit again, with the model, guide and SVI / inference objects built anew in
  the same process. NumPyro's ``svi.run`` re-traces and re-compiles its ``lax.scan`` on every call,
  so this is what a second fit in a notebook costs. Skipped ("-") when the cold fit took longer
  than ``--budget`` seconds: the steps dominate then, and PyMC at S=32 would need minutes more.
* ``per step``: steady state, with all compilation done:
    - fastvi: ``fv.fit`` on an already built model, divided by the number of steps (there is no
      compilation step in fastvi; the loop runs in C++ with the GIL released).
    - NumPyro: ``jax.jit`` of the same ``lax.scan`` over ``svi.update`` that ``svi.run`` runs (the
      per-step losses are collected, as ``svi.run`` does), compiled by a first call and timed on a
      second call. This is the fastest way to run NumPyro's SVI loop (faster than a Python loop of
      jitted ``svi.update`` calls, which pays ~50-100 us dispatch per step).
    - PyMC: the compiled PyTensor step function that ``pm.fit`` builds
      (``inference.objective.step_function(score=True, ...)``, the same one ``pm.fit`` calls), called
      in a Python loop exactly as ``pm.fit``'s own loop does. A second ``pm.fit`` call would rebuild
      and re-optimise the graph (~0.2-0.5 s), which is not per-step cost.
  The steady-state loop is timed in 5 equal chunks and the median chunk counts (a burst of load
  from another process then does not land in the result); the chunks cover all ``--steps`` steps
  unless that would take more than ``--budget`` seconds (estimated from the cold fit), in which
  case they cover fewer (at least 200).

Noise: this is meant for a shared machine. Before each worker the driver waits (``--wait-idle``)
until other processes use fewer than ``--quiet-load`` cores (from /proc/stat), measures how much
CPU others used while the worker ran, and re-runs a worker that shared the machine
(``--retries``, only for workers shorter than ``--retry-max-wall``), keeping the quietest run.
The table is the median over ``--repeats`` such runs.

Equal work: every library runs Adam with learning rate 0.01 for exactly ``--steps`` steps
(fastvi ``tol=None``; PyMC is given ``obj_optimizer=pm.adam(learning_rate=0.01)`` instead of its
default adagrad_window) from the same data, with S Monte Carlo draws per step. The table's last
columns check that they land on the same posterior: the largest |mean difference| over all
coordinates, in units of fastvi's posterior sd, and the range of sd ratios (peer / fastvi).
fastvi's moments are exact moments of q; the peers' come from 10,000 draws of their q.

Threads (defaults; see --peer-threads): fastvi threads=1 (and threads=2 for the logistic problem);
NumPyro / JAX on CPU (``JAX_PLATFORMS=cpu``) with XLA's default intra-op thread pool (all cores);
PyMC's C backend with OpenBLAS's default threads (all cores). OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from the workers' environment (this machine sets them for old OpenBLAS
builds; they slow the OpenBLAS in current numpy, which PyMC's dot products call); pass
``--keep-openblas-env`` to keep them. NumPyro runs in float32 (JAX's default; ``--x64`` for
float64), fastvi and PyMC in float64.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------------------------------------
# Problems and data (identical numpy arrays for every library)
# ------------------------------------------------------------------------------------------------

PROBLEMS = {
    "seed": "w ~ N(0,1), x_i ~ N(w,1), 100 draws at w=2",
    "linreg": "linear regression N=1000 K=10: alpha, beta ~ N(0,1), sigma ~ HalfNormal(1)",
    "logistic": "logistic regression N=10000 K=50: alpha, beta ~ N(0,1)",
}


def configs(problem):
    """(family, draws per step, fastvi thread counts) to run for a problem."""
    if problem == "logistic":
        return [("meanfield", s, (1, 2)) for s in (1, 8, 32)]
    return [("meanfield", 1, (1,)), ("fullrank", 1, (1,))]


def fastvi_jobs(problem, S, threads):
    """fastvi's runs for one configuration: (variant, threads).

    "fused" is the model as fastvi users should write it (the fused GLM kernels for the
    regressions); "expr" writes the regressions' linear predictor as an expression
    (``alpha + X @ beta`` into the element-wise normal / bernoulli_logit kernel), the generic path,
    run at S=1 only and single-threaded, to show what the fused kernels buy.

    Every variant but "auto" runs with ``precondition=None``: plain Adam on the model's own
    unconstrained coordinates from a start at 0 with scale 0.1, the same algorithm the peers run
    (NumPyro's AutoNormal also starts q's scale at 0.1). "auto" is fastvi's default
    (``precondition="auto"``: an L-BFGS mode search and a finite-difference Hessian first, then the
    fit in Laplace-whitened coordinates), run at S=1 to show what the default costs end to end."""
    jobs = [("fused", t) for t in threads]
    if S == 1:
        jobs.append(("auto", 1))
    if problem != "seed" and S == 1:
        jobs.append(("expr", 1))
    return jobs


def make_data(problem):
    import numpy as np

    if problem == "seed":
        np.random.seed(42)
        x = np.random.normal(2.0, 1.0, size=100)
        return {"x": x}
    if problem == "linreg":
        n, k = 1_000, 10
        np.random.seed(1)
        X = np.random.normal(size=(n, k))
        beta = np.random.normal(size=k)
        alpha, sigma = 1.0, 0.5
        y = alpha + X @ beta + sigma * np.random.normal(size=n)
        return {"X": X, "y": y}
    if problem == "logistic":
        n, k = 10_000, 50
        np.random.seed(2)
        X = np.random.normal(size=(n, k))
        beta = np.random.normal(0.0, 0.25, size=k)
        alpha = -0.5
        p = 1.0 / (1.0 + np.exp(-(alpha + X @ beta)))
        y = (np.random.uniform(size=n) < p).astype(np.float64)
        return {"X": X, "y": y}
    raise ValueError(problem)


def coord_names(problem, data):
    if problem == "seed":
        return ["w"]
    k = data["X"].shape[1]
    names = ["alpha"] + [f"beta[{i}]" for i in range(k)]
    return names + (["sigma"] if problem == "linreg" else [])


def reference_posterior(problem, data):
    """(mean, sd, name) of an independent reference posterior, in the workers' coordinate order.

    seed: exact (conjugate). linreg: exact up to quadrature: theta = (alpha, beta) is Gaussian given
    sigma, and sigma's marginal posterior is integrated on a fine grid. logistic: the Laplace
    approximation (Newton's method to the mode; sd from the inverse Hessian), which with N=10,000
    rows is within a small fraction of a posterior sd of the exact mean."""
    import numpy as np

    if problem == "seed":
        x = data["x"]
        n = len(x)
        return np.array([x.sum() / (n + 1)]), np.array([1.0 / np.sqrt(n + 1)]), "exact"
    X, y = data["X"], data["y"]
    Xa = np.column_stack([np.ones(len(y)), X])
    n, d = Xa.shape
    if problem == "linreg":
        A, b, yy = Xa.T @ Xa, Xa.T @ y, y @ y
        eye = np.eye(d)

        def log_post(sig):  # log p(sigma | y) + const, with sigma ~ HalfNormal(1)
            M = A + sig**2 * eye
            quad = (yy - b @ np.linalg.solve(M, b)) / sig**2
            logdet = 2 * (n - d) * np.log(sig) + np.linalg.slogdet(M)[1]
            return -0.5 * (logdet + quad) - 0.5 * sig**2

        coarse = np.exp(np.linspace(np.log(1e-2), np.log(10.0), 2001))
        mode = coarse[np.argmax([log_post(s) for s in coarse])]
        grid = np.linspace(0.7 * mode, 1.3 * mode, 6001)
        lp = np.array([log_post(s) for s in grid])
        w = np.exp(lp - lp.max())
        w /= w.sum()
        means = np.array([np.linalg.solve(A + s**2 * eye, b) for s in grid])
        variances = np.array([s**2 * np.diag(np.linalg.inv(A + s**2 * eye)) for s in grid])
        m = w @ means
        v = w @ (variances + means**2) - m**2
        sig_m = w @ grid
        sig_sd = np.sqrt(w @ grid**2 - sig_m**2)
        return np.append(m, sig_m), np.append(np.sqrt(v), sig_sd), "exact"
    theta = np.zeros(d)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
        grad = Xa.T @ (y - p) - theta
        H = (Xa * (p * (1 - p))[:, None]).T @ Xa + np.eye(d)
        step = np.linalg.solve(H, grad)
        theta += step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
    H = (Xa * (p * (1 - p))[:, None]).T @ Xa + np.eye(d)
    return theta, np.sqrt(np.diag(np.linalg.inv(H))), "Laplace"


# ------------------------------------------------------------------------------------------------
# Workers: one library, one configuration, in its own process
# ------------------------------------------------------------------------------------------------


CHUNKS = 5  # the steady-state loop is timed in this many chunks; the median chunk counts


def _steady_steps(cold_e2e, steps, budget):
    """Steps per steady-state chunk: CHUNKS chunks cover all steps unless that exceeds the budget."""
    per_step = cold_e2e / steps  # an over-estimate (it includes compilation)
    total = steps if per_step * steps <= budget else max(200, min(steps, int(budget / per_step)))
    return max(1, total // CHUNKS)


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _median_chunk(run_chunk, n):
    """Per-step time: the median over CHUNKS timed calls of ``run_chunk()`` (n steps each).

    The median of chunks, rather than one long loop, keeps a burst of load from another process on
    this shared machine from landing in the result."""
    times = []
    for _ in range(CHUNKS):
        t = time.perf_counter()
        run_chunk()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / n


def worker_fastvi(cfg, data):
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

    def build():
        m = fv.Model()
        if problem == "seed":
            w = m.param("w")
            m.add("normal", w, loc=0.0, scale=1.0)
            m.add("normal", data["x"], loc=w, scale=1.0)
            return m
        k = data["X"].shape[1]
        alpha = m.param("alpha")
        beta = m.param("beta", shape=(k,))
        m.add("normal", alpha, loc=0.0, scale=1.0)
        m.add("normal", beta, loc=0.0, scale=1.0)
        if problem == "linreg":
            sigma = m.param("sigma", lower=0.0)
            m.add("half_normal", sigma, scale=1.0)
            if fused:
                m.add("normal_id_glm", data["y"], X=data["X"], alpha=alpha, beta=beta, sigma=sigma)
            else:
                m.add("normal", data["y"], loc=alpha + data["X"] @ beta, scale=sigma)
        elif fused:
            m.add("bernoulli_logit_glm", data["y"], X=data["X"], alpha=alpha, beta=beta)
        else:
            m.add("bernoulli_logit", data["y"], logit=alpha + data["X"] @ beta)
        return m

    def run(m, n):
        return fv.fit(
            m, family=family, steps=n, draws=S, lr=0.01, seed=0, tol=None, threads=threads, precondition=precondition
        )

    t = time.perf_counter()
    fit = run(build(), steps)
    cold = time.perf_counter() - t
    warm = _timed(lambda: run(build(), steps)) if cold <= cfg["budget"] else None
    m = build()
    n = _steady_steps(cold, steps, cfg["budget"])
    per_step = _median_chunk(lambda: run(m, n), n)

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


def worker_numpyro(cfg, data):
    import jax
    import jax.numpy as jnp
    import numpy as np

    if cfg["x64"]:
        jax.config.update("jax_enable_x64", True)
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

    problem, family, S, steps = cfg["problem"], cfg["family"], cfg["draws"], cfg["steps"]
    # Initialise the CPU backend outside the clock: a user pays this once per process.
    jnp.zeros(3).block_until_ready()
    jax.devices()

    if problem == "seed":

        def model(x):
            w = numpyro.sample("w", dist.Normal(0.0, 1.0))
            numpyro.sample("x", dist.Normal(w, 1.0), obs=x)

        args = (data["x"],)
    elif problem == "linreg":

        def model(X, y):
            alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
            beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            numpyro.sample("y", dist.Normal(alpha + X @ beta, sigma), obs=y)

        args = (data["X"], data["y"])
    else:

        def model(X, y):
            alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
            beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
            numpyro.sample("y", dist.BernoulliLogits(alpha + X @ beta), obs=y)

        args = (data["X"], data["y"])

    Guide = AutoNormal if family == "meanfield" else AutoMultivariateNormal

    def make_svi():
        # The data go to the device inside the clock: part of what a fit costs.
        dev_args = tuple(jnp.asarray(a) for a in args)
        guide = Guide(model)
        loss = Trace_ELBO(num_particles=S, vectorize_particles=True) if S > 1 else Trace_ELBO()
        return SVI(model, guide, numpyro.optim.Adam(0.01), loss), guide, dev_args

    def e2e():
        t = time.perf_counter()
        svi, guide, dev_args = make_svi()
        res = svi.run(jax.random.PRNGKey(0), steps, *dev_args, progress_bar=False)
        jax.block_until_ready((res.params, res.losses))
        return time.perf_counter() - t, svi, guide, dev_args, res

    cold, svi, guide, dev_args, res = e2e()
    warm = e2e()[0] if cold <= cfg["budget"] else None

    n = _steady_steps(cold, steps, cfg["budget"])

    @jax.jit
    def loop(state):
        return jax.lax.scan(lambda s, _: svi.update(s, *dev_args), state, None, length=n)

    state = svi.init(jax.random.PRNGKey(1), *dev_args)
    jax.block_until_ready(loop(state))  # compile (and run once)
    box = [state]

    def chunk():
        box[0] = jax.block_until_ready(loop(box[0]))[0]

    per_step = _median_chunk(chunk, n)

    draws = guide.sample_posterior(jax.random.PRNGKey(2), res.params, *dev_args, sample_shape=(10_000,))
    order = ["w"] if problem == "seed" else ["alpha", "beta"] + (["sigma"] if problem == "linreg" else [])
    stack = np.concatenate([np.asarray(draws[k], dtype=float).reshape(10_000, -1) for k in order], axis=1)
    return {
        "e2e_cold": cold,
        "e2e_warm": warm,
        "per_step": per_step,
        "steady_steps": n * CHUNKS,
        "mean": stack.mean(0).tolist(),
        "sd": stack.std(0, ddof=1).tolist(),
        "threads": "XLA " + (os.environ.get("XLA_FLAGS") or "default (all cores)"),
        "dtype": "float64" if cfg["x64"] else "float32",
    }


def worker_pymc(cfg, data):
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

    n = _steady_steps(cold, steps, cfg["budget"])
    inference = (pm.ADVI if family == "meanfield" else pm.FullRankADVI)(model=model, random_seed=1)
    step = inference.objective.step_function(obj_n_mc=S, obj_optimizer=pm.adam(learning_rate=0.01), score=True)
    step()

    def chunk():
        for _ in range(n):  # pm.fit's own loop: e = step_func(); check e for NaN; store it
            e = step()
            if np.isnan(e):
                raise FloatingPointError("PyMC loss became NaN")

    per_step = _median_chunk(chunk, n)

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


WORKERS = {"fastvi": worker_fastvi, "numpyro": worker_numpyro, "pymc": worker_pymc}


def versions():
    out = {"python": platform.python_version()}
    for mod in ("fastvi", "numpy", "jax", "jaxlib", "numpyro", "pymc", "pytensor"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # pragma: no cover
            out[mod] = f"missing ({type(exc).__name__})"
    return out


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def worker_env(lib, args):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("PYTHONWARNINGS", "ignore")
    if not args.keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if args.peer_threads == "1" and lib != "fastvi":
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
    return env


def _cpu_times():
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (None if unreadable)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / hz, total / hz


def _children_cpu():
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(max_wait, threshold):
    """Waits (up to max_wait s) until other processes use less than `threshold` cores."""
    waited, load = 0.0, 0.0
    while True:
        a = _cpu_times()
        time.sleep(0.5)
        b = _cpu_times()
        if a is None or b is None:
            return 0.0
        load = (b[0] - a[0]) / 0.5
        if load < threshold or waited >= max_wait:
            return load
        time.sleep(2.0)
        waited += 2.5


def run_worker_once(cfg, args):
    c0, u0, t0 = _cpu_times(), _children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
        env=worker_env(cfg["lib"], args),
        capture_output=True,
        text=True,
    )
    c1, u1, wall = _cpu_times(), _children_cpu(), time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}
    res = json.loads(lines[-1][len("RESULT ") :])
    res["wall"] = wall
    if c0 and c1:
        # cores used by processes other than this benchmark while the worker ran
        res["others_load"] = max(0.0, ((c1[0] - c0[0]) - (u1 - u0)) / wall)
    return res


def run_worker(cfg, args):
    """Runs a worker on a quiet machine if it can: waits for other processes to go quiet, and
    re-runs (up to --retries times) a measurement during which they did not; keeps the run with the
    least load from others."""
    best = None
    for attempt in range(args.retries + 1):
        wait_quiet(args.wait_idle, args.quiet_load)
        res = run_worker_once(cfg, args)
        res["attempts"] = attempt + 1
        if best is None or res.get("others_load", 0.0) < best.get("others_load", 0.0):
            best = res
        if (
            "e2e_cold" not in res
            or res.get("others_load", 0.0) < args.quiet_load
            or res.get("wall", 0.0) > args.retry_max_wall
        ):
            break
    best["attempts"] = attempt + 1
    return best


def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_step(s):
    if s is None:
        return "-"
    us = s * 1e6
    return f"{us:.1f} us" if us < 100 else f"{us:.0f} us"


def fmt_ratio(peer, ref):
    if peer is None or ref is None or ref <= 0:
        return "-"
    r = peer / ref
    return f"{r:.0f}x" if r >= 100 else (f"{r:.1f}x" if r >= 1 else f"{r:.2f}x")


def aggregate(results):
    ok = [r for r in results if "e2e_cold" in r]
    if not ok:
        return results[0] if results else {"error": "no result"}

    def med(key):
        vals = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    out = dict(ok[-1])
    out.update(
        e2e_cold=med("e2e_cold"),
        e2e_warm=med("e2e_warm"),
        per_step=med("per_step"),
        n=len(ok),
        others_load_max=max(r.get("others_load", 0.0) for r in ok),
    )
    return out


def posterior_check(res, ref_mean, ref_sd):
    """max |mean - ref_mean| / ref_sd over coordinates, and the range of sd / ref_sd."""
    if "mean" not in res or ref_mean is None:
        return "-", "-"
    import numpy as np

    m, s = np.asarray(res["mean"]), np.asarray(res["sd"])
    m0, s0 = np.asarray(ref_mean), np.asarray(ref_sd)
    dm = np.max(np.abs(m - m0) / s0)
    ratio = s / s0
    lo, hi = ratio.min(), ratio.max()
    return f"{dm:.2f}", (f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the table shows medians")
    ap.add_argument("--only", choices=sorted(PROBLEMS), action="append", help="run only this problem (repeatable)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 500 steps, 1 repeat")
    ap.add_argument(
        "--draws",
        type=lambda v: [int(x) for x in v.split(",")],
        help="only these draws per step, e.g. 8,32 (the logistic problem runs 1, 8 and 32)",
    )
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--peers", default="numpyro,pymc", help="comma-separated: numpyro, pymc (or empty)")
    ap.add_argument(
        "--peer-threads",
        choices=["all", "1"],
        default="all",
        help="'all' (default): peers use every core as they do out of the box; '1': XLA and OpenBLAS single-threaded",
    )
    ap.add_argument("--x64", action="store_true", help="run NumPyro in float64 (default: JAX's float32)")
    ap.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the workers' environment",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="max seconds for one steady-state timing loop (fewer steps if longer)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=120.0,
        help="before each measurement, wait up to this many seconds for other processes "
        "to go quiet (this machine is shared)",
    )
    ap.add_argument(
        "--quiet-load", type=float, default=0.25, help="'quiet' means other processes use fewer cores than this"
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-run a measurement during which others used more than --quiet-load cores",
    )
    ap.add_argument(
        "--retry-max-wall",
        type=float,
        default=90.0,
        help="never re-run a measurement that took longer than this many seconds",
    )
    ap.add_argument(
        "--heavy-seconds",
        type=float,
        default=60.0,
        help="a job whose 10,000-step fit takes longer than this runs only once, not "
        "--repeats times (PyMC at S=8 and S=32)",
    )
    ap.add_argument("--json", help="also write all raw results to this file")
    ap.add_argument(
        "--from-json", metavar="FILE", help="run nothing: print the table again from the raw results a --json run saved"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        print(f"# from {args.from_json}: run started {saved['started']}, command: {' '.join(saved['argv'])}")
        print("# versions: " + ", ".join(f"{k} {v}" for k, v in saved["versions"].items()))
        report(saved["runs"], args.quiet_load)
        return

    if args.worker:
        cfg = json.loads(args.worker)
        res = WORKERS[cfg["lib"]](cfg, make_data(cfg["problem"]))
        print("RESULT " + json.dumps(res), flush=True)
        return

    if args.quick:
        args.steps, args.repeats = min(args.steps, 500), 1
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in ("numpyro", "pymc"):
            ap.error(f"unknown peer {p!r}")
    problems = args.only or list(PROBLEMS)

    started = datetime.datetime.now().astimezone()
    print(f"# fastvi peer comparison, {started:%Y-%m-%d %H:%M %Z}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(
        f"# {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; "
        f"steps={args.steps}, repeats={args.repeats} (medians), peer threads={args.peer_threads}"
    )
    vers = versions()
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()), flush=True)

    raw = []
    for problem in problems:
        print(f"\n## {problem}: {PROBLEMS[problem]}", flush=True)
        for family, S, fv_threads in configs(problem):
            if args.draws and S not in args.draws:
                continue
            jobs = [("fastvi", v, t) for v, t in fastvi_jobs(problem, S, fv_threads)] + [(p, None, None) for p in peers]
            first = len(raw)
            heavy = set()  # jobs whose cold fit took longer than --heavy-seconds run only once
            for rep in range(args.repeats):
                for lib, variant, thr in jobs:  # interleave libraries so machine noise hits all alike
                    if (lib, variant, thr) in heavy:
                        continue
                    cfg = {
                        "lib": lib,
                        "variant": variant,
                        "problem": problem,
                        "family": family,
                        "draws": S,
                        "steps": args.steps,
                        "threads": thr or 1,
                        "budget": args.budget,
                        "x64": args.x64,
                        "repeat": rep,
                    }
                    res = run_worker(cfg, args)
                    raw.append({"config": cfg, "result": res})
                    if (res.get("e2e_cold") or 0.0) > args.heavy_seconds:
                        heavy.add((lib, variant, thr))
                    status = (
                        res.get("error")
                        or res.get("skipped")
                        or (
                            f"cold {fmt_time(res['e2e_cold'])}, warm {fmt_time(res.get('e2e_warm'))}, "
                            f"step {fmt_step(res['per_step'])}; others' load {res.get('others_load', 0):.2f} cores, "
                            f"attempt {res['attempts']}"
                        )
                    )
                    print(
                        f"  [{problem} {family} S={S} {job_label(lib, variant, thr)}{'' if thr is None else f' t={thr}'} "
                        f"rep {rep + 1}/{args.repeats}] {status}",
                        file=sys.stderr,
                        flush=True,
                    )
            print_rows(build_rows(raw[first:]))
            if args.json:  # after every configuration, so an interrupted run keeps what it measured
                with open(args.json, "w") as fh:
                    json.dump(
                        {"started": started.isoformat(), "argv": sys.argv, "versions": vers, "runs": raw}, fh, indent=1
                    )
    print()
    report(raw, args.quiet_load)


def build_rows(raw):
    """Table rows from raw worker results: medians per (problem, family, S) and job, with the
    fastvi references and the reference posterior attached."""
    groups = {}
    for item in raw:
        c = item["config"]
        key = (c["problem"], c["family"], c["draws"])
        job = (
            c["lib"],
            c.get("variant") if c["lib"] == "fastvi" else None,
            c["threads"] if c["lib"] == "fastvi" else None,
        )
        groups.setdefault(key, {}).setdefault(job, []).append(item["result"])
    rows = []
    refs = {}
    for (problem, family, S), jobs in groups.items():
        if problem not in refs:
            refs[problem] = reference_posterior(problem, make_data(problem))
        agg = {job: aggregate(v) for job, v in jobs.items()}
        ref1 = agg.get(("fastvi", "fused", 1), {})
        if "e2e_cold" not in ref1:
            ref1 = agg.get(("fastvi", "expr", 1), {})
        ref2 = agg.get(("fastvi", "fused", 2))
        rows += [
            Row(problem, family, S, lib, variant, thr, res, ref1, ref2, refs[problem])
            for (lib, variant, thr), res in agg.items()
        ]
    return rows


def report(raw, quiet_load):
    rows = build_rows(raw)
    print_markdown(rows)
    names = sorted({f"{r.problem}: {r.exact[2]}" for r in rows})
    print(f"\nReference posteriors ({', '.join(names)}): see reference_posterior() in run.py.")
    noisy = [(r, r.res.get("others_load_max", 0.0)) for r in rows if r.res.get("others_load_max", 0.0) >= quiet_load]
    if noisy:
        print(
            f"Note: other processes used >= {quiet_load} cores during some kept runs of: "
            + "; ".join(
                f"{r.problem} {r.family} S={r.S} {job_label(r.lib, r.variant, r.thr)}"
                f"{'' if r.thr is None else f' t={r.thr}'} ({load:.2f})"
                for r, load in noisy
            )
        )


class Row:
    def __init__(self, problem, family, S, lib, variant, thr, res, ref1, ref2, exact):
        self.problem, self.family, self.S, self.lib, self.variant, self.thr = problem, family, S, lib, variant, thr
        self.res, self.ref1, self.ref2, self.exact = res, ref1, ref2, exact


def job_label(lib, variant, thr):
    if lib != "fastvi":
        return lib
    return "fastvi" + {"expr": " (X @ beta expression)", "auto": " (precondition='auto')"}.get(variant, "")


HEADER = [
    "problem",
    "family",
    "S",
    "library",
    "threads",
    "e2e cold",
    "e2e warm",
    "per step",
    "time / fastvi: e2e",
    "time / fastvi: per step",
    "dmean vs fastvi",
    "dmean vs exact",
    "sd / exact sd",
]


def row_cells(row):
    """dmean columns: max over coordinates of |mean - reference mean| / reference sd, against
    fastvi's reference run and against the reference posterior (exact, or Laplace for logistic)."""
    res, ref1, ref2 = row.res, row.ref1, row.ref2
    label = job_label(row.lib, row.variant, row.thr)
    threads = str(row.thr) if row.thr is not None else res.get("threads", "")
    head = [row.problem, row.family, str(row.S), label, threads]
    if "e2e_cold" not in res:
        msg = res.get("skipped") or res.get("error", "?")
        return head + [msg[:90]] + [""] * (len(HEADER) - len(head) - 1)
    if res is ref1:
        e2e_r, step_r, dm = "(ref)", "(ref)", "(ref)"
    else:
        # how many times longer this row takes than fastvi (threads=1; "/ threads=2" when run)
        e2e_r = fmt_ratio(res["e2e_cold"], ref1.get("e2e_cold"))
        step_r = fmt_ratio(res["per_step"], ref1.get("per_step"))
        if row.lib != "fastvi" and ref2 and "e2e_cold" in ref2:
            e2e_r += f" / {fmt_ratio(res['e2e_cold'], ref2['e2e_cold'])}"
            step_r += f" / {fmt_ratio(res['per_step'], ref2['per_step'])}"
        dm = posterior_check(res, ref1.get("mean"), ref1.get("sd"))[0]
    dm_exact, sd_ratio = posterior_check(res, row.exact[0], row.exact[1])
    return head + [
        fmt_time(res["e2e_cold"]),
        fmt_time(res.get("e2e_warm")),
        fmt_step(res["per_step"]),
        e2e_r,
        step_r,
        dm,
        dm_exact,
        sd_ratio,
    ]


def print_rows(rows):
    cells = [row_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADER)]
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths)), flush=True)


def print_markdown(rows):
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for r in rows:
        print("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |")


if __name__ == "__main__":
    main()
