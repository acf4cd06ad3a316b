"""Passes over small in-memory data run inline (daskmeans.engine._inline): the
same results, bitwise, as under dask's threaded and synchronous schedulers."""

from __future__ import annotations

import math
import threading

import dask
import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans, _validation
from daskmeans.engine import _graph, _inline


def _chunk(block, w, index, *, offset):
    return float(block.sum()) * (1.0 + 1e-7 * index) + offset


def _combine(parts):
    # not associative: a change in the tree's shape or order changes the result
    out = 0.0
    for p in parts:
        out = out * 1.000001 + p
    return out


def _count_inline(monkeypatch) -> list:
    calls: list = []
    real = _inline._InlineGet.__call__
    monkeypatch.setattr(_inline._InlineGet, "__call__",
                        lambda self, dsk, out: calls.append(1) or real(self, dsk, out))
    return calls


def _count_direct(monkeypatch) -> list:
    calls: list = []
    real = _inline.DirectPass.__call__
    monkeypatch.setattr(_inline.DirectPass, "__call__",
                        lambda self, consts: calls.append(self.n_threads) or real(self, consts))
    return calls


def _graph_only(monkeypatch) -> None:
    """Every pass through dask's scheduler: neither direct nor inline passes."""
    monkeypatch.setattr(_inline, "DIRECT_BYTES", 0)
    monkeypatch.setattr(_inline, "INLINE_BYTES", 0)
    monkeypatch.setattr(_inline, "_SMALL_KEYS", {})


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
@pytest.mark.parametrize("direct", [True, False])
def test_small_pass_runs_without_the_scheduler_and_equals_it(scheduler, direct, monkeypatch):
    X = da.from_array(np.random.default_rng(0).normal(size=(900, 3)), chunks=(50, 3))
    with dask.config.set(scheduler=scheduler):
        want = [_graph.compute_passes(_graph.block_reduce(
                    X, None, _chunk, _combine, name="t", split_every=4,
                    consts={"offset": float(o)}))[0] for o in range(3)]
        if not direct:
            monkeypatch.setattr(_inline, "DIRECT_BYTES", 0)
        inline, direct_calls = _count_inline(monkeypatch), _count_direct(monkeypatch)
        run = _graph.PassRunner(X, None, _chunk, _combine, name="t", split_every=4)
        got = [run({"offset": float(o)}) for o in range(3)]
    # every call of the runner ran directly (or inline in the graph's order)
    assert (direct_calls if direct else inline) == ([1] * 3 if direct else [1] * 3)
    assert not (inline if direct else direct_calls)
    assert got == want  # bitwise: the same block calls, the same tree
    assert got[1] != got[0]  # the constants did change


def test_direct_pass_threads_above_the_inline_size(monkeypatch):
    X = da.from_array(np.random.default_rng(0).normal(size=(900, 3)), chunks=(50, 3))
    here = threading.get_ident()
    with dask.config.set(scheduler="threads", num_workers=2):
        want = _graph.compute_passes(_graph.block_reduce(
            X, None, _chunk, _combine, name="t", split_every=3, consts={"offset": 1.0}))[0]
        monkeypatch.setattr(_inline, "INLINE_BYTES", 0)
        calls = _count_direct(monkeypatch)
        seen: list = []
        run = _graph.PassRunner(X, None, _thread_chunk, _combine, name="t", split_every=3)
        run({"seen": seen})
        got = _graph.PassRunner(X, None, _chunk, _combine, name="t",
                                split_every=3)({"offset": 1.0})
    assert calls == [2, 2]  # two threads
    assert here not in set(seen) and len(seen) == X.numblocks[0]
    assert got == want


def test_large_or_unknown_sized_data_keeps_the_scheduler(monkeypatch):
    small = da.ones((100, 2), chunks=(10, 2))
    dsk = {"a": dask._task_spec.DataNode("a", 1)}
    assert _inline.inline_get(small, dsk, "a") is not None
    assert _inline.direct_pass(small, None, _chunk, _combine) is not None
    monkeypatch.setattr(_inline, "INLINE_BYTES", small.nbytes - 1)
    monkeypatch.setattr(_inline, "DIRECT_BYTES", small.nbytes - 1)
    assert _inline.inline_get(small, dsk, "a") is None
    assert _inline.direct_pass(small, None, _chunk, _combine) is None
    unknown = da.ones((100, 2), chunks=(10, 2))
    unknown._chunks = ((math.nan,) * 10, (2,))
    assert _inline.inline_get(unknown, dsk, "a") is None
    assert _inline.direct_pass(unknown, None, _chunk, _combine) is None
    # a graph of plain tuples (not dask's task objects) is left to the scheduler
    assert _inline.inline_get(small, {"a": 1}, "a") is None
    # blocks that are not read by tasks of their own (a rechunk) go through the graph
    assert _inline.direct_pass(small.rechunk((30, 2)) + 1, None, _chunk, _combine) is None


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
@pytest.mark.parametrize("inline", [True, False])
def test_fit_without_scheduler_is_bitwise_the_threaded_fit(init, inline, monkeypatch):
    X = np.random.default_rng(3).normal(size=(9000, 5))
    assert X.nbytes <= _inline.INLINE_BYTES
    # NumPy input this small is one block by default: split it for the threads
    monkeypatch.setattr(_validation, "MIN_SPLIT_BLOCK_BYTES", 1 << 10)
    with dask.config.set(scheduler="threads", num_workers=2):
        calls = _count_direct(monkeypatch)
        if not inline:
            monkeypatch.setattr(_inline, "INLINE_BYTES", 0)  # direct, on two threads
        a = KMeans(6, init=init, random_state=0).fit(X)
        assert calls and all(c == (1 if inline else 2) for c in calls)
        _graph_only(monkeypatch)
        del calls[:]
        b = KMeans(6, init=init, random_state=0).fit(X)
        assert not calls
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_ > 1


def _thread_chunk(block, w, index, *, seen):
    seen.append(threading.get_ident())
    return float(block.sum())


def test_one_off_passes_on_small_data_use_the_synchronous_scheduler(monkeypatch):
    X = da.from_array(np.random.default_rng(0).normal(size=(900, 3)), chunks=(50, 3))
    here = threading.get_ident()
    results, threads = [], []
    with dask.config.set(scheduler="threads", num_workers=2):
        for limit in (_inline.INLINE_BYTES, 0):
            monkeypatch.setattr(_inline, "INLINE_BYTES", limit)
            monkeypatch.setattr(_inline, "_SMALL_KEYS", {})  # the same keys come again
            seen: list = []
            graph = _graph.block_reduce(X, None, _thread_chunk, _combine, name="t",
                                        split_every=4, consts={"seen": seen})
            results.append(_graph.compute_passes(graph)[0])
            threads.append(set(seen))
    assert threads[0] == {here}  # small: the synchronous scheduler, in this thread
    assert here not in threads[1]  # above the limit: dask's worker threads
    assert results[0] == results[1]


def test_arrays_computed_from_small_data_count_as_small(monkeypatch):
    monkeypatch.setattr(_inline, "_SMALL_KEYS", {})
    X = da.from_array(np.ones((100, 2)), chunks=(10, 2))
    other = da.from_array(np.ones(100), chunks=10) * 2
    labels = X.map_blocks(lambda b: b[:, 0], drop_axis=1, dtype=float)
    assert not _inline.all_small([labels])
    _graph.block_reduce(X, None, _chunk, _combine, name="t", consts={"offset": 0.0})
    assert _inline.all_small([labels])  # X was noted with the pass over it
    assert not _inline.all_small([labels + other])  # another, unnoted root


def test_threads_pay_for_the_c_kernels_of_a_numpy_plan():
    """A NumPy plan's Lloyd pass runs on threads when its groups go to the C
    kernels (no GIL held), not when they go to the many short NumPy calls."""
    from dataclasses import replace

    from daskmeans.kernels import KernelPlan, _native

    plan = KernelPlan.numpy()
    C = np.zeros((140, 5))
    assert _inline._threads_pay(None) and _inline._threads_pay(plan) is False
    assert _inline._threads_pay(plan, {"centers": C, "bounds": [0, 32]}) == _native.available()
    assert _native.available()  # built at install (see tests/test_native.py)
    assert not _inline._threads_pay(plan, {"centers": C, "bounds": [0, 140]})
    assert not _inline._threads_pay(replace(plan, native_max_k=0),
                                    {"centers": C, "bounds": [0, 8]})
    assert not _inline._threads_pay(plan, {"centers": np.zeros((8, 65)), "bounds": [0, 8]})
