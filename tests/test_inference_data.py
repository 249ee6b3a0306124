"""fit.to_inference_data and fit.to_dataframe: ArviZ and pandas views of a fit.

The draws must be exactly ``fit.sample``'s; the pointwise log-likelihoods must be the observations'
densities (checked against scipy.stats at the same draws); the predictive draws must follow the
kernels' distributions (checked against scipy's moments, and against the exact posterior
predictive of the textbook model); and ArviZ's own functions must run on the result.
"""

import subprocess
import sys
import warnings

import fastvi as fv
import numpy as np
import pytest
from fastvi import _observed
from scipy import special, stats

az = pytest.importorskip("arviz")
pd = pytest.importorskip("pandas")

SCHOOLS = ["A", "B", "C", "D", "E", "F", "G", "H"]
Y_SCHOOLS = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA_SCHOOLS = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def schools_model():
    """Non-centred eight schools, with named dims."""
    m = fv.Model(coords={"school": SCHOOLS})
    mu = m.param("mu")
    tau = m.param("tau", lower=0.0)
    z = m.param("z", shape=8, dims="school")
    theta = m.deterministic("theta", mu + tau * z, dims="school")
    m.add("normal", mu, loc=0.0, scale=5.0)
    m.add("half_cauchy", tau, scale=5.0)
    m.add("normal", z, loc=0.0, scale=1.0)
    m.add("normal", Y_SCHOOLS, loc=theta, scale=SIGMA_SCHOOLS, name="y", dims="school")
    return m


@pytest.fixture(scope="module")
def schools_fit():
    return fv.fit(schools_model(), family="fullrank", seed=0)


def textbook(x):
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w, loc=0.0, scale=1.0)
    m.add("normal", x, loc=w, scale=1.0, name="x")
    return m


# ---- posterior and sample_stats -------------------------------------------------------------------


def test_posterior_is_sample_with_dims_and_coords(schools_fit):
    idata = schools_fit.to_inference_data(300, seed=4)
    draws = schools_fit.sample(300, seed=4)
    post = idata.posterior
    assert set(post.data_vars) == {"mu", "tau", "z", "theta"}
    for name, values in draws.items():
        assert post[name].shape == (1, 300, *values.shape[1:])
        np.testing.assert_array_equal(post[name].values[0], values)
    assert post["z"].dims == ("chain", "draw", "school")
    assert post["theta"].dims == ("chain", "draw", "school")
    assert post["school"].values.tolist() == SCHOOLS
    np.testing.assert_array_equal(post["theta"].sel(school="C").values[0], draws["theta"][:, 2])
    assert idata.observed_data["y"].dims == ("school",)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y_SCHOOLS)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "school")
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "school")


def test_psis_draws_are_the_resampled_ones(schools_fit):
    idata = schools_fit.to_inference_data(200, seed=2, importance="psis", log_likelihood=False)
    draws = schools_fit.sample(200, seed=2, importance="psis")
    for name, values in draws.items():
        np.testing.assert_array_equal(idata.posterior[name].values[0], values)
    assert idata.posterior.attrs["draws_from"] == "psis"
    assert "log_likelihood" not in idata.groups()


def test_sample_stats_are_log_p_and_log_q_at_the_draws():
    x = np.random.default_rng(0).normal(1.0, 1.0, size=20)
    m = fv.Model()
    w = m.param("w")
    s = m.param("s", lower=0.0)
    m.add("normal", w, loc=0.0, scale=1.0)
    m.add("lognormal", s, loc=0.0, scale=1.0)
    m.add("normal", x, loc=w, scale=s, name="x")
    fit = fv.fit(m, seed=0, psis_draws=0)  # (mean-field misses the correlation of w and s: no k-hat wanted)
    idata = fit.to_inference_data(50, seed=3)
    w_draws = idata.posterior["w"].values[0]
    s_draws = idata.posterior["s"].values[0]
    # lp is in the unconstrained space (log s), with the log-Jacobian log s of s = exp(log s)
    lp = (
        stats.norm.logpdf(w_draws)
        + stats.lognorm.logpdf(s_draws, 1.0)
        + stats.norm.logpdf(x[None], w_draws[:, None], s_draws[:, None]).sum(axis=1)
        + np.log(s_draws)
    )
    np.testing.assert_allclose(idata.sample_stats["lp"].values[0], lp, rtol=1e-10)
    mean, sd = fit.unconstrained_mean(), np.sqrt(np.diag(fit.unconstrained_cov()))  # mean-field
    log_q = stats.norm.logpdf(w_draws, mean[0], sd[0]) + stats.norm.logpdf(np.log(s_draws), mean[1], sd[1])
    np.testing.assert_allclose(idata.sample_stats["log_q"].values[0], log_q, rtol=1e-10)


def test_fit_attributes_and_approximation_group(schools_fit):
    idata = schools_fit.to_inference_data(100, log_likelihood=False, posterior_predictive=False)
    attrs = idata.posterior.attrs
    assert attrs["inference_library"] == "fastvi"
    assert attrs["family"] == "fullrank"
    assert attrs["converged"] == int(schools_fit.converged)
    assert attrs["steps"] == schools_fit.steps
    assert attrs["elbo"] == schools_fit.elbo[-1]
    assert attrs["khat"] == schools_fit.khat
    group = idata.approximation
    np.testing.assert_array_equal(group["elbo"].values, schools_fit.elbo)
    np.testing.assert_array_equal(group["elbo_step"].values, schools_fit.elbo_steps)
    np.testing.assert_array_equal(group["unconstrained_mean"].values, schools_fit.unconstrained_mean())
    assert group["coordinate"].values.tolist() == ["mu", "tau"] + [f"z[{i}]" for i in range(8)]


def test_netcdf_round_trip(schools_fit, tmp_path):
    idata = schools_fit.to_inference_data(100)
    path = tmp_path / "fit.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["theta"].values, idata.posterior["theta"].values)
    assert back.posterior.attrs["family"] == "fullrank"


def test_the_users_model_is_left_unchanged(schools_fit):
    m = schools_fit.model
    rows, recipe = m._core.rows, len(m._recipe)
    schools_fit.to_inference_data(100)
    assert (m._core.rows, len(m._recipe)) == (rows, recipe)


# ---- pointwise log-likelihood ------------------------------------------------------------------


def _pointwise_model(observed=True):
    """Every kind of observed factor the pointwise terms support, with scipy's density for each as
    a function of the posterior draws (a dict of arrays with a leading draw axis); observed=False:
    the priors only."""
    rng = np.random.default_rng(1)
    n = 12
    X = rng.normal(size=(n, 3))
    y = rng.normal(size=n)
    counts = rng.poisson(3.0, size=n).astype(float)
    binary = (rng.random(n) < 0.4).astype(float)
    trials = rng.integers(5, 10, size=n).astype(float)
    successes = np.minimum(rng.poisson(2.0, size=n), trials).astype(float)
    category = rng.integers(0, 3, size=n).astype(float)

    m = fv.Model()
    a = m.param("a")
    b = m.param("b", shape=3)
    s = m.param("s", lower=0.0)
    g = m.param("g", shape=(3, 3))
    m.add("normal", a, loc=0.0, scale=1.0)
    m.add("normal", b, loc=0.0, scale=1.0)
    m.add("lognormal", s, loc=0.0, scale=0.5)
    m.add("normal", g, loc=0.0, scale=1.0)
    if not observed:
        return m, None
    m.add("normal", y, loc=a, scale=s, name="normal")
    m.add("student_t", y, df=4.0, loc=a, scale=s, name="student_t")
    m.add("poisson", counts, rate=s, name="poisson")
    m.add("poisson_log", counts, log_rate=a, name="poisson_log")
    m.add("bernoulli_logit", binary, logit=a, name="bernoulli_logit")
    m.add("binomial_logit", successes, trials=trials, logit=a, name="binomial_logit")
    m.add("neg_binomial_2", counts, mu=s, phi=2.0, name="neg_binomial_2")
    m.add("neg_binomial_2_log", counts, log_mu=a, phi=s, name="neg_binomial_2_log")
    m.add("normal_id_glm", y, X=X, alpha=a, beta=b, scale=s, name="normal_id_glm")
    m.add("bernoulli_logit_glm", binary, X=X, alpha=a, beta=b, offset=0.5, name="bernoulli_logit_glm")
    m.add("poisson_log_glm", counts, X=X, alpha=a, beta=b, offset=np.linspace(-0.5, 0.5, n), name="poisson_log_glm")
    m.add("neg_binomial_2_log_glm", counts, X=X, alpha=a, beta=b, phi=s, name="neg_binomial_2_log_glm")
    m.add("categorical_logit_glm", category, X=X, beta=g, name="categorical_logit_glm")

    def nbinom(k, mu, phi):
        return stats.nbinom.logpmf(k, phi, phi / (phi + mu))

    def expected(d):
        A, B, S, G = d["a"][:, None], d["b"], d["s"][:, None], d["g"]
        eta = B @ X.T + A
        logits = np.einsum("nk,skc->snc", X, G)
        log_softmax = logits - special.logsumexp(logits, axis=-1, keepdims=True)
        return {
            "normal": stats.norm.logpdf(y, A, S),
            "student_t": stats.t.logpdf(y, 4.0, A, S),
            "poisson": stats.poisson.logpmf(counts, S),
            "poisson_log": stats.poisson.logpmf(counts, np.exp(A)),
            "bernoulli_logit": stats.bernoulli.logpmf(binary, special.expit(A)),
            "binomial_logit": stats.binom.logpmf(successes, trials, special.expit(A)),
            "neg_binomial_2": nbinom(counts, S, 2.0),
            "neg_binomial_2_log": nbinom(counts, np.exp(A), S),
            "normal_id_glm": stats.norm.logpdf(y, eta, S),
            "bernoulli_logit_glm": stats.bernoulli.logpmf(binary, special.expit(eta + 0.5)),
            "poisson_log_glm": stats.poisson.logpmf(counts, np.exp(eta + np.linspace(-0.5, 0.5, n))),
            "neg_binomial_2_log_glm": nbinom(counts, np.exp(eta), S),
            "categorical_logit_glm": np.take_along_axis(
                log_softmax, np.broadcast_to(category.astype(int)[None, :, None], (len(A), n, 1)), axis=-1
            )[..., 0],
        }

    return m, expected


def test_pointwise_log_likelihood_matches_scipy():
    m, expected = _pointwise_model()
    fit = fv.fit(m, seed=0, psis_draws=0)
    idata = fit.to_inference_data(40, seed=1, posterior_predictive=False)
    draws = {k: v.values[0] for k, v in idata.posterior.items()}
    want = expected(draws)
    assert set(idata.log_likelihood.data_vars) == set(want)
    for name, values in want.items():
        got = idata.log_likelihood[name].values[0]
        assert got.shape == (40, 12), name
        np.testing.assert_allclose(got, values, rtol=1e-9, atol=1e-12, err_msg=name)
        # summed over the observations: the factor's total at each draw
        np.testing.assert_allclose(got.sum(axis=1), values.sum(axis=1), rtol=1e-9, err_msg=name)


def test_pointwise_terms_sum_to_the_log_density():
    """Priors plus the pointwise likelihood terms plus the log-Jacobian are the model's lp."""
    x = np.random.default_rng(3).poisson(4.0, size=30).astype(float)
    m = fv.Model()
    rate = m.param("rate", lower=0.0)
    m.add("gamma", rate, shape=2.0, rate=0.5)
    m.add("poisson", x, rate=rate, name="x")
    idata = fv.fit(m, seed=0).to_inference_data(25, posterior_predictive=False)
    r = idata.posterior["rate"].values[0]
    total = idata.log_likelihood["x"].values[0].sum(axis=1) + stats.gamma.logpdf(r, 2.0, scale=2.0) + np.log(r)
    np.testing.assert_allclose(total, idata.sample_stats["lp"].values[0], rtol=1e-10)


def test_factors_without_pointwise_terms_are_left_out_with_a_warning():
    m = fv.Model()
    mu = m.param("mu", shape=2)
    m.add("normal", mu, loc=0.0, scale=1.0)
    eta = m.param("eta", lower=0.0)
    m.add("lognormal", eta)
    m.add("lkj_corr_cholesky", np.array([[1.0, 0.0], [0.6, 0.8]]), eta=eta, name="shares")
    m.add("normal_lccdf", np.array([1.0, 2.0]), loc=mu[0], scale=1.0, name="censored")
    m.add("normal", np.array([0.1, 0.2]), loc=mu[1], scale=1.0, name="plain")
    fit = fv.fit(m, seed=0, psis_draws=0)
    with pytest.warns(UserWarning) as record:
        idata = fit.to_inference_data(50)
    messages = [str(w.message) for w in record]
    assert any("no pointwise log-likelihood for 'shares' (kernel 'lkj_corr_cholesky')" in t for t in messages)
    assert any(
        "no predictive draws for 'shares' (kernel 'lkj_corr_cholesky'), 'censored' (kernel 'normal_lccdf')" in t
        for t in messages
    )
    assert all(w.filename == __file__ for w in record)  # the warnings point at the caller's line
    assert set(idata.log_likelihood.data_vars) == {"censored", "plain"}
    assert set(idata.posterior_predictive.data_vars) == {"plain"}
    assert set(idata.observed_data.data_vars) == {"shares", "censored", "plain"}


def test_repeated_factor_names_are_made_unique():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w)
    m.add("normal", np.array([1.0]), loc=w, name="y")
    m.add("normal", np.array([2.0, 3.0]), loc=w, name="y")
    idata = fv.fit(m, seed=0).to_inference_data(20)
    assert set(idata.observed_data.data_vars) == {"y #1", "y #2"}


# ---- ArviZ's functions run on it ---------------------------------------------------------------


def test_arviz_summary_loo_and_compare(schools_fit):
    idata = schools_fit.to_inference_data(1000, seed=0)
    table = az.summary(idata, var_names=["mu", "tau", "theta"], kind="stats")
    assert "theta[C]" in table.index
    # q's moments, up to the Monte Carlo error of 1000 draws
    sd = schools_fit.std()["mu"]
    assert abs(table.loc["mu", "mean"] - schools_fit.mean()["mu"]) < 5 * sd / np.sqrt(1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ's own Pareto-k note on an influential school
        loo = az.loo(idata, pointwise=True)
    assert np.isfinite(loo.elpd_loo) and loo.pareto_k.shape == (8,)
    # elpd_loo is close to the sum of the log pointwise predictive densities (p_loo is small)
    ll = idata.log_likelihood["y"].values[0]
    lppd = (special.logsumexp(ll, axis=0) - np.log(ll.shape[0])).sum()
    assert lppd - 3.0 < loo.elpd_loo < lppd
    pooled = fv.Model()
    mu = pooled.param("mu")
    pooled.add("normal", mu, loc=0.0, scale=5.0)
    pooled.add("normal", Y_SCHOOLS, loc=mu, scale=SIGMA_SCHOOLS, name="y")
    other = fv.fit(pooled, seed=0).to_inference_data(1000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as above, and pandas' deprecation notes about ArviZ's code
        comparison = az.compare({"hierarchical": idata, "pooled": other})
    assert set(comparison.index) == {"hierarchical", "pooled"}


def test_arviz_plot_posterior(schools_fit):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's notes about ArviZ's code; ArviZ's Pareto-k note (plot_elpd)
        idata = schools_fit.to_inference_data(200)
        axes = az.plot_posterior(idata, var_names=["mu", "tau"])
        assert len(np.ravel(axes)) == 2
        az.plot_ppc(idata, num_pp_samples=50)  # observed_data against posterior_predictive
        az.plot_elpd({"hierarchical": idata, "again": schools_fit.to_inference_data(200, seed=1)})
    plt.close("all")


# ---- posterior predictive ----------------------------------------------------------------------


def test_posterior_predictive_of_the_textbook_model_is_exact():
    """w ~ Normal(0, 1), x_i ~ Normal(w, 1): the predictive of a new x is Normal(m, sqrt(1 + v))
    with the posterior's mean m and variance v."""
    x = np.random.default_rng(42).normal(2.0, 1.0, size=10)
    fit = fv.fit(textbook(x), seed=0)
    v = 1.0 / (1.0 + x.size)
    m = x.sum() * v
    n = 4000
    pred = fit.to_inference_data(n, seed=5).posterior_predictive["x"].values[0]  # (n, 10)
    assert pred.shape == (n, 10)
    # every column is a sample of the predictive (dependent across columns through w)
    flat = pred[:, 0]
    sd = np.sqrt(1.0 + v)
    assert abs(flat.mean() - m) < 4 * sd / np.sqrt(n)
    assert abs(flat.var(ddof=1) / sd**2 - 1.0) < 4 * np.sqrt(2.0 / (n - 1))
    # a Kolmogorov-Smirnov test against the exact predictive (a fixed seed: it cannot flake)
    assert stats.kstest(flat, stats.norm(m, sd).cdf).pvalue > 1e-3
    # the observations of one draw share its w: their covariance is v
    assert abs(np.cov(pred[:, 0], pred[:, 1])[0, 1] - v) < 4 * (1.0 + v) / np.sqrt(n)


def _fixed_draws(model, values, s):
    """s copies of one unconstrained point (every draw at the same parameter values)."""
    return np.repeat(model.unconstrain(values)[:, None], s, axis=1)


@pytest.mark.parametrize(
    "kernel, data, inputs, dist",
    [
        ("normal", [0.0], {"loc": 1.5, "scale": 2.0}, stats.norm(1.5, 2.0)),
        ("student_t", [0.0], {"df": 5.0, "loc": 1.0, "scale": 2.0}, stats.t(5.0, 1.0, 2.0)),
        ("poisson", [1.0], {"rate": 3.5}, stats.poisson(3.5)),
        ("poisson_log", [1.0], {"log_rate": np.log(3.5)}, stats.poisson(3.5)),
        ("bernoulli_logit", [1.0], {"logit": 0.7}, stats.bernoulli(special.expit(0.7))),
        ("binomial_logit", [2.0], {"trials": 9.0, "logit": -0.4}, stats.binom(9, special.expit(-0.4))),
        ("neg_binomial_2", [2.0], {"mu": 4.0, "phi": 1.5}, stats.nbinom(1.5, 1.5 / 5.5)),
        ("neg_binomial_2_log", [2.0], {"log_mu": np.log(4.0), "phi": 1.5}, stats.nbinom(1.5, 1.5 / 5.5)),
        ("gamma", [1.0], {"shape": 2.5, "rate": 1.5}, stats.gamma(2.5, scale=1 / 1.5)),
        ("lognormal", [1.0], {"loc": 0.2, "scale": 0.5}, stats.lognorm(0.5, scale=np.exp(0.2))),
        ("beta", [0.5], {"a": 2.0, "b": 3.0}, stats.beta(2.0, 3.0)),
        ("exponential", [1.0], {"rate": 2.0}, stats.expon(scale=0.5)),
        ("weibull", [1.0], {"shape": 1.5, "scale": 2.0}, stats.weibull_min(1.5, scale=2.0)),
    ],
)
def test_predictive_draws_follow_the_kernel(kernel, data, inputs, dist):
    """At fixed parameter values, the predictive draws of an observation are draws of the kernel:
    their mean and variance match scipy's, within 5 standard errors of 20,000 draws."""
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w)
    m.add(kernel, np.array(data), name="y", **inputs)
    s = 20_000
    draws = _observed.predictive_draws(m, _fixed_draws(m, {"w": 0.0}, s), seed=1)["y"][:, 0]
    mean, var = dist.mean(), dist.var()
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / s)
    fourth = dist.moment(4) - 4 * mean * dist.moment(3) + 6 * mean**2 * dist.moment(2) - 3 * mean**4
    assert abs(draws.var(ddof=1) - var) < 5 * np.sqrt((fourth - var**2) / s)


@pytest.mark.parametrize(
    "kernel, data, inputs, dist",
    [
        ("cauchy", [0.0], {"loc": 1.0, "scale": 0.5}, stats.cauchy(1.0, 0.5)),
        ("half_cauchy", [1.0], {"scale": 2.0}, stats.halfcauchy(scale=2.0)),
        ("half_normal", [1.0], {"scale": 2.0}, stats.halfnorm(scale=2.0)),
        ("logistic", [0.0], {"loc": 1.0, "scale": 0.5}, stats.logistic(1.0, 0.5)),
        ("double_exponential", [0.0], {"loc": 1.0, "scale": 0.5}, stats.laplace(1.0, 0.5)),
        ("inv_gamma", [1.0], {"shape": 3.0, "scale": 2.0}, stats.invgamma(3.0, scale=2.0)),
        ("chi_square", [1.0], {"df": 3.0}, stats.chi2(3.0)),
        ("uniform", [0.5], {"lower": -1.0, "upper": 2.0}, stats.uniform(-1.0, 3.0)),
        ("pareto", [2.0], {"y_min": 1.5, "alpha": 3.0}, stats.pareto(3.0, scale=1.5)),
        ("von_mises", [0.0], {"loc": 0.5, "kappa": 2.0}, stats.vonmises(2.0, loc=0.5)),
        ("gamma", [1.0], {"shape": 0.5, "rate": 2.0}, stats.gamma(0.5, scale=0.5)),
        ("student_t", [0.0], {"df": 1.5, "loc": 0.0, "scale": 1.0}, stats.t(1.5)),
    ],
)
def test_continuous_predictive_draws_have_the_kernels_distribution(kernel, data, inputs, dist):
    """The heavy-tailed and the other continuous kernels: a Kolmogorov-Smirnov test of 20,000
    draws at fixed parameter values against scipy's distribution (a fixed seed: it cannot flake;
    a wrong scale or location gives p-values far below the threshold)."""
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w)
    m.add(kernel, np.array(data), name="y", **inputs)
    draws = _observed.predictive_draws(m, _fixed_draws(m, {"w": 0.0}, 20_000), seed=2)["y"][:, 0]
    assert stats.kstest(draws, dist.cdf).pvalue > 1e-3


def test_beta_binomial_predictive_draws():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w)
    m.add("beta_binomial", np.array([2.0]), trials=10.0, a=2.0, b=3.0, name="y")
    s = 20_000
    draws = _observed.predictive_draws(m, _fixed_draws(m, {"w": 0.0}, s), seed=3)["y"][:, 0]
    p = stats.betabinom(10, 2.0, 3.0).pmf(np.arange(11))
    freq = np.bincount(draws.astype(int), minlength=11) / s
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / s) + 1e-12)


def test_glm_predictive_draws_follow_the_linear_predictor():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 2))
    m = fv.Model()
    b = m.param("b", shape=2)
    phi = m.param("phi", lower=0.0)
    m.add("normal", b)
    m.add("lognormal", phi)
    y = np.array([0.0, 1.0, 2.0, 1.0])
    m.add("poisson_log_glm", y, X=X, alpha=0.3, beta=b, name="poisson")
    m.add("bernoulli_logit_glm", np.array([0.0, 1.0, 1.0, 0.0]), X=X, beta=b, name="bernoulli")
    m.add("normal_id_glm", y, X=X, alpha=0.3, beta=b, scale=phi, name="normal")
    m.add("neg_binomial_2_log_glm", y, X=X, beta=b, phi=phi, name="nb")
    beta = np.array([0.5, -0.3])
    s = 20_000
    pred = _observed.predictive_draws(m, _fixed_draws(m, {"b": beta, "phi": 2.0}, s), seed=3)
    eta = X @ beta
    cases = {
        "poisson": (np.exp(eta + 0.3), np.exp(eta + 0.3)),
        "bernoulli": (special.expit(eta), special.expit(eta) * (1 - special.expit(eta))),
        "normal": (eta + 0.3, np.full(4, 4.0)),
        "nb": (np.exp(eta), np.exp(eta) + np.exp(eta) ** 2 / 2.0),
    }
    for name, (mean, var) in cases.items():
        assert pred[name].shape == (s, 4)
        assert np.all(np.abs(pred[name].mean(axis=0) - mean) < 5 * np.sqrt(var / s)), name
        assert np.all(np.abs(pred[name].var(axis=0, ddof=1) / var - 1) < 0.1), name


def test_categorical_logit_glm_predictive_frequencies():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    m = fv.Model()
    g = m.param("g", shape=(2, 3))
    m.add("normal", g)
    m.add("categorical_logit_glm", np.array([0.0, 2.0]), X=X, beta=g, name="c")
    G = np.array([[0.0, 1.0, -1.0], [0.5, 0.5, 0.0]])
    s = 20_000
    pred = _observed.predictive_draws(m, _fixed_draws(m, {"g": G}, s), seed=0)["c"]
    p = special.softmax(X @ G, axis=-1)
    for row in range(2):
        freq = np.bincount(pred[:, row].astype(int), minlength=3) / s
        assert np.all(np.abs(freq - p[row]) < 5 * np.sqrt(p[row] * (1 - p[row]) / s))


# ---- pandas ------------------------------------------------------------------------------------


def test_to_dataframe_has_one_column_per_scalar():
    m = fv.Model()
    m.add("normal", m.param("w"))
    m.add("normal", m.param("B", shape=(2, 3)))
    fit = fv.fit(m, seed=0)
    df = fit.to_dataframe(100, seed=2)
    assert list(df.columns) == ["w"] + [f"B[{i}, {j}]" for i in range(2) for j in range(3)]
    draws = fit.sample(100, seed=2)
    np.testing.assert_array_equal(df["w"].to_numpy(), draws["w"])
    np.testing.assert_array_equal(df["B[1, 2]"].to_numpy(), draws["B"][:, 1, 2])
    assert df.index.name == "draw" and len(df) == 100
    assert list(df.columns) == fv.summary(draws).rows  # the summaries' names


# ---- optional dependencies --------------------------------------------------------------------


def test_import_fastvi_does_not_import_arviz_xarray_or_pandas():
    code = "import sys, fastvi; print(sorted(m for m in ('arviz', 'xarray', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("missing, method", [("arviz", "to_inference_data"), ("pandas", "to_dataframe")])
def test_missing_optional_dependency_says_how_to_install(monkeypatch, missing, method):
    m = fv.Model()
    m.add("normal", m.param("w"))
    fit = fv.fit(m, seed=0)
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install fastvi\[arviz\]"):
        getattr(fit, method)(10)


def test_no_warning_for_a_model_with_only_supported_factors(schools_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schools_fit.to_inference_data(50)


def test_a_kernel_registered_from_python_gets_pointwise_terms():
    name = "test_inference_data_laplace"
    if name not in fv.kernels():

        def laplace(y, loc, scale, params):
            z = y - loc
            lp = -np.log(2 * scale) - np.abs(z) / scale
            return lp, {"y": -np.sign(z) / scale, "loc": np.sign(z) / scale, "scale": (np.abs(z) / scale - 1) / scale}

        fv.register_kernel(name, ["y", "loc", "scale"], laplace, supports={"scale": "positive"})
    y = np.random.default_rng(0).laplace(1.0, 2.0, size=15)
    m = fv.Model()
    mu, s = m.param("mu"), m.param("s", lower=0.0)
    m.add("normal", mu, scale=10.0)
    m.add("lognormal", s)
    m.add(name, y, loc=mu, scale=s, name="y")
    with pytest.warns(UserWarning, match="no predictive draws for 'y'"):
        idata = fv.fit(m, seed=0, psis_draws=0).to_inference_data(30)
    post = idata.posterior
    want = stats.laplace.logpdf(y, post["mu"].values[0][:, None], post["s"].values[0][:, None])
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0], want, rtol=1e-10)


def test_a_model_without_observed_data_has_no_observed_groups():
    m = fv.Model()
    m.add("normal", m.param("w"), loc=1.0)
    idata = fv.fit(m, seed=0).to_inference_data(20)
    assert sorted(idata.groups()) == ["approximation", "posterior", "sample_stats"]


def test_posterior_predictive_method_is_the_groups_draws(schools_fit):
    pred = schools_fit.posterior_predictive(300, seed=7)
    idata = schools_fit.to_inference_data(300, seed=7, log_likelihood=False)
    assert set(pred) == {"y"}
    np.testing.assert_array_equal(pred["y"], idata.posterior_predictive["y"].values[0])
    other = schools_fit.posterior_predictive(300, seed=8)
    assert not np.array_equal(pred["y"], other["y"])


def _multivariate_model(observed=True):
    """The observed factors of the kernels that are not element-wise, with scipy's log density of
    each observation as a function of the posterior draws (observed=False: the priors only)."""
    rng = np.random.default_rng(5)
    n = 7
    category = rng.integers(0, 3, size=n).astype(float)
    counts = rng.integers(0, 4, size=(n, 3)).astype(float)
    ordinal = np.array([0.0, 1.0, 2.0, 3.0, 3.0, 0.0, 2.0])
    rows = rng.normal(size=(n, 2))
    shares = rng.dirichlet([1.0, 2.0, 3.0], size=n)
    m = fv.Model()
    theta = m.param("theta", shape=3, transform="simplex")
    logits = m.param("logits", shape=(n, 3))
    gamma = m.param("gamma", shape=3)
    eta = m.param("eta", shape=n)
    cut = m.param("cut", shape=3, transform="ordered")
    mu = m.param("mu", shape=2)
    L = m.param("L", shape=(2, 2), transform="cholesky_cov")
    for p in (logits, gamma, eta, cut, mu):
        m.add("normal", p, scale=2.0)
    if not observed:
        return m, None
    m.add("categorical", category, theta=theta, name="categorical")
    m.add("categorical_logit", category, logits=logits, name="categorical_logit")
    m.add("multinomial_logit", counts, gamma=gamma, name="multinomial_logit")
    m.add("ordered_logistic", ordinal, eta=eta, cutpoints=cut, name="ordered_logistic")
    m.add("ordered_probit", ordinal, eta=eta * 0.5, cutpoints=cut, name="ordered_probit")
    m.add("multi_normal", rows, mu=mu, Sigma=np.array([[1.0, 0.3], [0.3, 2.0]]), name="multi_normal")
    m.add("multi_normal_cholesky", rows, mu=mu, L=L, name="multi_normal_cholesky")
    m.add("dirichlet", shares, alpha=fv.exp(gamma), name="dirichlet")
    # a data factor's upper triangle is ignored, as the kernel does
    m.add("multi_normal_cholesky", rows, mu=mu, L=np.array([[1.0, 5.0], [0.3, 1.2]]), name="cholesky_data")
    y_index = category.astype(int)

    def ordinal_lp(cdf, e, c):
        edges = np.concatenate([[-np.inf], c, [np.inf]])
        k = ordinal.astype(int)
        return np.log(cdf(edges[k + 1] - e) - cdf(edges[k] - e))

    def expected(d):
        s = len(d["mu"])
        sigma = np.array([[1.0, 0.3], [0.3, 2.0]])
        return {
            "categorical": np.log(d["theta"][:, y_index]),
            "categorical_logit": np.log(special.softmax(d["logits"], axis=-1))[:, np.arange(n), y_index],
            "multinomial_logit": np.array(
                [stats.multinomial.logpmf(counts, counts.sum(axis=1), special.softmax(d["gamma"][i])) for i in range(s)]
            ),
            "ordered_logistic": np.array([ordinal_lp(special.expit, d["eta"][i], d["cut"][i]) for i in range(s)]),
            "ordered_probit": np.array([ordinal_lp(stats.norm.cdf, 0.5 * d["eta"][i], d["cut"][i]) for i in range(s)]),
            "multi_normal": np.array([stats.multivariate_normal.logpdf(rows, d["mu"][i], sigma) for i in range(s)]),
            "multi_normal_cholesky": np.array(
                [stats.multivariate_normal.logpdf(rows, d["mu"][i], d["L"][i] @ d["L"][i].T) for i in range(s)]
            ),
            "dirichlet": np.array(
                [[stats.dirichlet.logpdf(x, np.exp(d["gamma"][i])) for x in shares] for i in range(s)]
            ),
            "cholesky_data": np.array(
                [stats.multivariate_normal.logpdf(rows, d["mu"][i], [[1.0, 0.3], [0.3, 0.09 + 1.44]]) for i in range(s)]
            ),
        }

    return m, expected


def test_pointwise_log_likelihood_of_multivariate_kernels_matches_scipy():
    m, expected = _multivariate_model()
    fit = fv.fit(m, seed=0, psis_draws=0)
    idata = fit.to_inference_data(30, seed=2)
    draws = {k: v.values[0] for k, v in idata.posterior.items()}
    want = expected(draws)
    assert set(idata.log_likelihood.data_vars) == set(want)
    for name, values in want.items():
        got = idata.log_likelihood[name].values[0]
        assert got.shape == (30, 7), name
        np.testing.assert_allclose(got, values, rtol=1e-9, err_msg=name)
    assert set(idata.posterior_predictive.data_vars) == set(want)
    assert idata.posterior_predictive["multinomial_logit"].shape == (1, 30, 7, 3)
    assert idata.posterior_predictive["multi_normal"].shape == (1, 30, 7, 2)
    simplexes = idata.posterior_predictive["dirichlet"].values
    assert simplexes.shape == (1, 30, 7, 3) and np.allclose(simplexes.sum(axis=-1), 1.0)


@pytest.mark.parametrize("make", [_pointwise_model, _multivariate_model])
def test_pointwise_terms_sum_to_what_the_kernels_add_to_the_log_density(make):
    """At any points, the log density with the observed factors minus the one without them is
    the sum of the pointwise terms (the C++ kernels and this module agree)."""
    m, _ = make()
    priors, _ = make(observed=False)
    zeta = np.random.default_rng(0).normal(scale=0.7, size=(m.dim, 20))
    ll = _observed.pointwise_log_likelihood(m, zeta)
    total = sum(v.reshape(20, -1).sum(axis=1) for v in ll.values())
    np.testing.assert_allclose(m.log_density(zeta)[0] - priors.log_density(zeta)[0], total, rtol=1e-10)


def test_ordinal_log_likelihood_far_in_the_tails():
    """eta 40 past the cutpoints: P(y = 0) = F(c_0 - eta) ~ e^-40 (logistic), computed without
    cancellation, as the kernel does."""
    m = fv.Model()
    eta = m.param("eta")
    m.add("normal", eta)
    m.add("ordered_logistic", np.array([0.0, 2.0]), eta=eta, cutpoints=np.array([-1.0, 1.0]), name="y")
    zeta = np.array([[40.0, -40.0]])
    ll = _observed.pointwise_log_likelihood(m, zeta)["y"]
    want = [
        [-np.logaddexp(0, 41.0), -np.logaddexp(0, -39.0)],  # y=0: F(-1 - 40); y=2: S(1 - 40)
        [-np.logaddexp(0, -39.0), -np.logaddexp(0, 41.0)],
    ]
    np.testing.assert_allclose(ll, want, rtol=1e-12)
    # the probit's: P(y = 2) = Phi(-41) at eta = -40, whose complement rounds to 1
    m = fv.Model()
    eta = m.param("eta")
    m.add("normal", eta)
    m.add("ordered_probit", np.array([2.0, 0.0]), eta=eta, cutpoints=np.array([-1.0, 1.0]), name="y")
    ll = _observed.pointwise_log_likelihood(m, np.array([[-40.0]]))["y"]
    np.testing.assert_allclose(ll[0, 0], special.log_ndtr(-41.0), rtol=1e-12)
    assert ll[0, 1] > -1e-300  # P(y = 0) = Phi(-1 + 40): log 1 - tiny


def test_multivariate_predictive_draws_follow_the_kernels():
    s = 20_000
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w)
    sigma = np.array([[1.0, 0.6], [0.6, 2.0]])
    m.add("multi_normal", np.zeros((1, 2)), mu=np.array([1.0, -1.0]), Sigma=sigma, name="mvn")
    m.add("ordered_logistic", np.array([1.0]), eta=w, cutpoints=np.array([-0.5, 0.7]), name="ord")
    m.add("multinomial_logit", np.array([[2.0, 3.0, 5.0]]), gamma=np.array([0.0, 1.0, -1.0]), name="multi")
    m.add("categorical", np.array([0.0]), theta=np.array([0.2, 0.5, 0.3]), name="cat")
    m.add("dirichlet", np.array([0.2, 0.3, 0.5]), alpha=np.array([1.0, 2.0, 4.0]), name="dir")
    pred = _observed.predictive_draws(m, _fixed_draws(m, {"w": 0.3}, s), seed=4)
    dirichlet = stats.dirichlet([1.0, 2.0, 4.0])
    assert np.all(np.abs(pred["dir"].mean(axis=0) - dirichlet.mean()) < 5 * np.sqrt(dirichlet.var() / s))
    mvn = pred["mvn"][:, 0]
    assert np.all(np.abs(mvn.mean(axis=0) - [1.0, -1.0]) < 5 * np.sqrt(np.diag(sigma) / s))
    assert np.all(np.abs(np.cov(mvn.T) - sigma) < 0.06)
    p_ord = np.diff(np.concatenate([[0.0], special.expit(np.array([-0.5, 0.7]) - 0.3), [1.0]]))
    p_cat = np.array([0.2, 0.5, 0.3])
    for draws, p in ((pred["ord"][:, 0], p_ord), (pred["cat"][:, 0], p_cat)):
        freq = np.bincount(draws.astype(int), minlength=3) / s
        assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / s))
    multi = pred["multi"][:, 0]
    assert np.all(multi.sum(axis=1) == 10.0)
    p = special.softmax([0.0, 1.0, -1.0])
    assert np.all(np.abs(multi.mean(axis=0) - 10 * p) < 5 * np.sqrt(10 * p * (1 - p) / s))


def test_observation_dims_in_every_group():
    """A multinomial's counts (N, C) named ("trial", "category"): one log-likelihood term per
    trial, new counts per trial and category."""
    m = fv.Model(coords={"trial": ["t1", "t2"], "category": ["a", "b", "c"]})
    gamma = m.param("gamma", shape=3, dims="category")
    m.add("normal", gamma)
    m.add(
        "multinomial_logit",
        np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]]),
        gamma=gamma,
        name="counts",
        dims=("trial", "category"),
    )
    idata = fv.fit(m, seed=0, psis_draws=0).to_inference_data(40)
    assert idata.observed_data["counts"].dims == ("trial", "category")
    assert idata.log_likelihood["counts"].dims == ("chain", "draw", "trial")
    assert idata.posterior_predictive["counts"].dims == ("chain", "draw", "trial", "category")
    assert idata.posterior_predictive["category"].values.tolist() == ["a", "b", "c"]
    assert idata.posterior["gamma"].dims == ("chain", "draw", "category")


@pytest.mark.parametrize("family", ["meanfield", "fullrank", "lowrank"])
def test_unconstrained_sd_is_the_covariances_diagonal(family):
    from fastvi._inference_data import unconstrained_sd

    m = fv.Model()
    x = m.param("x", shape=4)
    m.add("normal", x, loc=np.arange(4.0), scale=np.array([0.5, 1.0, 2.0, 3.0]))
    fit = fv.fit(m, family=family, rank=2 if family == "lowrank" else None, seed=0, psis_draws=0)
    np.testing.assert_allclose(unconstrained_sd(fit), np.sqrt(np.diag(fit.unconstrained_cov())), rtol=1e-12)


def test_a_pickled_fit_gives_the_same_inference_data(schools_fit):
    import pickle

    other = pickle.loads(pickle.dumps(schools_fit))
    a, b = schools_fit.to_inference_data(100, seed=3), other.to_inference_data(100, seed=3)
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"):
        for name in getattr(a, group).data_vars:
            np.testing.assert_array_equal(getattr(a, group)[name].values, getattr(b, group)[name].values)
    assert b.posterior["school"].values.tolist() == SCHOOLS


def test_psis_draws_need_the_diagnostic():
    m = fv.Model()
    m.add("normal", m.param("w"))
    m.add("normal", np.array([1.0]), loc=m.params["w"], name="y")
    fit = fv.fit(m, seed=0, psis_draws=0)
    with pytest.raises(ValueError, match=r"to_inference_data\(10, importance='psis'\) needs the PSIS draws"):
        fit.to_inference_data(10, importance="psis")
    with pytest.raises(ValueError, match=r"posterior_predictive\(10, importance='psis'\) needs the PSIS draws"):
        fit.posterior_predictive(10, importance="psis")
    with pytest.raises(ValueError, match="importance must be None"):
        fit.to_inference_data(10, importance="IS")


def test_observed_data_in_a_container_follows_set_data():
    # a data container (model.data) as the observed variate: observed_data and the pointwise
    # log-likelihood read its current values, also after set_data with a new length
    m = fv.Model()
    w = m.param("w")
    x = m.data("x", np.array([0.5, 1.5, 2.0]))
    m.add("normal", w, loc=0.0, scale=1.0)
    m.add("normal", x, loc=w, scale=1.0, name="y")
    for values in (np.array([0.5, 1.5, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])):
        m.set_data("x", values)
        idata = fv.fit(m, seed=0).to_inference_data(50, posterior_predictive=False)
        np.testing.assert_array_equal(idata.observed_data["y"].values, values)
        draws = idata.posterior["w"].values[0]
        want = stats.norm.logpdf(values[None, :], draws[:, None], 1.0)
        np.testing.assert_allclose(idata.log_likelihood["y"].values[0], want, rtol=1e-12)
