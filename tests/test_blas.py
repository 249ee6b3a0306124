"""The GLM kernels' GEMM path through an external BLAS (scipy's dgemm, fastvi/_blas.py) and through
Eigen: both against numpy references, against each other, and thread-count independent."""

import contextlib
import os
import subprocess
import sys
import textwrap

import fastvi as fv
import numpy as np
import pytest
from fastvi import _blas, _core
from scipy import stats
from test_glm import KERNELS, GlmCase

SCIPY_DGEMM = _blas._scipy_dgemm()  # scipy (a dependency) always has cython_blas


@contextlib.contextmanager
def products(which):
    """Models built inside use Eigen's products ("eigen") or scipy's dgemm ("blas"); afterwards,
    the process's own choice again (made first: else a later GLM would find it made but not set)."""
    _blas.ensure()
    before = _core.dgemm_address()
    _core.set_dgemm(0 if which == "eigen" else SCIPY_DGEMM)
    try:
        yield
    finally:
        _core.set_dgemm(before)


def residuals(case, zeta, k):
    """d lp / d eta for every row and draw, in numpy."""
    a, b = case.params["alpha"].offset, case.params["beta"].offset
    eta = zeta[a] + case.X.astype(np.float64) @ zeta[b : b + k]
    if case.kernel == "normal_id_glm":
        return (case.y[:, None] - eta) / np.exp(zeta[case.params["sigma"].offset]) ** 2
    if case.kernel == "neg_binomial_2_log_glm":
        phi = np.exp(zeta[case.params["phi"].offset])
        return case.y[:, None] - (case.y[:, None] + phi) / (1 + phi * np.exp(-eta))
    if case.kernel == "bernoulli_logit_glm":
        return case.y[:, None] - 1 / (1 + np.exp(-eta))
    return case.y[:, None] - np.exp(eta)


def test_the_choice_is_reported_and_applied():
    choice = fv.get_blas()
    assert choice == "eigen" or choice.startswith("scipy (")
    assert (_core.dgemm_address() != 0) == choice.startswith("scipy")
    with products("eigen"):
        assert fv.get_blas() == "eigen"  # says what models built now use
    assert fv.get_blas() == choice and (_core.dgemm_address() != 0) == choice.startswith("scipy")


# Shapes around the GEMM path's edges: blocks of 8 rows and up (K = 300 takes two 240-column
# tiles), N not a multiple of a block, S above the 32-draw panel.
SHAPES = [(37, 3, 9), (1000, 50, 32), (700, 300, 35), (2500, 17, 70)]


@pytest.mark.parametrize("which", ["blas", "eigen"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n,k,S", SHAPES, ids=[f"N{n}-K{k}-S{s}" for n, k, s in SHAPES])
def test_gemm_path_matches_reference(which, kernel, n, k, S):
    with products(which):
        case = GlmCase(kernel, "param", "param", "param", n=n, k=k, seed=21)
    zeta = np.random.default_rng(22).normal(size=(case.m.dim, S)) * 0.3
    lp, grad = case.m.log_density(zeta)
    np.testing.assert_allclose(lp, [case.reference(zeta[:, s]) for s in range(S)], rtol=1e-10)
    r = residuals(case, zeta, k)
    b = case.params["beta"].offset
    scale = np.abs(case.X).T @ np.abs(r) + 1.0
    np.testing.assert_allclose(grad[b : b + k], case.X.T @ r, rtol=0, atol=1e-11 * scale.max())


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [None, "vector"])
def test_blas_and_eigen_agree_to_rounding(x_dtype, offset):
    # The same model built with each: the products differ only in their order of summation.
    rng = np.random.default_rng(3)
    n, k, S = 3000, 60, 40
    X = (rng.normal(size=(n, k)) / np.sqrt(k)).astype(x_dtype)
    y = rng.poisson(np.exp(0.2 + X.astype(np.float64) @ rng.normal(size=k) * 0.5)).astype(float)
    extra = {} if offset is None else {"offset": rng.normal(size=n) * 0.1}
    models = {}
    for which in ("eigen", "blas"):
        with products(which):
            m = fv.Model()
            m.add("poisson_log_glm", y, X=X, alpha=m.param("alpha"), beta=m.param("beta", k), **extra)
        models[which] = m
    zeta = rng.normal(size=(k + 1, S)) * 0.3
    lp_e, g_e = models["eigen"].log_density(zeta)
    lp_b, g_b = models["blas"].log_density(zeta)
    np.testing.assert_allclose(lp_b, lp_e, rtol=1e-12)
    np.testing.assert_allclose(g_b, g_e, rtol=0, atol=1e-11 * np.abs(g_e).max())


def test_blas_path_is_the_same_on_one_or_two_threads():
    # N K S = 1.6e7: parallel, over many fixed chunks; each block's dgemm runs on the thread that
    # computes the chunk, so the results must not depend on which one that is.
    with products("blas"):
        case = GlmCase("bernoulli_logit_glm", "param", "param", "-", n=10000, k=50, seed=4)
    zeta = np.random.default_rng(5).normal(size=(case.m.dim, 32)) * 0.3
    lp1, g1 = case.m.log_density(zeta, threads=1)
    lp2, g2 = case.m.log_density(zeta, threads=2)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(g1, g2)
    fits = [fv.fit(case.m, steps=30, draws=32, seed=3, tol=None, threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].phi, fits[1].phi)


def test_a_kernel_keeps_the_blas_it_was_built_with():
    with products("blas"):
        case = GlmCase("bernoulli_logit_glm", "param", "param", "-", n=800, k=20, seed=8)
    zeta = np.random.default_rng(9).normal(size=(case.m.dim, 16)) * 0.3
    before = case.m.log_density(zeta)
    with products("eigen"):
        after = case.m.log_density(zeta)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def _blas_in_subprocess(value):
    env = dict(os.environ, FASTVI_BLAS=value)
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        import numpy as np
        with warnings.catch_warnings(record=True) as caught:
            import fastvi as fv
            m = fv.Model()
            m.add("normal", [0.5, 1.5], loc=m.param("mu"))
            assert fv._blas._chosen is None  # nor is scipy imported for it (test_fit_overhead.py)
            m.add("bernoulli_logit_glm", [0, 1], X=np.eye(2), alpha=0.0, beta=m.param("beta", 2))
            assert fv._blas._chosen is not None  # chosen before the first GLM kernel is built
        print(fv.get_blas())
        print(fv._core.dgemm_address() != 0)
        print(" | ".join(str(w.message) for w in caught))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_environment_variable_sets_the_choice():
    assert _blas_in_subprocess("eigen") == ["eigen", "False", ""]
    choice, applied, warned = _blas_in_subprocess("scipy")
    assert choice.startswith("scipy (") and applied == "True" and warned == ""
    choice, applied, warned = _blas_in_subprocess("openblas-please")
    assert "FASTVI_BLAS='openblas-please' is not one of auto, scipy, eigen" in warned
    assert choice == _blas_in_subprocess("auto")[0]


@pytest.mark.parametrize("which", ["blas", "eigen"])
@pytest.mark.parametrize("n,k,S", [(50, 3, 8), (700, 300, 40), (3000, 50, 32)], ids=["small", "tiles", "panel"])
def test_matvec_expression_matches_reference(which, n, k, S):
    # X @ beta as an expression node (no fused kernel): the same blocks, the same BLAS choice.
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(n, k)) / np.sqrt(k), rng.normal(size=n)
    with products(which):
        m = fv.Model()
        m.add("normal", y, loc=X @ m.param("beta", k), scale=1.5)
    zeta = rng.normal(size=(k, S))
    lp, grad = m.log_density(zeta)
    eta = X @ zeta
    np.testing.assert_allclose(lp, stats.norm.logpdf(y[:, None], eta, 1.5).sum(axis=0), rtol=1e-11)
    r = (y[:, None] - eta) / 1.5**2
    np.testing.assert_allclose(grad, X.T @ r, rtol=0, atol=1e-11 * (np.abs(X).T @ np.abs(r)).max())
