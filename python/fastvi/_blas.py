"""Which BLAS computes the fused GLM kernels' GEMM-shaped products over many draws.

For S draws at once, a GLM kernel multiplies blocks of rows of X by the draws' coefficients
(X_blk B) and back (X_blkᵀ R). Eigen, compiled into the engine, computes them at about 70 % of a
tuned BLAS's rate on AVX2 CPUs (bench/README.md, issue 14). scipy, a dependency, ships a tuned BLAS
(OpenBLAS in its wheels) and exports its ``dgemm`` as a C function pointer
(``scipy.linalg.cython_blas``); fastvi hands that pointer to the engine, which calls it for one
fixed block at a time, from the thread that computes the block. The blocks are cut by N, K and S
alone, and OpenBLAS computes a call that small on the calling thread (and splits a larger one
only by blocks of its result), so results still do not depend on the number of threads.

The choice is made once per process, before the first GLM factor or ``X @ v`` node is built (a
model without them does not import scipy for it), and a kernel keeps the BLAS it was built with:
one model's results never change during a fit. The environment variable ``FASTVI_BLAS`` sets it:

- ``auto`` (the default): scipy's BLAS if it is OpenBLAS (as ``scipy.show_config`` names it),
  else Eigen. Other BLAS are not chosen automatically: whether their results depend on how many
  threads they use, or on whether the caller is inside a parallel region (MKL's dynamic threads),
  is not something fastvi can check;
- ``scipy``: scipy's BLAS, whichever it is (fastvi's threads=1 and threads=2 may then differ in
  rounding with a BLAS that threads small products differently inside parallel regions);
- ``eigen``: Eigen's products, as a C++-only build has them.

Results computed with different BLAS differ in rounding (about 1e-15 relative in a log density);
with the same installation and setting, the same seed gives the same answer.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from typing import Optional

from . import _core

# Names in scipy.show_config's "blas" entry for which "auto" takes scipy's BLAS (see the module doc).
_AUTO_BLAS = ("openblas",)
_lock = threading.Lock()
_chosen: Optional[str] = None  # None: not chosen yet; "eigen" or "scipy (<name> <version>)"


def _scipy_blas_name() -> Optional[str]:
    """The BLAS scipy was built with, as its show_config names it ("scipy-openblas 0.3.30"), or None."""
    try:
        import scipy

        info = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]  # scipy >= 1.11
    except Exception:  # an older scipy, or a build that does not say
        return None
    name = str(info.get("name", "")).strip()
    version = str(info.get("version", "")).strip()
    return f"{name} {version}".strip() or None


def _scipy_dgemm() -> int:
    """The address of scipy.linalg.cython_blas's dgemm (raises ImportError or KeyError without it)."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__["dgemm"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise KeyError("dgemm")
    return int(address)


def _choose(request: str) -> str:
    request = request.strip().lower()
    if request not in ("", "auto", "scipy", "eigen"):
        warnings.warn(
            f"FASTVI_BLAS={request!r} is not one of auto, scipy, eigen: using auto", RuntimeWarning, stacklevel=4
        )
        request = "auto"
    if request == "eigen":
        return "eigen"
    name = _scipy_blas_name()
    if request != "scipy" and not (name and any(t in name.lower() for t in _AUTO_BLAS)):
        return "eigen"
    try:
        address = _scipy_dgemm()
    except Exception as error:  # scipy without cython_blas: keep Eigen's products
        if request == "scipy":
            warnings.warn(
                f"FASTVI_BLAS=scipy: scipy's BLAS could not be loaded ({error}): using Eigen's products",
                RuntimeWarning,
                stacklevel=4,
            )
        return "eigen"
    _core.set_dgemm(address)
    return f"scipy ({name or 'unknown BLAS'})"


def ensure() -> str:
    """Chooses the BLAS once per process (before the first kernel that uses it is built) and returns the choice."""
    global _chosen
    if _chosen is None:
        with _lock:
            if _chosen is None:
                _chosen = _choose(os.environ.get("FASTVI_BLAS", "auto"))
    return _chosen


def get_blas() -> str:
    """The BLAS that computes the GLM kernels' products over many draws in models built now.

    ``"eigen"`` (Eigen's products, compiled into fastvi) or ``"scipy (<BLAS> <version>)"``, the
    tuned BLAS scipy ships, e.g. ``"scipy (scipy-openblas 0.3.30)"``. The environment variable
    ``FASTVI_BLAS`` (``auto``, ``scipy`` or ``eigen``), read once per process, sets it.

    Examples
    --------
    >>> import fastvi as fv
    >>> fv.get_blas() == "eigen" or fv.get_blas().startswith("scipy (")
    True
    """
    chosen = ensure()
    return chosen if _core.dgemm_address() != 0 else "eigen"
