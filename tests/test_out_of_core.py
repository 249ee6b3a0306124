"""Data that does not fit in memory (issue 13, item 3): a Dask, Zarr or h5py array given as a
factor's data is streamed once, block of rows by block of rows, into an anonymous temporary file
that the model then reads in place as a numpy.memmap (fastvi/_spill.py); the process never holds
the whole array.

The model built on the streamed array must be the model built on the same values in memory: the
file holds the values exactly (float32 kept as float32, anything else as float64, as for numpy
data), and the core reads a memmap as it reads an array, so log densities, gradients and fits
are equal bit for bit.
"""

import copy
import gc
import os
import pickle
import shutil
import tracemalloc
import warnings

import fastvi as fv
import numpy as np
import pytest
from fastvi import _spill
from test_glm import make_data

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")


def _glm(y, X, kernel="bernoulli_logit_glm"):
    m = fv.Model()
    inputs = {"X": X, "alpha": m.param("alpha"), "beta": m.param("beta", X.shape[1])}
    if kernel == "normal_id_glm":
        inputs["scale"] = m.param("sigma", lower=0.0)
    m.add(kernel, y, **inputs)
    return m


def _stored(model):
    """The data arrays the model's build log holds for its factors (what the core reads)."""
    return [o[2] for entry in model._recipe if entry[0] == "add_factor" for o in entry[2] if o[0] == "data"]


def _stored_x(model):
    (x,) = [a for a in _stored(model) if a.ndim == 2]
    return x


def _assert_same_model(m, ref, seed=0):
    rng = np.random.default_rng(seed)
    for S in (1, 3, 40):  # the row kernel and the GEMM path
        zeta = rng.normal(scale=0.2, size=(m.dim, S))
        lp, g = m.log_density(zeta)
        lp_ref, g_ref = ref.log_density(zeta)
        assert np.isfinite(lp).all()
        np.testing.assert_array_equal(lp, lp_ref)
        np.testing.assert_array_equal(g, g_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "chunks",
    [(97, 20), (3000, 3), (250, 7), ((100, 1400, 1, 1499), (5, 15))],
    ids=["rows", "columns", "rows-and-columns", "irregular"],
)
@pytest.mark.parametrize("block_bytes", [None, 8192], ids=["64MB-blocks", "small-blocks"])
def test_dask_design_matrix_equals_the_in_memory_model(monkeypatch, dtype, chunks, block_bytes):
    if block_bytes is not None:  # many blocks, and chunks larger than a block read in pieces
        monkeypatch.setattr(_spill, "BLOCK_BYTES", block_bytes)
    X, y = make_data("bernoulli_logit_glm", 3000, 20, seed=1)
    X = X.astype(dtype)
    m = _glm(y, da.from_array(X, chunks=chunks))
    x = _stored_x(m)
    assert x.dtype == dtype and x.flags.c_contiguous and not x.flags.writeable
    assert _spill.mapped_bytes(x) == X.nbytes  # read from the file, not held in memory
    np.testing.assert_array_equal(x, X)
    _assert_same_model(m, _glm(y, X))


def test_dask_model_fits_as_the_in_memory_model():
    X, y = make_data("normal_id_glm", 2000, 10, seed=2)
    X = X.astype(np.float32)
    m = _glm(da.from_array(y, chunks=300), da.from_array(X, chunks=(300, 10)), "normal_id_glm")
    ref = _glm(y, X, "normal_id_glm")
    fit, fit_ref = fv.fit(m, seed=3, steps=1000, tol=None), fv.fit(ref, seed=3, steps=1000, tol=None)
    for name in ("alpha", "beta", "sigma"):
        np.testing.assert_array_equal(fit.mean()[name], fit_ref.mean()[name])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.float16])
def test_other_real_dtypes_are_read_as_float64(dtype):
    X = np.random.default_rng(3).integers(0, 2, size=(500, 4)).astype(dtype)
    y = np.random.default_rng(4).integers(0, 2, size=500).astype(float)
    m = _glm(y, da.from_array(X, chunks=(128, 4)))
    assert _stored_x(m).dtype == np.float64
    _assert_same_model(m, _glm(y, X.astype(np.float64)))


def test_row_blocks_follow_the_source_chunks(monkeypatch):
    monkeypatch.setattr(_spill, "BLOCK_BYTES", 100 * 8)  # 100 rows of one float64
    bounds = [0, 30, 60, 90, 100, 350, 360, 400]
    blocks = _spill.row_blocks(400, 8, bounds)
    pieces = [p for b in blocks for p in b]
    assert pieces[0][0] == 0 and pieces[-1][1] == 400
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # consecutive, covering every row
    assert all(sum(b - a for a, b in block) <= 100 for block in blocks)
    # chunks that fit a block are never split; the one of 250 rows is read alone, in 3 pieces
    assert blocks == [[(0, 30), (30, 60), (60, 90), (90, 100)], [(100, 183)], [(183, 266)], [(266, 350)],
                      [(350, 360), (360, 400)]]  # fmt: skip
    assert _spill.row_blocks(250, 8, None) == [[(0, 83)], [(83, 166)], [(166, 250)]]


def test_zarr_design_matrix_equals_the_in_memory_model(tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = make_data("poisson_log_glm", 1500, 12, seed=5)
    for dtype in (np.float32, np.float64):
        z = zarr.open_array(str(tmp_path / f"X{np.dtype(dtype).name}.zarr"), mode="w", shape=X.shape,
                            chunks=(128, 5), dtype=dtype)  # fmt: skip
        z[:] = X.astype(dtype)
        m = _glm(y, z, "poisson_log_glm")
        assert _stored_x(m).dtype == dtype and _spill.mapped_bytes(_stored_x(m)) > 0
        _assert_same_model(m, _glm(y, X.astype(dtype), "poisson_log_glm"))


@pytest.mark.parametrize("chunked", [True, False])
def test_h5py_dataset_equals_the_in_memory_model(tmp_path, chunked):
    h5py = pytest.importorskip("h5py")
    X, y = make_data("bernoulli_logit_glm", 1000, 6, seed=6)
    with h5py.File(tmp_path / "X.h5", "w") as f:
        dset = f.create_dataset("X", data=X.astype(np.float32), chunks=(100, 6) if chunked else None)
        m = _glm(y, dset)
    _assert_same_model(m, _glm(y, X.astype(np.float32)))  # the file is closed: the model has its own copy


def test_dask_backed_xarray_is_streamed():
    xr = pytest.importorskip("xarray")
    X, y = make_data("bernoulli_logit_glm", 800, 5, seed=7)
    m = _glm(y, xr.DataArray(da.from_array(X, chunks=(100, 5)), dims=("obs", "k")))
    assert _spill.mapped_bytes(_stored_x(m)) > 0
    _assert_same_model(m, _glm(y, X))
    assert not _spill.is_chunked(xr.DataArray(X))  # backed by numpy: an ordinary array


def _mappings_of(directory):
    """This process's memory mappings of (deleted) files in `directory` (Linux: /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return [line for line in f if f"{directory}/" in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
def test_spill_file_is_anonymous_and_freed_with_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTVI_SPILL_DIR", str(tmp_path))
    X, y = make_data("bernoulli_logit_glm", 2000, 8, seed=8)
    m = _glm(y, da.from_array(X, chunks=(500, 8)))
    assert os.listdir(tmp_path) == []  # the file has no name: nothing to clean up
    (mapping,) = _mappings_of(tmp_path)
    assert mapping.rstrip().endswith("(deleted)")
    m2 = copy.deepcopy(m)  # a copy reads the same file
    assert np.shares_memory(_stored_x(m2), _stored_x(m))
    del m
    gc.collect()
    assert len(_mappings_of(tmp_path)) == 1
    del m2
    gc.collect()
    assert _mappings_of(tmp_path) == []  # the mapping, its file descriptor and so the file are gone


def _rss_anon_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_a_200_mb_dask_array_is_never_held_in_memory():
    n, k = 500_000, 50  # 200 MB of float64, made chunk by chunk when read
    X = da.random.default_rng(0).standard_normal((n, k), chunks=(10_000, k))
    y = np.zeros(n)
    y[::3] = 1.0
    gc.collect()
    rss_before = _rss_anon_kb()
    tracemalloc.start()
    try:
        # Dask holds a chunk twice while it finishes it (its copy), one per thread at most: 2
        # threads, as on a 2-core machine, so that the bound does not depend on the core count
        with dask.config.set(num_workers=2):
            m = _glm(y, X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = (_rss_anon_kb() - rss_before) * 1024
    x = _stored_x(m)
    assert _spill.mapped_bytes(x) == X.nbytes == 200_000_000
    assert peak < 0.5 * X.nbytes, peak  # a few blocks of 64 MB at most, never the whole array
    # nor anywhere else (the core reads the file in place). Not under AddressSanitizer, whose
    # allocator keeps freed memory in quarantine (the growth was 198 MB there: the freed blocks).
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        assert grown < 0.5 * X.nbytes, grown
    np.testing.assert_array_equal(x[-7:], X[-7:].compute())
    lp, _ = m.log_density(np.zeros(m.dim))
    np.testing.assert_allclose(lp, n * np.log(0.5), rtol=1e-12)


def test_nan_in_a_dask_chunk_is_found_by_the_core():
    X, y = make_data("bernoulli_logit_glm", 40, 3, seed=9)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"input 'X' contains nan at flat index 23"):
        _glm(y, da.from_array(X, chunks=(5, 3)))
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"input 'X' contains inf at flat index 23"):
        _glm(y, da.from_array(X.astype(np.float32), chunks=(5, 2)))


@pytest.mark.parametrize(
    "X,error,match",
    [
        (np.ones((10, 2), dtype=complex), TypeError, r"input 'X' must be real, got a dask.array.Array of complex"),
        (np.full((10, 2), "a"), TypeError, r"input 'X' must be numeric data, got a dask.array.Array of dtype <U1"),
        (np.ones((10, 2), dtype=object), TypeError, r"input 'X' must be numeric data, got a dask.array.Array"),
    ],
    ids=["complex", "str", "object"],
)
def test_bad_dtypes_name_the_input(X, error, match):
    with pytest.raises(error, match=match):
        _glm(np.zeros(10), da.from_array(X, chunks=(5, 2)))


def test_masked_and_unknown_shape_dask_arrays_are_refused():
    X = np.ones((10, 2))
    masked = da.ma.masked_less(da.from_array(X, chunks=(5, 2)), 0.5)
    with pytest.raises(TypeError, match=r"input 'X' is a dask.array.Array with masked values"):
        _glm(np.zeros(10), masked)
    Xd = da.from_array(np.arange(20.0).reshape(10, 2), chunks=(5, 2))
    unknown = Xd[Xd[:, 0] > 4]
    with pytest.raises(ValueError, match=r"input 'X' is a dask.array.Array of unknown shape .*compute_chunk_sizes"):
        _glm(np.zeros(7), unknown)


def test_not_enough_disk_space_names_the_input(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTVI_SPILL_DIR", str(tmp_path))
    real = shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    X = da.zeros((100, 4), chunks=(50, 4), dtype=np.float32)  # 1600 bytes as float32
    with pytest.raises(OSError, match=r"input 'X' is a dask.array.Array of 1.6e-06 GB as float32, .*"
                                      r"only 1e-06 GB free; set FASTVI_SPILL_DIR") as info:  # fmt: skip
        _glm(np.zeros(100), X)
    assert info.value.errno == 28  # ENOSPC
    _glm(np.zeros(50), X[:50])  # 800 bytes fit


def test_spill_dir_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTVI_SPILL_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FASTVI_SPILL_DIR=.*missing.* is not a directory"):
        _glm(np.zeros(10), da.zeros((10, 2), chunks=5))


def test_chunked_arrays_are_refused_where_fastvi_needs_memory():
    m = fv.Model()
    mu = m.param("mu", 4)
    x = da.ones(4, chunks=2)
    msg = r"is a dask.array.Array: fastvi reads such arrays out of core only as a factor's data"
    with pytest.raises(TypeError, match=msg):
        mu + x  # an expression's operand
    with pytest.raises(TypeError, match=msg):
        m.data("x", x)
    with pytest.raises(TypeError, match=msg):
        m.log_density(da.zeros(4, chunks=2))
    with pytest.raises(TypeError, match=msg):
        fv.logp("normal", x, loc=0.0, scale=1.0)
    m.add("normal", x, loc=mu, scale=1.0)  # a factor's data (the variate too): streamed
    _assert_same_model(m, _with_normal(np.ones(4)))


def _with_normal(data):
    m = fv.Model()
    m.add("normal", data, loc=m.param("mu", 4), scale=1.0)
    return m


def test_empty_and_0d_dask_arrays_are_taken_in_memory():
    assert _spill.spill(da.zeros((0, 3), chunks=1), "x").shape == (0, 3)
    out = _spill.spill(da.from_array(np.float32(2.5)), "x")
    assert out.shape == () and out.dtype == np.float32 and out == 2.5


def test_pickling_mapped_data_writes_its_values_and_warns_above_a_gigabyte(monkeypatch):
    X, y = make_data("bernoulli_logit_glm", 1000, 5, seed=10)
    m = _glm(y, da.from_array(X.astype(np.float32), chunks=(100, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20 kB of mapped data: no warning
        small = pickle.dumps(m)
        copy.deepcopy(m)
    monkeypatch.setattr(_spill, "PICKLE_WARN_BYTES", 10_000)
    with pytest.warns(
        UserWarning, match=r"pickling a fastvi.Model whose data includes 2e-05 GB read from memory-mapped"
    ):
        big = pickle.dumps(m, protocol=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copy.deepcopy(m)  # a copy shares the mapping: no warning
    for data in (small, big):
        back = pickle.loads(data)
        x = _stored_x(back)
        assert x.dtype == np.float32 and _spill.mapped_bytes(x) == 0  # the values, now in memory
        _assert_same_model(back, m)


def test_pickling_a_fit_of_a_memmap_model_warns(monkeypatch, tmp_path):
    X, y = make_data("bernoulli_logit_glm", 500, 5, seed=11)
    mm = np.memmap(tmp_path / "X.bin", dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    fit = fv.fit(_glm(y, mm), seed=0, steps=200, tol=None)
    monkeypatch.setattr(_spill, "PICKLE_WARN_BYTES", 1000)
    with pytest.warns(UserWarning, match="memory-mapped"):
        back = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(back.mean()["beta"], fit.mean()["beta"])


def test_a_dask_array_whose_chunks_are_not_its_dtype_is_refused():
    X = da.from_array(np.ones((10, 2)), chunks=(5, 2)).map_blocks(lambda b: b, dtype=np.float32)  # holds float64
    with pytest.raises(
        TypeError, match=r"input 'X' is a dask.array.Array of dtype float32 whose chunks hold .* float64"
    ):
        _glm(np.zeros(10), X)


@pytest.mark.parametrize(
    "dtype,order,cols",
    [(np.int16, "C", slice(None)), (np.float64, "F", slice(None)), (np.float32, "C", slice(1, 5))],
    ids=["int16", "fortran-order", "column-slice"],
)
def test_a_memmap_the_core_cannot_read_in_place_is_converted_on_disk(tmp_path, dtype, order, cols):
    X, y = make_data("bernoulli_logit_glm", 700, 6, seed=12)
    X = np.round(X * 10).astype(dtype)
    mm = np.memmap(tmp_path / "X.bin", dtype=dtype, mode="w+", shape=X.shape, order=order)
    mm[:] = X
    mm.flush()
    source = np.memmap(tmp_path / "X.bin", dtype=dtype, mode="r", shape=X.shape, order=order)[:, cols]
    m = _glm(y, source)
    x = _stored_x(m)
    assert _spill.mapped_bytes(x) > 0 and not np.shares_memory(x, source)  # a new file, not memory
    assert x.dtype == (np.float32 if dtype == np.float32 else np.float64)
    _assert_same_model(m, _glm(y, np.ascontiguousarray(X[:, cols], dtype=x.dtype)))


def test_protocol_5_pickles_mapped_data_without_a_copy_in_memory(tmp_path):
    X = da.random.default_rng(1).standard_normal((100_000, 20), chunks=(10_000, 20))  # 16 MB
    m = _glm(np.zeros(100_000), X)
    for protocol, copied in ((4, True), (5, False)):
        tracemalloc.start()
        try:
            with open(tmp_path / "m.pkl", "wb") as f:
                pickle.dump(m, f, protocol=protocol)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (peak > X.nbytes) == copied, (protocol, peak)
    with open(tmp_path / "m.pkl", "rb") as f:
        _assert_same_model(pickle.load(f), m)


def test_a_failed_write_names_the_input(monkeypatch, tmp_path):
    import tempfile

    real = tempfile.TemporaryFile

    class Full:  # a disk that fills up while the file is written (space checked first, then taken)
        def __init__(self, **kwargs):
            self.f = real(dir=tmp_path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(_spill.tempfile, "TemporaryFile", Full)
    with pytest.raises(
        OSError, match=r"input 'X': writing a dask.array.Array to a temporary file in .* failed: No space"
    ):
        _glm(np.zeros(10), da.zeros((10, 2), chunks=5))


def test_the_sources_own_errors_pass_through():
    def broken(block):
        raise OSError(5, "the remote store went away")

    X = da.from_array(np.ones((10, 2)), chunks=(5, 2)).map_blocks(broken, dtype=np.float64)
    with pytest.raises(OSError, match="^\\[Errno 5\\] the remote store went away$"):
        _glm(np.zeros(10), X)
