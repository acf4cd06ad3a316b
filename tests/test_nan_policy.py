"""nan_policy="omit": rows with NaN are skipped in every pass, without extra passes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans
from daskmeans.testing import counting_dask


@pytest.fixture
def holes(blobs):
    X, _, centers = blobs
    X = X.copy()
    rng = np.random.default_rng(5)
    bad = rng.choice(len(X), 150, replace=False)
    X[bad, rng.integers(0, X.shape[1], len(bad))] = np.nan
    X[:40] = np.nan  # a whole block of NaN rows for the smallest chunking
    keep = ~np.isnan(X).any(axis=1)
    return X, keep, centers


@pytest.mark.parametrize("rows", [3000, 512, 40])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_fit_without_those_rows(holes, rows, weighted):
    X, keep, centers = holes
    w = np.random.default_rng(1).uniform(0.1, 3, len(X)) if weighted else None
    start = centers + 0.5
    ref = KMeans(5, init=start).fit(X[keep], sample_weight=None if w is None else w[keep])
    Xd = da.from_array(X, chunks=(rows, -1))
    wd = None if w is None else da.from_array(w, chunks=rows)
    km = KMeans(5, init=start, nan_policy="omit").fit(Xd, sample_weight=wd)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-10)
    assert km.n_iter_ == ref.n_iter_  # tol's variance ignores the omitted rows too
    assert km.n_omitted_ == int((~keep).sum())
    labels = km.labels_.compute()
    np.testing.assert_array_equal(labels[keep], ref.labels_)
    assert (labels[~keep] == -1).all()
    D = km.transform(Xd).compute()
    assert np.isnan(D[~keep]).all()
    np.testing.assert_allclose(D[keep], ref.transform(X[keep]), rtol=1e-10)
    np.testing.assert_array_equal(km.predict(X), labels)  # NumPy input too
    np.testing.assert_allclose(km.score(Xd, sample_weight=wd), ref.score(
        X[keep], sample_weight=None if w is None else w[keep]), rtol=1e-10)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_inits_never_pick_omitted_rows(holes, init):
    X, keep, _ = holes
    km = KMeans(5, init=init, random_state=0, nan_policy="omit").fit(
        da.from_array(X, chunks=(40, -1)))
    assert np.isfinite(km.cluster_centers_).all()
    ref = KMeans(5, init=km.cluster_centers_).fit(X[keep])
    assert km.inertia_ <= ref.inertia_ * (1 + 1e-9)
    assert km.inertia_ < 1.5 * KMeans(5, init=init, random_state=0).fit(X[keep]).inertia_


@pytest.mark.parametrize("init", ["array", "k-means||", "k-means++"])
def test_no_extra_pass(holes, init):
    """Omitting costs no pass: block reads are those of the passes n_passes_ reports,
    and n_passes_ is the same as for a fit without NaN handling from the same start."""
    X, keep, centers = holes
    C = centers + 0.5 if init == "array" else init
    Xd, counter = counting_dask(X, 500)
    km = KMeans(5, init=C, random_state=0, nan_policy="omit").fit(Xd)
    first_centre = 1 if init == "k-means||" else 0
    assert counter.reads == km.n_passes_ * Xd.numblocks[0] + first_centre
    Xc = np.where(keep[:, None], X, 0.0)  # same shape, no NaN, omitted rows weigh 0
    clean = KMeans(5, init=C, random_state=0, max_iter=km.n_iter_, tol=0).fit(
        da.from_array(Xc, chunks=500), sample_weight=keep.astype(float))
    init_passes = km.n_passes_ - km.n_iter_
    assert init_passes - (clean.n_passes_ - clean.n_iter_) in (-1, 0, 1)


def test_raise_and_inf(holes):
    X, _, centers = holes
    with pytest.raises(ValueError, match="NaN"):
        KMeans(5, init=centers).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        KMeans(5, init=centers).fit(da.from_array(X, chunks=500))
    Xi = X.copy()
    Xi[100, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        KMeans(5, init=centers, nan_policy="omit").fit(Xi)
    with pytest.raises(ValueError, match="infinity"):
        KMeans(5, init=centers, nan_policy="omit").fit(da.from_array(Xi, chunks=500))
    km = KMeans(5, init=centers, nan_policy="raise").fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="NaN"):
        km.predict(X)


def test_save_load(holes, tmp_path):
    X, keep, centers = holes
    km = KMeans(5, init=centers, nan_policy="omit").fit(X)
    km.save(tmp_path / "m.json")
    back = KMeans.load(tmp_path / "m.json")
    assert back.nan_policy == "omit" and back.n_omitted_ == km.n_omitted_
    np.testing.assert_array_equal(back.predict(X), km.labels_)


def test_all_rows_omitted_raises():
    X = np.full((10, 2), np.nan)
    with pytest.raises(ValueError, match="omitted"):
        KMeans(2, init="k-means++", nan_policy="omit", standardize=True).fit(X)
