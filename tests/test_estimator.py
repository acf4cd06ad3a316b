"""KMeans against scikit-learn's Lloyd from the same starting centres."""

import warnings

import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from daskmeans import KMeans
from daskmeans.engine import _init
from daskmeans.testing import counting_dask


def tols(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)


def sk_reference(X, C0, sample_weight=None, tol=1e-4, max_iter=300):
    return SKKMeans(
        n_clusters=len(C0), init=C0, n_init=1, algorithm="lloyd", tol=tol, max_iter=max_iter
    ).fit(X, sample_weight=sample_weight)


def as_container(X, kind, tmp_path, rows):
    if kind == "numpy":
        return X
    if kind == "dask":
        return da.from_array(X, chunks=(rows, X.shape[1]))
    path = tmp_path / "X.zarr"
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(rows, X.shape[1]), dtype=X.dtype)
    z[:] = X
    return str(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["numpy", "dask", "zarr"])
@pytest.mark.parametrize("rows,split_every", [(400, 2), (1000, 8), (3000, None)])
def test_matches_sklearn_lloyd_from_same_centres(blobs, dtype, kind, rows, split_every, tmp_path):
    X, _, _ = blobs
    X = X.astype(dtype)
    C0 = X[[0, 1, 2, 3, 4]].copy()
    ref = sk_reference(X, C0)
    km = KMeans(5, init=C0, n_init=1, split_every=split_every)
    km.fit(as_container(X, kind, tmp_path, rows))
    assert km.cluster_centers_.dtype == dtype
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, **tols(dtype))
    assert km.n_iter_ == ref.n_iter_
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=rtol)
    labels = np.asarray(km.labels_)
    assert isinstance(km.labels_, np.ndarray) == (kind == "numpy")
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_array_equal(np.asarray(km.predict(X)), ref.predict(X))


def test_many_iterations_and_max_iter_match_sklearn():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(4000, 4))  # no cluster structure: many iterations
    C0 = X[:12].copy()
    for max_iter in (3, 300):
        ref = sk_reference(X, C0, tol=0.0, max_iter=max_iter)
        km = KMeans(12, init=C0, tol=0.0, max_iter=max_iter).fit(
            da.from_array(X, chunks=(700, 4)))
        assert km.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-10)


def test_one_pass_per_lloyd_iteration():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 3))
    Xd, counter = counting_dask(X, 500)
    km = KMeans(6, init=X[:6].copy(), tol=0.0, max_iter=7).fit(Xd)
    nb = Xd.numblocks[0]
    assert counter.reads % nb == 0
    passes = counter.reads // nb
    # max_iter passes, plus one for the final inertia unless converged strictly
    assert passes == km.n_passes_
    assert passes in (km.n_iter_, km.n_iter_ + 1)
    assert km.n_iter_ == 7 or passes == km.n_iter_


def test_default_fit_quality_and_passes(monkeypatch):
    """k-means|| then Lloyd: within 1% of scikit-learn's best of 10 k-means++ runs."""
    # the passes of k-means|| as on large data (small data is seeded by k-means++)
    monkeypatch.setattr(_init, "small_data", lambda *args, **kwargs: False)
    rng = np.random.default_rng(0)
    k = 25
    centers = rng.uniform(-20, 20, size=(k, 2))
    y = rng.integers(0, k, size=20000)
    X = centers[y] + rng.normal(size=(20000, 2))
    ref = SKKMeans(k, n_init=10, random_state=0).fit(X)
    Xd, counter = counting_dask(X, 2500)
    events = []
    km = KMeans(k, random_state=0, init_rounds=5, callback=events.append).fit(Xd)
    assert km.inertia_ <= 1.01 * ref.inertia_
    # every read is part of a whole pass, except one block read for the first centre
    nb = Xd.numblocks[0]
    assert counter.reads == km.n_passes_ * nb + 1
    # k-means|| reads the data at most init_rounds + 2 times
    first_lloyd = next(e for e in events if e["phase"] == "lloyd")
    init_passes = first_lloyd["n_passes"] - 1
    assert init_passes == 5 + 1
    assert init_passes * nb + 1 <= (5 + 2) * nb
    # Lloyd: one pass per iteration, plus at most one for the final inertia
    assert km.n_passes_ - init_passes in (km.n_iter_, km.n_iter_ + 1)


def test_n_init_candidates_share_passes():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 2))
    Xd, counter = counting_dask(X, 300)
    km1 = KMeans(4, init="random", n_init=1, random_state=1, max_iter=20).fit(Xd)
    one = counter.reads
    counter.reads = 0
    km5 = KMeans(4, init="random", n_init=5, random_state=1, max_iter=20).fit(Xd)
    nb = Xd.numblocks[0]
    # five candidates cost at most the passes of the slowest one, not five times the reads
    assert counter.reads <= (1 + 20 + 1) * nb
    assert counter.reads < 5 * one
    assert km5.inertia_ <= km1.inertia_ + 1e-9


def test_sample_weight_like_repeated_rows(blobs):
    X, _, _ = blobs
    rng = np.random.default_rng(0)
    w = rng.integers(0, 4, size=len(X))
    X_rep = np.repeat(X, w, axis=0)
    C0 = X[w > 0][:5].copy()
    a = KMeans(5, init=C0).fit(da.from_array(X, chunks=(700, 3)), sample_weight=w)
    b = KMeans(5, init=C0).fit(X_rep)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-9)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-9)
    assert a.n_iter_ == b.n_iter_
    # zero weights behave like removed rows
    keep = w > 0
    c = KMeans(5, init=C0).fit(X[keep], sample_weight=w[keep])
    np.testing.assert_allclose(a.cluster_centers_, c.cluster_centers_, rtol=1e-9)
    ref = sk_reference(X, C0, sample_weight=w.astype(float))
    np.testing.assert_allclose(a.cluster_centers_, ref.cluster_centers_, rtol=1e-9)


def test_empty_cluster_is_relocated_to_farthest_point():
    X = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [10, 0], [10.1, 0], [50, 0]])
    C0 = np.array([[0.1, 0], [10.05, 0], [1000.0, 0]])  # third centre gets no point
    ref = sk_reference(X, C0)
    km = KMeans(3, init=C0).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_)
    assert len(np.unique(km.labels_)) == 3


def test_farthest_rows_are_searched_only_after_a_cluster_empties(monkeypatch):
    """Passes skip the farthest-row search until a cluster comes out empty; that
    pass is redone with it (one extra pass), and it stays on afterwards."""
    from daskmeans import kernels as _kernels
    from daskmeans.engine import _lloyd

    # the passes one by one (a single in-memory block otherwise runs in the C
    # loop, which stops before such a pass: tests/test_native.py)
    monkeypatch.setattr(_lloyd, "BLOCK_LOOP", False)

    calls = []
    real = _kernels.lloyd_partial

    def spy(*args, **kwargs):
        calls.append(kwargs.get("n_far", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(_kernels, "lloyd_partial", spy)
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 0.5, size=(200, 2)) for c in (0, 5, 10)])
    C0 = X[[0, 250, 450]].copy()
    km = KMeans(3, init=C0, tol=0, max_iter=4).fit(X)
    assert km.n_passes_ >= 2 and calls == [0] * km.n_passes_

    calls.clear()
    X = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [10, 0], [10.1, 0], [50, 0]])
    C0 = np.array([[0.1, 0], [10.05, 0], [1000.0, 0]])  # third centre gets no point
    km = KMeans(3, init=C0, tol=0, max_iter=3).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, sk_reference(X, C0, max_iter=3,
                                                                 tol=0).cluster_centers_)
    # iteration 1 twice, then iterations 2.. with the search (the final inertia pass,
    # if any, needs none)
    assert calls[:2] == [0, 3] and calls[2 : km.n_iter_ + 1] == [3] * (km.n_iter_ - 1)
    assert km.n_passes_ == len(calls)


@pytest.mark.parametrize("weighted", [False, True])
def test_numpy_fit_gets_labels_and_final_inertia_from_one_pass(weighted, monkeypatch):
    """NumPy input: labels_ are computed at the end of fit anyway, so that pass
    also gives the final inertia and sizes (no separate finalize pass)."""
    from daskmeans import _base as estimator
    from daskmeans import kernels as _kernels

    sweeps, predicts = [], []
    real_sweep, real_predict = _kernels.lloyd_partial, estimator._predict_block
    monkeypatch.setattr(_kernels, "lloyd_partial",
                        lambda *a, **k: sweeps.append(1) or real_sweep(*a, **k))
    real_loop = _kernels.lloyd_block  # one block: the iterations in one C call

    def loop(*a, **k):
        out = real_loop(*a, **k)
        sweeps.extend([1] * (0 if out is None else out["n_iter"]))
        return out

    monkeypatch.setattr(_kernels, "lloyd_block", loop)
    monkeypatch.setattr(estimator, "_predict_block",
                        lambda X, *a, **k: predicts.append(len(X)) or real_predict(X, *a, **k))
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(c, 1.0, size=(3000, 4)) for c in (0, 3, 6)])
    w = rng.uniform(0.5, 2, size=len(X)) if weighted else None
    C0 = X[[0, 1, 2]].copy()  # all in one blob: many iterations, no exact convergence
    km = KMeans(3, init=C0, tol=0, max_iter=4).fit(X, sample_weight=w)
    ref = sk_reference(X, C0, sample_weight=w, tol=0, max_iter=4)
    from daskmeans._validation import default_row_chunks

    n_blocks = -(-len(X) // default_row_chunks(len(X), 4, 8))
    assert km.n_iter_ == 4 and len(sweeps) == 4 * n_blocks  # the Lloyd passes only
    assert km.n_passes_ == 5 and not [n for n in predicts if n]  # + the labels pass
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-10)
    np.testing.assert_allclose(km.cluster_sizes_,
                               np.bincount(km.labels_, weights=w, minlength=3), rtol=1e-12)
    np.testing.assert_array_equal(km.predict(X), km.labels_)


def test_fewer_distinct_points_than_clusters_warns():
    X = np.array([[1.0, 1.0]] * 5 + [[2.0, 2.0]] * 5)
    with pytest.warns(Warning, match="Number of distinct clusters"):
        KMeans(3, init="random", random_state=0).fit(X)


def test_integer_input_becomes_float64_and_float32_stays():
    rng = np.random.default_rng(0)
    Xi = rng.integers(0, 100, size=(500, 3))
    assert KMeans(3, random_state=0).fit(Xi).cluster_centers_.dtype == np.float64
    X32 = Xi.astype(np.float32)
    km = KMeans(3, random_state=0).fit(da.from_array(X32, chunks=100))
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X32).dtype == np.float32


def test_predict_transform_score_are_consistent(blobs):
    X, _, _ = blobs
    km = KMeans(5, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(1000, 3))
    lab = km.predict(Xd)
    assert isinstance(lab, da.Array)
    np.testing.assert_array_equal(lab.compute(), km.labels_)
    dist = km.transform(Xd).compute()
    ref = np.sqrt(((X[:, None] - km.cluster_centers_[None]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(-km.score(Xd), (ref.min(1) ** 2).sum(), rtol=1e-9)
    np.testing.assert_allclose(km.inertia_, (ref.min(1) ** 2).sum(), rtol=1e-9)
    np.testing.assert_array_equal(km.fit_predict(X), km.labels_)


def test_same_random_state_same_result_any_chunk_schedule(blobs):
    X, _, _ = blobs
    Xd = da.from_array(X, chunks=(500, 3))
    a = KMeans(5, random_state=3).fit(Xd)
    b = KMeans(5, random_state=3).fit(Xd)
    import dask

    with dask.config.set(scheduler="sync"):
        c = KMeans(5, random_state=3).fit(Xd)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.cluster_centers_, c.cluster_centers_)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_every_init_finds_well_separated_blobs(blobs, init):
    X, y, centers = blobs
    km = KMeans(5, init=init, n_init=3, random_state=0).fit(da.from_array(X, chunks=(600, 3)))
    # each true centre has a fitted centre close to it
    d = np.sqrt(((centers[:, None] - km.cluster_centers_[None]) ** 2).sum(-1)).min(1)
    assert d.max() < 0.3


def test_callable_init(blobs):
    X, _, _ = blobs
    calls = []

    def my_init(X, k, random_state):
        calls.append(k)
        return np.asarray(X[:k])

    km = KMeans(5, init=my_init, n_init=1).fit(X)
    ref = sk_reference(X, X[:5].copy())
    assert calls == [5]
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-9)


def test_sklearn_clone_pipeline_and_grid_search(blobs):
    X, _, _ = blobs
    km = KMeans(4, random_state=0, max_iter=50)
    c = clone(km)
    assert c.get_params() == km.get_params()
    pipe = make_pipeline(StandardScaler(), KMeans(5, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (len(X),)
    gs = GridSearchCV(KMeans(random_state=0), {"n_clusters": [2, 5]}, cv=2).fit(X)
    assert gs.best_params_["n_clusters"] == 5


def test_save_and_load_round_trip(blobs, tmp_path):
    X, _, _ = blobs
    for dtype in (np.float32, np.float64):
        km = KMeans(5, random_state=0).fit(X.astype(dtype))
        km.save(tmp_path / "m.json")
        km2 = KMeans.load(tmp_path / "m.json")
        assert km2.cluster_centers_.dtype == dtype
        np.testing.assert_array_equal(km2.cluster_centers_, km.cluster_centers_)
        assert km2.get_params() == {**km.get_params()}
        np.testing.assert_array_equal(km2.predict(X.astype(dtype)), km.labels_)
        assert km2.inertia_history_ == km.inertia_history_
    text = (tmp_path / "m.json").read_text()
    assert '"format_version": 1' in text


def test_verbose_and_callback(blobs, capsys):
    X, _, _ = blobs
    for data, n_init_events in ((da.from_array(X, chunks=(500, 3)), 5), (X, 1)):
        events = []
        KMeans(5, random_state=0, verbose=1, callback=events.append).fit(data)
        phases = [e["phase"] for e in events]
        # k-means|| rounds on a Dask array; small NumPy data: one k-means++ step
        assert phases.count("init") == n_init_events and "lloyd" in phases
        assert all(e["n_passes"] >= 1 for e in events)
        assert "iteration" in capsys.readouterr().out


def test_small_numpy_data_is_seeded_by_kmeans_plusplus_on_all_rows():
    """Default init on small in-memory data: k-means++ on every row, in one pass,
    the same fit as ``init="k-means++"`` (whose sample is all rows here)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 3)) + rng.integers(0, 6, 3000)[:, None] * 2.0
    a = KMeans(6, random_state=1).fit(X)
    b = KMeans(6, init="k-means++", random_state=1).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.n_iter_ == b.n_iter_ and a.inertia_ == b.inertia_
    assert a.n_passes_ - a.n_iter_ in (1, 2)  # one init pass, maybe the final inertia
    # a Dask array is never gathered: k-means|| runs its passes
    c = KMeans(6, random_state=1).fit(da.from_array(X, chunks=(1000, 3)))
    assert c.n_passes_ - c.n_iter_ >= 5 + 1


def test_small_data_default_fit_inertia_like_sklearn():
    """Over several small data sets, the default fit is no worse than scikit-learn's
    default fit (one greedy k-means++ start each), in the median."""
    ratios = []
    for seed, (n, d) in enumerate([(1000, 2), (2000, 4), (4000, 8), (1500, 3), (3000, 2)]):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, d)) + rng.integers(0, 8, n)[:, None] * 1.5
        ref = SKKMeans(8, random_state=seed).fit(X)
        km = KMeans(8, random_state=seed).fit(X)
        ratios.append(km.inertia_ / ref.inertia_)
    assert np.median(ratios) <= 1.005, ratios
    assert max(ratios) <= 1.15, ratios


def test_no_warnings_on_plain_fit(blobs):
    X, _, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(5, random_state=0).fit(da.from_array(X, chunks=(500, 3)))


@pytest.mark.parametrize("kwargs", [{}, {"standardize": True}, {"nan_policy": "omit"}])
def test_deferred_final_pass_gives_the_fit_in_one_read(kwargs, deferred_fit):
    """Inside deferred_final_pass, the labels' pass makes the fit's last pass:
    one read of every block gives labels_, inertia_ and cluster_sizes_, all
    bitwise those of a plain fit."""
    from daskmeans._base import deferred_final_pass, pending_final_pass

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(c, 1.0, (400, 3)) for c in (0.0, 2.0, 4.0, 6.0)])
    if "nan_policy" in kwargs:
        x[[5, 700]] = np.nan
    ref = KMeans(4, random_state=0, **kwargs).fit(da.from_array(x, chunks=(200, 3)))
    km, labels, reads = deferred_fit(KMeans(4, random_state=0, **kwargs), x, 200)
    assert reads == len(x) // 200
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(labels, ref.labels_.compute())
    assert km.inertia_ == ref.inertia_ and km.n_passes_ == ref.n_passes_
    np.testing.assert_array_equal(km.cluster_sizes_, ref.cluster_sizes_)
    assert km.n_iter_ == ref.n_iter_ and km.n_omitted_ == ref.n_omitted_
    # outside the context, and on NumPy input, the fit completes as before
    X = da.from_array(x, chunks=(200, 3))
    assert pending_final_pass(KMeans(4, random_state=0, **kwargs).fit(X)) is None
    with deferred_final_pass(km):
        km.fit(x)
    assert pending_final_pass(km) is None
    assert km.inertia_ == KMeans(4, random_state=0, **kwargs).fit(x).inertia_
