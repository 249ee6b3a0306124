"""fastvi's warnings: one family, so that ``warnings.simplefilter("ignore", fv.ConvergenceWarning)``
silences them all."""


class ConvergenceWarning(UserWarning):
    """The fit stopped before its convergence rule was met, skipped non-finite steps, found no
    proper mode to precondition with, or produced a result that is not finite."""


class ImproperPosteriorWarning(ConvergenceWarning):
    """The posterior looks improper or unidentified (a direction along which the log density is
    flat, or q's scale growing without end): no Gaussian approximation of it means anything."""


class PosteriorShapeWarning(ConvergenceWarning):
    """PSIS k-hat > 0.7: q is a poor approximation of the posterior (see ``fit.psis``)."""
