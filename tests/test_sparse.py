"""Sparse input: scipy.sparse matrices and Dask arrays of sparse blocks.

Results are compared with scikit-learn on the same CSR matrix from the same
initial centres, and with daskmeans on the densified (small) matrix for the
paths scikit-learn does not share (k-means||, cosine, the mini-batch fold).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
sklearn_cluster = pytest.importorskip("sklearn.cluster")

from daskmeans import KMeans, MiniBatchKMeans  # noqa: E402
from daskmeans.kernels import _sparse as sparse_kernels  # noqa: E402
from daskmeans.testing import CountingArray, brute_force_lloyd  # noqa: E402

N, D, K = 1200, 60, 6
RTOL = {np.float32: 1e-4, np.float64: 1e-7}


def _matrix(dtype=np.float64, n=N, d=D, density=0.08, seed=0):
    """Sparse rows drawn around K sparse prototypes (clusters that a fit finds)."""
    rng = np.random.default_rng(seed)
    protos = sp.random(K, d, density=0.3, random_state=seed, dtype=np.float64).toarray() * 4
    X = sp.random(n, d, density=density, format="csr", random_state=seed + 1,
                  dtype=np.float64)
    X.data = rng.random(X.nnz)
    labels = rng.integers(0, K, n)
    mask = sp.csr_matrix(protos[labels] * (rng.random((n, d)) < 0.5))
    return (X + mask).tocsr().astype(dtype)


def _containers(X, kind):
    if kind == "csr":
        return X
    if kind == "csc":
        return X.tocsc()
    if kind == "csr_array":
        return sp.csr_array(X)
    if kind == "coo":
        return X.tocoo()
    if kind == "dask":
        return da.from_array(X, chunks=(250, -1))
    if kind == "dask-columns":
        return da.from_array(X, chunks=(300, 25))
    raise AssertionError(kind)


def _labels(est):
    lab = est.labels_
    return np.asarray(lab.compute() if isinstance(lab, da.Array) else lab)


def _assert_close(a, b, dtype, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["csr", "csc", "csr_array", "coo", "dask", "dask-columns"])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_matches_sklearn(dtype, kind, weighted):
    X = _matrix(dtype)
    w = np.random.default_rng(3).random(N) * 2 if weighted else None
    C0 = X[[0, 200, 400, 600, 800, 1000]].toarray()
    ref = sklearn_cluster.KMeans(K, init=C0, n_init=1, max_iter=100, tol=1e-6,
                                 algorithm="lloyd").fit(X, sample_weight=w)
    km = KMeans(K, init=C0, n_init=1, max_iter=100, tol=1e-6).fit(
        _containers(X, kind), sample_weight=w)
    assert km.cluster_centers_.dtype == dtype
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(_labels(km), ref.labels_)
    scale = float(np.abs(ref.cluster_centers_).max())
    _assert_close(km.cluster_centers_, ref.cluster_centers_, dtype, scale)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lloyd_both_kernel_paths_match_sklearn(dtype, kernels_mode):
    X = _matrix(dtype)
    w = np.random.default_rng(3).random(N)
    C0 = X[[0, 200, 400, 600, 800, 1000]].toarray()
    ref = sklearn_cluster.KMeans(K, init=C0, n_init=1, max_iter=100, tol=1e-6).fit(
        X, sample_weight=w)
    km = KMeans(K, init=C0, n_init=1, max_iter=100, tol=1e-6).fit(
        da.from_array(X, chunks=(250, -1)), sample_weight=w)
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(_labels(km), ref.labels_)
    _assert_close(km.cluster_centers_, ref.cluster_centers_, dtype,
                  float(np.abs(ref.cluster_centers_).max()))
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_transform_score_match_sklearn(dtype):
    X = _matrix(dtype)
    C0 = X[[1, 201, 401, 601, 801, 1001]].toarray()
    ref = sklearn_cluster.KMeans(K, init=C0, n_init=1, max_iter=5).fit(X)
    km = KMeans(K, init=C0, n_init=1, max_iter=5).fit(X)
    Xn = _matrix(dtype, n=300, seed=9)
    np.testing.assert_array_equal(km.predict(Xn), ref.predict(Xn))
    scale = float(ref.transform(Xn).max())
    _assert_close(km.transform(Xn), ref.transform(Xn), dtype, scale)
    np.testing.assert_allclose(km.score(Xn), ref.score(Xn), rtol=RTOL[dtype] * 10)
    lazy = km.predict(da.from_array(Xn, chunks=(100, -1)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), ref.predict(Xn))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
@pytest.mark.parametrize("weighted", [False, True])
def test_inits_sparse_as_dense(dtype, init, weighted):
    """Every initialisation draws the same rows from the sparse and the dense matrix."""
    X = _matrix(dtype)
    w = np.random.default_rng(4).random(N) if weighted else None
    # n_init=1: with several, float32 inertias of two equally good runs may rank differently
    a = KMeans(K, init=init, n_init=1, random_state=5, max_iter=30).fit(X, sample_weight=w)
    b = KMeans(K, init=init, n_init=1, random_state=5, max_iter=30).fit(X.toarray(),
                                                                       sample_weight=w)
    scale = float(np.abs(b.cluster_centers_).max())
    _assert_close(a.cluster_centers_, b.cluster_centers_, dtype, scale)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["csr", "dask"])
def test_cosine_sparse_as_dense(dtype, kind):
    X = _matrix(dtype)
    w = np.random.default_rng(6).random(N)
    a = KMeans(K, metric="cosine", random_state=2).fit(_containers(X, kind), sample_weight=w)
    dense = X.toarray() if kind == "csr" else da.from_array(X.toarray(), chunks=(250, -1))
    b = KMeans(K, metric="cosine", random_state=2).fit(dense, sample_weight=w)
    _assert_close(a.cluster_centers_, b.cluster_centers_, dtype)
    np.testing.assert_allclose(np.linalg.norm(a.cluster_centers_, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(_labels(a), _labels(b))
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=RTOL[dtype] * 10)
    _assert_close(a.transform(X), b.transform(X.toarray()), dtype)


def test_cosine_rejects_zero_rows_and_dense_only_settings():
    X = _matrix().tolil()
    X[5, :] = 0
    X = X.tocsr()
    with pytest.raises(ValueError, match="row\\(s\\) of zeros"):
        KMeans(3, metric="cosine", random_state=0).fit(X)
    with pytest.raises(ValueError, match="standardize=True"):
        KMeans(3, standardize=True, random_state=0).fit(_matrix())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["csr", "dask"])
def test_minibatch_sparse_as_dense(dtype, kind):
    X = _matrix(dtype)
    w = np.random.default_rng(7).random(N)
    params = dict(n_clusters=K, random_state=3, batch_size=256, max_iter=3)
    a = MiniBatchKMeans(**params).fit(_containers(X, kind), sample_weight=w)
    dense = X.toarray() if kind == "csr" else da.from_array(X.toarray(), chunks=(250, -1))
    b = MiniBatchKMeans(**params).fit(dense, sample_weight=w)
    scale = float(np.abs(b.cluster_centers_).max())
    _assert_close(a.cluster_centers_, b.cluster_centers_, dtype, scale)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=RTOL[dtype] * 10)
    np.testing.assert_array_equal(a.predict(X), b.predict(X.toarray()))


def test_minibatch_partial_fit_sparse():
    X = _matrix()
    a = MiniBatchKMeans(K, random_state=0)
    b = MiniBatchKMeans(K, random_state=0)
    for start in range(0, N, 400):
        a.partial_fit(X[start : start + 400])
        b.partial_fit(X[start : start + 400].toarray())
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-7, atol=1e-9)


def test_one_pass_per_iteration():
    """The read counter sees one read of every block per Lloyd iteration, as for dense."""
    X = _matrix()
    C0 = X[[0, 200, 400, 600, 800, 1000]].toarray()
    counter = CountingArray(X)
    arr = da.from_array(counter, chunks=(200, -1), asarray=False, inline_array=False,
                        meta=sp.csr_matrix((0, D)))
    counter.reads = 0
    km = KMeans(K, init=C0, n_init=1, max_iter=8, tol=0).fit(arr)
    assert counter.reads == km.n_passes_ * arr.numblocks[0]
    assert km.n_passes_ == km.n_iter_ + 1  # the final inertia pass, as for dense input


class _Spy:
    """Records the largest number of rows any sparse matrix was densified to."""

    def __init__(self, monkeypatch):
        self.max_rows = 0
        for cls in (sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.coo_matrix):
            orig = cls.toarray

            def toarray(mat, *args, _orig=orig, **kwargs):
                self.max_rows = max(self.max_rows, mat.shape[0])
                return _orig(mat, *args, **kwargs)

            monkeypatch.setattr(cls, "toarray", toarray)
            monkeypatch.setattr(cls, "todense", lambda mat, *a, **k: pytest.fail("todense"))


@pytest.mark.parametrize("init", ["k-means||", "random"])
def test_never_densified(monkeypatch, init):
    """Only selected rows are densified: far fewer than a block, never the matrix."""
    # (small in-memory data is seeded by k-means++ on all its rows, densified: at most 8 MiB)
    monkeypatch.setattr("daskmeans.engine._init.small_data", lambda *a, **k: False)
    X = _matrix(n=4000)
    spy = _Spy(monkeypatch)
    km = KMeans(4, init=init, random_state=0, max_iter=20).fit(X)
    km.predict(X)
    km.transform(X[:10])
    ell = 2.0 * 4  # k-means||: oversampling_factor * k; each block offers its top m rows
    bound = int(np.ceil(2 * ell + 8 * np.sqrt(ell) + 16))
    assert 0 < spy.max_rows <= bound
    spy.max_rows = 0
    KMeans(4, init=km.cluster_centers_, n_init=1, max_iter=5).fit(
        da.from_array(X, chunks=(1000, -1)))
    assert spy.max_rows <= 4


def test_in_memory_blocks_share_the_matrix():
    from daskmeans._sparse import check_sparse_input

    X = _matrix(n=40000, density=0.05)
    X.sum_duplicates()  # canonical already: nothing to copy
    Xd, in_memory = check_sparse_input(X)
    assert in_memory and Xd.numblocks[0] >= 8
    first = Xd.__dask_graph__()[(Xd.name, 1, 0)]  # what the tasks get (compute() would copy)
    assert sp.issparse(first) and first.format == "csr"
    assert np.shares_memory(first.data, X.data)
    np.testing.assert_array_equal(first.toarray(), X[Xd.chunks[0][0] : sum(Xd.chunks[0][:2])]
                                  .toarray())


def test_bad_sparse_input():
    X = _matrix()
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(3).fit(bad)
    lazy = da.from_array(bad, chunks=(300, -1))
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(3, init=X[:3].toarray(), n_init=1).fit(lazy)
    with pytest.raises(ValueError, match="n_clusters=5"):
        KMeans(5).fit(X[:4])
    with pytest.raises(TypeError, match="real numbers"):
        KMeans(2).fit(sp.csr_matrix(np.array([[1 + 1j, 0]])))


def test_duplicates_are_summed():
    """A COO matrix with repeated entries means their sum, as in SciPy."""
    rows = np.array([0, 0, 1, 2, 3, 3])
    cols = np.array([0, 0, 1, 1, 0, 2])
    vals = np.array([1.0, 2.0, 5.0, 4.0, 1.0, 1.0])
    X = sp.coo_matrix((vals, (rows, cols)), shape=(4, 3))
    C0 = np.array([[3.0, 0, 0], [0, 4.5, 0]])
    km = KMeans(2, init=C0, n_init=1).fit(X)
    ref = sklearn_cluster.KMeans(2, init=C0, n_init=1).fit(X.toarray())
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-12)


@pytest.fixture(params=["numba", "numpy"])
def kernels_mode(request, monkeypatch):
    """Both paths of the sparse kernels: the compiled loop and SciPy's products."""
    if request.param == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("DASKMEANS_KERNELS", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_against_dense(dtype, kernels_mode):
    X = _matrix(dtype, n=300)
    Xd = X.toarray()
    rng = np.random.default_rng(0)
    C = rng.random((7, D)).astype(dtype)
    w = rng.random(300)
    bounds = [0, 3, 7]
    from daskmeans import kernels

    got = sparse_kernels.lloyd_partial(X, C, w, bounds=bounds, n_far=4, with_moments=True)
    ref = kernels.lloyd_partial(Xd, C, w, bounds=bounds, n_far=4, with_moments=True)
    for key in ("sums", "counts", "inertia"):
        np.testing.assert_allclose(got[key], ref[key], rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype])
    brute = brute_force_lloyd(Xd, C[3:], w)
    one = sparse_kernels.lloyd_partial(X, C[3:], w)
    np.testing.assert_allclose(one["sums"], brute[2], rtol=RTOL[dtype] * 10, atol=RTOL[dtype])
    np.testing.assert_allclose(one["inertia"][0], brute[4], rtol=RTOL[dtype] * 10)
    np.testing.assert_array_equal(sparse_kernels.assign(X, C[3:]), brute[0])
    np.testing.assert_array_equal(got["far"]["labels"], ref["far"]["labels"])
    np.testing.assert_allclose(got["far"]["rows"], ref["far"]["rows"])
    for a, b in zip(got["moments"], ref["moments"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(sparse_kernels.sq_norms(X), kernels.sq_norms(Xd),
                               rtol=RTOL[dtype])
    with dask.config.set(scheduler="sync"):
        lab = kernels.assign(X, C)
    np.testing.assert_array_equal(lab, kernels.assign(Xd, C))


def test_settings_for_dense_only_refused_before_any_pass():
    X = _matrix()
    counter = CountingArray(X)
    arr = da.from_array(counter, chunks=(300, -1), asarray=False, meta=sp.csr_matrix((0, D)))
    counter.reads = 0
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        KMeans(3, nan_policy="omit").fit(arr)
    with pytest.raises(ValueError, match="standardize=True"):
        KMeans(3, standardize=True).fit(arr)
    assert counter.reads == 0


@pytest.mark.parametrize("algorithm", ["auto", "elkan"])
def test_many_clusters_and_pruning_settings(algorithm):
    """k >= 256 (where dense input prunes distances) gives scikit-learn's Lloyd result."""
    X = _matrix(np.float64)
    C0 = X[:260].toarray()
    ref = sklearn_cluster.KMeans(260, init=C0, n_init=1, max_iter=4, algorithm="lloyd").fit(X)
    km = KMeans(260, init=C0, n_init=1, max_iter=4, algorithm=algorithm).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-7, atol=1e-9)


def test_centres_changed_in_place_are_seen(kernels_mode):
    """The shared transposed centres follow an array changed in place."""
    X = _matrix(n=200)
    C = X[:4].toarray()
    before = sparse_kernels.lloyd_partial(X, C)
    C[:] = X[10:14].toarray()
    after = sparse_kernels.lloyd_partial(X, C)
    fresh = sparse_kernels.lloyd_partial(X, C.copy())
    assert not np.allclose(before["sums"], after["sums"])
    np.testing.assert_array_equal(after["sums"], fresh["sums"])
