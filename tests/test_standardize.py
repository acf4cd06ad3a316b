"""standardize=True: equals StandardScaler + scikit-learn KMeans from the same scaled start."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from daskmeans import KMeans
from daskmeans.testing import counting_dask


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    k, n = 3, 1200
    centers = rng.normal(size=(k, 4)) * [1, 100, 0.01, 5]
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(size=(n, 4)) * [0.3, 40, 0.004, 2] + [0, 1e3, 0, -7]
    X = np.column_stack([X, np.full(n, 3.5)])  # a constant feature: scale 1
    return X


@pytest.mark.parametrize("rows", [1200, 256, 97])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equals_scaler_pipeline(data, rows, dtype):
    X = data.astype(dtype)
    scaler = StandardScaler().fit(X.astype(np.float64))
    Xs = scaler.transform(X.astype(np.float64))
    start_scaled = Xs[[5, 50, 500]]
    ref = SKKMeans(3, init=start_scaled, n_init=1, tol=0, algorithm="lloyd").fit(Xs)
    km = KMeans(3, init=scaler.inverse_transform(start_scaled), standardize=True, tol=0).fit(
        da.from_array(X, chunks=(rows, -1)))
    rtol = 1e-4 if dtype == np.float32 else 1e-7
    np.testing.assert_allclose(km.mean_, scaler.mean_, rtol=rtol)
    np.testing.assert_allclose(km.scale_, scaler.scale_, rtol=rtol)
    assert km.scale_[-1] == 1.0
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    back = scaler.inverse_transform(ref.cluster_centers_)
    np.testing.assert_allclose((km.cluster_centers_ - back) / scaler.scale_, 0, atol=rtol)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=rtol)
    assert km.cluster_centers_.dtype == dtype
    # predict / transform take original units, like the pipeline
    pipe = make_pipeline(scaler, ref)
    np.testing.assert_array_equal(km.predict(X), pipe.predict(X.astype(np.float64)))
    np.testing.assert_allclose(km.transform(X[:20]), pipe.transform(X[:20].astype(np.float64)),
                               rtol=rtol, atol=rtol)


def test_default_tol_matches_sklearn(data):
    """tol is relative to the variance of the standardised data, as in the pipeline."""
    scaler = StandardScaler().fit(data)
    Xs = scaler.transform(data)
    start = Xs[[1, 2, 3]]
    ref = SKKMeans(3, init=start, n_init=1, algorithm="lloyd").fit(Xs)
    km = KMeans(3, init=scaler.inverse_transform(start), standardize=True).fit(data)
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-7)


@pytest.mark.parametrize(
    ("init", "init_passes"), [("random", 1), ("k-means++", 1), ("k-means||", 5 + 1 + 1),
                              ("array", 0 + 1)]
)
def test_passes(data, init, init_passes):
    """Statistics come from the sampling pass of random/k-means++ (no extra pass);
    k-means|| and explicit centres need one statistics pass first (counted)."""
    Xd, counter = counting_dask(data, 200)
    nb = Xd.numblocks[0]
    C = data[[0, 1, 2]] if init == "array" else init
    km = KMeans(3, init=C, n_init=1, random_state=0, standardize=True).fit(Xd)
    first_centre = 1 if init == "k-means||" else 0  # one block read for the first centre
    assert counter.reads == km.n_passes_ * nb + first_centre
    # Lloyd: one pass per iteration, plus at most one for the final inertia
    assert km.n_passes_ - km.n_iter_ in (init_passes, init_passes + 1)


def test_statistics_ignore_omitted_rows(data):
    X = data.copy()
    X[[4, 9, 600], 1] = np.nan
    km = KMeans(3, init="k-means++", random_state=0, standardize=True, nan_policy="omit").fit(
        da.from_array(X, chunks=(250, -1)))
    keep = ~np.isnan(X).any(axis=1)
    scaler = StandardScaler().fit(X[keep])
    np.testing.assert_allclose(km.mean_, scaler.mean_, rtol=1e-10)
    np.testing.assert_allclose(km.scale_, scaler.scale_, rtol=1e-10)
    assert km.n_omitted_ == 3


def test_cosine_on_standardised(data):
    km = KMeans(3, random_state=0, standardize=True, metric="cosine").fit(data)
    work = (km.cluster_centers_ - km.mean_) / km.scale_
    np.testing.assert_allclose(np.linalg.norm(work, axis=1), 1, rtol=1e-6)


def test_save_load_clone_pipeline(data, tmp_path):
    from sklearn.base import clone

    km = KMeans(3, random_state=0, standardize=True).fit(data)
    km.save(tmp_path / "m.json")
    back = KMeans.load(tmp_path / "m.json")
    np.testing.assert_array_equal(back.mean_, km.mean_)
    np.testing.assert_array_equal(back.scale_, km.scale_)
    np.testing.assert_array_equal(back.cluster_centers_, km.cluster_centers_)
    np.testing.assert_array_equal(back.predict(data), km.labels_)
    np.testing.assert_array_equal(back.transform(data[:7]), km.transform(data[:7]))
    assert back.score(data) == km.score(data)
    c = clone(km)
    assert c.standardize is True and not hasattr(c, "mean_")
    pipe = make_pipeline(KMeans(3, random_state=0, standardize=True)).fit(data)
    np.testing.assert_array_equal(pipe.predict(data), km.labels_)
    # refitting without standardize drops the fitted statistics
    km.set_params(standardize=False).fit(data)
    assert not hasattr(km, "mean_") and not hasattr(km, "scale_")
