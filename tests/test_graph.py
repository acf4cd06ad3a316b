"""The one-pass tree reduction: shape of the graph, names, and results."""

import dask
import dask.array as da
import numpy as np
import pytest
from dask.utils import key_split

from daskmeans.engine._graph import block_reduce, resolve_split_every


def _chunk(block, w, index, *, offset):
    return float(block.sum()) + offset


def _combine(parts):
    return sum(parts)


def _graph_of(delayed):
    return dict(delayed.__dask_graph__())


@pytest.mark.parametrize("split_every", [2, 3, 8, 100])
def test_tree_fan_in_is_bounded(split_every):
    X = da.ones((1000, 2), chunks=(10, 2))
    d = block_reduce(X, None, _chunk, _combine, name="kmeans", split_every=split_every,
                     consts={"offset": 0.0})
    assert dask.compute(d)[0] == 2000.0
    dsk = _graph_of(d)
    combines = [k for k in dsk if key_split(k) == "kmeans-combine"]
    assert combines
    for key in combines:
        deps = dsk[key].dependencies if hasattr(dsk[key], "dependencies") else None
        if deps is not None:
            assert len([dk for dk in deps if "kmeans" in key_split(dk)]) <= split_every
    depth = max(k[1] for k in combines if isinstance(k, tuple)) + 1
    assert depth == int(np.ceil(np.log(100) / np.log(min(split_every, 100)) - 1e-9))


def test_task_names_are_meaningful():
    X = da.ones((100, 2), chunks=(10, 2))
    d = block_reduce(X, None, _chunk, _combine, name="kmeans", split_every=4,
                     consts={"offset": 1.0})
    prefixes = {key_split(k) for k in _graph_of(d)}
    assert {"kmeans-partial", "kmeans-combine", "kmeans-result"} <= prefixes
    assert dask.compute(d)[0] == 200.0 + 10


def test_same_result_for_every_split_every():
    rng = np.random.default_rng(0)
    X = da.from_array(rng.normal(size=(777, 3)), chunks=(50, 3))
    results = {
        s: dask.compute(block_reduce(X, None, _chunk, _combine, name="t", split_every=s,
                                     consts={"offset": 0.0}))[0]
        for s in (2, 5, 16)
    }
    ref = float(X.sum().compute())
    for value in results.values():
        assert value == pytest.approx(ref, rel=1e-12)


def test_split_every_resolution():
    assert resolve_split_every(4) == 4
    assert resolve_split_every(None) == 8
    with dask.config.set(split_every=5):
        assert resolve_split_every(None) == 5


def _vector_chunk(block, w, index):
    return block.sum(axis=0)


def _sequential_sum(parts):
    total = parts[0].copy()
    for p in parts[1:]:  # order-sensitive rounding: any change of tree shape shows
        total = total + p
    return total


@pytest.mark.parametrize("split_every", [3, 4, 8])
def test_batched_partials_are_bitwise_identical(split_every, monkeypatch):
    from daskmeans.engine import _graph

    rng = np.random.default_rng(1)
    X = rng.normal(size=(6400, 3)) * 10.0 ** rng.uniform(-8, 8, size=(6400, 1))
    Xd = da.from_array(X, chunks=(100, 3))  # 64 blocks
    out = {}
    with dask.config.set(scheduler="threads", num_workers=2):
        for name, limit in (("batched", 1 << 40), ("plain", 0)):
            monkeypatch.setattr(_graph, "BATCH_BYTES", limit)
            d = block_reduce(Xd, None, _vector_chunk, _sequential_sum, name="t",
                             split_every=split_every)
            parts = [k for k in _graph_of(d) if key_split(k) == "t-partial"]
            out[name] = (dask.compute(d)[0], len(parts))
    g = max(b for b in range(1, split_every + 1) if split_every % b == 0 and b <= 8)
    assert out["plain"][1] == 64 and out["batched"][1] == -(-64 // g) < 64
    assert out["batched"][0].tobytes() == out["plain"][0].tobytes()
    np.testing.assert_allclose(out["plain"][0], X.sum(axis=0), rtol=1e-12)


def test_no_batching_for_large_blocks_or_few_blocks():
    from daskmeans.engine._graph import batch_size

    with dask.config.set(scheduler="threads", num_workers=2):
        assert batch_size(da.ones((10 * 2**20, 8), chunks=(2**20, 8)), 8) == 1  # 64 MiB blocks
        assert batch_size(da.ones((700, 2), chunks=(100, 2)), 8) == 1  # 7 blocks
        assert batch_size(da.ones((6400, 2), chunks=(100, 2)), 8) == 8


def _offset_chunk(block, w, index, *, offset, seen=None):
    if seen is not None:
        seen.append(index)
    return float(block.sum()) + offset


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_pass_runner_builds_once_and_equals_fresh_passes(scheduler, monkeypatch):
    """Local schedulers: one graph for every call, constants swapped; the results
    are those of a fresh block_reduce graph with the same constants."""
    from daskmeans.engine import _graph, _inline

    monkeypatch.setattr(_inline, "DIRECT_BYTES", 0)  # small data: a graph all the same
    rng = np.random.default_rng(1)
    X = da.from_array(rng.normal(size=(700, 3)), chunks=(50, 3))
    with dask.config.set(scheduler=scheduler):
        want = [_graph.compute_passes(_graph.block_reduce(
                    X, None, _offset_chunk, _combine, name="t", split_every=4,
                    consts={"offset": float(o)}))[0]
                for o in range(4)]
        built = []
        real = _graph._build
        monkeypatch.setattr(_graph, "_build", lambda *a, **k: built.append(1) or real(*a, **k))
        run = _graph.PassRunner(X, None, _offset_chunk, _combine, name="t", split_every=4)
        got = [run({"offset": float(o)}) for o in range(4)]
    assert len(built) == 1
    assert got == want  # bitwise: the same tree over the same blocks
    assert got[3] - got[0] == pytest.approx(3 * 14)  # the constants did change: 14 blocks


def test_pass_runner_reads_every_block_once_per_call():
    from daskmeans.engine import _graph

    X = da.ones((100, 2), chunks=(10, 2))
    seen: list = []
    with dask.config.set(scheduler="threads"):
        run = _graph.PassRunner(X, None, _offset_chunk, _combine, name="t")
        for _ in range(3):
            assert run({"offset": 0.0, "seen": seen}) == 200.0
    assert sorted(seen) == sorted(list(range(10)) * 3)


def test_pass_runner_builds_fresh_graphs_for_other_schedulers(monkeypatch):
    """A scheduler that is not dask's local one (as a distributed Client) gets a
    new graph, through compute_passes, on every call."""
    from daskmeans.engine import _graph

    X = da.ones((60, 2), chunks=(10, 2))
    used = []

    def other_get(dsk, keys, **kwargs):
        used.append(1)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=other_get):
        run = _graph.PassRunner(X, None, _offset_chunk, _combine, name="t")
        assert [run({"offset": float(o)}) for o in (0, 1)] == [120.0, 126.0]
    assert len(used) == 2


def _order_sensitive_combine(parts):
    # not associative: any change in the tree's shape or order changes the result
    out = 0.0
    for p in parts:
        out = out * 1.000001 + p
    return out


@pytest.mark.parametrize("split_every", [2, 3, 8])
def test_grouped_tasks_rebuild_the_same_tree(split_every):
    """Any blocks-per-task grouping gives the bitwise result of one task per block."""
    from daskmeans.engine._graph import block_readers, blocks_per_task

    rng = np.random.default_rng(0)
    X = da.from_array(rng.random((1170, 3)), chunks=(10, 3), inline_array=True)
    assert block_readers(X) is not None
    args = (X, None, _chunk, _order_sensitive_combine)
    kw = {"name": "kmeans", "split_every": split_every, "consts": {"offset": 0.5}}
    with dask.config.set({"daskmeans.blocks-per-task": 1}):
        (ref,) = dask.compute(block_reduce(*args, **kw), scheduler="sync")
    seen = set()
    for forced in (2, 3, 4, 8, 9, 16, 27, 64, 117, 500):
        with dask.config.set({"daskmeans.blocks-per-task": forced}):
            g, depth = blocks_per_task(X, split_every)
            d = block_reduce(*args, **kw)
        seen.add((g, depth))
        assert g <= forced
        n_partial = sum(1 for k in _graph_of(d) if key_split(k) == "kmeans-partial")
        assert n_partial == -(-117 // g)
        (got,) = dask.compute(d, scheduler="sync")
        assert got == ref, (forced, g, depth)
    assert any(depth >= 2 for _, depth in seen)


def test_partial_tasks_read_their_own_blocks():
    """A pass over a Zarr-like source has no task per block read: the partial
    task reads it, so no block can travel between workers."""
    rng = np.random.default_rng(1)
    X = da.from_array(rng.random((200, 2)), chunks=(20, 2), inline_array=True)
    d = block_reduce(X, None, _chunk, _combine, name="kmeans", consts={"offset": 0.0})
    (opt,) = dask.optimize(d)
    names = {key_split(k) for k in dict(opt.__dask_graph__())}
    assert not any(n.startswith("array") for n in names), names
    assert dask.compute(d, scheduler="sync")[0] == pytest.approx(X.sum().compute())
    # blocks computed from other blocks (a rechunk): the partial tasks depend on their keys
    Xr = X.rechunk((30, 2))
    dr = block_reduce(Xr, None, _chunk, _combine, name="kmeans", consts={"offset": 0.0})
    assert any(isinstance(k, tuple) and k[0] == Xr.name for k in dict(dr.__dask_graph__()))
    assert dask.compute(dr, scheduler="sync")[0] == pytest.approx(X.sum().compute())


def test_tasks_per_thread_keeps_the_scheduler_share():
    """1 to TASKS_PER_THREAD tasks per thread; the scheduler's estimated share of a
    pass stays at most SCHEDULER_SHARE whenever more than one task per thread is used."""
    from daskmeans.engine import _graph as g

    assert g.tasks_per_thread(1e6, 4) == 1.0  # little data: every thread one task
    assert g.tasks_per_thread(1e15, 4) == g.TASKS_PER_THREAD  # much data: the cap
    for data, threads in [(1e12, 256), (1e13, 1600), (1e11, 16), (1e13, 256)]:
        per = g.tasks_per_thread(data, threads)
        assert 1.0 <= per <= g.TASKS_PER_THREAD
        seconds = data / (threads * g.THREAD_BYTES_PER_SECOND)
        share = per * threads * g.SCHEDULER_SECONDS_PER_TASK / seconds
        assert per == 1.0 or share <= g.SCHEDULER_SHARE + 1e-12


def _rows_chunk(block, w, index, *, seen):
    seen.append(index)
    return block[:, 0] * 2.0, float(block.sum())


def _sum_chunk(block, w, index, *, seen):
    return _rows_chunk(block, w, index, seen=seen)[1]


@pytest.mark.parametrize("rechunk", [False, True])
def test_rows_and_reduction_from_one_read_of_every_block(tmp_path, rechunk):
    """The per-row array, written by a store, and the reduction computed together
    read every block once, and the reduction is bitwise block_reduce's."""
    import zarr

    from daskmeans.engine._graph import compute_passes, map_reduce_row_blocks

    x = np.random.default_rng(2).random((200, 2))
    X = da.from_array(x, chunks=(20, 2), inline_array=True)
    if rechunk:  # blocks computed from other blocks: the tasks depend on their keys
        X = X.rechunk((30, 2))
    seen: list = []
    rows, total = map_reduce_row_blocks(X, None, _rows_chunk, _combine, name="t",
                                        dtype=np.float64, split_every=3,
                                        consts={"seen": seen})
    assert rows.chunks == (X.chunks[0],) and rows.dtype == np.float64
    target = zarr.create_array(store=str(tmp_path / "rows.zarr"), shape=(200,),
                               chunks=(X.chunks[0][0],), dtype="float64")
    stored = rows.store(target, lock=False, compute=False)
    with dask.config.set(scheduler="threads"):
        _, value = compute_passes(stored, total, optimize=False)
    assert sorted(seen) == list(range(X.numblocks[0]))
    np.testing.assert_array_equal(target[:], x[:, 0] * 2.0)
    ref = block_reduce(X, None, _sum_chunk, _combine, name="u", split_every=3,
                       consts={"seen": []}).compute(scheduler="sync")
    assert value == ref
    # each alone reads every block
    seen.clear()
    np.testing.assert_array_equal(rows.compute(scheduler="sync"), x[:, 0] * 2.0)
    assert sorted(seen) == list(range(X.numblocks[0]))
