"""On a Dask cluster: work placement, task names, traffic, determinism, worker loss,
concurrent fits, and a fit under a memory limit smaller than the data."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time

import dask
import numpy as np
import pytest
import zarr

distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

from daskmeans import KMeans, open_zarr  # noqa: E402

CLUSTER = {"dashboard_address": None, "silence_logs": 40}


def _blobs(seed, n, d, k, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    y = rng.integers(0, k, size=n)
    return (centers[y] + rng.normal(scale=1.0, size=(n, d))).astype(dtype)


def _write(path, X, rows):
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(rows, X.shape[1]),
                          dtype=X.dtype)
    z[:] = X
    return str(path)


@pytest.fixture(scope="module")
def zarr_data(tmp_path_factory):
    X = _blobs(0, 24_000, 6, 5)
    return _write(tmp_path_factory.mktemp("dist") / "x.zarr", X, 2000), X


@pytest.fixture(scope="module")
def _module_client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, **CLUSTER) as cl, \
            Client(cl) as client:
        yield client


@pytest.fixture
def thread_client(_module_client):
    """A client on in-process workers, the default scheduler for the test (conftest's
    autouse fixture selects the threaded scheduler after a module-scoped client starts)."""
    with dask.config.set(scheduler="dask.distributed"):
        yield _module_client


class _Recorder(SchedulerPlugin):
    """Records, on the scheduler, every task that finished and the bytes of its result."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.done: list[tuple[str, int, bool]] = []

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            ts = self.scheduler.tasks.get(key)
            if ts is not None:
                wanted = bool(ts.who_wants)
                self.done.append((ts.prefix.name, ts.get_nbytes(), wanted))


def _no_local_scheduler(*args, **kwargs):
    raise AssertionError("work ran on a local scheduler while a distributed Client is active")


def test_all_work_on_cluster_named_tasks_small_traffic(thread_client, zarr_data, monkeypatch):
    url, X = zarr_data
    rec = _Recorder(thread_client.cluster.scheduler)
    thread_client.cluster.scheduler.add_plugin(rec, name="daskmeans-recorder")
    for name in list(dask.base.named_schedulers):
        monkeypatch.setitem(dask.base.named_schedulers, name, _no_local_scheduler)
    try:
        # one task per block, to count them (grouped tasks: test_grouped_passes_on_a_cluster)
        with dask.config.set({"daskmeans.blocks-per-task": 1}):
            km = KMeans(5, random_state=0, n_init=2).fit(url)
            score = km.score(url)
            fit_and_score = len(rec.done)
            labels = km.predict(url).compute()
    finally:
        thread_client.cluster.scheduler.remove_plugin(name="daskmeans-recorder")
    prefixes = {p for p, _, _ in rec.done}
    for name in ("kmeans-partial", "kmeans-combine", "kmeans-result", "kmeans-init-round-partial",
                 "kmeans-init-weights-partial", "kmeans-score-partial",
                 "kmeans-predict"):
        assert name in prefixes, (name, sorted(prefixes))
    n_blocks = open_zarr(url).numblocks[0]
    n_partial = sum(p.endswith("-partial") for p, _, _ in rec.done)
    assert n_partial == (km.n_passes_ + 1) * n_blocks  # every pass (and score) ran on the cluster
    block_bytes = 2000 * 6 * 8
    k_d = 5 * 6
    partial_bytes = [b for p, b, _ in rec.done if p.endswith(("-partial", "-combine"))]
    # what travels to the reduction: k x d numbers (sums, far rows) and k counts per block
    assert max(partial_bytes) < 64 * k_d * 8 < block_bytes
    assert labels.shape == (X.shape[0],)
    to_client = [(p, b) for p, b, wanted in rec.done[:fit_and_score] if wanted]
    big = [(p, b) for p, b in to_client if b > 16_384]
    # no block reaches the client: the k-means|| first centre comes back as one row
    assert not big, big
    small = [b for _, b in to_client if b <= 16_384]
    assert sum(small) <= (km.n_passes_ + 1) * 8192  # a few kB per pass, whatever n is
    assert score == pytest.approx(-km.inertia_)


def test_grouped_passes_on_a_cluster(thread_client, zarr_data):
    """On a cluster a pass groups blocks into tasks that read them (1 to 4 per thread);
    the local batching rule applies only to dask's threads. Same centres either way."""
    import dask.array as da

    from daskmeans.engine._graph import batch_size, blocks_per_task

    X = da.ones((6400, 2), chunks=(100, 2))
    assert batch_size(X, 8) == 1
    with dask.config.set(scheduler="threads"):
        assert batch_size(X, 8) == 8
    url, _ = zarr_data
    Xz = open_zarr(url, chunks="stored")
    threads = sum(thread_client.nthreads().values())
    g, _ = blocks_per_task(Xz, 8)
    assert g > 1 and -(-Xz.numblocks[0] // g) >= threads  # grouped; every thread has a task
    grouped = _fit(Xz)
    with dask.config.set({"daskmeans.blocks-per-task": 1}):
        single = _fit(Xz)
    with dask.config.set(scheduler="sync"):
        ref = _fit(Xz)
    np.testing.assert_array_equal(grouped.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(single.cluster_centers_, ref.cluster_centers_)


def _fit(url, **kw):
    params = {"n_clusters": 5, "random_state": 7, "n_init": 2, "max_iter": 30}
    params.update(kw)
    return KMeans(**params).fit(url)


def test_bitwise_identical_across_schedulers(zarr_data):
    url, _ = zarr_data
    with dask.config.set(scheduler="sync"):
        ref = _fit(url)
    with dask.config.set(scheduler="threads"):
        threads = _fit(url)
    np.testing.assert_array_equal(threads.cluster_centers_, ref.cluster_centers_)
    for n_workers in (1, 3):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          **CLUSTER) as cl, Client(cl):
            km = _fit(url)
        assert km.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes(), n_workers
        assert km.inertia_ == ref.inertia_ and km.n_iter_ == ref.n_iter_


def test_worker_killed_mid_fit(tmp_path):
    X = np.random.default_rng(1).normal(size=(30_000, 8))  # no clusters: many iterations
    url = _write(tmp_path / "x.zarr", X, 2000)
    params = {"n_clusters": 6, "random_state": 3, "tol": 0.0, "max_iter": 12}
    with dask.config.set(scheduler="sync"):
        ref = KMeans(**params).fit(url)
    killed = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **CLUSTER) as cl, \
            Client(cl) as client:
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]

        def kill():
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        def callback(event):
            # after Lloyd iteration 2, kill a worker while iteration 3's pass is running
            if event["phase"] == "lloyd" and event["iteration"] == 2:
                threading.Timer(0.05, kill).start()

        km = KMeans(**params, callback=callback).fit(url)
    # the process really died
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert killed == [victim]
    assert km.n_iter_ == ref.n_iter_ > 3
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == ref.inertia_


def test_concurrent_fits_do_not_interfere(thread_client, tmp_path):
    jobs = []
    for i, (k, d) in enumerate([(3, 4), (5, 6), (7, 3), (4, 8)]):
        X = _blobs(10 + i, 6000 + 1000 * i, d, k, np.float32 if i % 2 else np.float64)
        url = _write(tmp_path / f"x{i}.zarr", X, 1500)
        jobs.append((url, k, i))
    solo = [KMeans(k, random_state=i, n_init=2).fit(url) for url, k, i in jobs]
    results: list = [None] * len(jobs)
    errors: list = []
    barrier = threading.Barrier(len(jobs))

    def run(j):
        url, k, i = jobs[j]
        try:
            barrier.wait()
            km = KMeans(k, random_state=i, n_init=2).fit(url)
            results[j] = (km, km.predict(url).compute())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for (km, labels), ref in zip(results, solo, strict=True):
        np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(labels, ref.labels_.compute())
        assert km.inertia_ == ref.inertia_


def test_persist_on_cluster_same_result(thread_client, zarr_data):
    url, _ = zarr_data
    lazy = _fit(url, persist=False)
    cached = _fit(url, persist=True)
    auto = _fit(url, persist="auto")  # 1 MB on a cluster with GiBs: persisted
    np.testing.assert_array_equal(cached.cluster_centers_, lazy.cluster_centers_)
    np.testing.assert_array_equal(auto.cluster_centers_, lazy.cluster_centers_)
    assert cached.timings_["persist"] > 0 and auto.timings_["persist"] > 0
    # nothing stays pinned in cluster memory after the fit (releases reach the
    # scheduler asynchronously: wait for them, a bounded time)
    def pinned():
        return [k for k, ts in thread_client.cluster.scheduler.tasks.items() if ts.who_wants]

    deadline = time.monotonic() + 10
    while pinned() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pinned()


def test_fit_under_cluster_memory_limit(tmp_path):
    """Data larger than the cluster's total memory limit: no pause, restart or kill."""
    rows, d = 144 * 32_768, 64  # float32: 1.2 GB, stored uncompressed in blocks of 8 MiB
    X = _blobs(5, 32_768 * 4, d, 8, np.float32)
    z = zarr.create_array(store=str(tmp_path / "big.zarr"), shape=(rows, d),
                          chunks=(32_768, d), dtype=np.float32, compressors=None)
    for i in range(0, rows, len(X)):
        z[i : i + len(X)] = X
    # a worker process idles at about 280 MiB here (imports) and pauses at 80 % of its limit
    limit = 512 * 2**20  # per worker; 2 workers: 1 GiB < 1.2 GB of data
    data_bytes = rows * d * 4
    with dask.config.set({"distributed.worker.memory.spill": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         memory_limit=limit, **CLUSTER) as cl, Client(cl) as client:
        assert 2 * limit < data_bytes
        sched = cl.scheduler
        before = dict(client.run(os.getpid))
        seen = {"paused": False, "removed": 0, "workers": set(sched.workers)}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                for ws in list(sched.workers.values()):
                    if ws.status.name != "running":
                        seen["paused"] = True
                if set(sched.workers) != seen["workers"]:
                    seen["removed"] += 1
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            km = KMeans(8, init="random", n_init=1, random_state=0, max_iter=2).fit(
                str(tmp_path / "big.zarr"))
        finally:
            stop.set()
            watcher.join()
        after = dict(client.run(os.getpid))
        peak = client.run(lambda dask_worker: dask_worker.monitor.get_process_memory())
    assert not seen["paused"] and seen["removed"] == 0
    assert after == before  # same workers, same processes: none restarted or killed
    assert km.n_passes_ >= 3 and km.cluster_centers_.shape == (8, d)
    assert all(v < limit for v in peak.values()), peak


def test_pruned_bounds_stay_in_worker_memory(tmp_path):
    """On a cluster, pruned Lloyd keeps its bounds in the workers' memory: no files,
    blocks pinned to a worker so that every pass after the first finds them, plain
    Lloyd's centres, nothing left behind."""
    from daskmeans.engine import _pruned

    rng = np.random.default_rng(0)
    comp = rng.normal(size=(200, 8)) * 3
    X = (comp[rng.integers(0, 200, 48_000)] + rng.normal(size=(48_000, 8))).astype(np.float32)
    url = _write(tmp_path / "x.zarr", X, 3000)
    C0 = X[rng.choice(len(X), 300, replace=False)]
    before = set(os.listdir(tempfile.gettempdir()))
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, **CLUSTER) as cl, \
            Client(cl) as client:
        Xd = open_zarr(url)
        assert isinstance(_pruned.make_store(Xd), _pruned.WorkerStore)
        events = []
        km = KMeans(300, init=C0, algorithm="pruned", max_iter=12, tol=0,
                    callback=events.append).fit(url)
        ref = KMeans(300, init=C0, algorithm="lloyd", max_iter=12, tol=0).fit(url)
        held = client.run(lambda: len(_pruned._PROCESS_BOUNDS))
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    reused = [e["reused"] for e in events if e.get("phase") == "lloyd"]
    assert reused[0] == 0 and np.mean(reused[2:]) >= 0.9, reused
    assert not [f for f in set(os.listdir(tempfile.gettempdir())) - before
                if f.startswith("daskmeans-bounds-")]
    assert set(held.values()) == {0}  # close() dropped them on every worker


def test_fold_passes_run_on_the_cluster(thread_client, zarr_data):
    """With a client, MiniBatchKMeans' passes are graphs on the cluster, not the local
    threads of engine/_fold_pass.py."""
    from daskmeans import MiniBatchKMeans
    from daskmeans.engine import _fold_pass

    assert _fold_pass.fold_threads() is None
    url, _ = zarr_data
    rec = _Recorder(thread_client.cluster.scheduler)
    thread_client.cluster.scheduler.add_plugin(rec, name="daskmeans-fold-recorder")
    try:
        MiniBatchKMeans(5, batch_size=500, max_iter=1, random_state=0,
                        compute_labels=False).fit(url)
    finally:
        thread_client.cluster.scheduler.remove_plugin(name="daskmeans-fold-recorder")
    prefixes = {p for p, _, _ in rec.done}
    assert "minibatch-fold" in prefixes, sorted(prefixes)
