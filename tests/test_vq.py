"""daskmeans.vq against scipy.cluster.vq on identical inputs and starting codebooks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.cluster import vq as svq
from scipy.spatial.distance import cdist

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
    # distances from differences, as SciPy computes them: relative agreement
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert (dist[[0, 10, 20, 30, 40]] == 0).all()
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


@pytest.mark.parametrize("rows", [None, 64])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [3, 6])
def test_vq_row_equal_to_code_is_zero(rows, dtype, d):
    """No cancellation: a row equal to a code word is at distance exactly 0.

    Distances equal the directly computed ones (``cdist`` in float64). SciPy's
    own ``vq`` computes them directly below 5 features (compared exactly there)
    and by the expanded product from 5 on (where it gives 4.0 for a float32 row
    equal to its code on this data).
    """
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(200, d)) * 1000 + 5000).astype(dtype)
    book = X[[3, 77, 150]]
    code, dist = dvq.vq(_inputs(X, rows), book)
    code, dist = np.asarray(code), np.asarray(dist)
    assert dist.dtype == dtype
    assert (dist[[3, 77, 150]] == 0).all()
    direct = cdist(X.astype(np.float64), book.astype(np.float64))
    np.testing.assert_array_equal(code, direct.argmin(axis=1))
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(dist, direct.min(axis=1), rtol=rtol, atol=0)
    ref_code, ref_dist = svq.vq(X, book)
    np.testing.assert_array_equal(code, ref_code)
    if d < 5:
        np.testing.assert_allclose(dist, ref_dist, rtol=rtol, atol=0)


def test_vq_integer_and_rank_errors():
    X = np.array([[1, 2], [3, 4], [9, 9]])
    code, dist = dvq.vq(X, np.array([[1, 2], [9, 8]]))
    ref_code, ref_dist = svq.vq(X, np.array([[1, 2], [9, 8]]))
    assert code.dtype == ref_code.dtype
    np.testing.assert_array_equal(code, ref_code)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)
    with pytest.raises(ValueError, match="same number of dimensions"):
        dvq.vq(X[:, 0].astype(float), np.array([[1.0]]))
    with pytest.raises(ValueError, match="same number of features"):
        dvq.vq(X.astype(float), np.array([[1.0, 2.0, 3.0]]))


@pytest.mark.parametrize("rows", [None, 32])
def test_one_dimensional_observations(obs, rows):
    """1-D observations: 1-D codebooks, codes and distances, as in SciPy."""
    x = obs[:200, 0].copy()
    xi = x if rows is None else da.from_array(x, chunks=rows)
    book, dist = dvq.kmeans(xi, x[[0, 5, 9]])
    ref_book, ref_dist = svq.kmeans(x, x[[0, 5, 9]])
    assert book.shape == ref_book.shape == (3,)
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)
    book, dist = dvq.kmeans(xi, 3, iter=4, rng=2)
    ref_book, ref_dist = svq.kmeans(x, 3, iter=4, rng=2)
    assert book.ndim == ref_book.ndim == 1
    np.testing.assert_allclose(np.sort(book), np.sort(ref_book), rtol=1e-10)
    code, d = dvq.vq(xi, ref_book)
    ref_code, ref_d = svq.vq(x, ref_book)
    assert np.asarray(code).shape == np.asarray(d).shape == (200,)
    np.testing.assert_array_equal(np.asarray(code), ref_code)
    np.testing.assert_allclose(np.asarray(d), ref_d, rtol=1e-12, atol=0)
    for minit in ("points", "++", "random"):
        c, lab = dvq.kmeans2(xi, 3, minit=minit, rng=4)
        rc, rl = svq.kmeans2(x, 3, minit=minit, rng=4)
        assert c.shape == rc.shape == (3,)
        np.testing.assert_allclose(c, rc, rtol=1e-10)
        np.testing.assert_array_equal(np.asarray(lab), rl)


def _sources(kind):
    return {
        "int": lambda: 7,
        "generator": lambda: np.random.default_rng(7),
        "randomstate": lambda: np.random.RandomState(7),
    }[kind]()


@pytest.mark.filterwarnings("ignore:One of the clusters is empty")
@pytest.mark.parametrize("kind", ["int", "generator", "randomstate"])
@pytest.mark.parametrize("name", ["rng", "seed"])
@pytest.mark.parametrize("minit", ["points", "++", "random"])
def test_random_sources_like_scipy(obs, kind, name, minit):
    """int, Generator or RandomState as ``rng`` or ``seed``: SciPy's stream."""
    c, lab = dvq.kmeans2(obs, 4, minit=minit, **{name: _sources(kind)})
    rc, rl = svq.kmeans2(obs, 4, minit=minit, **{name: _sources(kind)})
    np.testing.assert_allclose(c, rc, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(lab, rl)
    book, dist = dvq.kmeans(obs, 3, iter=2, **{name: _sources(kind)})
    ref_book, ref_dist = svq.kmeans(obs, 3, iter=2, **{name: _sources(kind)})
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)


def test_global_random_state_without_rng(obs):
    """Neither rng nor seed: NumPy's global RandomState, as in SciPy."""
    np.random.seed(12)  # noqa: NPY002 - SciPy's global state is the point
    c, _ = dvq.kmeans2(obs, 4, minit="points")
    np.random.seed(12)  # noqa: NPY002
    rc, _ = svq.kmeans2(obs, 4, minit="points")
    np.testing.assert_allclose(c, rc, rtol=1e-12)
    with pytest.raises(ValueError, match="seed must be"):
        dvq.kmeans(obs, 2, seed="seven")


@pytest.mark.parametrize("thresh", [0.0, 1e-3, 0.05, 10.0])
@pytest.mark.parametrize("rows", [None, 100])
def test_kmeans_thresh_stops_where_scipy_stops(obs, thresh, rows):
    """thresh bounds the absolute change of the mean distance between iterations."""
    guess = obs[[0, 1, 2, 3]]
    book, dist = dvq.kmeans(_inputs(obs, rows), guess, thresh=thresh)
    ref_book, ref_dist = svq.kmeans(obs, guess, thresh=thresh)
    np.testing.assert_allclose(book, ref_book, rtol=1e-10)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10)
    if thresh == 10.0:  # two iterations: one update from the guess
        assert not np.allclose(book, guess)


def test_check_finite(obs):
    bad = obs.copy()
    bad[5, 1] = np.inf
    guess = obs[:3].copy()
    with pytest.raises(ValueError, match="infs or NaNs"):
        dvq.kmeans(bad, guess)
    with pytest.raises(ValueError, match="infs or NaNs"):
        svq.kmeans(bad, guess)
    nan_guess = guess.copy()
    nan_guess[0, 0] = np.nan
    with pytest.raises(ValueError, match="infs or NaNs"):
        dvq.kmeans(obs, nan_guess)
    with pytest.raises(ValueError, match="infs or NaNs"):
        dvq.kmeans2(bad, guess, minit="matrix")
    with pytest.raises(ValueError, match="infs or NaNs"):
        dvq.vq(obs, nan_guess)
    lazy = dvq.vq(da.from_array(bad, chunks=100), guess)[0]
    with pytest.raises(ValueError, match="infs or NaNs"):
        lazy.compute()
    # check_finite=False: no check (SciPy's meaning), finite rows keep their codes
    code, _ = dvq.vq(bad, guess, check_finite=False)
    ref_code, _ = svq.vq(obs, guess)
    keep = np.isfinite(bad).all(axis=1)
    np.testing.assert_array_equal(code[keep], ref_code[keep])
    c, lab = dvq.kmeans2(obs, guess, minit="matrix", check_finite=False)
    rc, rl = svq.kmeans2(obs, guess, minit="matrix", check_finite=False)
    np.testing.assert_allclose(c, rc, rtol=1e-10)


def test_sparse_input_is_refused_with_a_pointer():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(20, 3, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match="sparse matrix.*KMeans"):
        dvq.vq(X, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="sparse matrix"):
        dvq.kmeans2(da.from_array(X, chunks=(10, -1)), 2)
