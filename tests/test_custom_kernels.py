"""Kernels written in Python (fv.register_kernel) and the finite-difference checker (fv.check_kernel).

Covers: the calling convention (array shapes, the params tuple, once per step), log densities
against scipy.stats, gradients through fv.check_kernel (and check_kernel failing on a wrong
gradient), fits that match the built-in kernel they imitate, non-element-wise kernels, expression
inputs, and every way registration, a kernel's return value or its function can go wrong.
"""

from __future__ import annotations

import copy
import gc
import itertools
import pickle
import warnings

import fastvi as fv
import numpy as np
import pytest
from scipy import stats

_ids = itertools.count()


def unique(prefix: str) -> str:
    """Registrations last for the process: every test that registers uses a fresh name."""
    return f"test_{prefix}_{next(_ids)}"


def laplace_fn(y, loc, scale, params):
    z = y - loc
    lp = -np.log(2 * scale) - np.abs(z) / scale
    grads = {"y": -np.sign(z) / scale, "loc": np.sign(z) / scale, "scale": (np.abs(z) / scale - 1) / scale}
    return lp, grads


def normal_fn(y, loc, scale, params):
    z = (y - loc) / scale
    lp = -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)
    return lp, {"y": -z / scale, "loc": z / scale, "scale": (z * z - 1) / scale}


@pytest.fixture(scope="module")
def laplace():
    name = unique("laplace")
    fv.register_kernel(
        name,
        ["y", "loc", "scale"],
        laplace_fn,
        supports={"scale": "positive"},
        defaults={"loc": 0.0, "scale": 1.0},
        doc="Laplace(y | loc, scale)",
    )
    return name


@pytest.fixture(scope="module")
def py_normal():
    name = unique("normal")
    fv.register_kernel(
        name,
        ["y", "loc", "scale"],
        normal_fn,
        supports={"scale": "positive"},
        defaults={"loc": 0.0, "scale": 1.0},
        doc="Normal(y | loc, scale), in Python",
    )
    return name


def laplace_ref(y, loc, scale):
    return stats.laplace.logpdf(y, loc, scale)


# ---- registration and the calling convention -------------------------------------------------------


def test_registered_kernel_is_listed_with_its_spec(laplace):
    spec = fv.kernels()[laplace]
    assert [i.name for i in spec.inputs] == ["y", "loc", "scale"]
    assert [i.support for i in spec.inputs] == ["real", "real", "positive"]
    assert [i.default for i in spec.inputs] == [None, 0.0, 1.0]
    assert spec.elementwise and spec.doc == "Laplace(y | loc, scale)"
    assert str(spec) == f"{laplace}(y | loc=0, scale=1): Laplace(y | loc, scale)"


def test_fn_sees_broadcast_arrays_with_a_trailing_draws_axis():
    seen = []

    def fn(y, loc, scale, params):
        seen.append(
            {
                "shapes": (y.shape, loc.shape, scale.shape),
                "params": params,
                "writeable": (y.flags.writeable, loc.flags.writeable, scale.flags.writeable),
                "values": (y.copy(), loc.copy(), scale.copy()),
            }
        )
        return normal_fn(y, loc, scale, params)

    name = unique("spy")
    fv.register_kernel(name, ["y", "loc", "scale"], fn, supports={"scale": "positive"}, defaults={"scale": 1.0})
    y = np.arange(6.0).reshape(2, 3)
    m = fv.Model()
    loc = m.param("loc", shape=(3,))
    scale = m.param("scale", lower=0.0)
    m.add(name, y, loc=loc, scale=scale)
    zeta = np.random.default_rng(0).normal(size=(4, 5))
    m.log_density(zeta)
    (call,) = seen
    # parameters: the factor's shape + (S,); data: the factor's shape + (1,)
    assert call["shapes"] == ((2, 3, 1), (2, 3, 5), (2, 3, 5))
    assert call["params"] == ("loc", "scale")
    assert call["writeable"] == (False, False, False)
    yv, locv, scalev = call["values"]
    np.testing.assert_array_equal(yv[..., 0], y)
    np.testing.assert_array_equal(locv, np.broadcast_to(zeta[:3][None], (2, 3, 5)))
    np.testing.assert_allclose(scalev, np.broadcast_to(np.exp(zeta[3]), (2, 3, 5)), rtol=1e-15)


def test_fn_is_called_once_per_step_with_the_whole_batch():
    calls = []

    def fn(y, loc, params):
        calls.append(y.shape)
        return -0.5 * (y - loc) ** 2, {"y": loc - y}

    name = unique("count")
    fv.register_kernel(name, ["y", "loc"], fn)
    m = fv.Model()
    w = m.param("w", shape=(2,))
    m.add(name, w, loc=1.0)
    # psis_draws=0: the PSIS diagnostic after the loop would call fn again, in batches of its draws
    approx = fv.fit(m, steps=300, draws=4, tol=None, seed=0, precondition=None, psis_draws=0)
    assert approx.steps == 300
    assert calls == [(2, 4)] * 300


def test_log_density_matches_scipy(laplace):
    x = np.random.default_rng(1).laplace(0.5, 2.0, size=20)
    m = fv.Model()
    loc = m.param("loc")
    scale = m.param("scale", lower=0.0)
    m.add(laplace, x, loc=loc, scale=scale)
    zeta = np.random.default_rng(2).normal(size=(2, 6))
    lp, _ = m.log_density(zeta)
    # scale = exp(zeta[1]), whose log-Jacobian is zeta[1]
    expected = [stats.laplace.logpdf(x, zeta[0, s], np.exp(zeta[1, s])).sum() + zeta[1, s] for s in range(6)]
    np.testing.assert_allclose(lp, expected, rtol=1e-13)


@pytest.mark.parametrize(
    "values,params,shape",
    [
        (None, None, ()),
        (None, None, (4,)),
        ({"y": np.linspace(-2, 2, 6).reshape(2, 3), "loc": [0.1, 0.2, 0.3]}, ("loc", "scale"), ()),
        ({"y": [0.3, -0.4]}, ("scale",), ()),
        ({"loc": 1.5, "scale": 0.7}, None, ()),
    ],
)
def test_check_kernel_passes_for_a_correct_python_kernel(laplace, values, params, shape):
    report = fv.check_kernel(laplace, values, params=params, shape=shape, draws=4, reference=laplace_ref)
    assert report.passed and report.reference_error < 1e-12
    assert set(report.inputs) == set(params or ("y", "loc", "scale"))
    assert f"check_kernel({laplace!r}): passed" in str(report)


def test_check_kernel_fails_on_a_wrong_gradient():
    def wrong(y, loc, scale, params):
        lp, grads = laplace_fn(y, loc, scale, params)
        grads["scale"] = grads["scale"] * 1.001  # a 0.1 % error
        return lp, grads

    name = unique("wrong_grad")
    fv.register_kernel(name, ["y", "loc", "scale"], wrong, supports={"scale": "positive"})
    with pytest.raises(AssertionError, match=r"gradient of scale at draw \d .*analytic .* numerical"):
        fv.check_kernel(name)
    report = fv.check_kernel(name, raise_on_failure=False)
    assert not report.passed
    assert report.inputs["y"].passed and report.inputs["loc"].passed and not report.inputs["scale"].passed
    assert report.inputs["scale"].max_rel_error == pytest.approx(1e-3, rel=1e-3)
    assert "FAILED" in str(report)


def test_check_kernel_fails_on_a_missing_gradient_and_a_wrong_log_density():
    name = unique("no_loc_grad")
    fv.register_kernel(name, ["y", "loc"], lambda y, loc, params: (-0.5 * (y - loc) ** 2, {"y": loc - y}))
    with pytest.raises(AssertionError, match="gradient of loc"):
        fv.check_kernel(name)
    fv.check_kernel(name, {"loc": 0.3}, params=("y",))  # y's gradient is right
    with pytest.raises(AssertionError, match="the reference says"):
        fv.check_kernel(name, {"loc": 0.3}, params=("y",), reference=lambda y, loc: stats.norm.logpdf(y, loc))


def test_check_kernel_on_builtin_kernels():
    for kernel, values in [
        ("normal", None),
        ("gamma", None),
        ("beta", {"y": [0.2, 0.9]}),
        ("poisson_log", {"y": [0.0, 3.0]}),
        ("binomial_logit", {"y": [1.0, 4.0], "trials": 5.0}),
        ("student_t", {"df": 3.5}),
    ]:
        report = fv.check_kernel(kernel, values, draws=3, seed=1)
        assert report.passed, str(report)


def test_check_kernel_validates_its_arguments(laplace):
    with pytest.raises(ValueError, match="unknown inputs"):
        fv.check_kernel(laplace, {"mu": 1.0})
    with pytest.raises(ValueError, match="unknown input 'mu'"):
        fv.check_kernel(laplace, params=("mu",))
    with pytest.raises(ValueError, match="cannot be a parameter"):
        fv.check_kernel("poisson_log", params=("y",))
    with pytest.raises(ValueError, match="input 'y' is not a parameter here and has no default"):
        fv.check_kernel(laplace, params=("loc",))
    with pytest.raises(ValueError, match="strictly inside"):
        fv.check_kernel(laplace, {"scale": -1.0})
    with pytest.raises(ValueError, match="draws"):
        fv.check_kernel(laplace, draws=0)
    with pytest.raises(ValueError, match="unknown kernel"):
        fv.check_kernel("no_such_kernel")


# ---- fits -------------------------------------------------------------------------------------------


def test_python_normal_fits_like_the_builtin_normal(py_normal):
    x = np.random.default_rng(3).normal(2.0, 1.0, size=50)
    fits = {}
    for kernel in ("normal", py_normal):
        m = fv.Model()
        w = m.param("w")
        sigma = m.param("sigma", lower=0.0)
        m.add("normal", w, loc=0.0, scale=10.0)
        m.add("half_normal", sigma, scale=2.0)
        m.add(kernel, x, loc=w, scale=sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fv.ConvergenceWarning)
            fits[kernel] = fv.fit(m, draws=2, steps=3000, seed=3, precondition=None)
    a, b = fits["normal"], fits[py_normal]
    # Same arithmetic up to rounding, in a different order: close, not necessarily bit-identical.
    np.testing.assert_allclose(b.phi, a.phi, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.elbo, a.elbo, rtol=1e-9)
    assert b.steps == a.steps


def test_python_kernel_fit_recovers_the_exact_posterior(py_normal):
    np.random.seed(42)
    x = np.random.normal(2.0, 1.0, size=100)
    m = fv.Model()
    w = m.param("w")
    m.add(py_normal, w, loc=0.0, scale=1.0)
    m.add(py_normal, x, loc=w, scale=1.0)
    approx = fv.fit(m, seed=0)
    assert approx.converged
    assert abs(approx.mean()["w"] - x.sum() / 101) < 0.01 / np.sqrt(101)
    assert approx.std()["w"] == pytest.approx(1 / np.sqrt(101), rel=0.02)


def test_python_laplace_fit_runs_and_lands_near_the_data(laplace):
    x = np.random.default_rng(4).laplace(1.0, 2.0, size=400)
    m = fv.Model()
    loc = m.param("loc")
    scale = m.param("scale", lower=0.0)
    m.add("normal", loc, scale=10.0)
    m.add("half_normal", scale, scale=5.0)
    m.add(laplace, x, loc=loc, scale=scale)
    approx = fv.fit(m, seed=0)
    assert approx.converged and approx.n_skipped == 0
    mean = approx.mean()
    assert abs(mean["loc"] - np.median(x)) < 0.2
    assert abs(mean["scale"] - np.mean(np.abs(x - np.median(x)))) < 0.2


def test_broadcast_and_expression_inputs_match_the_builtin(py_normal):
    y = np.random.default_rng(5).normal(size=(4, 3))
    results = []
    for kernel in ("normal", py_normal):
        m = fv.Model()
        mu = m.param("mu", shape=(3,))
        log_s = m.param("log_s")
        m.add(kernel, y, loc=mu * 2.0 - 1.0, scale=fv.exp(log_s))
        m.add(kernel, mu, scale=3.0)
        zeta = np.random.default_rng(6).normal(size=(4, 7))
        results.append(m.log_density(zeta))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-13)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12, atol=1e-13)


def test_gradient_in_the_inputs_own_shape_is_accepted():
    def fn(y, loc, params):
        g = (y - loc).sum(axis=0)  # loc has own shape () -> (S,), already summed
        return -0.5 * (y - loc) ** 2, {"loc": g}

    name = unique("own_shape")
    fv.register_kernel(name, ["y", "loc"], fn)
    m = fv.Model()
    loc = m.param("loc")
    m.add(name, [1.0, 2.0, 4.0], loc=loc)
    m.add("normal", [1.0, 2.0, 4.0], loc=loc)  # same density, built in
    zeta = np.array([[0.3, -1.0]])
    lp, grad = m.log_density(zeta)
    np.testing.assert_allclose(grad, 2 * (7.0 - 3 * zeta), rtol=1e-14)


def test_non_elementwise_kernel():
    """A standard multivariate normal of a K-vector: inputs arrive in their own shapes."""

    def mvn(y, loc, params):
        z = y - loc  # (K, S)
        lp = -0.5 * (z * z).sum(axis=0) - 0.5 * z.shape[0] * np.log(2 * np.pi)
        return lp, {"y": -z, "loc": z}

    name = unique("std_mvn")
    fv.register_kernel(name, ["y", "loc"], mvn, elementwise=False)
    assert not fv.kernel_spec(name).elementwise
    fv.check_kernel(
        name, shape=(3,), draws=4, reference=lambda y, loc: stats.multivariate_normal.logpdf(y, loc, np.eye(3))
    )
    m = fv.Model()
    v = m.param("v", shape=(3,))
    m.add(name, v, loc=np.zeros(3))
    approx = fv.fit(m, seed=0, steps=3000, tol=None)
    np.testing.assert_allclose(approx.std()["v"], 1.0, rtol=0.05)


def test_lp_of_data_alone_counts_for_every_draw():
    name = unique("data_lp")
    fv.register_kernel(name, ["y", "loc"], lambda y, loc, params: (-0.5 * (y - loc) ** 2, None))
    m = fv.Model()
    m.param("w")
    m.add(name, [1.0, 3.0], loc=0.0)  # lp has shape (2, 1): the same for every draw
    lp, grad = m.log_density(np.zeros((1, 3)))
    np.testing.assert_allclose(lp, -5.0)
    np.testing.assert_array_equal(grad, 0.0)


def test_model_with_a_python_kernel_is_garbage_collected(laplace):
    for _ in range(3):
        m = fv.Model()
        w = m.param("w")
        m.add(laplace, [0.0, 1.0], loc=w)
        m.log_density(np.zeros((1, 2)))
        del m, w
        gc.collect()


# ---- errors -----------------------------------------------------------------------------------------


def _model_for(name, shape=(2,)):
    m = fv.Model()
    w = m.param("w", shape=shape)
    m.add(name, w, loc=1.0)
    return m


@pytest.mark.parametrize(
    "result,error,message",
    [
        (lambda y, loc: (np.zeros(3), {}), ValueError, r"lp has shape \(3,\), expected \(4,\) or \(2, 4\)"),
        (lambda y, loc: (np.zeros((4, 2)), {}), ValueError, r"lp has shape \(4, 2\)"),
        (lambda y, loc: ("x", {}), TypeError, "lp must be an array"),
        (lambda y, loc: 3.0, TypeError, r"the function must return a pair \(lp, grads\), got float"),
        (lambda y, loc: (np.zeros(y.shape[-1]),), TypeError, r"the function must return a pair"),
        (lambda y, loc: (np.zeros(y.shape[-1]), [1.0]), TypeError, "grads must be a dict"),
        (
            lambda y, loc: (np.zeros(y.shape[-1]), {"y": np.zeros((2, 3))}),
            ValueError,
            r"the gradient for input 'y' has shape \(2, 3\), expected \(2, 4\)",
        ),
        (
            lambda y, loc: (np.zeros(y.shape[-1]), {"y": "nope"}),
            TypeError,
            "the gradient for input 'y' must be an array",
        ),
        (
            lambda y, loc: (np.zeros(y.shape[-1]), {"scale": y}),
            ValueError,
            r"grads has an entry for 'scale', which is not one of its inputs \(y, loc\)",
        ),
    ],
)
def test_bad_return_values_are_reported_with_the_kernel_and_input(result, error, message):
    name = unique("bad_return")
    fv.register_kernel(name, ["y", "loc"], lambda y, loc, params: result(y, loc))
    m = _model_for(name)
    with pytest.raises(error, match=f"kernel '{name}': {message}"):
        m.log_density(np.zeros((2, 4)))
    with pytest.raises(error, match=f"kernel '{name}'"):
        fv.fit(m, steps=10)


def test_exception_in_fn_stops_the_fit_and_propagates():
    calls = []

    def fn(y, loc, params):
        calls.append(1)
        if len(calls) == 25:
            raise ZeroDivisionError("boom at call 25")
        return -0.5 * (y - loc) ** 2, {"y": loc - y}

    name = unique("raises")
    fv.register_kernel(name, ["y", "loc"], fn)
    m = _model_for(name)
    with pytest.raises(ZeroDivisionError, match="boom at call 25") as info:
        fv.fit(m, steps=1000)
    assert len(calls) == 25  # stopped at once
    assert any(name in note for note in getattr(info.value, "__notes__", [name]))
    # The model is still usable afterwards, and log_density propagates the same way.
    m.log_density(np.zeros(2))
    calls[:] = [1] * 24
    with pytest.raises(ZeroDivisionError, match="boom at call 25"):
        m.log_density(np.zeros(2))
    assert fv.fit(m, steps=200, tol=None).steps == 200


def test_keyboard_interrupt_in_fn_interrupts_the_fit():
    calls = []

    def fn(y, loc, params):
        calls.append(1)
        if len(calls) == 150:
            raise KeyboardInterrupt
        return -0.5 * (y - loc) ** 2, {"y": loc - y}

    name = unique("ctrl_c")
    fv.register_kernel(name, ["y", "loc"], fn)
    m = _model_for(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(m, steps=100_000)
    assert approx.interrupted and approx.steps < 1000
    assert np.all(np.isfinite(approx.phi))
    calls[:] = [1] * 149
    with pytest.raises(KeyboardInterrupt):
        m.log_density(np.zeros(2))


def test_name_clashes_are_refused(laplace):
    with pytest.raises(ValueError, match="'normal' is a built-in kernel"):
        fv.register_kernel("normal", ["y", "loc"], normal_fn)
    with pytest.raises(ValueError, match="already registered; choose another name, or pass replace=True"):
        fv.register_kernel(laplace, ["y"], normal_fn)


# ---- register_kernel(..., replace=True) ------------------------------------------------------------

LAPLACE_SPEC = dict(supports={"scale": "positive"}, defaults={"loc": 0.0, "scale": 1.0})
Y = np.array([-1.0, 0.5, 2.0])


def model_with(kernel: str):
    """A model of Y under ``kernel`` with loc a parameter; its log density at loc = 0.3."""
    model = fv.Model()
    model.add(kernel, Y, loc=model.param("loc"), scale=1.5)
    return model


def lp_at(model) -> float:
    return float(model.log_density(np.array([0.3]))[0])


def test_replace_binds_the_new_definition_in_models_built_afterwards():
    name = unique("replaced")
    fv.register_kernel(name, ["y", "loc", "scale"], normal_fn, doc="first", **LAPLACE_SPEC)
    before = model_with(name)
    spec = fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, doc="second", replace=True, **LAPLACE_SPEC)
    after = model_with(name)
    normal_lp = stats.norm.logpdf(Y, 0.3, 1.5).sum()
    laplace_lp = stats.laplace.logpdf(Y, 0.3, 1.5).sum()
    assert lp_at(before) == pytest.approx(normal_lp, rel=1e-12)  # built before: keeps what it bound
    assert lp_at(after) == pytest.approx(laplace_lp, rel=1e-12)
    assert spec.name == name and spec.doc == "second" and fv.kernel_spec(name).doc == "second"
    # one entry under the user's name, for the current definition: no trace of the first
    assert fv.kernels()[name].doc == "second"
    assert not [k for k in fv.kernels() if k.startswith(name) and k != name]
    assert before.factors[0][1] == after.factors[0][1] == name
    # a copy binds what the original bound; an unpickled model, the definition current now
    assert lp_at(copy.deepcopy(before)) == pytest.approx(normal_lp, rel=1e-12)
    assert lp_at(pickle.loads(pickle.dumps(before))) == pytest.approx(laplace_lp, rel=1e-12)
    assert lp_at(pickle.loads(pickle.dumps(after))) == pytest.approx(laplace_lp, rel=1e-12)
    # a third definition, and fv.logp and check_kernel follow the name too
    fv.register_kernel(name, ["y", "loc", "scale"], normal_fn, doc="third", replace=True, **LAPLACE_SPEC)
    assert lp_at(model_with(name)) == pytest.approx(normal_lp, rel=1e-12)
    assert lp_at(after) == pytest.approx(laplace_lp, rel=1e-12)
    np.testing.assert_allclose(fv.logp(name, Y, loc=0.3, scale=1.5), stats.norm.logpdf(Y, 0.3, 1.5), rtol=1e-12)
    report = fv.check_kernel(name, reference=lambda y, loc, scale: stats.norm.logpdf(y, loc, scale))
    assert report.passed and report.kernel == name


def test_a_replacement_may_change_the_inputs():
    name = unique("new_inputs")
    fv.register_kernel(name, ["y", "loc"], lambda y, loc, params: normal_fn(y, loc, 1.0, params))
    with pytest.raises(ValueError, match="scale"):
        model_with(name)  # no input 'scale' yet
    fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, replace=True, **LAPLACE_SPEC)
    assert [i.name for i in fv.kernel_spec(name).inputs] == ["y", "loc", "scale"]
    assert lp_at(model_with(name)) == pytest.approx(stats.laplace.logpdf(Y, 0.3, 1.5).sum(), rel=1e-12)


def test_a_refused_replacement_leaves_the_kernel_as_it_was():
    name = unique("kept")
    fv.register_kernel(name, ["y", "loc", "scale"], normal_fn, doc="kept", **LAPLACE_SPEC)
    with pytest.raises(ValueError, match="already registered"):
        fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, **LAPLACE_SPEC)
    with pytest.raises(ValueError, match="support of 'scale' must be one of"):
        fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, supports={"scale": "big"}, replace=True)
    with pytest.raises(TypeError, match="replace must be a bool"):
        fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, replace="yes")
    assert fv.kernel_spec(name).doc == "kept"
    assert lp_at(model_with(name)) == pytest.approx(stats.norm.logpdf(Y, 0.3, 1.5).sum(), rel=1e-12)


def test_replace_on_a_new_name_registers_it():
    name = unique("fresh")
    fv.register_kernel(name, ["y", "loc", "scale"], laplace_fn, replace=True, **LAPLACE_SPEC)
    assert lp_at(model_with(name)) == pytest.approx(stats.laplace.logpdf(Y, 0.3, 1.5).sum(), rel=1e-12)


def test_builtin_and_extension_kernels_cannot_be_replaced():
    with pytest.raises(ValueError, match="'normal' is a built-in kernel, which cannot be replaced"):
        fv.register_kernel("normal", ["y", "loc", "scale"], normal_fn, replace=True, **LAPLACE_SPEC)
    assert fv.kernel_spec("normal").doc == "Normal(y | loc, scale)"
    # a kernel in the core's registry that fastvi.register_kernel did not add: an extension
    # module's C++ kernel, as far as Python can tell
    name = unique("extension_like")
    fv._core.register_python_kernel(name, "", [("y", "real", False, None, "")], normal_fn, True)
    with pytest.raises(ValueError, match=f"{name!r} is already registered by an extension module"):
        fv.register_kernel(name, ["y"], normal_fn, replace=True)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(inputs=[]), ValueError, "at least the variate"),
        (dict(inputs="y"), TypeError, "inputs must be a list"),
        (dict(inputs=["y", "y"]), ValueError, "unique"),
        (dict(inputs=["y", "not an identifier"]), ValueError, "identifiers"),
        (dict(inputs=["y", "lambda"]), ValueError, "identifiers"),
        (dict(inputs=["y", "name"]), ValueError, "Model.add's own keyword"),
        (dict(inputs=["y", "dims"]), ValueError, "'dims' is Model.add's own keyword"),
        (dict(supports={"scale": "positive"}), ValueError, r"supports names unknown inputs \['scale'\]"),
        (dict(supports={"loc": "big"}), ValueError, "support of 'loc' must be one of"),
        (dict(data_only=["x"]), ValueError, "data_only names unknown inputs"),
        (dict(defaults={"y": 0.0}), ValueError, "the variate 'y' cannot have a default"),
        (dict(defaults={"loc": "zero"}), TypeError, "default of 'loc' must be a number"),
        (dict(supports={"loc": "positive"}, defaults={"loc": 0.0}), ValueError, "outside its support"),
        (dict(fn=42), TypeError, "fn must be callable"),
        (dict(name=""), ValueError, "name must be"),
        (dict(elementwise="yes"), TypeError, "elementwise must be a bool"),
    ],
)
def test_bad_kernel_specs_are_refused(kwargs, error, message):
    args = dict(name=unique("spec"), inputs=["y", "loc"], fn=normal_fn)
    args.update(kwargs)
    name = args["name"]
    with pytest.raises(error, match=message):
        fv.register_kernel(args.pop("name"), args.pop("inputs"), args.pop("fn"), **args)
    if name:
        assert name not in fv.kernels()


def test_supports_and_data_only_are_enforced_by_model_add():
    name = unique("enforced")
    fv.register_kernel(
        name,
        ["y", "rate", "x"],
        lambda y, rate, x, params: (np.zeros(y.shape[-1]), None),
        supports={"rate": "positive", "y": "count"},
        data_only=["x"],
    )
    spec = fv.kernel_spec(name)
    assert [(i.support, i.data_only) for i in spec.inputs] == [("count", False), ("positive", False), ("real", True)]
    m = fv.Model()
    free = m.param("free")
    pos = m.param("pos", lower=0.0)
    with pytest.raises(ValueError, match="input 'rate' must be > 0.*declare it with matching lower/upper bounds"):
        m.add(name, [1.0], rate=free, x=0.0)
    with pytest.raises(ValueError, match="input 'y' must be a non-negative integer"):
        m.add(name, [1.5], rate=pos, x=0.0)
    with pytest.raises(ValueError, match="input 'x' must be data"):
        m.add(name, [1.0], rate=pos, x=free)
    with pytest.raises(ValueError, match="needs input 'x'"):
        m.add(name, [1.0], rate=pos)
    m.add(name, [1.0, 2.0], rate=pos, x=[0.5, 0.25])
