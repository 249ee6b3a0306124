"""The low-rank plus diagonal Gaussian family: Sigma = diag(d)^2 + B B^T, d = exp(omega).

phi = [mu (D), omega (D), B (D x r, column-major)]; draws use D + r noise dimensions,
zeta = mu + d o eps1 + B eps2.

Closed forms for the diagonal target p(z) = prod_i Normal(z_i | m_i, s_i) of test_elbo.py:
  ELBO = sum_i [-log s_i - log(2 pi)/2 - ((mu_i - m_i)^2 + Sigma_ii) / (2 s_i^2)] + H(q),
  H(q) = D/2 (1 + log 2 pi) + 1/2 log det Sigma,   Sigma_ii = d_i^2 + |B_i.|^2,
  dELBO/dmu = -(mu - m) / s^2
  dELBO/domega_i = -d_i^2 / s_i^2 + (Sigma^-1)_ii d_i^2       (d Sigma_ii / d omega_i = 2 d_i^2)
  dELBO/dB = -diag(s^-2) B + Sigma^-1 B                       (dH/dB = Sigma^-1 B)
"""

import math
import sys
import warnings

import fastvi as fv
import numpy as np
import posteriors as P  # tests/posteriors.py (pytest puts tests/ on sys.path)
import pytest
from fastvi import _core
from scipy import stats

M = np.array([1.0, -2.0, 0.5])
S = np.array([0.5, 2.0, 1.5])
SIGMA, TAU = 0.5, 2.0


def _unpack(phi, d, r):
    return phi[:d], phi[d : 2 * d], phi[2 * d :].reshape(d, r, order="F")


def _pack(mu, omega, b):
    return np.concatenate([mu, omega, b.ravel(order="F")])


def _cov(omega, b):
    return np.diag(np.exp(2 * omega)) + b @ b.T


def _diagonal_target():
    model = fv.Model()
    z = model.param("z", shape=(3,))
    model.add("normal", z, loc=M, scale=S)
    return model


def _gaussian_target(mean, cov):
    """A model whose density is Normal(mean, cov) up to a constant: with cov = L L^T, the factors
    normal(L^-1 mean | L^-1 z, 1) add -|L^-1 (z - mean)|^2 / 2 - D/2 log(2 pi), which is
    log Normal(z | mean, cov) + log det L. So log Z = log det L = 1/2 log det cov."""
    w = np.linalg.inv(np.linalg.cholesky(cov))
    model = fv.Model()
    z = model.param("z", shape=(len(mean),))
    model.add("normal", w @ mean, loc=w @ z, scale=1.0)
    return model


def _exact(phi, d, r):
    mu, omega, b = _unpack(phi, d, r)
    cov = _cov(omega, b)
    inv = np.linalg.inv(cov)
    entropy = stats.multivariate_normal(cov=cov).entropy()
    elbo = np.sum(-np.log(S) - 0.5 * math.log(2 * math.pi) - ((mu - M) ** 2 + np.diag(cov)) / (2 * S**2)) + entropy
    g_mu = -(mu - M) / S**2
    g_omega = (np.diag(inv) - 1 / S**2) * np.exp(2 * omega)
    g_b = -b / (S**2)[:, None] + inv @ b
    return elbo, _pack(g_mu, g_omega, g_b)


def _random_phi(fam, d, r, seed):
    rng = np.random.default_rng(seed)
    phi = fam.initialise(rng.normal(size=d), 0.7)
    phi[2 * d :] = 0.5 * rng.normal(size=d * r)
    return phi


# ---- moments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,r", [(1, 1), (3, 1), (3, 2), (3, 3), (7, 3)])
def test_layout_entropy_and_covariance(d, r):
    fam = _core.Family("lowrank", d, rank=r)
    assert (fam.name, fam.dim, fam.rank, fam.num_params, fam.noise_dim) == ("lowrank", d, r, (2 + r) * d, d + r)
    phi = _random_phi(fam, d, r, seed=d + r)
    mu, omega, b = _unpack(phi, d, r)
    cov = _cov(omega, b)
    np.testing.assert_allclose(fam.covariance(phi), cov, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(fam.mean(phi), mu)
    assert fam.entropy(phi) == pytest.approx(stats.multivariate_normal(cov=cov).entropy(), rel=1e-12, abs=1e-12)


def test_other_families_have_no_rank():
    assert _core.Family("meanfield", 3).rank is None
    assert _core.Family("fullrank", 3).noise_dim == 3


@pytest.mark.parametrize("d,r", [(1, 1), (5, 2), (40, 7), (8, 8)])
def test_initial_point(d, r):
    # every marginal sd is init_scale, and B is small, not zero, with orthogonal columns (so no
    # column starts at the B = 0 saddle or parallel to another)
    fam = _core.Family("lowrank", d, rank=r)
    mean = np.linspace(-1, 1, d)
    phi = fam.initialise(mean, 0.3)
    np.testing.assert_array_equal(phi[:d], mean)
    np.testing.assert_allclose(np.sqrt(np.diag(fam.covariance(phi))), 0.3, rtol=1e-14)
    b = _unpack(phi, d, r)[2]
    gram = b.T @ b
    np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-15)
    assert np.all(np.diag(gram) > 0)
    assert np.abs(b).max() <= 0.1 * 0.3 * math.sqrt(2) + 1e-15


# ---- the gradient estimators ----------------------------------------------------------------------


@pytest.mark.parametrize("gradient", ["stl", "closed_form"])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_gradient_estimator_is_unbiased(r, gradient):
    model = _diagonal_target()
    fam = _core.Family("lowrank", 3, rank=r)
    phi = _random_phi(fam, 3, r, seed=3)
    exact_elbo, exact_grad = _exact(phi, 3, r)
    elbos, grads = [], []
    for step in range(200):
        elbo, grad = _core.elbo_gradient(
            model._core, fam, phi, draws=100, seed=11, step=step, gradient=getattr(_core.GradientEstimator, gradient)
        )
        elbos.append(elbo)
        grads.append(grad)
    grads = np.array(grads)
    mean, se = grads.mean(axis=0), grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
    # 20,000 draws in all; each coordinate within 4.5 standard errors of the exact value
    assert np.all(np.abs(mean - exact_grad) <= 4.5 * se), (mean, exact_grad, se)
    elbos = np.array(elbos)
    assert abs(elbos.mean() - exact_elbo) <= 4.5 * elbos.std(ddof=1) / math.sqrt(len(elbos))


@pytest.mark.parametrize("r", [1, 2])
def test_sticking_the_landing_has_zero_variance_at_the_posterior(r):
    # A Gaussian posterior with covariance diag(d)^2 + B B^T is exactly representable: with q equal
    # to it, every draw's STL gradient is zero up to rounding and log p - log q is the same constant
    # log Z for every draw; the closed-form entropy estimator still scatters.
    d = 5
    rng = np.random.default_rng(r)
    mean, omega, b = rng.normal(size=d), 0.3 * rng.normal(size=d), rng.normal(size=(d, r))
    cov = _cov(omega, b)
    model = _gaussian_target(mean, cov)
    fam = _core.Family("lowrank", d, rank=r)
    phi = _pack(mean, omega, b)
    log_z = 0.5 * np.linalg.slogdet(cov)[1]
    for step in range(3):
        elbo, grad = _core.elbo_gradient(model._core, fam, phi, draws=10, seed=0, step=step)
        np.testing.assert_allclose(grad, 0.0, atol=1e-11)
        assert elbo == pytest.approx(log_z, abs=1e-11)
    _, grad_cf = _core.elbo_gradient(
        model._core, fam, phi, draws=10, seed=0, step=0, gradient=_core.GradientEstimator.closed_form
    )
    assert np.abs(grad_cf).max() > 1e-3


@pytest.mark.parametrize("gradient", ["stl", "closed_form"])
@pytest.mark.parametrize("d,r", [(3, 1), (4, 2), (6, 6)])
def test_zero_factor_matches_meanfield_on_the_same_draws(d, r, gradient):
    # With B = 0, q is the mean-field Gaussian, and eps1 (the first D noise rows) is the very noise
    # the mean-field family draws for the same (seed, step): the mu and omega gradients and the ELBO
    # estimate must agree with mean-field's to rounding.
    model = fv.Model()
    z = model.param("z", shape=(d,))
    model.add("student_t", z, df=4.0, loc=np.linspace(-1, 1, d), scale=np.linspace(0.5, 2.0, d))
    rng = np.random.default_rng(d)
    mu, omega = rng.normal(size=d), 0.5 * rng.normal(size=d)
    est = getattr(_core.GradientEstimator, gradient)
    mf = _core.Family("meanfield", d)
    lr = _core.Family("lowrank", d, rank=r)
    for step in range(3):
        elbo_mf, grad_mf = _core.elbo_gradient(
            model._core, mf, np.concatenate([mu, omega]), draws=7, seed=5, step=step, gradient=est
        )
        elbo_lr, grad_lr = _core.elbo_gradient(
            model._core, lr, _pack(mu, omega, np.zeros((d, r))), draws=7, seed=5, step=step, gradient=est
        )
        np.testing.assert_allclose(grad_lr[: 2 * d], grad_mf, rtol=1e-12, atol=1e-12)
        assert elbo_lr == pytest.approx(elbo_mf, rel=1e-12)
        # B's gradient is not zero on any one draw set, but is zero in expectation (B = 0 is a
        # stationary point, which is why the fit does not start there)
        assert np.abs(grad_lr[2 * d :]).max() > 0


# ---- fits with exact answers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression():
    # tests/test_exact_posteriors.py's conjugate regression, with the likelihood as an expression
    rng = np.random.default_rng(2024)
    n, k = 60, 4
    X = rng.normal(size=(n, k))
    X[:, 1] += 0.8 * X[:, 0]
    y = X @ np.array([1.0, -0.5, 0.25, 2.0]) + SIGMA * rng.normal(size=n)
    precision = X.T @ X / SIGMA**2 + np.eye(k) / TAU**2
    cov = np.linalg.inv(precision)
    model = fv.Model()
    beta = model.param("beta", shape=(k,))
    model.add("normal", beta, loc=0.0, scale=TAU)
    model.add("normal", y, loc=X @ beta, scale=SIGMA)
    return model, cov @ X.T @ y / SIGMA**2, cov


def _assert_recovers(approx, mean, cov, name, tol=1.0):
    sd = np.sqrt(np.diag(cov))
    # mean within 0.05 posterior sd; sds within 3 %; correlations within 0.03 (times tol)
    np.testing.assert_array_less(np.abs(approx.mean()[name] - mean) / sd, 0.05 * tol)
    np.testing.assert_allclose(approx.std()[name], sd, rtol=0.03 * tol)
    fitted = approx.unconstrained_cov()
    fitted_sd = np.sqrt(np.diag(fitted))
    np.testing.assert_allclose(fitted / np.outer(fitted_sd, fitted_sd), cov / np.outer(sd, sd), atol=0.03 * tol)


@pytest.mark.parametrize("rank", [3, 4])
def test_rank_k_minus_1_and_k_recover_the_regression_posterior(regression, rank):
    # Any 4 x 4 covariance is diag(d)^2 + B B^T with rank(B) = 3 (take d^2 = the smallest
    # eigenvalue), so ranks 3 and 4 both contain the posterior. Here, unlike for rank << D, the
    # optimal (d, B) is not unique even up to rotations of B: there is a continuum of them, along
    # which Adam's scale-free steps make the iterates wander by ~lr per step, and the average of
    # points spread along that curved set has too small a covariance. With the default lr = 0.01
    # the sds come out 0.5-10 % small (seeds 0-5); lr = 0.003 keeps them within 1 %. (Averaging B
    # without first aligning the iterates by rotation shrank the sds by up to 70 %.)
    model, mean, cov = regression
    approx = fv.fit(model, family="lowrank", rank=rank, steps=30_000, draws=4, lr=0.003, seed=0)
    assert approx.converged
    assert approx.rank == rank and approx.options["rank"] == rank
    _assert_recovers(approx, mean, cov, "beta")


def test_rank_1_recovers_the_mean_of_the_regression_posterior(regression):
    # For a Gaussian posterior the KL-optimal q has the exact mean whatever its covariance family.
    model, mean, cov = regression
    approx = fv.fit(model, family="lowrank", rank=1, steps=30_000, draws=4, seed=0)
    assert approx.converged
    np.testing.assert_array_less(np.abs(approx.mean()["beta"] - mean) / np.sqrt(np.diag(cov)), 0.05)


@pytest.fixture(scope="module")
def diagonal_plus_rank_1():
    d = 6
    rng = np.random.default_rng(6)
    mean, b = rng.normal(size=d), rng.normal(size=d)
    cov = np.diag(np.linspace(0.3, 1.0, d) ** 2) + np.outer(b, b)
    return _gaussian_target(mean, cov), mean, cov


def test_rank_1_recovers_a_diagonal_plus_rank_1_posterior(diagonal_plus_rank_1):
    model, mean, cov = diagonal_plus_rank_1
    approx = fv.fit(model, family="lowrank", rank=1, steps=30_000, draws=4, seed=0)
    assert approx.converged
    _assert_recovers(approx, mean, cov, "z")
    # and the ELBO reaches log Z = 1/2 log det cov
    assert approx.elbo[-1] == pytest.approx(0.5 * np.linalg.slogdet(cov)[1], abs=0.01)


def test_rank_1_closed_form_gets_there_too(diagonal_plus_rank_1):
    # The closed-form entropy gradient's noise does not vanish at the optimum, so its fits jitter
    # more (and rarely meet tol): more draws, a plain run, and twice the tolerances.
    model, mean, cov = diagonal_plus_rank_1
    approx = fv.fit(model, family="lowrank", rank=1, steps=30_000, draws=16, seed=0, tol=None, gradient="closed_form")
    _assert_recovers(approx, mean, cov, "z", tol=2.0)


def test_preconditioning_keeps_the_family_and_unwhitens_exactly():
    # zeta = shift + C u with diagonal C maps q(u) = N(mu, diag(d)^2 + B B^T) to
    # N(shift + C mu, diag(C d)^2 + (C B)(C B)^T); a fit that takes no real step returns phi0 mapped.
    d, r = 5, 2
    model = _gaussian_target(np.zeros(d), np.eye(d))
    fam = _core.Family("lowrank", d, rank=r)
    rng = np.random.default_rng(1)
    mu, omega, b = rng.normal(size=d), 0.3 * rng.normal(size=d), rng.normal(size=(d, r))
    pre = _core.Preconditioner()
    pre.shift = rng.normal(size=d)
    pre.diagonal = np.exp(rng.normal(size=d))
    opts = _core.FitOptions()
    opts.steps, opts.lr, opts.tol, opts.average = 1, 1e-300, 0.0, False
    result = _core.fit(model._core, fam, _pack(mu, omega, b), opts, None, pre)
    expected = _pack(pre.shift + pre.diagonal * mu, omega + np.log(pre.diagonal), pre.diagonal[:, None] * b)
    np.testing.assert_allclose(result.phi, expected, rtol=1e-14, atol=1e-14)
    pre_full = _core.Preconditioner()
    pre_full.shift = np.zeros(d)
    pre_full.lower = np.eye(d) + np.tril(np.full((d, d), 0.1), -1)
    with pytest.raises(ValueError, match="low-rank family needs a diagonal preconditioner"):
        _core.fit(model._core, fam, _pack(mu, omega, b), opts, None, pre_full)


@pytest.mark.parametrize("precondition", ["auto", None])
def test_badly_scaled_diagonal_plus_rank_1_posterior(diagonal_plus_rank_1, precondition):
    # the same posterior with coordinates scaled by 1e-3 ... 1e3: preconditioning (a diagonal C from
    # the Laplace approximation, so that q stays low-rank) makes it as easy as the original; without
    # it Adam's fixed step size cannot cope
    _, mean, cov = diagonal_plus_rank_1
    scale = np.logspace(-3, 3, len(mean))
    mean, cov = scale * mean, cov * np.outer(scale, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(
            _gaussian_target(mean, cov),
            family="lowrank",
            rank=1,
            steps=20_000,
            draws=4,
            seed=0,
            precondition=precondition,
        )
    if precondition == "auto":
        assert approx.laplace.ok
        _assert_recovers(approx, mean, cov, "z")
    else:
        with pytest.raises(AssertionError):
            _assert_recovers(approx, mean, cov, "z")


@pytest.mark.parametrize("laplace_start", [True, False])
def test_a_ridge_posterior_starts_from_the_laplace_directions(monkeypatch, laplace_start):
    # Correlations of 0.9999: the diagonal preconditioner scales the coordinates but leaves the
    # ridge, along which q(u) needs a variance of ~1e4, so B must grow ~100-fold. Started along the
    # Laplace covariance's leading direction the fit converges in a few thousand steps; from the
    # small default B it ends with sds ~3 times too small after the default 10,000 steps.
    d = 4
    rng = np.random.default_rng(3)
    b = rng.normal(size=d) * np.array([1, 10, 100, 0.1])
    cov = np.diag((1e-2 * np.abs(b)) ** 2) + np.outer(b, b)
    mean = rng.normal(size=d)
    if not laplace_start:
        fit_module = sys.modules["fastvi._fit"]
        monkeypatch.setattr(
            fit_module,
            "_laplace_factor",
            lambda c, diagonal, rank, scale: _core.Family("lowrank", d, rank).initialise(np.zeros(d), scale)[2 * d :],
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(_gaussian_target(mean, cov), family="lowrank", rank=1, seed=0, steps=10_000)
    assert approx.laplace.ok
    if laplace_start:
        assert approx.converged
        _assert_recovers(approx, mean, cov, "z")
    else:
        assert np.all(approx.std()["z"] < 0.5 * np.sqrt(np.diag(cov)))


def test_default_rank_is_round_sqrt_dim():
    m = fv.Model()
    m.add("normal", m.param("z", shape=(10,)), loc=0.0, scale=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(m, family="lowrank", steps=200)
    assert approx.rank == 3 and approx.phi.size == (2 + 3) * 10
    assert "rank=3" in repr(approx)
    assert fv.fit(m, steps=200, tol=None).rank is None


def test_same_seed_same_fit():
    m = fv.Model()
    x = m.param("x", shape=(5,))
    m.add("normal", x, loc=np.arange(5.0), scale=np.linspace(0.5, 1.5, 5))
    fits = [fv.fit(m, family="lowrank", rank=2, steps=3000, draws=2, seed=7, threads=t, tol=None) for t in (1, 2, 1)]
    np.testing.assert_array_equal(fits[0].phi, fits[1].phi)
    np.testing.assert_array_equal(fits[0].phi, fits[2].phi)


# ---- posteriordb (the models of tests/posteriors.py, the references in tests/data) -------------


RANK_2_MEETS_TARGET = [
    "kidiq-kidscore_momiq",
    "kidiq-kidscore_interaction",
    "earnings-logearn_interaction",
    "earnings-earn_height",
    "sblrc-blr",
    "sblri-blr",
    "kilpisjarvi_mod-kilpisjarvi",
]
RANK_2_TOO_LOW = ["mesquite-logmesquite", "nes2000-nes", "arK-arK"]


def _posteriordb_fit(name):
    model, targets, info = P.build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(model, family="lowrank", rank=2, seed=0)
    return approx, P.compare(approx, targets, info)


@pytest.mark.parametrize("name", RANK_2_MEETS_TARGET)
def test_rank_2_meets_the_accuracy_target_with_defaults(name):
    # tests/test_posteriordb.py's full-rank target: means within 0.1 reference sd, sds within 10 %
    # (seeds 0-3 all meet it on these seven)
    _, rows = _posteriordb_fit(name)
    bad = [
        (r.key, r.mean_err, r.sd / r.ref_sd) for r in rows if abs(r.mean_err) > 0.1 or abs(r.sd / r.ref_sd - 1) > 0.1
    ]
    assert not bad, bad


def _best_diagonal_plus_rank(precision, rank):
    """argmin over Sigma = diag(d)^2 + B B^T of KL(N(0, Sigma) || N(0, precision^-1))."""
    import scipy.optimize

    k = precision.shape[0]

    def kl(x):
        b = x[k:].reshape(k, rank, order="F")
        cov = np.diag(np.exp(2 * x[:k])) + b @ b.T
        g = precision - np.linalg.inv(cov)
        return (
            0.5 * (np.trace(precision @ cov) - np.linalg.slogdet(cov)[1]),
            np.concatenate([np.diag(g) * np.exp(2 * x[:k]), (g @ b).ravel(order="F")]),
        )

    best = None
    for seed in range(3):
        x0 = np.concatenate([np.zeros(k), np.random.default_rng(seed).normal(size=k * rank)])
        res = scipy.optimize.minimize(
            kl, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=50_000, gtol=1e-12, ftol=1e-15)
        )
        best = res if best is None or res.fun < best.fun else best
    b = best.x[k:].reshape(k, rank, order="F")
    return np.diag(np.exp(2 * best.x[:k])) + b @ b.T


@pytest.mark.parametrize("name", RANK_2_TOO_LOW)
def test_rank_2_sds_shrink_as_the_best_rank_2_gaussian_predicts(name):
    # Where rank 2 misses the target, it is rank 2's doing: the KL-optimal diagonal-plus-rank-2
    # Gaussian for the Laplace covariance has sds 33-54 % too small itself, and the fit's worst log
    # sd ratio (against the Laplace sds) is that optimum's within 0.2, as for mean-field in
    # tests/test_posteriordb.py.
    approx, _ = _posteriordb_fit(name)
    cov = approx.laplace.covariance
    best = _best_diagonal_plus_rank(np.linalg.inv(cov), 2)
    expected = np.min(0.5 * np.log(np.diag(best) / np.diag(cov)))
    worst = np.min(0.5 * np.log(np.diag(approx.unconstrained_cov()) / np.diag(cov)))
    assert expected < math.log(0.9)  # the optimum itself misses the 10 % target
    assert abs(worst - expected) <= 0.2, (worst, expected)


# ---- sampling ------------------------------------------------------------------------------------


def test_sampling_shapes_reproducibility_and_moments():
    m = fv.Model()
    loc = m.param("loc", shape=(2, 3))
    scale = m.param("scale", lower=0.0)
    m.add("normal", loc, loc=0.0, scale=1.0)
    m.add("half_normal", scale, scale=1.0)
    fam = _core.Family("lowrank", m.dim, rank=2)
    rng = np.random.default_rng(0)
    phi = _pack(rng.normal(size=7), 0.2 * rng.normal(size=7) - 0.5, 0.5 * rng.normal(size=(7, 2)))

    raw = fam.sample(phi, 4, 3)
    assert raw.shape == (7, 4)
    np.testing.assert_array_equal(raw, fam.sample(phi, 4, 3))
    assert not np.array_equal(raw, fam.sample(phi, 4, 4))
    # more draws extend, not reshuffle, the fewer ones (draw j depends only on (seed, j))
    np.testing.assert_array_equal(fam.sample(phi, 10, 3)[:, :4], raw)

    draws = fam.sample(phi, 40_000, 1)
    cov = fam.covariance(phi)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(axis=1) - phi[:7]) < 4.5 * sd / math.sqrt(40_000))
    np.testing.assert_allclose(np.cov(draws), cov, atol=0.03 * sd.max() ** 2)

    # through an Approximation: constrained draws, shaped like the parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        approx = fv.fit(m, family="lowrank", rank=2, steps=500)
    out = approx.sample(100, seed=2)
    assert out["loc"].shape == (100, 2, 3) and out["scale"].shape == (100,)
    assert np.all(out["scale"] > 0)
    np.testing.assert_array_equal(out["loc"], approx.sample(100, seed=2)["loc"])


# ---- bad input -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    m = fv.Model()
    m.add("normal", m.param("z", shape=(3,)), loc=0.0, scale=1.0)
    return m


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"family": "lowrank", "rank": 0}, ValueError, "rank must be >= 1"),
        ({"family": "lowrank", "rank": -2}, ValueError, "rank must be >= 1"),
        ({"family": "lowrank", "rank": 4}, ValueError, r"rank must be <= the number of unconstrained parameters \(3\)"),
        ({"family": "lowrank", "rank": 2.0}, TypeError, "rank must be an int"),
        ({"family": "lowrank", "rank": True}, TypeError, "rank must be an int"),
        ({"family": "meanfield", "rank": 2}, ValueError, "rank applies only to family='lowrank'"),
        ({"rank": 2}, ValueError, "rank applies only to family='lowrank'"),
        ({"family": "fullrank", "rank": 3}, ValueError, "rank applies only to family='lowrank'"),
        ({"method": "advi", "rank": 1}, ValueError, "rank applies only to family='lowrank'"),
    ],
)
def test_bad_rank(small_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        fv.fit(small_model, steps=10, **kwargs)


def test_bad_rank_in_the_core():
    with pytest.raises(ValueError, match="rank must be between 1 and the number of unconstrained parameters"):
        _core.Family("lowrank", 3)  # rank not given
    with pytest.raises(ValueError, match="rank must be between 1 and .*got 4"):
        _core.Family("lowrank", 3, rank=4)
    with pytest.raises(ValueError, match="rank applies only to the lowrank family"):
        _core.Family("meanfield", 3, rank=1)
    with pytest.raises(ValueError, match="family must be 'meanfield', 'fullrank' or 'lowrank'"):
        _core.Family("diagonal", 3, rank=1)
    fam = _core.Family("lowrank", 3, rank=2)
    with pytest.raises(ValueError, match="phi must have length 12 for the lowrank family"):
        fam.covariance(np.zeros(6))
