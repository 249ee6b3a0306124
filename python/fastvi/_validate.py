"""Argument checks shared by the model, expression and fit code.

Everything a user passes is checked here, in Python, before it reaches the C++ core: pybind11
would otherwise reject an out-of-range int with a generic "incompatible function arguments", or
silently convert a string or a complex array, and the user would not learn which argument is at
fault. Every message names the argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from . import _spill

# The most elements fastvi accepts in one parameter block, expression or factor (2**40, about
# 10**12: far beyond any memory, but small enough that sizes and byte counts cannot overflow
# int64 in C++ or numpy). The C++ core checks its own limit too.
MAX_ELEMENTS = 2**40

INT64_END = 2**63  # C++ Index (ptrdiff_t) settings take values below this
UINT64_END = 2**64  # seeds are std::uint64_t
INT32_END = 2**31  # thread counts are C int


def int_setting(value: Any, name: str, minimum: int, end: int = INT64_END) -> int:
    """An int in [minimum, end): the range the C++ side can store."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value >= end:
        raise ValueError(f"{name} must be < {_power_of_two(end)}, got {value}")
    return value


def threads_setting(value: Any, name: str = "threads") -> int:
    """A thread count: an int in [1, 2**31 - 1]. More threads than cores is fine (C++ caps it)."""
    return int_setting(value, name, 1, INT32_END)


def seed_setting(value: Any, name: str = "seed") -> int:
    """A random seed: an int in [0, 2**64)."""
    return int_setting(value, name, 0, UINT64_END)


def bool_setting(value: Any, name: str) -> bool:
    """A real bool: bool("no") is True, so anything else is refused rather than converted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _power_of_two(end: int) -> str:
    k = end.bit_length() - 1
    return f"2**{k}" if end == 2**k else str(end)


def element_count(shape: Sequence[int]) -> int:
    """The number of elements of `shape`, as a Python int (numpy's int64 product wraps around)."""
    return math.prod(int(d) for d in shape)


def check_size(shape: Sequence[int], what: str) -> None:
    """Refuses shapes with more than MAX_ELEMENTS elements, naming `what`."""
    n = element_count(shape)
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"{what}: shape {tuple(int(d) for d in shape)} has {n} elements, more than fastvi's "
            f"limit of 2**40 ({MAX_ELEMENTS})"
        )


def as_real_array(value: Any, what: str, keep_float32: bool = False) -> np.ndarray:
    """`value` as a float64 C-contiguous array (float32 stays float32 with `keep_float32`),
    refusing what would be converted wrongly: masked arrays (the mask would be dropped), complex
    values (the imaginary part would be), strings, objects, and arrays too large for the core."""
    if getattr(value, "_is_data_container", False):  # a fastvi.Data, where only constants are taken
        raise TypeError(
            f"{what}: data container {value.name!r} cannot be used here (kernel inputs, expressions and "
            f"indices take containers); pass {value.name}.value for its current values as a constant"
        )
    if _spill.is_chunked(value):  # np.asarray would read it whole, unasked
        raise TypeError(
            f"{what} is {_spill.describe(value)}: fastvi reads such arrays out of core only as a factor's data "
            f"(model.add's inputs); here it needs the values in memory: pass np.asarray(...) of it if it fits"
        )
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is a masked array: masks are not supported (fill or drop the masked values, "
            f"e.g. with .filled() or .compressed(), and pass a plain array)"
        )
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{what} must be numeric data or a parameter, got an array of dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{what} must be real, got complex values")
    check_size(arr.shape, what)  # before the conversion, which may copy a broadcast view
    dtype = np.float32 if keep_float32 and arr.dtype == np.float32 else np.float64
    return np.asarray(arr, dtype=dtype, order="C")  # keeps 0-d arrays 0-d


def as_data(value: Any, what: str, factor_input: bool = False) -> np.ndarray:
    """Data for the model: a real float64 array that the model owns. A private copy is taken if
    the array shares memory with the caller's (the model's build log keeps it, and the caller may
    overwrite theirs later); it is made read-only so that it stays what the model was built with.

    For a factor's input (`factor_input`), data is copied at most once and never widened: a
    float32 array stays float32 (kernels that read an input in place, such as a GLM's design
    matrix, then read it as float32; the others get a float64 copy in the core), and a C-contiguous
    float32 or float64 ``numpy.memmap`` is not copied at all but referred to, so that data larger
    than memory is read from its file as needed (the model then sees any later change to the file).
    A chunked array (Dask, Zarr, h5py, see _spill) is streamed once into a temporary file, read
    the same way, and so is a memmap of another dtype or layout (converted to float64, or to C
    order, on disk rather than in memory); elsewhere (not `factor_input`) chunked arrays are
    refused, not read whole into memory."""
    if factor_input and (
        _spill.is_chunked(value)
        or (
            isinstance(value, np.memmap)
            and value.ndim > 0
            and not (value.dtype in (np.float32, np.float64) and value.flags.c_contiguous)
        )
    ):
        value = _spill.spill(value, what)
    if factor_input and isinstance(value, np.memmap) and value.dtype in (np.float32, np.float64):
        if value.flags.c_contiguous:
            check_size(value.shape, what)
            arr = value.view(np.ndarray)  # a read-only view of the mapping, which it keeps open
            arr.setflags(write=False)
            return arr
    arr = as_real_array(value, what, keep_float32=factor_input)
    # numbers and lists are always converted into a new array; anything else may be a view
    if not isinstance(value, (numbers.Number, list, tuple)) and np.may_share_memory(arr, np.asarray(value)):
        arr = arr.copy()
    arr.setflags(write=False)
    return arr


def float_setting(value: Any, name: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {value!r}")
    return out
