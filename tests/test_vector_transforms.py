"""Vector transforms (``Model.param(..., transform=...)``): round trips, constraints, log-Jacobians
against numerical Jacobian determinants, gradients against finite differences, fits with known
answers, copies and pickles, and argument errors."""

import copy
import math
import pickle
import warnings

import fastvi as fv
import numpy as np
import pytest

# (transform, shape) pairs the tests run over: one block, and batches of independent ones
CASES = [
    ("simplex", (2,)),
    ("simplex", (4,)),
    ("simplex", (2, 3)),
    ("ordered", (1,)),
    ("ordered", (5,)),
    ("ordered", (2, 3)),
    ("positive_ordered", (4,)),
    ("positive_ordered", (3, 2)),
    ("cholesky_cov", (1, 1)),
    ("cholesky_cov", (3, 3)),
    ("cholesky_cov", (2, 2, 2)),
    ("cholesky_corr", (2, 2)),
    ("cholesky_corr", (4, 4)),
    ("cholesky_corr", (2, 3, 3)),
]
IDS = [f"{t}-{'x'.join(map(str, s))}" for t, s in CASES]


def free_count(transform, shape):
    k = shape[-1]
    count = math.prod(shape[:-2] if transform.startswith("cholesky") else shape[:-1])
    each = {
        "simplex": k - 1,
        "ordered": k,
        "positive_ordered": k,
        "cholesky_cov": k * (k + 1) // 2,
        "cholesky_corr": k * (k - 1) // 2,
    }[transform]
    return count * each


def free_values(transform, x):
    """The values the log-Jacobian is taken with respect to, flattened (C order, one block after
    another): a simplex's first K - 1, a Cholesky factor's (strictly, for a correlation matrix)
    lower triangle, row by row."""
    if transform == "simplex":
        return x[..., :-1].reshape(x.shape[:-1] + (-1,)).reshape(-1)
    if transform in ("ordered", "positive_ordered"):
        return x.reshape(-1)
    k = x.shape[-1]
    rows, cols = np.tril_indices(k, 0 if transform == "cholesky_cov" else -1)
    return x[..., rows, cols].reshape(-1)


def check_constraint(transform, x, tol=1e-12):
    if transform == "simplex":
        assert np.all(x >= 0)
        np.testing.assert_allclose(x.sum(axis=-1), 1.0, rtol=0, atol=tol)
    elif transform == "ordered":
        assert np.all(np.diff(x, axis=-1) > 0)
    elif transform == "positive_ordered":
        assert np.all(x > 0) and np.all(np.diff(x, axis=-1) > 0)
    else:
        k = x.shape[-1]
        assert np.all(x[..., np.triu_indices(k, 1)[0], np.triu_indices(k, 1)[1]] == 0)
        assert np.all(np.diagonal(x, axis1=-2, axis2=-1) > 0)
        if transform == "cholesky_corr":
            corr = x @ np.swapaxes(x, -1, -2)
            np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, rtol=0, atol=tol)
            assert np.all(np.abs(x) <= 1.0)


def model_with(transform, shape):
    m = fv.Model()
    p = m.param("x", shape=shape, transform=transform)
    return m, p


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_dimension_and_shapes(transform, shape):
    m, p = model_with(transform, shape)
    assert m.dim == p.free_size == free_count(transform, shape)
    assert p.size == math.prod(shape) and p.shape == shape and p.transform == transform and p.constrained
    zeta = np.random.default_rng(0).normal(size=(m.dim, 7))
    assert m.constrain(zeta)["x"].shape == (7,) + shape
    assert m.constrain(zeta[:, 0])["x"].shape == shape


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_round_trip_and_constraint(transform, shape):
    m, _ = model_with(transform, shape)
    rng = np.random.default_rng(1)
    for scale in (0.5, 2.0):
        zeta = scale * rng.normal(size=m.dim)
        x = m.constrain(zeta)["x"]
        check_constraint(transform, x)
        np.testing.assert_allclose(m.unconstrain({"x": x}), zeta, rtol=1e-8, atol=1e-8)


def test_zero_is_uniform_simplex_and_identity():
    m = fv.Model()
    m.param("s", shape=5, transform="simplex")
    m.param("c", shape=(3, 3), transform="cholesky_corr")
    m.param("v", shape=(3, 3), transform="cholesky_cov")
    m.param("o", shape=3, transform="ordered")
    m.param("po", shape=3, transform="positive_ordered")
    values = m.constrain(np.zeros(m.dim))
    np.testing.assert_allclose(values["s"], np.full(5, 0.2), rtol=1e-14)
    np.testing.assert_allclose(values["c"], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(values["v"], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(values["o"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(values["po"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_draws_far_out_satisfy_the_constraint(transform, shape):
    m, _ = model_with(transform, shape)
    zeta = 6.0 * np.random.default_rng(2).normal(size=(m.dim, 50))
    x = m.constrain(zeta)["x"]
    assert np.all(np.isfinite(x))
    check_constraint(transform, x, tol=1e-10)
    lp, grad = m.log_density(zeta)
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_log_jacobian_matches_numerical_determinant(transform, shape):
    # With no factors the log density is exactly log|det J| of zeta -> the free values.
    m, _ = model_with(transform, shape)
    rng = np.random.default_rng(3)
    h = 1e-6
    for _ in range(3):
        zeta = rng.normal(size=m.dim)
        jac = np.empty((m.dim, m.dim))
        for i, e in enumerate(np.eye(m.dim)):
            plus = free_values(transform, m.constrain(zeta + h * e)["x"])
            minus = free_values(transform, m.constrain(zeta - h * e)["x"])
            jac[:, i] = (plus - minus) / (2 * h)
        sign, logdet = np.linalg.slogdet(jac)
        assert sign != 0
        lp, grad = m.log_density(zeta)
        assert lp == pytest.approx(logdet, abs=1e-6)
        fd = np.array(
            [(m.log_density(zeta + h * e)[0] - m.log_density(zeta - h * e)[0]) / (2 * h) for e in np.eye(m.dim)]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_gradient_through_factors_matches_finite_differences(transform, shape):
    # normal factors on the values (and on an expression of them) exercise J^T g
    rng = np.random.default_rng(4)
    m, x = model_with(transform, shape)
    loc = rng.normal(size=shape)
    m.add("normal", x, loc=loc, scale=0.7)
    m.add("normal", 0.3, loc=fv.sum(x * rng.normal(size=shape)), scale=2.0)
    zeta = rng.normal(size=(m.dim, 4))
    lp, grad = m.log_density(zeta)
    h = 1e-6
    for i in range(m.dim):
        e = np.zeros((m.dim, 1))
        e[i] = h
        fd = (m.log_density(zeta + e)[0] - m.log_density(zeta - e)[0]) / (2 * h)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transform,shape", CASES, ids=IDS)
def test_mixed_with_other_parameters(transform, shape):
    # blocks after a vector transform start at the right coordinate and row
    m = fv.Model()
    a = m.param("a", shape=2, lower=0.0)
    x = m.param("x", shape=shape, transform=transform)
    b = m.param("b", shape=3)
    assert (a.offset, x.offset, b.offset) == (0, 2, 2 + x.free_size)
    zeta = np.random.default_rng(5).normal(size=m.dim)
    values = m.constrain(zeta)
    np.testing.assert_allclose(values["a"], np.exp(zeta[:2]))
    np.testing.assert_allclose(values["b"], zeta[-3:])
    np.testing.assert_allclose(m.unconstrain(values), zeta, rtol=1e-9, atol=1e-9)


def test_flat_simplex_is_uniform_on_the_simplex():
    # Stan's Jacobian makes a simplex with no factor uniform: exp(lp) integrates over zeta to the
    # simplex's volume in its K - 1 free coordinates, 1 / (K - 1)! (K = 3: 1/2).
    m, _ = model_with("simplex", (3,))
    g = np.linspace(-40.0, 40.0, 801)
    z1, z2 = np.meshgrid(g, g, indexing="ij")
    lp, _ = m.log_density(np.stack([z1.ravel(), z2.ravel()]))
    integral = np.exp(lp).sum() * (g[1] - g[0]) ** 2
    assert integral == pytest.approx(0.5, rel=1e-4)


def _quiet_fit(m, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fv.fit(m, seed=kwargs.pop("seed", 0), **kwargs)


def test_fit_flat_simplex_recovers_the_dirichlet():
    # no factor: Dirichlet(1, 1, 1), each coordinate Beta(1, 2): mean 1/3, sd sqrt(2) / 6
    m, _ = model_with("simplex", (3,))
    fit = _quiet_fit(m, family="fullrank")
    draws = fit.sample(2000, seed=1)["x"]
    assert draws.shape == (2000, 3)
    check_constraint("simplex", draws)
    mean, std = fit.mean(), fit.std()
    assert mean["x"].shape == (3,) and std["x"].shape == (3,)
    np.testing.assert_allclose(mean["x"].sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(mean["x"], 1 / 3, atol=0.05)
    corrected = fit.mean(importance="psis")["x"]
    np.testing.assert_allclose(corrected, 1 / 3, atol=0.03)
    np.testing.assert_allclose(fit.std(importance="psis")["x"], math.sqrt(2) / 6, atol=0.03)
    assert np.isfinite(fit.khat)


def test_fit_flat_cholesky_corr_is_uniform_in_the_free_entries():
    # no factor: Stan's Jacobian is that of the free (strictly lower) entries, so each row's
    # entries below the diagonal are uniform in the unit ball (not LKJ(1), which also weighs by
    # the diagonal): L[1, 0] ~ U(-1, 1), sd 1/sqrt(3); (L[2, 0], L[2, 1]) uniform on the unit
    # disk, each with a semicircle marginal of sd 1/2
    m, _ = model_with("cholesky_corr", (3, 3))
    fit = _quiet_fit(m, family="fullrank")
    draws = fit.sample(500, seed=2)["x"]
    assert draws.shape == (500, 3, 3)
    check_constraint("cholesky_corr", draws, tol=1e-12)
    mean, std = fit.mean(importance="psis")["x"], fit.std(importance="psis")["x"]
    np.testing.assert_allclose([mean[1, 0], mean[2, 0], mean[2, 1]], 0.0, atol=0.04)
    np.testing.assert_allclose([std[1, 0], std[2, 0], std[2, 1]], [1 / math.sqrt(3), 0.5, 0.5], atol=0.04)
    np.testing.assert_allclose(fit.mean()["x"][0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(fit.std()["x"][0], 0.0)


def test_fit_normal_factors_on_an_ordered_vector():
    m = fv.Model()
    c = m.param("c", shape=4, transform="ordered")
    m.add("normal", c, loc=np.array([-2.0, -0.5, 0.5, 2.0]), scale=0.3)
    # The posterior is about independent N(loc, 0.3) in x (the ordering truncates a little): in
    # zeta (x_0 and the log gaps) it is strongly correlated, so mean-field q is poor (its k-hat
    # says so, about 0.9) and full-rank is the family to use.
    fit = _quiet_fit(m, family="fullrank")
    mean, std = fit.mean()["c"], fit.std()["c"]
    assert np.all(np.isfinite(mean)) and np.all(np.diff(mean) > 0)
    np.testing.assert_allclose(mean, [-2.0, -0.5, 0.5, 2.0], atol=0.05)
    np.testing.assert_allclose(std, 0.285, atol=0.04)
    draws = fit.sample(1000, seed=3)["c"]
    check_constraint("ordered", draws)
    table = fv.summary(fit)
    assert "c[3]" in str(table)
    assert fit.laplace is not None and fit.laplace.kind == "ok"


def test_fit_positive_ordered_and_simplex_with_normal_factors():
    m = fv.Model()
    po = m.param("po", shape=3, transform="positive_ordered")
    w = m.param("w", shape=3, transform="simplex")
    m.add("normal", po, loc=np.array([1.0, 2.0, 4.0]), scale=0.2)
    m.add("normal", w, loc=np.array([0.2, 0.3, 0.5]), scale=0.03)
    fit = _quiet_fit(m, family="fullrank")
    mean = fit.mean()
    np.testing.assert_allclose(mean["po"], [1.0, 2.0, 4.0], atol=0.1)
    np.testing.assert_allclose(mean["w"], [0.2, 0.3, 0.5], atol=0.02)
    draws = fit.sample(500, seed=4)
    check_constraint("positive_ordered", draws["po"])
    check_constraint("simplex", draws["w"])


def test_fit_cholesky_cov_with_normal_factors():
    # independent normal factors on each entry of L: the posterior of the off-diagonal entry is
    # the factor itself; the diagonal's has the Jacobian of exp on top (the fit is in log space)
    m = fv.Model()
    L = m.param("L", shape=(2, 2), transform="cholesky_cov")
    target = np.array([[1.5, 0.0], [-0.7, 0.8]])
    m.add("normal", L, loc=target, scale=0.05)
    fit = _quiet_fit(m)
    mean = fit.mean()["L"]
    np.testing.assert_allclose(mean, target, atol=0.02)
    assert fit.std()["L"][0, 1] == 0.0
    check_constraint("cholesky_cov", fit.sample(200, seed=5)["L"])


def test_init_and_deterministic_with_transforms():
    m = fv.Model()
    w = m.param("w", shape=3, transform="simplex")
    m.add("normal", w, loc=np.array([0.6, 0.3, 0.1]), scale=0.05)
    m.deterministic("w0", w[0])
    fit = _quiet_fit(m, init={"w": np.array([0.5, 0.25, 0.25])})
    assert abs(fit.mean()["w0"] - fit.mean()["w"][0]) < 0.01
    with pytest.raises(ValueError, match="'w' must be a simplex"):
        m.unconstrain({"w": np.array([0.5, 0.6, 0.1])})


def test_copies_and_pickles_replay_transforms():
    m = fv.Model()
    m.param("a", lower=0.0)
    m.param("w", shape=(2, 3), transform="simplex")
    L = m.param("L", shape=(3, 3), transform="cholesky_corr")
    m.add("normal", L, loc=0.0, scale=1.0)
    zeta = np.random.default_rng(6).normal(size=(m.dim, 3))
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other.dim == m.dim
        assert {n: (p.transform, p.free_size, p.offset) for n, p in other.params.items()} == {
            n: (p.transform, p.free_size, p.offset) for n, p in m.params.items()
        }
        np.testing.assert_array_equal(other.log_density(zeta)[0], m.log_density(zeta)[0])
        np.testing.assert_array_equal(other.constrain(zeta)["w"], m.constrain(zeta)["w"])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"shape": 3, "transform": "simplex", "lower": 0.0}, ValueError, "'t'.*cannot be combined with lower"),
        ({"shape": 3, "transform": "ordered", "upper": 1.0}, ValueError, "'t'.*cannot be combined"),
        ({"shape": 3, "transform": "sorted"}, ValueError, "'t': unknown transform 'sorted'"),
        ({"shape": 3, "transform": 1}, TypeError, "'t': transform must be a str"),
        ({"shape": 1, "transform": "simplex"}, ValueError, "'t': transform 'simplex' needs K >= 2"),
        ({"shape": (), "transform": "simplex"}, ValueError, r"'t': transform 'simplex' needs a shape \(K,\)"),
        ({"shape": (), "transform": "ordered"}, ValueError, r"'t': transform 'ordered' needs a shape \(K,\)"),
        (
            {"shape": 3, "transform": "cholesky_cov"},
            ValueError,
            r"'t': transform 'cholesky_cov' needs a shape \(K, K\)",
        ),
        ({"shape": (2, 3), "transform": "cholesky_corr"}, ValueError, "'t': .* needs square matrices"),
        ({"shape": (1, 1), "transform": "cholesky_corr"}, ValueError, "'t': transform 'cholesky_corr' needs K >= 2"),
        ({"shape": (0,), "transform": "simplex"}, ValueError, "'t': every dimension"),
    ],
)
def test_bad_transform_arguments(kwargs, error, match):
    m = fv.Model()
    with pytest.raises(error, match=match):
        m.param("t", **kwargs)
    assert m.dim == 0 and not m.params


@pytest.mark.parametrize(
    "transform,shape,value,match",
    [
        ("simplex", (3,), [0.2, 0.2, 0.2], "must be a simplex"),
        ("simplex", (3,), [-0.2, 0.6, 0.6], "must be a simplex"),
        ("ordered", (3,), [0.0, 1.0, 1.0], "strictly increasing"),
        ("positive_ordered", (2,), [-1.0, 1.0], "must be positive"),
        ("cholesky_cov", (2, 2), [[1.0, 0.5], [0.0, 1.0]], "lower triangular"),
        ("cholesky_cov", (2, 2), [[1.0, 0.0], [0.5, -1.0]], "positive diagonal"),
        ("cholesky_corr", (2, 2), [[1.0, 0.0], [0.5, 0.5]], "unit length"),
    ],
)
def test_unconstrain_refuses_values_outside_the_constraint(transform, shape, value, match):
    m, _ = model_with(transform, shape)
    with pytest.raises(ValueError, match=f"value of 'x' {match}|value of 'x' must.*{match}"):
        m.unconstrain({"x": np.array(value)})


def test_moments_are_those_of_the_fixed_monte_carlo_draws():
    # mean() / std() of a vector-transformed parameter (and of deterministics) are the moments of
    # sample(10_000, seed=0), computed in batches
    m = fv.Model()
    w = m.param("w", shape=3, transform="simplex")
    a = m.param("a", lower=0.0)
    m.add("normal", w, loc=np.array([0.6, 0.3, 0.1]), scale=0.05)
    m.add("normal", a, loc=1.0, scale=1.0)
    m.deterministic("wa", w[0] * a)
    fit = _quiet_fit(m, steps=2000)
    draws = fit.sample(10_000, seed=0)
    mean, std = fit.mean(), fit.std()
    assert list(mean) == ["w", "a", "wa"]
    for name in ("w", "wa"):
        np.testing.assert_allclose(mean[name], draws[name].mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std[name], draws[name].std(axis=0, ddof=1), rtol=1e-9)
    again = fit.mean()
    for name in mean:  # repeated calls agree exactly
        np.testing.assert_array_equal(again[name], mean[name])


def test_coordinate_names_of_free_coordinates():
    from fastvi.laplace import coordinate_names

    m = fv.Model()
    m.param("s")
    m.param("w", shape=3, transform="simplex")
    m.param("b", shape=2)
    assert coordinate_names(m, range(m.dim)) == ("s", "w[free 0]", "w[free 1]", "b[0]", "b[1]")


@pytest.mark.parametrize("family", ["meanfield", "fullrank"])
def test_exact_moments_of_ordered_and_cholesky_cov_match_monte_carlo(family):
    # ordered, positive_ordered and cholesky_cov moments are exact under q (with q's
    # covariances): they agree with 400,000 draws of q to a few Monte Carlo standard errors
    rng = np.random.default_rng(7)
    m = fv.Model()
    o = m.param("o", shape=(2, 3), transform="ordered")
    po = m.param("po", shape=4, transform="positive_ordered")
    L = m.param("L", shape=(3, 3), transform="cholesky_cov")
    m.add("normal", o, loc=np.array([[-1.0, 0.0, 0.4], [0.0, 1.0, 3.0]]), scale=0.4)
    m.add("normal", po, loc=np.array([0.5, 1.0, 1.2, 3.0]), scale=0.3)
    m.add("normal", L, loc=np.tril(rng.normal(size=(3, 3))) + np.eye(3), scale=0.3)
    fit = _quiet_fit(m, family=family, steps=3000)
    mean, std = fit.mean(), fit.std()
    n = 400_000
    draws = fit.sample(n, seed=3)
    for name in ("o", "po", "L"):
        mc_mean, mc_sd = draws[name].mean(axis=0), draws[name].std(axis=0)
        assert mean[name].shape == std[name].shape == m.params[name].shape
        np.testing.assert_allclose(mean[name], mc_mean, atol=5e-3, rtol=0)
        np.testing.assert_allclose(std[name], mc_sd, atol=5e-3, rtol=0.01)
    assert np.all(std["L"][np.triu_indices(3, 1)] == 0)


@pytest.mark.parametrize("family", ["meanfield", "fullrank", "lowrank"])
def test_every_transform_through_a_fit(family):
    # sample / mean / std / summary / PSIS / Laplace / pickled fit, with every transform at once
    rng = np.random.default_rng(8)
    m = fv.Model()
    shapes = {"simplex": (2, 4), "ordered": (3,), "positive_ordered": (3,), "cholesky_corr": (3, 3)}
    shapes["cholesky_cov"] = (2, 2)
    params = {t: m.param(t, shape=s, transform=t) for t, s in shapes.items()}
    for t, p in params.items():
        m.add("normal", p, loc=0.3 * rng.normal(size=shapes[t]), scale=1.0)
    fit = _quiet_fit(m, family=family, steps=4000)
    assert fit.model.dim == sum(free_count(t, s) for t, s in shapes.items())
    assert fit.laplace is not None and fit.laplace.kind == "ok"
    assert fit.psis is not None and np.isfinite(fit.khat)
    draws = fit.sample(300, seed=9)
    mean, std = fit.mean(), fit.std()
    for t, s in shapes.items():
        assert draws[t].shape == (300,) + s and mean[t].shape == s and std[t].shape == s
        check_constraint(t, draws[t], tol=1e-10)
        assert np.all(np.isfinite(mean[t])) and np.all(std[t] >= 0)
    check_constraint("simplex", mean["simplex"], tol=1e-10)  # a mean of simplexes is one
    assert np.all(np.diff(mean["ordered"]) > 0) and np.all(np.diff(mean["positive_ordered"]) > 0)
    text = str(fv.summary(fit))
    assert "simplex[1, 3]" in text and "cholesky_corr[2, 1]" in text
    again = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(again.sample(5, seed=1)["simplex"], fit.sample(5, seed=1)["simplex"])
    corrected = fit.mean(importance="psis")
    assert corrected["cholesky_corr"].shape == (3, 3)


def test_simplex_with_the_dirichlet_kernel():
    # dirichlet(alpha) on a simplex parameter: log p(zeta) is scipy's Dirichlet log density at
    # x plus the stick-breaking log-Jacobian, and the fit recovers the Dirichlet's moments
    from scipy import stats

    alpha = np.array([2.0, 3.0, 5.0])
    m, w = model_with("simplex", (3,))
    m.add("dirichlet", w, alpha=alpha)
    flat, _ = model_with("simplex", (3,))
    zeta = np.random.default_rng(10).normal(size=(2, 6))
    x = m.constrain(zeta)["x"]
    expected = np.array([stats.dirichlet.logpdf(xs, alpha) for xs in x]) + flat.log_density(zeta)[0]
    np.testing.assert_allclose(m.log_density(zeta)[0], expected, rtol=1e-10)
    fit = _quiet_fit(m, family="fullrank")
    a0 = alpha.sum()
    np.testing.assert_allclose(fit.mean(importance="psis")["x"], alpha / a0, atol=0.01)
    sd = np.sqrt(alpha * (a0 - alpha) / (a0**2 * (a0 + 1)))
    np.testing.assert_allclose(fit.std(importance="psis")["x"], sd, atol=0.01)


def test_cholesky_corr_with_lkj_1_is_uniform_over_correlations():
    # lkj_corr_cholesky(eta=1) on a cholesky_corr parameter: L L^T uniform over 3 x 3 correlation
    # matrices, whose correlations are 2 Beta(3/2, 3/2) - 1 (mean 0, sd 1/2)
    m, L = model_with("cholesky_corr", (3, 3))
    m.add("lkj_corr_cholesky", L, eta=1.0)
    fit = _quiet_fit(m, family="fullrank")
    draws = fit.sample(200, seed=4)["x"]
    check_constraint("cholesky_corr", draws)
    mean, std = fit.mean(importance="psis")["x"], fit.std(importance="psis")["x"]
    np.testing.assert_allclose([mean[1, 0], mean[2, 0]], 0.0, atol=0.04)
    np.testing.assert_allclose([std[1, 0], std[2, 0]], 0.5, atol=0.04)
