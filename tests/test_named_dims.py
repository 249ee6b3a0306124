"""Named dimensions: Model(coords=...), add_coords, and dims= on param, deterministic and add.

They are Python-side bookkeeping (the C++ model never sees them), checked when declared so that a
mistake is reported where it is made, with the variable's name, and kept by copies and pickles.
"""

import copy
import pickle

import fastvi as fv
import numpy as np
import pytest

COUNTIES = ["Aitkin", "Anoka", "Becker"]


def test_dims_and_coords_are_recorded():
    m = fv.Model(coords={"county": COUNTIES})
    a = m.param("a", shape=3, dims="county")
    m.param("b", shape=(3, 2), dims=("county", "level"))
    m.param("sigma", lower=0.0)
    m.deterministic("exp_a", fv.exp(a), dims=["county"])
    m.add("normal", np.zeros(3), loc=a, name="y", dims="county")
    assert m.dims == {"a": ("county",), "b": ("county", "level"), "exp_a": ("county",)}
    assert m.coords["county"].tolist() == COUNTIES
    assert m._factor_dims == {0: (("county",), (3,))}
    m.add_coords({"level": ["low", "high"]})  # labels may come after the variables that use them
    assert m.coords["level"].tolist() == ["low", "high"]


def test_coords_are_read_only_and_returned_as_a_copy():
    m = fv.Model(coords={"county": COUNTIES})
    coords = m.coords
    coords["other"] = np.arange(2)
    assert "other" not in m.coords
    with pytest.raises(ValueError):
        m.coords["county"][0] = "x"


@pytest.mark.parametrize(
    "shape, dims, message",
    [
        ((3, 2), "county", r"parameter 'a': dims \('county',\) names 1 axes, but its shape \(3, 2\) has 2"),
        (
            (4,),
            "county",
            r"parameter 'a': axis 0 \('county'\) has length 4, but the model's coords label 'county' with 3 values",
        ),
        ((3, 3), ("county", "county"), r"parameter 'a': dims \('county', 'county'\) names an axis twice"),
        ((3,), "chain", r"parameter 'a': 'chain' is reserved"),
        ((3,), "a", r"parameter 'a': dimension 'a' has the name of a variable"),
    ],
)
def test_bad_dims_are_refused_with_the_parameters_name(shape, dims, message):
    m = fv.Model(coords={"county": COUNTIES})
    with pytest.raises(ValueError, match=message):
        m.param("a", shape=shape, dims=dims)
    assert m.params == {} and m.dims == {}  # nothing was added


def test_dims_of_different_variables_must_agree_in_length():
    m = fv.Model()
    m.param("a", shape=5, dims="group")
    with pytest.raises(
        ValueError,
        match=r"parameter 'b': axis 0 \('group'\) has length 4, but parameter 'a' has that axis with length 5",
    ):
        m.param("b", shape=4, dims="group")
    with pytest.raises(
        ValueError, match=r"coords: 4 labels for 'group', but parameter 'a' has that axis with length 5"
    ):
        m.add_coords({"group": list("abcd")})
    with pytest.raises(ValueError, match="'group' is the name of a dimension"):
        m.param("group")


def test_dims_type_errors():
    m = fv.Model()
    with pytest.raises(TypeError, match="dims must be"):
        m.param("a", shape=2, dims=3)
    with pytest.raises(TypeError, match="dims must be non-empty str"):
        m.param("a", shape=2, dims=("",))
    with pytest.raises(TypeError, match="coords must be a mapping"):
        fv.Model(coords=["county"])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        fv.Model(coords={"county": [[1, 2]]})


def test_coords_cannot_change():
    m = fv.Model(coords={"county": COUNTIES})
    m.add_coords({"county": COUNTIES})  # the same labels again: fine
    with pytest.raises(ValueError, match="labels cannot change"):
        m.add_coords({"county": COUNTIES[::-1]})


def test_deterministic_and_factor_dims_are_checked():
    m = fv.Model(coords={"county": COUNTIES})
    a = m.param("a", shape=3, dims="county")
    with pytest.raises(ValueError, match=r"deterministic 's': dims \('county', 'x'\) names 2 axes"):
        m.deterministic("s", a * 2.0, dims=("county", "x"))
    assert m.deterministics == {}
    with pytest.raises(ValueError, match=r"y: axis 0 \('county'\) has length 4"):
        m.add("normal", np.zeros(4), loc=0.0, name="y", dims="county")
    with pytest.raises(ValueError, match="dims names the axes of observed data"):
        m.add("normal", a, loc=0.0, dims="county")
    assert m.factors == []


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_copies_keep_dims_and_coords(how):
    m = fv.Model(coords={"county": COUNTIES})
    a = m.param("a", shape=3, dims="county")
    m.deterministic("exp_a", fv.exp(a), dims="county")
    m.add("normal", np.zeros(3), loc=a, name="y", dims="county")
    other = {"pickle": lambda x: pickle.loads(pickle.dumps(x)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how](m)
    assert other.dims == m.dims
    assert other._factor_dims == m._factor_dims
    assert other.coords["county"].tolist() == COUNTIES
    with pytest.raises(ValueError):
        other.coords["county"][0] = "x"
    other.add_coords({"extra": [1, 2]})
    assert "extra" not in m.coords


def test_an_observed_factor_cannot_be_named_like_a_dimension():
    m = fv.Model(coords={"county": COUNTIES})
    with pytest.raises(ValueError, match="'county' is the name of a dimension"):
        m.add("normal", np.zeros(3), loc=0.0, name="county")
    with pytest.raises(ValueError, match="dimension 'y' has the name of a variable"):
        m.add("normal", np.zeros(3), loc=0.0, name="y", dims="y")
    assert m.factors == []


def test_summary_rows_show_the_coords_labels():
    m = fv.Model(coords={"county": COUNTIES})
    a = m.param("a", shape=3, dims="county")
    b = m.param("b", shape=(3, 2), dims=("county", "level"))  # "level" has no labels: indices
    m.add("normal", a)
    m.add("normal", b)
    fit = fv.fit(m, seed=0)
    rows = fv.summary(fit).rows
    assert rows[:3] == ["a[Aitkin]", "a[Anoka]", "a[Becker]"]
    assert rows[3:5] == ["b[Aitkin, 0]", "b[Aitkin, 1]"] and rows[-1] == "b[Becker, 1]"
    assert fv.summary(fit.sample(10)).rows[0] == "a[0]"  # a dict of draws knows no coords
    pytest.importorskip("pandas")
    assert list(fit.to_dataframe(10).columns) == rows
