"""Initialisation: k-means++, k-means|| (weighted candidates), random."""

import dask.array as da
import numpy as np

from daskmeans._rng import as_seed_sequence, block_rng
from daskmeans.engine import _init
from daskmeans.testing import counting_dask


def _blobs(k=8, n=4000, d=2, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-30, 30, size=(k, d))
    y = rng.integers(0, k, size=n)
    return centers[y] + rng.normal(size=(n, d)), centers


def _cover(found, centers):
    return np.sqrt(((centers[:, None] - found[None]) ** 2).sum(-1)).min(1).max()


def test_kmeans_plusplus_picks_data_points_and_spreads_out():
    X, centers = _blobs()
    C = _init.kmeans_plusplus(X, None, 8, np.random.default_rng(0))
    assert all((X == c).all(1).any() for c in C)
    assert _cover(C, centers) < 4.0  # one seed in every blob


def test_kmeans_plusplus_respects_weights():
    X = np.array([[0.0], [1.0], [100.0]])
    w = np.array([1.0, 1.0, 0.0])
    for seed in range(20):
        C = _init.kmeans_plusplus(X, w, 2, np.random.default_rng(seed))
        assert 100.0 not in C


def test_kmeans_parallel_passes_and_quality():
    X, centers = _blobs(k=10)
    Xd, counter = counting_dask(X, 500)
    seq = as_seed_sequence(0)
    out, n_passes, moments = _init.kmeans_parallel(Xd, None, 10, 2, seq, init_rounds=4)
    assert n_passes == 4 + 1
    # the first centre reads one block per candidate; everything else is whole passes
    assert counter.reads <= (4 + 1) * Xd.numblocks[0] + 2
    assert len(out) == 2 and all(c.shape == (10, 2) for c in out)
    assert all(_cover(c, centers) < 2.0 for c in out)
    n, mean, m2 = moments
    np.testing.assert_allclose(m2 / n, X.var(0))


def test_kmeans_parallel_uses_candidate_weights(monkeypatch):
    """The local k-means++ must receive the candidates' weights, not ones."""
    X, _ = _blobs(k=4)
    seen = []
    real = _init.kmeans_plusplus

    def spy(cand, wts, k, rng, n_local_trials=None, plan=None):
        seen.append(np.asarray(wts))
        return real(cand, wts, k, rng, plan=plan)

    monkeypatch.setattr(_init, "kmeans_plusplus", spy)
    _init.kmeans_parallel(da.from_array(X, chunks=(500, 2)), None, 4, 1, as_seed_sequence(1))
    assert seen and seen[0].sum() == len(X)
    assert len(np.unique(seen[0])) > 1


def test_random_init_is_weighted_and_distinct():
    X = np.arange(40.0).reshape(20, 2)
    w = np.zeros(20)
    w[[3, 7, 11]] = 1.0
    rows = _init.random_rows(da.from_array(X, chunks=(6, 2)), da.from_array(w, chunks=6), 3, 4,
                             as_seed_sequence(0))
    for g in range(4):
        assert sorted(rows[g][:, 0].tolist()) == [6.0, 14.0, 22.0]


def test_block_rng_is_keyed_not_stateful():
    seq = as_seed_sequence(5)
    a = block_rng(seq, 1, 2, 3).random(4)
    b = block_rng(seq, 1, 2, 3).random(4)
    c = block_rng(seq, 1, 2, 4).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_compiled_seeding_step_matches_numpy(monkeypatch):
    import pytest

    from daskmeans.kernels import KernelPlan, _plan

    if not _plan.numba_installed():
        pytest.skip("needs numba and SciPy")
    compiled, numpy_plan = KernelPlan.numba(), KernelPlan.numpy()
    if not compiled.whole_block:
        pytest.skip("needs numba and SciPy")
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        X = (rng.normal(size=(3001, 7)) * 5).astype(dtype)
        for w in (None, rng.uniform(0, 2, size=len(X))):
            fast = _init._Trials(X, w, compiled)
            slow = _init._Trials(X, w, numpy_plan)
            assert fast.compiled and not slow.compiled
            closest = rng.uniform(0, 80, size=len(X))
            closest[:5] = np.inf
            picks = rng.choice(len(X), 6)
            c1, c2 = closest.copy(), closest.copy()
            (b1, p1, cum1), (b2, p2, cum2) = fast(picks, c1), slow(picks, c2)
            rtol = 1e-5 if dtype == np.float32 else 1e-12
            # the same candidate, its potential, the distances and their running sum
            assert b1 == b2
            np.testing.assert_allclose(p1, p2, rtol=rtol)
            np.testing.assert_allclose(c1, c2, rtol=rtol, atol=rtol * 100)
            assert (c1 <= closest).all() and (c1 >= 0).all() and (c1 < closest).any()
            ref = np.cumsum(c1 * (np.ones(len(X)) if w is None else w))
            if w is None:  # added in order, as np.cumsum
                np.testing.assert_array_equal(cum1, ref)
            np.testing.assert_allclose(cum1, ref, rtol=1e-14)  # weights: fused products
            np.testing.assert_allclose(cum1, cum2, rtol=rtol, atol=rtol * 100)
            # the potential is the best of every candidate's, first on ties
            pots = [np.minimum(closest, np.maximum(
                ((X.astype(np.float64) - X[p].astype(np.float64)) ** 2).sum(1), 0)) @ (
                np.ones(len(X)) if w is None else w) for p in picks]
            np.testing.assert_allclose(p1, min(pots), rtol=rtol * 10)
            assert b1 == int(np.argmin(np.round(pots, 3)))
            # whole seedings agree
            C1 = _init.kmeans_plusplus(X, w, 9, np.random.default_rng(0), plan=compiled)
            assert not _init._Trials(X, w, numpy_plan).compiled
            C2 = _init.kmeans_plusplus(X, w, 9, np.random.default_rng(0), plan=numpy_plan)
            np.testing.assert_array_equal(C1, C2)


def test_kmeans_plusplus_is_sklearns_greedy_kmeans_plusplus():
    """The same draws give scikit-learn's centres: first centre by weight, then
    2 + ln(k) candidates by weight x squared distance, the best kept."""
    from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus

    for seed in range(4):
        X, _ = _blobs(k=6, n=1500, d=3, seed=seed)
        w = np.random.default_rng(seed).uniform(0.5, 2.0, len(X)) if seed % 2 else None
        want, _ = sk_kmeans_plusplus(X, 6, sample_weight=w,
                                     random_state=np.random.RandomState(seed))
        got = _init.kmeans_plusplus(X, w, 6, np.random.RandomState(seed))
        np.testing.assert_array_equal(got, want)


def test_small_data_rule_depends_on_the_shape_only(monkeypatch):
    small = da.zeros((1000, 4), chunks=(100, 4))
    assert _init.small_data(small, 8)
    assert _init.small_data(small.rechunk((1000, 4)), 8)  # whatever the chunks
    # 65 MB: small only with no more rows than k-means|| candidates (1 + 5 x 2 x 8)
    assert _init.small_data(da.zeros((81, 100_000), chunks=(10, 100_000)), 8)
    assert not _init.small_data(da.zeros((82, 100_000), chunks=(10, 100_000)), 8)
    unknown = da.zeros((1000, 4), chunks=(100, 4))
    unknown._chunks = ((np.nan,) * 10, (4,))
    assert not _init.small_data(unknown, 8)
    monkeypatch.setattr(_init, "SMALL_DATA_BYTES", small.nbytes - 1)
    assert not _init.small_data(small, 8)
    monkeypatch.setattr(_init, "SMALL_DATA_BYTES", small.nbytes)
    monkeypatch.setattr(_init, "SMALL_DATA_ROW_CENTRES", 1000 * 8 - 1)
    assert not _init.small_data(small, 8) and _init.small_data(small, 7)


def test_small_in_memory_kmeans_parallel_is_kmeans_plusplus_on_all_rows():
    from daskmeans._validation import numpy_blocks

    X, _ = _blobs(k=5, n=3000, d=2, seed=3)
    seq = as_seed_sequence(7)
    want = [_init.kmeans_plusplus(X, np.ones(len(X)), 5, block_rng(seq, _init._LOCAL, g))
            for g in range(2)]
    for rows in (3000, 700, 256):  # the chunking changes nothing, bitwise
        out, n_passes, moments = _init.init_centers(numpy_blocks(X, rows), None, 5,
                                                    "k-means||", seq, 2, in_memory=True)
        assert n_passes == 1
        for got, ref in zip(out, want, strict=True):
            np.testing.assert_array_equal(got, ref)
        n, _, m2 = moments
        np.testing.assert_allclose(m2 / n, X.var(0))
    # not in memory (a Dask array): the passes of k-means||
    _, n_passes, _ = _init.init_centers(da.from_array(X, chunks=500), None, 5, "k-means||",
                                        seq, 2, init_rounds=3)
    assert n_passes == 3 + 1


def test_auto_init_resolves_by_number_of_centres(monkeypatch):
    from daskmeans import KMeans

    monkeypatch.setattr(_init, "HIERARCHICAL_INIT_MIN_K", 16)
    X, _ = _blobs(k=16, n=3000, d=4, seed=3)
    Xd = da.from_array(X, chunks=750)

    def fit(k, **kw):
        return KMeans(k, random_state=0, max_iter=3, tol=0, **kw).fit(Xd)

    # from the threshold: the hierarchical start, the same passes and centres
    auto, explicit = fit(16), fit(16, init="hierarchical")
    np.testing.assert_array_equal(auto.cluster_centers_, explicit.cluster_centers_)
    assert auto.n_passes_ == explicit.n_passes_
    assert auto.n_passes_ != fit(16, init="k-means||").n_passes_
    # below it, and where the hierarchical start does not apply: k-means||
    for k, kw in ((15, {}), (16, {"metric": "cosine"}), (16, {"standardize": True})):
        a, b = fit(k, **kw), fit(k, init="k-means||", **kw)
        np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
        assert a.n_passes_ == b.n_passes_


def test_seeding_trials_by_column_tiles_match_blas_trials():
    """The k-means++ step with the products by the column tiles over the
    transposed sample picks the same candidate as the BLAS step, with the same
    distances and running sums (up to the products' rounding), for any number
    of rows, features and candidates (tails of every tile and group)."""
    import pytest

    from daskmeans import kernels
    from daskmeans.kernels import KernelPlan, _plan

    if not _plan.numba_installed():
        pytest.skip("needs numba and SciPy")
    plan = KernelPlan.numba()
    if not (plan.whole_block and plan.columns):
        pytest.skip("needs the compiled column tiles")
    from daskmeans.kernels import _numba_loops as nb
    from daskmeans.kernels._llvm import column_tile_shape

    rng = np.random.default_rng(11)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        for n, d, T in ((1, 3, 1), (37, 5, 3), (1000, 33, 6), (2049, 8, 9), (300, 64, 4)):
            X = (rng.normal(size=(n, d)) * 4).astype(dtype)
            XT = kernels.seeding_operand(X, plan)
            assert XT is not None and XT.shape[0] == d and XT.shape[1] >= n
            np.testing.assert_array_equal(XT[:, :n], X.T)
            # the products alone, against float64 NumPy
            G = column_tile_shape()[1]
            Cp = np.zeros((T + (-T) % G, d), dtype=dtype)
            Cp[:T] = X[rng.choice(n, T)]
            P = np.empty((len(Cp), XT.shape[1]), dtype=dtype)
            nb.seeding_products(XT, Cp, P)
            want = Cp.astype(np.float64) @ X.T.astype(np.float64)
            scale = np.abs(Cp).sum(1)[:, None] * np.abs(X).max() + 1
            assert (np.abs(P[:, :n] - want) <= 4 * rtol * scale).all()
            x_sq = kernels.sq_norms(X).astype(np.float64)
            for w in (np.empty(0), rng.uniform(0, 2, n)):
                closest = rng.uniform(0, 200, n)
                closest[: n // 7] = np.inf
                picks = rng.choice(n, T).astype(np.intp)
                c1, c2 = closest.copy(), closest.copy()
                cum1, cum2 = np.empty(n), np.empty(n)
                b1, p1 = kernels.seeding_step(X, x_sq, picks, c1, w, cum1, XT)
                b2, p2 = kernels.seeding_step(X, x_sq, picks, c2, w, cum2)
                assert b1 == b2
                np.testing.assert_allclose(p1, p2, rtol=rtol)
                np.testing.assert_allclose(c1, c2, rtol=rtol, atol=rtol * 100)
                ones = np.ones(n) if len(w) == 0 else w
                if len(w) == 0:
                    np.testing.assert_array_equal(cum1, np.cumsum(c1 * ones))
                np.testing.assert_allclose(cum1, np.cumsum(c1 * ones), rtol=1e-14)


def test_seeding_operand_follows_the_plan():
    """The tiles' trials run only with the plan's column tiles and up to its
    sample size; otherwise the step keeps the BLAS product."""
    import pytest

    from daskmeans import kernels
    from daskmeans.kernels import KernelPlan, _plan

    if not _plan.numba_installed():
        pytest.skip("needs numba and SciPy")
    plan = KernelPlan.numba()
    if not (plan.whole_block and plan.columns):
        pytest.skip("needs the compiled column tiles")
    from dataclasses import replace

    X = np.ones((100, 4), dtype=np.float32)
    assert kernels.seeding_operand(X, plan) is not None
    assert kernels.seeding_operand(X, replace(plan, seeding_tile_bytes=X.nbytes - 1)) is None
    assert kernels.seeding_operand(X, replace(plan, columns=False)) is None
    assert kernels.seeding_operand(X, KernelPlan.numpy()) is None
    assert kernels.seeding_operand(np.asfortranarray(X), plan) is None
    assert _init._Trials(X, None, replace(plan, seeding_tile_bytes=0)).XT is None
    assert _init._Trials(X, None, plan).XT is not None
