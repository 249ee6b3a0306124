"""The NumPyro (SVI) worker of bench/peers/run.py: one configuration, fitted and timed in its own process."""

from __future__ import annotations

import os
import time

from timing import CHUNKS, median_chunk, steady_steps


def run(cfg, data):
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

    n = steady_steps(cold, steps, cfg["budget"])

    @jax.jit
    def loop(state):
        return jax.lax.scan(lambda s, _: svi.update(s, *dev_args), state, None, length=n)

    state = svi.init(jax.random.PRNGKey(1), *dev_args)
    jax.block_until_ready(loop(state))  # compile (and run once)
    box = [state]

    def chunk():
        box[0] = jax.block_until_ready(loop(box[0]))[0]

    per_step = median_chunk(chunk, n)

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
