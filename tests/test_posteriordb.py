"""Accuracy against posteriordb reference posteriors: a fast subset of bench/accuracy.py.

The models are tests/posteriors.py, the references the in-repo copy in tests/data/posteriordb.
The tolerances are the accuracy issue's: with default settings (only the seed set), full-rank means
within 0.1 reference sd and sds within 10 % of the reference, on the posteriors that are close to
Gaussian. Mean-field is held to what it should do on such a posterior: the right means, and sds
shrunk by the mean-field factor the reference covariance predicts (the file's MF-sd ratio), never
inflated.

The engine's defaults do not meet every target yet (bench/README.md, "Accuracy against
posteriordb", has the results; docs/performance-notes.md the diagnosis). Those cases are listed in
KNOWN_MISSES and marked xfail(strict=True): they still run, and the day a change makes one pass,
the suite fails with XPASS so that the entry gets removed and the target is locked in. Every fit
takes well under a second; the module runs in about 16 s on a shared 2-core machine.
"""

import math
import subprocess
import sys
import warnings
from pathlib import Path

import fastvi as fv
import numpy as np
import posteriors as P  # tests/posteriors.py (pytest puts tests/ on sys.path)
import pytest

MEAN_TOL = 0.1  # |mean − reference mean| <= 0.1 reference sd
SD_TOL = 0.10  # |sd / reference sd − 1| <= 10 %
MF_SHRINK_TOL = 0.2  # mean-field: |worst log(sd / ref sd) − log(MF-sd ratio)| <= 0.2 (about ±20 %;
# at defaults the largest deviation over seeds 0-4 is 0.154, nes2000)

GAUSSIAN = [n for n in P.NAMES if n not in P.NOT_GAUSSIAN]

# Cases that miss the targets with default settings, with the reason. Each is marked
# xfail(strict=True): the day a change makes one pass, the suite fails with XPASS so the entry gets
# removed and the target locked in. (Before Laplace preconditioning every full-rank case was here.)
KNOWN_MISSES = {
    ("fullrank", "mesquite-logmesquite"): "the KL-optimal Gaussian's sigma sd is itself ~0.90x the reference: "
    "at the edge of the 10 % target",
}


def _cases(kind, names):
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[(kind, n)]))
        if (kind, n) in KNOWN_MISSES
        else n
        for n in names
    ]


def _fit_and_compare(name, family, seed=0):
    model, targets, info = P.build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)  # unconverged fits are judged by accuracy
        approx = fv.fit(model, family=family, seed=seed)
    return P.compare(approx, targets, info), info


def _describe(rows):
    return "; ".join(f"{r.key}: mean err {r.mean_err:+.3f} sd, sd ratio {r.sd / r.ref_sd:.3f}" for r in rows)


# ---- the data and the models ----------------------------------------------------------------


def test_in_repo_copy_has_every_posterior_and_the_licence():
    assert (P.DATA_DIR / "LICENCE.md").read_text().startswith("BSD 3-Clause License")
    assert len(P.NAMES) == 12
    for name in P.NAMES:
        model, targets, info = P.build(name)  # raises if a target has no reference
        assert info["name"] == name and info["n_draws"] == 10_000
        compared = {k for k in targets if not k.startswith("log(") and not k.startswith("theta_trans")}
        assert compared == set(info["reference"]), name  # every reference parameter is compared


@pytest.mark.parametrize("name", GAUSSIAN)
def test_model_mode_matches_reference_means(name):
    """The models are right, independently of VI: on these near-Gaussian posteriors the mode of
    fastvi's log density sits within 0.1 reference sd of the reference mean for every location
    parameter (regression coefficients; the transformed data are rebuilt correctly)."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    model, targets, info = P.build(name)

    def f(z):
        lp, g = model.log_density(z)
        return -lp, -g

    z = np.zeros(model.dim)
    for _ in range(3):
        z = scipy_optimize.minimize(
            f, z, jac=True, method="L-BFGS-B", options=dict(maxiter=50_000, ftol=1e-15, gtol=1e-10, maxcor=30)
        ).x
    errors = {}
    for key, (pname, index) in targets.items():
        p = model.params[pname]
        if p.constrained:
            continue
        ref_mean, ref_sd = P.reference_moments(info, key)
        errors[key] = (z[p.offset + (index or 0)] - ref_mean) / ref_sd
    assert errors and max(abs(e) for e in errors.values()) < 0.1, errors


@pytest.mark.parametrize("name", ["eight_schools-eight_schools_noncentered", "eight_schools-eight_schools_centered"])
def test_eight_schools_log_density_matches_the_stan_model(name):
    """The hierarchical models against the Stan program written out with scipy (log density
    differences between random points, so constants cancel; log tau's Jacobian included)."""
    stats = pytest.importorskip("scipy.stats")
    model, _, info = P.build(name)
    y, s = np.asarray(info["data"]["y"], float), np.asarray(info["data"]["sigma"], float)
    rng = np.random.default_rng(0)
    zeta = rng.normal(0.0, 1.5, size=(model.dim, 5))
    lp, _ = model.log_density(zeta)
    values = model.constrain(zeta)
    mu, tau = values["mu"], values["tau"]
    expect = stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5) + np.log(tau)
    if name.endswith("noncentered"):
        raw = values["theta_trans"]
        theta = mu[:, None] + tau[:, None] * raw
        np.testing.assert_allclose(values["theta"], theta, rtol=1e-12)
        expect = expect + stats.norm.logpdf(raw).sum(1)
    else:
        theta = values["theta"]
        expect = expect + stats.norm.logpdf(theta, mu[:, None], tau[:, None]).sum(1)
    expect = expect + stats.norm.logpdf(y, theta, s).sum(1)
    np.testing.assert_allclose(lp - lp[0], expect - expect[0], atol=1e-9)


# ---- full-rank: the accuracy target -----------------------------------------------------------


@pytest.mark.parametrize("name", _cases("fullrank", GAUSSIAN))
def test_fullrank_defaults_meet_the_target(name):
    rows, _ = _fit_and_compare(name, "fullrank")
    bad = [r for r in rows if abs(r.mean_err) > MEAN_TOL or abs(r.sd / r.ref_sd - 1) > SD_TOL]
    assert not bad, _describe(bad)


# ---- mean-field: the honest behaviour ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    _cases(
        "mf-sds",
        [
            "sblri-blr",
            "sblrc-blr",
            "kidiq-kidscore_momiq",
            "kidiq-kidscore_interaction",
            "mesquite-logmesquite",
            "arK-arK",
            "nes2000-nes",
            "earnings-logearn_interaction",
            "earnings-earn_height",
            "kilpisjarvi_mod-kilpisjarvi",
        ],
    ),
)
def test_meanfield_sds_shrink_as_predicted(name):
    """Mean-field under-disperses, and by the predicted amount: the worst log sd ratio is the log of
    the file's MF-sd ratio (the KL-optimal mean-field sd for a Gaussian with the reference
    covariance) within MF_SHRINK_TOL, and no sd exceeds the reference by more than 10 %."""
    rows, info = _fit_and_compare(name, "meanfield")
    expected = math.log(P.mf_sd_ratio(info))
    worst = min(r.log_sd_ratio for r in rows)
    assert abs(worst - expected) <= MF_SHRINK_TOL, f"worst log sd ratio {worst:+.3f}, expected {expected:+.3f}"
    inflated = [r for r in rows if r.sd / r.ref_sd > 1 + SD_TOL]
    assert not inflated, _describe(inflated)


@pytest.mark.parametrize("name", _cases("mf-means", ["sblri-blr", "sblrc-blr", "kidiq-kidscore_momiq", "arK-arK"]))
def test_meanfield_means_are_right(name):
    """On a Gaussian posterior the KL-optimal mean-field Gaussian has the exact means."""
    rows, _ = _fit_and_compare(name, "meanfield")
    bad = [r for r in rows if abs(r.mean_err) > MEAN_TOL]
    assert not bad, _describe(bad)


# ---- the benchmark script itself --------------------------------------------------------------


def test_accuracy_script_prints_the_table():
    # run as a script (the tests import nothing from bench/; bench imports these models from tests/)
    script = Path(__file__).resolve().parents[1] / "bench" / "accuracy.py"
    args = ["--only", "sblri", "--families", "meanfield", "fullrank", "--markdown"]
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "| posterior | family |" in out
    assert out.count("| sblri-blr |") == 2
