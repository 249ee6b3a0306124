"""Model.factor and the expression operations of issue 11: element-wise functions, powers, axis
reductions and normalisations, shapes (transpose, reshape, concatenate, stack, indexing on any
axis), matrix products with parameter matrices, numpy dispatch and bound tracking.

Each operation is checked for values against numpy / scipy and for gradients against central
finite differences, through Model.log_density with Model.factor, for a batch of several draws."""

import copy
import math
import pickle

import fastvi as fv
import numpy as np
import pytest
import scipy.special
import scipy.stats
from gradcheck import check_batch as _check_batch  # tests/gradcheck.py
from gradcheck import weights as _weights

DRAWS = 3


# ---- Model.factor ---------------------------------------------------------------------------------


def test_factor_adds_the_sum_of_an_expression():
    rng = np.random.default_rng(0)
    m = fv.Model()
    w = m.param("w", shape=(2, 3))
    s = m.param("s", lower=0.0)
    m.factor(-0.5 * w * w)  # any shape: summed
    m.factor(fv.log(s), name="log s")  # a scalar
    assert m.factors == [("factor 0 (factor on ((data * w) * w))", "factor"), ("log s", "factor")]
    zeta = rng.normal(size=(m.dim, DRAWS))
    # log s + the log-Jacobian of s (= log s again)
    _check_batch(m, zeta, lambda z: -0.5 * (z[:6] ** 2).sum() + 2 * z[6])


def test_factor_matches_the_kernel_it_writes_by_hand():
    y = np.array([0.3, -1.2, 2.0])
    by_kernel, by_hand = fv.Model(), fv.Model()
    for m in (by_kernel, by_hand):
        mu, sigma = m.param("mu"), m.param("sigma", lower=0.0)
    by_kernel.add("normal", y, loc=by_kernel.params["mu"], scale=by_kernel.params["sigma"])
    mu, sigma = by_hand.params["mu"], by_hand.params["sigma"]
    by_hand.factor(-0.5 * ((y - mu) / sigma) ** 2 - fv.log(sigma) - 0.5 * math.log(2 * math.pi))
    zeta = np.random.default_rng(1).normal(size=(2, 4))
    lp1, g1 = by_kernel.log_density(zeta)
    lp2, g2 = by_hand.log_density(zeta)
    np.testing.assert_allclose(lp2, lp1, rtol=1e-13)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-12)


def test_factor_refuses_data_and_other_models():
    m = fv.Model()
    w = m.param("w")
    with pytest.raises(TypeError, match="data alone adds a constant"):
        m.factor(np.ones(3))
    with pytest.raises(TypeError, match="data alone adds a constant"):
        m.factor(1.0)
    with pytest.raises(ValueError, match="another model"):
        m.factor(fv.Model().param("v"))
    with pytest.raises(TypeError, match="name"):
        m.factor(w, name="")
    assert m.factors == []


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_factor_and_new_nodes_survive_copies_and_pickles(how):
    m = fv.Model()
    w = m.param("w", shape=(2, 3))
    p = m.param("p", lower=0.0, upper=1.0)
    e = fv.concatenate([fv.softmax(w, axis=0), fv.cumsum(w, axis=1)], axis=1)
    e = fv.log_sum_exp(e.reshape(3, 4).T, axis=0) + fv.stack([p, p**1.5, fv.log1m(p)]) + np.ones((3, 3)) @ w.T[:, 0]
    m.deterministic("e", e)
    m.factor(fv.sum(fv.lgamma(fv.exp(w)), axis=1) + w @ np.ones(3) + fv.log_add_exp(w[0, 0], 0.0))
    other = {"pickle": lambda x: pickle.loads(pickle.dumps(x)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how](m)
    zeta = np.random.default_rng(2).normal(size=(m.dim, 3))
    for a, b in zip(m.log_density(zeta), other.log_density(zeta)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.constrain(zeta)["e"], other.constrain(zeta)["e"])
    assert other.factors == m.factors


def test_a_factor_added_after_a_fit_invalidates_it():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", w, loc=0.0, scale=1.0)
    fit = fv.fit(m, steps=300, tol=None, psis_draws=0)
    m.factor(-w * w)
    with pytest.raises(RuntimeError, match="the model changed after this fit"):
        fit.mean()


def test_factor_fits_a_two_component_mixture():
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(-2.0, 0.5, 150), rng.normal(2.0, 0.5, 50)])
    m = fv.Model()
    w = m.param("w", lower=0.0, upper=1.0)
    mu = m.param("mu", shape=(2,))
    m.add("normal", mu, loc=np.array([-1.0, 1.0]), scale=2.0)
    lp1 = -0.5 * ((y - mu[0]) / 0.5) ** 2
    lp2 = -0.5 * ((y - mu[1]) / 0.5) ** 2
    m.factor(fv.log_mix(w, lp1, lp2))
    mean = fv.fit(m, steps=4000, tol=None, seed=0, psis_draws=0).mean()
    assert abs(mean["w"] - 0.75) < 0.08
    np.testing.assert_allclose(mean["mu"], [-2.0, 2.0], atol=0.15)


# ---- element-wise functions -------------------------------------------------------------------------


def _ident(z):
    return z


# name: (fastvi function, numpy reference, the argument as an expression of z, and in numpy)
UNARY = {
    "sqrt": (fv.sqrt, np.sqrt, fv.exp, np.exp),
    "square": (fv.square, np.square, _ident, _ident),
    "abs": (abs, np.abs, _ident, _ident),
    "log1m": (fv.log1m, lambda x: np.log1p(-x), fv.inv_logit, scipy.special.expit),
    "lgamma": (fv.lgamma, scipy.special.gammaln, lambda z: fv.exp(z) + 0.1, lambda z: np.exp(z) + 0.1),
    "lgamma_negative": (
        fv.lgamma,
        scipy.special.gammaln,
        lambda z: -0.5 + 0.3 * fv.tanh(z),
        lambda z: -0.5 + 0.3 * np.tanh(z),
    ),
    "log1p": (fv.log1p, np.log1p, fv.exp, np.exp),
    "expm1": (fv.expm1, np.expm1, _ident, _ident),
    "tanh": (fv.tanh, np.tanh, _ident, _ident),
    "logit": (fv.logit, scipy.special.logit, fv.inv_logit, scipy.special.expit),
    "log_inv_logit": (fv.log_inv_logit, lambda x: -np.logaddexp(0.0, -x), lambda z: 3 * z, lambda z: 3 * z),
    "inv_logit": (fv.inv_logit, scipy.special.expit, _ident, _ident),
    "exp": (fv.exp, np.exp, _ident, _ident),
    "log": (fv.log, np.log, fv.exp, np.exp),
    "log1p_exp": (fv.log1p_exp, lambda x: np.logaddexp(0.0, x), lambda z: 3 * z, lambda z: 3 * z),
    "neg": (lambda x: -x, np.negative, _ident, _ident),
}


@pytest.mark.parametrize("size", [5, 20])  # below and above the vectorised path's 16 elements
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_values_and_gradients(name, size):
    fn, ref, expr_arg, np_arg = UNARY[name]
    rng = np.random.default_rng(4)
    m = fv.Model()
    z = m.param("z", shape=(size,))
    weights = _weights(size)
    y = m.deterministic("y", fn(expr_arg(z)))
    m.factor(weights * y)
    zeta = rng.normal(0.0, 0.8, size=(size, DRAWS))
    values = m.constrain(zeta)["y"]  # (draws, size)
    np.testing.assert_allclose(values, ref(np_arg(zeta.T)), rtol=1e-13, atol=1e-14)
    _check_batch(m, zeta, lambda c: (weights * ref(np_arg(c))).sum(), grad_tol=2e-6)


def test_unary_functions_at_extreme_arguments():
    x = np.array([-800.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 800.0])
    m = fv.Model()
    w = m.param("w", shape=x.shape)
    lil = m.deterministic("lil", fv.log_inv_logit(w))
    th = m.deterministic("th", fv.tanh(w))
    m.factor(lil + th)
    values = m.constrain(x)
    np.testing.assert_allclose(values["lil"], -np.logaddexp(0.0, -x), rtol=1e-15)
    np.testing.assert_allclose(values["th"], np.tanh(x), rtol=1e-15)
    _, grad = m.log_density(x)
    np.testing.assert_allclose(grad, scipy.special.expit(-x) + (1 - np.tanh(x) ** 2), rtol=1e-14)
    assert np.all(np.isfinite(grad))


def test_abs_gradient_is_the_sign():
    m = fv.Model()
    w = m.param("w", shape=(3,))
    m.factor(abs(w))
    _, grad = m.log_density(np.array([-2.0, 0.0, 3.0]))
    assert grad.tolist() == [-1.0, 0.0, 1.0]


POWERS = {  # exponent, base domain
    "cube": (3, lambda z: z),
    "minus_one": (-1, np.exp),
    "half": (0.5, np.exp),
    "two": (2, lambda z: z),
    "real": (1.7, np.exp),
    "array": (np.array([0.5, 1.0, 2.5, -1.0]), np.exp),
}


@pytest.mark.parametrize("name", list(POWERS))
def test_power_with_data_exponent(name):
    p, domain = POWERS[name]
    m = fv.Model()
    z = m.param("z", shape=(4,))
    x = fv.exp(z) if domain is np.exp else z
    w = _weights(4)
    y = m.deterministic("y", x**p)
    m.factor(w * y)
    zeta = np.random.default_rng(5).normal(0.0, 0.7, size=(4, DRAWS))
    np.testing.assert_allclose(m.constrain(zeta)["y"], domain(zeta.T) ** p, rtol=1e-13)
    _check_batch(m, zeta, lambda c: (w * domain(c) ** p).sum())


def test_power_with_expression_exponent_and_data_base():
    m = fv.Model()
    b = m.param("b", shape=(3,), lower=0.0)
    e = m.param("e", shape=(3,))
    base = np.array([0.5, 2.0, 3.0])
    m.factor(b**e + base**e + fv.pow(b, 1.5 * e) + 2.0 ** e[0])
    zeta = np.random.default_rng(6).normal(0.0, 0.5, size=(6, DRAWS))

    def expected(c):
        bv, ev = np.exp(c[:3]), c[3:]
        return (bv**ev + base**ev + bv ** (1.5 * ev)).sum() + 3 * 2.0 ** ev[0] + c[:3].sum()  # the scalar broadcasts

    _check_batch(m, zeta, expected)


def test_log_add_exp_values_gradients_and_extremes():
    m = fv.Model()
    a = m.param("a", shape=(20,))
    b = m.param("b", shape=(20,))
    const = np.linspace(-3, 3, 20)
    y = m.deterministic("y", fv.log_add_exp(a, b) + fv.log_add_exp(const, a) + np.logaddexp(a[:5], 1.0).sum())
    m.factor(y)
    zeta = np.random.default_rng(7).normal(size=(40, DRAWS))

    def expected(c):
        return (np.logaddexp(c[:20], c[20:]) + np.logaddexp(const, c[:20])).sum() + 20 * np.logaddexp(c[:5], 1.0).sum()

    _check_batch(m, zeta, expected)
    big = m.constrain(np.r_[np.full(20, 1000.0), np.full(20, -1000.0)])["y"]
    assert np.all(np.isfinite(big))


# ---- reductions and normalisations ---------------------------------------------------------------

SHAPE = (2, 3, 4)


def _np_log_softmax(x, axis):
    return scipy.special.log_softmax(x, axis=axis)


REDUCTIONS = {
    "sum": (fv.sum, lambda x, axis: np.sum(x, axis=axis)),
    "log_sum_exp": (fv.log_sum_exp, lambda x, axis: scipy.special.logsumexp(x, axis=axis)),
    "log_softmax": (fv.log_softmax, _np_log_softmax),
    "softmax": (fv.softmax, lambda x, axis: scipy.special.softmax(x, axis=axis)),
    "cumsum": (fv.cumsum, lambda x, axis: np.cumsum(x, axis=axis)),
}


@pytest.mark.parametrize("axis", [0, 1, -1, None, (0, 2)])
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions_along_axes(name, axis):
    if name == "cumsum" and isinstance(axis, tuple):
        pytest.skip("numpy's cumsum takes one axis")
    fn, ref = REDUCTIONS[name]
    m = fv.Model()
    x = m.param("x", shape=SHAPE)
    y = m.deterministic("y", fn(0.5 * x, axis=axis))
    want_shape = ref(np.zeros(SHAPE), axis).shape
    assert y.shape == want_shape
    w = _weights(want_shape)
    m.factor(w * y)
    zeta = np.random.default_rng(8).normal(size=(m.dim, DRAWS))
    got = m.constrain(zeta)["y"]
    for s in range(DRAWS):
        np.testing.assert_allclose(got[s], ref(0.5 * zeta[:, s].reshape(SHAPE), axis), rtol=1e-13, atol=1e-14)
    _check_batch(m, zeta, lambda c: (w * ref(0.5 * c.reshape(SHAPE), axis)).sum())


def test_reductions_do_not_overflow():
    m = fv.Model()
    x = m.param("x", shape=(2, 3))
    m.deterministic("lse", fv.log_sum_exp(x))
    m.deterministic("sm", fv.softmax(x))
    m.deterministic("lsm", fv.log_softmax(x))
    m.factor(fv.log_sum_exp(x))
    v = np.array([1000.0, 1001.0, 999.0, -1000.0, -1001.0, -2000.0])
    values = m.constrain(v)
    np.testing.assert_allclose(values["lse"], scipy.special.logsumexp(v.reshape(2, 3), axis=1), rtol=1e-15)
    np.testing.assert_allclose(values["sm"], scipy.special.softmax(v.reshape(2, 3), axis=1), rtol=1e-14)
    np.testing.assert_allclose(values["lsm"], _np_log_softmax(v.reshape(2, 3), 1), rtol=1e-14)
    _, grad = m.log_density(v)
    # the gradient is exp(x - lse): lse ~ 1000 carries an absolute rounding error of ~1e-13
    np.testing.assert_allclose(grad, scipy.special.softmax(v.reshape(2, 3), axis=1).ravel(), rtol=1e-12)


def test_method_and_numpy_forms_of_sum_and_cumsum():
    m = fv.Model()
    x = m.param("x", shape=(3, 2))
    m.deterministic("a", x.sum(axis=0))
    m.deterministic("b", np.sum(x, axis=1))
    m.deterministic("c", np.sum(x))
    m.deterministic("d", np.cumsum(x, axis=0))
    m.deterministic("e", np.cumsum(x))
    v = np.arange(6.0)
    values = m.constrain(v)
    x_v = v.reshape(3, 2)
    np.testing.assert_array_equal(values["a"], x_v.sum(axis=0))
    np.testing.assert_array_equal(values["b"], x_v.sum(axis=1))
    assert float(values["c"]) == 15.0
    np.testing.assert_array_equal(values["d"], np.cumsum(x_v, axis=0))
    np.testing.assert_array_equal(values["e"], np.cumsum(x_v))


def test_log_mix_vector_form_matches_scipy():
    rng = np.random.default_rng(9)
    y = rng.normal(size=6)
    m = fv.Model()
    eta = m.param("eta", shape=(3,))
    mu = m.param("mu", shape=(3,))
    theta = fv.softmax(eta)
    lps = -0.5 * (y[:, None] - mu) ** 2  # (6, 3): components on the last axis
    m.factor(fv.log_mix(theta, lps))
    m.factor(fv.log_mix(np.array([0.2, 0.3, 0.5]), lps))

    def expected(c):
        t = scipy.special.softmax(c[:3])
        comp = -0.5 * (y[:, None] - c[3:]) ** 2
        return (
            scipy.special.logsumexp(np.log(t) + comp, axis=1).sum()
            + scipy.special.logsumexp(np.log([0.2, 0.3, 0.5]) + comp, axis=1).sum()
        )

    _check_batch(m, rng.normal(size=(6, DRAWS)), expected)


def test_log_mix_two_components_with_data_weight():
    m = fv.Model()
    a = m.param("a", shape=(4,))
    m.factor(fv.log_mix(0.3, a, -a))
    z = np.random.default_rng(10).normal(size=(4, DRAWS))
    _check_batch(m, z, lambda c: np.log(0.3 * np.exp(c) + 0.7 * np.exp(-c)).sum())
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        fv.log_mix(1.0, a, -a)


# ---- shapes -------------------------------------------------------------------------------------


def test_transpose_reshape_and_indexing_on_any_axis():
    m = fv.Model()
    x = m.param("x", shape=(3, 4))
    parts = {
        "T": x.T,
        "reshape": x.reshape(2, 6),
        "reshape_T": x.reshape(4, 3).T,
        "col": x[:, 2],
        "cols": x[:, np.array([3, 0, 0])],
        "both": x[np.array([2, 0]), 1:3],
        "neg_step": x[::-1, ::2],
        "transpose": np.transpose(x.reshape(2, 2, 3), (2, 0, 1)),
    }
    refs = {
        "T": lambda v: v.T,
        "reshape": lambda v: v.reshape(2, 6),
        "reshape_T": lambda v: v.reshape(4, 3).T,
        "col": lambda v: v[:, 2],
        "cols": lambda v: v[:, [3, 0, 0]],
        "both": lambda v: v[[2, 0], 1:3],
        "neg_step": lambda v: v[::-1, ::2],
        "transpose": lambda v: np.transpose(v.reshape(2, 2, 3), (2, 0, 1)),
    }
    w = {k: _weights(e.shape, seed=i) for i, (k, e) in enumerate(parts.items())}
    for k, e in parts.items():
        m.deterministic(k, e)
        m.factor(w[k] * e * e)
    zeta = np.random.default_rng(11).normal(size=(12, DRAWS))
    values = m.constrain(zeta)
    for k, ref in refs.items():
        for s in range(DRAWS):
            np.testing.assert_array_equal(values[k][s], ref(zeta[:, s].reshape(3, 4)), err_msg=k)
    _check_batch(m, zeta, lambda c: sum((w[k] * ref(c.reshape(3, 4)) ** 2).sum() for k, ref in refs.items()))


def test_a_reshaped_parameter_is_a_kernel_input_without_a_node():
    m = fv.Model()
    x = m.param("x", shape=(6,), lower=0.0)
    rows = m._core.rows
    grid = x.reshape(2, 3)
    assert m._core.rows == rows  # no node
    assert grid.lower == 0.0
    m.add("normal", np.zeros((2, 3)), loc=0.0, scale=grid)
    m.add("normal", grid, loc=np.zeros(3), scale=1.0)
    zeta = np.random.default_rng(12).normal(size=(6, DRAWS))

    def expected(c):
        v = np.exp(c)
        return scipy.stats.norm.logpdf(0.0, 0.0, v).sum() + scipy.stats.norm.logpdf(v).sum() + c.sum()

    _check_batch(m, zeta, expected)
    with pytest.raises(ValueError, match="reshape"):
        x.reshape(4, 2)


def test_concatenate_and_stack_with_data_and_bounds():
    m = fv.Model()
    a = m.param("a", shape=(2, 2), lower=0.0)
    b = m.param("b", shape=(2,))
    c = fv.concatenate([a, b[None, :], np.full((1, 2), 7.0)])
    s = fv.stack([b, a[0], np.array([1.0, 2.0])], axis=1)
    pos = fv.concatenate([a.reshape(-1), np.ones(2)])
    assert c.shape == (4, 2) and s.shape == (2, 3)
    assert pos.lower == 0.0 and c.lower == -math.inf
    m.deterministic("c", c)
    m.deterministic("s", s)
    wc, ws = _weights(c.shape, 1), _weights(s.shape, 2)
    m.factor(wc * c * c)
    m.factor(ws * s * s)
    m.add("normal", np.zeros(6), loc=0.0, scale=pos)

    def parts(z):
        av, bv = np.exp(z[:4]).reshape(2, 2), z[4:]
        return (
            np.concatenate([av, bv[None, :], np.full((1, 2), 7.0)]),
            np.stack([bv, av[0], [1.0, 2.0]], axis=1),
            np.r_[av.ravel(), 1.0, 1.0],
        )

    zeta = np.random.default_rng(13).normal(size=(6, DRAWS))
    values = m.constrain(zeta)
    for k in range(DRAWS):
        cv, sv, _ = parts(zeta[:, k])
        np.testing.assert_array_equal(values["c"][k], cv)
        np.testing.assert_array_equal(values["s"][k], sv)

    def expected(z):
        cv, sv, pv = parts(z)
        return (wc * cv**2).sum() + (ws * sv**2).sum() + scipy.stats.norm.logpdf(0.0, 0.0, pv).sum() + z[:4].sum()

    _check_batch(m, zeta, expected)
    np.concatenate([a, b[None, :]])  # numpy dispatches too
    with pytest.raises(ValueError, match="concatenate"):
        fv.concatenate([a, b])
    with pytest.raises(TypeError, match="at least one expression"):
        fv.stack([np.ones(2), np.ones(2)])


@pytest.mark.parametrize(
    "a_shape,b_shape,a_param,b_param",
    [
        ((5, 3), (3, 2), False, True),  # data X @ parameter B
        ((4, 3), (3,), True, False),  # parameter A @ data v
        ((4, 3), (3,), True, True),  # A @ v, both parameters
        ((2, 3), (3, 4), True, True),
        ((3,), (3, 2), True, True),  # a row vector
        ((3,), (3,), True, True),  # a dot product
        ((3, 2), (2,), False, True),  # data X @ parameter v: the blocked GEMM node
    ],
)
def test_matmul_with_parameter_matrices(a_shape, b_shape, a_param, b_param):
    rng = np.random.default_rng(14)
    m = fv.Model()
    a_data, b_data = rng.normal(size=a_shape), rng.normal(size=b_shape)
    A = m.param("A", shape=a_shape) if a_param else a_data
    B = m.param("B", shape=b_shape) if b_param else b_data
    y = m.deterministic("y", A @ B)
    want = a_data @ b_data
    assert y.shape == want.shape
    w = _weights(want.shape)
    m.factor(w * y * y)

    def split(c):
        i = 0
        av = bv = None
        if a_param:
            av, i = c[: int(np.prod(a_shape))].reshape(a_shape), int(np.prod(a_shape))
        if b_param:
            bv = c[i:].reshape(b_shape)
        return (a_data if av is None else av), (b_data if bv is None else bv)

    zeta = rng.normal(size=(m.dim, DRAWS))
    values = m.constrain(zeta)["y"]
    for s in range(DRAWS):
        av, bv = split(zeta[:, s])
        np.testing.assert_allclose(values[s], av @ bv, rtol=1e-13, atol=1e-13)
    _check_batch(m, zeta, lambda c: (w * (split(c)[0] @ split(c)[1]) ** 2).sum())


def test_matmul_errors():
    m = fv.Model()
    B = m.param("B", shape=(3, 2))
    with pytest.raises(ValueError, match=r"X has shape \(4, 2\) but B has shape \(3, 2\)"):
        np.ones((4, 2)) @ B
    with pytest.raises(ValueError, match="1-D and 2-D"):
        np.ones((2, 4, 3)) @ B
    with pytest.raises(ValueError, match="NaN or inf"):
        B @ np.array([1.0, np.nan])


# ---- numpy dispatch ---------------------------------------------------------------------------------


def test_numpy_ufuncs_dispatch_to_expressions():
    m = fv.Model()
    x = m.param("x", shape=(3,), lower=0.0)
    arr = np.array([1.0, 2.0, 3.0])
    cases = {
        "exp": (np.exp(x), np.exp),
        "log": (np.log(x), np.log),
        "sqrt": (np.sqrt(x), np.sqrt),
        "square": (np.square(x), np.square),
        "abs": (np.abs(x), np.abs),
        "tanh": (np.tanh(x), np.tanh),
        "log1p": (np.log1p(x), np.log1p),
        "expm1": (np.expm1(x), np.expm1),
        "add": (np.add(arr, x), lambda v: arr + v),
        "radd": (arr + x, lambda v: arr + v),
        "sub": (arr - x, lambda v: arr - v),
        "mul": (np.multiply(arr, x), lambda v: arr * v),
        "div": (arr / x, lambda v: arr / v),
        "pow": (np.power(x, arr), lambda v: v**arr),
        "rpow": (arr**x, lambda v: arr**v),
        "neg": (np.negative(x), lambda v: -v),
        "matmul": (np.ones((2, 3)) @ x, lambda v: np.ones((2, 3)) @ v),
    }
    for k, (e, _) in cases.items():
        assert isinstance(e, fv.Expr), k
        m.deterministic(k, e)
    zeta = np.array([-0.3, 0.1, 0.7])
    values = m.constrain(zeta)
    for k, (_, ref) in cases.items():
        np.testing.assert_allclose(values[k], ref(np.exp(zeta)), rtol=1e-14, err_msg=k)


def test_unsupported_numpy_calls_name_the_function():
    x = fv.Model().param("x", shape=(3,))
    with pytest.raises(TypeError, match="numpy.sin is not supported"):
        np.sin(x)
    with pytest.raises(TypeError, match="numpy.add.reduce is not supported"):
        np.add.reduce(x)
    with pytest.raises(TypeError, match="numpy.mean is not supported"):
        np.mean(x)
    with pytest.raises(TypeError, match="numpy.exp: the arguments"):
        np.exp(x, out=np.empty(3))
    with pytest.raises(TypeError, match="numpy.sum"):
        np.sum(x, keepdims=True)


# ---- bounds ---------------------------------------------------------------------------------------


def test_bounds_follow_interval_arithmetic():
    m = fv.Model()
    s, t = m.param("s", lower=0.0), m.param("t", lower=0.0)
    w = m.param("w")
    g = m.param("g", shape=(3,), lower=0.0)
    p = m.param("p", lower=0.0, upper=1.0)
    neg = m.param("neg", upper=-1.0)
    assert (1 / s).lower == 0.0 and (s / t).lower == 0.0
    assert (g / fv.sum(g)).lower == 0.0
    assert (w**2).lower == 0.0 and fv.square(w).lower == 0.0 and abs(w).lower == 0.0
    assert (w**4).lower == 0.0 and (w**3).lower == -math.inf
    assert fv.sqrt(s).lower == 0.0 and fv.exp(w).lower == 0.0
    assert (fv.inv_logit(w).lower, fv.inv_logit(w).upper) == (0.0, 1.0)
    assert (fv.softmax(g).lower, fv.softmax(g).upper) == (0.0, 1.0)
    assert (fv.tanh(w).lower, fv.tanh(w).upper) == (-1.0, 1.0)
    assert fv.log_inv_logit(w).upper == 0.0 and fv.log_softmax(w[None]).upper == 0.0
    assert fv.log1m(p).upper == 0.0 and fv.log1p(s).lower == 0.0 and fv.expm1(w).lower == -1.0
    assert ((1 - p) * s).lower == 0.0 and (p * p).upper == 1.0
    assert (neg * neg).lower == 1.0 and (1 / neg).upper == 0.0 and (1 / neg).lower == -1.0
    assert (s**-0.5).lower == 0.0 and (s**w).lower == 0.0 and (2.0**w).lower == 0.0
    assert (s - t).lower == -math.inf and (s * w).lower == -math.inf and (1 / w).lower == -math.inf


def test_positive_expressions_pass_as_scales():
    m = fv.Model()
    precision = m.param("precision", lower=0.0)
    s, t = m.param("s", lower=0.0), m.param("t", lower=0.0)
    g = m.param("g", shape=(3,), lower=0.0)
    w = m.param("w")
    y = np.zeros(3)
    m.add("normal", y, loc=0.0, scale=1 / precision)
    m.add("normal", y, loc=0.0, scale=s / t)
    m.add("normal", y, loc=0.0, scale=g / fv.sum(g))
    m.add("normal", y, loc=0.0, scale=w**2 + 0.1)
    m.add("normal", y, loc=0.0, scale=np.sqrt(s))
    m.add("beta", fv.softmax(g), a=2.0, b=2.0)
    with pytest.raises(ValueError) as err:
        m.add("normal", y, loc=0.0, scale=w * s)
    message = str(err.value)
    assert "must be > 0" in message and "the expression '(w * s)'" in message
    assert "declare it with matching" not in message
    with pytest.raises(ValueError, match="but parameter 'w' .*declare it with matching lower/upper bounds"):
        m.add("normal", y, loc=0.0, scale=w)


def test_broadcasting_in_the_new_binary_operations():
    # pow and log_add_exp through the element-by-element path with broadcast operands, a scalar
    # parameter exponent, and a vectorised-size (>= 16 elements) operand
    m = fv.Model()
    x = m.param("x", shape=(3, 1), lower=0.0)
    e = m.param("e")
    v = m.param("v", shape=(4,))
    big = m.param("big", shape=(4, 5))
    p = np.array([0.5, 1.0, 2.5, 3.0])
    w = _weights((3, 4))
    m.factor(w * x**p)
    m.factor(w * x**e)
    m.factor(w * fv.log_add_exp(x, v))
    m.factor(fv.log_add_exp(big, v[:, None]) * 0.5)
    m.factor(fv.pow(big * big + 1.0, e))

    def expected(c):
        xv, ev, vv, bv = np.exp(c[:3]).reshape(3, 1), c[3], c[4:8], c[8:].reshape(4, 5)
        return (
            (w * xv**p).sum()
            + (w * xv**ev).sum()
            + (w * np.logaddexp(xv, vv)).sum()
            + 0.5 * np.logaddexp(bv, vv[:, None]).sum()
            + ((bv * bv + 1.0) ** ev).sum()
            + c[:3].sum()
        )

    zeta = np.random.default_rng(15).normal(0.0, 0.5, size=(m.dim, DRAWS))
    _check_batch(m, zeta, expected)


@pytest.mark.parametrize("size", [4, 20])  # element path and vectorised path
def test_log_add_exp_of_minus_infinities(size):
    # log(a - a) = log(0) = -inf exactly: log_add_exp of two is -inf (not NaN), of -inf and b is b
    m = fv.Model()
    a = m.param("a", shape=(size,))
    minus_inf = fv.log(a - a)
    m.deterministic("both", fv.log_add_exp(minus_inf, minus_inf))
    m.deterministic("one", fv.log_add_exp(minus_inf, a))
    z = np.linspace(-3.0, 3.0, size)
    values = m.constrain(z)
    assert np.all(values["both"] == -np.inf)
    np.testing.assert_array_equal(values["one"], z)
