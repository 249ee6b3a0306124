"""Bad input raises a clear exception that names what is at fault, when the model is built."""

import fastvi as fv
import numpy as np
import pytest


@pytest.fixture
def model():
    m = fv.Model()
    m.param("w")
    return m


def test_unknown_kernel_lists_the_registered_ones(model):
    with pytest.raises(ValueError, match=r"unknown kernel 'nromal'.*normal"):
        model.add("nromal", np.zeros(3), loc=model.params["w"])


def test_unknown_input_name(model):
    with pytest.raises(ValueError, match=r"no input 'mu'.*loc, scale"):
        model.add("normal", np.zeros(3), mu=model.params["w"])


def test_variate_passed_twice(model):
    with pytest.raises(TypeError, match="variate 'y'"):
        model.add("normal", np.zeros(3), y=np.zeros(3))


def test_shape_mismatch_names_the_input(model):
    with pytest.raises(ValueError, match=r"input 'scale' with shape \(4,\) does not broadcast"):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=np.ones(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data(model, bad):
    x = np.zeros(5)
    x[3] = bad
    with pytest.raises(ValueError, match=r"input 'y' contains .* at flat index 3"):
        model.add("normal", x, loc=model.params["w"])


def test_non_positive_scale_constant(model):
    with pytest.raises(ValueError, match=r"input 'scale' must be > 0, got -1"):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=-1.0)
    with pytest.raises(ValueError, match=r"input 'scale' must be > 0, got 0"):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=np.array([1.0, 0.0, 1.0]))


def test_scale_parameter_must_be_declared_positive(model):
    s = model.param("s")
    with pytest.raises(ValueError, match=r"input 'scale' must be > 0, but parameter 's'.*lower"):
        model.add("normal", np.zeros(3), loc=0.0, scale=s)


def test_non_numeric_data(model):
    with pytest.raises(TypeError, match="input 'y' must be numeric"):
        model.add("normal", np.array(["a", "b"]), loc=model.params["w"])
    with pytest.raises(TypeError, match="input 'loc' must be real"):
        model.add("normal", np.zeros(2), loc=np.array([1j, 2j]))


def test_the_factor_is_named_in_messages(model):
    with pytest.raises(ValueError, match=r"^likelihood: input 'scale'"):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=-1.0, name="likelihood")
    with pytest.raises(ValueError, match=r"factor 0 \(normal on data of shape \(3,\)\)"):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=-1.0)


def test_parameter_of_another_model(model):
    other = fv.Model()
    v = other.param("v")
    with pytest.raises(ValueError, match="'v' of another model"):
        model.add("normal", np.zeros(3), loc=v)


def test_failed_add_leaves_the_model_unchanged(model):
    with pytest.raises(ValueError):
        model.add("normal", np.zeros(3), loc=model.params["w"], scale=-1.0)
    assert model.factors == []


# ---- parameters ---------------------------------------------------------------------------------


def test_duplicate_parameter_name(model):
    with pytest.raises(ValueError, match="parameter 'w' is already declared"):
        model.param("w")


@pytest.mark.parametrize("lower,upper", [(1.0, 1.0), (2.0, 1.0)])
def test_lower_not_below_upper(model, lower, upper):
    with pytest.raises(ValueError, match=r"parameter 'p': lower .* must be less than upper"):
        model.param("p", lower=lower, upper=upper)


def test_bad_bounds_and_shapes(model):
    with pytest.raises(ValueError, match="lower must not be NaN"):
        model.param("p", lower=float("nan"))
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
        model.param("p", shape=(2.5,))
    with pytest.raises(ValueError, match="every dimension of shape must be >= 1"):
        model.param("p", shape=(0, 3))
    with pytest.raises(TypeError, match="non-empty str"):
        model.param("")


# ---- fit settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"steps": 1.5}, TypeError, "steps must be an int"),
        ({"draws": 0}, ValueError, "draws must be >= 1"),
        ({"lr": 0.0}, ValueError, "lr must be a positive"),
        ({"lr": float("nan")}, ValueError, "lr must be a positive"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"family": "gaussian"}, ValueError, "family must be one of"),
        ({"method": "nuts"}, ValueError, "method must be one of"),
        ({"family": "meanfield", "method": "fullrank_advi"}, ValueError, "contradicts"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
        ({"tol": -1.0}, ValueError, "tol must be >= 0"),
        ({"init_scale": -1.0}, ValueError, "init_scale must be a positive"),
        ({"init": {"nope": 1.0}}, ValueError, "unknown parameters"),
        ({"gradient": "score"}, ValueError, "gradient must be"),
        ({"callback": 3}, TypeError, "callback must be callable"),
    ],
)
def test_invalid_fit_settings(model, kwargs, exc, match):
    model.add("normal", np.zeros(3), loc=model.params["w"])
    with pytest.raises(exc, match=match):
        fv.fit(model, **kwargs)


def test_init_outside_support():
    m = fv.Model()
    s = m.param("s", lower=0.0)
    m.add("normal", np.zeros(3), loc=0.0, scale=s)
    with pytest.raises(ValueError, match=r"value of 's' must lie strictly inside"):
        fv.fit(m, init={"s": -1.0})


def test_model_without_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        fv.fit(fv.Model())
    with pytest.raises(TypeError, match="fastvi.Model"):
        fv.fit("model")
