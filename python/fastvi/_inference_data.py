"""A fit as ArviZ InferenceData or as a pandas table of draws (``fit.to_inference_data``,
``fit.to_dataframe``).

ArviZ, xarray and pandas are optional (``pip install fastvi[arviz]``): they are imported inside the
functions, so that ``import fastvi`` works without them.

The InferenceData is built with ArviZ's own converter (``az.dict_to_dataset``, one call per group
so that each group gets the axis names that fit its arrays) and holds

- ``posterior``: one chain of n draws of every parameter and deterministic, constrained, exactly
  ``fit.sample(n, seed, importance)``, with the model's dims and coords;
- ``sample_stats``: ``lp``, the model's log density at each draw (in the unconstrained space, with
  the transforms' log-Jacobians: Stan's ``lp__``, what PSIS weighs), and ``log_q``, q's log density
  there;
- ``observed_data``, ``log_likelihood`` and ``posterior_predictive``, one variable per observed
  factor (``model.add(kernel, data, name=...)``), see ``_observed.py``;
- ``approximation`` (a group of its own): the ELBO trace and q's mean and sd in the unconstrained
  space;
- the fit's description (family, ELBO, convergence, steps, PSIS k-hat) as attributes of the groups.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import psis as _psis
from ._observed import observed_factors, pointwise_log_likelihood, predictive_draws
from ._summary import _scalar_names, axis_labels
from ._validate import int_setting, seed_setting, threads_setting

_INSTALL_HINT = "pip install fastvi[arviz]"

# Draws per call of the log density (its gradient, dim x draws, is computed too and dropped).
_LP_BATCH = 256


def _require(module: str, what: str) -> Any:
    """Imports an optional dependency, or raises an ImportError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} needs {module}, an optional dependency of fastvi: {_INSTALL_HINT}") from err


def unconstrained_draws(
    fit: Any, n: int, seed: int, importance: Optional[str], what: str = "to_inference_data"
) -> Tuple[np.ndarray, np.ndarray]:
    """(zeta, log q): the n unconstrained draws behind ``fit.sample(n, seed, importance)``, shape
    (dim, n), and q's log density at each; ``what`` names the caller in errors."""
    if fit._importance(importance) != "psis":
        zeta, log_q = fit._family.sample(fit.phi, n, seed, log_q=True)
        return np.asfortranarray(zeta), np.asarray(log_q)
    result = fit._need_psis(f"{what}({n}, importance='psis')")
    idx = _psis.resample(result, n, seed)  # as fit._psis_sample: the same draws, in the same order
    zeta = np.empty((fit.model.dim, n), order="F")
    log_q = np.empty(n)
    for first, batch, batch_log_q in _psis.draws(fit, result.draws, _psis._seed_of(result), log_q=True):
        hit = (idx >= first) & (idx < first + batch.shape[1])
        if hit.any():
            zeta[:, hit] = batch[:, idx[hit] - first]
            log_q[hit] = batch_log_q[idx[hit] - first]
    return zeta, log_q


def _log_density(fit: Any, zeta: np.ndarray, threads: int) -> np.ndarray:
    lp = np.empty(zeta.shape[1])
    for first in range(0, zeta.shape[1], _LP_BATCH):
        batch = np.asfortranarray(zeta[:, first : first + _LP_BATCH])
        lp[first : first + batch.shape[1]] = fit.model._core.log_density(batch, threads)[0]
    return lp


def _fit_attrs(fit: Any, importance: Optional[str]) -> Dict[str, Any]:
    """The fit's description, as attributes a netCDF file can hold (str, int, float: no None or
    bool)."""
    import fastvi

    attrs: Dict[str, Any] = {
        "inference_library": "fastvi",
        "inference_library_version": fastvi.__version__,
        "family": fit.family,
        "draws_from": "psis" if importance == "psis" else "q",
        "converged": int(fit.converged),
        "steps": int(fit.steps),
        "message": fit.message,
        "status": fit.status.use,
    }
    if fit.rank is not None:
        attrs["rank"] = int(fit.rank)
    if fit.elbo.size:
        attrs["elbo"] = float(fit.elbo[-1])
    if fit.psis is not None:
        attrs["khat"] = float(fit.psis.khat)
        attrs["psis_ess"] = float(fit.psis.ess)
    return attrs


def _group(
    az: Any,
    data: Dict[str, np.ndarray],
    dims: Dict[str, List[str]],
    coords: Dict[str, Any],
    attrs: Dict[str, Any],
    **options: Any,
) -> Any:
    """One group: ArviZ's converter, given the axis names of the variables in ``data`` only (a
    variable of the same name may have other axes in another group)."""
    return az.dict_to_dataset(
        data, attrs=attrs, coords=coords, dims={k: v for k, v in dims.items() if k in data}, **options
    )


def to_inference_data(
    fit: Any,
    n: int = 1000,
    seed: int = 0,
    importance: Optional[str] = None,
    *,
    log_likelihood: bool = True,
    posterior_predictive: bool = True,
    threads: Optional[int] = None,
) -> Any:
    """The fit as an ArviZ InferenceData (see :meth:`Approximation.to_inference_data`)."""
    az = _require("arviz", "to_inference_data")
    xr = _require("xarray", "to_inference_data")
    n = int_setting(n, "n", 1, 2**32)
    seed = seed_setting(seed)
    threads = fit.options.get("threads", 1) if threads is None else threads_setting(threads)
    fit._check_model()
    model = fit.model
    zeta, log_q = unconstrained_draws(fit, n, seed, importance)
    what = "to_inference_data" + ("(importance='psis')" if importance == "psis" else "")
    draws = fit._finite(model._split_values(model._core.values(zeta).T), what)
    coords: Dict[str, Any] = dict(model.coords)
    dims = {name: list(d) for name, d in model.dims.items()}
    attrs = _fit_attrs(fit, importance)

    groups: Dict[str, Any] = {
        "posterior": _group(az, {k: v[None] for k, v in draws.items()}, dims, coords, attrs),
        "sample_stats": _group(az, {"lp": _log_density(fit, zeta, threads)[None], "log_q": log_q[None]}, {}, {}, attrs),
    }
    factors = observed_factors(model)
    if factors:
        factor_dims = {f.name: list(f.dims) for f in factors if f.dims is not None}
        groups["observed_data"] = _group(
            az, {f.name: f.value for f in factors}, factor_dims, coords, attrs, default_dims=[]
        )
        per_draw: List[Tuple[str, Dict[str, np.ndarray]]] = []
        if log_likelihood:
            per_draw.append(("log_likelihood", pointwise_log_likelihood(model, zeta, factors, stacklevel=3)))
        if posterior_predictive:
            # (the observations' generator is seeded from `seed` and a constant of its own, so its
            # stream is not the draws')
            per_draw.append(("posterior_predictive", predictive_draws(model, zeta, seed, factors, stacklevel=3)))
        for group, values in per_draw:
            if values:
                group_dims = {}
                for f in factors:
                    if f.name in values:
                        d = f.dims_for(values[f.name].shape[1:])
                        if d is not None:
                            group_dims[f.name] = d
                groups[group] = _group(az, {k: v[None] for k, v in values.items()}, group_dims, coords, attrs)
    mu = fit.unconstrained_mean()
    sd = unconstrained_sd(fit)
    groups["approximation"] = xr.Dataset(
        {
            "elbo": (("window",), np.asarray(fit.elbo, dtype=np.float64)),
            "elbo_step": (("window",), np.asarray(fit.elbo_steps, dtype=np.int64)),
            "unconstrained_mean": (("coordinate",), mu),
            "unconstrained_sd": (("coordinate",), sd),
        },
        coords={"coordinate": _coordinate_names(model)},
        attrs=attrs,
    )
    with warnings.catch_warnings():
        # older ArviZ versions warn about any group outside their schema ("approximation")
        warnings.filterwarnings("ignore", message=".*group is not defined in the InferenceData scheme")
        return az.InferenceData(**groups)


def unconstrained_sd(fit: Any) -> np.ndarray:
    """q's sd of each unconstrained coordinate, from its parameters ``phi`` (see
    ``Approximation.phi``) without forming the D x D covariance where the family does not need it:
    mean-field ``[mu, log sd]``, low-rank ``[mu, log d, B]`` (sd^2 = d^2 + row sums of B^2)."""
    d = fit.model.dim
    if fit.family == "meanfield":
        return np.exp(fit.phi[d : 2 * d])
    if fit.family == "lowrank":
        b = fit.phi[2 * d :].reshape(-1, d).T  # column-major (D, rank)
        return np.sqrt(np.exp(2.0 * fit.phi[d : 2 * d]) + np.sum(b * b, axis=1))
    return np.sqrt(np.diag(fit.unconstrained_cov()))


def _coordinate_names(model: Any) -> List[str]:
    """A name per unconstrained coordinate: the parameter's scalar names where its coordinates are
    its values, ``name[free <i>]`` for a vector transform's free coordinates."""
    names: List[str] = []
    for p in model:
        if p.transform is None:
            names.extend(_scalar_names(p.name, p.shape))
        else:
            names.extend(f"{p.name}[free {i}]" for i in range(p.free_size))
    return names


def to_dataframe(fit: Any, n: int = 1000, seed: int = 0, importance: Optional[str] = None) -> Any:
    """n draws as a pandas DataFrame (see :meth:`Approximation.to_dataframe`)."""
    pd = _require("pandas", "to_dataframe")
    draws = fit.sample(n, seed=seed, importance=importance)
    labels = axis_labels(fit.model)
    columns: List[str] = []
    blocks: List[np.ndarray] = []
    for name, values in draws.items():
        columns.extend(_scalar_names(name, values.shape[1:], labels.get(name)))
        blocks.append(values.reshape(values.shape[0], -1))
    table = np.concatenate(blocks, axis=1) if blocks else np.empty((n, 0))
    return pd.DataFrame(table, columns=columns, index=pd.RangeIndex(table.shape[0], name="draw"))
