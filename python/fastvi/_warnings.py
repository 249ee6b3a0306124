"""fastvi's warnings: one family, so that ``warnings.simplefilter("ignore", fv.ConvergenceWarning)``
silences them all."""


class ConvergenceWarning(UserWarning):
    """The fit's result may not be what it should be.

    Issued by :func:`fastvi.fit` when the fit stopped before its convergence rule was met, skipped
    non-finite steps, diverged (the ELBO fell away from its best), was interrupted, found no
    proper mode to precondition with, or produced a result that is not finite. The base class of
    fastvi's other warnings: ignoring it silences them all.

    See Also
    --------
    ImproperPosteriorWarning, PosteriorShapeWarning

    Examples
    --------
    Too few steps for the stopping rule (it is checked every 500 steps):

    >>> import warnings, fastvi as fv
    >>> m = fv.Model()
    >>> m.add("normal", m.param("w"), loc=0.0, scale=1.0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fit = fv.fit(m, steps=300, seed=0)
    >>> [w.category.__name__ for w in caught], fit.converged
    (['ConvergenceWarning'], False)
    >>> print(caught[0].message)    # doctest: +ELLIPSIS
    fit did not converge in 300 steps (...); increase steps or lr, or pass tol=None to silence this

    Silencing all of fastvi's warnings:

    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", fv.ConvergenceWarning)
    ...     fit = fv.fit(m, steps=300, seed=0)
    >>> issubclass(fv.ImproperPosteriorWarning, fv.ConvergenceWarning)
    True
    """


class ImproperPosteriorWarning(ConvergenceWarning):
    """The posterior looks improper or unidentified.

    A direction along which the log density is flat at the mode, or q's scale growing without
    end: no Gaussian approximation of it means anything. The fit's ``converged`` is False, and the
    warning names the parameters involved (``fit.laplace.parameters`` for a flat direction).

    See Also
    --------
    ConvergenceWarning : Its base class.

    Examples
    --------
    Only the sum a + b is determined by the data (and neither has a prior):

    >>> import warnings, numpy as np, fastvi as fv
    >>> m = fv.Model()
    >>> a, b = m.param("a"), m.param("b")
    >>> m.add("normal", np.array([1.0, 2.0]), loc=a + b, scale=1.0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fit = fv.fit(m, seed=0, psis_draws=0)
    >>> [w.category.__name__ for w in caught]
    ['ImproperPosteriorWarning']
    >>> fit.converged, fit.laplace.kind, fit.laplace.parameters
    (False, 'flat', ('a', 'b'))
    """


class PosteriorShapeWarning(ConvergenceWarning):
    """PSIS k-hat > 0.7: q is a poor approximation of the posterior (see ``fit.psis``).

    The posterior has mass that q misses, so q's means, sds and draws may be off, and the PSIS
    weights are too heavy-tailed for the corrected results to be reliable either. The message
    suggests what to try: the full-rank family, a reparameterisation. Not issued when only the
    tails are heavy (k-hat > 0.7 while the weights hardly vary: see :mod:`fastvi.psis`).

    See Also
    --------
    ConvergenceWarning : Its base class.
    Approximation.status : The same verdict (``shape`` "poor").

    Examples
    --------
    A posterior with a correlation of -0.99 between a and b, which mean-field q cannot represent:

    >>> import warnings, fastvi as fv
    >>> m = fv.Model()
    >>> a, b = m.param("a"), m.param("b")
    >>> m.add("normal", a, loc=0.0, scale=1.0)
    >>> m.add("normal", b, loc=0.0, scale=1.0)
    >>> m.add("normal", 1.0, loc=a + b, scale=0.1)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fit = fv.fit(m, seed=0)
    >>> [w.category.__name__ for w in caught], fit.status.shape
    (['PosteriorShapeWarning'], 'poor')
    >>> round(float(fit.std()["a"]), 2)    # the exact posterior sd is 0.71
    0.1

    The full-rank family describes it:

    >>> full = fv.fit(m, family="fullrank", seed=0)
    >>> full.status.shape, round(float(full.std()["a"]), 2)
    ('good', 0.71)
    """
