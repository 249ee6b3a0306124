"""What a fit can be trusted for, in three separate answers (``fit.status``).

1. **Optimisation**: did the fit reach the best Gaussian of its family, and how close
   (``converged`` with the refinement's error estimate), or not (and why)?
2. **Shape**: is that Gaussian a good description of the posterior? The PSIS k-hat of log p - log q
   over draws of q: "good" (k-hat <= 0.5 and an importance ESS >= 85 % of the draws: q's moments
   and draws can be used), "fair" (k-hat 0.5-0.7, or a lower ESS: q is off, the PSIS-corrected
   results are usually better; or k-hat > 0.7 from heavy tails alone, the weights hardly varying:
   q's moments are usable), "poor" (> 0.7: neither is reliable), "unknown" (PSIS not run).
3. **Corrected results**: whether ``importance="psis"`` draws and moments are available and
   reliable (k-hat <= 0.7).

``status.use`` says which results to use: "q", "psis" (the corrected ones) or "none".

>>> import numpy as np, fastvi as fv
>>> m = fv.Model()
>>> w = m.param("w")
>>> m.add("normal", w, loc=0, scale=1)
>>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1)
>>> fit = fv.fit(m, seed=0)
>>> fit.status.optimisation, fit.status.shape, fit.status.use
('converged', 'good', 'q')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

from . import psis as _psis

__all__ = ["FitStatus", "status_of"]


@dataclass(frozen=True)
class FitStatus:
    """What a fit can be trusted for: ``fit.status`` (see the module docstring).

    ``print(status)`` says it in words, with the reasons. Computed by :func:`status_of` from the
    fit's outcome and its PSIS diagnostic; not constructed directly.

    Attributes
    ----------
    optimisation : str
        "converged", "not converged" or "interrupted".
    shape : str
        q's shape against the posterior, from PSIS: "good", "fair", "poor" or "unknown" (PSIS
        not run).
    corrected : bool
        Whether the PSIS-corrected results (``importance="psis"``) are available and reliable
        (k-hat <= 0.7).
    use : str
        The results to use: "q" (``fit.sample``, ``fit.mean``, ``fit.std``), "psis" (the same
        with ``importance="psis"``) or "none" (see ``reasons``).
    khat : float or None
        The PSIS k-hat (None if PSIS was not run).
    error_mean, error_scale : float or None
        The refinement's estimated error of q's means (in q's sds) and of its log sds.
    mode : str
        The mode search: "found (the fit was preconditioned)", "not run", or why there was no
        proper mode (``Laplace.kind`` and its message).
    reasons : tuple of str
        Why the optimisation or the shape is not as it should be.
    ok : bool
        Converged, and q itself describes the posterior well.

    See Also
    --------
    Approximation.status

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", w, loc=0, scale=1)
    >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1)
    >>> status = fv.fit(m, seed=0).status
    >>> status.ok, status.corrected, status.reasons
    (True, True, ())
    >>> print(status)    # doctest: +ELLIPSIS
    optimisation: converged (estimated error: means ... sd, log sds ...)
    shape:        k-hat ...: good (q's moments and draws are reliable)
    mode search:  found (the fit was preconditioned)
    use:          q (fit.sample, fit.mean, fit.std)

    Without the PSIS diagnostic the shape is unknown, and the reasons say how to get it:

    >>> status = fv.fit(m, seed=0, psis_draws=0).status
    >>> status.shape, status.use, status.ok
    ('unknown', 'q', False)
    >>> print(*status.reasons)
    the PSIS diagnostic was not run: call fit.run_psis() to check q's shape
    """

    optimisation: str  # "converged", "not converged", "interrupted"
    shape: str  # "good", "fair", "poor", "unknown"
    corrected: bool  # PSIS-corrected results available and reliable (k-hat <= 0.7)
    use: str  # "q", "psis" or "none": the results to use
    khat: Optional[float]
    error_mean: Optional[float]  # refinement's estimated error of q's means (q's sds)
    error_scale: Optional[float]  # ... and of its log sds
    mode: str  # the mode search: "found", "not run", or Laplace.kind ("no_mode", ...)
    reasons: tuple  # sentences: why the optimisation or the shape is not as it should be

    @property
    def ok(self) -> bool:
        """Converged, and q itself describes the posterior well (``shape`` "good").

        Examples
        --------
        >>> import fastvi as fv
        >>> m = fv.Model()
        >>> m.add("normal", m.param("w"), loc=0.0, scale=1.0)
        >>> fv.fit(m, seed=0).status.ok
        True
        """
        return self.optimisation == "converged" and self.shape == "good"

    def __str__(self) -> str:
        if self.optimisation == "converged" and self.error_mean is not None:
            opt = f"converged (estimated error: means {self.error_mean:.2g} sd, log sds {self.error_scale:.2g})"
        else:
            opt = self.optimisation
        shape = {
            "good": "good (q's moments and draws are reliable)",
            "fair": "fair (q is somewhat off; importance='psis' results are usually better)",
            "poor": "poor (a Gaussian does not describe this posterior; neither q nor its PSIS correction is reliable)",
            "unknown": "unknown (PSIS not run)",
        }[self.shape]
        k = "" if self.khat is None or math.isnan(self.khat) else f"k-hat {self.khat:.2f}: "
        use = {
            "q": "q (fit.sample, fit.mean, fit.std)",
            "psis": "the PSIS-corrected results (importance='psis')",
            "none": "none without checking: see the reasons",
        }[self.use]
        lines = [
            f"optimisation: {opt}",
            f"shape:        {k}{shape}",
            f"mode search:  {self.mode}",
            f"use:          {use}",
        ]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def status_of(fit: Any) -> FitStatus:
    """The status of a fitted Approximation (see the module docstring).

    ``fit.status`` calls it.

    Parameters
    ----------
    fit : Approximation
        A fitted approximation.

    Returns
    -------
    FitStatus
        Its optimisation, shape, corrected results and the results to use.

    Examples
    --------
    >>> import fastvi as fv
    >>> from fastvi.status import status_of
    >>> m = fv.Model()
    >>> m.add("normal", m.param("w"), loc=0.0, scale=1.0)
    >>> fit = fv.fit(m, seed=0)
    >>> status_of(fit) == fit.status
    True
    """
    reasons: List[str] = []
    if fit.interrupted:
        optimisation = "interrupted"
        reasons.append(fit.message)
    elif fit.converged:
        optimisation = "converged"
    else:
        optimisation = "not converged"
        reasons.append(fit.message)
    result = fit.psis
    khat = None if result is None else float(result.khat)
    shape = _psis.shape(result)
    if result is not None and khat is not None and math.isnan(khat):
        reasons.append(f"PSIS: {result.note}")
    if shape == "fair" and khat is not None and khat <= _psis.KHAT_GOOD:
        reasons.append(
            f"k-hat {khat:.2f} is small but the importance ESS is {result.ess / result.draws:.0%} of the "
            f"draws (below {_psis.ESS_GOOD:.0%}): q is off somewhere in the bulk of the posterior"
        )
    if result is not None and _psis.tails_only(result):
        reasons.append(
            f"k-hat {khat:.2f} > {_psis.KHAT_BAD} but the importance weights hardly vary (ESS "
            f"{result.ess / result.draws:.0%} of the draws): the posterior's tails are heavier than q's, "
            "q matches it where its mass is; q's moments are usable, its extreme quantiles and the "
            "PSIS correction are not"
        )
    corrected = result is not None and result.ess > 0 and khat is not None and khat <= _psis.KHAT_BAD
    laplace = fit.laplace
    if laplace is None:
        mode = "not run"
    elif laplace.ok:
        mode = "found (the fit was preconditioned)"
    else:
        mode = f"{laplace.kind}: {laplace.message}"
        if laplace.kind in ("no_mode", "upward"):  # a funnel or an improper posterior
            reasons.append(
                "the mode search found no proper mode (a funnel or an improper posterior): "
                "a Gaussian may not represent it"
            )
    funnel = laplace is not None and laplace.kind in ("no_mode", "upward")
    if optimisation == "converged" and shape == "good":
        use = "q"
    elif optimisation == "converged" and shape in ("fair", "unknown") and not funnel:
        use = "psis" if corrected else "q"  # (a tails-only k-hat: not corrected, q itself)
    else:
        use = "none"
    if shape == "unknown" and use == "q":
        reasons.append("the PSIS diagnostic was not run: call fit.run_psis() to check q's shape")
    return FitStatus(optimisation, shape, corrected, use, khat, fit.error_mean, fit.error_scale, mode, tuple(reasons))
