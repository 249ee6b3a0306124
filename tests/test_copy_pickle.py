"""Copies and pickles of models, parameters, expressions and approximations are independent
objects that behave exactly like the originals (the model is rebuilt from its build log)."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import fastvi as fv
import numpy as np
import pytest


def _model():
    """A model that exercises every kind of build step: bounded parameters, binary and unary
    nodes, X @ v, indexing, sum, a deterministic and factors."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    group = rng.integers(0, 4, size=40)
    y = (rng.random(40) < 0.5).astype(float)
    m = fv.Model()
    beta = m.param("beta", shape=3)
    tau = m.param("tau", lower=0.0)
    a = m.param("a", shape=4)
    p = m.param("p", lower=0.0, upper=1.0)
    m.add("normal", beta, loc=0.0, scale=2.0)
    m.add("half_normal", tau, scale=1.0)
    m.add("normal", a, loc=0.0, scale=1.0, name="group effects")
    m.add("beta", p, a=2.0, b=2.0)
    eta = X @ beta + tau * a[group] / np.full(40, 2.0) - 0.1 * fv.exp(-fv.sum(beta)) + fv.log1p_exp(-a[group]) * p
    m.deterministic("eta", eta)
    m.add("bernoulli_logit", y, logit=eta)
    return m


def _fit(m, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        return fv.fit(m, steps=kwargs.pop("steps", 1500), seed=kwargs.pop("seed", 4), **kwargs)


def _same_model(m1, m2):
    assert m2 is not m1 and m2._core is not m1._core
    assert m2.dim == m1.dim
    assert list(m2.params) == list(m1.params) and m2.factors == m1.factors
    assert list(m2.deterministics) == list(m1.deterministics)
    for name, p in m1.params.items():
        q = m2.params[name]
        assert (q.shape, q.lower, q.upper, q.offset, q.row) == (p.shape, p.lower, p.upper, p.offset, p.row)
        assert q._model is m2
    zeta = np.random.default_rng(1).normal(size=(m1.dim, 5))
    lp1, g1 = m1.log_density(zeta)
    lp2, g2 = m2.log_density(zeta)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(g1, g2)
    c1, c2 = m1.constrain(zeta), m2.constrain(zeta)
    for name in c1:
        np.testing.assert_array_equal(c1[name], c2[name])


def _same_draws(a1, a2, n=100, seed=3):
    d1, d2 = a1.sample(n, seed=seed), a2.sample(n, seed=seed)
    assert list(d1) == list(d2)
    for name in d1:
        np.testing.assert_array_equal(d1[name], d2[name])


# ---- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_model_round_trip(how):
    m = _model()
    m2 = {"pickle": lambda x: pickle.loads(pickle.dumps(x)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how](m)
    _same_model(m, m2)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_copies_are_independent(how):
    m = _model()
    fit = _fit(m, steps=300)
    dim, factors = m.dim, m.factors
    m2 = how(m)
    m2.param("extra", shape=2)
    m2.add("normal", m2.params["extra"], loc=0.0)
    assert m.dim == dim and "extra" not in m.params and m.factors == factors
    assert m2.dim == dim + 2
    draws = fit.sample(10, seed=0)  # the original's fit is unaffected
    assert draws["beta"].shape == (10, 3)
    # and the other way round
    m.param("late")
    assert "late" not in m2.params and m2.dim == dim + 2


def test_copy_keeps_the_data_it_was_built_with():
    x = np.array([0.5, 1.5, 2.5])
    m = fv.Model()
    w = m.param("w")
    m.add("normal", x, loc=w)
    x[:] = 100.0  # the caller overwrites their array after building
    m2 = copy.deepcopy(m)
    np.testing.assert_array_equal(m2.log_density(np.array([0.3]))[0], m.log_density(np.array([0.3]))[0])


def test_pickled_model_fits_to_the_identical_result():
    m = _model()
    m2 = pickle.loads(pickle.dumps(m))
    a1, a2 = _fit(m), _fit(m2)
    np.testing.assert_array_equal(a1.phi, a2.phi)
    np.testing.assert_array_equal(a1.elbo, a2.elbo)


def test_model_subclass_attributes_survive():
    class Tagged(fv.Model):
        pass

    m = Tagged()
    m.param("w")
    m.note = {"source": "test"}
    m2 = copy.deepcopy(m)  # (a class local to a test cannot be pickled by reference)
    assert type(m2) is Tagged and m2.note == {"source": "test"} and m2.note is not m.note


# ---- parameters and expressions -----------------------------------------------------------------


def test_param_pickled_with_its_model_is_the_models_own():
    m = _model()
    m2, beta2 = pickle.loads(pickle.dumps((m, m.params["beta"])))
    assert beta2 is m2.params["beta"]
    m3, beta3 = copy.deepcopy((m, m.params["beta"]))
    assert beta3 is m3.params["beta"] and m3 is not m


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_param_and_expression_alone(how):
    m = _model()
    beta = m.params["beta"]
    expr = 2.0 * beta + 1.0
    f = {"pickle": lambda x: pickle.loads(pickle.dumps(x)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how]
    beta2, expr2 = f(beta), f(expr)
    assert isinstance(beta2, fv.Param) and beta2.name == "beta" and beta2._model is not m
    assert beta2 is beta2._model.params["beta"]
    assert expr2._model is not m and expr2.shape == (3,) and expr2._label == expr._label
    # the copied expression is usable in its own (copied) model
    m2 = expr2._model
    m2.add("normal", np.zeros(3), loc=expr2, name="on the copy")
    assert m2.factors[-1] == ("on the copy", "normal") and len(m.factors) == len(m2.factors) - 1
    z = np.zeros(m.dim)
    assert m2.log_density(z)[0] != m.log_density(z)[0]


# ---- approximations -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["meanfield", "fullrank", "lowrank"])
def test_approximation_pickle_round_trip(family):
    a = _fit(_model(), family=family, steps=600)
    b = pickle.loads(pickle.dumps(a))
    assert b.model is not a.model and b.family == a.family and b.rank == a.rank
    _same_draws(a, b)
    for got, want in ((b.mean(), a.mean()), (b.std(), a.std())):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(b.unconstrained_cov(), a.unconstrained_cov())
    assert b.options == a.options and b.steps == a.steps and b.message == a.message
    assert (b.laplace is None) == (a.laplace is None)
    if a.laplace is not None:
        np.testing.assert_array_equal(b.laplace.mode, a.laplace.mode)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_approximation_copies_are_independent(how):
    a = _fit(_model(), steps=300)
    b = how(a)
    assert b.model is not a.model and b.phi is not a.phi
    _same_draws(a, b)
    b.model.param("extra")
    a.sample(5)  # the original's model did not change
    with pytest.raises(RuntimeError, match="the model changed after this fit"):
        b.sample(5)


def test_approximation_and_model_pickled_together_share_the_model():
    m = _model()
    a = _fit(m, steps=300)
    m2, a2 = pickle.loads(pickle.dumps((m, a)))
    assert a2.model is m2


def _run(code, tmp_path):
    """Runs `code` in a fresh interpreter that imports this fastvi."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fv.__file__)))
    script = f"import sys\nsys.path.insert(0, {package_root!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_pickle_loads_in_a_fresh_process(tmp_path):
    a = _fit(_model(), steps=600)
    (tmp_path / "fit.pkl").write_bytes(pickle.dumps(a))
    proc = _run(
        """
        import pickle, numpy as np
        a = pickle.load(open("fit.pkl", "rb"))
        np.savez("draws.npz", **a.sample(100, seed=3))
        np.savez("mean.npz", **a.mean())
        b = __import__("fastvi").fit(a.model, steps=600, seed=4)
        np.save("phi.npy", b.phi)
    """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    draws, mean = np.load(tmp_path / "draws.npz"), np.load(tmp_path / "mean.npz")
    for name, want in a.sample(100, seed=3).items():
        np.testing.assert_array_equal(draws[name], want)
    for name, want in a.mean().items():
        np.testing.assert_array_equal(mean[name], want)
    np.testing.assert_array_equal(np.load(tmp_path / "phi.npy"), a.phi)  # same model, same seed


_LAPLACE_KERNEL = """
import numpy as np, fastvi as fv

def laplace(y, loc, scale, params):
    z = y - loc
    return -np.log(2 * scale) - np.abs(z) / scale, {"loc": np.sign(z) / scale}

fv.register_kernel("pickle_test_laplace", ["y", "loc", "scale"], laplace, supports={"scale": "positive"},
                   defaults={"scale": 1.0})
"""


def test_python_kernel_must_be_registered_before_unpickling(tmp_path):
    exec(_LAPLACE_KERNEL, {})
    m = fv.Model()
    w = m.param("w")
    m.add("pickle_test_laplace", np.array([0.5, -1.0]), loc=w, name="robust likelihood")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(m))
    want = m.log_density(np.array([0.2]))[0]

    missing = _run('import pickle; pickle.load(open("model.pkl", "rb"))', tmp_path)
    assert missing.returncode != 0
    assert "kernel 'pickle_test_laplace'" in missing.stderr and "register it" in missing.stderr
    assert "factor 'robust likelihood'" in missing.stderr

    registered = _run(
        _LAPLACE_KERNEL
        + """
import pickle
m = pickle.load(open("model.pkl", "rb"))
print(repr(float(m.log_density(np.array([0.2]))[0])))
""",
        tmp_path,
    )
    assert registered.returncode == 0, registered.stderr
    assert float(registered.stdout) == want


# ---- a model changed after the fit --------------------------------------------------------------


@pytest.mark.parametrize("change", ["param", "factor"])
def test_fit_of_a_changed_model_refuses_to_sample(change):
    m = _model()
    a = _fit(m, steps=300)
    dim = m.dim
    if change == "param":
        m.param("late", shape=2)
    else:
        m.add("normal", m.params["tau"], loc=1.0)
    now = m.dim
    for call in (lambda: a.sample(10), a.mean, a.std):
        with pytest.raises(RuntimeError, match=rf"the model changed after this fit \(dim was {dim}, now {now}.*refit"):
            call()


def test_a_deterministic_added_after_the_fit_is_fine():
    m = _model()
    a = _fit(m, steps=300)
    m.deterministic("tau2", m.params["tau"] * m.params["tau"])
    draws = a.sample(50, seed=0)
    np.testing.assert_allclose(draws["tau2"], draws["tau"] ** 2)
