"""The fused GLM kernels: normal_id_glm, bernoulli_logit_glm, poisson_log_glm, neg_binomial_2_log_glm
(categorical_logit_glm, with a matrix of coefficients, is in test_categorical_glm.py)."""

import fastvi as fv
import numpy as np
import pytest
from scipy import stats

KERNELS = ["normal_id_glm", "bernoulli_logit_glm", "poisson_log_glm", "neg_binomial_2_log_glm"]
# The family's own positive scalar input, its value when data, and (normal_id_glm) the name the
# cases use for it (its alias sigma).
SCALAR = {"normal_id_glm": "sigma", "neg_binomial_2_log_glm": "phi"}
SCALAR_DATA = {"normal_id_glm": 1.3, "neg_binomial_2_log_glm": 2.5}
PHI = 3.0  # the simulated negative binomial's phi


def make_data(kernel, n, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    eta = 0.3 + X @ rng.normal(size=k)
    if kernel == "normal_id_glm":
        y = eta + rng.normal(size=n)
    elif kernel == "bernoulli_logit_glm":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif kernel == "neg_binomial_2_log_glm":
        mu = np.exp(eta)
        y = rng.negative_binomial(PHI, PHI / (PHI + mu)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    return X, y


def reference_lp(kernel, y, X, alpha, beta, sigma):
    """Sum of scipy log densities with eta computed in numpy, for one draw (sigma: the family's
    scalar, normal_id_glm's scale or neg_binomial_2_log_glm's phi)."""
    eta = alpha + X @ beta
    if kernel == "normal_id_glm":
        return stats.norm.logpdf(y, eta, sigma).sum()
    if kernel == "neg_binomial_2_log_glm":  # scipy's nbinom(n = phi, p = phi / (phi + mu))
        return stats.nbinom.logpmf(y, sigma, sigma / (sigma + np.exp(eta))).sum()
    if kernel == "bernoulli_logit_glm":
        return stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta))).sum()
    return stats.poisson.logpmf(y, np.exp(eta)).sum()


class GlmCase:
    """A model with one GLM factor; each of alpha / beta / sigma a parameter, data, or omitted."""

    def __init__(self, kernel, alpha, beta, sigma, n=200, k=5, seed=0):
        self.kernel = kernel
        self.X, self.y = make_data(kernel, n, k, seed)
        rng = np.random.default_rng(seed + 1)
        self.m = fv.Model()
        inputs = {"X": self.X}
        self.fixed = {"alpha": 0.0}  # data values (alpha omitted: its default, 0)
        self.params = {}
        if alpha == "param":
            self.params["alpha"] = self.m.param("alpha")
        elif alpha == "data":
            self.fixed["alpha"] = 0.4
        if beta == "param":
            self.params["beta"] = self.m.param("beta", k)
        else:
            self.fixed["beta"] = rng.normal(size=k) * 0.5
        if kernel in SCALAR:
            if sigma == "param":
                self.params[SCALAR[kernel]] = self.m.param(SCALAR[kernel], lower=0)
            else:
                self.fixed[SCALAR[kernel]] = SCALAR_DATA[kernel]
        for name, p in self.params.items():
            inputs[name] = p
        for name, v in self.fixed.items():
            if name != "alpha" or alpha == "data":
                inputs[name] = v
        self.m.add(kernel, self.y, **inputs)

    def reference(self, zeta):
        """Reference log density at one unconstrained point, with sigma's log-Jacobian."""
        values = dict(self.fixed)
        jac = 0.0
        for name, p in self.params.items():
            z = zeta[p.offset : p.offset + p.size]
            if name in SCALAR.values():
                values[name] = np.exp(z[0])
                jac += z[0]
            else:
                values[name] = z if p.shape else z[0]
        scalar = values.get(SCALAR.get(self.kernel, ""))
        return reference_lp(self.kernel, self.y, self.X, values["alpha"], values["beta"], scalar) + jac


CONFIGS = [
    # (alpha, beta, sigma)
    ("param", "param", "param"),
    ("data", "param", "data"),
    ("omitted", "param", "param"),
    ("param", "data", "data"),
    ("omitted", "data", "param"),
]


def cases():
    for kernel in KERNELS:
        for alpha, beta, sigma in CONFIGS:
            if kernel not in SCALAR:
                if (alpha, beta, sigma) == ("omitted", "data", "param"):
                    continue  # nothing left to be a parameter
                sigma = "-"
            yield pytest.param(kernel, alpha, beta, sigma, id=f"{kernel}-alpha_{alpha}-beta_{beta}-sigma_{sigma}")


@pytest.mark.parametrize("kernel,alpha,beta,sigma", list(cases()))
def test_log_density_matches_scipy(kernel, alpha, beta, sigma):
    case = GlmCase(kernel, alpha, beta, sigma)
    rng = np.random.default_rng(2)
    zeta = rng.normal(size=case.m.dim) * 0.5
    lp, grad = case.m.log_density(zeta)  # S = 1
    assert np.ndim(lp) == 0 and grad.shape == (case.m.dim,)
    np.testing.assert_allclose(lp, case.reference(zeta), rtol=1e-12)
    zetas = rng.normal(size=(case.m.dim, 4)) * 0.5  # S = 4
    lp4, grad4 = case.m.log_density(zetas)
    assert lp4.shape == (4,) and grad4.shape == (case.m.dim, 4)
    np.testing.assert_allclose(lp4, [case.reference(zetas[:, s]) for s in range(4)], rtol=1e-12)
    # Draws are independent columns: the batch agrees with one draw at a time.
    for s in range(4):
        lp1, g1 = case.m.log_density(zetas[:, s])
        np.testing.assert_allclose(lp4[s], lp1, rtol=1e-13)
        np.testing.assert_allclose(grad4[:, s], g1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,alpha,beta,sigma", list(cases()))
def test_gradient_matches_finite_differences(kernel, alpha, beta, sigma):
    case = GlmCase(kernel, alpha, beta, sigma)
    zeta = np.random.default_rng(3).normal(size=case.m.dim) * 0.5
    lp, grad = case.m.log_density(zeta)
    h = 1e-5
    fd = np.empty(case.m.dim)
    for i in range(case.m.dim):
        e = np.zeros(case.m.dim)
        e[i] = h
        fd[i] = (case.m.log_density(zeta + e)[0] - case.m.log_density(zeta - e)[0]) / (2 * h)
    # Central differences err by h^2/6 |f'''| (~1e-10 times the third derivative, which is O(N) =
    # O(200) here, so ~1e-8) plus rounding, ~ eps |lp| / h = 2e-16 * |lp| / 1e-5 ~ 1e-8 for
    # |lp| ~ 500. An absolute tolerance of 1e-6 * max(1, |lp|) is ~100x above both, while a wrong
    # partial (a missing factor, sign or term) is off by O(1) or more.
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, abs(lp)))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "beta,n,S",
    [("param", 30000, 1), ("param", 5000, 6), ("param", 5000, 9), ("data", 20000, 8)],
    ids=["param-row-kernel-S1", "param-row-kernel-S6", "param-gemm-S9", "data"],
)
def test_threads_are_bit_identical(kernel, beta, n, S):
    # Large enough to cross the kernels' parallel threshold (1e6 multiply-adds per evaluation:
    # N K S >= 1.2e6 with beta a parameter; N S 8 = 2e4 * 8 * 8 = 1.3e6 with beta data) and to
    # span several fixed chunks of rows (at least 512 rows each). At K = 40, S <= 6 runs the
    # single-pass row kernel (glm_rows::max_draws), S = 9 the GEMM path.
    k = 40
    case = GlmCase(kernel, "param", beta, "param", n=n, k=k, seed=4)
    zeta = np.random.default_rng(5).normal(size=(case.m.dim, S)) * 0.3
    lp1, g1 = case.m.log_density(zeta, threads=1)
    lp2, g2 = case.m.log_density(zeta, threads=2)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(g1, g2)
    lp2b, g2b = case.m.log_density(zeta, threads=2)  # and run to run
    np.testing.assert_array_equal(lp2, lp2b)
    np.testing.assert_array_equal(g2, g2b)
    lp1 = np.atleast_1d(lp1)
    np.testing.assert_allclose(lp1, [case.reference(zeta[:, s]) for s in range(S)], rtol=1e-10)


# Shapes around the row kernel's edges: K below, at and above multiples of the packet width (2,
# 4 or 8 doubles) and of its 8-packet gradient tile; N below, at and above its 32-row passes and
# the 512-row chunks. The last row's last packet reads into the padding after X.
ROW_KERNEL_SHAPES = [(1, 1), (5, 7), (33, 8), (31, 9), (64, 16), (257, 50), (1000, 67), (600, 130)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n,k", ROW_KERNEL_SHAPES, ids=[f"N{n}-K{k}" for n, k in ROW_KERNEL_SHAPES])
def test_row_kernel_and_gemm_paths_match_reference(kernel, n, k):
    # S = 1 and 2 take the single-pass row kernel for every K, S = 8 for K >= 48 (the GEMM path
    # below: glm_rows::max_draws), S = 9 the GEMM path: every draw's log density against scipy,
    # and the beta / alpha gradients against X^T r in numpy.
    case = GlmCase(kernel, "param", "param", "param", n=n, k=k, seed=11)
    rng = np.random.default_rng(12)
    a = case.params["alpha"].offset
    b = case.params["beta"].offset
    for S in (1, 2, 8, 9):
        zeta = rng.normal(size=(case.m.dim, S)) * 0.3
        lp, grad = case.m.log_density(zeta)
        np.testing.assert_allclose(lp, [case.reference(zeta[:, s]) for s in range(S)], rtol=1e-10)
        eta = zeta[a] + case.X @ zeta[b : b + k]
        if kernel == "normal_id_glm":
            sigma = np.exp(zeta[case.params["sigma"].offset])
            r = (case.y[:, None] - eta) / sigma**2
        elif kernel == "neg_binomial_2_log_glm":
            phi = np.exp(zeta[case.params["phi"].offset])
            r = case.y[:, None] - (case.y[:, None] + phi) / (1 + phi * np.exp(-eta))
        elif kernel == "bernoulli_logit_glm":
            r = case.y[:, None] - 1 / (1 + np.exp(-eta))
        else:
            r = case.y[:, None] - np.exp(eta)
        scale = np.abs(case.X).T @ np.abs(r) + 1.0
        np.testing.assert_allclose(grad[b : b + k], case.X.T @ r, rtol=0, atol=1e-11 * scale.max())
        np.testing.assert_allclose(grad[a], r.sum(axis=0), rtol=1e-10, atol=1e-10)


def test_fit_is_the_same_with_one_or_two_threads():
    # The whole optimisation inherits the kernels' determinism (N K S = 1.6e6: parallel).
    case = GlmCase("bernoulli_logit_glm", "param", "param", "-", n=5000, k=40, seed=9)
    fits = [fv.fit(case.m, steps=100, draws=8, seed=3, tol=None, threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].phi, fits[1].phi)
    np.testing.assert_array_equal(fits[0].elbo, fits[1].elbo)


def test_large_k_tiles_match_reference():
    # K above the kernel's 240-column GEMM tile, with S above its 32-draw panel.
    case = GlmCase("bernoulli_logit_glm", "param", "param", "-", n=700, k=300, seed=6)
    zeta = np.random.default_rng(7).normal(size=(case.m.dim, 35)) * 0.3
    lp, grad = case.m.log_density(zeta, threads=2)
    np.testing.assert_allclose(lp, [case.reference(zeta[:, s]) for s in range(35)], rtol=1e-10)
    lp1, grad1 = case.m.log_density(zeta, threads=1)
    np.testing.assert_array_equal(lp, lp1)
    np.testing.assert_array_equal(grad, grad1)
    # d lp / d beta = X^T (y - inv_logit(eta)), d lp / d alpha = sum(y - inv_logit(eta)).
    a = case.params["alpha"].offset
    b = case.params["beta"].offset
    eta = zeta[a] + case.X @ zeta[b : b + 300]
    r = case.y[:, None] - 1 / (1 + np.exp(-eta))
    np.testing.assert_allclose(grad[b : b + 300], case.X.T @ r, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(grad[a], r.sum(axis=0), rtol=1e-9, atol=1e-9)


def test_extreme_linear_predictors_stay_finite():
    # |eta| of several hundred: log1p_exp and inv_logit must not overflow.
    X = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    m = fv.Model()
    beta = m.param("beta", 1)
    m.add("bernoulli_logit_glm", y, X=X, beta=beta)
    lp, grad = m.log_density(np.array([500.0]))
    assert np.isfinite(lp) and np.isfinite(grad).all()
    np.testing.assert_allclose(lp, -1000.0, rtol=1e-14)  # two wrong-side terms of -500 each
    np.testing.assert_allclose(grad, [-2.0], rtol=1e-14)  # -1 (y=0, x=1) + -1 (y=1, x=-1)


def _model_with(kernel, y, X, **kw):
    m = fv.Model()
    beta = m.param("beta", X.shape[-1] if np.ndim(X) == 2 else 3)
    inputs = {"X": X, "beta": beta}
    if kernel == "normal_id_glm":
        inputs["scale"] = 1.0
    if kernel == "neg_binomial_2_log_glm":
        inputs["phi"] = 2.0
    inputs.update(kw)
    m.add(kernel, y, **inputs)
    return m


@pytest.mark.parametrize("kernel", KERNELS)
def test_shape_errors_name_the_input(kernel):
    X = np.ones((100, 5))
    y = np.zeros(100)
    with pytest.raises(ValueError, match=r"X must be 2-D \(N, K\), got shape \(100,\)"):
        _model_with(kernel, y, np.ones(100))
    m = fv.Model()
    beta = m.param("beta", 3)
    kw = {SCALAR[kernel]: 1.0} if kernel in SCALAR else {}
    with pytest.raises(ValueError, match="beta has 3 elements but X has 5 columns"):
        m.add(kernel, y, X=X, beta=beta, **kw)
    with pytest.raises(ValueError, match="y has 99 elements but X has 100 rows"):
        _model_with(kernel, np.zeros(99), X)
    with pytest.raises(ValueError, match="beta has 4 elements but X has 5 columns"):
        _model_with(kernel, y, X, beta=np.zeros(4))
    with pytest.raises(ValueError, match="alpha must be a scalar"):
        _model_with(kernel, y, X, alpha=np.zeros(2))


@pytest.mark.parametrize("kernel", KERNELS)
def test_bad_data_names_the_input(kernel):
    X = np.ones((10, 2))
    y = np.zeros(10)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="input 'X' contains nan"):
        _model_with(kernel, y, bad)
    m = fv.Model()
    beta = m.param("beta", 2)
    Xp = m.param("Xp", (10, 2))
    kw = {SCALAR[kernel]: 1.0} if kernel in SCALAR else {}
    with pytest.raises(ValueError, match="input 'X' must be data, not the parameter 'Xp'"):
        m.add(kernel, y, X=Xp, beta=beta, **kw)


def test_outcome_support_is_checked():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="input 'y' must be 0 or 1, got 0.5"):
        _model_with("bernoulli_logit_glm", np.array([0.0, 1.0, 0.5, 1.0]), X)
    with pytest.raises(ValueError, match="input 'y' must be a non-negative integer, got -1"):
        _model_with("poisson_log_glm", np.array([0.0, 1.0, -1.0, 2.0]), X)
    with pytest.raises(ValueError, match="input 'y' must be a non-negative integer, got 1.5"):
        _model_with("poisson_log_glm", np.array([0.0, 1.0, 1.5, 2.0]), X)


def test_scale_must_be_positive():
    X = np.ones((4, 2))
    y = np.zeros(4)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="input 'scale' must be > 0"):
            _model_with("normal_id_glm", y, X, scale=bad)
    m = fv.Model()
    beta = m.param("beta", 2)
    s = m.param("s")  # unbounded: may be negative
    with pytest.raises(ValueError, match="input 'scale' must be > 0, but parameter 's'"):
        m.add("normal_id_glm", y, X=X, beta=beta, scale=s)
    with pytest.raises(ValueError, match="scale must be a scalar"):
        _model_with("normal_id_glm", y, X, scale=np.ones(4))


def test_sigma_is_an_alias_of_scale():
    # normal_id_glm's noise sd was called sigma; it is scale now, as in every other kernel, and
    # sigma still works. Both at once is an error, and errors name the input by its new name.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 2))
    y = X @ np.array([1.0, -1.0]) + 0.5 * rng.normal(size=20)
    spec = {i.name: i for i in fv.kernel_spec("normal_id_glm").inputs}
    assert spec["scale"].aliases == ("sigma",) and "sigma" not in spec
    lp = []
    for key in ("scale", "sigma"):
        m = fv.Model()
        beta = m.param("beta", 2)
        s = m.param("s", lower=0.0)
        m.add("normal_id_glm", y, X=X, beta=beta, **{key: s})
        lp.append(m.log_density(np.array([0.3, -0.2, np.log(0.7)])))
    assert lp[0][0] == lp[1][0] and np.array_equal(lp[0][1], lp[1][1])
    with pytest.raises(ValueError, match="input 'scale' given twice \\(also as 'sigma'"):
        m.add("normal_id_glm", y, X=X, beta=beta, scale=s, sigma=s)
    with pytest.raises(ValueError, match="input 'scale' must be > 0"):
        m.add("normal_id_glm", y, X=X, beta=beta, sigma=-1.0)


def test_kernels_are_registered_as_non_elementwise():
    for kernel in KERNELS:
        spec = fv.kernel_spec(kernel)
        assert not spec.elementwise
        inputs = {i.name: i for i in spec.inputs}
        assert inputs["y"].data_only and inputs["X"].data_only
        assert not inputs["beta"].data_only and inputs["alpha"].default == 0.0


def test_fit_bayesian_linear_regression_matches_conjugate_posterior():
    # y = X beta + noise with known sigma and a Normal(0, 10^2) prior on each coefficient: the
    # posterior is Normal(mu, Sigma) with Sigma = (X^T X / sigma^2 + I / 100)^-1 and
    # mu = Sigma X^T y / sigma^2. The full-rank family contains it exactly.
    rng = np.random.default_rng(8)
    n, k, sigma = 200, 3, 0.7
    X = rng.normal(size=(n, k))
    y = X @ np.array([1.0, -2.0, 0.5]) + sigma * rng.normal(size=n)
    m = fv.Model()
    beta = m.param("beta", k)
    m.add("normal", beta, loc=0, scale=10)
    m.add("normal_id_glm", y, X=X, beta=beta, scale=sigma)
    approx = fv.fit(m, family="fullrank", steps=20000, draws=8, seed=0)
    cov = np.linalg.inv(X.T @ X / sigma**2 + np.eye(k) / 100)
    mu = cov @ X.T @ y / sigma**2
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(approx.mean()["beta"] - mu) < 0.1 * sd), (approx.mean()["beta"], mu, sd)


# ---- offset: eta = offset + alpha + X beta ------------------------------------------------------

OFFSET_CASES = [
    # (beta, S): the row kernel (S = 1, 2), the GEMM path (S = 9), beta as data (xb_ folded)
    ("param", 1),
    ("param", 2),
    ("param", 9),
    ("data", 3),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("offset_kind", ["scalar", "vector"])
@pytest.mark.parametrize("beta,S", OFFSET_CASES, ids=[f"beta_{b}-S{s}" for b, s in OFFSET_CASES])
def test_offset_matches_scipy_and_finite_differences(kernel, offset_kind, beta, S):
    # N = 700, K = 13: several row passes and two chunks, K not a multiple of the packet width.
    n, k = 700, 13
    X, y = make_data(kernel, n, k, seed=21)
    rng = np.random.default_rng(22)
    offset = rng.normal(size=n) * 0.5 if offset_kind == "vector" else 0.37
    beta_data = rng.normal(size=k) * 0.5
    m = fv.Model()
    alpha = m.param("alpha")
    inputs = {"X": X, "alpha": alpha, "offset": offset}
    inputs["beta"] = m.param("beta", k) if beta == "param" else beta_data
    if kernel in SCALAR:
        inputs[SCALAR[kernel]] = m.param("sigma", lower=0.0)
    m.add(kernel, y, **inputs)
    zeta = rng.normal(size=(m.dim, S)) * 0.3
    lp, grad = m.log_density(zeta)
    for s in range(S):
        z = zeta[:, s]
        b = z[1 : 1 + k] if beta == "param" else beta_data
        sigma = np.exp(z[-1]) if kernel in SCALAR else None
        ref = reference_lp(kernel, y, X, z[0] + offset, b, sigma) + (z[-1] if sigma is not None else 0.0)
        np.testing.assert_allclose(lp[s], ref, rtol=1e-11)
    h = 1e-5
    for i in range(m.dim):
        e = np.zeros((m.dim, S))
        e[i] = h
        fd = (m.log_density(zeta + e)[0] - m.log_density(zeta - e)[0]) / (2 * h)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6, atol=1e-6 * np.abs(lp).max())


@pytest.mark.parametrize("S", [1, 9])
def test_poisson_exposure_as_log_offset(S):
    # Counts over different exposures: y_n ~ Poisson(exposure_n exp(alpha + x_n beta)) is
    # poisson_log_glm with offset = log(exposure), and the same as the element-wise poisson_log
    # with log_rate = log(exposure) + alpha + X beta.
    rng = np.random.default_rng(30)
    n, k = 300, 4
    X = rng.normal(size=(n, k)) / 2
    exposure = rng.uniform(0.1, 50.0, n)
    y = rng.poisson(exposure * np.exp(0.2 + X @ np.array([0.5, -0.3, 0.1, 0.0]))).astype(float)
    m = fv.Model()
    alpha, beta = m.param("alpha"), m.param("beta", k)
    m.add("poisson_log_glm", y, X=X, alpha=alpha, beta=beta, offset=np.log(exposure))
    ew = fv.Model()
    alpha_e, beta_e = ew.param("alpha"), ew.param("beta", k)
    ew.add("poisson_log", y, log_rate=np.log(exposure) + alpha_e + X @ beta_e)
    zeta = rng.normal(size=(m.dim, S)) * 0.2
    lp, grad = m.log_density(zeta)
    lp_e, grad_e = ew.log_density(zeta)
    np.testing.assert_allclose(lp, lp_e, rtol=1e-11)
    np.testing.assert_allclose(grad, grad_e, rtol=1e-9, atol=1e-8)
    expected = [stats.poisson.logpmf(y, exposure * np.exp(z[0] + X @ z[1:])).sum() for z in zeta.T]
    np.testing.assert_allclose(lp, expected, rtol=1e-11)


def test_offset_is_data_with_a_default_of_zero():
    for kernel in KERNELS:
        inputs = {i.name: i for i in fv.kernel_spec(kernel).inputs}
        assert inputs["offset"].data_only and inputs["offset"].default == 0.0
    X, y = np.ones((4, 2)), np.zeros(4)
    with pytest.raises(ValueError, match=r"offset must be a scalar or 1-D \(N,\) with N = 4"):
        _model_with("poisson_log_glm", y, X, offset=np.zeros(3))
    with pytest.raises(ValueError, match=r"offset must be a scalar or 1-D"):
        _model_with("poisson_log_glm", y, X, offset=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="input 'offset' contains nan"):
        _model_with("poisson_log_glm", y, X, offset=np.array([0.0, np.nan, 0.0, 0.0]))
    m = fv.Model()
    with pytest.raises(ValueError, match="input 'offset' must be data"):
        m.add("poisson_log_glm", y, X=X, beta=m.param("beta", 2), offset=m.param("o"))


# ---- neg_binomial_2_log_glm: phi, and the unfused model ---------------------------------------


def _nb_pair(n, k, seed, offset=0.0, phi_param=True):
    """The fused model and neg_binomial_2_log on alpha + X @ beta (+ offset), same parameters."""
    X, y = make_data("neg_binomial_2_log_glm", n, k, seed)
    models = []
    for fused in (True, False):
        m = fv.Model()
        a, b = m.param("alpha"), m.param("beta", k)
        phi = m.param("phi", lower=0.0) if phi_param else 2.5
        if fused:
            m.add("neg_binomial_2_log_glm", y, X=X, alpha=a, beta=b, phi=phi, offset=offset)
        else:
            m.add("neg_binomial_2_log", y, log_mu=X @ b + a + offset, phi=phi)
        models.append(m)
    return X, y, models


@pytest.mark.parametrize("S", [1, 2, 9])
@pytest.mark.parametrize("offset", ["none", "vector"])
def test_neg_binomial_glm_equals_the_unfused_model(S, offset):
    # S = 1, 2 on the row kernel, 9 on the GEMM path; 1,300 rows = 3 chunks.
    n, k = 1300, 7
    off = np.random.default_rng(1).normal(size=n) * 0.3 if offset == "vector" else 0.0
    _, _, (fused, unfused) = _nb_pair(n, k, seed=13, offset=off)
    zeta = np.random.default_rng(14).normal(size=(fused.dim, S)) * 0.3
    lp, grad = fused.log_density(zeta)
    lp_u, grad_u = unfused.log_density(zeta)
    np.testing.assert_allclose(lp, lp_u, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_u, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("phi", [1e-3, 0.7, 30.0, 1e6, 1e12])
def test_neg_binomial_glm_over_phi(phi):
    # Small phi (huge overdispersion), the digamma / lgamma series switch at phi = 10, and phi ->
    # infinity, where the log density tends to poisson_log_glm's without cancellation.
    X, y = make_data("neg_binomial_2_log_glm", 200, 4, seed=15)
    rng = np.random.default_rng(16)
    z = np.concatenate([[0.2], rng.normal(size=4) * 0.5, [np.log(phi)]])
    m = fv.Model()
    a, b, p = m.param("alpha"), m.param("beta", 4), m.param("phi", lower=0.0)
    m.add("neg_binomial_2_log_glm", y, X=X, alpha=a, beta=b, phi=p)
    lp, grad = m.log_density(z)
    eta = z[0] + X @ z[1:5]
    # scipy's nbinom loses digits to lgamma(phi + y) - lgamma(phi) as phi grows (1e-10 relative at
    # phi = 1e6, 1e-3 at 1e12): the reference is the same formula in 40-digit arithmetic.
    import mpmath

    mpmath.mp.dps = 40
    P = mpmath.mpf(phi)
    ref = sum(
        mpmath.loggamma(yi + P) - mpmath.loggamma(P) - mpmath.loggamma(yi + 1)
        + P * mpmath.log(P / (P + mpmath.exp(e))) + yi * (e - mpmath.log(P + mpmath.exp(e)))
        for yi, e in zip(y, eta)
    )  # fmt: skip
    np.testing.assert_allclose(lp, float(ref) + z[-1], rtol=1e-12)  # + log(phi), the log-Jacobian
    if phi <= 30:
        scipy_ref = stats.nbinom.logpmf(y, phi, phi / (phi + np.exp(eta))).sum() + z[-1]
        np.testing.assert_allclose(lp, scipy_ref, rtol=1e-11)
    if phi == 1e12:  # the Poisson limit (their difference is ~ mu / phi relative)
        np.testing.assert_allclose(lp, stats.poisson.logpmf(y, np.exp(eta)).sum() + z[-1], rtol=1e-10)
    # d lp / d log(phi) = phi * d lp / d phi against the element-wise kernel's (the same formulas,
    # checked against finite differences in test_distributions).
    e = fv.Model()
    pe = e.param("phi", lower=0.0)
    e.add("neg_binomial_2_log", y, log_mu=eta, phi=pe)
    _, g_e = e.log_density(z[-1:])
    np.testing.assert_allclose(grad[-1], g_e[0], rtol=1e-9, atol=1e-9)


def test_neg_binomial_glm_phi_errors_name_the_input():
    X, y = np.ones((4, 2)), np.zeros(4)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="input 'phi' must be > 0"):
            _model_with("neg_binomial_2_log_glm", y, X, phi=bad)
    with pytest.raises(ValueError, match="phi must be a scalar"):
        _model_with("neg_binomial_2_log_glm", y, X, phi=np.ones(4))
    m = fv.Model()
    with pytest.raises(ValueError, match="input 'phi' must be > 0, but parameter 'p'"):
        m.add("neg_binomial_2_log_glm", y, X=X, beta=m.param("beta", 2), phi=m.param("p"))
    with pytest.raises(ValueError, match="input 'y' must be a non-negative integer, got 1.5"):
        _model_with("neg_binomial_2_log_glm", np.array([0.0, 1.0, 1.5, 2.0]), X)


def test_neg_binomial_glm_fit_recovers_the_parameters():
    # 2,000 counts at alpha = 0.5, beta = (0.8, -0.4, 0.2), phi = 3: the fused and unfused fits
    # agree, and the truth lies within 4 posterior sds.
    rng = np.random.default_rng(17)
    n, k, phi = 2000, 3, 3.0
    X = rng.normal(size=(n, k)) * 0.5
    beta = np.array([0.8, -0.4, 0.2])
    mu = np.exp(0.5 + X @ beta)
    y = rng.negative_binomial(phi, phi / (phi + mu)).astype(float)
    fits = []
    for fused in (True, False):
        m = fv.Model()
        a, b, p = m.param("alpha"), m.param("beta", k), m.param("phi", lower=0.0)
        m.add("normal", b, loc=0.0, scale=5.0)
        m.add("half_normal", p, scale=10.0)
        if fused:
            m.add("neg_binomial_2_log_glm", y, X=X, alpha=a, beta=b, phi=p)
        else:
            m.add("neg_binomial_2_log", y, log_mu=X @ b + a, phi=p)
        fits.append(fv.fit(m, seed=0))
    mean, sd = fits[0].mean(), fits[0].std()
    for name, truth in (("alpha", 0.5), ("beta", beta), ("phi", phi)):
        assert np.all(np.abs(mean[name] - truth) < 4 * sd[name]), (name, mean[name], truth, sd[name])
        np.testing.assert_allclose(mean[name], fits[1].mean()[name], atol=0.1 * np.max(sd[name]))
