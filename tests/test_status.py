"""fit.status: the three separate answers (optimisation / shape / corrected results) and which
results to use."""

import warnings

import fastvi as fv
import numpy as np
import pytest
from fastvi import psis
from fastvi.status import status_of


def _normal_model():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w, loc=0, scale=1)
    m.add("normal", np.random.default_rng(42).normal(2.0, 1.0, 100), loc=w, scale=1)
    return m


def test_a_good_fit_says_use_q():
    fit = fv.fit(_normal_model(), seed=0)
    s = fit.status
    assert (s.optimisation, s.shape, s.use, s.corrected, s.ok) == ("converged", "good", "q", True, True)
    assert s.error_mean is not None and s.error_mean <= 0.05
    text = str(s)
    assert "optimisation: converged (estimated error" in text and "use:          q" in text
    assert "optimisation: converged" in str(fv.summary(fit))


def test_an_unconverged_fit_says_use_none_and_why():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fv.fit(_normal_model(), seed=0, steps=300)
    s = fit.status
    assert s.optimisation == "not converged" and s.use == "none" and not s.ok
    assert any("maximum number of steps" in r for r in s.reasons)


def test_without_psis_the_shape_is_unknown_and_says_how_to_check():
    fit = fv.fit(_normal_model(), seed=0, psis_draws=0)
    s = fit.status
    assert s.shape == "unknown" and s.khat is None and not s.corrected and s.use == "q"
    assert any("run_psis" in r for r in s.reasons)


@pytest.mark.parametrize(
    "khat, shape, use, corrected", [(0.3, "good", "q", True), (0.6, "fair", "psis", True), (0.9, "poor", "none", False)]
)
def test_shape_follows_khat(khat, shape, use, corrected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fv.fit(_normal_model(), seed=0)
    # (ESS 95 % of the draws: a high ESS, yet not a tails-only k-hat above 0.7, which needs ESS
    # >= 90 % -- so 0.9 gets 50 %)
    fit.psis.khat, fit.psis.ess = khat, (0.5 if khat > 0.7 else 0.95) * fit.psis.draws
    s = status_of(fit)
    assert (s.shape, s.use, s.corrected) == (shape, use, corrected)


def test_a_funnel_is_flagged_by_the_mode_search_and_the_shape():
    # centred hierarchical normal with few groups: the mode search finds no proper mode
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    m = fv.Model()
    mu, tau = m.param("mu"), m.param("tau", lower=0)
    theta = m.param("theta", shape=8)
    m.add("normal", mu, loc=0, scale=5)
    m.add("normal", tau, loc=0, scale=5)
    m.add("normal", theta, loc=mu, scale=tau)
    m.add("normal", y, loc=theta, scale=sigma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fv.fit(m, "fullrank", seed=0)
    s = fit.status
    assert not s.ok and s.use == "none"
    assert "no_mode" in s.mode
    assert any("funnel" in r for r in s.reasons)


@pytest.mark.parametrize(
    "khat, ess_fraction, shape",
    [
        (0.3, 0.95, "good"),
        (0.3, 0.6, "fair"),
        (0.45, 0.84, "fair"),
        (0.6, 0.99, "fair"),
        (0.8, 0.95, "fair"),
        (0.8, 0.5, "poor"),
    ],
)
def test_shape_needs_both_a_small_khat_and_a_high_ess(khat, ess_fraction, shape):
    # Non-centred eight schools, full-rank: k-hat 0.49 with ESS 48-59 %, tau 0.17 sd off: "fair", so
    # that status.use points to the PSIS-corrected results (0.08 sd off).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fv.fit(_normal_model(), seed=0)
    fit.psis.khat, fit.psis.ess = khat, ess_fraction * fit.psis.draws
    assert psis.shape(fit.psis) == shape == fit.status.shape
    if shape == "fair" and khat <= 0.5:
        assert any("ESS" in r for r in fit.status.reasons)
        assert "ESS below" in repr(fit)
