"""categorical_logit_glm (fused multi-logit regression) against numpy and the unfused model.

The log density through Model.log_density against a numpy transcription (log_softmax of
alpha + X @ beta, gathered at y), with alpha and beta as parameters or data, over shapes that cross
the kernel's blocking (K above the 240-column tile, C above the 32-column product tile, S above a
panel, N over several 512-row chunks); gradients against X^T (onehot(y) - softmax) in numpy and
central finite differences; 1 and 2 threads bit for bit; equality with categorical_logit on an
X @ B expression (the unfused model); bad inputs naming the input; a fit recovering known
coefficients.
"""

from __future__ import annotations

import warnings

import fastvi as fv
import numpy as np
import pytest
from scipy import special


def simulate(n, k, c, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) / np.sqrt(k)
    beta = rng.normal(size=(k, c)) * scale
    alpha = rng.normal(size=c) * 0.5
    p = special.softmax(alpha + X @ beta, axis=1)
    y = np.array([rng.choice(c, p=row) for row in p], dtype=float)
    return X, y, alpha, beta


def reference(y, X, alpha, beta):
    """Sum over rows of log_softmax(alpha + x_n beta)[y_n], and its gradients (beta, alpha)."""
    eta = np.asarray(alpha) + X @ beta
    lsm = special.log_softmax(eta, axis=1)
    lp = lsm[np.arange(len(y)), y.astype(int)].sum()
    r = -np.exp(lsm)
    r[np.arange(len(y)), y.astype(int)] += 1.0
    return lp, X.T @ r, r.sum(axis=0)


class Case:
    """One categorical_logit_glm factor; alpha a parameter ("param"), data, or omitted, and beta a
    parameter or data."""

    def __init__(self, n, k, c, alpha="param", beta="param", seed=0):
        self.X, self.y, self.alpha0, self.beta0 = simulate(n, k, c, seed)
        self.n, self.k, self.c, self.alpha_kind, self.beta_kind = n, k, c, alpha, beta
        self.m = fv.Model()
        inputs = {"X": self.X}
        self.a = self.m.param("alpha", c) if alpha == "param" else None
        if alpha == "data":
            inputs["alpha"] = self.alpha0
        elif alpha == "param":
            inputs["alpha"] = self.a
        self.b = self.m.param("beta", (k, c)) if beta == "param" else None
        inputs["beta"] = self.b if beta == "param" else self.beta0
        if self.a is None and self.b is None:
            self.m.param("unused")
        self.m.add("categorical_logit_glm", self.y, **inputs)

    def values(self, z):
        alpha = {"param": None, "data": self.alpha0, "omitted": np.zeros(self.c)}[self.alpha_kind]
        if self.a is not None:
            alpha = z[self.a.offset : self.a.offset + self.c]
        beta = (
            self.beta0 if self.b is None else z[self.b.offset : self.b.offset + self.k * self.c].reshape(self.k, self.c)
        )
        return alpha, beta

    def check(self, S, seed=1, rtol=1e-12):
        zeta = np.random.default_rng(seed).normal(size=(self.m.dim, S)) * 0.5
        lp, grad = self.m.log_density(zeta)
        lp, grad = np.atleast_1d(lp), grad.reshape(self.m.dim, S)
        for s in range(S):
            alpha, beta = self.values(zeta[:, s])
            ref, g_beta, g_alpha = reference(self.y, self.X, alpha, beta)
            np.testing.assert_allclose(lp[s], ref, rtol=rtol)
            scale = np.abs(self.X).T @ np.ones((self.n, self.c)) + 1.0
            if self.b is not None:
                got = grad[self.b.offset : self.b.offset + self.k * self.c, s].reshape(self.k, self.c)
                np.testing.assert_allclose(got, g_beta, rtol=0, atol=1e-12 * scale.max())
            if self.a is not None:
                np.testing.assert_allclose(grad[self.a.offset : self.a.offset + self.c, s], g_alpha, rtol=0,
                                           atol=1e-12 * self.n)  # fmt: skip
        return zeta, lp, grad


# (N, K, C): tiny, several row blocks, two chunks (N > 512 rows), K above the 240-column tile,
# C above the 32-column product tile (one draw per panel, several column tiles), C = 2.
SHAPES = [(1, 1, 2), (7, 3, 4), (300, 5, 3), (1300, 13, 4), (200, 300, 3), (150, 6, 40), (257, 10, 2)]
LAYOUTS = [("param", "param"), ("data", "param"), ("omitted", "param"), ("param", "data")]


@pytest.mark.parametrize("n,k,c", SHAPES, ids=[f"N{n}-K{k}-C{c}" for n, k, c in SHAPES])
@pytest.mark.parametrize("alpha,beta", LAYOUTS, ids=[f"alpha_{a}-beta_{b}" for a, b in LAYOUTS])
@pytest.mark.parametrize("S", [1, 3, 9, 40])
def test_log_density_and_gradients_match_numpy(n, k, c, alpha, beta, S):
    # S = 9 with C = 4 is two panels of 8 draws (32 columns) and one of 1; S = 40 more panels.
    if S == 40 and n * k * c > 20000:
        pytest.skip("large shapes are covered at S <= 9")
    Case(n, k, c, alpha, beta, seed=n + k + c).check(S)


def test_batch_agrees_with_one_draw_at_a_time():
    case = Case(300, 5, 3)
    zeta = np.random.default_rng(4).normal(size=(case.m.dim, 9)) * 0.5
    lp, grad = case.m.log_density(zeta)
    for s in range(9):
        lp1, g1 = case.m.log_density(zeta[:, s])
        np.testing.assert_allclose(lp[s], lp1, rtol=1e-14)
        np.testing.assert_allclose(grad[:, s], g1, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("alpha", ["param", "scalar"])
def test_gradient_matches_finite_differences(alpha):
    rng = np.random.default_rng(3)
    X, y, _, _ = simulate(30, 3, 4, seed=3)
    values = {"y": y, "X": X, "beta": rng.normal(size=(3, 4)), "alpha": rng.normal(size=4 if alpha == "param" else ())}
    fv.check_kernel("categorical_logit_glm", values, params=["alpha", "beta"])


def test_threads_are_bit_identical():
    # N K C S = 5000 * 20 * 4 * 16 * 2 multiply-adds: above the parallel threshold, 10 chunks.
    case = Case(5000, 20, 4, seed=5)
    zeta = np.random.default_rng(6).normal(size=(case.m.dim, 16)) * 0.3
    lp1, g1 = case.m.log_density(zeta, threads=1)
    lp2, g2 = case.m.log_density(zeta, threads=2)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(g1, g2)
    alpha, beta = case.values(zeta[:, 3])
    np.testing.assert_allclose(lp1[3], reference(case.y, case.X, alpha, beta)[0], rtol=1e-11)


def test_large_logits_stay_finite():
    # |eta| ~ 1e3: the softmax is shifted by each row's maximum.
    X = np.array([[1.0], [-1.0], [2.0]])
    y = np.array([0.0, 1.0, 2.0])
    m = fv.Model()
    beta = m.param("beta", (1, 3))
    m.add("categorical_logit_glm", y, X=X, beta=beta)
    z = np.array([800.0, 0.0, -800.0])
    lp, grad = m.log_density(z)
    expected, g, _ = reference(y, X, np.zeros(3), z.reshape(1, 3))
    assert np.isfinite(lp) and np.isfinite(grad).all()
    np.testing.assert_allclose(lp, expected, rtol=1e-14)
    np.testing.assert_allclose(grad, g.ravel(), rtol=1e-14, atol=1e-300)


# ---- against the unfused model: categorical_logit on alpha + X @ B -------------------------------


def _pair(n, k, c, seed):
    X, y, _, _ = simulate(n, k, c, seed)
    fused, unfused = fv.Model(), fv.Model()
    a, b = fused.param("alpha", c), fused.param("beta", (k, c))
    fused.add("categorical_logit_glm", y, X=X, alpha=a, beta=b)
    a2, b2 = unfused.param("alpha", c), unfused.param("beta", (k, c))
    unfused.add("categorical_logit", y, logits=X @ b2 + a2)
    return fused, unfused


@pytest.mark.parametrize("S", [1, 16])
def test_equals_categorical_logit_of_an_expression(S):
    fused, unfused = _pair(2000, 10, 4, seed=7)
    zeta = np.random.default_rng(8).normal(size=(fused.dim, S)) * 0.5
    lp, grad = fused.log_density(zeta)
    lp_u, grad_u = unfused.log_density(zeta)
    np.testing.assert_allclose(lp, lp_u, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_u, rtol=1e-10, atol=1e-10)


def test_fit_recovers_the_coefficients_and_matches_the_unfused_fit():
    # Reference-category coding (category 0's coefficients and intercept fixed at 0, as data
    # columns of a concatenation) identifies the model; 3,000 outcomes, 3 predictors, 3 categories.
    n, k, c = 3000, 3, 3
    rng = np.random.default_rng(9)
    X = rng.normal(size=(n, k))
    beta_true = np.column_stack([np.zeros(k), rng.normal(size=(k, c - 1))])
    alpha_true = np.array([0.0, 0.5, -0.3])
    p = special.softmax(alpha_true + X @ beta_true, axis=1)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1).astype(float)
    fits = {}
    for kind in ("fused", "unfused"):
        m = fv.Model()
        a = fv.concatenate([np.zeros(1), m.param("a", c - 1)])
        b = fv.concatenate([np.zeros((k, 1)), m.param("b", (k, c - 1))], axis=1)
        m.add("normal", a, loc=0.0, scale=5.0)
        m.add("normal", b, loc=0.0, scale=5.0)
        if kind == "fused":
            m.add("categorical_logit_glm", y, X=X, alpha=a, beta=b)
        else:
            m.add("categorical_logit", y, logits=X @ b + a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fv.ConvergenceWarning)
            fits[kind] = fv.fit(m, family="fullrank", seed=0)  # marginal sds: the estimates correlate
    mean, sd = fits["fused"].mean(), fits["fused"].std()
    truth = {"a": alpha_true[1:], "b": beta_true[:, 1:]}
    for name in ("a", "b"):
        assert np.all(np.abs(mean[name] - truth[name]) < 4 * sd[name]), (name, mean[name], truth[name], sd[name])
        # The same posterior: the fits differ by their optimisation noise only.
        np.testing.assert_allclose(mean[name], fits["unfused"].mean()[name], atol=0.1 * sd[name].max())


# ---- bad input ----------------------------------------------------------------------------------

X5 = np.ones((6, 2))
Y5 = np.array([0, 1, 2, 0, 1, 2], dtype=float)


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"X": X5, "beta": np.zeros((2, 3))}, None),
        ({"X": np.ones(6), "beta": np.zeros((2, 3))}, r"input 'X' must be 2-D \(N, K\)"),
        ({"X": X5, "beta": np.zeros(2)}, r"input 'beta' must be 2-D \(K, C\)"),
        ({"X": X5, "beta": np.zeros((3, 3))}, "input 'beta' has 3 rows but X has 2 columns"),
        ({"X": X5, "beta": np.zeros((2, 1))}, "input 'beta' needs at least 2 categories"),
        ({"X": X5, "beta": np.zeros((2, 2))}, r"input 'y' must be a category 0..1 \(beta's columns\), got 2"),
        ({"X": X5, "beta": np.zeros((2, 3)), "alpha": np.zeros(2)}, r"input 'alpha' must have shape \(3,\)"),
        ({"X": np.ones((5, 2)), "beta": np.zeros((2, 3))}, "input 'y' has 6 elements but X has 5 rows"),
    ],
)
def test_bad_inputs_name_the_input(inputs, match):
    m = fv.Model()
    m.param("unused")
    if match is None:
        m.add("categorical_logit_glm", Y5, **inputs)
        return
    with pytest.raises(ValueError, match=match):
        m.add("categorical_logit_glm", Y5, **inputs)


def test_y_and_x_are_data():
    m = fv.Model()
    b = m.param("b", (2, 3))
    with pytest.raises(ValueError, match="input 'y'"):
        m.add("categorical_logit_glm", np.array([0.5, 1, 2, 0, 1, 2]), X=X5, beta=b)
    with pytest.raises(ValueError, match="input 'X' must be data"):
        m.add("categorical_logit_glm", Y5, X=m.param("Xp", (6, 2)), beta=b)
    bad = X5.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="input 'X'"):
        m.add("categorical_logit_glm", Y5, X=bad, beta=b)
