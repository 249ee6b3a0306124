"""Large data kept as it is given (issue 13, item 1, and item 3's memory maps): a GLM's design
matrix X stays float32 when given as float32 and is read in place (converted to float64 in
registers, every product and sum in float64), and a numpy.memmap is referred to, not copied.

What makes the float32 path right is checkable exactly: the float32 values widen to float64
without rounding, and the kernel then does the same float64 arithmetic on them as on a float64
copy, so the log density and gradient of a model built on X32 must equal, bit for bit, those of
the same model built on X32.astype(float64), on every code path (the single-pass row kernel for a
few draws, the GEMM path for many, beta as data, the last rows read from the padded tail copy).
test_glm.py checks the float64 kernels against scipy and finite differences.
"""

import pickle

import fastvi as fv
import numpy as np
import pytest
from scipy import stats
from test_glm import KERNELS, make_data


def _model(kernel, y, X, beta_param=True, alpha_param=True):
    m = fv.Model()
    k = X.shape[1]
    inputs = {"X": X}
    if alpha_param:
        inputs["alpha"] = m.param("alpha")
    inputs["beta"] = m.param("beta", k) if beta_param else np.linspace(-0.5, 0.5, k)
    if kernel == "normal_id_glm":
        inputs["scale"] = m.param("sigma", lower=0.0)
    if kernel == "neg_binomial_2_log_glm":
        inputs["phi"] = m.param("phi", lower=0.0)
    m.add(kernel, y, **inputs)
    return m


def _pair(kernel, n, k, seed=0, **kw):
    X, y = make_data(kernel, n, k, seed)
    X32 = X.astype(np.float32)
    return _model(kernel, y, X32, **kw), _model(kernel, y, X32.astype(np.float64), **kw)


# N around the row kernel's pass (64 rows) and chunk (512) sizes, K around packet widths.
SHAPES = [(1, 1), (3, 7), (63, 5), (64, 8), (65, 9), (700, 50), (1500, 130)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("S", [1, 3, 8, 40])  # row kernel (S <= K / 6, 2..8) and GEMM path
def test_float32_design_matrix_equals_its_float64_widening(kernel, n, k, S):
    m32, m64 = _pair(kernel, n, k)
    rng = np.random.default_rng(n * 1000 + k + S)
    zeta = rng.normal(scale=0.3, size=(m32.dim, S))
    lp32, g32 = m32.log_density(zeta)
    lp64, g64 = m64.log_density(zeta)
    assert np.isfinite(lp32).all()
    np.testing.assert_array_equal(lp32, lp64)
    np.testing.assert_array_equal(g32, g64)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_with_beta_as_data(kernel):
    m32, m64 = _pair(kernel, 300, 6, beta_param=False)
    zeta = np.random.default_rng(1).normal(scale=0.3, size=(m32.dim, 5))
    lp32, g32 = m32.log_density(zeta)
    lp64, g64 = m64.log_density(zeta)
    np.testing.assert_allclose(lp32, lp64, rtol=1e-13)  # X beta summed in another order
    np.testing.assert_allclose(g32, g64, rtol=1e-12, atol=1e-12)


def test_float32_log_density_is_exact_for_the_float32_data():
    # Against scipy on the float32 values, widened: the model's density is that of the data as
    # given, not of some float64 original.
    X, y = make_data("bernoulli_logit_glm", 400, 7, seed=3)
    X32 = X.astype(np.float32)
    m = _model("bernoulli_logit_glm", y, X32)
    zeta = np.random.default_rng(2).normal(scale=0.5, size=m.dim)
    lp, _ = m.log_density(zeta)
    eta = zeta[0] + X32.astype(np.float64) @ zeta[1:]
    np.testing.assert_allclose(lp, stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta))).sum(), rtol=1e-12)


def test_float32_is_kept_and_copied_once():
    X, y = make_data("bernoulli_logit_glm", 50, 4)
    X32 = X.astype(np.float32)
    m = _model("bernoulli_logit_glm", y, X32)
    stored = [a for a in _recipe_arrays(m) if a.ndim == 2]
    assert len(stored) == 1 and stored[0].dtype == np.float32
    assert not np.shares_memory(stored[0], X32)  # a private copy: the caller may change theirs
    X32[:] = 0.0
    lp_after, _ = m.log_density(np.zeros(m.dim) + 0.1)
    fresh = _model("bernoulli_logit_glm", y, X.astype(np.float32))
    np.testing.assert_array_equal(lp_after, fresh.log_density(np.zeros(m.dim) + 0.1)[0])


def _recipe_arrays(model):
    """The data arrays the model's build log holds (what its core reads for in-place inputs)."""
    out = []
    for entry in model._recipe:
        for part in entry:
            if isinstance(part, tuple):
                for o in part:
                    if isinstance(o, tuple) and len(o) >= 3 and o[0] == "data":
                        out.append(o[2])
    return out


def test_other_kernels_take_float32_data_as_float64():
    y = np.random.default_rng(0).normal(size=30)
    m32, m64 = fv.Model(), fv.Model()
    for m, data in ((m32, y.astype(np.float32)), (m64, y.astype(np.float32).astype(np.float64))):
        mu = m.param("mu")
        m.add("normal", data, loc=mu, scale=1.0)
    np.testing.assert_array_equal(m32.log_density(np.array([0.3]))[0], m64.log_density(np.array([0.3]))[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float32_x_names_the_input(bad):
    X, y = make_data("bernoulli_logit_glm", 20, 3)
    X32 = X.astype(np.float32)
    X32[7, 2] = bad
    with pytest.raises(ValueError, match=r"input 'X' contains .* at flat index 23"):
        _model("bernoulli_logit_glm", y, X32)


def test_float32_threads_are_bit_identical():
    m32, _ = _pair("bernoulli_logit_glm", 20000, 50)
    zeta = np.random.default_rng(4).normal(scale=0.1, size=(m32.dim, 32))
    lp1, g1 = m32.log_density(zeta, threads=1)
    lp2, g2 = m32.log_density(zeta, threads=2)
    np.testing.assert_array_equal(lp1, lp2)
    np.testing.assert_array_equal(g1, g2)


def test_float32_model_pickles_with_its_dtype():
    m32, _ = _pair("poisson_log_glm", 100, 4)
    back = pickle.loads(pickle.dumps(m32))
    assert [a.dtype for a in _recipe_arrays(back) if a.ndim == 2] == [np.float32]
    zeta = np.full(m32.dim, 0.05)
    np.testing.assert_array_equal(back.log_density(zeta)[0], m32.log_density(zeta)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memmap_design_matrix_is_read_in_place(tmp_path, dtype):
    X, y = make_data("bernoulli_logit_glm", 3000, 20, seed=5)
    mm = np.memmap(tmp_path / "X.bin", dtype=dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(tmp_path / "X.bin", dtype=dtype, mode="r", shape=X.shape)
    m = _model("bernoulli_logit_glm", y, ro)
    (stored,) = [a for a in _recipe_arrays(m) if a.ndim == 2]
    assert np.shares_memory(stored, ro)  # referred to, not copied
    ref = _model("bernoulli_logit_glm", y, X.astype(dtype))
    zeta = np.random.default_rng(6).normal(scale=0.2, size=(m.dim, 4))
    np.testing.assert_array_equal(m.log_density(zeta)[0], ref.log_density(zeta)[0])
    fit_mm = fv.fit(m, seed=3, steps=1500, tol=None)
    fit_ref = fv.fit(ref, seed=3, steps=1500, tol=None)
    for name in ("alpha", "beta"):
        np.testing.assert_array_equal(fit_mm.mean()[name], fit_ref.mean()[name])


def test_poisson_glm_at_extreme_linear_predictors_matches_scipy():
    # The packet exp over its whole range, one row at a time (so that no term hides another):
    # deep underflow, around 0, and large rates. X = 1, so eta is the draw of beta itself.
    cases = [(-740.0, 0.0), (-300.0, 0.0), (-30.0, 1.0), (-1e-3, 0.0), (0.0, 2.0), (1e-3, 1.0), (2.5, 12.0),
             (30.0, 0.0), (300.0, 0.0), (700.0, 0.0)]  # fmt: skip
    for eta, y in cases:
        m = fv.Model()
        m.add("poisson_log_glm", np.array([y]), X=np.ones((1, 1)), beta=m.param("beta", 1))
        for S in (1, 9):  # one column pass and the GEMM path
            lp, grad = m.log_density(np.full((1, S), eta))
            np.testing.assert_allclose(lp, stats.poisson.logpmf(y, np.exp(eta)), rtol=1e-13, err_msg=f"{eta}")
            np.testing.assert_allclose(grad[0], y - np.exp(eta), rtol=1e-13, err_msg=f"{eta}")
