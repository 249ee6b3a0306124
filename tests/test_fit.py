"""Fits against exact answers, reproducibility, interruption and non-finite handling."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import fastvi as fv
import numpy as np
import pytest


def _seed_model(x):
    model = fv.Model()
    w = model.param("w")
    model.add("normal", w, loc=0.0, scale=1.0)
    model.add("normal", x, loc=w, scale=1.0)
    return model


@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_example_matches_the_exact_posterior(seed_data, family, seed):
    exact_mean, exact_sd = seed_data.sum() / 101, 1 / math.sqrt(101)
    approx = fv.fit(_seed_model(seed_data), family=family, steps=10_000, seed=seed)
    assert approx.converged
    assert abs(approx.mean()["w"] - exact_mean) < 0.05 * exact_sd
    assert abs(approx.std()["w"] / exact_sd - 1) < 0.03
    draws = approx.sample(4000, seed=1)["w"]
    assert draws.shape == (4000,)
    # 4,000 draws: the sample mean is within 4 standard errors of q's mean
    assert abs(draws.mean() - approx.mean()["w"]) < 4 * exact_sd / math.sqrt(4000)


def test_pymc_style_method_names(seed_data):
    model = _seed_model(seed_data)
    assert fv.fit(model, method="advi", steps=2000, tol=None).family == "meanfield"
    assert fv.fit(model, method="fullrank_advi", steps=2000, tol=None).family == "fullrank"


def test_constrained_moments_are_those_of_the_transformed_gaussian():
    # sigma ~ lognormal(0.3, 0.4) declared positive: log sigma = zeta is exactly Normal(0.3, 0.4)
    # (the lognormal's 1/sigma cancels the Jacobian), so q is exact and the constrained moments must
    # be the lognormal's: mean exp(m + s^2/2), sd sqrt(exp(s^2) - 1) * mean.
    model = fv.Model()
    sigma = model.param("sigma", lower=0.0)
    model.add("lognormal", sigma, loc=0.3, scale=0.4)
    approx = fv.fit(model, steps=10_000, seed=0)
    assert approx.unconstrained_mean()[0] == pytest.approx(0.3, abs=0.005)
    assert math.sqrt(approx.unconstrained_cov()[0, 0]) == pytest.approx(0.4, rel=0.01)
    mean = math.exp(0.3 + 0.4**2 / 2)
    assert approx.mean()["sigma"] == pytest.approx(mean, rel=0.01)
    assert approx.std()["sigma"] == pytest.approx(math.sqrt(math.expm1(0.4**2)) * mean, rel=0.02)


def test_same_seed_same_answer_and_different_seed_different_answer(seed_data):
    model = _seed_model(seed_data)
    a = fv.fit(model, steps=3000, seed=7, tol=None)
    b = fv.fit(model, steps=3000, seed=7, tol=None)
    c = fv.fit(model, steps=3000, seed=8, tol=None)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.elbo, b.elbo)
    assert not np.array_equal(a.phi, c.phi)


def test_tol_none_runs_every_step_and_records_the_elbo(seed_data):
    approx = fv.fit(_seed_model(seed_data), steps=1234, eval_every=100, tol=None)
    assert approx.steps == 1234 and not approx.converged
    assert approx.elbo.shape == (12,) and np.all(np.isfinite(approx.elbo))
    np.testing.assert_array_equal(approx.elbo_steps, np.arange(100, 1201, 100))
    # the ELBO of this conjugate model at the optimum is log p(x), the log evidence
    x = seed_data
    n = len(x)
    log_evidence = (
        -0.5 * n * math.log(2 * math.pi) - 0.5 * math.log(n + 1) - 0.5 * (np.sum(x**2) - x.sum() ** 2 / (n + 1))
    )
    assert approx.elbo[-1] == pytest.approx(log_evidence, abs=0.05)


def test_unconverged_fit_warns(seed_data):
    with pytest.warns(fv.ConvergenceWarning, match="did not converge"):
        fv.fit(_seed_model(seed_data), steps=50)


def test_callback_sees_progress_and_can_stop_the_fit(seed_data):
    calls = []

    def callback(step, total, elbo, skipped):
        calls.append((step, total, elbo, skipped))
        return step < 300

    with pytest.warns(fv.ConvergenceWarning, match="interrupted"):
        approx = fv.fit(_seed_model(seed_data), steps=10_000, eval_every=100, callback=callback)
    assert approx.interrupted and approx.steps == 300
    assert [c[0] for c in calls] == [100, 200, 300]
    assert all(c[1] == 10_000 and c[3] == 0 for c in calls)


def test_callback_exception_propagates(seed_data):
    def callback(step, total, elbo, skipped):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fv.fit(_seed_model(seed_data), steps=1000, callback=callback)


def test_ctrl_c_returns_the_state_reached_so_far(seed_data):
    # A real SIGINT while the fit runs in C++ with the GIL released: the fit must return (not
    # raise) with interrupted=True and finite parameters that have moved towards the posterior.
    model = fv.Model()
    w = model.param("w", shape=(200,))
    model.add("normal", w, loc=0.0, scale=1.0)
    model.add("normal", np.tile(seed_data, (200, 1)).T, loc=w, scale=1.0)
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(fv.ConvergenceWarning, match="interrupted"):
            approx = fv.fit(model, steps=10_000_000, tol=None, draws=4)
    finally:
        timer.cancel()
    assert approx.interrupted and 0 < approx.steps < 10_000_000
    assert np.all(np.isfinite(approx.phi))
    assert np.all(np.abs(approx.mean()["w"] - seed_data.sum() / 101) < 0.5)


def test_non_finite_draws_are_skipped_and_reported_never_returned_as_nan():
    # An absurd initial scale (sd 400 in log sigma) makes exp(zeta) overflow or underflow for some
    # draws. Those steps are skipped, the step size is backed off, and the fit says what happened;
    # whatever state it ends in is finite, and its moments are finite numbers or refused with an
    # error naming the parameter, never inf or NaN.
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 2.0, size=50)
    model = fv.Model()
    sigma = model.param("sigma", lower=0.0)
    model.add("normal", y, loc=0.0, scale=sigma)
    with pytest.warns(fv.ConvergenceWarning, match="non-finite"):
        approx = fv.fit(model, steps=30_000, init_scale=400.0, seed=0)
    assert approx.n_skipped > 0 and approx.lr_reductions > 0
    assert not approx.converged and "non-finite" in approx.message
    assert np.all(np.isfinite(approx.phi))
    for moment in (approx.mean, approx.std):
        try:
            assert np.isfinite(moment()["sigma"])
        except FloatingPointError as err:
            assert "'sigma'" in str(err)


def test_hopeless_start_stops_with_a_message_and_finite_state():
    # Every draw overflows (sigma = 1e-300 makes (y / sigma)^2 infinite): the fit backs off the
    # step size, gives up after a bounded number of steps and says why; nothing is NaN.
    model = fv.Model()
    sigma = model.param("sigma", lower=0.0)
    model.add("normal", np.array([1.0, -1.0]), loc=0.0, scale=sigma)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        approx = fv.fit(model, steps=100_000, init={"sigma": 1e-300}, init_scale=1e-3)
    assert approx.steps < 1000 and not approx.converged
    assert "non-finite" in approx.message
    assert np.all(np.isfinite(approx.phi))
    assert any("non-finite" in str(w.message) for w in caught)


def test_result_does_not_depend_on_thread_count_across_processes(tmp_path):
    # OMP_NUM_THREADS is read when OpenMP starts, so compare two fresh processes.
    script = tmp_path / "fit.py"
    script.write_text(
        textwrap.dedent("""
        import sys, numpy as np, fastvi as fv
        rng = np.random.default_rng(1)
        y = rng.normal(size=(3000, 4)) @ np.ones(4) + rng.normal(size=3000)
        m = fv.Model()
        w = m.param("w", shape=(3000,))
        m.add("normal", w, loc=0.0, scale=1.0)
        m.add("normal", y, loc=w, scale=1.0)
        a = fv.fit(m, steps=300, draws=4, seed=3, tol=None)
        sys.stdout.write(a.phi.tobytes().hex())
    """)
    )
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        outs.append(
            subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout
        )
    assert outs[0] == outs[1] and len(outs[0]) > 0
