"""Tests of daskmeans.datasets: lazy, per-block, deterministic synthetic data."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from daskmeans.datasets import default_chunk_rows, make_blobs, write_blobs


def test_shapes_chunks_and_dtypes():
    X, y = make_blobs(1000, 3, 4, chunk_rows=300, random_state=0, dtype=np.float32)
    assert isinstance(X, da.Array) and isinstance(y, da.Array)
    assert X.shape == (1000, 3) and X.chunks == ((300, 300, 300, 100), (3,))
    assert y.shape == (1000,) and y.chunks == ((300, 300, 300, 100),)
    assert X.dtype == np.float32 and X.compute().dtype == np.float32
    assert y.dtype == np.int64 and y.compute().dtype == np.int64


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_same_values_whatever_the_scheduler_or_order(scheduler):
    X, y = make_blobs(2000, 2, 5, chunk_rows=256, random_state=7)
    ref = X.compute(scheduler="sync")
    with dask.config.set(scheduler=scheduler):
        assert np.array_equal(X.compute(), ref)
        # A block computed on its own equals the same rows of the whole array.
        assert np.array_equal(X.blocks[3].compute(), ref[3 * 256 : 4 * 256])
        assert np.array_equal(X[::-1].compute(), ref[::-1])


def test_seed_controls_the_data():
    a = make_blobs(500, 2, 3, chunk_rows=100, random_state=1)[0].compute()
    b = make_blobs(500, 2, 3, chunk_rows=100, random_state=1)[0].compute()
    c = make_blobs(500, 2, 3, chunk_rows=100, random_state=2)[0].compute()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    seq = np.random.SeedSequence(1)
    assert np.array_equal(make_blobs(500, 2, 3, chunk_rows=100, random_state=seq)[0].compute(), a)


def test_unseeded_arrays_are_fixed_once_built():
    X, _ = make_blobs(300, 2, 3, chunk_rows=100)
    assert np.array_equal(X.compute(), X.compute())
    X2, _ = make_blobs(300, 2, 3, chunk_rows=100)
    assert not np.array_equal(X.compute(), X2.compute())


def test_blocks_use_independent_streams():
    X, _ = make_blobs(400, 2, 1, cluster_std=1.0, chunk_rows=100, random_state=3)
    blocks = [X.blocks[i].compute() for i in range(4)]
    for i in range(1, 4):
        assert not np.array_equal(blocks[0], blocks[i])


def test_clusters_follow_their_centres_and_spreads():
    k, d, std = 4, 3, 0.2
    X, y, centers = make_blobs(
        40_000, d, k, cluster_std=std, chunk_rows=5000, random_state=11, return_centers=True
    )
    X, y = dask.compute(X, y)
    assert centers.shape == (k, d)
    assert np.all(np.abs(centers) <= 1)
    counts = np.bincount(y, minlength=k)
    assert counts.sum() == 40_000 and counts.min() > 0.8 * 40_000 / k
    spreads = []
    for j in range(k):
        pts = X[y == j]
        np.testing.assert_allclose(pts.mean(axis=0), centers[j], atol=0.02)
        spreads.append(pts.std(axis=0).mean())
    spreads = np.array(spreads)
    assert np.all(spreads > std / 10 * 0.9) and np.all(spreads < std * 1.1)
    # random per-cluster spreads: not all equal
    assert spreads.max() / spreads.min() > 1.05


def test_explicit_centers_and_stds():
    centers = np.array([[10.0, 0.0], [-10.0, 0.0]])
    X, y = make_blobs(1000, None, centers, cluster_std=[0.0, 1.0], chunk_rows=250,
                      random_state=0)
    X, y = dask.compute(X, y)
    assert np.all(X[y == 0] == centers[0])
    assert np.abs(X[y == 1].mean(axis=0) - centers[1]).max() < 0.2


def test_uniform():
    X, y = make_blobs(5000, 4, 3, uniform=True, chunk_rows=1000, random_state=0)
    X, y = dask.compute(X, y)
    assert X.min() >= -1 and X.max() <= 1
    assert X.min() < -0.99 and X.max() > 0.99
    assert np.all(y == -1)


def test_graph_is_lazy_for_huge_sizes():
    # 16 GB of data: building the arrays must not generate anything.
    X, y = make_blobs(10**9, 2, 5, chunk_rows=10**6, random_state=0)
    assert X.shape == (10**9, 2) and X.numblocks == (1000, 1) and y.numblocks == (1000,)
    head = X[:3].compute()  # generates one block only
    assert head.shape == (3, 2) and np.isfinite(head).all()


def test_default_chunk_rows():
    assert default_chunk_rows(10, 2, np.float64) == 10
    rows = default_chunk_rows(10**9, 16, np.float32)
    assert rows * 16 * 4 <= 64 * 2**20 < (rows + 1) * 16 * 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"centers": 0}, "centers"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"cluster_std": -1.0}, "cluster_std"),
        ({"cluster_std": [0.1, 0.2]}, "cluster_std"),
        ({"dtype": np.int32}, "dtype"),
        ({"random_state": -3}, "random_state"),
        ({"centers": np.zeros((2, 3))}, "columns"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"n_samples": 10, "n_features": 2, "centers": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_blobs(**args)


def test_write_blobs_streams_to_zarr(tmp_path):
    out, labels = tmp_path / "x.zarr", tmp_path / "y.zarr"
    info = write_blobs(out, 3000, 3, 4, labels_out=labels, chunk_rows=700, random_state=5,
                       dtype="float32")
    z, zy = zarr.open_array(str(out), mode="r"), zarr.open_array(str(labels), mode="r")
    X, y = make_blobs(3000, 3, 4, chunk_rows=700, random_state=5, dtype="float32")
    assert z.shape == (3000, 3) and z.chunks == (700, 3) and z.dtype == np.float32
    assert zy.shape == (3000,) and zy.chunks == (700,)
    assert np.array_equal(z[:], X.compute()) and np.array_equal(zy[:], y.compute())
    assert info["shape"] == [3000, 3] and info["chunks"] == [700, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zarr", "y.zarr"]


def test_write_blobs_refuses_to_replace_unless_asked(tmp_path):
    out = tmp_path / "x.zarr"
    write_blobs(out, 100, 2, 2, random_state=0)
    with pytest.raises(FileExistsError):
        write_blobs(out, 100, 2, 2, random_state=1)
    assert np.array_equal(zarr.open_array(str(out))[:],
                          make_blobs(100, 2, 2, random_state=0)[0].compute())
    write_blobs(out, 200, 2, 2, random_state=1, overwrite=True)
    assert zarr.open_array(str(out)).shape == (200, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["x.zarr"]


def test_write_blobs_failure_leaves_nothing(tmp_path, monkeypatch):
    import daskmeans.datasets as mod

    def broken_store(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mod.da, "store", broken_store)
    with pytest.raises(OSError, match="disk full"):
        write_blobs(tmp_path / "x.zarr", 100, 2, 2, labels_out=tmp_path / "y.zarr")
    assert list(tmp_path.iterdir()) == []
