"""Results are finite or refused, Ctrl-C anywhere in a fit returns a state, and settings that would
once have exhausted memory are fine. Each test failed on main before the reliability work."""

import warnings

import fastvi as fv
import numpy as np
import pytest


def positive_model():
    m = fv.Model()
    s = m.param("s", lower=0.0)
    m.add("lognormal", np.array([0.5, 1.0, 2.0]), loc=0.0, scale=s)
    m.add("half_normal", s, scale=1.0)
    return m


def test_moments_that_overflow_are_refused_naming_the_parameter():
    fit = fv.fit(positive_model(), seed=0)
    assert np.all(np.isfinite(fit.mean()["s"]))
    fit.phi = fit.phi.copy()
    fit.phi[1] = 40.0  # log sd of q: a log-normal with sd e^40 has no finite mean
    with pytest.raises(FloatingPointError, match=r"mean\(\) is not finite for 's'"):
        fit.mean()
    with pytest.raises(FloatingPointError, match=r"std\(\) is not finite for 's'"):
        fit.std()
    with pytest.raises(FloatingPointError, match=r"sample\(1000\) is not finite for 's'"):
        fit.sample(1000)


def test_ctrl_c_during_the_mode_search_returns_the_starting_state():
    calls = []

    def fn(y, loc, params):
        calls.append(1)
        if len(calls) == 3:  # inside scipy's L-BFGS: the preconditioning step
            raise KeyboardInterrupt
        return -0.5 * (y - loc) ** 2, {"loc": y - loc}

    name = f"ctrl_c_in_mode_search_{id(fn)}"
    fv.register_kernel(name, ["y", "loc"], fn)
    m = fv.Model()
    w = m.param("w")
    m.add(name, np.array([1.0, 2.0]), loc=w)
    with pytest.warns(fv.ConvergenceWarning, match="interrupted during the mode search"):
        fit = fv.fit(m, seed=0)
    assert fit.interrupted and not fit.converged and fit.steps == 0
    assert fit.laplace is not None and not fit.laplace.ok
    assert np.all(np.isfinite(fit.phi))
    assert np.isfinite(fit.mean()["w"])


def test_steps_far_beyond_need_do_not_exhaust_memory():
    """steps=10**12 means "until converged": the ELBO history is not reserved for 10**12 steps."""
    x = np.random.default_rng(0).normal(1.0, 1.0, size=50)
    m = fv.Model()
    w = m.param("w")
    m.add("normal", x, loc=w, scale=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fv.ConvergenceWarning)
        fit = fv.fit(m, steps=10**12, seed=0)
    assert fit.converged and fit.steps < 100_000
    assert abs(fit.mean()["w"] - x.sum() / 50) < 0.05
