"""The fold's passes (engine/_fold_pass.py): on local threads against the same pass run
by dask's schedulers (bitwise equal results, errors, when it applies)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

from daskmeans import MiniBatchKMeans
from daskmeans.engine import _fold
from daskmeans.engine import _fold_pass as ft


@pytest.fixture
def blobs(big_blobs):
    """12 overlapping blobs in 4-D, 24,000 float32 rows."""
    return big_blobs.astype(np.float32)


def _fit(X, threads, monkeypatch, scheduler="threads", **kwargs):
    """Fit with the fold on local threads (``threads``) or through the scheduler; the
    runner's calls are counted to tell which ran."""
    calls = []
    real = ft.FoldThreads.__call__

    def spy(self):
        calls.append(self.n_threads)
        return real(self)

    monkeypatch.setattr(ft, "THREADS", threads)
    monkeypatch.setattr(ft.FoldThreads, "__call__", spy)
    sample_weight = kwargs.pop("sample_weight", None)
    with dask.config.set(scheduler=scheduler, num_workers=kwargs.pop("num_workers", 2)):
        model = MiniBatchKMeans(**kwargs).fit(X, sample_weight=sample_weight)
    return model, calls


CASES = {
    "defaults": dict(n_clusters=12, random_state=0),
    "init in the graph, 3 candidates, 2 passes": dict(
        n_clusters=12, batch_size=700, n_init=3, init_lloyd_iter=4, max_iter=2,
        max_no_improvement=None, random_state=1),
    "explicit centres, tol": dict(n_clusters=12, batch_size=500, tol=1e-3, max_iter=3,
                                  random_state=2),
    "early stop": dict(n_clusters=12, batch_size=200, max_no_improvement=1, max_iter=5,
                       random_state=3),
    "whole blocks, reassignment": dict(n_clusters=12, batch_size=5000, reassignment_ratio=0.5,
                                       max_iter=2, random_state=4),
    "nan omitted": dict(n_clusters=12, batch_size=600, nan_policy="omit", random_state=5),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_bitwise_equal_to_the_graph(blobs, monkeypatch, case, weighted):
    kwargs = dict(CASES[case])
    X = blobs.copy()
    if case == "explicit centres, tol":
        kwargs["init"] = X[::2000][:12].copy()
    if case == "nan omitted":
        X[::97, 2] = np.nan
    Xd = da.from_array(X, chunks=(1500, 4))
    if weighted:
        w = np.random.default_rng(0).uniform(0.1, 2, size=len(X))
        kwargs["sample_weight"] = da.from_array(w, chunks=1500)
    ours, calls = _fit(Xd, True, monkeypatch, **dict(kwargs))
    assert calls and set(calls) == {2}  # every pass ran on the threads, 2 in all
    for scheduler in ("threads", "sync"):
        ref, ref_calls = _fit(Xd, False, monkeypatch, scheduler=scheduler, **dict(kwargs))
        assert not ref_calls
        np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(ours.counts_, ref.counts_)
        assert ours.n_steps_ == ref.n_steps_ and ours.n_iter_ == ref.n_iter_
        assert ours.inertia_ == ref.inertia_


def test_partial_fit_bitwise_equal_to_the_graph(blobs, monkeypatch):
    Xd = da.from_array(blobs, chunks=(2000, 4))
    models = {}
    for threads in (True, False):
        monkeypatch.setattr(ft, "THREADS", threads)
        m = MiniBatchKMeans(12, random_state=0)
        with dask.config.set(scheduler="threads", num_workers=3):
            for part in (Xd[:8000], Xd[8000:]):
                m.partial_fit(part)
        models[threads] = m
    np.testing.assert_array_equal(models[True].cluster_centers_,
                                  models[False].cluster_centers_)
    assert models[True].n_steps_ == models[False].n_steps_ == 12


@pytest.mark.parametrize("num_workers", [1, 2, 5, 16])
def test_threads_follow_num_workers(blobs, monkeypatch, num_workers):
    seen = set()
    real = _fold.fold_block

    def spy(state, block, params):
        seen.add(threading.current_thread().name)
        return real(state, block, params)

    monkeypatch.setattr(_fold, "fold_block", spy)
    Xd = da.from_array(blobs, chunks=(1000, 4))
    model, calls = _fit(Xd, True, monkeypatch, n_clusters=12, batch_size=500, max_iter=1,
                        random_state=0, num_workers=num_workers, compute_labels=False)
    # no more threads than can have work at once: the reads the gates let run together
    # (the initial sample's blocks and LOOKAHEAD more) and a fold step
    n_init = _fold._leading_blocks([1000] * 24, list(range(24)), 3 * 500 * 2)
    most = _fold.first_gated_read(n_init) + 1
    assert 5 < most < 16
    assert calls == [min(num_workers, most)]
    assert len(seen) <= min(num_workers, most)
    # the calling thread takes part; the others are the pass's own and are gone after it
    assert threading.current_thread().name in seen or num_workers > 1
    assert not [t for t in threading.enumerate() if t.name.startswith("daskmeans-fold")]
    ref, _ = _fit(Xd, False, monkeypatch, scheduler="sync", n_clusters=12, batch_size=500,
                  max_iter=1, random_state=0, compute_labels=False)
    np.testing.assert_array_equal(model.cluster_centers_, ref.cluster_centers_)


def test_blocks_held_are_bounded(blobs, monkeypatch):
    """Never more blocks read and not yet folded than the graph's gates allow."""
    held, most = set(), [0]
    lock = threading.Lock()
    real_read, real_fold = ft.FoldThreads._read, ft.FoldThreads._fold

    def read(self, j, gated):
        real_read(self, j, gated)
        with lock:
            held.add(j)
            most[0] = max(most[0], len(held))

    def fold(self, pos):
        with lock:
            held.discard(pos)
        real_fold(self, pos)

    monkeypatch.setattr(ft.FoldThreads, "_read", read)
    monkeypatch.setattr(ft.FoldThreads, "_fold", fold)
    Xd = da.from_array(blobs, chunks=(500, 4))  # 48 blocks
    _fit(Xd, True, monkeypatch, n_clusters=12, batch_size=250, max_iter=1, random_state=0,
         num_workers=4, compute_labels=False, init="random", n_init=1)
    n_init = _fold._leading_blocks([500] * 48, list(range(48)), 3 * 250 * 2)
    assert 0 < most[0] <= _fold.first_gated_read(n_init) + 1


def test_errors_reach_the_caller_and_stop_the_threads(blobs, monkeypatch):
    class Boom(Exception):
        pass

    def load(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 7:
            raise Boom("block 7")
        return block

    Xd = da.from_array(blobs, chunks=(1000, 4)).map_blocks(load, dtype=blobs.dtype)
    for workers in (1, 3):
        with pytest.raises(Boom, match="block 7"):
            _fit(Xd, True, monkeypatch, n_clusters=12, batch_size=500, random_state=0,
                 num_workers=workers)
        assert not [t for t in threading.enumerate() if t.name.startswith("daskmeans-fold")]


def test_non_finite_rows_raise_as_through_the_graph(blobs, monkeypatch):
    X = blobs.copy()
    X[12_345, 1] = np.inf
    Xd = da.from_array(X, chunks=(1500, 4))
    messages = []
    for threads in (True, False):
        with pytest.raises(ValueError) as err:
            _fit(Xd, threads, monkeypatch, n_clusters=12, batch_size=500, random_state=0)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_when_the_threads_run():
    with dask.config.set(scheduler="threads", num_workers=3):
        assert ft.fold_threads() == 3
        with Callback():  # dask's diagnostics and progress bars see the graph's tasks
            assert ft.fold_threads() is None
        with ThreadPoolExecutor(2) as pool, dask.config.set(pool=pool):
            assert ft.fold_threads() is None
    with dask.config.set(scheduler="sync"):
        assert ft.fold_threads() is None
    with dask.config.set(scheduler="processes"):
        assert ft.fold_threads() is None


def test_callbacks_see_the_graphs_tasks(blobs, monkeypatch):
    keys = []

    class Seen(Callback):
        def _start_state(self, dsk, state):
            keys.extend(str(k) for k in dsk)

    Xd = da.from_array(blobs, chunks=(3000, 4))
    with Seen():
        _, calls = _fit(Xd, True, monkeypatch, n_clusters=12, max_iter=1, random_state=0,
                        compute_labels=False)
    assert not calls
    assert any("minibatch-fold" in k for k in keys)


def test_errors_of_the_initialisation_reach_the_caller(blobs, monkeypatch):
    class Stop(BaseException):  # not an Exception: still handed over, the threads stopped
        pass

    def seeding(X, k, random_state):
        raise Stop("no centres")

    Xd = da.from_array(blobs, chunks=(1000, 4))
    for threads in (True, False):
        with pytest.raises(Stop, match="no centres"):
            _fit(Xd, threads, monkeypatch, n_clusters=12, batch_size=500, random_state=0,
                 init=seeding, n_init=2, num_workers=3)
    assert not [t for t in threading.enumerate() if t.name.startswith("daskmeans-fold")]
