"""fv.fit_sharded: one model whose rows are sharded, fitted with the shards' gradients summed in
shard order: the exact posterior of a conjugate model, the unsharded fit's answer, priors counted
once, a Dask fit bit-identical to the in-process one, and errors that name the shard or argument.

The cluster tests share one LocalCluster of 2 worker processes (one thread each), as the issue
asks; they are skipped without dask's distributed. The in-process tests (client=None) need no Dask.
"""

import subprocess
import sys
import textwrap
import warnings

import fastvi as fv
import numpy as np
import pytest
from fastvi import _sharded_workers

# ---- models ---------------------------------------------------------------------------------------


def build_normal(x, prior_scale=1.0):
    """w ~ Normal(0, prior_scale), x_i ~ Normal(w, 1): conjugate."""
    model = fv.Model()
    w = model.param("w")
    model.add("normal", w, loc=0.0, scale=prior_scale)
    model.add("normal", x, loc=w, scale=1.0)
    return model


def build_strong_prior(x):
    return build_normal(x, prior_scale=0.2)


def exact_normal(x, prior_scale=1.0):
    """The posterior mean and sd of build_normal on all of x."""
    precision = 1.0 / prior_scale**2 + x.size
    return x.sum() / precision, 1.0 / np.sqrt(precision)


def build_regression(data):
    """y ~ Normal(alpha + X beta, sigma) with priors on every parameter (sigma lower-bounded: its
    log-Jacobian must be counted once too)."""
    X, y = data
    model = fv.Model()
    alpha, beta = model.param("alpha"), model.param("beta", shape=X.shape[1])
    sigma = model.param("sigma", lower=0.0)
    model.add("normal", alpha, loc=0.0, scale=5.0)
    model.add("normal", beta, loc=0.0, scale=2.0)
    model.add("half_normal", sigma, scale=2.0)
    model.add("normal_id_glm", y, X=X, alpha=alpha, beta=beta, scale=sigma)
    return model


def build_logistic(data):
    X, y = data
    model = fv.Model()
    alpha, beta = model.param("alpha"), model.param("beta", shape=X.shape[1])
    model.add("normal", alpha, loc=0.0, scale=2.5)
    model.add("normal", beta, loc=0.0, scale=2.5)
    model.add("bernoulli_logit_glm", y, X=X, alpha=alpha, beta=beta)
    return model


def _normal_data(n=90, seed=42):
    return np.random.default_rng(seed).normal(2.0, 1.0, size=n)


def _regression_data(n=120, k=2, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    y = 0.5 + X @ rng.normal(size=k) + rng.normal(scale=0.7, size=n)
    return X, y


def _split(data, parts):
    """Row shards of an array or an (X, y) pair."""
    if isinstance(data, tuple):
        return [tuple(part) for part in zip(*(np.array_split(a, parts) for a in data))]
    return np.array_split(data, parts)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---- (1) a conjugate model in 3 shards: the exact posterior, and fv.fit's answer --------------------

# Tolerances. The posterior is Gaussian, so the Laplace approximation that preconditions the fit is
# exact, q starts at the optimum, and the sticking-the-landing gradient has zero variance there:
# what is left is Adam's jitter, averaged over 1,100+ iterates (measured over 5 seeds and both
# families: at most 6e-4 sd off in the mean and 0.03 % in the sd). 0.02 posterior sd in the mean
# and 2 % in the sd leave room for other seeds and machines while failing for a real error: the
# prior counted in each of the 3 shards would move the mean by 0.4 sd here (sum(x) / 93 instead of
# / 91).
MEAN_TOL_SD = 0.02
SD_RTOL = 0.02


@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
def test_conjugate_model_in_three_shards_on_dask_matches_the_exact_posterior(client, family):
    x = _normal_data()
    mean, sd = exact_normal(x)
    fit = fv.fit_sharded(build_normal, _split(x, 3), client=client, family=family, seed=1)
    assert fit.converged, fit.message
    assert fit.options["shards"] == 3 and fit.options["where"] == "dask"
    assert abs(fit.mean()["w"] - mean) < MEAN_TOL_SD * sd
    assert abs(fit.std()["w"] / sd - 1) < SD_RTOL
    # fv.fit on the whole data: the same answer (each within the tolerance of the exact one, so
    # within twice it of each other)
    whole = fv.fit(build_normal(x), family=family, seed=1)
    assert abs(fit.mean()["w"] - whole.mean()["w"]) < 2 * MEAN_TOL_SD * sd
    assert abs(fit.std()["w"] / whole.std()["w"] - 1) < 2 * SD_RTOL
    # a usable Approximation: draws, summary, PSIS diagnostic from the sharded log density
    draws = fit.sample(2000, seed=0)["w"]
    assert abs(draws.mean() - mean) < 0.1 * sd
    assert fit.khat is not None and fit.khat < 0.5 and fit.status.use == "q"
    assert "w" in str(fv.summary(fit))


def test_conjugate_model_in_process_matches_the_exact_posterior():
    x = _normal_data()
    mean, sd = exact_normal(x)
    fit = fv.fit_sharded(build_normal, _split(x, 3), seed=0)
    assert fit.converged and fit.options["where"] == "in-process"
    assert abs(fit.mean()["w"] - mean) < MEAN_TOL_SD * sd
    assert abs(fit.std()["w"] / sd - 1) < SD_RTOL


# ---- (2) Dask and in-process: the same result, bit for bit -----------------------------------------


@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
def test_dask_result_is_bit_identical_to_in_process(client, family):
    shards = _split(_regression_data(), 3)
    kwargs = dict(family=family, seed=5, steps=300, tol=None, draws=2, psis_draws=200)
    on_dask = fv.fit_sharded(build_regression, shards, client=client, **kwargs)
    here = fv.fit_sharded(build_regression, shards, **kwargs)
    np.testing.assert_array_equal(on_dask.phi, here.phi)
    np.testing.assert_array_equal(on_dask.elbo, here.elbo)
    np.testing.assert_array_equal(on_dask.psis.log_ratios, here.psis.log_ratios)
    assert on_dask.steps == here.steps == 300 and not on_dask.converged  # tol=None: fixed steps
    for name, value in on_dask.mean().items():
        np.testing.assert_array_equal(value, here.mean()[name])


def test_the_draws_do_not_depend_on_the_number_of_shards():
    # the same data in 1, 2 or 4 shards: the same draws at every step, the same sums up to rounding
    data = _regression_data()
    kwargs = dict(seed=2, steps=200, tol=None, psis_draws=0)
    fits = [fv.fit_sharded(build_regression, _split(data, m), **kwargs) for m in (1, 2, 4)]
    for other in fits[1:]:
        np.testing.assert_allclose(other.phi, fits[0].phi, rtol=1e-8, atol=1e-10)


# ---- (3) logistic regression in 2 shards against fv.fit of the whole data ----------------------------


def test_logistic_regression_in_two_shards_matches_the_unsharded_fit(client):
    rng = np.random.default_rng(3)
    n, k = 600, 3
    X = rng.normal(size=(n, k))
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + X @ np.array([1.0, -0.5, 0.25]))))).astype(float)
    whole = fv.fit(build_logistic((X, y)), family="fullrank", seed=0)
    fit = fv.fit_sharded(build_logistic, _split((X, y), 2), client=client, family="fullrank", seed=0)
    assert whole.converged and fit.converged, fit.message
    sd = np.concatenate([np.atleast_1d(v) for v in whole.std().values()])
    diff = np.concatenate([np.atleast_1d(fit.mean()[n] - whole.mean()[n]) for n in whole.mean()])
    assert np.all(np.abs(diff) < 0.1 * sd), diff / sd
    sd_ratio = np.concatenate([np.atleast_1d(fit.std()[n] / whole.std()[n]) for n in whole.std()])
    assert np.all(np.abs(sd_ratio - 1) < 0.1), sd_ratio


# ---- (4) priors (and log-Jacobians) counted once ----------------------------------------------------


def test_sharded_log_density_equals_the_whole_models():
    # at random points, the sum over 3 shards equals the unsharded model's log density and gradient:
    # counting the priors and sigma's log-Jacobian per shard would add 2 x (prior + Jacobian)
    data = _regression_data()
    backend = _sharded_workers._InProcess(build_regression, _split(data, 3), threads=1)
    density = _sharded_workers._ShardedDensity(backend, _sharded_workers._check_shards(backend.infos()))
    zeta = np.random.default_rng(0).normal(size=(4, 6))
    lp, grad = density.batch(zeta)
    lp_whole, grad_whole = build_regression(data).log_density(zeta)
    np.testing.assert_allclose(lp, lp_whole, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_whole, rtol=1e-10, atol=1e-10)


def test_a_strong_prior_is_counted_once():
    # prior sd 0.2 (precision 25) and 30 rows: posterior sd 1/sqrt(55) = 0.135; counted in each of
    # 3 shards it would be 1/sqrt(105) = 0.098, 27 % smaller, and the mean 48 % smaller
    x = _normal_data(30)
    mean, sd = exact_normal(x, prior_scale=0.2)
    fit = fv.fit_sharded(build_strong_prior, _split(x, 3), seed=0)
    assert fit.converged
    assert abs(fit.mean()["w"] - mean) < MEAN_TOL_SD * sd
    assert abs(fit.std()["w"] / sd - 1) < SD_RTOL


# ---- (5) errors -------------------------------------------------------------------------------------


def build_or_fail(x):
    if x is None:
        raise ValueError("no rows for this shard")
    return build_normal(x)


def test_a_failing_build_names_the_shard(client):
    x = _normal_data()
    with pytest.raises(RuntimeError, match=r"shard 1 failed to build: ValueError: no rows for this shard") as info:
        fv.fit_sharded(build_or_fail, [x[:40], None, x[40:]], client=client)
    assert isinstance(info.value.__cause__, ValueError)
    assert "Traceback on the worker" in str(info.value)


def test_a_failing_build_names_the_shard_in_process():
    with pytest.raises(RuntimeError, match="shard 2 failed to build") as info:
        fv.fit_sharded(build_or_fail, [_normal_data(), _normal_data(), None])
    assert isinstance(info.value.__cause__, ValueError)


def test_build_must_return_a_model():
    with pytest.raises(RuntimeError, match="shard 0 failed to build: TypeError: build.* must return a fastvi.Model"):
        fv.fit_sharded(lambda x: x, [1.0, 2.0])


def build_shaped_by_data(x):
    """A latent value per row: the parameters differ between shards of different sizes."""
    model = fv.Model()
    z = model.param("z", shape=x.size)
    model.add("normal", z)
    model.add("normal", x, loc=z, scale=1.0)
    return model


def test_shards_with_other_parameters_are_refused():
    x = _normal_data(10)
    with pytest.raises(
        ValueError, match=r"shard 1's parameters differ from shard 0's.*'z': shape \(6,\) against \(4,\)"
    ):
        fv.fit_sharded(build_shaped_by_data, [x[:4], x[4:]])


def build_prior_from_data(x):
    """A prior centred on the shard's own mean: not the same prior in every shard."""
    model = fv.Model()
    w = model.param("w")
    model.add("normal", w, loc=float(x.mean()), scale=1.0)
    model.add("normal", x, loc=w, scale=1.0)
    return model


def test_shards_with_other_priors_are_refused():
    x = _normal_data()
    with pytest.raises(ValueError, match="shard 1's priors have another log density than shard 0's"):
        fv.fit_sharded(build_prior_from_data, [x[:40], x[40:]])


def build_with_factor(x):
    model = build_normal(x)
    model.factor(-0.5 * model.params["w"] ** 2, name="extra")
    return model


def test_model_factor_terms_are_refused():
    with pytest.raises(ValueError, match="shard 0: factor 'extra' was added with model.factor"):
        fv.fit_sharded(build_with_factor, [_normal_data(), _normal_data()])


def test_an_evaluation_failure_names_the_shard(monkeypatch):
    evaluate = _sharded_workers._Shard.evaluate

    def failing(self, zeta):
        if self.index == 1:
            try:
                raise FloatingPointError("boom")
            except FloatingPointError as e:
                return _sharded_workers._Failure(e, "worker traceback here")
        return evaluate(self, zeta)

    monkeypatch.setattr(_sharded_workers._Shard, "evaluate", failing)
    with pytest.raises(RuntimeError, match="shard 1 failed to evaluate its log density: FloatingPointError: boom"):
        fv.fit_sharded(build_normal, [_normal_data(), _normal_data()])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"family": "lowrank"}, ValueError, "family must be 'meanfield' or 'fullrank'"),
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"steps": 1.5}, TypeError, "steps must be an int"),
        ({"draws": 0}, ValueError, "draws must be >= 1"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"tol": -1.0}, ValueError, "tol must be >= 0"),
        ({"gradient": "exact"}, ValueError, "gradient must be one of"),
        ({"precondition": "laplace"}, ValueError, "precondition must be one of"),
        ({"average": 1}, TypeError, "average must be True or False"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
        ({"psis_draws": -1}, ValueError, "psis_draws must be >= 0"),
        ({"client": object()}, TypeError, "client must be a distributed.Client"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, error, match):
    if "client" in kwargs:
        pytest.importorskip("distributed")
    with pytest.raises(error, match=match):
        fv.fit_sharded(build_normal, [_normal_data()], **kwargs)


def test_build_and_shards_are_checked():
    with pytest.raises(TypeError, match="build must be callable"):
        fv.fit_sharded("build", [1])
    with pytest.raises(TypeError, match="shards must be a list"):
        fv.fit_sharded(build_normal, "abc")
    with pytest.raises(TypeError, match="shards must be a list"):
        fv.fit_sharded(build_normal, 3)
    with pytest.raises(ValueError, match="shards is empty"):
        fv.fit_sharded(build_normal, [])


def test_without_averaging_the_fit_stops_at_convergence():
    fit = fv.fit_sharded(build_normal, _split(_normal_data(), 2), average=False, psis_draws=0)
    assert fit.converged and fit.averaged_steps == 0 and fit.steps == fit.converged_step


def test_unconverged_fit_says_so_and_warns():
    with pytest.warns(fv.ConvergenceWarning, match="did not converge"):
        fit = fv.fit_sharded(build_normal, [_normal_data()], steps=150, precondition=None, psis_draws=0)
    assert not fit.converged and "not converged" in fit.message


def test_ctrl_c_returns_the_state_reached(monkeypatch):
    # Ctrl-C (a KeyboardInterrupt while the client waits for the shards) at the 301st evaluation:
    # the fit returns what it had, says so and warns; no PSIS (its draws would need the shards)
    batch = _sharded_workers._ShardedDensity.batch

    def interrupted(self, zeta):
        if self.evaluations == 300:
            raise KeyboardInterrupt
        return batch(self, zeta)

    monkeypatch.setattr(_sharded_workers._ShardedDensity, "batch", interrupted)
    with pytest.warns(fv.ConvergenceWarning, match="interrupted at step"):
        fit = fv.fit_sharded(build_normal, _split(_normal_data(), 2), precondition=None)
    assert fit.interrupted and not fit.converged and fit.psis is None
    assert fit.steps == 300 and "interrupted" in fit.message
    assert np.isfinite(fit.mean()["w"])


def test_the_result_refuses_run_psis_but_pickles():
    import pickle

    fit = fv.fit_sharded(build_normal, _split(_normal_data(), 2), seed=0)
    with pytest.raises(RuntimeError, match="run_psis needs the log density of every shard"):
        fit.run_psis()
    again = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(again.sample(5, seed=1)["w"], fit.sample(5, seed=1)["w"])
    assert again.mean(importance="psis")["w"] == pytest.approx(fit.mean()["w"], abs=0.05)


# ---- Dask is optional --------------------------------------------------------------------------------


def test_without_dask_fit_sharded_runs_in_process_and_says_how_to_install():
    code = """
        import sys
        sys.modules["distributed"] = None  # as if not installed: importing it raises ImportError
        sys.modules["dask"] = None
        import numpy as np, fastvi as fv
        def build(x):
            m = fv.Model()
            w = m.param("w")
            m.add("normal", w)
            m.add("normal", x, loc=w)
            return m
        print(fv.fit_sharded(build, [np.ones(3), np.ones(2)], steps=200, tol=None, psis_draws=0).steps)
        try:
            fv.fit_sharded(build, [np.ones(3)], client=object())
        except ImportError as e:
            print(e)
        """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "200"
    assert "pip install fastvi[dask]" in out.stdout
