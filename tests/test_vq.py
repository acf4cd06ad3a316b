"""daskmeans.vq against scipy.cluster.vq on identical inputs and starting codebooks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.cluster import vq as svq

from daskmeans import vq as dvq


@pytest.fixture
def obs():
    rng = np.random.default_rng(11)
    centers = rng.normal(scale=4, size=(4, 3))
    X = centers[rng.integers(0, 4, 600)] + rng.normal(size=(600, 3))
    return X * [1, 10, 0.1]


def _inputs(X, rows):
    return X if rows is None else da.from_array(X, chunks=(rows, -1))


CHUNKS = [None, 600, 128, 37]


@pytest.mark.parametrize("rows", CHUNKS)
def test_whiten(obs, rows):
    out = dvq.whiten(_inputs(obs, rows))
    assert isinstance(out, np.ndarray) == (rows is None)
    np.testing.assert_allclose(np.asarray(out), svq.whiten(obs), rtol=1e-12)
    Z = obs.copy()
    Z[:, 1] = 2.0
    with pytest.warns(RuntimeWarning, match="standard deviation zero"):
        np.testing.assert_allclose(dvq.whiten(Z), svq.whiten(Z))


@pytest.mark.parametrize("rows", CHUNKS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vq(obs, rows, dtype):
    X = obs.astype(dtype)
    book = X[[0, 10, 20, 30, 40]]
    code, dist = dvq.vq(_inputs(X, rows), book)
    ref_code, ref_dist = svq.vq(X, book)
    if rows is not None:
        assert isinstance(code, da.Array)
        code, dist = da.compute(code, dist)
    assert code.dtype == ref_code.dtype == np.int32
    assert dist.dtype == ref_dist.dtype
    np.testing.assert_array_equal(code, ref_code)
    if dtype == np.float64:
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)
    else:  # squared distances by BLAS: float32 cancellation relative to the row norms
        scale = float((X.astype(np.float64) ** 2).sum(axis=1).max())
        np.testing.assert_allclose(dist.astype(np.float64) ** 2, ref_dist.astype(np.float64) ** 2,
                                   atol=1e-5 * scale)
    with pytest.raises(ValueError, match="infs or NaNs"):
        bad = X.copy()
        bad[3, 0] = np.nan
        dvq.vq(bad, book)


@pytest.mark.parametrize("rows", CHUNKS)
def test_kmeans_from_guess(obs, rows):
    W = svq.whiten(obs)
    guess = W[[0, 1, 2, 3, 4]]
    book, dist = dvq.kmeans(_inputs(W, rows), guess)
    ref_book, ref_dist = svq.kmeans(W, guess)
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)
    assert isinstance(book, np.ndarray) and isinstance(dist, float)


def test_kmeans_drops_empty_codes(obs):
    guess = np.vstack([obs[:3], [[1e6, 1e6, 1e6]]])
    book, dist = dvq.kmeans(obs, guess)
    ref_book, ref_dist = svq.kmeans(obs, guess)
    assert book.shape == ref_book.shape == (3, 3)
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)


@pytest.mark.parametrize("rows", [None, 128])
def test_kmeans_restarts_same_rng(obs, rows):
    """Same rng: the same random rows start every restart, as in SciPy."""
    book, dist = dvq.kmeans(_inputs(obs, rows), 4, iter=5, rng=1)
    ref_book, ref_dist = svq.kmeans(obs, 4, iter=5, rng=1)
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)


@pytest.mark.parametrize("rows", CHUNKS)
def test_kmeans2_matrix(obs, rows):
    start = obs[[0, 100, 200, 300]]
    c, lab = dvq.kmeans2(_inputs(obs, rows), start, iter=7, minit="matrix")
    rc, rl = svq.kmeans2(obs, start, iter=7, minit="matrix")
    np.testing.assert_allclose(c, rc, rtol=1e-10)
    lab = np.asarray(lab)
    assert lab.dtype == rl.dtype
    np.testing.assert_array_equal(lab, rl)


@pytest.mark.filterwarnings("ignore:One of the clusters is empty")
@pytest.mark.parametrize("minit", ["random", "points"])
@pytest.mark.parametrize("rows", [None, 128])
def test_kmeans2_seeded_inits_match(obs, minit, rows):
    c, lab = dvq.kmeans2(_inputs(obs, rows), 4, minit=minit, rng=3)
    rc, rl = svq.kmeans2(obs, 4, minit=minit, rng=3)
    np.testing.assert_allclose(c, rc, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(lab), rl)


def test_kmeans2_plusplus_and_1d(obs):
    c, lab = dvq.kmeans2(da.from_array(obs, chunks=(100, -1)), 4, minit="++", rng=0)
    assert c.shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(lab), svq.vq(obs, c)[0] * 0 + np.asarray(lab))
    x = obs[:, 0]
    c1, l1 = dvq.kmeans2(x, x[[0, 5, 9]], minit="matrix")
    r1, rl1 = svq.kmeans2(x, x[[0, 5, 9]], minit="matrix")
    assert c1.shape == r1.shape == (3,)
    np.testing.assert_allclose(c1, r1, rtol=1e-10)
    np.testing.assert_array_equal(l1, rl1)


def test_kmeans2_missing(obs):
    start = np.vstack([obs[:2], [[1e6, 1e6, 1e6]]])
    with pytest.warns(UserWarning, match="One of the clusters is empty"):
        c, _ = dvq.kmeans2(obs, start, minit="matrix", iter=2)
    np.testing.assert_array_equal(c[2], start[2])
    with pytest.raises(dvq.ClusterError, match="empty"):
        dvq.kmeans2(da.from_array(obs, chunks=100), start, minit="matrix", missing="raise")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X: dvq.kmeans2(X, 3, iter=0), "Invalid iter"),
        (lambda X: dvq.kmeans2(X, 3, missing="drop"), "Unknown missing method"),
        (lambda X: dvq.kmeans2(X, 3, minit="bad"), "Unknown init method"),
        (lambda X: dvq.kmeans2(X, X[:2, :2], minit="matrix"), "doesn't match data dimension"),
        (lambda X: dvq.kmeans(X, 0), "Asked for 0 clusters"),
        (lambda X: dvq.kmeans(X, 2.5), "must be an integer"),
        (lambda X: dvq.kmeans(X, 2, iter=0), "iter must be at least 1"),
    ],
)
def test_errors_like_scipy(obs, call, match):
    with pytest.raises(ValueError, match=match):
        call(obs)


def test_rng_and_seed_exclusive(obs):
    with pytest.raises(TypeError):
        dvq.kmeans(obs, 2, rng=1, seed=1)
    a = dvq.kmeans2(obs, 3, minit="points", seed=5)
    b = svq.kmeans2(obs, 3, minit="points", seed=5)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)
