"""Whole stored chunks decoded straight into the block: same values as Zarr, or Zarr reads."""

from __future__ import annotations

import os
import pickle

import dask
import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

from daskmeans import open_zarr
from daskmeans.io import _direct as _zarr_direct

N, D, CHUNK = 1030, 5, 100  # the last chunk holds 30 rows


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)


def _store(path, X, zarr_format=3, compressors="auto", fill_value=None, skip=(), **kw):
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(CHUNK, X.shape[1]),
                          dtype=X.dtype, zarr_format=zarr_format, compressors=compressors,
                          fill_value=fill_value, **kw)
    for i in range(-(-X.shape[0] // CHUNK)):
        if i not in skip:  # a chunk never written reads as the fill value
            z[i * CHUNK : (i + 1) * CHUNK] = X[i * CHUNK : (i + 1) * CHUNK]
    return zarr.open_array(str(path), mode="r")


@pytest.fixture
def decoded(monkeypatch):
    """Count the chunks decoded by the direct path (uncompressed chunks in local
    files: read straight into the block, counted as "raw")."""
    calls = []
    real = _zarr_direct._decode_into
    real_into = _zarr_direct._read_file_into

    def spy(kind, src, dest):
        calls.append(kind)
        return real(kind, src, dest)

    def spy_into(path, dest, size):
        got = real_into(path, dest, size)
        if got:
            calls.append("raw")
        return got

    monkeypatch.setattr(_zarr_direct, "_decode_into", spy)
    monkeypatch.setattr(_zarr_direct, "_read_file_into", spy_into)
    return calls


LAYOUTS = [
    (3, "auto", "zstd"),  # Zarr 3's default for numbers
    (3, [ZstdCodec(level=5, checksum=True)], "zstd"),
    (3, [BloscCodec(cname="lz4", shuffle="bitshuffle")], "blosc"),
    (3, None, "raw"),
    (2, numcodecs.Zstd(level=3), "zstd"),
    (2, numcodecs.Blosc(cname="zstd"), "blosc"),
    (2, None, "raw"),
]


@pytest.mark.parametrize(("zarr_format", "compressors", "kind"), LAYOUTS)
def test_whole_chunks_read_directly_equal_zarr(tmp_path, data, decoded, zarr_format,
                                               compressors, kind):
    arr = _store(tmp_path / "x.zarr", data, zarr_format, compressors, fill_value=7.0,
                 skip=(3,))
    expected = arr[:]
    assert np.all(expected[300:400] == 7.0)  # the missing chunk, as Zarr fills it
    plan = _zarr_direct.direct_plan(arr)
    assert plan is not None and plan.kind == kind
    for chunks in ("stored", 300, None):  # one chunk, three, and open_zarr's grouping
        X = open_zarr(str(tmp_path / "x.zarr"), chunks=chunks)
        decoded.clear()
        np.testing.assert_array_equal(X.compute(), expected)
        assert len(decoded) == 10  # every stored chunk but the missing one, once
    assert decoded == [kind] * 10


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.uint8])
def test_other_dtypes(tmp_path, dtype, decoded):
    X = (np.random.default_rng(1).normal(size=(N, D)) * 50).astype(dtype)
    arr = _store(tmp_path / "x.zarr", X)
    np.testing.assert_array_equal(open_zarr(str(tmp_path / "x.zarr")).compute(), arr[:])
    assert len(decoded) == 11


def test_blocks_off_chunk_boundaries_read_by_zarr(tmp_path, data, decoded):
    _store(tmp_path / "x.zarr", data)
    X = open_zarr(str(tmp_path / "x.zarr"), chunks=250)  # blocks split stored chunks
    np.testing.assert_array_equal(X.compute(), data)
    # 0:250 and 500:750 start on a chunk but end inside one, the others start inside
    # one; only the last block, 1000:1030, is a whole (the array's last) chunk
    assert decoded == ["zstd"]
    # slicing the Dask array reads through Zarr as well, with the right values
    np.testing.assert_array_equal(open_zarr(str(tmp_path / "x.zarr"))[95:105, 1:3].compute(),
                                  data[95:105, 1:3])


@pytest.mark.parametrize("layout", ["sharded", "crc32c", "gzip", "column-chunks",
                                    "fortran-v2", "filters-v2", "big-endian"])
def test_other_layouts_are_left_to_zarr(tmp_path, data, decoded, layout):
    path = tmp_path / "x.zarr"
    X = data
    kw = {}
    if layout == "sharded":
        kw = {"shards": (2 * CHUNK, D)}
        X = data[:1000]
    elif layout == "crc32c":
        kw = {"compressors": [ZstdCodec(), Crc32cCodec()]}
    elif layout == "gzip":
        kw = {"compressors": [GzipCodec()]}
    elif layout == "fortran-v2":
        kw = {"zarr_format": 2, "order": "F"}
    elif layout == "filters-v2":
        kw = {"zarr_format": 2, "filters": [numcodecs.Delta(dtype="<f4")]}
    elif layout == "big-endian":
        kw = {"zarr_format": 2}
        X = data.astype(">f4")
    if layout == "column-chunks":
        z = zarr.create_array(store=str(path), shape=X.shape, chunks=(CHUNK, 2), dtype=X.dtype)
        z[:] = X
    else:
        z = zarr.create_array(store=str(path), shape=X.shape, chunks=(CHUNK, D), dtype=X.dtype,
                              **kw)
        z[:] = X
    arr = zarr.open_array(str(path), mode="r")
    assert _zarr_direct.direct_plan(arr) is None
    assert _zarr_direct.wrap(arr) is arr
    # what Zarr reads (a Delta filter on floats does not round-trip exactly)
    np.testing.assert_array_equal(open_zarr(str(path)).compute(), arr[:])
    assert decoded == []


def test_a_chunk_of_another_size_is_left_to_zarr(tmp_path, data):
    arr = _store(tmp_path / "x.zarr", data, compressors=None)
    # a raw chunk one row short: not the chunk's size, so the block goes to Zarr
    key = tmp_path / "x.zarr" / "c" / "2" / "0"
    key.write_bytes(key.read_bytes()[: -D * 4])
    direct = _zarr_direct.wrap(arr)
    assert isinstance(direct, _zarr_direct.DirectArray)
    assert direct._read(200, 300) is None
    with pytest.raises(Exception):  # noqa: B017 - Zarr's own error, whatever it is
        direct[200:300, :]
    np.testing.assert_array_equal(direct[100:200, :], data[100:200])


@pytest.mark.parametrize("n_bytes", [0, 1, 100, 255, 256, 300, 65_791, 70_000, 5_000_000])
def test_zstd_content_size_reads_the_frame_header(n_bytes):
    src = np.random.default_rng(n_bytes).integers(0, 4, size=n_bytes, dtype=np.uint8)
    frame = np.frombuffer(numcodecs.Zstd(level=1).encode(src), dtype=np.uint8)
    assert _zarr_direct.zstd_content_size(frame) == n_bytes
    assert _zarr_direct.zstd_content_size(np.zeros(10, dtype=np.uint8)) is None


def test_wrong_sizes_are_refused_by_every_decoder():
    src = np.arange(64, dtype=np.float32)
    for kind, enc in (("zstd", numcodecs.Zstd().encode(src)),
                      ("blosc", numcodecs.Blosc().encode(src)),
                      ("raw", src.tobytes())):
        enc = np.frombuffer(enc, dtype=np.uint8)
        dest = np.empty(src.nbytes + 4, dtype=np.uint8)
        assert not _zarr_direct._decode_into(kind, enc, dest)
        dest = np.empty(src.nbytes, dtype=np.uint8)
        assert _zarr_direct._decode_into(kind, enc, dest)
        np.testing.assert_array_equal(dest.view(np.float32), src)


def test_direct_array_pickles(tmp_path, data):
    arr = _store(tmp_path / "x.zarr", data)
    direct = pickle.loads(pickle.dumps(_zarr_direct.wrap(arr)))
    assert isinstance(direct, _zarr_direct.DirectArray)
    np.testing.assert_array_equal(direct[0:200, :], data[:200])
    assert direct.shape == data.shape and direct.dtype == data.dtype


@pytest.mark.parametrize("moved", ["_local_folder", "_fetch"])
def test_zarr_internals_that_moved_fall_back_to_zarr(tmp_path, data, monkeypatch, moved):
    if moved == "_fetch":  # a store other than a local directory
        arr = _memory_store(data)
    else:
        arr = _store(tmp_path / "x.zarr", data)
    direct = _zarr_direct.wrap(arr)

    def gone(*a, **k):
        raise AttributeError("no such thing in this zarr")

    monkeypatch.setattr(_zarr_direct, moved, gone)
    np.testing.assert_array_equal(direct[0:300, :], data[:300])


def _memory_store(X):
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=X.shape,
                          chunks=(CHUNK, X.shape[1]), dtype=X.dtype)
    z[:] = X
    return z


@pytest.fixture
def files_read(monkeypatch):
    """Paths read by the local-directory path, and a ``_fetch`` that must not be called."""
    paths = []
    real = _zarr_direct._read_file
    real_into = _zarr_direct._read_file_into

    def spy(path, mapped=False):
        paths.append(path)
        return real(path, mapped)

    def spy_into(path, dest, size):
        paths.append(path)
        return real_into(path, dest, size)

    def no_fetch(*a, **k):
        raise AssertionError("a local directory is read without Zarr's store")

    monkeypatch.setattr(_zarr_direct, "_read_file", spy)
    monkeypatch.setattr(_zarr_direct, "_read_file_into", spy_into)
    monkeypatch.setattr(_zarr_direct, "_fetch", no_fetch)
    return paths


@pytest.mark.parametrize(("zarr_format", "compressors", "kind"), LAYOUTS)
def test_local_directories_are_read_from_their_files(tmp_path, data, decoded, files_read,
                                                     zarr_format, compressors, kind):
    # an array inside a group: the chunk files are under the group's directory
    root = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=zarr_format)
    z = root.create_array("sub/x", shape=data.shape, chunks=(CHUNK, D), dtype=data.dtype,
                          compressors=compressors, fill_value=-1.0)
    for i in range(11):
        if i != 4:
            z[i * CHUNK : (i + 1) * CHUNK] = data[i * CHUNK : (i + 1) * CHUNK]
    expected = z[:]
    X = open_zarr(str(tmp_path / "g.zarr"), component="sub/x", chunks=300)
    np.testing.assert_array_equal(X.compute(), expected)
    assert np.all(expected[400:500] == -1.0)
    # every chunk's file was asked for once, the missing one included (none there: fill)
    assert len(files_read) == 11 and len(set(files_read)) == 11
    assert all(p.startswith(str(tmp_path / "g.zarr" / "sub" / "x")) for p in files_read)
    assert decoded == [kind] * 10


@pytest.mark.parametrize(("zarr_format", "encoding"), [
    (3, {"name": "default", "separator": "."}),
    (3, {"name": "v2", "separator": "."}),
    (2, {"name": "v2", "separator": "/"}),
])
def test_local_files_under_other_chunk_key_encodings(tmp_path, data, decoded, files_read,
                                                    zarr_format, encoding):
    arr = _store(tmp_path / "x.zarr", data, zarr_format, fill_value=0.0,
                 chunk_key_encoding=encoding)
    X = open_zarr(str(tmp_path / "x.zarr"), chunks="stored")
    np.testing.assert_array_equal(X.compute(), arr[:])
    assert len(files_read) == 11 and len(decoded) == 11
    assert all(os.path.isfile(p) for p in files_read)


def test_other_stores_are_fetched_through_zarr(data, monkeypatch):
    arr = _memory_store(data)
    fetched = []
    real = _zarr_direct._fetch

    def spy(store_path, keys):
        fetched.append(list(keys))
        return real(store_path, keys)

    monkeypatch.setattr(_zarr_direct, "_fetch", spy)
    direct = _zarr_direct.wrap(arr)
    assert isinstance(direct, _zarr_direct.DirectArray)
    np.testing.assert_array_equal(direct[100:400, :], data[100:400])
    assert [len(k) for k in fetched] == [3]  # the block's three chunks at once


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_uncompressed_local_chunks_are_read_into_the_block(tmp_path, data, monkeypatch,
                                                           zarr_format):
    arr = _store(tmp_path / "x.zarr", data, zarr_format, compressors=None, fill_value=5.0,
                 skip=(2,))
    expected = arr[:]

    def not_here(*args):
        raise AssertionError("an uncompressed local chunk got a buffer of its own")

    monkeypatch.setattr(_zarr_direct, "_read_file", not_here)
    monkeypatch.setattr(_zarr_direct, "_decode_into", not_here)
    direct = _zarr_direct.wrap(arr)
    for r0, r1 in [(0, 100), (100, 400), (900, N), (1000, N), (0, N)]:
        got = direct._read(r0, r1)
        assert got.flags.c_contiguous and got.dtype == data.dtype
        np.testing.assert_array_equal(got, expected[r0:r1])
    assert np.all(direct._read(200, 300) == 5.0)  # never written: the fill value


def test_read_file_into_checks_the_size(tmp_path):
    f = tmp_path / "chunk"
    f.write_bytes(bytes(range(100)))
    dest = np.zeros(60, dtype=np.uint8)
    assert _zarr_direct._read_file_into(str(f), dest, 100) is True
    assert bytes(dest) == bytes(range(60))  # the first bytes of a longer chunk file
    dest[:] = 0
    assert _zarr_direct._read_file_into(str(f), dest, 120) is False
    assert _zarr_direct._read_file_into(str(tmp_path / "none"), dest, 100) is None
    assert _zarr_direct._read_file_into(str(tmp_path), dest, 100) is None


@pytest.mark.parametrize("mapped", [False, True])
def test_read_file_reads_whole_files(tmp_path, mapped):
    small, empty = tmp_path / "small", tmp_path / "empty"
    small.write_bytes(bytes(range(100)))
    empty.write_bytes(b"")
    got = _zarr_direct._read_file(str(small), mapped)
    assert got.dtype == np.uint8 and bytes(got) == bytes(range(100))
    assert _zarr_direct._read_file(str(empty), mapped).nbytes == 0  # cannot be mapped: read
    assert _zarr_direct._read_file(str(tmp_path / "none"), mapped) is None
    assert _zarr_direct._read_file(str(tmp_path), mapped) is None  # a directory: no chunk


def test_a_mapped_file_outlives_its_replacement(tmp_path):
    # Zarr replaces a chunk file by renaming a complete one over it: a mapping
    # taken before keeps the old bytes, read-only
    chunk = tmp_path / "chunk"
    chunk.write_bytes(bytes(range(100)))
    got = _zarr_direct._read_file(str(chunk), mapped=True)
    assert not got.flags.writeable
    fresh = tmp_path / "chunk.partial"
    fresh.write_bytes(bytes(50))
    os.replace(fresh, chunk)
    assert bytes(got) == bytes(range(100))
    assert bytes(_zarr_direct._read_file(str(chunk), mapped=True)) == bytes(50)


@pytest.mark.parametrize("mapped", [True, False])
def test_local_chunk_files_are_mapped_unless_configured_off(tmp_path, data, monkeypatch,
                                                            mapped):
    arr = _store(tmp_path / "x.zarr", data, compressors=ZstdCodec(), fill_value=0.0, skip=(3,))
    seen = []
    real = _zarr_direct._read_file

    def spy(path, mapped=False):
        seen.append(mapped)
        return real(path, mapped)

    monkeypatch.setattr(_zarr_direct, "_read_file", spy)
    with dask.config.set({"daskmeans.memory-map": mapped}):
        got = _zarr_direct.wrap(arr)._read(0, N)
    np.testing.assert_array_equal(got, arr[:])
    assert seen == [mapped] * 11
