"""MiniBatchKMeans: update rule vs scikit-learn and a NumPy reference, the fold on Dask."""

import json

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.core import get_dependencies
from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

import daskmeans
from daskmeans import KMeans, MiniBatchKMeans
from daskmeans._rng import as_seed_sequence, block_rng
from daskmeans._validation import default_row_chunks
from daskmeans.engine import _fold as mb
from daskmeans.engine import _fold_pass
from daskmeans.testing import counting_dask


def reference_step(X, w, C, counts):
    """The documented update rule, written out row by row (no reassignment)."""
    C = C.astype(np.float64).copy()
    counts = counts.astype(np.float64).copy()
    w = np.ones(len(X)) if w is None else w
    d2 = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    labels = d2.argmin(1)
    inertia = float((d2[np.arange(len(X)), labels] * w).sum())
    sums = np.zeros_like(C)
    got = np.zeros(len(C))
    for i, lab in enumerate(labels):
        sums[lab] += w[i] * X[i]
        got[lab] += w[i]
    for j in range(len(C)):
        if got[j] > 0:
            C[j] = (C[j] * counts[j] + sums[j]) / (counts[j] + got[j])
    return C, counts + got, inertia


def test_step_matches_numpy_reference_with_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    w = rng.uniform(0, 2, size=300)
    C = X[:5].copy()
    counts = np.array([0.0, 3.0, 10.0, 0.5, 7.0])
    state = mb.FoldState(C.copy(), counts.copy())
    params = mb.FoldParams(seq=np.random.SeedSequence(0), batch_size=None, reassignment_ratio=0.0)
    inertia, _ = mb.minibatch_step(X, w, state, params)
    C_ref, counts_ref, inertia_ref = reference_step(X, w, C, counts)
    np.testing.assert_allclose(state.centers, C_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.counts, counts_ref, rtol=1e-12)
    np.testing.assert_allclose(inertia, inertia_ref, rtol=1e-12)
    assert state.n_steps == 1


def test_reassignment_moves_light_centres_to_batch_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    C = np.array([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0]])  # two far centres get nothing
    counts = np.array([1000.0, 1.0, 2.0])
    state = mb.FoldState(C.copy(), counts.copy(), n_since_reassign=29)  # 29 + 50 >= 10 k
    params = mb.FoldParams(seq=np.random.SeedSequence(3), batch_size=None,
                           reassignment_ratio=0.01)
    mb.minibatch_step(X, None, state, params)
    assert state.n_since_reassign == 0
    # centre 0 follows the update rule; 1 and 2 sit on distinct rows of the batch
    C_ref, _, _ = reference_step(X, None, C, counts)
    np.testing.assert_allclose(state.centers[0], C_ref[0], rtol=1e-12)
    for j in (1, 2):
        assert np.any(np.all(X == state.centers[j], axis=1))
    assert not np.array_equal(state.centers[1], state.centers[2])
    np.testing.assert_array_equal(state.counts, [1050.0, 1050.0, 1050.0])
    # below the check interval nothing is reassigned
    state = mb.FoldState(C.copy(), counts.copy(), n_since_reassign=0)
    mb.minibatch_step(X[:20], None, state, params)
    np.testing.assert_array_equal(state.centers[1:], C[1:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_partial_fit_matches_sklearn_from_same_centres(big_blobs, dtype):
    X = big_blobs[:6000].astype(dtype)
    C0 = X[:12].copy()
    ours = MiniBatchKMeans(12, init=C0, batch_size=500, reassignment_ratio=0.0)
    ref = SKMiniBatchKMeans(12, init=C0, n_init=1, batch_size=500, reassignment_ratio=0.0)
    for start in range(0, 6000, 500):
        ours.partial_fit(X[start : start + 500])
        ref.partial_fit(X[start : start + 500])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert ours.cluster_centers_.dtype == dtype
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, **tol)
    np.testing.assert_allclose(ours.counts_, ref._counts, rtol=1e-6)
    assert ours.n_steps_ == ref.n_steps_ == 12
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X.astype(dtype)))


@pytest.mark.parametrize("rows", [250, 700, 2500, 6000])  # 250: Zarr chunks open grouped
def test_partial_fit_dask_folds_block_by_block(big_blobs, rows, tmp_path):
    X = big_blobs[:6000]
    C0 = X[-12:].copy()
    seq_model = MiniBatchKMeans(12, init=C0, random_state=3)
    for start in range(0, 6000, rows):
        seq_model.partial_fit(X[start : start + rows])
    lazy = MiniBatchKMeans(12, init=C0, random_state=3)
    lazy.partial_fit(da.from_array(X, chunks=(rows, 4)))
    np.testing.assert_array_equal(lazy.cluster_centers_, seq_model.cluster_centers_)
    np.testing.assert_array_equal(lazy.counts_, seq_model.counts_)
    assert lazy.n_steps_ == seq_model.n_steps_ == -(-6000 // rows)
    path = tmp_path / "X.zarr"
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(rows, 4), dtype=X.dtype)
    z[:] = X
    from_zarr = MiniBatchKMeans(12, init=C0, random_state=3).partial_fit(str(path))
    np.testing.assert_array_equal(from_zarr.cluster_centers_, seq_model.cluster_centers_)


def test_partial_fit_weights_equal_repeated_rows(big_blobs):
    X = big_blobs[:2000]
    w = np.random.default_rng(0).integers(0, 3, size=2000)
    C0 = X[:12].copy()
    a = MiniBatchKMeans(12, init=C0, reassignment_ratio=0.0).partial_fit(X, sample_weight=w)
    b = MiniBatchKMeans(12, init=C0, reassignment_ratio=0.0).partial_fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(a.counts_, b.counts_)


def test_fit_numpy_equals_dask_with_same_chunks_and_any_scheduler(big_blobs):
    X = big_blobs
    params = dict(n_clusters=12, batch_size=256, random_state=11, max_iter=2,
                  max_no_improvement=None)
    from_numpy = MiniBatchKMeans(**params).fit(X)
    Xd = da.from_array(X, chunks=(5000, 4))
    lazy = MiniBatchKMeans(**params).fit(Xd)
    with dask.config.set(scheduler="sync"):
        sync = MiniBatchKMeans(**params).fit(Xd)
    np.testing.assert_array_equal(lazy.cluster_centers_, sync.cluster_centers_)
    np.testing.assert_array_equal(lazy.counts_, sync.counts_)
    assert lazy.n_steps_ == sync.n_steps_ == 2 * (4 * 20 + 16)  # 4 blocks of 5000 rows, 1 of 4000
    # NumPy input is chunked by the library's default rule: the same fold as Dask input
    # with those chunks
    assert from_numpy.n_steps_ > 0 and np.isfinite(from_numpy.inertia_)
    rows = default_row_chunks(X.shape[0], X.shape[1], X.itemsize)
    np.testing.assert_array_equal(
        MiniBatchKMeans(**params).fit(da.from_array(X, chunks=(rows, 4))).cluster_centers_,
        from_numpy.cluster_centers_,
    )


@pytest.mark.parametrize("rows", [400, 1000, 3000])
def test_fit_quality_close_to_kmeans(blobs, rows):
    X, _, _ = blobs
    X = da.from_array(X, chunks=(rows, 3))
    exact = KMeans(5, random_state=0).fit(X)
    model = MiniBatchKMeans(5, batch_size=100, random_state=0).fit(X)
    assert model.inertia_ <= 1.01 * exact.inertia_
    # inertia_ is the exact inertia of the final centres, labels_ are lazy
    assert model.inertia_ == pytest.approx(-model.score(X), rel=1e-10)
    assert isinstance(model.labels_, da.Array)
    np.testing.assert_array_equal(model.labels_.compute(), model.predict(blobs[0]))
    assert model.cluster_sizes_.sum() == pytest.approx(3000)
    assert 1 <= model.n_iter_ <= 100 and model.n_passes_ == model.n_iter_ + 1


def test_block_readers_read_every_block_from_one_optimised_graph(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 3))
    zarr.create_array(store=str(tmp_path / "x.zarr"), data=X, chunks=(90, 3))
    w = rng.uniform(0.5, 2, size=1000)
    calls = []
    real = da.Array.__dask_optimize__

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(da.Array, "__dask_optimize__", staticmethod(counted))
    sources = {
        "zarr": daskmeans.open_zarr(str(tmp_path / "x.zarr")),
        # blocks built from pieces of other blocks (shared inputs) and a derived array
        "rechunked": (da.from_array(X, chunks=(70, 3)) * 2.0).rechunk((110, 3)) / 2.0,
    }
    for name, Xd in sources.items():
        wd = da.from_array(w, chunks=(Xd.chunks[0],))
        calls.clear()
        readers = mb.block_readers(Xd, wd)
        assert len(calls) == 2, name  # once for X, once for the weights: not per block
        assert len(readers) == Xd.numblocks[0]
        starts = np.cumsum((0,) + Xd.chunks[0])
        for b, reader in enumerate(readers):
            xb, wb = reader()
            np.testing.assert_allclose(xb, X[starts[b]:starts[b + 1]], rtol=1e-15)
            np.testing.assert_array_equal(wb, w[starts[b]:starts[b + 1]])


def test_numpy_fit_reads_blocks_without_slicing_the_array_per_block(big_blobs, monkeypatch):
    """NumPy input runs the fold in a loop: its blocks come from the readers built once."""
    sliced = []
    real = da.Array.blocks

    def counted(self):
        sliced.append(1)
        return real.fget(self)

    monkeypatch.setattr(da.Array, "blocks", property(counted))
    model = MiniBatchKMeans(12, batch_size=1000, max_iter=3, max_no_improvement=None,
                            random_state=0).fit(big_blobs)
    assert model.n_iter_ == 3 and sliced == []
    monkeypatch.undo()
    ref = MiniBatchKMeans(12, batch_size=1000, max_iter=3, max_no_improvement=None,
                          random_state=0)
    rows = default_row_chunks(*big_blobs.shape, big_blobs.itemsize)  # the NumPy path's blocks
    ref.fit(da.from_array(big_blobs, chunks=(rows, 4)))
    np.testing.assert_array_equal(model.cluster_centers_, ref.cluster_centers_)


def test_reads_one_block_per_fold_task_and_one_final_pass(big_blobs):
    Xd, counter = counting_dask(big_blobs, 3000)
    model = MiniBatchKMeans(12, batch_size=1000, max_iter=2, max_no_improvement=None,
                            random_state=0).fit(Xd)
    assert model.n_iter_ == 2
    assert counter.reads == 8 * 3  # two fold passes (init sample included) + the inertia pass


@pytest.mark.parametrize("threads", [True, False])
def test_reads_wait_for_the_fold(big_blobs, monkeypatch, threads):
    """Block j is read only after the fold of block j - LOOKAHEAD is done, on local
    threads without the scheduler (``THREADS``) and through it."""
    monkeypatch.setattr(_fold_pass, "THREADS", threads)
    log = []
    real_fold = mb.fold_block

    def logged_fold(state, block, params):
        out = real_fold(state, block, params)
        log.append("fold")
        return out

    def load(block):
        log.append("read")
        return block

    monkeypatch.setattr(mb, "fold_block", logged_fold)
    Xd = da.from_array(big_blobs, chunks=(1000, 4)).map_blocks(
        load, dtype=np.float64, meta=np.empty((0, 4)))
    log.clear()
    MiniBatchKMeans(12, batch_size=500, max_iter=1, random_state=0).fit(Xd)
    folds_before = []
    done = 0
    for event in log:
        if event == "fold":
            done += 1
        else:
            folds_before.append(done)
    n_blocks = 24
    assert len(folds_before) >= n_blocks
    first = folds_before[:n_blocks]  # the fold pass (the inertia pass follows)
    n_init = mb._leading_blocks([1000] * n_blocks, list(range(n_blocks)), 3 * 500 * 2)
    assert mb.first_gated_read(n_init) == n_init + mb.LOOKAHEAD
    for j, done_then in enumerate(sorted(first)):
        if j >= mb.first_gated_read(n_init):
            assert done_then >= mb.read_gate(j, n_init) + 1
    # the graph: fold j depends on fold j - 1 and read j; read j on fold j - LOOKAHEAD
    readers = mb.block_readers(Xd, None)
    assert len(readers) == n_blocks
    params = mb.FoldParams(seq=np.random.SeedSequence(0), batch_size=500, reassignment_ratio=0.01)
    start = mb.FoldState(big_blobs[:12].copy(), np.zeros(12))
    graph = dict(mb.fold_graph(readers, range(n_blocks), start, params).__dask_graph__())
    deps = {k: get_dependencies(graph, k) for k in graph if isinstance(k, tuple)}
    fold = next(k[0] for k in deps if "fold" in k[0])
    read = next(k[0] for k in deps if "read" in k[0])
    assert deps[(fold, 5)] == {(fold, 4), (read, 5)}
    assert deps[(read, 5)] == {(fold, 5 - mb.LOOKAHEAD)}
    assert deps[(read, 0)] == set()
    # with the initialisation in the graph, the blocks of the initial sample are read at once
    # (the spec MiniBatchKMeans(12, batch_size=500) builds: init_size 3 * 500, one candidate)
    spec = dict(init="k-means++", n_clusters=12, n_init=1, init_size=1500,
                seq=np.random.SeedSequence(0), tol=0.0, dtype=Xd.dtype, init_lloyd_iter=0,
                pool_size=1500 * 2, chunks=[int(c) for c in Xd.chunks[0]])
    graph = dict(mb.fold_graph(readers, range(n_blocks), None, params,
                               init_spec=spec).__dask_graph__())
    deps = {k: get_dependencies(graph, k) for k in graph if isinstance(k, tuple)}
    fold = next(k[0] for k in deps if "fold" in k[0])
    read = next(k[0] for k in deps if "read" in k[0])
    # and so are the LOOKAHEAD blocks after them (read while the initialisation runs)
    for j in range(n_blocks):
        gated = j >= n_init + mb.LOOKAHEAD
        assert deps[(read, j)] == ({(fold, mb.read_gate(j, n_init))} if gated else set())
    # one task per initial candidate, all on the sample; the start state chooses among them
    spec = dict(spec, n_init=3)
    graph = dict(mb.fold_graph(readers, range(n_blocks), None, params,
                               init_spec=spec).__dask_graph__())
    deps = {k: get_dependencies(graph, k) for k in graph if isinstance(k, tuple)}
    cands = sorted(k for k in deps if "init-candidate" in k[0])
    assert [k[1] for k in cands] == [0, 1, 2]
    pools = {k for k in deps if "init-sample" in k[0]}
    assert len(pools) == n_init and all(deps[c] == pools for c in cands)
    start_key = next(k for k in graph if isinstance(k, str) and "-start-" in k)
    assert get_dependencies(graph, start_key) == set(cands) | pools
    state = dask.get(graph, start_key)
    parts = [dask.get(graph, p) for p in sorted(pools)]
    np.testing.assert_array_equal(state.centers, mb.init_state(parts, spec).centers)


def test_early_stopping_and_max_iter(big_blobs):
    Xd = da.from_array(big_blobs, chunks=(6000, 4))
    stops = MiniBatchKMeans(12, batch_size=256, max_iter=50, random_state=0).fit(Xd)
    assert stops.n_iter_ < 50
    runs = MiniBatchKMeans(12, batch_size=4096, max_iter=3, max_no_improvement=None,
                           random_state=0).fit(Xd)
    assert runs.n_iter_ == 3
    assert runs.n_steps_ == 3 * 4 * 2  # 4 blocks of 6000 rows, 2 batches each, 3 passes
    assert len(runs.inertia_history_) == 3


def test_save_load_update_equals_update_without_round_trip(big_blobs, tmp_path):
    X = big_blobs
    model = MiniBatchKMeans(12, batch_size=300, max_iter=1, random_state=None,
                            reassignment_ratio=0.2)
    model.fit(X[:12_000])
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "daskmeans.MiniBatchKMeans" and len(doc["fitted"]["counts_"]) == 12
    loaded = MiniBatchKMeans.load(path)
    np.testing.assert_array_equal(loaded.counts_, model.counts_)
    today = da.from_array(X[12_000:], chunks=(500, 4))  # 24 steps, reassignment checks fire
    model.partial_fit(today)
    loaded.partial_fit(today)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.counts_, model.counts_)
    assert loaded.n_steps_ == model.n_steps_
    # and again through a second round trip, with a NumPy batch
    loaded.save(path)
    again = MiniBatchKMeans.load(path).partial_fit(X[:100])
    model.partial_fit(X[:100])
    np.testing.assert_array_equal(again.cluster_centers_, model.cluster_centers_)
    # compute_labels (default): labels and inertia of the batch under the updated centres
    np.testing.assert_array_equal(model.labels_, model.predict(X[:100]))
    assert model.inertia_ == pytest.approx(-model.score(X[:100]), rel=1e-10)
    assert not hasattr(model, "cluster_sizes_") and not hasattr(model, "inertia_history_")
    quiet = MiniBatchKMeans.load(path).set_params(compute_labels=False).partial_fit(X[:100])
    assert not hasattr(quiet, "labels_") and not hasattr(quiet, "inertia_")


def test_float32_input_and_predict_transform_score(big_blobs):
    X = big_blobs.astype(np.float32)
    model = MiniBatchKMeans(12, random_state=0).fit(X)
    assert model.cluster_centers_.dtype == np.float32
    dist = model.transform(X)
    np.testing.assert_array_equal(dist.argmin(1), model.predict(X))
    np.testing.assert_allclose(-model.score(X), model.inertia_, rtol=1e-6)
    np.testing.assert_array_equal(model.labels_, model.predict(X))


def test_parameter_validation():
    X = np.zeros((20, 2))
    with pytest.raises(ValueError, match="batch_size"):
        MiniBatchKMeans(2, batch_size=0).fit(X)
    with pytest.raises(ValueError, match="reassignment_ratio"):
        MiniBatchKMeans(2, reassignment_ratio=-1).fit(X)
    with pytest.raises(ValueError, match="init must be one of"):
        MiniBatchKMeans(2, init="k-means||").fit(X)
    with pytest.raises(ValueError, match="n_clusters=30"):
        MiniBatchKMeans(30).fit(X)
    model = MiniBatchKMeans(2, random_state=0).partial_fit(np.random.default_rng(0).normal(
        size=(20, 2)))
    with pytest.raises(ValueError, match="3 features"):
        model.partial_fit(np.zeros((5, 3)))


def test_overlapping_clusters_quality(big_blobs):
    """More passes lower the inertia; overlapping clusters end within a few % of exact k-means."""
    exact = KMeans(12, random_state=0, n_init=3).fit(big_blobs).inertia_
    runs = {}
    for passes in (1, 6):
        runs[passes] = [
            MiniBatchKMeans(12, batch_size=2048, max_iter=passes, max_no_improvement=None,
                            random_state=s).fit(big_blobs).inertia_
            for s in range(3)
        ]
    assert all(b < a for a, b in zip(runs[1], runs[6], strict=True))
    assert np.mean(runs[6]) <= 1.06 * exact
    default = [MiniBatchKMeans(12, random_state=s).fit(big_blobs).inertia_ for s in range(3)]
    assert np.mean(default) <= 1.10 * exact


@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_n_init_keeps_the_best_candidate_on_the_validation_rows(big_blobs, init):
    pool = big_blobs[:3000]
    parts = [(pool, np.ones(3000))]
    wins = []
    for seed in range(5):
        seq = np.random.SeedSequence(seed)
        spec = dict(init=init, n_clusters=12, n_init=1, init_size=1000, seq=seq, tol=0.0,
                    dtype=np.float64)
        one = mb.init_state(parts, spec).centers  # candidate 0
        best = mb.init_state(parts, dict(spec, n_init=6)).centers
        # the validation rows drawn by init_state
        rows = pool[np.sort(mb.block_rng(seq, mb._VALIDATION).choice(3000, 1000, replace=False))]

        def inertia(C, rows=rows):
            return ((rows[:, None] - C[None]) ** 2).sum(-1).min(1).sum()

        assert inertia(best) <= inertia(one)
        wins.append(inertia(best) < inertia(one))
    assert any(wins)
    model = MiniBatchKMeans(12, init=init, n_init=3, random_state=0).fit(big_blobs)
    assert model.cluster_centers_.shape == (12, 4) and np.isfinite(model.inertia_)


def test_distributed_client_gives_the_same_result(big_blobs):
    distributed = pytest.importorskip("distributed")
    Xd = da.from_array(big_blobs, chunks=(4000, 4))
    params = dict(n_clusters=12, batch_size=512, max_iter=2, random_state=5)
    local = MiniBatchKMeans(**params).fit(Xd)
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None):
        remote = MiniBatchKMeans(**params).fit(Xd)
    np.testing.assert_array_equal(remote.cluster_centers_, local.cluster_centers_)
    assert remote.inertia_ == pytest.approx(local.inertia_, rel=1e-12)


def _run_cli(*argv):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "daskmeans", *argv], capture_output=True,
                          text=True, timeout=120)


def test_cli_fit_minibatch_then_update(big_blobs, tmp_path):
    X = big_blobs.astype(np.float32)
    # day 2 in 24 chunks, which open_zarr would group by 3: update steps once per chunk
    for name, part, rows in (("day1.zarr", X[:12_000], 3000), ("day2.zarr", X[12_000:], 500)):
        z = zarr.create_array(store=str(tmp_path / name), shape=part.shape, chunks=(rows, 4),
                              dtype=part.dtype)
        z[:] = part
    fit = _run_cli("fit", str(tmp_path / "day1.zarr"), "--k", "12", "--algorithm", "minibatch",
                   "--batch-size", "500", "--seed", "3", "--tol", "0", "--max-iter", "2",
                   "--out", str(tmp_path / "m1"), "--json", "--quiet")
    assert fit.returncode == 0, fit.stderr
    report = json.loads(fit.stdout)
    assert report["algorithm"] == "minibatch" and report["n_passes"] == report["n_iter"] + 1
    model = MiniBatchKMeans.load(tmp_path / "m1" / "model.json")
    labels = zarr.open_array(str(tmp_path / "m1" / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(labels, model.predict(X[:12_000]))
    assert report["inertia"] == pytest.approx(-model.score(X[:12_000]), rel=1e-6)

    upd = _run_cli("update", str(tmp_path / "m1" / "model.json"), str(tmp_path / "day2.zarr"),
                   "--out", str(tmp_path / "m2"), "--json", "--quiet")
    assert upd.returncode == 0, upd.stderr
    updated = MiniBatchKMeans.load(tmp_path / "m2" / "model.json")
    model.partial_fit(da.from_array(X[12_000:], chunks=(500, 4)))
    np.testing.assert_array_equal(updated.cluster_centers_, model.cluster_centers_)
    assert json.loads(upd.stdout)["n_steps"] == model.n_steps_

    bad = _run_cli("update", str(tmp_path / "m1" / "report.json"), str(tmp_path / "day2.zarr"),
                   "--out", str(tmp_path / "m3"))
    assert bad.returncode == 2 and "not a daskmeans mini-batch model" in bad.stderr
    assert not (tmp_path / "m3").exists()


def test_nan_policy_omit_drops_rows_block_by_block(big_blobs):
    X = big_blobs[:3000].copy()
    C0 = X[:12].copy()
    bad = X.copy()
    bad[[5, 700, 2999], 1] = np.nan
    lazy = MiniBatchKMeans(12, init=C0, random_state=0, nan_policy="omit")
    lazy.partial_fit(da.from_array(bad, chunks=(1000, X.shape[1])))
    ref = MiniBatchKMeans(12, init=C0, random_state=0)
    for start in range(0, 3000, 1000):
        blk = bad[start : start + 1000]
        ref.partial_fit(blk[~np.isnan(blk).any(axis=1)])
    np.testing.assert_array_equal(lazy.cluster_centers_, ref.cluster_centers_)
    labels = lazy.predict(bad)
    assert (labels[[5, 700, 2999]] == -1).all() and (labels >= 0).sum() == 2997
    with pytest.raises(ValueError, match="NaN"):
        MiniBatchKMeans(12, init=C0).fit(bad)
    fitted = MiniBatchKMeans(12, random_state=0, nan_policy="omit", max_iter=2).fit(
        da.from_array(bad, chunks=(1000, X.shape[1]))
    )
    assert fitted.n_omitted_ == 3
    assert np.isfinite(fitted.cluster_centers_).all() and np.isfinite(fitted.inertia_)
    with pytest.raises(ValueError, match="nan_policy"):
        MiniBatchKMeans(12, nan_policy="drop").fit(X)


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return max(info) if info else None


def test_fold_steps_run_with_one_blas_thread_under_threads(big_blobs, monkeypatch):
    """The fold's steps share the cores with the reads: BLAS is limited, then restored."""
    before = _blas_threads()
    if before is None or before < 2:
        pytest.skip("needs a BLAS with at least 2 threads")
    seen = []
    real_fold = mb.fold_block

    def fold(state, block, params):
        seen.append(_blas_threads())
        return real_fold(state, block, params)

    monkeypatch.setattr(mb, "fold_block", fold)
    Xd = da.from_array(big_blobs, chunks=(4000, 4))
    with dask.config.set(scheduler="threads", num_workers=2):
        MiniBatchKMeans(12, batch_size=1000, max_iter=1, random_state=0).fit(Xd)
    assert seen and set(seen) == {1}
    assert _blas_threads() == before
    seen.clear()
    with dask.config.set(scheduler="threads", num_workers=1):  # BLAS is the only parallelism
        MiniBatchKMeans(12, batch_size=1000, max_iter=1, random_state=0).fit(Xd)
    assert seen and set(seen) == {before}


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("where", [0, 9_500, 23_999])
def test_non_finite_rows_of_any_dask_block_are_rejected(big_blobs, where, bad):
    """Rows are checked by their fold step (init sample blocks and later ones)."""
    X = big_blobs.copy()
    X[where, 2] = bad
    Xd = da.from_array(X, chunks=(1000, 4))
    with pytest.raises(ValueError, match="NaN or infinity"):
        MiniBatchKMeans(12, batch_size=500, max_iter=1, random_state=0).fit(Xd)
    with pytest.raises(ValueError, match="NaN or infinity"):
        MiniBatchKMeans(12, random_state=0).partial_fit(Xd)
    w = np.ones(len(X))
    w[where] = -1.0
    with pytest.raises(ValueError, match="sample_weight"):
        MiniBatchKMeans(12, batch_size=500, max_iter=1, random_state=0).fit(
            da.from_array(big_blobs, chunks=(1000, 4)), sample_weight=da.from_array(w, 1000))


def _numpy_lloyd(S, w, C, n_iter):
    """Weighted Lloyd iterations by explicit differences (empty centres stay)."""
    from daskmeans.testing import brute_force_lloyd

    C = C.astype(np.float64)
    for _ in range(n_iter):
        _, _, sums, counts, _ = brute_force_lloyd(S, C, w)
        new = C.copy()
        new[counts > 0] = sums[counts > 0] / counts[counts > 0, None]
        if np.array_equal(new, C):
            break
        C = new
    return C


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_init_lloyd_iter_refines_each_candidate_on_its_sample(big_blobs, init):
    pool = big_blobs[:3000]
    wts = np.random.default_rng(2).uniform(0.5, 2.0, size=3000)
    parts = [(pool[:1700], wts[:1700]), (pool[1700:], wts[1700:])]
    seq = np.random.SeedSequence(4)
    spec = dict(init=init, n_clusters=12, n_init=1, init_size=1000, seq=seq, tol=0.0,
                dtype=np.float64)
    seeds = mb.init_state(parts, spec).centers  # init_lloyd_iter absent: scikit-learn's seeding
    np.testing.assert_array_equal(mb.init_state(parts, dict(spec, init_lloyd_iter=0)).centers,
                                  seeds)
    rows = np.sort(mb.block_rng(seq, mb._CANDIDATE, 0).choice(3000, 1000, replace=False))
    for n_iter in (1, 4, 200):
        got = mb.init_state(parts, dict(spec, init_lloyd_iter=n_iter))
        ref = _numpy_lloyd(pool[rows], wts[rows], seeds, n_iter)
        np.testing.assert_allclose(got.centers, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(got.counts, np.zeros(12))  # counts still start at zero
    # with several candidates, each is refined before the comparison on the validation rows
    best = mb.init_state(parts, dict(spec, n_init=3, init_lloyd_iter=5)).centers
    valid = np.sort(mb.block_rng(seq, mb._VALIDATION).choice(3000, 1000, replace=False))
    inertias = []
    for g in range(3):
        rng = mb.block_rng(seq, mb._CANDIDATE, g)
        r = np.sort(rng.choice(3000, 1000, replace=False))  # the rows, as init_state draws them
        sample, sw = pool[r], wts[r]
        if init == "k-means++":
            from daskmeans.engine._init import kmeans_plusplus

            C = kmeans_plusplus(sample, sw, 12, rng)
        else:
            C = sample[rng.choice(1000, 12, replace=False, p=sw / sw.sum())]
        C = _numpy_lloyd(sample, sw, C, 5)
        d2 = ((pool[valid][:, None] - C[None]) ** 2).sum(-1).min(1)
        inertias.append(((d2 * wts[valid]).sum(), C))
    np.testing.assert_allclose(best, min(inertias, key=lambda t: t[0])[1], rtol=1e-8, atol=1e-8)


def test_init_lloyd_iter_on_the_estimator(big_blobs, tmp_path):
    X = big_blobs
    Xd = da.from_array(X, chunks=(5000, 4))
    params = dict(n_clusters=12, batch_size=1000, max_iter=1, random_state=3)
    plain = MiniBatchKMeans(**params).fit(Xd)
    assert MiniBatchKMeans().init_lloyd_iter == 0
    refined = MiniBatchKMeans(**params, init_lloyd_iter=20).fit(Xd)
    assert not np.array_equal(refined.cluster_centers_, plain.cluster_centers_)
    # the same fold on NumPy input with the same chunks, and on any scheduler
    with dask.config.set(scheduler="sync"):
        sync = MiniBatchKMeans(**params, init_lloyd_iter=20).fit(Xd)
    np.testing.assert_array_equal(sync.cluster_centers_, refined.cluster_centers_)
    # an explicit init array is used as given
    C0 = X[:12].copy()
    a = MiniBatchKMeans(12, init=C0, init_lloyd_iter=10).partial_fit(X[:500])
    b = MiniBatchKMeans(12, init=C0).partial_fit(X[:500])
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    # kept by save / load
    refined.save(tmp_path / "m.json")
    assert MiniBatchKMeans.load(tmp_path / "m.json").init_lloyd_iter == 20
    with pytest.raises(ValueError, match="init_lloyd_iter"):
        MiniBatchKMeans(12, init_lloyd_iter=-1).fit(X)


def test_cli_fit_minibatch_init_lloyd_iter(big_blobs, tmp_path):
    X = big_blobs.astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(3000, 4),
                          dtype=X.dtype)
    z[:] = X
    fit = _run_cli("fit", str(tmp_path / "X.zarr"), "--k", "12", "--algorithm", "minibatch",
                   "--batch-size", "500", "--seed", "3", "--tol", "0", "--max-iter", "1",
                   "--init-lloyd-iter", "7", "--out", str(tmp_path / "m"), "--json", "--quiet")
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["parameters"]["init_lloyd_iter"] == 7
    model = MiniBatchKMeans.load(tmp_path / "m" / "model.json")
    assert model.init_lloyd_iter == 7
    ref = MiniBatchKMeans(12, batch_size=500, tol=0.0, max_iter=1, random_state=3,
                          init_lloyd_iter=7).fit(da.from_array(X, chunks=(3000, 4)))
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-6)


@pytest.mark.parametrize("config, want", [
    ({"num_workers": 2}, 3),  # the chain of the fold gets a thread beyond the reads'
    ({"num_workers": 5}, 6),
    ({"num_workers": 1}, None),  # a single thread asked for: kept
])
def test_fold_chain_runs_on_a_thread_of_its_own(big_blobs, monkeypatch, config, want):
    """Through dask's scheduler (the local threads' runner off: see test_fold_pass)."""
    from daskmeans.engine import _graph

    monkeypatch.setattr(_fold_pass, "THREADS", False)
    seen = []
    real = dask.compute

    def spy(*args, **kwargs):
        seen.append(kwargs.get("num_workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_graph.dask, "compute", spy)
    Xd = da.from_array(big_blobs, chunks=(3000, 4))
    with dask.config.set(scheduler="threads", **config):
        model = MiniBatchKMeans(12, batch_size=1000, max_iter=1, max_no_improvement=None,
                                compute_labels=False, random_state=0).fit(Xd)
    assert seen[0] == want  # the fold's pass (compute_labels=False: the only one)
    with dask.config.set(scheduler="sync"):
        ref = MiniBatchKMeans(12, batch_size=1000, max_iter=1, max_no_improvement=None,
                              compute_labels=False, random_state=0).fit(Xd)
    np.testing.assert_array_equal(model.cluster_centers_, ref.cluster_centers_)


def test_fold_chain_keeps_a_configured_pool():
    from concurrent.futures import ThreadPoolExecutor

    from daskmeans.engine._graph import _chain_workers

    with dask.config.set(num_workers=2):
        assert _chain_workers() == 3
    with ThreadPoolExecutor(2) as pool, dask.config.set(pool=pool):
        assert _chain_workers() is None


def test_initial_candidates_run_the_fits_kernel_plan(big_blobs, monkeypatch):
    """The sample is small, but its seeding and Lloyd iterations use the plan chosen for
    the whole data, as the fold's steps do."""
    from daskmeans.engine import _fold

    plans = []
    real = _fold.kmeans_plusplus

    def spy(*args, plan=None, **kwargs):
        plans.append(plan)
        return real(*args, plan=plan, **kwargs)

    monkeypatch.setattr(_fold, "kmeans_plusplus", spy)
    Xd = da.from_array(big_blobs, chunks=(3000, 4))
    model = MiniBatchKMeans(12, batch_size=1000, max_iter=1, n_init=2, random_state=0)
    model.fit(Xd)
    want = daskmeans.kernels.choose_plan(Xd.dtype, 12, 4, Xd.shape[0])
    assert len(plans) == 2 and all(p == want for p in plans)


def test_read_window_shrinks_from_the_initial_one_to_lookahead():
    """After the blocks read at once, each read waits for a fold task one block nearer
    than the last, until reads run LOOKAHEAD blocks ahead: never more blocks ahead than
    while the initialisation ran, and no read waits for a task later than it must."""
    L = mb.LOOKAHEAD
    for n_init in (0, 1, 4):
        first = mb.first_gated_read(n_init)
        gates = [mb.read_gate(j, n_init) for j in range(first + 3 * (n_init + L))]
        assert gates[:first] == [None] * first
        ahead = [j - g for j, g in enumerate(gates) if g is not None]
        assert ahead[0] == first and ahead[-1] == L
        assert all(a - b in (0, 1) for a, b in zip(ahead, ahead[1:], strict=False))
        assert min(ahead) == L and max(ahead) <= n_init + L
        # the fold tasks waited for never go backwards
        waited = [g for g in gates if g is not None]
        assert waited == sorted(waited) and waited[0] == 0


@pytest.mark.parametrize("block", [0, 1, 23])
def test_non_finite_blocks_are_rejected_before_and_after_the_initialisation(big_blobs, block):
    """A block of NaN rows: caught in the initial sample when the block is drawn
    from (the first pass's leading blocks), else by its fold step; the same error."""
    X = big_blobs.copy()
    order = block_rng(as_seed_sequence(0), mb.ORDER_KEY, 0).permutation(24)
    X[1000 * order[block] : 1000 * (order[block] + 1)] = np.nan
    Xd = da.from_array(X, chunks=(1000, 4))
    seen = []

    def init(S, k, random_state):  # the initialisation never sees the bad rows
        seen.append(bool(np.isfinite(S).all()))
        return S[:k]

    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        MiniBatchKMeans(12, init=init, batch_size=500, max_iter=1, random_state=0,
                        max_no_improvement=None).fit(Xd)
    assert all(seen)


def test_zero_weight_non_finite_rows_and_overflow(big_blobs):
    """A NaN row of zero weight is still rejected; finite rows whose squared
    distances overflow float32 are not (they are finite data)."""
    X = big_blobs.copy()
    X[7_777, 0] = np.nan
    w = np.ones(len(X))
    w[7_777] = 0.0
    with pytest.raises(ValueError, match="NaN or infinity"):
        MiniBatchKMeans(12, batch_size=500, max_iter=1, random_state=0).fit(
            da.from_array(X, chunks=(1000, 4)), sample_weight=da.from_array(w, 1000))
    huge = big_blobs.astype(np.float32)
    huge[5_000] = 3e38  # finite; its squared distance to any centre is not
    with np.errstate(over="ignore", invalid="ignore"):
        model = MiniBatchKMeans(12, batch_size=500, max_iter=1, random_state=0,
                                compute_labels=False).fit(da.from_array(huge, chunks=(1000, 4)))
    assert model.cluster_centers_.shape == (12, 4)


@pytest.mark.parametrize("nan_policy", ["raise", "omit"])
def test_deferred_final_pass_gives_the_fit_in_one_read(nan_policy, deferred_fit):
    """Inside deferred_final_pass, the labels' pass measures the final centres:
    one read of every block gives labels_, inertia_, cluster_sizes_ and
    n_omitted_, all bitwise those of a plain fit."""
    from daskmeans._base import deferred_final_pass, pending_final_pass

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(c, 1.0, (600, 2)) for c in (0.0, 3.0, 6.0)])
    if nan_policy == "omit":
        x[[1, 900]] = np.nan
    kw = {"batch_size": 256, "random_state": 0, "nan_policy": nan_policy}
    ref = MiniBatchKMeans(3, **kw).fit(da.from_array(x, chunks=(300, 2)))
    model, labels, reads = deferred_fit(MiniBatchKMeans(3, **kw), x, 300)
    assert reads == len(x) // 300
    np.testing.assert_array_equal(model.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(labels, ref.labels_.compute())
    assert model.inertia_ == ref.inertia_ and model.n_passes_ == ref.n_passes_
    np.testing.assert_array_equal(model.cluster_sizes_, ref.cluster_sizes_)
    assert model.n_omitted_ == ref.n_omitted_ == (2 if nan_policy == "omit" else 0)
    # without labels there is no last pass to defer
    quiet = MiniBatchKMeans(3, compute_labels=False, **kw)
    with deferred_final_pass(quiet):
        quiet.fit(da.from_array(x, chunks=(300, 2)))
    assert pending_final_pass(quiet) is None and quiet.inertia_ == quiet.inertia_history_[-1]
