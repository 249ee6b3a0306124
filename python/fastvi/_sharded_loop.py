"""fit_sharded's optimisation, run in Python on the client: q in the whitened coordinates, the
draws of a step as a function of (seed, step) only, and Adam with the windowed stopping rule and
Polyak-Ruppert averaging once converged.

A module of its own because it is the one part of fit_sharded that knows nothing of shards or
Dask: it sees the whole model's log density only through ``_ShardedDensity.batch``, and the
fit's validated settings (``_Settings``, defined here as the loop reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._sharded_workers import _ShardedDensity

# Adam's constants (those of fv.fit's C++ loop).
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
# Windows per block of the stopping rule: a block's mean ELBO and q are compared with the block before.
_BLOCK = 5
# q's mean has stopped moving when no coordinate's block mean moved by more than this many of q's
# sds since the block before; its scales when no log sd moved by more than _SCALE_MOVE.
_MEAN_MOVE = 0.1
_SCALE_MOVE = 0.05
# Least steps averaged once converged (the averaging phase is as long as convergence took, and at
# least this): the jitter Adam's constant step size leaves is then averaged over many steps.
_MIN_AVERAGE_STEPS = 1000
# Non-finite steps running after which the fit gives up.
_MAX_SKIPPED_RUNNING = 50


@dataclass
class _Settings:
    """fit_sharded's settings, validated: what the loop reads, and ``record`` the result's options."""

    family: str
    steps: int
    draws: int
    lr: float
    gradient: str
    seed: int
    tol: float
    tol_abs: float
    eval_every: int
    patience: int
    average: bool
    precondition: Optional[str]
    psis_draws: int

    def record(self, shards: int, where: str, threads: int, seconds: float) -> Dict[str, Any]:
        return {
            "family": self.family,
            "steps": self.steps,
            "draws": self.draws,
            "lr": self.lr,
            "gradient": self.gradient,
            "seed": self.seed,
            "rank": None,
            "tol": self.tol,
            "tol_abs": self.tol_abs,
            "eval_every": self.eval_every,
            "patience": self.patience,
            "average": self.average,
            "precision": None,
            "precondition": self.precondition,
            "threads": threads,
            "shards": shards,
            "where": where,
            "seconds_evaluating": seconds,
        }


class _Q:
    """q in the whitened coordinates u (zeta = shift + C u; C a diagonal c or a lower-triangular
    matrix) as one flat vector x: [mu, omega] (mean-field, omega = log sd) or [mu, L] (full-rank,
    L's D x D array row-major with its diagonal as logs; the upper triangle stays 0)."""

    def __init__(self, family: str, dim: int, shift: np.ndarray, scale: Any, start: np.ndarray, init_scale: float):
        self.family, self.dim = family, dim
        self.shift = shift
        self.diagonal_c = scale if np.ndim(scale) == 1 else None
        self.lower_c = scale if np.ndim(scale) == 2 else None
        D = dim
        if family == "meanfield":
            self.x = np.concatenate([start, np.full(D, math.log(init_scale))])
        else:
            L = np.zeros((D, D))
            L[np.diag_indices(D)] = math.log(init_scale)
            self.x = np.concatenate([start, L.ravel()])
        self._tril = np.tril(np.ones((D, D), dtype=bool))

    def parts(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """mu and the factor: sd (mean-field) or L (full-rank)."""
        D = self.dim
        mu = x[:D]
        if self.family == "meanfield":
            return mu, np.exp(x[D:])
        raw = x[D:].reshape(D, D)
        L = np.tril(raw, -1)
        L[np.diag_indices(D)] = np.exp(np.diag(raw))
        return mu, L

    def log_sd(self, x: np.ndarray) -> np.ndarray:
        """The log sd of each coordinate of u under q."""
        _, f = self.parts(x)
        if self.family == "meanfield":
            return np.log(f)
        return 0.5 * np.log(np.sum(f * f, axis=1))

    def entropy(self, x: np.ndarray) -> float:
        """q's entropy in u (without its constant)."""
        D = self.dim
        return float(np.sum(x[D:]) if self.family == "meanfield" else np.sum(np.diag(x[D:].reshape(D, D))))

    def to_zeta(self, u: np.ndarray) -> np.ndarray:
        if self.diagonal_c is not None:
            return self.shift[:, None] + self.diagonal_c[:, None] * u
        if self.lower_c is not None:
            return self.shift[:, None] + self.lower_c @ u
        return self.shift[:, None] + u

    def grad_to_u(self, g: np.ndarray) -> np.ndarray:
        if self.diagonal_c is not None:
            return self.diagonal_c[:, None] * g
        if self.lower_c is not None:
            return self.lower_c.T @ g
        return g

    def log_det_c(self) -> float:
        if self.diagonal_c is not None:
            return float(np.sum(np.log(self.diagonal_c)))
        if self.lower_c is not None:
            return float(np.sum(np.log(np.diag(self.lower_c))))
        return 0.0

    def gradient(self, x: np.ndarray, eps: np.ndarray, g_u: np.ndarray, stl: bool) -> np.ndarray:
        """The reparameterised gradient of the ELBO with respect to x, from the draws eps (D x S) and
        the log density's gradient at them (in u). STL: the path derivative of log p - log q with
        q's parameters held fixed inside log q (zero variance when q is the posterior);
        closed form: E[grad log p * dz/dx] + the entropy's gradient."""
        D, S = eps.shape
        _, f = self.parts(x)
        if self.family == "meanfield":
            h = g_u + eps / f[:, None] if stl else g_u
            grad_omega = np.mean(h * eps, axis=1) * f + (0.0 if stl else 1.0)
            return np.concatenate([np.mean(h, axis=1), grad_omega])
        if stl:
            import scipy.linalg

            h = g_u + scipy.linalg.solve_triangular(f.T, eps, lower=False)  # + L^-T eps = - grad_u log q
        else:
            h = g_u
        G = np.where(self._tril, h @ eps.T / S, 0.0)
        diag = np.diag(G) * np.diag(f) + (0.0 if stl else 1.0)  # the diagonal is log-parameterised
        G[np.diag_indices(D)] = diag
        return np.concatenate([np.mean(h, axis=1), G.ravel()])

    def phi(self, x: np.ndarray) -> np.ndarray:
        """q in zeta, in _core.Family's layout: [mu, log sd] or [mu, L column-major, log diagonal]."""
        mu, f = self.parts(x)
        D = self.dim
        if self.family == "meanfield":
            c = self.diagonal_c if self.diagonal_c is not None else np.ones(D)
            return np.concatenate([self.shift + c * mu, np.log(f) + np.log(c)])
        C = (
            np.diag(self.diagonal_c)
            if self.diagonal_c is not None
            else (self.lower_c if self.lower_c is not None else np.eye(D))
        )
        L = C @ f
        L[np.diag_indices(D)] = np.log(np.diag(L))
        return np.concatenate([self.shift + C @ mu, L.ravel(order="F")])


def _noise(seed: int, step: int, dim: int, draws: int) -> np.ndarray:
    """The standard normal draws of a step: a function of (seed, step) only (SeedSequence mixes the
    two into a Philox key), whatever the cluster or the number of shards."""
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, step, 0x53484152])))
    return rng.standard_normal((dim, draws))


class _Loop:
    """Adam on q's parameters x, the windowed stopping rule and the averaging phase."""

    def __init__(self, q: _Q, density: _ShardedDensity, settings: _Settings, stl: bool):
        self.q, self.density, self.s, self.stl = q, density, settings, stl
        self.step = 0
        self.lr = settings.lr
        self.skipped = self.lr_reductions = 0
        self.interrupted = self.converged = False
        self.converged_step: Optional[int] = None
        self.averaged = 0
        self.window_elbo: List[float] = []
        self.window_step: List[int] = []
        self.step_elbo: List[float] = []  # of the current and last 2 * _BLOCK windows
        self.window_stats: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (mean mu, mean log sd, ELBOs)
        self.window_sums: List[np.ndarray] = []  # sums of x over the last two windows
        self.settled = 0
        self.stopped_by = ""
        self.x_sum: Optional[np.ndarray] = None
        self.average_until: Optional[int] = None

    def go(self) -> None:
        q, s = self.q, self.s
        D = q.dim
        x = q.x
        m, v = np.zeros_like(x), np.zeros_like(x)
        t_adam = 0
        entropy_const = 0.5 * D * (1.0 + math.log(2 * math.pi)) + q.log_det_c()
        mu_acc, lsd_acc, x_acc = np.zeros(D), np.zeros(D), np.zeros_like(x)
        in_window = 0
        elbos: List[float] = []
        running_skips = 0
        while self.step < s.steps:
            eps = _noise(s.seed, self.step, D, s.draws)
            mu, f = q.parts(x)
            u = mu[:, None] + (f[:, None] * eps if q.family == "meanfield" else f @ eps)
            lp, g = self.density.batch(q.to_zeta(u))
            self.step += 1
            if not (np.all(np.isfinite(lp)) and np.all(np.isfinite(g))):
                self.skipped += 1
                running_skips += 1
                self.lr *= 0.5
                self.lr_reductions += 1
                if running_skips >= _MAX_SKIPPED_RUNNING:
                    self.stopped_by = f"{running_skips} non-finite steps running"
                    break
                continue
            running_skips = 0
            grad = q.gradient(x, eps, q.grad_to_u(g), self.stl)
            elbo = float(np.mean(lp)) + q.entropy(x) + entropy_const
            t_adam += 1
            m = _BETA1 * m + (1 - _BETA1) * grad
            v = _BETA2 * v + (1 - _BETA2) * grad * grad
            m_hat = m / (1 - _BETA1**t_adam)
            v_hat = v / (1 - _BETA2**t_adam)
            x = x + self.lr * m_hat / (np.sqrt(v_hat) + _ADAM_EPS)
            q.x = x
            if self.x_sum is not None:
                self.x_sum += x
                self.averaged += 1
                if self.average_until is not None and self.step >= self.average_until:
                    break
            elbos.append(elbo)
            mu_acc += x[:D]
            lsd_acc += q.log_sd(x)
            x_acc += x
            in_window += 1
            if self.step % s.eval_every == 0 and in_window:
                self._window(mu_acc / in_window, lsd_acc / in_window, np.array(elbos), x_acc / in_window)
                mu_acc, lsd_acc, x_acc = np.zeros(D), np.zeros(D), np.zeros_like(x)
                elbos, in_window = [], 0
                if self.converged and self.x_sum is None:
                    if not s.average:
                        break
                    self.x_sum = np.zeros_like(x)
                    self.average_until = self.step + max(self.step, _MIN_AVERAGE_STEPS // s.draws)

    def _window(self, mu: np.ndarray, log_sd: np.ndarray, elbos: np.ndarray, x_mean: np.ndarray) -> None:
        s = self.s
        self.window_elbo.append(float(np.mean(elbos)))
        self.window_step.append(self.step)
        self.window_sums = [*self.window_sums, x_mean][-2:]
        self.window_stats = [*self.window_stats, (mu, log_sd, elbos)][-2 * _BLOCK :]
        if s.tol <= 0 or self.converged or len(self.window_stats) < 2 * _BLOCK:
            return
        old, new = self.window_stats[:_BLOCK], self.window_stats[_BLOCK:]
        e_old, e_new = np.concatenate([w[2] for w in old]), np.concatenate([w[2] for w in new])
        change = float(np.mean(e_new) - np.mean(e_old))
        noise = math.sqrt(np.var(e_new) / e_new.size + np.var(e_old) / e_old.size)
        improvement = abs(float(np.mean(e_new)) - self.window_elbo[0])
        elbo_ok = abs(change) <= max(s.tol_abs, s.tol * improvement) or abs(change) <= 2 * noise
        mu_old, mu_new = np.mean([w[0] for w in old], axis=0), np.mean([w[0] for w in new], axis=0)
        lsd_old, lsd_new = np.mean([w[1] for w in old], axis=0), np.mean([w[1] for w in new], axis=0)
        mean_ok = bool(np.all(np.abs(mu_new - mu_old) <= _MEAN_MOVE * np.exp(lsd_new)))
        scale_ok = bool(np.all(np.abs(lsd_new - lsd_old) <= _SCALE_MOVE))
        self.settled = self.settled + 1 if (elbo_ok and mean_ok and scale_ok) else 0
        self.last_check = (elbo_ok, mean_ok, scale_ok)
        if self.settled >= s.patience:
            self.converged = True
            self.converged_step = self.step

    def result_x(self) -> np.ndarray:
        if self.x_sum is not None and self.averaged:
            return self.x_sum / self.averaged
        if self.converged and not self.s.average:
            return self.q.x  # average=False: the iterate at convergence
        if self.window_sums:
            return np.mean(self.window_sums, axis=0)
        return self.q.x

    def message(self) -> str:
        if self.interrupted:
            return f"interrupted at step {self.step}"
        if self.stopped_by:
            return f"stopped at step {self.step}: {self.stopped_by}"
        if self.converged:
            return (
                f"converged at step {self.converged_step}"
                + (f", then averaged {self.averaged} iterates" if self.averaged else "")
                + ("" if self.x_sum is None or self.step >= (self.average_until or 0) else " (steps ran out)")
            )
        if self.s.tol <= 0:
            return f"ran all {self.step} steps (tol=None)"
        what = getattr(self, "last_check", None)
        if what is None:
            return f"not converged in {self.step} steps (too few windows to judge)"
        moving = [name for name, ok in zip(("the ELBO", "q's mean", "q's scales"), what) if not ok]
        return f"not converged in {self.step} steps: {', '.join(moving) or 'not settled long enough'} still moving"
