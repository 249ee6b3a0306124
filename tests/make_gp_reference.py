"""Writes tests/data/gp_reference.json: the data and a long NumPyro NUTS run for the GP regression
in tests/test_linalg.py (the hyperparameter posterior, marginal likelihood form):

    alpha ~ half_normal(1), rho ~ inv_gamma(5, 5), sigma ~ half_normal(0.5)
    y ~ multi_normal(0, K + sigma^2 I),  K[i, j] = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2))

N = 40 points, simulated with a fixed seed and stored with the reference, so the test does not
depend on numpy's generator. 4 chains x 25,000 draws (after 2,000 warm-up each): the Monte Carlo
error of each posterior mean is below 0.01 sd (ESS recorded in the file), a tenth of what the
test checks. Needs numpyro (it is in /work/venv-peers, not in fastvi's test extra):

    /work/venv-peers/bin/python tests/make_gp_reference.py        # about a minute
"""

import json
from pathlib import Path

import numpy as np


def simulate():
    rng = np.random.default_rng(2026)
    x = np.sort(rng.uniform(0.0, 10.0, size=40))
    y = np.sin(x) + 0.5 * np.cos(2.3 * x) + 0.3 * rng.normal(size=40)
    return x, y


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC, NUTS

    numpyro.set_host_device_count(4)
    x, y = simulate()
    d2 = (x[:, None] - x[None, :]) ** 2

    def model():
        alpha = numpyro.sample("alpha", dist.HalfNormal(1.0))
        rho = numpyro.sample("rho", dist.InverseGamma(5.0, 5.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
        cov = alpha**2 * jnp.exp(-d2 / (2 * rho**2)) + sigma**2 * jnp.eye(len(x))
        numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(len(x)), covariance_matrix=cov), obs=y)

    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=2000, num_samples=25000, num_chains=4,
                chain_method="sequential", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.PRNGKey(0))
    draws = mcmc.get_samples(group_by_chain=True)
    out = {
        "command": "/work/venv-peers/bin/python tests/make_gp_reference.py",
        "sampler": "numpyro NUTS, 4 chains x 25,000 draws after 2,000 warm-up, target_accept_prob=0.9",
        "numpyro": numpyro.__version__,
        "x": x.tolist(),
        "y": y.tolist(),
        "posterior": {},
    }
    for name in ("alpha", "rho", "sigma"):
        v = np.asarray(draws[name])
        log_v = np.log(v)
        out["posterior"][name] = {
            "mean": float(v.mean()),
            "sd": float(v.std()),
            "log_mean": float(log_v.mean()),
            "log_sd": float(log_v.std()),
            "ess": float(effective_sample_size(v)),
        }
    path = Path(__file__).resolve().parent / "data" / "gp_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    print(json.dumps(out["posterior"], indent=1))


if __name__ == "__main__":
    main()
