"""fastvi: fast, trustworthy Gaussian variational inference with a C++ core.

>>> import numpy as np, fastvi as fv
>>> np.random.seed(42)
>>> x = np.random.normal(2.0, 1.0, size=100)
>>> model = fv.Model()
>>> w = model.param("w")
>>> model.add("normal", w, loc=0.0, scale=1.0)
>>> model.add("normal", x, loc=w, scale=1.0)
>>> approx = fv.fit(model, family="meanfield", steps=10_000, seed=0)
>>> draws = approx.sample(1000, seed=1)
>>> draws["w"].shape
(1000,)
"""

import os as _os

# OpenMP worker threads must sleep, not spin, between parallel regions: fastvi runs beside other
# busy processes, and spinning workers steal the core they need. (Read when libgomp loads, so it
# has to be set before _core is imported; a user's own setting wins.)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import (
    _isa,  # noqa: F401  (first: it loads the engine build for this CPU as fastvi._core; libgomp reads OMP_WAIT_POLICY then)
    psis,
)
from ._blas import get_blas
from ._data import Data
from ._fit import Approximation, ConvergenceWarning, ImproperPosteriorWarning, PosteriorShapeWarning, fit
from ._isa import get_isa
from ._kernels import (
    InputSpec,
    KernelSpec,
    get_compile_flags,
    get_include,
    kernel_spec,
    kernels,
    register_kernel,
)
from ._linalg import add_diag, cholesky, exp_quad_cov
from ._logp import logp
from ._many import fit_many
from ._sharded import fit_sharded
from ._summary import Summary, summary
from .check import InputCheck, KernelCheck, check_kernel
from .expr import (
    Expr,
    abs,
    concatenate,
    cumsum,
    exp,
    expm1,
    inv_logit,
    lgamma,
    log,
    log1m,
    log1p,
    log1p_exp,
    log_add_exp,
    log_inv_logit,
    log_mix,
    log_softmax,
    log_sum_exp,
    logit,
    matmul,
    pow,
    softmax,
    sqrt,
    square,
    stack,
    sum,
    tanh,
)
from .model import Model, Param
from .status import FitStatus

__version__ = "0.1.0"

__all__ = [
    "Approximation",
    "ConvergenceWarning",
    "Data",
    "Expr",
    "FitStatus",
    "ImproperPosteriorWarning",
    "InputCheck",
    "InputSpec",
    "KernelCheck",
    "KernelSpec",
    "Model",
    "Param",
    "PosteriorShapeWarning",
    "Summary",
    "abs",
    "add_diag",
    "check_kernel",
    "cholesky",
    "concatenate",
    "cumsum",
    "exp",
    "exp_quad_cov",
    "expm1",
    "fit",
    "fit_many",
    "fit_sharded",
    "get_blas",
    "get_compile_flags",
    "get_include",
    "get_isa",
    "inv_logit",
    "kernel_spec",
    "kernels",
    "lgamma",
    "log",
    "log1m",
    "log1p",
    "log1p_exp",
    "log_add_exp",
    "log_inv_logit",
    "log_mix",
    "log_softmax",
    "log_sum_exp",
    "logit",
    "logp",
    "matmul",
    "pow",
    "psis",
    "register_kernel",
    "softmax",
    "sqrt",
    "square",
    "stack",
    "sum",
    "summary",
    "tanh",
]
