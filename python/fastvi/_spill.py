"""Chunked arrays (Dask, Zarr, h5py, ...) given as a factor's data, written once to a temporary file.

The C++ core reads a factor's data from memory it can address, and its hot loop never calls back
into Python, so it cannot ask a Dask or Zarr array for a chunk while it runs. Such an array is
instead streamed once, one block of rows (about 64 MB, whole chunks of the source's rows where
it has them) at a time, into an anonymous temporary file, and the model reads that file through a
read-only ``numpy.memmap``, as it reads a memmap the user gives (see ``_validate.as_data``): the
operating system pages the data in and out of its page cache, and the process never holds the
whole array.

The file is made with ``tempfile.TemporaryFile`` in ``FASTVI_SPILL_DIR`` if that environment
variable is set, else in ``tempfile.gettempdir()`` (``TMPDIR``, ...). It has no name (Linux
creates it with ``O_TMPFILE``, or unlinks it at once elsewhere on POSIX): the mapping holds the
only reference to it, so its disk space is freed when the model (and any copy of it) that reads
it is garbage-collected (a fit keeps its model), or when the process ends, however it ends.

What is streamed: an array whose type comes from ``dask``, ``zarr`` or ``h5py``, or any other
non-numpy array-like with ``shape``, ``dtype``, ``ndim``, ``__getitem__`` and a ``chunks``
attribute that is not None (an ``xarray.DataArray`` backed by Dask, for instance; one backed by
numpy has ``chunks`` None and is an ordinary in-memory array); and a factor's ``numpy.memmap`` that
the core cannot read in place (another dtype than float32 / float64, or not C-contiguous), which
would otherwise be converted whole in memory. Elsewhere (expressions, data containers,
``log_density``'s points) fastvi needs the values in memory and refuses chunked arrays instead of
reading them whole behind the user's back (``_validate.as_real_array``).
"""

from __future__ import annotations

import errno
import math
import mmap
import numbers
import os
import shutil
import tempfile
import warnings
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

SPILL_DIR_ENV = "FASTVI_SPILL_DIR"

# The bytes of the rows read from the source at a time (whole row chunks of the source are
# grouped up to this; a row chunk larger than it is read in pieces of about this size).
BLOCK_BYTES = 64 * 2**20

# Pickling a model warns above this many bytes of file-mapped data in its build log.
PICKLE_WARN_BYTES = 2**30

_CHUNKED_MODULES = ("dask", "zarr", "h5py")
_ARRAY_ATTRIBUTES = ("shape", "dtype", "ndim", "__getitem__")


def is_chunked(value: Any) -> bool:
    """Whether `value` is an array fastvi streams to a file rather than reads whole: see the
    module's docstring. Duck-typed, so that neither Dask nor Zarr is imported to check."""
    if isinstance(value, np.ndarray) or not all(hasattr(value, a) for a in _ARRAY_ATTRIBUTES):
        return False
    if type(value).__module__.partition(".")[0] in _CHUNKED_MODULES:
        return True
    return getattr(value, "chunks", None) is not None


def describe(value: Any) -> str:
    """`value`'s type as a user would name it: 'a dask.array.Array', 'a zarr.Array', ..."""
    t = type(value)
    module = t.__module__.partition(".")[0]
    name = {"dask": "dask.array.Array", "zarr": "zarr.Array", "h5py": "h5py.Dataset"}.get(module)
    return f"a {name or f'{t.__module__}.{t.__qualname__}'}"


def spill_dir() -> str:
    """The directory spill files go to: FASTVI_SPILL_DIR, else the temporary directory."""
    path = os.environ.get(SPILL_DIR_ENV)
    if not path:
        return tempfile.gettempdir()
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{SPILL_DIR_ENV}={path!r} is not a directory")
    return path


def spill(value: Any, what: str) -> np.ndarray:
    """`value` (a chunked array, see is_chunked) written to an anonymous temporary file, block of
    rows by block of rows, and returned as a read-only C-contiguous numpy.memmap of it: float32 if
    `value` is float32, else float64 (integers and bools are converted, as for numpy data). An
    array with no elements, or 0-d, is returned in memory (there is nothing to map)."""
    from ._validate import check_size  # (_validate imports this module)

    kind = describe(value)
    shape = _shape(value, what, kind)
    dtype = _dtype(value, what, kind)
    check_size(shape, what)
    target = np.dtype(np.float32 if dtype == np.float32 else np.float64)
    if len(shape) == 0 or 0 in shape:  # nothing to map: a number, or no elements
        out = np.array(np.asarray(value), dtype=target) if len(shape) == 0 else np.zeros(shape, target)
        out.setflags(write=False)
        return out
    nbytes = math.prod(shape) * target.itemsize
    directory = spill_dir()
    free = shutil.disk_usage(directory).free
    if nbytes > free:
        raise OSError(
            errno.ENOSPC,
            f"{what} is {kind} of {_gb(nbytes)} as {target.name}, which fastvi writes to a temporary file to "
            f"read it out of core, but {directory} has only {_gb(free)} free; set {SPILL_DIR_ENV} to a "
            f"directory on a disk with more space",
        )
    rows = shape[0]
    row_shape = shape[1:]
    blocks = row_blocks(rows, nbytes // rows, _row_chunk_bounds(value, rows))
    with tempfile.TemporaryFile(dir=directory) as f:
        for pieces in blocks:
            values = _read(value, pieces)  # (the source's own errors, OSErrors too, pass through)
            for i, (start, stop) in enumerate(pieces):
                rows_i = _converted(values[i], (stop - start, *row_shape), target, what, kind)
                values[i] = None  # each piece freed once written: at most a block in memory
                _write(f, rows_i.data.cast("B"), what, kind, directory)
                del rows_i
        _write(f, None, what, kind, directory)
        out = np.memmap(f, dtype=target, mode="r", shape=shape)  # its mmap keeps the file open
    return out


def _write(f: Any, data: Optional[memoryview], what: str, kind: str, directory: str) -> None:
    """Writes `data` to the spill file (flushes it for None), naming the input if that fails."""
    try:
        if data is None:
            f.flush()
        else:
            f.write(data)
    except OSError as err:
        raise OSError(
            err.errno, f"{what}: writing {kind} to a temporary file in {directory} failed: {err.strerror}"
        ) from err


def row_blocks(rows: int, row_bytes: int, bounds: Optional[Sequence[int]]) -> List[List[Tuple[int, int]]]:
    """The blocks of rows read at a time, each a list of consecutive (start, stop) pieces: the
    source's row chunks (`bounds`, from 0 to `rows`; None for one chunk of all rows), grouped while
    a block stays within BLOCK_BYTES; a chunk larger than that is read alone, in pieces of about
    BLOCK_BYTES (so a piece never spans two chunks, and a block never ends inside one that fits)."""
    per_block = max(1, BLOCK_BYTES // max(1, row_bytes))
    if bounds is None:
        bounds = [0, rows]
    blocks: List[List[Tuple[int, int]]] = []
    current: List[Tuple[int, int]] = []
    size = 0
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop <= start:
            continue
        if stop - start > per_block:  # a large chunk, alone and in pieces
            if current:
                blocks.append(current)
                current, size = [], 0
            pieces = math.ceil((stop - start) / per_block)
            edges = [start + (stop - start) * i // pieces for i in range(pieces + 1)]
            blocks.extend([[(a, b)] for a, b in zip(edges[:-1], edges[1:])])
            continue
        if size + stop - start > per_block:
            blocks.append(current)
            current, size = [], 0
        current.append((start, stop))
        size += stop - start
    if current:
        blocks.append(current)
    return blocks


def _row_chunk_bounds(value: Any, rows: int) -> Optional[List[int]]:
    """Where the source's chunks of rows start and end (0, ..., rows), if it says: Dask's
    ``chunks`` (a tuple of sizes per axis), Zarr's ``shards`` or ``chunks`` and h5py's ``chunks``
    (a chunk's shape). None if it has no chunks or they cannot be read."""
    chunks: Any = getattr(value, "shards", None) or getattr(value, "chunks", None)
    try:
        first = chunks[0]
        if isinstance(first, numbers.Integral):
            step = int(first)
            if step <= 0:
                return None
            return [*range(0, rows, step), rows]
        sizes = [int(c) for c in first]
    except (TypeError, IndexError, KeyError, ValueError):
        return None
    bounds = [0, *np.cumsum(sizes).tolist()]
    return bounds if bounds[-1] == rows and all(s >= 0 for s in sizes) else None


def _read(value: Any, pieces: Sequence[Tuple[int, int]]) -> List[Any]:
    """The rows of each piece of a block. A Dask array's pieces are computed together, on the
    scheduler in use (a distributed client's too), so that its chunks are computed in parallel and
    each once; other sources are indexed (a Zarr array reads and decompresses the chunks asked for)."""
    if type(value).__module__.partition(".")[0] == "dask":
        import dask  # the array's own package, so already imported

        return list(dask.compute(*[value[a:b] for a, b in pieces]))
    return [value[a:b] for a, b in pieces]


def _converted(piece: Any, shape: Tuple[int, ...], target: np.dtype, what: str, kind: str) -> np.ndarray:
    if isinstance(piece, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is {kind} with masked values: masks are not supported (fill or drop the masked values first)"
        )
    arr = np.asarray(piece)
    if arr.dtype.kind == "O" or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{what} is {kind} whose chunks hold values of dtype {arr.dtype}, not real numbers")
    if np.iscomplexobj(arr):
        raise TypeError(f"{what} must be real, got {kind} with complex values")
    if target == np.float32 and arr.dtype != np.float32:  # Dask's dtype is what the graph says, not what it computed
        raise TypeError(f"{what} is {kind} of dtype float32 whose chunks hold values of dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{what}: {kind} gave rows of shape {arr.shape} where its shape says {shape}")
    return np.ascontiguousarray(arr, dtype=target)


def _shape(value: Any, what: str, kind: str) -> Tuple[int, ...]:
    shape = tuple(value.shape)
    if not all(isinstance(d, numbers.Integral) and int(d) >= 0 for d in shape):  # Dask: NaN for unknown sizes
        raise ValueError(
            f"{what} is {kind} of unknown shape {shape}: compute its chunk sizes first "
            f"(for Dask, x.compute_chunk_sizes())"
        )
    return tuple(int(d) for d in shape)


def _dtype(value: Any, what: str, kind: str) -> np.dtype:
    try:
        dtype = np.dtype(value.dtype)
    except TypeError:
        raise TypeError(f"{what} must be numeric data, got {kind} of dtype {value.dtype}") from None
    if dtype.kind == "c":
        raise TypeError(f"{what} must be real, got {kind} of complex dtype {dtype}")
    if dtype.kind == "O" or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise TypeError(f"{what} must be numeric data, got {kind} of dtype {dtype}")
    return dtype


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3g} GB"


# ---- pickling ----------------------------------------------------------------------------------


def mapped_bytes(arr: np.ndarray) -> int:
    """`arr`'s bytes if it is read from a memory-mapped file (a numpy.memmap or a view of one),
    else 0."""
    base: Any = arr
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return int(arr.nbytes)
        base = getattr(base, "base", None)
    return 0


def _arrays(obj: Any) -> Iterator[np.ndarray]:
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, tuple):
        for o in obj:
            yield from _arrays(o)


def warn_if_pickling_mapped(recipe: Sequence[tuple], stacklevel: int) -> None:
    """Warns when a model's build log holds more than PICKLE_WARN_BYTES of file-mapped data, which
    a pickle holds in full (and an unpickled model in memory)."""
    total = sum(mapped_bytes(a) for entry in recipe for a in _arrays(entry))
    if total > PICKLE_WARN_BYTES:
        warnings.warn(
            f"pickling a fastvi.Model whose data includes {_gb(total)} read from memory-mapped files "
            f"(numpy.memmap, or Dask / Zarr arrays streamed to a temporary file): the pickle holds all of it, "
            f"and the unpickled model holds it in memory. Pickle with protocol=5 to write it without a copy in "
            f"memory, or pickle what builds the model instead",
            UserWarning,
            stacklevel=stacklevel,
        )
