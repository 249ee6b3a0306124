"""Warm starts: ``fv.fit(model, init=previous_fit)`` starts from an earlier fit's q instead of the
mode search.

The earlier q (mean m, covariance S in the unconstrained space) takes the place of the Laplace
approximation a cold start preconditions with: the fit runs in coordinates u with
zeta = m + C u, C = chol(S) for the full-rank family and C = diag(sqrt(diag S)) for the others,
and starts at u ~ Normal(0, init_scale^2 I). So a mean-field or full-rank fit started from a fit
of its own family starts at exactly that q, a low-rank fit from a low-rank fit of the same rank
too (its factor B, whitened, is kept), and other pairs start from m and the marginal scales (a
low-rank fit also from S's leading directions, as from the Laplace covariance, when S is small
enough to form). After ``model.set_data`` on slightly changed data, this q is close to the new
posterior: the fit skips the mode search and the climb to the optimum.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from . import _core

# The largest dimension for which a low-rank fit started from another family forms the D x D
# covariance to take its leading directions (as _fit.py does with the Laplace covariance).
_MAX_DENSE_DIM = 2000


def parameter_layout(model: Any) -> list:
    """What a q in the unconstrained space depends on: every parameter's name, shape, bounds,
    transform and coordinates."""
    return [(p.name, p.shape, p.lower, p.upper, p.transform, p.offset, p.free_size) for p in model]


def check_same_parameters(model: Any, previous: Any) -> None:
    """A warm start needs the earlier fit's q to be over the same unconstrained coordinates (a
    factor added since is fine: q is still a start)."""
    mine, theirs = parameter_layout(model), parameter_layout(previous.model)
    if mine != theirs:
        differ = [a[0] for a, b in zip(mine, theirs) if a != b]
        differ += [p[0] for p in mine[len(theirs) :]] + [p[0] for p in theirs[len(mine) :]]
        raise ValueError(
            "init: the earlier fit is of a model with other parameters (they differ at "
            f"{', '.join(repr(n) for n in differ)}); a warm start needs the same names, shapes, bounds and "
            "transforms"
        )
    fitted_dim = previous._structure[0]  # (its model may have gained a parameter since the fit)
    if fitted_dim != model.dim:
        raise ValueError(
            f"init: the earlier fit has {fitted_dim} unconstrained coordinates and this model {model.dim}; "
            "a warm start needs the same parameters"
        )


def marginal_sd(previous: Any) -> np.ndarray:
    """The earlier q's marginal sds in the unconstrained space, without forming its covariance
    for the mean-field and low-rank families (D x D would not fit in memory for a large D)."""
    phi, d = np.asarray(previous.phi), previous.model.dim
    family = previous._family.name
    if family == "meanfield":
        return np.exp(phi[d : 2 * d])
    if family == "lowrank":
        b = phi[2 * d :].reshape(d, -1, order="F")
        return np.sqrt(np.exp(2 * phi[d : 2 * d]) + np.sum(b * b, axis=1))
    return np.sqrt(np.diag(previous.unconstrained_cov()))


def warm_start(model: Any, fam: Any, previous: Any, family: str, rank: int, scale: float) -> Tuple[Any, np.ndarray]:
    """The preconditioner and the starting phi (in its whitened coordinates) for a fit of ``fam``
    (``family``, ``rank``) that starts from the fit ``previous``, at ``scale`` times its q."""
    check_same_parameters(model, previous)
    mean = previous.unconstrained_mean()
    sd = marginal_sd(previous)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
        raise ValueError(
            "init: the earlier fit's q is not finite (a diverged fit?); fit again from a dict or from None"
        )
    precond = _core.Preconditioner()
    precond.shift = mean
    dim = model.dim
    phi0 = np.array(fam.initialise(np.zeros(dim), scale))
    old_family = previous._family.name
    if family == "fullrank":
        try:
            precond.lower = np.linalg.cholesky(previous.unconstrained_cov())
        except np.linalg.LinAlgError:  # a covariance that is singular in floating point
            precond.diagonal = sd
        return precond, phi0
    if family == "lowrank" and old_family == "lowrank" and previous.rank == rank:
        # the same q exactly: d whitens to 1 and B to B / d, both scaled by `scale`
        omega = np.asarray(previous.phi)[dim : 2 * dim]
        b = np.asarray(previous.phi)[2 * dim :].reshape(dim, rank, order="F")
        precond.diagonal = np.exp(omega)
        phi0[dim : 2 * dim] = np.log(scale)
        phi0[2 * dim :] = (scale * b / np.exp(omega)[:, None]).ravel(order="F")
        return precond, phi0
    precond.diagonal = sd
    if family == "lowrank" and old_family != "meanfield" and dim <= _MAX_DENSE_DIM:
        from ._fit import _laplace_factor  # (_fit.py imports this module)

        phi0[2 * dim :] = _laplace_factor(previous.unconstrained_cov(), sd, rank, scale)
    return precond, phi0
