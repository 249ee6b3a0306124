"""Out-of-range and wrongly typed arguments raise TypeError / ValueError from Python, naming the
argument, instead of pybind11's generic "incompatible function arguments", a bare
std::bad_alloc, or a silent conversion."""

import re
import warnings

import fastvi as fv
import numpy as np
import pytest


@pytest.fixture
def model():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", np.zeros(3), loc=w)
    return m


@pytest.fixture(scope="module")
def approx():
    m = fv.Model()
    w = m.param("w")
    m.add("normal", np.zeros(3), loc=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        return fv.fit(m, steps=200, tol=None, seed=0)


# ---- integer settings must fit what C++ takes ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": 2**64}, r"seed must be < 2\*\*64"),
        ({"steps": 2**63}, r"steps must be < 2\*\*63"),
        ({"draws": 2**63}, r"draws must be < 2\*\*63"),
        ({"eval_every": 2**63}, r"eval_every must be < 2\*\*63"),
        ({"patience": 2**63}, r"patience must be < 2\*\*63"),
        ({"threads": 2**31}, r"threads must be < 2\*\*31"),
    ],
)
def test_fit_integer_settings_out_of_range(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fv.fit(model, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"average": "no"}, r"average must be True or False, got 'no'"),
        ({"average": 1}, r"average must be True or False"),
        ({"progress": "yes"}, r"progress must be True or False, got 'yes'"),
    ],
)
def test_fit_flags_must_be_real_bools(model, kwargs, match):
    with pytest.raises(TypeError, match=match):
        fv.fit(model, **kwargs)


@pytest.mark.parametrize(
    "threads,exc,match",
    [
        ("2", TypeError, r"threads must be an int, got '2'"),
        (1.5, TypeError, r"threads must be an int"),
        (0, ValueError, r"threads must be >= 1, got 0"),
        (-1, ValueError, r"threads must be >= 1, got -1"),
        (2**31, ValueError, r"threads must be < 2\*\*31"),
    ],
)
def test_log_density_threads(model, threads, exc, match):
    with pytest.raises(exc, match=match):
        model.log_density(np.zeros(model.dim), threads=threads)


def test_threads_above_the_core_count_are_fine(model):
    lp, _ = model.log_density(np.zeros(model.dim), threads=2**31 - 1)
    assert np.isfinite(lp)


def test_sample_seed_and_n_out_of_range(approx):
    with pytest.raises(ValueError, match=r"seed must be < 2\*\*64"):
        approx.sample(10, seed=2**64)
    with pytest.raises(ValueError, match=r"n must be < 2\*\*63"):
        approx.sample(2**63)


def test_sample_too_many_draws_for_memory(approx):
    # n * 8 bytes beyond what an array can address: refused before allocating
    with pytest.raises(ValueError, match=r"n = 2305843009213693952 draws .* draw fewer"):
        approx.sample(2**61)
    # more than 2**32 draws in one call would repeat draws (32-bit draw counter): refused
    with pytest.raises(ValueError, match=r"n = 1125899906842624 draws .* 2\*\*32 .* draw fewer"):
        approx.sample(2**50)


def test_sample_allocation_failure_names_n():
    # 2**32 - 1 draws of 100,000 values, 3 PiB: the allocation fails, and the error names n
    # instead of a bare std::bad_alloc
    m = fv.Model()
    w = m.param("w", shape=(100_000,))
    m.add("normal", w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        wide = fv.fit(m, steps=1, tol=None, seed=0, precondition=None, psis_draws=0)
    with pytest.raises(MemoryError, match=r"n = 4294967295 draws .* draw fewer"):
        wide.sample(2**32 - 1)


# ---- callbacks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["stop", 0, [], 1.0])
def test_callback_must_return_none_or_a_bool(model, answer):
    with pytest.raises(TypeError, match=r"callback must return None, True or False, got " + re.escape(repr(answer))):
        fv.fit(model, steps=1000, tol=None, callback=lambda *args: answer)


def test_callback_bools_still_steer_the_fit(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fv.ConvergenceWarning)
        stopped = fv.fit(model, steps=1000, tol=None, callback=lambda *args: np.bool_(False))
        full = fv.fit(model, steps=1000, tol=None, callback=lambda *args: True)
    assert stopped.steps < 1000 and full.steps == 1000


# ---- model building -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [2**63, (2**32, 2**32), (3, 6148914691236517206), (2**41,)])
def test_huge_parameter_shapes(shape):
    m = fv.Model()
    with pytest.raises(ValueError, match=r"parameter 'b': shape .* more than fastvi's limit of 2\*\*40"):
        m.param("b", shape=shape)
    assert m.dim == 0


def test_factor_name_must_be_a_str(model):
    with pytest.raises(TypeError, match=r"name must be a non-empty str or None, got 5"):
        model.add("normal", np.zeros(3), loc=model.params["w"], name=5)
    assert len(model.factors) == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lower": "0"}, r"parameter 'b': lower must be a number or None, got '0'"),
        ({"upper": "1"}, r"parameter 'b': upper must be a number or None, got '1'"),
        ({"lower": True}, r"parameter 'b': lower must be a number or None, got True"),
    ],
)
def test_bounds_must_be_numbers(kwargs, match):
    with pytest.raises(TypeError, match=match):
        fv.Model().param("b", **kwargs)


def test_bounds_as_numpy_scalars_are_fine():
    p = fv.Model().param("b", lower=np.float32(0.0), upper=np.array(2.0))
    assert (p.lower, p.upper) == (0.0, 2.0)


def test_interval_wider_than_the_largest_float():
    with pytest.raises(ValueError, match=r"parameter 'b': the width of \(lower, upper\).*overflows.*one-sided"):
        fv.Model().param("b", lower=-1e308, upper=1e308)


@pytest.mark.parametrize("divisor,index", [(0.0, 0), (np.array([1, 0]), 1), ([[2.0], [0.0]], 1)])
def test_division_by_data_containing_zero(divisor, index):
    w = fv.Model().param("w")
    with pytest.raises(ValueError, match=rf"\(w / data\): division by zero .*flat index {index}"):
        w / divisor


def test_huge_broadcast_shapes():
    m = fv.Model()
    v = m.param("v", shape=(1, 2**20))
    with pytest.raises(ValueError, match=r"\(v \+ data\): shape \(2097152, 1048576\) .* limit of 2\*\*40"):
        v + np.zeros((2**21, 1))
    s = m.param("s", lower=0.0)
    with pytest.raises(ValueError, match=r"factor 0 .*broadcast shape: shape \(2097152, 1048576\)"):
        m.add("normal", np.zeros((2**21, 1)), loc=np.zeros((1, 2**20)), scale=s)
    u = m.param("u", shape=1)
    with pytest.raises(ValueError, match=r"X @ v: X: shape \(2199023255552, 1\)"):
        np.broadcast_to(np.zeros(1), (2**41, 1)) @ u


# ---- arrays: complex and masked -----------------------------------------------------------------


@pytest.mark.parametrize("call", ["log_density", "constrain"])
def test_complex_zeta(model, call):
    with pytest.raises(TypeError, match=r"zeta must be real, got complex"):
        getattr(model, call)(np.zeros(model.dim) + 0j)


def test_complex_data_everywhere(model):
    # (already refused before; kept together with the zeta cases above)
    w = model.params["w"]
    with pytest.raises(TypeError, match=r"input 'y' must be real"):
        model.add("normal", np.array([1j]), loc=w)
    with pytest.raises(TypeError, match=r"'\+': operand must be real"):
        w + np.array([1j])
    with pytest.raises(TypeError, match=r"X @ v: X must be real"):
        np.ones((2, 1), dtype=complex) @ model.param("v", shape=1)
    with pytest.raises(TypeError, match=r"value of 'w' must be real"):
        fv.fit(model, init={"w": 1j})


def _masked():
    return np.ma.masked_array([1.0, 2.0], mask=[False, True])


def test_masked_arrays_are_refused(model):
    w = model.params["w"]
    with pytest.raises(TypeError, match=r"input 'y' is a masked array: masks are not supported \(fill or drop"):
        model.add("normal", _masked(), loc=w)
    with pytest.raises(TypeError, match=r"input 'scale' is a masked array"):
        model.add("normal", np.zeros(2), loc=w, scale=_masked())
    with pytest.raises(TypeError, match=r"'\*': operand is a masked array"):
        w * _masked()
    with pytest.raises(TypeError, match=r"X @ v: X is a masked array"):
        np.ma.masked_array(np.ones((2, 2)), mask=[[0, 1], [0, 0]]) @ model.param("v", shape=2)
    with pytest.raises(TypeError, match=r"value of 'w' is a masked array"):
        model.unconstrain({"w": np.ma.masked_array(1.0, mask=True), "v": np.zeros(2)})
    with pytest.raises(TypeError, match=r"zeta is a masked array"):
        model.log_density(np.ma.masked_array(np.zeros(model.dim)))
    assert len(model.factors) == 1


def test_masked_init_is_refused(model):
    with pytest.raises(TypeError, match=r"value of 'w' is a masked array"):
        fv.fit(model, init={"w": np.ma.masked_array(1.0, mask=True)})
