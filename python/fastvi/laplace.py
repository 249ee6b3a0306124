"""The Laplace approximation in the unconstrained space, used to precondition a fit.

Adam moves every coordinate by about ``lr`` per step, whatever the posterior's scale, and crawls
along long correlated valleys; a posterior with sds of 1e-3 or 1e4, or correlations of 0.999, is
then fitted badly in any reasonable number of steps. fastvi therefore first finds the mode of the
log density (L-BFGS, scipy) and its Hessian H there (central differences of the gradient, all
columns in one batched call), and runs the fit in whitened coordinates u with
zeta = mode + C u: C = chol(H^-1) for the full-rank family, C = diag(1 / sqrt(H_ii)) for the
families that must stay diagonal in zeta (mean-field, low-rank). A Gaussian in u is a Gaussian in
zeta of the same family, so this changes only the coordinates the optimiser works in.

Posteriors without a proper mode (funnels, improper or unidentified models) are detected and
fitted without preconditioning. Every test here is scale-free, so that adding a constant to the log
density (the likelihood's normalising constants) or moving the data far from zero changes nothing:
the search has found a mode when the Newton step H^-1 g is shorter than 0.01 posterior sd
(g^T H^-1 g < 1e-4; L-BFGS's answer is polished by a few Newton steps when it is not, and an L-BFGS
run that fails is restarted on the log density shifted and scaled by its value and gradient), and
the curvature is proper when the Cholesky factorisation of the Hessian succeeds with every pivot of
its unit-diagonal form D^-1/2 H D^-1/2 above 1e-7 (no correlation beyond 1 - 5e-8, no flat or
upward direction; for D > 2000 only the diagonal is formed and checked). Otherwise ``Laplace.kind``
says what was found ("flat": the log density does not change along some combination of parameters,
an unidentified or improper posterior; "upward": it curves upward, a funnel or a saddle;
"no_mode": it keeps increasing; "not_finite") and ``Laplace.parameters`` names the parameters
involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# scipy (L-BFGS, triangular solves) is imported by the functions that use it, at the first fit:
# it takes 0.3-0.6 s, most of `import fastvi`, which a script that only builds models, or fits
# without preconditioning, need not pay.

# Gradient columns of the finite-difference Hessian evaluated per batched call (memory: D x 2k).
_HESSIAN_CHUNK = 256
# Beyond this dimension only the Hessian's diagonal is kept (a D x D matrix would not fit), and only
# the diagonal's signs can be checked.
_MAX_FULL_HESSIAN = 2000
# The mode is found when the Newton decrement g^T H^-1 g (the squared length of the Newton step in
# posterior sds) is below this: within 0.01 sd, plenty for a preconditioner.
_STATIONARY = 1e-4
# Newton steps taken after L-BFGS when its answer is not yet stationary (L-BFGS stalls on log
# densities of size 1e25, where its line search cannot resolve the change of a step).
_NEWTON_STEPS = 8
# A pivot (or eigenvalue) of the unit-diagonal Hessian below this is "flat": finite differences
# resolve the Hessian to about 1e-8 relative, and a posterior correlation beyond 1 - 5e-8 is an
# unidentified direction for any practical purpose.
_SINGULAR = 1e-7


@dataclass
class Laplace:
    """The outcome of the mode search: what was found and how the fit will use it.

    ``fit.laplace`` of a fit with ``precondition="auto"`` (the default); not constructed directly.

    Attributes
    ----------
    ok : bool
        Whether a proper mode was found (the fit was then preconditioned with it).
    message : str
        What was found, in words.
    mode : ndarray or None
        The mode in the unconstrained space (dim,).
    hessian_diag : ndarray or None
        The diagonal of the Hessian of -log p at the mode.
    covariance : ndarray or None
        Its inverse, the Laplace covariance (dim, dim); None if only the diagonal was formed (the
        mean-field family, or dim > 2000).
    iterations, evaluations : int
        L-BFGS iterations and log density evaluations.
    kind : str
        "ok", or why there is no proper mode: "flat" (unidentified or improper), "upward" (a
        funnel or a saddle), "no_mode" (the log density kept increasing), "not_finite".
    parameters : tuple of str
        The parameters along the direction at fault.

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", w, loc=0.0, scale=1.0)
    >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
    >>> laplace = fv.fit(m, seed=0).laplace
    >>> laplace.ok, laplace.kind
    (True, 'ok')
    >>> round(float(laplace.mode[0]), 2), round(float(laplace.hessian_diag[0]), 2)   # exact: 1.5 and 4
    (1.5, 4.0)
    """

    ok: bool
    message: str
    mode: Optional[np.ndarray] = None
    hessian_diag: Optional[np.ndarray] = None  # of -log p at the mode
    covariance: Optional[np.ndarray] = None  # H^-1 (None if only the diagonal was formed)
    iterations: int = 0
    evaluations: int = 0
    # "ok", or why there is no proper mode: "flat" (unidentified or improper), "upward" (a funnel
    # or a saddle), "no_mode" (the log density kept increasing), "not_finite"
    kind: str = "ok"
    parameters: Tuple[str, ...] = ()  # the parameters along the direction at fault


def coordinate_names(model, coordinates) -> Tuple[str, ...]:
    """Names of unconstrained coordinates: ``"sigma"`` for a scalar parameter, ``"beta[2]"`` for an
    element of a block (flat index in C order), ``"w[free 1]"`` for a free coordinate of a vector
    transform, in the order of the coordinates, without repeats."""
    names = []
    for i in coordinates:
        for p in model:
            if p.offset <= i < p.offset + p.free_size:
                if p.transform is not None:  # a free coordinate, not an element of the value
                    name = f"{p.name}[free {i - p.offset}]"
                else:
                    name = p.name if p.size == 1 and p.shape in ((), (1,)) else f"{p.name}[{i - p.offset}]"
                if name not in names:
                    names.append(name)
                break
    return tuple(names)


def name_list(names, limit: int = 8) -> str:
    """Names for a message: all of them up to ``limit``, else the first ``limit`` and a count (a
    funnel's message once listed 90 elements of a latent vector)."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _hessian(model, z, keep_full, threads):
    """Central differences of the gradient of -log p at z: (diagonal, full matrix or None, evaluations)."""
    D = z.size
    h = 1e-5 * np.maximum(1.0, np.abs(z))
    cols = np.empty((D, D)) if keep_full else None
    diag = np.empty(D)
    for start_col in range(0, D, _HESSIAN_CHUNK):
        idx = np.arange(start_col, min(D, start_col + _HESSIAN_CHUNK))
        k = idx.size
        points = np.repeat(z[:, None], 2 * k, axis=1)
        points[idx, np.arange(k)] += h[idx]
        points[idx, k + np.arange(k)] -= h[idx]
        _, g = model.log_density(points, threads)
        block = -(g[:, :k] - g[:, k:]) / (2 * h[idx])  # columns of the Hessian of -log p
        diag[idx] = block[idx, np.arange(k)]
        if keep_full:
            cols[:, idx] = block
    return diag, (None if cols is None else 0.5 * (cols + cols.T)), 2 * D


def _rising(diag, grad):
    """Coordinates along which the log density still rises by more than about a nat within a
    posterior sd (g_i^2 / H_ii > 1; any gradient where H_ii <= 0): where the Hessian is not
    positive definite, these say there is no mode here (a funnel's scale at the end of an L-BFGS
    run towards tau = 0, or a gradient without curvature), rather than a flat or saddle point."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diag > 0, grad**2 / np.where(diag > 0, diag, 1.0), np.where(grad != 0, np.inf, 0.0))
    return np.flatnonzero(ratio > 1.0)


def _curvature_problem(model, diag, H, grad):
    """The checks that need no factorisation: None, or (kind, coordinates at fault, words)."""
    finite = np.isfinite(diag) if H is None else np.all(np.isfinite(H), axis=0) & np.isfinite(diag)
    if not np.all(finite):
        return "not_finite", np.flatnonzero(~finite), "the Hessian is not finite along {}"
    if np.any(diag <= 0):
        rising = _rising(diag, grad)
        if rising.size:
            return "no_mode", rising, "the log density keeps increasing along {}"
        bad = np.flatnonzero(diag <= 0)
        if np.all(diag[bad] == 0) and (H is None or np.all(H[bad] == 0)):
            return "flat", bad, "the log density does not change with {}"
        return "upward", bad, "the log density curves upward along {}"
    return None


def _newton(diag, H, grad, need_factor):
    """(problem, L, step, decrement) for a Hessian with a positive diagonal: problem is None or
    (kind, coordinates, words) as for _curvature_problem; L = chol(H) when it was formed; step =
    H^-1 g (None when not needed); decrement = g^T H^-1 g (or a bound on it that shows it is small).

    The Hessian is proper when its Cholesky factorisation succeeds with every pivot of the
    unit-diagonal R = D^-1/2 H D^-1/2 (= L_ii^2 / H_ii) above _SINGULAR. When R is diagonally
    dominant (Gershgorin: every eigenvalue >= gamma = 1 - max_i sum_j!=i |R_ij|), no factorisation
    is needed to know that, and sum_i g_i^2 / H_ii / gamma bounds the decrement: independent
    posteriors, and any model of which only the diagonal is kept, skip LAPACK altogether (whose
    threads can take a good part of a second for D = 200 on a loaded machine)."""
    if H is None:
        step = grad / diag
        return None, None, step, float(grad @ step)
    s = 1.0 / np.sqrt(diag)
    R = H * s[:, None] * s[None, :]
    gamma = 2.0 - float(np.max(np.sum(np.abs(R), axis=1)))
    if not need_factor and gamma > _SINGULAR:
        bound = float(np.sum(grad**2 / diag)) / gamma
        if bound <= _STATIONARY:
            return None, None, None, bound
    import scipy.linalg

    L = None
    try:
        L = np.linalg.cholesky(H)
        if np.min(np.diag(L) ** 2 / diag) > _SINGULAR:
            y = scipy.linalg.solve_triangular(L, grad, lower=True)
            return None, L, scipy.linalg.solve_triangular(L.T, y, lower=False), float(y @ y)
    except np.linalg.LinAlgError:
        L = None
    rising = _rising(diag, grad)
    if rising.size:
        return ("no_mode", rising, "the log density keeps increasing along {}"), None, None, 0.0
    lam, vec = np.linalg.eigh(R)
    if lam[0] > _SINGULAR and L is not None:  # a small pivot, yet no small eigenvalue: proper after all
        y = scipy.linalg.solve_triangular(L, grad, lower=True)
        return None, L, scipy.linalg.solve_triangular(L.T, y, lower=False), float(y @ y)
    v = np.abs(vec[:, 0])
    coordinates = np.flatnonzero(v >= 0.25 * v.max())
    if lam[0] < -_SINGULAR:
        return ("upward", coordinates, "the log density curves upward along a combination of {}"), None, None, 0.0
    return ("flat", coordinates, "the log density is flat along a combination of {}"), None, None, 0.0


def find_laplace(model, start: np.ndarray, full: bool, threads: int = 1) -> Laplace:
    """Mode and curvature of the model's log density (with log-Jacobians) in the unconstrained space.

    full: return the covariance H^-1 (for D <= 2000). The full Hessian is formed for every D <= 2000
    either way, to check that the mode is proper."""
    import scipy.optimize

    evaluations = 0

    # The objective L-BFGS sees: -(log p - shift) * scale. Its first run uses the log density as
    # it is; if that fails, the next runs shift it by its value and scale it by its gradient where
    # the last one stopped, so that a log density of -5e25 with a gradient of 1e13 (data 1e13 away
    # from the start) looks like any other to L-BFGS's line search and tolerances.
    shift, scale = 0.0, 1.0

    def negative(z):
        nonlocal evaluations
        evaluations += 1
        lp, grad = model.log_density(z, threads)
        if not np.isfinite(lp) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(z)
        return -(lp - shift) * scale, -grad * scale

    z = np.asarray(start, dtype=np.float64).copy()
    iterations = 0
    # L-BFGS can stop early on badly scaled posteriors; restarting from where it stopped resets its
    # curvature memory and usually finishes the job.
    for _ in range(3):
        res = scipy.optimize.minimize(
            negative, z, jac=True, method="L-BFGS-B", options=dict(maxiter=2_000, maxcor=30, ftol=1e-15, gtol=1e-9)
        )
        iterations += int(res.nit)
        if not np.all(np.isfinite(res.x)):
            break
        moved = np.max(np.abs(res.x - z)) if z.size else 0.0
        z = res.x
        if res.success and moved < 1e-8 * (1 + np.max(np.abs(z))):
            break
        if not res.success:
            lp, grad = model.log_density(z, threads)
            evaluations += 1
            if np.isfinite(lp) and np.all(np.isfinite(grad)):
                shift, scale = lp, 1.0 / max(1.0, float(np.max(np.abs(grad), initial=0.0)))

    def fail(kind, message, parameters=(), **extra):
        return Laplace(
            False,
            message,
            iterations=iterations,
            evaluations=evaluations,
            kind=kind,
            parameters=tuple(parameters),
            **extra,
        )

    lp, grad = model.log_density(z, threads)
    evaluations += 1
    if not np.isfinite(lp) or not np.all(np.isfinite(grad)):
        return fail("not_finite", "the log density is not finite where the mode search ended")

    D = z.size
    form_full = D <= _MAX_FULL_HESSIAN
    newton = 0
    while True:
        diag, H, used = _hessian(model, z, form_full, threads)
        evaluations += used
        problem = _curvature_problem(model, diag, H, grad)
        if problem is None:
            problem, L, step, decrement = _newton(diag, H, grad, need_factor=full)
        if problem is not None:
            kind, coordinates, words = problem
            names = coordinate_names(model, coordinates)
            where = "at the mode" if newton == 0 else "where the mode search ended"
            words = words.format(name_list(names))
            if kind == "no_mode":
                message = f"no mode found: {words} where the search ended; the posterior may be improper or a funnel"
            elif kind == "not_finite":
                message = f"no proper mode: where the search ended, {words}"
            else:
                what = {"flat": "singular", "upward": "not positive definite", "not_finite": "not finite"}[kind]
                message = f"the Hessian {where} is {what} (no proper mode): {words}"
            return fail(kind, message, names, mode=z, hessian_diag=diag)
        if decrement <= _STATIONARY:
            break
        if newton == _NEWTON_STEPS:
            v = np.abs(step) * np.sqrt(diag)
            names = coordinate_names(model, np.flatnonzero(v >= 0.25 * v.max()))
            return fail(
                "no_mode",
                f"no mode found: after L-BFGS and {newton} Newton steps the log density still "
                f"increases {np.sqrt(decrement):.3g} posterior sd away, along {name_list(names)}; "
                "the posterior may be improper or a funnel",
                names,
                mode=z,
                hessian_diag=diag,
            )
        # Newton step with backtracking; a loss below rounding of |lp| still counts as no loss.
        t, moved = 1.0, False
        while t >= 1e-6:
            z_new = z + t * step
            lp_new, grad_new = model.log_density(z_new, threads)
            evaluations += 1
            if np.isfinite(lp_new) and np.all(np.isfinite(grad_new)) and lp_new >= lp - 1e-12 * abs(lp):
                z, lp, grad, moved = z_new, lp_new, grad_new, True
                break
            t *= 0.5
        newton += 1
        if not moved:
            return fail(
                "no_mode",
                "no mode found: a Newton step from where L-BFGS stopped does not increase the "
                "log density; the posterior may be improper or a funnel",
                mode=z,
                hessian_diag=diag,
            )

    covariance = None
    if full and L is not None:
        Linv = np.linalg.solve(L, np.eye(D))
        covariance = Linv.T @ Linv
    how = f"L-BFGS in {iterations} iterations" + (f" and {newton} Newton steps" if newton else "")
    return Laplace(
        True,
        f"mode found by {how}",
        mode=z,
        hessian_diag=diag,
        covariance=covariance,
        iterations=iterations,
        evaluations=evaluations,
    )
