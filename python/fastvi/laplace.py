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
fitted without preconditioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
# Imported with fastvi rather than at the first fit: it takes 0.2-0.6 s, which belongs to start-up
# (like numpy's own import), not to the first call of fv.fit.
import scipy.optimize

# Gradient columns of the finite-difference Hessian evaluated per batched call (memory: D x 2k).
_HESSIAN_CHUNK = 256
# Beyond this dimension only the Hessian's diagonal is kept (a D x D matrix would not fit).
_MAX_FULL_HESSIAN = 2000


@dataclass
class Laplace:
    """The outcome of the mode search: what was found and how the fit will use it."""

    ok: bool
    message: str
    mode: Optional[np.ndarray] = None
    hessian_diag: Optional[np.ndarray] = None      # of -log p at the mode
    covariance: Optional[np.ndarray] = None        # H^-1 (None if only the diagonal was formed)
    iterations: int = 0
    evaluations: int = 0


def find_laplace(model, start: np.ndarray, full: bool, threads: int = 1) -> Laplace:
    """Mode and curvature of the model's log density (with log-Jacobians) in the unconstrained space."""
    evaluations = 0

    def negative(z):
        nonlocal evaluations
        evaluations += 1
        lp, grad = model.log_density(z, threads)
        if not np.isfinite(lp) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(z)
        return -lp, -grad

    z = np.asarray(start, dtype=np.float64).copy()
    iterations, success = 0, False
    # L-BFGS can stop early on badly scaled posteriors; restarting from where it stopped resets its
    # curvature memory and usually finishes the job.
    for _ in range(3):
        res = scipy.optimize.minimize(negative, z, jac=True, method="L-BFGS-B",
                                      options=dict(maxiter=2_000, maxcor=30, ftol=1e-15, gtol=1e-9))
        iterations += int(res.nit)
        if not np.all(np.isfinite(res.x)):
            break
        moved = np.max(np.abs(res.x - z)) if z.size else 0.0
        z = res.x
        success = bool(res.success)
        if success and moved < 1e-8 * (1 + np.max(np.abs(z))):
            break
    lp, grad = model.log_density(z, threads)
    evaluations += 1
    scale = 1.0 + np.abs(z)
    if not np.isfinite(lp) or not np.all(np.isfinite(grad)):
        return Laplace(False, "the log density is not finite where the mode search ended", iterations=iterations,
                       evaluations=evaluations)
    if np.max(np.abs(grad) * scale) > 1e-3 * max(1.0, abs(lp)) and not success:
        return Laplace(False, f"no mode found (L-BFGS: {res.message}); the posterior may be improper or a funnel",
                       iterations=iterations, evaluations=evaluations)

    D = z.size
    keep_full = full and D <= _MAX_FULL_HESSIAN
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
        evaluations += 2 * k
        block = -(g[:, :k] - g[:, k:]) / (2 * h[idx])  # columns of the Hessian of -log p
        diag[idx] = block[idx, np.arange(k)]
        if keep_full:
            cols[:, idx] = block
    if not np.all(np.isfinite(diag)) or np.any(diag <= 0):
        return Laplace(False, "the Hessian at the mode is not positive definite (no proper mode)",
                       mode=z, iterations=iterations, evaluations=evaluations)
    covariance = None
    if keep_full:
        H = 0.5 * (cols + cols.T)
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return Laplace(False, "the Hessian at the mode is not positive definite (no proper mode)",
                           mode=z, hessian_diag=diag, iterations=iterations, evaluations=evaluations)
        Linv = np.linalg.solve(L, np.eye(D))
        covariance = Linv.T @ Linv
    return Laplace(True, f"mode found by L-BFGS in {iterations} iterations", mode=z, hessian_diag=diag,
                   covariance=covariance, iterations=iterations, evaluations=evaluations)
