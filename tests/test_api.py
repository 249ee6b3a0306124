"""The public API's shapes and conveniences: kernels(), sample(), summary(), init, progress."""

import time

import fastvi as fv
import numpy as np
import pytest
import scipy.special
import scipy.stats


def test_kernels_lists_names_and_inputs():
    ks = fv.kernels()
    assert "normal" in ks
    normal = ks["normal"]
    assert [i.name for i in normal.inputs] == ["y", "loc", "scale"]
    assert normal.variate.name == "y"
    assert normal.inputs[2].support == "positive" and normal.inputs[2].default == 1.0
    assert "normal(y | loc=0, scale=1)" in str(normal)


def test_sample_and_moments_have_parameter_shapes():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 3))
    m = fv.Model()
    mu = m.param("mu", shape=(3,))
    s = m.param("s", lower=0.0)
    m.add("normal", mu, loc=0.0, scale=10.0)
    m.add("half_normal", s, scale=2.0)
    m.add("normal", y, loc=mu, scale=s)
    approx = fv.fit(m, family="fullrank", steps=3000, seed=0, tol=None)
    assert approx.mean()["mu"].shape == (3,) and approx.std()["s"].shape == ()
    draws = approx.sample(10, seed=4)
    assert draws["mu"].shape == (10, 3) and draws["s"].shape == (10,)
    assert np.all(draws["s"] > 0)
    np.testing.assert_array_equal(approx.sample(10, seed=4)["mu"], draws["mu"])
    assert not np.array_equal(approx.sample(10, seed=5)["mu"], draws["mu"])
    assert approx.unconstrained_cov().shape == (4, 4)


def test_sample_moments_agree_with_mean_and_std_through_transforms():
    # mean()/std() use quadrature or closed forms; sampling is an independent check.
    m = fv.Model()
    a = m.param("a", lower=1.0)
    b = m.param("b", lower=-1.0, upper=2.0)
    c = m.param("c", upper=0.5)
    for p in (a, b, c):
        m.add("normal", np.array([0.3, 0.9]), loc=p, scale=1.0)
    approx = fv.fit(m, steps=4000, seed=0, tol=None)
    draws = approx.sample(200_000, seed=0)
    for name in "abc":
        assert draws[name].mean() == pytest.approx(approx.mean()[name], rel=0.01)
        assert draws[name].std() == pytest.approx(approx.std()[name], rel=0.02)


def test_summary_matches_numpy():
    rng = np.random.default_rng(1)
    draws = {"w": rng.normal(size=1000), "beta": rng.normal(size=(1000, 2, 2))}
    s = fv.summary(draws)
    assert s.rows == ["w", "beta[0, 0]", "beta[0, 1]", "beta[1, 0]", "beta[1, 1]"]
    assert s.columns == ["mean", "sd", "3%", "97%"]
    assert s["w"]["mean"] == pytest.approx(draws["w"].mean())
    assert s["w"]["sd"] == pytest.approx(draws["w"].std(ddof=1))
    assert s["beta[1, 0]"]["97%"] == pytest.approx(np.quantile(draws["beta"][:, 1, 0], 0.97))
    assert "beta[1, 1]" in str(s)
    with pytest.raises(ValueError, match="leading draw axis"):
        fv.summary({"w": np.float64(1.0)})


def test_summary_of_a_fit_uses_its_draws(seed_data):
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w, loc=0.0, scale=1.0)
    m.add("normal", seed_data, loc=w, scale=1.0)
    approx = fv.fit(m, seed=0)
    s = fv.summary(approx)["w"]
    exact = scipy.stats.norm(seed_data.sum() / 101, 1 / np.sqrt(101))
    assert s["mean"] == pytest.approx(exact.mean(), abs=0.01)
    assert s["3%"] == pytest.approx(exact.ppf(0.03), abs=0.02)


def test_init_sets_the_starting_mean(seed_data):
    m = fv.Model()
    w = m.param("w")
    m.add("normal", seed_data, loc=w, scale=1.0)
    approx = fv.fit(m, steps=1, init={"w": 5.0}, tol=None, average=False, lr=1e-9, precondition=None)
    assert approx.unconstrained_mean()[0] == pytest.approx(5.0, abs=1e-6)


def test_progress_bar_runs(seed_data, capsys):
    pytest.importorskip("tqdm")
    m = fv.Model()
    w = m.param("w")
    m.add("normal", seed_data, loc=w, scale=1.0)
    approx = fv.fit(m, steps=500, progress=True, tol=None)
    assert approx.steps == 500


def test_progress_bar_redraws_by_time_not_by_step(capsys):
    """A fit of about a second writes a few progress lines, not one per ELBO window (2,000 here).

    tqdm redraws at most once per mininterval (fastvi's _PROGRESS_SECONDS, 0.5 s), so a bar that
    lives t seconds draws at most t / 0.5 times, plus its first draw and the one when it closes;
    the bar lives within the fit, so the fit's wall time bounds it whatever the machine's speed."""
    pytest.importorskip("tqdm")
    from fastvi import _fit

    rng = np.random.default_rng(1)
    m = fv.Model()
    w = m.param("w", shape=(5,))
    m.add("normal", rng.normal(size=(200, 5)), loc=w)
    steps = 200_000  # about 1 s at ~200,000 steps/s
    start = time.monotonic()
    fv.fit(m, steps=steps, tol=None, precision=None, psis_draws=0, progress=True)
    elapsed = time.monotonic() - start
    written = capsys.readouterr().err
    draws = written.count(f"/{steps} [")  # every draw of the bar shows "n/total ["
    assert 2 <= draws <= elapsed / _fit._PROGRESS_SECONDS + 2, (elapsed, written)
    assert f"{steps}/{steps} [" in written.splitlines()[-1]  # the last line: the fit's end


def test_log_density_at_a_point_matches_scipy(seed_data):
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w, loc=0.0, scale=1.0)
    m.add("normal", seed_data, loc=w, scale=1.0)
    lp, grad = m.log_density(np.array([1.7]))
    expected = scipy.stats.norm.logpdf(1.7) + scipy.stats.norm.logpdf(seed_data, 1.7).sum()
    assert lp == pytest.approx(expected, rel=1e-12)
    assert grad[0] == pytest.approx(-1.7 + np.sum(seed_data - 1.7), rel=1e-12)


def test_mean_and_std_reuse_the_quadrature_rule(monkeypatch):
    """mean() and std() of interval-bounded parameters integrate with a 64-point Gauss-Hermite
    rule; hermegauss (an eigenproblem, costlier than a small fit) runs once per process, not per
    call, and the cached rule gives the same moments as a fresh one."""
    m = fv.Model()
    m.add("beta", m.param("p", lower=0.0, upper=1.0), a=3.0, b=8.0)
    fit = fv.fit(m, seed=0)
    first_mean, first_std = fit.mean()["p"], fit.std()["p"]

    def refuse(points):
        raise AssertionError("hermegauss called again")

    monkeypatch.setattr(np.polynomial.hermite_e, "hermegauss", refuse)
    assert fit.mean()["p"] == first_mean and fit.std()["p"] == first_std
    monkeypatch.undo()
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    mu, sd = fit.unconstrained_mean()[0], np.sqrt(fit.unconstrained_cov()[0, 0])
    expected = scipy.special.expit(mu + sd * nodes) @ (weights / weights.sum())
    assert first_mean == pytest.approx(expected, rel=1e-12)
