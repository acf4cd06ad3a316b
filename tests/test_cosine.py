"""metric="cosine": spherical k-means against a NumPy reference from the same start."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans
from daskmeans.testing import counting_dask


def _unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def spherical_lloyd(X, C, w=None, max_iter=300):
    """Brute-force spherical k-means: labels maximise cos, centres = normalised sums."""
    Xn = _unit(X.astype(np.float64))
    C = _unit(np.asarray(C, dtype=np.float64))
    w = np.ones(len(X)) if w is None else w
    for _ in range(max_iter):
        labels = np.argmax(Xn @ C.T, axis=1)
        new = C.copy()
        for j in range(len(C)):
            m = labels == j
            if m.any():
                s = (w[m, None] * Xn[m]).sum(axis=0)
                new[j] = s / np.linalg.norm(s)
        if np.allclose(new, C, rtol=0, atol=1e-12):
            C = new
            break
        C = new
    labels = np.argmax(Xn @ C.T, axis=1)
    inertia = float((w * (1 - np.sum(Xn * C[labels], axis=1))).sum())
    return C, labels, inertia


@pytest.fixture
def directions():
    rng = np.random.default_rng(3)
    k, d, n = 4, 6, 1500
    mu = _unit(rng.normal(size=(k, d)))
    y = rng.integers(0, k, n)
    # rows of very different lengths pointing near one of k directions
    X = (mu[y] + 0.25 * rng.normal(size=(n, d))) * rng.uniform(0.1, 50, size=(n, 1))
    return X, mu


@pytest.mark.parametrize("rows", [1500, 400, 217])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy_spherical_lloyd(directions, rows, weighted):
    X, mu = directions
    w = np.random.default_rng(0).uniform(0.5, 2, len(X)) if weighted else None
    C0 = mu + 0.3  # deliberately not unit length: the estimator normalises it
    C_ref, lab_ref, inert_ref = spherical_lloyd(X, C0, w)
    km = KMeans(4, init=C0, tol=0, metric="cosine").fit(
        da.from_array(X, chunks=(rows, -1)),
        sample_weight=None if w is None else da.from_array(w, chunks=rows),
    )
    np.testing.assert_allclose(km.cluster_centers_, C_ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(km.labels_.compute(), lab_ref)
    np.testing.assert_allclose(km.inertia_, inert_ref, rtol=1e-7)
    # predict / transform / score in the same metric
    Xd = da.from_array(X, chunks=(rows, -1))
    np.testing.assert_array_equal(km.predict(Xd).compute(), lab_ref)
    D = km.transform(X)
    np.testing.assert_allclose(D, 1 - _unit(X) @ C_ref.T, atol=1e-9)
    if w is None:
        np.testing.assert_allclose(-km.score(Xd), inert_ref, rtol=1e-7)


def test_scale_invariant_and_other_inits(directions):
    X, _ = directions
    s = np.random.default_rng(1).uniform(0.01, 100, size=(len(X), 1))
    for init in ("k-means||", "k-means++", "random"):
        a = KMeans(4, init=init, random_state=0, metric="cosine").fit(
            da.from_array(X, chunks=(300, -1)))
        b = KMeans(4, init=init, random_state=0, metric="cosine").fit(
            da.from_array(X * s, chunks=(300, -1)))
        np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(a.cluster_centers_, axis=1), 1, rtol=1e-10)
        # a good spherical solution: the reference from the found centres does not improve
        _, _, ref = spherical_lloyd(X, a.cluster_centers_)
        assert a.inertia_ <= ref * (1 + 1e-6)


def test_kmeans_parallel_candidates_are_unit(directions, monkeypatch):
    """k-means|| local steps renormalise: the starting centres of Lloyd have unit norm."""
    from daskmeans.engine import _lloyd

    seen = []
    orig = _lloyd.lloyd

    def spy(X, w, state, **kw):
        seen.extend(np.linalg.norm(c, axis=1) for c in state.centers)
        return orig(X, w, state, **kw)

    monkeypatch.setattr("daskmeans.estimator.lloyd", spy)
    X, _ = directions
    KMeans(4, random_state=0, metric="cosine", n_init=3).fit(da.from_array(X, chunks=500))
    np.testing.assert_allclose(np.concatenate(seen), 1, rtol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_float16_upcast_per_block(directions, metric):
    X, mu = directions
    X16 = (X / 50).astype(np.float16)
    Xd = da.from_array(X16, chunks=(250, -1))
    km = KMeans(4, init=mu, metric=metric, tol=0).fit(Xd)
    assert km.cluster_centers_.dtype == np.float32
    ref = KMeans(4, init=mu, metric=metric, tol=0).fit(
        da.from_array(X16.astype(np.float32), chunks=(250, -1)))
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_.compute())
    # the cast is a blockwise layer of the graph (per block), not a whole copy
    from daskmeans._validation import check_array_input

    Xw, _ = check_array_input(Xd)
    assert Xw.dtype == np.float32 and Xw.chunks == Xd.chunks
    assert all(len(layer) == Xd.numblocks[0] for name, layer in Xw.dask.layers.items()
               if name == Xw.name)
    # NumPy float16 in: float32 centres too
    assert KMeans(4, init=mu, metric=metric).fit(X16).cluster_centers_.dtype == np.float32


def test_zero_rows_are_an_error_naming_how_many(directions):
    X, mu = directions
    X = X.copy()
    X[[3, 700, 1400]] = 0
    for init in (mu, "k-means||", "random"):
        with pytest.raises(ValueError, match=r"3 row\(s\) of zeros"):
            KMeans(4, init=init, metric="cosine", random_state=0).fit(
                da.from_array(X, chunks=(500, -1)))
    # unless they are NaN and omitted
    X[[3, 700, 1400]] = np.nan
    km = KMeans(4, init=mu, metric="cosine", nan_policy="omit").fit(X)
    assert km.n_omitted_ == 3 and (km.labels_ == -1).sum() == 3


def test_zero_init_row_is_an_error(directions):
    X, mu = directions
    C = mu.copy()
    C[1] = 0
    with pytest.raises(ValueError, match=r"init has 1 row\(s\) of zeros"):
        KMeans(4, init=C, metric="cosine").fit(X)


def test_no_extra_pass(directions):
    """One read of every block per Lloyd iteration (+ the final inertia), as for euclidean."""
    X, mu = directions
    Xd, counter = counting_dask(X, 300)
    km = KMeans(4, init=mu, metric="cosine", tol=0).fit(Xd)
    nb = Xd.numblocks[0]
    assert counter.reads == km.n_passes_ * nb
    assert km.n_passes_ <= km.n_iter_ + 1


def test_save_load_and_clone(directions, tmp_path):
    from sklearn.base import clone

    X, mu = directions
    km = KMeans(4, init=mu, metric="cosine", random_state=0).fit(X)
    km.save(tmp_path / "m.json")
    back = KMeans.load(tmp_path / "m.json")
    assert back.metric == "cosine"
    np.testing.assert_array_equal(back.predict(X), km.labels_)
    np.testing.assert_allclose(back.transform(X[:5]), km.transform(X[:5]))
    assert clone(km).get_params()["metric"] == "cosine"


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"metric": "manhattan"}, ValueError, "metric must be one of"),
        ({"metric": 3}, TypeError, "metric must be one of"),
        ({"standardize": "yes"}, TypeError, "standardize must be True or False"),
        ({"nan_policy": "drop"}, ValueError, "nan_policy must be one of"),
    ],
)
def test_param_validation(kw, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(2, **kw).fit(np.eye(3))
