"""CSR matrices in Zarr groups (AnnData's layout) and sparse input on the command line."""

from __future__ import annotations

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
zarr = pytest.importorskip("zarr")

import daskmeans  # noqa: E402
from daskmeans import KMeans  # noqa: E402
from daskmeans.cli import main  # noqa: E402


def _matrix(n=900, d=40, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed, dtype=np.float64)
    X.data = rng.random(X.nnz) + (rng.integers(0, 3, X.nnz) == 0) * 3
    return X.astype(dtype)


def write_anndata_csr(path, X, chunks=128, encoding="csr_matrix"):
    """A CSR matrix as AnnData writes it: a group with data, indices, indptr."""
    g = zarr.open_group(str(path), mode="w")
    g.attrs.update({"encoding-type": encoding, "encoding-version": "0.1.0",
                    "shape": list(X.shape)})
    g.create_array("data", data=X.data, chunks=(chunks,))
    g.create_array("indices", data=X.indices, chunks=(chunks,))
    g.create_array("indptr", data=X.indptr.astype(np.int64), chunks=(chunks,))
    return path


def test_open_zarr_returns_csr_row_blocks(tmp_path):
    X = _matrix()
    path = write_anndata_csr(tmp_path / "x.zarr", X)
    arr = daskmeans.open_zarr(path, chunks=200)
    assert arr.shape == X.shape and arr.dtype == X.dtype
    assert arr.chunks == ((200, 200, 200, 200, 100), (40,))
    assert sp.issparse(arr._meta)
    blocks = [arr.blocks[i].compute() for i in range(arr.numblocks[0])]
    assert all(sp.issparse(b) and b.format == "csr" for b in blocks)
    np.testing.assert_array_equal(sp.vstack(blocks).toarray(), X.toarray())
    default = daskmeans.open_zarr(str(path))
    assert sum(default.chunks[0]) == X.shape[0]


def test_blocks_read_only_their_rows(tmp_path, monkeypatch):
    """Every read is a slice of one block's rows: never the whole matrix or indptr."""
    X = _matrix(n=2000)
    path = write_anndata_csr(tmp_path / "x.zarr", X)
    arr = daskmeans.open_zarr(path, chunks=250)
    sizes = []
    orig = zarr.Array.__getitem__

    def spy(self, key):
        out = orig(self, key)
        sizes.append((self.basename, np.asarray(out).shape[0]))
        return out

    monkeypatch.setattr(zarr.Array, "__getitem__", spy)
    km = KMeans(3, init=X[:3].toarray(), n_init=1, max_iter=4, tol=0).fit(arr)
    most_stored = max(int(X.indptr[s + 250] - X.indptr[s]) for s in range(0, 2000, 250))
    assert sizes, "nothing read"
    assert max(s for name, s in sizes if name == "indptr") == 251
    assert max(s for name, s in sizes if name != "indptr") <= most_stored < X.nnz // 4
    # one read of each of the three arrays per block and pass
    assert len(sizes) == 3 * arr.numblocks[0] * km.n_passes_
    ref = KMeans(3, init=X[:3].toarray(), n_init=1, max_iter=4, tol=0).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-6)


def test_fit_from_path_matches_in_memory(tmp_path):
    X = _matrix(dtype=np.float64)
    path = write_anndata_csr(tmp_path / "x.zarr", X)
    C0 = X[[0, 300, 600]].toarray()
    a = KMeans(3, init=C0, n_init=1).fit(str(path))
    b = KMeans(3, init=C0, n_init=1).fit(X)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(a.labels_.compute(), b.labels_)


def test_csc_and_broken_groups_are_refused(tmp_path):
    X = _matrix()
    write_anndata_csr(tmp_path / "c.zarr", X.tocsc(), encoding="csc_matrix")
    with pytest.raises(ValueError, match="csr_matrix"):
        daskmeans.open_zarr(tmp_path / "c.zarr")
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    g.attrs.update({"encoding-type": "csr_matrix", "shape": [3, 2]})
    g.create_array("data", data=np.ones(2))
    with pytest.raises(ValueError, match="lacks"):
        daskmeans.open_zarr(tmp_path / "b.zarr")


@pytest.mark.parametrize("kind", ["npz", "zarr"])
def test_cli_fit_sparse(tmp_path, kind, monkeypatch):
    X = _matrix(dtype=np.float64)
    if kind == "npz":
        src = tmp_path / "x.npz"
        sp.save_npz(src, X)
    else:
        src = write_anndata_csr(tmp_path / "x.zarr", X)
    monkeypatch.chdir(tmp_path)
    # the command reads blocks lazily (k-means||); in-memory data would take the
    # small-data k-means++ rule, so the reference fit is made without it
    monkeypatch.setattr("daskmeans.engine._init.small_data", lambda *a, **k: False)
    assert main(["fit", str(src), "--k", "3", "--out", "res", "--seed", "0", "--quiet"]) == 0
    labels = zarr.open_array(str(tmp_path / "res" / "labels.zarr"), mode="r")[:]
    assert labels.shape == (X.shape[0],)
    model = KMeans.load(tmp_path / "res" / "model.json")
    np.testing.assert_array_equal(labels, model.predict(X))
    ref = KMeans(3, random_state=0).fit(X)
    np.testing.assert_allclose(model.inertia_, ref.inertia_, rtol=1e-9)


def test_cli_fit_sparse_weighted(tmp_path, monkeypatch):
    X = _matrix(dtype=np.float64)
    sp.save_npz(tmp_path / "x.npz", X)
    w = np.random.default_rng(1).random(X.shape[0])
    zarr.open_array(str(tmp_path / "w.zarr"), mode="w", shape=w.shape, dtype=w.dtype)[:] = w
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("daskmeans.engine._init.small_data", lambda *a, **k: False)
    assert main(["fit", "x.npz", "--k", "3", "--out", "res", "--seed", "0", "--quiet",
                 "--sample-weight", "w.zarr"]) == 0
    model = KMeans.load(tmp_path / "res" / "model.json")
    ref = KMeans(3, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-9)


@pytest.mark.slow
def test_zarr_csr_on_a_cluster(tmp_path):
    """Worker processes read their blocks of a CSR Zarr group; same result as in memory."""
    distributed = pytest.importorskip("distributed")
    X = _matrix(n=2000, dtype=np.float64)
    path = write_anndata_csr(tmp_path / "x.zarr", X)
    C0 = X[[0, 700, 1400]].toarray()
    ref = KMeans(3, init=C0, n_init=1).fit(X)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cl, distributed.Client(cl):
        km = KMeans(3, init=C0, n_init=1).fit(daskmeans.open_zarr(path, chunks=400))
        labels = km.labels_.compute()
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(labels, ref.labels_)
