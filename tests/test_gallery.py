"""The gallery of tests/gallery.py: its fastvi models against the stored NUTS reference files.

Runs on the stored JSON only (tests/data/gallery, written by bench/nuts_reference.py): no jax, no
scikit-learn. Checks that each fastvi model has the same log density, up to a constant, as

- NumPyro's (stored at a few unconstrained points by the reference script), and
- a scipy transcription of the model written here,

at those points, log-Jacobians included; and that each reference file says how it was made and
that its NUTS run converged.

The applied gallery (tests/gallery_applied.py, references by bench/nuts_reference_applied.py, issue
11 section 6) is checked the same way against NumPyro (no scipy transcription: the simplex model's
reference is checked against its exact Dirichlet posterior instead), and each model is fitted once
and compared with its NUTS reference (the family and expectation in ``APPLIED_FITS``).
"""

import math
import warnings

import fastvi as fv
import gallery as G  # tests/gallery.py (pytest puts tests/ on sys.path)
import gallery_applied as GA
import numpy as np
import posteriors as P
import pytest
from scipy import stats
from scipy.special import expit, log_expit

NAMES = G.available()


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


@pytest.fixture(scope="module", params=NAMES)  # no references: every test below skips
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


# ---------------------------------------------------------------------------------------------
# the applied gallery (tests/gallery_applied.py, references by bench/nuts_reference_applied.py)

APPLIED = GA.available()

# Every applied model is fitted full-rank (default settings, seed 0) and must meet bench/README.md's
# target against NUTS: every compared mean within MEAN_TOL reference sd and every sd within SD_TOL,
# converged, no ConvergenceWarning, and fit.status.use "q" or "psis". "psis" is allowed because a
# k-hat of 0.5-0.7 makes fastvi recommend the corrected results even where q itself is accurate
# (poisson_exposure 0.57, simplex_categorical 0.58 with an importance ESS of 99 %: conservative,
# not wrong). The references' MCSE is below 0.05 sd (checked below), so a 0.1-sd miss is fastvi's.
MEAN_TOL, SD_TOL = 0.1, 0.10
# Mean-field where the posterior is strongly correlated (MF-sd ratio 0.64, 0.20, 0.60: cutpoints,
# softmax columns identified only by the prior, AR(1)'s alpha and rho): q's sds are off by 35-80 %,
# and fastvi must say so (use "none").
MEANFIELD_FLAGGED = ["ordered_logistic", "softmax_regression", "ar1"]


def _fit(name, info, family):
    model, targets, info = GA.build(name, info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fv.fit(model, family=family, seed=0)
    warned = any(issubclass(w.category, fv.ConvergenceWarning) for w in caught)
    rows = P.compare(fit, targets, info)
    worst_mean, worst_sd = P.worst(rows)
    within = all(abs(r.mean_err) <= MEAN_TOL and abs(r.sd / r.ref_sd - 1) <= SD_TOL for r in rows)
    summary = (
        f"{name} / {family}: worst mean error {worst_mean.mean_err:+.3f} sd ({worst_mean.key}), worst log sd "
        f"ratio {worst_sd.log_sd_ratio:+.3f} ({worst_sd.key}), k-hat {fit.khat}, use {fit.status.use}, "
        f"converged {fit.converged}, warned {warned}"
    )
    return fit, within, warned, summary


def _needs_gp(name):
    if name == "gp_regression" and not GA.gp_available():
        pytest.skip("gp_regression: this fastvi has no fv.cholesky / fv.add_diag / fv.exp_quad_cov")


@pytest.fixture(scope="module", params=APPLIED)
def applied(request):
    name = request.param
    return name, GA.load(name)


def test_applied_layout_and_log_density_match_numpyro(applied):
    name, info = applied
    _needs_gp(name)
    model, targets, info = GA.build(name, info)
    assert [p.offset for p in model.params.values()] == [off for _, off, _ in GA.zeta_layout(name)]
    chk = info["log_density_check"]
    Z = np.asarray(chk["zeta"], dtype=float)
    assert Z.shape[1] == model.dim
    lp, grad = model.log_density(Z.T)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(grad))
    scale = max(1.0, np.abs(_differences(lp)).max())
    np.testing.assert_allclose(_differences(lp), _differences(chk["numpyro"]), rtol=0, atol=1e-9 * scale)
    # the gradient, against central differences along random directions
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.standard_normal(model.dim)
        v /= np.linalg.norm(v)
        fd = (model.log_density(Z[0] + 1e-5 * v)[0] - model.log_density(Z[0] - 1e-5 * v)[0]) / 2e-5
        assert fd == pytest.approx(grad[:, 0] @ v, rel=1e-5, abs=1e-5)


def test_applied_reference_provenance_and_convergence(applied):
    name, info = applied
    nuts = info["nuts"]
    assert info["command"].startswith("python bench/nuts_reference_applied.py")
    assert {"numpyro", "jax", "numpy", "python"} <= set(info["versions"]) and info["date"]
    assert nuts["chains"] >= 4 and nuts["draws_per_chain"] >= 2000 and nuts["warmup"] >= 1000
    assert nuts["divergences"] == 0
    diag = info["reference_diagnostics"]
    assert set(GA.targets(name)) <= set(diag)
    assert max(d["r_hat"] for d in diag.values()) <= 1.01
    assert min(d["ess_bulk"] for d in diag.values()) > 400
    for key in GA.targets(name):
        assert diag[key]["mcse_mean"] < 0.05 * P.reference_moments(info, key)[1], key


def test_simplex_reference_matches_the_exact_dirichlet_posterior():
    """The conjugate model checks the reference pipeline itself: Dirichlet(2 + counts)."""
    if "simplex_categorical" not in APPLIED:
        pytest.skip("no reference")
    info = GA.load("simplex_categorical")
    a = 2.0 + np.bincount(info["data"]["y"], minlength=info["data"]["K"])
    mean, sd = a / a.sum(), np.sqrt(a * (a.sum() - a) / (a.sum() ** 2 * (a.sum() + 1)))
    for k in range(len(a)):
        ref = info["reference"][f"theta[{k + 1}]"]
        assert abs(ref["mean"] - mean[k]) < 0.05 * sd[k] and abs(ref["sd"] / sd[k] - 1) < 0.03


# Models whose full-rank fit is within the target but may be flagged (a false alarm is allowed there;
# a miss without a flag never is): the GP's log-scale hyperparameters are skewed, k-hat ~0.73 at
# seed 0 with importance ESS under 90 %, so the trust layer says use "none" while q's means are
# within 0.04 sd and its sds within 10 % of NUTS.
FLAG_ALLOWED = {"gp_regression"}


def test_applied_fullrank_fit_meets_the_target(applied):
    name, info = applied
    _needs_gp(name)
    fit, within, warned, summary = _fit(name, info, "fullrank")
    assert within and fit.converged, summary
    if name not in FLAG_ALLOWED:
        assert not warned and fit.status.use in ("q", "psis"), summary


@pytest.mark.parametrize("name", [n for n in MEANFIELD_FLAGGED if n in APPLIED])
def test_applied_meanfield_on_correlated_posteriors_is_flagged(name):
    fit, within, warned, summary = _fit(name, GA.load(name), "meanfield")
    assert not within and fit.status.use == "none", summary


def test_label_switching_mixture_is_flagged():
    """normal_mixture without the ordering: the posterior has two modes (the labels swapped) that
    no Gaussian covers. fastvi's mode search starts on the symmetric saddle (mu_1 = mu_2) and
    warns; mean-field stays near it, full-rank slides into one mode (half the posterior, means
    off by ~1.5 sd of the symmetric posterior's): both must end with use "none"."""
    y = np.asarray(GA.data_normal_mixture()["y"])
    for family in ("meanfield", "fullrank"):
        m = fv.Model()
        w, mu, s = (
            m.param("w", lower=0.0, upper=1.0),
            m.param("mu", shape=(2,)),
            m.param("sigma", shape=(2,), lower=0.0),
        )
        m.add("beta", w, a=2.0, b=2.0)
        m.add("normal", mu, loc=0.0, scale=5.0)
        m.add("half_normal", s, scale=2.0)
        lp1 = fv.logp("normal", y, loc=mu[0], scale=s[0])
        m.factor(fv.log_mix(w, lp1, fv.logp("normal", y, loc=mu[1], scale=s[1])))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fv.fit(m, family=family, seed=0)
        assert fit.status.use == "none", (family, fit.khat, fit.mean())
        assert any(issubclass(c.category, fv.ConvergenceWarning) for c in caught), family


def test_gp_reference_log_density_matches_scipy():
    """The stored NumPyro log density of gp_regression against scipy's multivariate normal (so the
    reference is known right before fastvi can build the model)."""
    if "gp_regression" not in APPLIED:
        pytest.skip("no reference")
    info = GA.load("gp_regression")
    x, y = np.asarray(info["data"]["x"]), np.asarray(info["data"]["y"])

    def lp(z):
        rho, alpha, sigma = np.exp(z)
        K = alpha**2 * np.exp(-0.5 * ((x[:, None] - x[None, :]) / rho) ** 2) + sigma**2 * np.eye(len(x))
        prior = stats.invgamma.logpdf(rho, 5, scale=5) + stats.halfnorm.logpdf(alpha) + stats.halfnorm.logpdf(sigma)
        return stats.multivariate_normal.logpdf(y, np.zeros(len(x)), K) + prior + z.sum()

    chk = info["log_density_check"]
    ref = [lp(np.asarray(z)) for z in chk["zeta"]]
    np.testing.assert_allclose(_differences(chk["numpyro"]), _differences(ref), rtol=0, atol=1e-9)
