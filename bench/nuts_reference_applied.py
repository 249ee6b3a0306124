"""NUTS references for the applied-model gallery of tests/gallery_applied.py (NumPyro, float64).

The sibling of bench/nuts_reference.py (whose summaries, versions and check-point helpers it
reuses; that script holds the five issue-9 models and would pass 600 lines with these). Runs in
the peers' virtual environment (bench/peers/requirements.txt; fastvi is not needed there):

    python bench/nuts_reference_applied.py                 # every model; writes tests/data/gallery/*.json
    python bench/nuts_reference_applied.py --only ar1 --draws 500 --warmup 300 --dry-run
    python bench/nuts_reference_applied.py --check         # log density: NumPyro vs fastvi (no sampling)

Each model is the fastvi one of tests/gallery_applied.py written again: the same sites, priors and
constraint transforms (NumPyro's biject_to gives fastvi's: exp for positive, a + exp for > a,
logit^-1 for (0, 1), -1 + 2 logit^-1 for (-1, 1), Stan's stick-breaking for the simplex and
x_0, x_0 + exp(z_1), ... for ordered vectors), so the two log densities of the unconstrained
vector differ by a constant; ``--check`` verifies that at random points (fastvi's side runs
``tests/gallery_applied.py --log-density`` with ``--fastvi-python``). Where fastvi uses a prior on a
vector-transformed or truncated parameter, NumPyro samples an ImproperUniform with that
constraint and adds the prior as a factor, as Stan does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")  # before jax, as nuts_reference
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]  # nuts_reference (enables float64), the models
import gallery_applied as GA  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import nuts_reference as NR  # noqa: E402  (reused helpers; enables float64)
from jax.scipy.special import gammaln  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from numpyro.infer.util import potential_energy  # noqa: E402

# ---------------------------------------------------------------------------------------------
# the models, as tests/gallery_applied.py writes them


def _vec(name, d, n):
    return numpyro.sample(name, d.expand([n]).to_event(1))


def _improper(name, constraint, shape):
    return numpyro.sample(name, dist.ImproperUniform(constraint, (), shape))


def negbin_regression(d):
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"], dtype=jnp.float64)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = _vec("beta", dist.Normal(0.0, 1.0), d["K"])
    phi = numpyro.sample("phi", dist.Exponential(0.1))
    # NB2(y | exp(eta), phi) written out: NumPyro 0.22's NegativeBinomial2 (a GammaPoisson) is off
    # by 1e-5 to 3e-5 nats per data set here against scipy's nbinom and mpmath, which agree with
    # fastvi's neg_binomial_2_log to 1e-12; jax's gammaln is exact enough
    eta = alpha + X @ beta
    lse = jnp.logaddexp(jnp.log(phi), eta)  # log(phi + mu)
    lp = gammaln(y + phi) - gammaln(y + 1.0) - gammaln(phi) + phi * (jnp.log(phi) - lse) + y * (eta - lse)
    numpyro.factor("y", lp.sum())


def ordered_logistic(d):
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])
    beta = _vec("beta", dist.Normal(0.0, 2.5), d["K"])
    c = _improper("c", constraints.ordered_vector, (d["C"] - 1,))
    numpyro.factor("c_prior", dist.Normal(0.0, 5.0).log_prob(c).sum())
    numpyro.sample("y", dist.OrderedLogistic(X @ beta, c), obs=y)


def softmax_regression(d):
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])
    B = numpyro.sample("B", dist.Normal(0.0, 1.0).expand([d["K"], d["C"]]).to_event(2))
    numpyro.sample("y", dist.CategoricalLogits(X @ B), obs=y)


def ar1(d):
    y = jnp.asarray(d["y"])
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    rho = numpyro.sample("rho", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.Normal(alpha + rho * y[:-1], sigma), obs=y[1:])


def normal_mixture(d):
    y = jnp.asarray(d["y"])
    w = numpyro.sample("w", dist.Beta(2.0, 2.0))
    mu = _improper("mu", constraints.ordered_vector, (2,))
    numpyro.factor("mu_prior", dist.Normal(0.0, 5.0).log_prob(mu).sum())
    sigma = _vec("sigma", dist.HalfNormal(2.0), 2)
    lp = jnp.stack(
        [
            jnp.log(w) + dist.Normal(mu[0], sigma[0]).log_prob(y),
            jnp.log1p(-w) + dist.Normal(mu[1], sigma[1]).log_prob(y),
        ]
    )
    numpyro.factor("mixture", jax.scipy.special.logsumexp(lp, axis=0).sum())


def weibull_survival(d):
    X, t, ev = jnp.asarray(d["X"]), jnp.asarray(d["t"]), np.asarray(d["event"], dtype=bool)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    beta = _vec("beta", dist.Normal(0.0, 1.0), d["K"])
    k = numpyro.sample("k", dist.Gamma(2.0, 1.0))
    scale = jnp.exp(alpha + X @ beta)
    numpyro.sample("t", dist.Weibull(scale[ev], k), obs=t[ev])
    numpyro.factor("censored", -jnp.sum((t[~ev] / scale[~ev]) ** k))  # log S(t) = -(t / scale)^k


def poisson_exposure(d):
    X, y, E = jnp.asarray(d["X"]), jnp.asarray(d["y"]), jnp.asarray(d["exposure"])
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = _vec("beta", dist.Normal(0.0, 1.0), d["K"])
    numpyro.sample("y", dist.Poisson(jnp.exp(alpha + X @ beta + jnp.log(E))), obs=y)


def student_t_df(d):
    y = jnp.asarray(d["y"])
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    nu = _improper("nu", constraints.greater_than(1.0), ())
    numpyro.factor("nu_prior", dist.Gamma(2.0, 0.1).log_prob(nu))  # Stan: real<lower=1> nu ~ gamma(2, 0.1)
    numpyro.sample("y", dist.StudentT(nu, mu, sigma), obs=y)


def simplex_categorical(d):
    y = jnp.asarray(d["y"])
    theta = numpyro.sample("theta", dist.Dirichlet(jnp.full(d["K"], 2.0)))
    numpyro.sample("y", dist.CategoricalProbs(theta), obs=y)


def gp_regression(d):
    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    rho = numpyro.sample("rho", dist.InverseGamma(5.0, 5.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    K = alpha**2 * jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / rho) ** 2) + sigma**2 * jnp.eye(len(x))
    numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(len(x)), covariance_matrix=K), obs=y)


MODELS = {f.__name__: f for f in (negbin_regression, ordered_logistic, softmax_regression, ar1, normal_mixture,
                                  weibull_survival, poisson_exposure, student_t_df, simplex_categorical,
                                  gp_regression)}  # fmt: skip
assert list(MODELS) == GA.NAMES
TARGET_ACCEPT = {"normal_mixture": 0.95, "student_t_df": 0.95, "gp_regression": 0.95}
SEEDS = {n: 2000 + i for i, n in enumerate(MODELS)}

# ---------------------------------------------------------------------------------------------
# log densities at unconstrained points (fastvi's layout)


def numpyro_log_density(name, data, zetas):
    """NumPyro's log density (with log-Jacobians) at unconstrained points zetas (S, dim)."""
    layout = GA.zeta_layout(name)
    # a simplex block has K - 1 free coordinates (its leading axes kept)
    free = {s[0]: (s[1][:-1] + (s[1][-1] - 1,)) if s[4] == "simplex" else s[1] for s in GA.SPECS[name]["params"]}

    def lp(z):
        params = {p: z[off : off + n].reshape(free[p] if free[p] else ()) for p, off, n in layout}
        return -potential_energy(MODELS[name], (data,), {}, params)

    f = jax.jit(lp)
    return [float(f(jnp.asarray(z))) for z in np.atleast_2d(zetas)]


def fastvi_log_density(name, data, zetas, python):
    """fastvi's log density at the points, or None (with the reason printed) when this fastvi
    cannot build the model (gp_regression before fv.cholesky exists)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"name": name, "data": data, "zeta": np.asarray(zetas).tolist()}))
        cmd = [python, str(NR.TESTS / "gallery_applied.py"), "--log-density", str(src), str(dst)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: fastvi's side failed: {r.stderr.strip().splitlines()[-1]}")
            return None
        return json.loads(dst.read_text())["log_density"]


def check(names, python):
    rng = np.random.default_rng(0)
    ok = True
    for name in names:
        data = GA.SPECS[name]["data"]()
        dim = sum(n for p, o, n in GA.zeta_layout(name))
        pts = 0.5 * rng.standard_normal((4, dim))
        a = numpyro_log_density(name, data, pts)
        b = fastvi_log_density(name, data, pts, python)
        if b is None:
            print(f"{name:24s} dim {dim:4d}: skipped (no fastvi log density)")
            continue
        err, scale = NR.compare_densities(a, b)
        good = err <= 1e-8 * max(1.0, scale)
        ok &= good
        print(
            f"{name:24s} dim {dim:4d}: max |difference of differences| {err:.2e} "
            f"(differences up to {scale:.3g}) {'ok' if good else 'MISMATCH'}; constant {a[0] - b[0]:+.6f}"
        )
    return ok


# ---------------------------------------------------------------------------------------------
# the reference


def draws_by_key(name, samples):
    """{key: (chains, draws)} of every compared quantity, and the pooled unconstrained draws
    (draws, dim) in fastvi's layout."""
    c, n = next(iter(samples.values())).shape[:2]
    specs = {s[0]: s for s in GA.SPECS[name]["params"]}
    flat = {k: np.asarray(samples[k]).reshape((c * n,) + np.shape(samples[k])[2:]) for k in specs}
    out = {}
    for key, (kind, block, k) in GA.quantities(name).items():
        x = flat[block] if k is None else flat[block].reshape(c * n, -1)[:, k]
        if kind == "unconstrained":
            x = GA.to_unconstrained(x, specs[block])[:, 0]
        out[key] = x.reshape(c, n)
    Z = np.column_stack([GA.to_unconstrained(flat[p], specs[p]) for p in specs])
    return out, Z


def run(name, args):
    data = GA.SPECS[name]["data"]()
    kernel = NUTS(MODELS[name], target_accept_prob=TARGET_ACCEPT.get(name, 0.9), max_tree_depth=args.max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=args.warmup,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method="sequential",
        progress_bar=False,
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(SEEDS[name]), data, extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - t0
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    by_key, Z = draws_by_key(name, samples)
    ref_all, diag = NR.summarise(by_key)
    params = {k for k, (kind, b, i) in GA.quantities(name).items() if kind == "param"}
    mf, max_corr, cond = NR.meanfield_ratio(Z)
    pts = NR.check_points(name, Z, np.random.default_rng(SEEDS[name]))
    worst_rhat = max(diag.items(), key=lambda kv: kv[1]["r_hat"])
    worst_ess = min(diag.items(), key=lambda kv: kv[1]["ess_bulk"])
    steps = np.asarray(extra["num_steps"])
    doc = GA.__doc__.split(f"``{name}``:", 1)[1].split("\n- ``", 1)[0].split("\n\nThe reference")[0]
    return {
        "name": name,
        "model": GA.SPECS[name]["build"].__name__,
        "description": " ".join(doc.split()),
        "data": data,
        "reference": {k: v for k, v in ref_all.items() if k in params},
        "reference_derived": {k: v for k, v in ref_all.items() if k not in params},
        "reference_diagnostics": diag,
        "reference_unconstrained_summary": {
            "min_meanfield_sd_ratio": mf,
            "max_abs_corr": max_corr,
            "corr_condition_number": cond,
            "explanation": "from the pooled NUTS draws of fastvi's unconstrained vector: min_meanfield_sd_ratio = "
            "min_i 1/sqrt(Sigma_ii (Sigma^-1)_ii)",
        },
        "n_draws": int(args.chains * args.draws),
        "nuts": {
            "chains": args.chains,
            "warmup": args.warmup,
            "draws_per_chain": args.draws,
            "target_accept_prob": TARGET_ACCEPT.get(name, 0.9),
            "max_tree_depth": args.max_tree_depth,
            "sampler_reparam": {},
            "seed": SEEDS[name],
            "chain_method": "sequential",
            "float64": True,
            "seconds": seconds,
            "divergences": int(np.asarray(extra["diverging"]).sum()),
            "divergences_per_chain": np.asarray(extra["diverging"]).sum(axis=1).tolist(),
            "mean_leapfrog_steps": float(steps.mean()),
            "max_leapfrog_steps": int(steps.max()),
            "max_r_hat": [worst_rhat[0], worst_rhat[1]["r_hat"]],
            "min_ess_bulk": [worst_ess[0], worst_ess[1]["ess_bulk"]],
            "min_ess_tail": min(d["ess_tail"] for d in diag.values()),
        },
        "log_density_check": {
            "zeta": pts.tolist(),
            "numpyro": numpyro_log_density(name, data, pts),
            "note": "NumPyro's log density (minus potential energy, with log-Jacobians) at unconstrained points in "
            "fastvi's layout; differences between points must match fastvi's model.log_density",
        },
        "command": "python " + " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "versions": NR.versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data_seed": "fixed numpy seeds in tests/gallery_applied.py (data_" + name + ")",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(MODELS))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--max-tree-depth", type=int, default=10)
    ap.add_argument("--dry-run", action="store_true", help="print the summary, write nothing")
    ap.add_argument("--check", action="store_true", help="compare log densities with fastvi; no sampling")
    ap.add_argument("--fastvi-python", default="python3", help="an interpreter that has fastvi (for --check)")
    args = ap.parse_args(argv)
    names = args.only or list(MODELS)
    if args.check:
        return 0 if check(names, args.fastvi_python) else 1
    for name in names:
        info = run(name, args)
        n = info["nuts"]
        print(
            f"{name}: {n['seconds']:.0f} s, {n['divergences']} divergences, max R-hat {n['max_r_hat'][1]:.4f} "
            f"({n['max_r_hat'][0]}), min bulk ESS {n['min_ess_bulk'][1]:.0f} ({n['min_ess_bulk'][0]}), "
            f"min tail ESS {n['min_ess_tail']:.0f}, mean leapfrog steps {n['mean_leapfrog_steps']:.1f}",
            flush=True,
        )
        for k in list(info["reference"])[:5]:
            print(f"    {k}: {info['reference'][k]['mean']:.4f} ± {info['reference'][k]['sd']:.4f}")
        if not args.dry_run:
            GA.path(name).write_text(json.dumps(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
