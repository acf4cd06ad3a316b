"""Pruned exact Lloyd (Hamerly's bounds): same labels and centres as plain Lloyd."""

import dask
import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans
from daskmeans import kernels as K
from daskmeans.engine._lloyd import LloydState, lloyd, update_centers
from daskmeans.engine._pruned import (
    AUTO_MIN_K,
    AUTO_MIN_K_COLUMNS,
    MemoryStore,
    WorkerStore,
    ZarrStore,
    auto_min_k,
    pruned_lloyd,
    use_pruned,
)
from daskmeans.kernels import KernelPlan, _bounds, _plan
from daskmeans.testing import counting_dask

#: The plan of plain Lloyd's sweeps the block kernel is compared with.
PLAN = KernelPlan.numba() if _plan.numba_installed() else KernelPlan.numpy()


def _mixture(n, d, n_comp, seed, dtype=np.float32, spread=2.0):
    rng = np.random.default_rng(seed)
    comp = rng.normal(size=(n_comp, d)) * spread
    return (comp[rng.integers(0, n_comp, n)] + rng.normal(size=(n, d))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_block_kernel_matches_plain_sweep(dtype, weighted):
    X = _mixture(3000, 12, 40, 0, dtype)
    rng = np.random.default_rng(1)
    w = rng.random(len(X)) if weighted else None
    C = X[rng.choice(len(X), 150, replace=False)].copy()
    state = state_np = moved = None
    n_pruned = []
    for _ in range(10):
        ref = K.lloyd_partial(X, C, w, plan=PLAN)
        lab_ref, _ = K.nearest(X, C, plan=PLAN)
        out, state = _bounds.pruned_block(X, w, C, state, moved, plan=PLAN)
        out_np, state_np = _bounds.pruned_block_numpy(X, w, C, state_np, moved)
        np.testing.assert_array_equal(state[0], lab_ref[0])
        np.testing.assert_array_equal(state_np[0], lab_ref[0])
        np.testing.assert_array_equal(out["counts"], ref["counts"])
        if PLAN.compiled:
            # plain Lloyd's own accumulation loop, same row order: bitwise equal
            np.testing.assert_array_equal(out["sums"], ref["sums"])
        np.testing.assert_allclose(out_np["sums"], ref["sums"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out["inertia"], ref["inertia"], rtol=1e-5)
        np.testing.assert_allclose(out_np["inertia"], ref["inertia"], rtol=1e-5)
        assert out["n_pruned"] == out_np["n_pruned"]
        # the bounds are lower bounds: no other centre is nearer than them
        D = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
        D[np.arange(len(X)), state[0]] = np.inf
        assert (np.sqrt(D.min(axis=1)) >= state[1]).all()
        n_pruned.append(out["n_pruned"])
        new, _, _ = update_centers(C, ref["sums"], ref["counts"], None, 0, 0)
        moved = _bounds.drift(C, new)
        C = new
    assert n_pruned[0] == 0 and max(n_pruned) > len(X) // 2


def _column_plan():
    if not _plan.numba_installed():
        pytest.skip("numba is an optional extra")
    from daskmeans.kernels import _numba_loops

    if not _numba_loops.COLUMN_TILES:
        pytest.skip("this LLVM builds no column tiles")
    return KernelPlan.numba(columns=True, column_min_k=1, column_max_features_f64=64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("far", [False, True])
def test_block_kernel_column_tiles_match_plain_and_numpy(dtype, far):
    # pruned rows recomputed by the column tiles with the second-best score; rows far
    # from the origin (far=True) sit within the rounding margin of ties
    from dataclasses import replace

    plan = replace(_column_plan(), step=256)
    X = _mixture(2000, 10, 30, 21, dtype) + (100.0 if far else 0.0)
    rng = np.random.default_rng(22)
    C = X[rng.choice(len(X), 120, replace=False)].copy()
    assert plan.uses_columns(X.dtype, 120, 1, 10)
    state = state_np = moved = None
    n_pruned = []
    for _ in range(8):
        ref = K.lloyd_partial(X, C, None, plan=plan)
        lab_ref, _ = K.nearest(X, C, plan=plan)
        out, state = _bounds.pruned_block(X, None, C, state, moved, plan=plan)
        out_np, state_np = _bounds.pruned_block_numpy(X, None, C, state_np, moved)
        np.testing.assert_array_equal(state[0], lab_ref[0])
        np.testing.assert_array_equal(out["counts"], ref["counts"])
        np.testing.assert_array_equal(out["sums"], ref["sums"])  # same loop, same order
        if not far:
            np.testing.assert_array_equal(state_np[0], lab_ref[0])
            np.testing.assert_array_equal(out_np["counts"], ref["counts"])
        D = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
        D[np.arange(len(X)), state[0]] = np.inf
        assert (np.sqrt(D.min(axis=1)) >= state[1]).all()
        n_pruned.append(out["n_pruned"])
        new, _, _ = update_centers(C, ref["sums"], ref["counts"], None, 0, 0)
        moved = _bounds.drift(C, new)
        C = new
    assert n_pruned[0] == 0 and max(n_pruned) > 0


def test_block_kernel_exact_ties():
    # integer grid, duplicate centres: exact ties everywhere, decided as plain Lloyd does
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, size=(500, 3)).astype(np.float32)
    C = np.concatenate([X[:6], X[:6]])
    state = moved = None
    for _ in range(3):
        lab_ref, _ = K.nearest(X, C)
        out, state = _bounds.pruned_block(X, None, C, state, moved)
        np.testing.assert_array_equal(state[0], lab_ref[0])
        moved = _bounds.drift(C, C)


@pytest.mark.parametrize(("rows", "store", "weighted", "kernels"), [
    (400, "memory", False, "numba"), (400, "memory", True, "numpy"),
    ((700, 300, 1000, 1000), "memory", True, "numba"),
    ((700, 300, 1000, 1000), "zarr", False, "auto"),
])
def test_driver_equals_plain_lloyd(rows, store, weighted, kernels, monkeypatch):
    if kernels == "numba" and not _plan.numba_installed():
        pytest.skip("numba is an optional extra")
    monkeypatch.setenv(K.KERNELS_ENV, kernels)
    X = _mixture(3000, 8, 30, 3)
    rng = np.random.default_rng(4)
    w = rng.random(len(X)) if weighted else None
    C0 = X[rng.choice(len(X), 200, replace=False)].copy()
    Xd, counter = counting_dask(X, 400)
    Xd = Xd.rechunk((rows, 8))
    wd = None if w is None else da.from_array(w, chunks=(Xd.chunks[0],))
    plain = lloyd(Xd, wd, LloydState.start([C0.copy()]), max_iter=40, tol=1e-4)
    counter.reads = 0
    pruned = pruned_lloyd(Xd, wd, LloydState.start([C0.copy()]), max_iter=40, tol=1e-4,
                          store=store)
    np.testing.assert_array_equal(pruned.centers[0], plain.centers[0])
    assert pruned.n_iter[0] == plain.n_iter[0] and pruned.strict[0] == plain.strict[0]
    assert pruned.n_passes == plain.n_passes
    np.testing.assert_allclose(pruned.history[0], plain.history[0], rtol=1e-6)
    np.testing.assert_array_equal(pruned.sizes[0], plain.sizes[0])
    # one read of every stored block per iteration
    assert counter.reads == pruned.n_passes * 8


def test_driver_relocates_empty_clusters_like_plain():
    X = _mixture(2000, 4, 10, 5, np.float64)
    C0 = np.concatenate([X[:40], X[:10]])  # duplicate centres: clusters come out empty
    Xd = da.from_array(X, chunks=500)
    plain = lloyd(Xd, None, LloydState.start([C0.copy()]), max_iter=30, tol=0)
    pruned = pruned_lloyd(Xd, None, LloydState.start([C0.copy()]), max_iter=30, tol=0)
    np.testing.assert_array_equal(pruned.centers[0], plain.centers[0])
    assert pruned.n_iter[0] == plain.n_iter[0]


def test_stores_keep_bounds_by_pass(tmp_path):
    labels = np.arange(5, dtype=np.int32)
    lower = np.linspace(0, 1, 5).astype(np.float32)
    for store in (MemoryStore(), WorkerStore(),
                  ZarrStore(str(tmp_path / "b"), n_blocks=3, max_rows=6)):
        assert store.get(1, 0) is None
        store.put(1, 4, (labels, lower))
        got = store.get(1, 4)
        np.testing.assert_array_equal(got[0], labels)
        np.testing.assert_array_equal(got[1], lower)
        assert store.get(1, 3) is None and store.get(0, 4) is None  # stale or never written
        store.close()
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("algorithm", ["pruned", "elkan", "auto"])
def test_kmeans_algorithm_same_result(algorithm):
    from sklearn.cluster import KMeans as SKKMeans

    X = _mixture(4000, 6, 50, 6)
    C0 = X[np.random.default_rng(7).choice(len(X), 300, replace=False)]
    events = []
    km = KMeans(300, init=C0, algorithm=algorithm, max_iter=30, callback=events.append).fit(
        da.from_array(X, chunks=1000))
    ref = KMeans(300, init=C0, algorithm="lloyd", max_iter=30).fit(da.from_array(X, chunks=1000))
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(np.asarray(km.labels_), np.asarray(ref.labels_))
    assert km.n_iter_ == ref.n_iter_
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)
    pruned = use_pruned(algorithm, 300, 1)  # "auto" prunes from AUTO_MIN_K centres only
    lloyd_events = [e for e in events if e.get("phase") == "lloyd"]
    assert lloyd_events and all(("pruned" in e) == pruned for e in lloyd_events)
    sk = SKKMeans(300, init=C0, n_init=1, max_iter=30, algorithm="lloyd").fit(X)
    assert (np.asarray(km.labels_) == sk.labels_).mean() > 0.99
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=1e-3)


def test_auto_rule_and_bad_algorithm(monkeypatch):
    low = auto_min_k()
    assert low in (AUTO_MIN_K, AUTO_MIN_K_COLUMNS)
    assert use_pruned("auto", low, 1) and not use_pruned("auto", low - 1, 1)
    assert not use_pruned("auto", 10 * AUTO_MIN_K, 3) and use_pruned("pruned", 2, 3)
    monkeypatch.setenv(K.KERNELS_ENV, "numpy")  # no column tiles: the higher threshold
    assert auto_min_k() == AUTO_MIN_K
    if _plan.numba_installed() and _plan.KernelPlan.numba(columns=True).columns:
        monkeypatch.setenv(K.KERNELS_ENV, "numba,columns=true")
        assert auto_min_k() == AUTO_MIN_K_COLUMNS
        assert auto_min_k(np.float64, 10_000) == AUTO_MIN_K  # float64, wide: BLAS products
    assert not use_pruned("lloyd", 10**6, 1)
    with pytest.raises(ValueError, match="algorithm must be one of.*'hamerly'"):
        KMeans(3, algorithm="hamerly").fit(np.zeros((10, 2)))


def test_several_initialisations_run_one_after_the_other():
    X = _mixture(1500, 5, 20, 8)
    rng = np.random.default_rng(9)
    starts = [X[rng.choice(len(X), 30, replace=False)].copy() for _ in range(3)]
    Xd = da.from_array(X, chunks=500)
    with dask.config.set(scheduler="sync"):
        plain = lloyd(Xd, None, LloydState.start([c.copy() for c in starts]), max_iter=20,
                      tol=1e-4)
        pruned = pruned_lloyd(Xd, None, LloydState.start([c.copy() for c in starts]),
                              max_iter=20, tol=1e-4)
    for a, b in zip(pruned.centers, plain.centers, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pruned.n_iter, plain.n_iter)


@pytest.mark.parametrize("prep", [
    {"metric": "cosine"}, {"standardize": True}, {"nan_policy": "omit"},
    {"metric": "cosine", "standardize": True, "nan_policy": "omit"},
])
def test_kmeans_pruned_with_row_preprocessing(prep):
    rng = np.random.default_rng(14)
    X = rng.normal(size=(2000, 5)) + 3
    if prep.get("nan_policy") == "omit":
        X[::50, 2] = np.nan
    C0 = X[1:300][~np.isnan(X[1:300]).any(axis=1)][:256]
    Xd = da.from_array(X, chunks=700)
    a = KMeans(256, init=C0, algorithm="lloyd", max_iter=10, **prep).fit(Xd)
    b = KMeans(256, init=C0, algorithm="pruned", max_iter=10, **prep).fit(Xd)
    np.testing.assert_array_equal(b.cluster_centers_, a.cluster_centers_)
    np.testing.assert_array_equal(np.asarray(b.labels_), np.asarray(a.labels_))
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernels", ["numpy", "numba", "numba,step=256,fused=false,columns=false"])
def test_near_ties_same_labels_as_plain_lloyd(dtype, kernels, monkeypatch):
    # rows far from the origin: ||c||^2 - 2 x.c loses most of its digits in float32, and
    # many rows sit within the rounding margin of a tie; they must still go where plain
    # Lloyd's products (of whole sub-blocks of rows) send them
    if kernels.startswith("numba") and not _plan.numba_installed():
        pytest.skip("numba is an optional extra")
    monkeypatch.setenv(K.KERNELS_ENV, kernels)
    rng = np.random.default_rng(15)
    X = (100.0 + rng.normal(size=(3000, 16))).astype(dtype)
    C0 = X[rng.choice(len(X), 80, replace=False)]
    Xd = da.from_array(X, chunks=1500)
    a = KMeans(80, init=C0, algorithm="lloyd", max_iter=6, tol=0).fit(Xd)
    b = KMeans(80, init=C0, algorithm="pruned", max_iter=6, tol=0).fit(Xd)
    np.testing.assert_array_equal(np.asarray(b.labels_), np.asarray(a.labels_))
    np.testing.assert_array_equal(b.cluster_centers_, a.cluster_centers_)
    assert b.n_iter_ == a.n_iter_


def test_plain_labels_recompute_whole_sub_blocks():
    rng = np.random.default_rng(16)
    X = (100.0 + rng.normal(size=(2000, 8))).astype(np.float32)
    C = X[:40].copy()
    plan = KernelPlan.numpy()
    ref, _ = K.nearest(X, C, plan=plan)
    rows = np.sort(rng.choice(len(X), 25, replace=False))
    np.testing.assert_array_equal(_bounds.plain_labels(X, rows, C, plan), ref[0][rows])


def test_auto_rule_sees_the_data(monkeypatch):
    """The estimator asks the "auto" rule with the data's dtype and width."""
    import daskmeans.estimator as est

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return use_pruned(*args, **kwargs)

    monkeypatch.setattr(est, "use_pruned", spy)
    X = np.random.default_rng(0).normal(size=(400, 5))
    KMeans(3, algorithm="auto", max_iter=2, n_init=1).fit(da.from_array(X, chunks=100))
    assert seen["dtype"] == np.float64 and seen["n_features"] == 5
