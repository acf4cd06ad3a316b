"""Zarr in, Zarr out: opening stores and URLs, lazy labels, write_labels, persist."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.sizeof import sizeof

import daskmeans
from daskmeans import KMeans, _persist, open_zarr, write_labels
from daskmeans.io import _zarr as _io


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    centers = rng.uniform(-8, 8, size=(4, 6))
    y = rng.integers(0, 4, size=6000)
    return (centers[y] + rng.normal(scale=0.6, size=(6000, 6))).astype(np.float32)


def _write(path, X, chunk_rows, zarr_format=3):
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(chunk_rows, X.shape[1]),
                          dtype=X.dtype, zarr_format=zarr_format)
    z[:] = X
    return str(path)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_open_zarr_lazy_row_chunks(tmp_path, data, zarr_format):
    url = _write(tmp_path / "x.zarr", data, 700, zarr_format)
    X = open_zarr(url)
    assert isinstance(X, da.Array)
    assert X.chunks[1] == (6,) and set(X.chunks[0][:-1]) == {700}
    np.testing.assert_array_equal(X.compute(), data)
    X2 = open_zarr("file://" + url, chunks=1400)
    assert X2.chunks[0][0] == 1400
    np.testing.assert_array_equal(X2[:10].compute(), data[:10])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_open_zarr_groups_small_stored_chunks(tmp_path, data, zarr_format, monkeypatch):
    url = _write(tmp_path / "x.zarr", data, 100, zarr_format)  # 60 chunks of 2.4 KB
    X = open_zarr(url)
    # whole chunks, at least 8 blocks: 60 // 8 = 7 chunks a block
    assert X.chunks[0][:-1] == (700,) * 8 and sum(X.chunks[0]) == 6000
    np.testing.assert_array_equal(X.compute(), data)
    assert open_zarr(url, chunks="stored").chunks[0] == (100,) * 60
    # grouped up to ZARR_BLOCK_BYTES (here three chunks), never a split chunk
    monkeypatch.setattr(_io, "ZARR_BLOCK_BYTES", 3 * 100 * 6 * 4 + 10)
    assert set(open_zarr(url).chunks[0]) == {300}
    # fewer than ZARR_MIN_BLOCKS chunks: as stored
    url2 = _write(tmp_path / "y.zarr", data, 1000, zarr_format)
    assert set(open_zarr(url2).chunks[0]) == {1000}
    # two chunkings of one array are two arrays: computed together, each is right
    a, b = open_zarr(url), open_zarr(url, chunks="stored")
    assert a.name != b.name
    sa, sb = dask.compute(a.sum(axis=0), b[::-1].sum(axis=0))
    np.testing.assert_allclose(sa, data.sum(axis=0, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(sb, data.sum(axis=0, dtype=np.float64), rtol=1e-5)


def test_open_zarr_groups_whole_shards(tmp_path, data, monkeypatch):
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=data.shape, chunks=(50, 6),
                          shards=(500, 6), dtype=data.dtype)
    z[:] = data
    X = open_zarr(str(tmp_path / "s.zarr"))  # 12 shards: one a block (12 // 8 = 1)
    assert set(X.chunks[0]) == {500}
    np.testing.assert_array_equal(X.compute(), data)
    # shards larger than a block: inner chunks in groups that divide the shard
    monkeypatch.setattr(_io, "ZARR_BLOCK_BYTES", 300 * 6 * 4)  # 6 inner chunks of 50 rows
    X = open_zarr(str(tmp_path / "s.zarr"))
    assert set(X.chunks[0]) == {250}  # 5 divides the shard's 10 inner chunks, 6 does not
    np.testing.assert_array_equal(X.compute(), data)


def test_open_zarr_component_and_errors(tmp_path, data):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("emb", shape=data.shape, chunks=(1000, 6), dtype=data.dtype)[:] = data
    X = open_zarr(str(tmp_path / "g.zarr"), component="emb")
    np.testing.assert_array_equal(X.compute(), data)
    with pytest.raises(ValueError, match="group.*emb"):
        open_zarr(str(tmp_path / "g.zarr"))
    with pytest.raises(ValueError, match="no Zarr array"):
        open_zarr(str(tmp_path / "missing.zarr"))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_fit_by_path_equals_in_memory_with_same_chunks(tmp_path, data, zarr_format):
    url = _write(tmp_path / "x.zarr", data, 700, zarr_format)
    a = KMeans(4, random_state=1).fit(url)
    b = KMeans(4, random_state=1).fit(da.from_array(data, chunks=(700, 6)))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert isinstance(a.labels_, da.Array)
    np.testing.assert_array_equal(a.labels_.compute(), b.labels_.compute())
    np.testing.assert_array_equal(a.transform(url).compute(), b.transform(data))
    assert a.score(url) == pytest.approx(b.score(data), rel=1e-6)


def test_storage_options_reach_the_store(tmp_path, data, monkeypatch):
    url = "file://" + _write(tmp_path / "x.zarr", data, 1000)
    seen = []
    real = _io.open_zarr_array

    def spy(u, component=None, storage_options=None):
        seen.append(storage_options)
        return real(u, component, storage_options)

    monkeypatch.setattr(_io, "open_zarr_array", spy)
    opts = {"auto_mkdir": False}
    km = KMeans(3, random_state=0, max_iter=5).fit(url, storage_options=opts)
    km.predict(url, storage_options=opts)
    km.transform(url, storage_options=opts)
    km.score(url, storage_options=opts)
    assert seen == [opts] * 4
    assert "storage_options" not in km.get_params()


def test_memory_protocol(data):
    fsspec = pytest.importorskip("fsspec")
    url = "memory://daskmeans-test/x.zarr"
    fs = fsspec.filesystem("memory")
    try:
        z = zarr.create_array(store=url, shape=data.shape, chunks=(1500, 6), dtype=data.dtype)
        z[:] = data
        km = KMeans(4, random_state=2).fit(url)
        ref = KMeans(4, random_state=2).fit(da.from_array(data, chunks=(1500, 6)))
        np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    finally:
        fs.rm("/daskmeans-test", recursive=True)


def test_predict_to_zarr_chunk_by_chunk(tmp_path, data):
    url = _write(tmp_path / "x.zarr", data, 700)
    km = KMeans(4, random_state=0).fit(data)
    labels = km.predict(url)
    assert isinstance(labels, da.Array) and labels.chunks[0] == open_zarr(url).chunks[0]
    # one task per block of X: nothing concatenates the rows
    assert len(labels.__dask_graph__().layers[labels.name]) == labels.numblocks[0]
    labels.to_zarr(str(tmp_path / "labels.zarr"))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "labels.zarr"))[:],
                                  km.predict(data))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_labels_keep_the_stored_chunks_of_grouped_input(tmp_path, data, zarr_format):
    url = _write(tmp_path / "x.zarr", data, 100, zarr_format)  # read in blocks of 7 chunks
    km = KMeans(4, random_state=0).fit(url)
    assert open_zarr(url).chunks[0][0] == 700
    out = write_labels(km, url, tmp_path / "x.labels.zarr")
    z = zarr.open_array(str(out), mode="r")
    assert z.chunks == (100,) and z.shape == (6000,)
    np.testing.assert_array_equal(z[:], km.predict(data))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_write_labels_matches_chunks_and_format(tmp_path, data, zarr_format):
    url = _write(tmp_path / "x.zarr", data, 700, zarr_format)
    km = KMeans(4, random_state=0).fit(url)
    out = write_labels(km, url, tmp_path / "x.labels.zarr")
    z = zarr.open_array(str(out), mode="r")
    assert z.metadata.zarr_format == zarr_format
    assert z.chunks == (700,) and z.shape == (6000,)
    np.testing.assert_array_equal(z[:], km.labels_.compute())
    with pytest.raises(FileExistsError, match="overwrite"):
        write_labels(km, url, tmp_path / "x.labels.zarr")
    km2 = KMeans(2, random_state=0).fit(url)
    write_labels(km2, url, tmp_path / "x.labels.zarr", overwrite=True)
    assert zarr.open_array(str(out), mode="r")[:].max() == 1


def test_write_labels_irregular_chunks_and_numpy(tmp_path, data):
    km = KMeans(4, random_state=0).fit(data)
    X = da.from_array(data, chunks=((1000, 500, 2000, 2500), 6))
    write_labels(km, X, tmp_path / "a.zarr")
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    assert z.chunks == (2500,)
    np.testing.assert_array_equal(z[:], km.labels_)
    write_labels(km, data, tmp_path / "b.zarr")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "b.zarr"))[:], km.labels_)


def test_remove_leftovers_takes_only_the_named_temporaries(tmp_path):
    from daskmeans.io._atomic import remove_leftovers

    (tmp_path / ".model.json.ab12cd.tmp").write_text("{")
    (tmp_path / ".labels.zarr.0f0f0f0f.tmp").mkdir()
    (tmp_path / ".labels.zarr.0f0f0f0f.tmp" / "zarr.json").write_text("{}")
    (tmp_path / ".labels.zarr.1e1e1e1e.old").mkdir()
    kept = ["model.json", "labels.zarr", ".report.json.x.tmp", ".model.json.x.png",
            "model.json.tmp", ".model_json.x.tmp", ".model.json..tmp",
            ".model.json.bak.ab12.tmp"]  # the last: a temporary of "model.json.bak"
    for name in kept:
        (tmp_path / name).write_text("keep")
    removed = remove_leftovers(tmp_path, ["model.json", "labels.zarr"])
    assert removed == [".labels.zarr.0f0f0f0f.tmp", ".labels.zarr.1e1e1e1e.old",
                       ".model.json.ab12cd.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_leftovers(tmp_path / "absent", ["model.json"]) == []


def test_atomic_writers_remove_what_killed_writers_left(tmp_path):
    from daskmeans.io._atomic import atomic_dir, write_json

    (tmp_path / ".a.json.dead.tmp").write_text("{")
    (tmp_path / ".b.zarr.dead.tmp").mkdir()
    (tmp_path / ".b.zarr.dead.old").mkdir()
    (tmp_path / ".c.json.dead.tmp").write_text("{")  # another output's: kept
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "b.zarr") as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.json.dead.tmp", "a.json",
                                                          "b.zarr"]


def test_write_labels_is_atomic(tmp_path, data):
    km = KMeans(4, random_state=0).fit(data)
    write_labels(km, data, tmp_path / "out.zarr")
    before = zarr.open_array(str(tmp_path / "out.zarr"))[:]

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 3:
            raise RuntimeError("disk on fire")
        return block

    bad = da.from_array(data[::-1].copy(), chunks=(1000, 6)).map_blocks(boom, dtype=data.dtype)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_labels(km, bad, tmp_path / "out.zarr", overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], before)
    with pytest.raises(RuntimeError):
        write_labels(km, bad, tmp_path / "new.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_write_labels_unfitted(tmp_path, data):
    with pytest.raises(ValueError, match="not fitted"):
        write_labels(KMeans(2), data, tmp_path / "l.zarr")


def _recording_get(sizes):
    """The threaded scheduler, recording the size of everything handed back to the caller."""
    def get(dsk, keys, **kwargs):
        out = dask.threaded.get(dsk, keys, **kwargs)
        sizes.append(sizeof(out))
        return out
    return get


def test_fit_never_gathers_the_data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40_000, 8))
    url = _write(tmp_path / "x.zarr", X, 1000)
    block_bytes = open_zarr(url).chunks[0][0] * 8 * 8  # stored chunks grouped by 5
    assert 2 * block_bytes <= X.nbytes // 4
    sizes: list[int] = []
    with dask.config.set(scheduler=_recording_get(sizes)):
        km = KMeans(5, random_state=0, n_init=2, max_iter=10).fit(url)
        km.predict(url)  # lazy: nothing computed
        km.score(url)
    assert len(sizes) == km.n_passes_ + 2  # + the first-centre blocks, + score
    # k-means|| reads one block per candidate for its first centre (n_init = 2) ...
    assert sizes[0] <= 2 * block_bytes + 4096
    # ... and every pass hands back only k x d sized results
    assert max(sizes[1:]) < 16_384 < block_bytes


def test_persist_same_result_and_one_read(data):
    from daskmeans import testing

    X64 = data.astype(np.float64)
    Xc, counter = testing.counting_dask(X64, 1000)
    base = KMeans(4, random_state=5, persist=False).fit(Xc)
    Xc2, counter2 = testing.counting_dask(X64, 1000)
    km = KMeans(4, random_state=5, persist=True).fit(Xc2)
    np.testing.assert_array_equal(km.cluster_centers_, base.cluster_centers_)
    assert km.n_passes_ == base.n_passes_ >= 4
    assert km.timings_["persist"] > 0 and base.timings_["persist"] == 0
    n_blocks = Xc.numblocks[0]
    assert counter.reads >= base.n_passes_ * n_blocks
    # one persist pass and one block for the first k-means|| centre; labels_ stays lazy
    assert counter2.reads <= n_blocks + 1
    km.labels_.compute()
    assert counter2.reads <= 2 * n_blocks + 1  # labels_ read the source, not a pinned copy


def test_persist_auto_decision(monkeypatch):
    assert _persist._memory_budget()[1] == "local memory"
    monkeypatch.setattr(_persist, "_memory_budget", lambda: (1000.0, "test"))
    assert _persist.resolve_persist("auto", 999, in_memory=False)
    assert not _persist.resolve_persist("auto", 1001, in_memory=False)
    assert not _persist.resolve_persist(False, 1, in_memory=False)
    assert _persist.resolve_persist(True, 10**15, in_memory=False)
    # NumPy input without a cluster is in memory already
    assert not _persist.resolve_persist(True, 1, in_memory=True)


def test_persist_param_validated(data):
    with pytest.raises(ValueError, match="persist must be"):
        KMeans(2, persist="yes").fit(data)
    assert "persist" in KMeans().get_params()


def test_public_names():
    assert daskmeans.write_labels is write_labels
    assert "write_labels" in daskmeans.__all__


def test_labels_of_grouped_chunks_are_stored_by_the_task_that_computes_them(
        tmp_path, data, monkeypatch):
    # open_zarr reads 7 stored chunks of 100 rows a block; the labels keep the stored
    # chunking without a rechunk, whose split would let another worker write a chunk
    url = _write(tmp_path / "x.zarr", data, 100, 3)
    km = KMeans(3, random_state=0, n_init=1, max_iter=5).fit(data)
    rechunks = []
    real = da.Array.rechunk

    def spy(self, *args, **kwargs):
        rechunks.append(self.chunks)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(da.Array, "rechunk", spy)
    write_labels(km, url, tmp_path / "labels.zarr")
    assert rechunks == []
    out = zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")
    assert out.chunks == (100,)
    np.testing.assert_array_equal(out[:], km.predict(data))
