"""NUTS reference posteriors for the gallery of tests/gallery.py (NumPyro, float64).

Runs in the peers' virtual environment (bench/peers/requirements.txt plus scikit-learn; fastvi is
not needed there):

    python bench/nuts_reference.py                    # every gallery model; writes tests/data/gallery/*.json
    python bench/nuts_reference.py --only stoch_vol --draws 1000 --warmup 500 --dry-run
    python bench/nuts_reference.py --check            # log density: NumPyro vs fastvi (no sampling)

Each model below is written as tests/gallery.py writes it for fastvi (same site names, priors,
parameterisation and constraint transforms: exp for lower=0, -1 + 2 logit^-1 for (-1, 1)), so the
two log densities in the unconstrained space (with the log-Jacobians) differ by a constant. Where
NUTS itself struggles with that parameterisation, ``NUTS_SETTINGS[name]["reparam"]`` samples the same
posterior in another one (:func:`sampler_model`: NumPyro's LocScaleReparam, or a model below); the reference moments are functions of the
constrained draws, so they do not depend on it. The output JSON holds the data, the reference
mean/sd of every parameter (``reference``), of every bounded parameter's unconstrained coordinate
and every deterministic (``reference_derived``), the MCSE, R-hat, bulk/tail ESS per quantity
(``reference_diagnostics``), the divergences and the run's settings, command, versions, date and
seeds, plus check points (unconstrained vectors in fastvi's layout with NumPyro's log density)
that tests/test_gallery.py compares with fastvi.

``--check`` evaluates NumPyro's log density at random unconstrained points and fastvi's at the
same points (by running ``tests/gallery.py --log-density`` with ``--fastvi-python``, default
python3, where fastvi is installed) and compares the differences between points.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from numpyro.infer.reparam import LocScaleReparam  # noqa: E402
from numpyro.infer.util import potential_energy  # noqa: E402

numpyro.enable_x64()
TESTS = Path(__file__).resolve().parents[1] / "tests"  # the gallery models and their data live there
sys.path.insert(0, str(TESTS))
import gallery as G  # noqa: E402

# ---------------------------------------------------------------------------------------------
# the models, as tests/gallery.py writes them


def hier_5groups_centered(d):
    y, g = jnp.asarray(d["y"]), np.asarray(d["g"])
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    theta = numpyro.sample("theta", dist.Normal(mu, tau).expand([d["J"]]).to_event(1))
    numpyro.sample("y", dist.Normal(theta[g], sigma), obs=y)


def horseshoe_logit(d):
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"], dtype=jnp.float64)
    K = d["K"]
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    lam = numpyro.sample("lambda", dist.HalfCauchy(1.0).expand([K]).to_event(1))
    tau = numpyro.sample("tau", dist.HalfCauchy(1.0))
    beta = numpyro.deterministic("beta", z * lam * tau)
    numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta), obs=y)


def horseshoe_logit_aux(d):
    """The same posterior as horseshoe_logit, sampled with each half-Cauchy scale split as
    lambda = r1 * sqrt(r2), r1 ~ HalfNormal(1), r2 ~ InverseGamma(1/2, 1/2) (so r1^2 r2 ~ F(1, 1) and
    lambda ~ HalfCauchy(1); Piironen and Vehtari 2017). Tried because the plain parameterisation left
    134 divergent transitions of 20,000 at target acceptance 0.999; this one still leaves 116 at 0.995,
    and the two runs' moments agree to 0.04 sd in means and 5 % in sds (tests/data/gallery/README.md)."""
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"], dtype=jnp.float64)
    K = d["K"]
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
    r1 = numpyro.sample("r1_local", dist.HalfNormal(1.0).expand([K]).to_event(1))
    r2 = numpyro.sample("r2_local", dist.InverseGamma(0.5, 0.5).expand([K]).to_event(1))
    s1 = numpyro.sample("r1_global", dist.HalfNormal(1.0))
    s2 = numpyro.sample("r2_global", dist.InverseGamma(0.5, 0.5))
    lam = numpyro.deterministic("lambda", r1 * jnp.sqrt(r2))
    tau = numpyro.deterministic("tau", s1 * jnp.sqrt(s2))
    beta = numpyro.deterministic("beta", z * lam * tau)
    numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta), obs=y)


def stoch_vol(d):
    y, T = jnp.asarray(d["y"]), d["T"]
    mu = numpyro.sample("mu", dist.Cauchy(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(5.0))
    h = numpyro.sample("h", dist.ImproperUniform(dist.constraints.real, (), (T,)))
    numpyro.factor("h1", dist.Normal(mu, sigma / jnp.sqrt(1.0 - phi**2)).log_prob(h[0]))
    numpyro.factor("h_rest", dist.Normal(mu + phi * (h[:-1] - mu), sigma).log_prob(h[1:]).sum())
    numpyro.sample("y", dist.Normal(0.0, jnp.exp(h / 2)), obs=y)


def stoch_vol_noncentered(d):
    """The same posterior as stoch_vol, sampled in the innovations h_std (the centred model mixes
    badly: in a 2 x 500-draw trial sigma's bulk ESS was 4 and its R-hat 1.48). The map h_std -> h has
    Jacobian sigma^T / sqrt(1 - phi^2), which turns N(0, 1) innovations into stoch_vol's AR(1) density."""
    y, T = jnp.asarray(d["y"]), d["T"]
    mu = numpyro.sample("mu", dist.Cauchy(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(5.0))
    h_std = numpyro.sample("h_std", dist.Normal(0.0, 1.0).expand([T]).to_event(1))
    h0 = mu + sigma / jnp.sqrt(1.0 - phi**2) * h_std[0]

    def step(prev, e):
        h = mu + phi * (prev - mu) + sigma * e
        return h, h

    _, rest = jax.lax.scan(step, h0, h_std[1:])
    h = numpyro.deterministic("h", jnp.concatenate([h0[None], rest]))
    numpyro.sample("y", dist.Normal(0.0, jnp.exp(h / 2)), obs=y)


def breast_cancer_logit(d):
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"], dtype=jnp.float64)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.5).expand([d["K"]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta), obs=y)


def varying_intercepts(d):
    y, x, g = jnp.asarray(d["y"]), jnp.asarray(d["x"]), np.asarray(d["g"])
    a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([d["J"]]).to_event(1))
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    a = numpyro.deterministic("a", mu_a + sigma_a * a_raw)
    numpyro.sample("y", dist.Normal(a[g] + b * x, sigma_y), obs=y)


MODELS = {
    "hier_5groups_centered": hier_5groups_centered,
    "horseshoe_logit": horseshoe_logit,
    "stoch_vol": stoch_vol,
    "breast_cancer_logit": breast_cancer_logit,
    "varying_intercepts": varying_intercepts,
}
# NUTS settings per model (target acceptance, sampler reparameterisation; the posterior is the same)
NUTS_SETTINGS = {
    "hier_5groups_centered": dict(target_accept_prob=0.99, reparam={"theta": "LocScaleReparam(centered=0)"}),
    "horseshoe_logit": dict(target_accept_prob=0.995, reparam={"lambda": "r1 * sqrt(r2)", "tau": "r1 * sqrt(r2)"}),
    "stoch_vol": dict(target_accept_prob=0.99, reparam={"h": "non-centred innovations (stoch_vol_noncentered)"}),
    "breast_cancer_logit": dict(target_accept_prob=0.8, reparam={}),
    "varying_intercepts": dict(target_accept_prob=0.9, reparam={}),
}
SEEDS = {n: 1000 + i for i, n in enumerate(MODELS)}


def sampler_model(name):
    model, config = MODELS[name], NUTS_SETTINGS[name]["reparam"]
    if name == "stoch_vol":
        return stoch_vol_noncentered
    if name == "horseshoe_logit" and config:
        return horseshoe_logit_aux
    if not config:
        return model
    return numpyro.handlers.reparam(model, config={k: LocScaleReparam(centered=0) for k in config})


# ---------------------------------------------------------------------------------------------
# log densities at unconstrained points (fastvi's layout)


def numpyro_log_density(name, data, zetas):
    """NumPyro's log density (with log-Jacobians) at unconstrained points zetas (S, dim)."""
    layout = G.zeta_layout(name)
    shapes = {p: s for p, s, lo, hi in G.SPECS[name]["params"]}

    def lp(z):
        params = {p: z[off : off + n].reshape(shapes[p]) for p, off, n in layout}
        return -potential_energy(MODELS[name], (data,), {}, params)

    f = jax.jit(lp)
    return [float(f(jnp.asarray(z))) for z in np.atleast_2d(zetas)]


def fastvi_log_density(name, data, zetas, python):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"name": name, "data": data, "zeta": np.asarray(zetas).tolist()}))
        subprocess.run([python, str(TESTS / "gallery.py"), "--log-density", str(src), str(dst)], check=True)
        return json.loads(dst.read_text())["log_density"]


def check_points(name, zeta_draws, rng, n=5):
    """n unconstrained points: posterior draws, the last one jittered off the posterior."""
    idx = rng.choice(len(zeta_draws), size=n, replace=False)
    pts = zeta_draws[idx].copy()
    pts[-1] += 0.3 * rng.standard_normal(pts.shape[1])
    return pts


def compare_densities(a, b):
    """max |(a_i - a_0) - (b_i - b_0)| and the scale of the differences."""
    a, b = np.asarray(a), np.asarray(b)
    da, db = a - a[0], b - b[0]
    return float(np.max(np.abs(da - db))), float(np.max(np.abs(da)))


# ---------------------------------------------------------------------------------------------
# the reference


def draws_by_key(name, samples):
    """{key: array (chains, draws)} of every compared quantity, from constrained samples with a
    leading (chain, draw) axis."""
    c, n = next(iter(samples.values())).shape[:2]
    flat = {k: np.asarray(v).reshape((c * n,) + np.shape(v)[2:]) for k, v in samples.items()}
    out = {}
    bounds = {p: (lo, hi) for p, s, lo, hi in G.SPECS[name]["params"]}
    for key, (kind, block, k) in G.quantities(name).items():
        x = flat[block] if k is None else flat[block].reshape(c * n, -1)[:, k]
        if kind == "unconstrained":
            x = G.to_unconstrained(x, *bounds[block])
        out[key] = x.reshape(c, n)
    for dname, fn in G.SPECS[name]["deterministics"].items():
        v = np.asarray(fn(flat))
        for j in range(v.shape[1]):
            out[f"{dname}[{j + 1}]"] = v[:, j].reshape(c, n)
    return out


def zeta_matrix(name, by_key):
    """Pooled draws of fastvi's unconstrained vector, (draws, dim)."""
    cols = []
    for pname, shape, lo, hi in G.SPECS[name]["params"]:
        for key, k in G._elements(pname, shape):
            cols.append(by_key[G.unconstrained_key(key, lo, hi) or key].ravel())
    return np.column_stack(cols)


def summarise(by_key):
    import arviz as az

    ref, diag = {}, {}
    for key, x in by_key.items():
        ref[key] = {"mean": float(x.mean()), "sd": float(x.std(ddof=1))}
        # arviz 0.23.4's mcse(method="sd") fails under numpy 2.4: the normal approximation
        # sd / sqrt(2 ESS_sd) from arviz's ESS of the sd instead
        ess_sd = float(az.ess(x, method="sd"))
        diag[key] = {
            "ess_bulk": float(az.ess(x, method="bulk")),
            "ess_tail": float(az.ess(x, method="tail")),
            "r_hat": float(az.rhat(x)),
            "mcse_mean": float(np.ravel(az.mcse(x, method="mean"))[0]),
            "mcse_sd": ref[key]["sd"] / np.sqrt(2 * ess_sd),
        }
    return ref, diag


def meanfield_ratio(Z):
    S = np.cov(Z, rowvar=False)
    P = np.linalg.inv(S)
    r = 1.0 / np.sqrt(np.diag(S) * np.diag(P))
    corr = S / np.sqrt(np.outer(np.diag(S), np.diag(S)))
    np.fill_diagonal(corr, 0.0)
    return float(r.min()), float(np.abs(corr).max()), float(np.linalg.cond(corr + np.eye(len(S))))


def versions():
    import arviz

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpyro": numpyro.__version__,
        "arviz": arviz.__version__,
        "platform": platform.platform(),
    }
    try:
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return out


def run(name, args):
    data = G.SPECS[name]["data"]()
    settings = NUTS_SETTINGS[name]
    kernel = NUTS(
        sampler_model(name), target_accept_prob=settings["target_accept_prob"], max_tree_depth=args.max_tree_depth
    )
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
    by_key = draws_by_key(name, samples)
    ref_all, diag = summarise(by_key)
    params = {k for k, (kind, b, i) in G.quantities(name).items() if kind == "param"}
    Z = zeta_matrix(name, by_key)
    mf, max_corr, cond = meanfield_ratio(Z)
    rng = np.random.default_rng(SEEDS[name])
    pts = check_points(name, Z, rng)
    worst_rhat = max(diag.items(), key=lambda kv: kv[1]["r_hat"])
    worst_ess = min(diag.items(), key=lambda kv: kv[1]["ess_bulk"])
    steps = np.asarray(extra["num_steps"])
    info = {
        "name": name,
        "model": G.SPECS[name]["build"].__name__,
        "description": _doc(name),
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
            "target_accept_prob": settings["target_accept_prob"],
            "max_tree_depth": args.max_tree_depth,
            "sampler_reparam": settings["reparam"],
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
            "note": "NumPyro's log density (minus potential energy, with log-Jacobians) at "
            "unconstrained points in fastvi's layout; differences between points must "
            "match fastvi's model.log_density",
        },
        "command": "python " + " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data_seed": "fixed numpy seeds in tests/gallery.py (data_" + name + ")",
    }
    return info


def _doc(name):
    doc = G.__doc__.split(f"``{name}``:", 1)[1].split("\n- ``", 1)[0].split("\n\nThe reference")[0]
    return " ".join(doc.split())


def check(names, python):
    rng = np.random.default_rng(0)
    ok = True
    for name in names:
        data = G.SPECS[name]["data"]()
        dim = sum(n for p, o, n in G.zeta_layout(name))
        pts = 0.5 * rng.standard_normal((4, dim))
        a = numpyro_log_density(name, data, pts)
        b = fastvi_log_density(name, data, pts, python)
        err, scale = compare_densities(a, b)
        good = err <= 1e-8 * max(1.0, scale)
        ok &= good
        print(
            f"{name:24s} dim {dim:4d}: max |difference of differences| {err:.2e} "
            f"(differences up to {scale:.3g}) {'ok' if good else 'MISMATCH'}; constant {a[0] - b[0]:+.6f}"
        )
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(MODELS))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--max-tree-depth", type=int, default=10)
    ap.add_argument("--dry-run", action="store_true", help="print the summary, write nothing")
    ap.add_argument("--check", action="store_true", help="compare log densities with fastvi; no sampling")
    ap.add_argument("--fastvi-python", default="python3", help="an interpreter that has fastvi (for --check)")
    args = ap.parse_args(argv)
    names = args.only or list(MODELS)
    if args.check:
        return 0 if check(names, args.fastvi_python) else 1
    G.DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        info = run(name, args)
        n = info["nuts"]
        print(
            f"{name}: {n['seconds']:.0f} s, {n['divergences']} divergences, max R-hat {n['max_r_hat'][1]:.4f} "
            f"({n['max_r_hat'][0]}), min bulk ESS {n['min_ess_bulk'][1]:.0f} ({n['min_ess_bulk'][0]}), "
            f"min tail ESS {n['min_ess_tail']:.0f}, mean leapfrog steps {n['mean_leapfrog_steps']:.1f}",
            flush=True,
        )
        for k in list(info["reference"])[:4]:
            print(f"    {k}: {info['reference'][k]['mean']:.4f} ± {info['reference'][k]['sd']:.4f}")
        if not args.dry_run:
            G.path(name).write_text(json.dumps(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
