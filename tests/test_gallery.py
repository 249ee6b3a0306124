"""The gallery of tests/gallery.py: its fastvi models against the stored NUTS reference files.

Runs on the stored JSON only (tests/data/gallery, written by bench/nuts_reference.py): no jax, no
scikit-learn. Checks that each fastvi model has the same log density, up to a constant, as

- NumPyro's (stored at a few unconstrained points by the reference script), and
- a scipy transcription of the model written here,

at those points, log-Jacobians included; and that each reference file says how it was made and
that its NUTS run converged.
"""

import math

import gallery as G  # tests/gallery.py (pytest puts tests/ on sys.path)
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, log_expit

NAMES = G.available()
pytestmark = pytest.mark.skipif(not NAMES, reason="no gallery reference files (bench/nuts_reference.py)")


def _constrain(name, z):
    """Constrained values (dict) and the log-Jacobian of fastvi's transforms at z."""
    out, logj = {}, 0.0
    shapes = {p: (s, lo, hi) for p, s, lo, hi in G.SPECS[name]["params"]}
    for p, off, n in G.zeta_layout(name):
        shape, lo, hi = shapes[p]
        u = z[off : off + n]
        if lo is None and hi is None:
            x = u
        elif hi is None:
            x, logj = lo + np.exp(u), logj + u.sum()
        else:
            s = expit(u)
            x = lo + (hi - lo) * s
            logj += np.sum(np.log(hi - lo) + log_expit(u) + log_expit(-u))
        out[p] = x.reshape(shape) if shape else x[0]
    return out, logj


def _bernoulli_logit(y, eta):
    return np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta))


def scipy_log_density(name, d, v):
    N = stats.norm.logpdf
    if name == "hier_5groups_centered":
        g = np.asarray(d["g"])
        return (
            N(v["mu"], 0, 5)
            + stats.halfnorm.logpdf(v["tau"], scale=2)
            + stats.halfnorm.logpdf(v["sigma"], scale=2)
            + N(v["theta"], v["mu"], v["tau"]).sum()
            + N(d["y"], v["theta"][g], v["sigma"]).sum()
        )
    if name == "horseshoe_logit":
        beta = v["z"] * v["lambda"] * v["tau"]
        return (
            N(v["alpha"], 0, 2.5)
            + N(v["z"]).sum()
            + stats.halfcauchy.logpdf(v["lambda"]).sum()
            + stats.halfcauchy.logpdf(v["tau"])
            + _bernoulli_logit(np.asarray(d["y"]), v["alpha"] + np.asarray(d["X"]) @ beta)
        )
    if name == "stoch_vol":
        mu, phi, sigma, h = v["mu"], v["phi"], v["sigma"], v["h"]
        return (
            stats.cauchy.logpdf(mu, 0, 10)
            + stats.halfcauchy.logpdf(sigma, scale=5)
            + stats.uniform.logpdf(phi, -1, 2)
            + N(h[0], mu, sigma / math.sqrt(1 - phi**2))
            + N(h[1:], mu + phi * (h[:-1] - mu), sigma).sum()
            + N(d["y"], 0, np.exp(h / 2)).sum()
        )
    if name == "breast_cancer_logit":
        return (
            N(v["alpha"], 0, 2.5)
            + N(v["beta"], 0, 2.5).sum()
            + _bernoulli_logit(np.asarray(d["y"]), v["alpha"] + np.asarray(d["X"]) @ v["beta"])
        )
    if name == "varying_intercepts":
        g, x = np.asarray(d["g"]), np.asarray(d["x"])
        a = v["mu_a"] + v["sigma_a"] * v["a_raw"]
        return (
            N(v["a_raw"]).sum()
            + N(v["mu_a"], 0, 10)
            + N(v["b"], 0, 10)
            + stats.halfnorm.logpdf(v["sigma_a"])
            + stats.halfnorm.logpdf(v["sigma_y"])
            + N(d["y"], a[g] + v["b"] * x, v["sigma_y"]).sum()
        )
    raise KeyError(name)


def _differences(a):
    a = np.asarray(a, dtype=float)
    return a - a[0]


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    name = request.param
    model, targets, info = G.build(name)
    return name, model, targets, info


def test_layout_matches_specs(case):
    name, model, targets, info = case
    assert [(p.name, p.offset, p.size) for p in model.params.values()] == G.zeta_layout(name)
    assert len(info["log_density_check"]["zeta"][0]) == model.dim


def test_log_density_matches_numpyro_and_scipy(case):
    name, model, targets, info = case
    chk = info["log_density_check"]
    Z = np.asarray(chk["zeta"], dtype=float)
    lp, grad = model.log_density(Z.T)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(grad))
    ref = [scipy_log_density(name, info["data"], v) + j for v, j in (_constrain(name, z) for z in Z)]
    scale = max(1.0, np.abs(_differences(lp)).max())
    np.testing.assert_allclose(_differences(lp), _differences(chk["numpyro"]), rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(_differences(lp), _differences(ref), rtol=0, atol=1e-9 * scale)


def test_gradient_matches_finite_differences(case):
    name, model, targets, info = case
    z = np.asarray(info["log_density_check"]["zeta"][0], dtype=float)
    _, grad = model.log_density(z)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal(model.dim)
        v /= np.linalg.norm(v)
        eps = 1e-5
        fd = (model.log_density(z + eps * v)[0] - model.log_density(z - eps * v)[0]) / (2 * eps)
        assert fd == pytest.approx(grad @ v, rel=1e-5, abs=1e-5)


def test_reference_file_provenance_and_convergence(case):
    name, model, targets, info = case
    nuts = info["nuts"]
    assert info["command"].startswith("python bench/nuts_reference.py")
    assert {"numpyro", "jax", "numpy", "python"} <= set(info["versions"]) and info["date"]
    assert nuts["chains"] >= 4 and nuts["draws_per_chain"] >= 5000 and nuts["warmup"] >= 2000
    diag = info["reference_diagnostics"]
    assert set(targets) <= set(diag)
    assert max(d["r_hat"] for d in diag.values()) < 1.01
    assert min(d["ess_bulk"] for d in diag.values()) > 400
    # MCSE far below the accuracy target of 0.1 reference sd, on every compared quantity
    for key in targets:
        ref = info["reference"].get(key) or info["reference_derived"][key]
        assert diag[key]["mcse_mean"] < 0.05 * ref["sd"], key
