"""Recycled block buffers: memory is reused only once nothing refers to a block."""

from __future__ import annotations

import gc
import pickle
import threading
import weakref

import numpy as np
import pytest
import zarr

import daskmeans
from daskmeans import MiniBatchKMeans
from daskmeans.engine import _fold
from daskmeans.io import _buffers
from daskmeans.io._buffers import BlockBuffers, empty_block

SHAPE = (1000, 8)


@pytest.fixture(autouse=True)
def _no_spares():
    """Every test starts without buffers kept from an earlier test's pools."""
    gc.collect()
    _buffers._SPARES.clear()
    yield
    _buffers._SPARES.clear()


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_block_is_writeable_contiguous_and_of_the_asked_type():
    pool = BlockBuffers()
    for dtype in (np.float32, np.float64, np.int64):
        a = pool.empty(SHAPE, dtype)
        assert a.shape == SHAPE and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        a[:] = 3
        assert (a == 3).all()


VIEWS = {
    "block": lambda a: a,
    "slice": lambda a: a[10:20],
    "transpose": lambda a: a.T,
    "memoryview": memoryview,
    "view_of_view": lambda a: a[::2][1:, 2:],
}


@pytest.mark.parametrize("keep", sorted(VIEWS))
def test_memory_is_not_reused_while_anything_refers_to_the_block(keep):
    pool = BlockBuffers()
    a = pool.empty(SHAPE, np.float32)
    a[:] = 7.0
    held = VIEWS[keep](a)
    start = _address(a)
    del a
    gc.collect()
    b = pool.empty(SHAPE, np.float32)  # needs memory while the first block is held
    b[:] = -1.0
    second = _address(b)
    assert not np.shares_memory(b, np.asarray(held))
    assert (np.asarray(held) == 7.0).all()
    assert pool.reused == 0
    del held, b
    gc.collect()
    c = pool.empty(SHAPE, np.float32)
    assert pool.reused == 1 and _address(c) in (start, second)


def test_a_copy_does_not_hold_the_memory():
    pool = BlockBuffers()
    a = pool.empty(SHAPE, np.float64)
    a[:] = 1.5
    rows = a[[1, 5, 9]]  # fancy indexing copies
    first = _address(a)
    del a
    b = pool.empty(SHAPE, np.float64)
    assert _address(b) == first and pool.reused == 1
    b[:] = 0.0
    assert (rows == 1.5).all()


def test_sizes_are_kept_apart_and_the_pool_is_bounded():
    pool = BlockBuffers(max_buffers=2)
    a = pool.empty((100, 4), np.float32)
    del a
    b = pool.empty((200, 4), np.float32)  # another size: a new buffer, not the free one
    assert pool.reused == 0
    c = pool.empty((200, 4), np.float32)  # past the bound: a plain array
    assert c.flags.owndata and not b.flags.owndata
    del b, c
    d = pool.empty((100, 4), np.float32)
    e = pool.empty((200, 4), np.float32)
    assert pool.reused == 2 and d.shape == (100, 4) and e.shape == (200, 4)


def test_empty_block_uses_the_pool_active_in_this_thread_only():
    pool = BlockBuffers()
    assert empty_block(SHAPE, np.float32).flags.owndata  # no pool: numpy.empty
    seen = []
    with pool.active():
        inner = empty_block(SHAPE, np.float32)
        other = threading.Thread(target=lambda: seen.append(empty_block(SHAPE, np.float32)))
        other.start()
        other.join()
        with BlockBuffers().active():
            assert not empty_block(SHAPE, np.float32).flags.owndata
        del inner
        assert not empty_block(SHAPE, np.float32).flags.owndata
    assert pool.reused == 1  # the block made after the nested pool closed reused `inner`'s
    assert seen[0].flags.owndata  # the other thread had no pool
    assert empty_block(SHAPE, np.float32).flags.owndata  # restored on exit


def test_a_block_collected_while_the_pool_is_locked_is_given_back():
    """A garbage collection inside the pool's lock may finalize a block held by a cycle."""
    pool = BlockBuffers()
    cycle = [pool.empty(SHAPE, np.float32)]
    cycle.append(cycle)
    del cycle

    def collect_under_the_lock():
        with pool._lock:  # as when a collection runs inside BlockBuffers.empty
            gc.collect()

    worker = threading.Thread(target=collect_under_the_lock, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the finalizer waited for the lock its own thread held"
    pool.empty(SHAPE, np.float32)
    assert pool.reused == 1


def test_a_pickled_pool_arrives_empty():
    pool = BlockBuffers(max_buffers=5)
    a = pool.empty(SHAPE, np.float32)
    del a
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.max_buffers == 5 and copy.reused == 0
    copy.empty(SHAPE, np.float32)
    assert copy.reused == 0 and pool.reused == 0


def test_readers_recycle_decoded_blocks_that_were_let_go(tmp_path):
    X = np.random.default_rng(0).normal(size=(6000, 8)).astype(np.float32)
    zarr.create_array(store=str(tmp_path / "x.zarr"), data=X, chunks=(1000, 8))
    Xd = daskmeans.open_zarr(str(tmp_path / "x.zarr"))
    readers = _fold.block_readers(Xd, None)
    held = [readers[b]()[0] for b in range(3)]  # all alive: three buffers
    for b, block in enumerate(held):
        np.testing.assert_array_equal(block, X[b * 1000 : (b + 1) * 1000])
    pool = readers[0].buffers
    assert pool.reused == 0
    del block
    del held[0]  # block 0 let go: block 3 takes its memory, blocks 1 and 2 keep theirs
    third = readers[3]()[0]
    assert pool.reused == 1
    np.testing.assert_array_equal(third, X[3000:4000])
    for b, block in zip((1, 2), held, strict=True):
        np.testing.assert_array_equal(block, X[b * 1000 : (b + 1) * 1000])


def test_fold_over_zarr_recycles_blocks_and_gives_the_same_centres(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 5)) * 4
    X = (centers[rng.integers(0, 6, 30_000)] + rng.normal(size=(30_000, 5))).astype(np.float32)
    zarr.create_array(store=str(tmp_path / "x.zarr"), data=X, chunks=(1000, 5))
    pools, reused = [], []

    class Spy(BlockBuffers):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(weakref.ref(self))

        def empty(self, shape, dtype):
            out = super().empty(shape, dtype)
            reused.append(self.reused)
            return out

    monkeypatch.setattr(_fold, "BlockBuffers", Spy)
    params = dict(n_clusters=6, batch_size=500, max_iter=2, max_no_improvement=None,
                  random_state=0, n_init=2, init_size=2000)
    pooled = MiniBatchKMeans(**params).fit(str(tmp_path / "x.zarr"))
    reads = 2 * daskmeans.open_zarr(str(tmp_path / "x.zarr")).numblocks[0]  # two passes
    assert len(pools) == 1 and len(reused) == reads and reused[-1] > 0, reused
    gc.collect()
    assert pools[0]() is None  # the pool goes with the fit's readers
    _buffers._SPARES.clear()  # and its buffers with the timer
    monkeypatch.setattr(_fold, "BUFFERS", 0)
    reused.clear()
    plain = MiniBatchKMeans(**params).fit(str(tmp_path / "x.zarr"))
    assert len(pools) == 2 and reused == [0] * reads
    np.testing.assert_array_equal(pooled.cluster_centers_, plain.cluster_centers_)
    assert pooled.inertia_ == plain.inertia_


def test_a_dropped_pools_buffers_go_to_the_next_pool():
    first = BlockBuffers(max_buffers=4)
    blocks = [first.empty(SHAPE, np.float32) for _ in range(3)]
    addresses = {_address(b) for b in blocks}
    other = first.empty((10, 3), np.float64)  # another size: kept apart, found by size
    kept_block = blocks.pop()  # still alive: its memory is not handed on
    kept_block[:] = 5.0
    del blocks, other, first
    gc.collect()  # the pool lives on while kept_block refers to it
    assert len(_buffers._SPARES) == 0
    del kept_block
    gc.collect()  # now the pool is dropped, with four free buffers
    assert len(_buffers._SPARES) == 4
    second = BlockBuffers(max_buffers=4)
    got = [second.empty(SHAPE, np.float32) for _ in range(3)]
    assert {_address(b) for b in got} == addresses and second.reused == 3
    got.append(second.empty((10, 3), np.float64))
    assert got[-1].shape == (10, 3) and second.reused == 4
    assert len(_buffers._SPARES) == 0
    fresh = second.empty((10, 3), np.float64)  # past the bound: a plain array
    assert second.reused == 4 and fresh.base is None


def test_kept_buffers_are_freed_after_the_retention_time(monkeypatch):
    monkeypatch.setattr(_buffers, "RETAIN_SECONDS", 1.0)
    pool = BlockBuffers()
    block = pool.empty((123, 4), np.float32)
    del block, pool
    gc.collect()
    assert _kept(123 * 4 * 4) == 1
    freed = weakref.ref(next(b for b in _buffers._SPARES._bufs if b.nbytes == 123 * 4 * 4))
    for _ in range(250):
        if len(_buffers._SPARES) == 0:
            break
        threading.Event().wait(0.02)
    assert len(_buffers._SPARES) == 0
    gc.collect()
    assert freed() is None  # the memory itself is released, not only forgotten
    assert BlockBuffers().empty(SHAPE, np.float32) is not None


def _kept(nbytes: int) -> int:
    """Buffers of ``nbytes`` bytes kept between pools."""
    return sum(1 for b in _buffers._SPARES._bufs if b.nbytes == nbytes)


def test_retention_is_bounded_and_can_be_turned_off(monkeypatch):
    nbytes = SHAPE[0] * SHAPE[1] * 4
    monkeypatch.setattr(_buffers, "SPARE_BUFFERS", 3)
    pool = BlockBuffers(max_buffers=8)
    blocks = [pool.empty(SHAPE, np.float32) for _ in range(6)]
    del blocks, pool
    gc.collect()
    assert len(_buffers._SPARES) == 3 and _kept(nbytes) == 3
    _buffers._SPARES.clear()
    monkeypatch.setattr(_buffers, "SPARE_BUFFERS", 16)
    monkeypatch.setattr(_buffers, "SPARE_BYTES", 2 * nbytes + 100)
    pool = BlockBuffers(max_buffers=8)
    blocks = [pool.empty(SHAPE, np.float32) for _ in range(4)] + [pool.empty((5, 5), np.int8)]
    del blocks, pool
    gc.collect()
    assert _kept(nbytes) == 2 and _kept(25) == 1  # what fits in the bytes, small ones too
    _buffers._SPARES.clear()
    monkeypatch.setattr(_buffers, "RETAIN_SECONDS", 0)
    pool = BlockBuffers()
    block = pool.empty(SHAPE, np.float32)
    del block, pool
    gc.collect()
    assert len(_buffers._SPARES) == 0


def test_a_fit_after_a_fit_starts_on_the_first_ones_buffers(tmp_path, monkeypatch):
    """The blocks of the first reads of a fit (the initial sample's and those read
    beside it) take the buffers of the fit before; the results are unchanged."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20_000, 4)).astype(np.float32)
    zarr.create_array(store=str(tmp_path / "x.zarr"), data=X, chunks=(1000, 4))
    pools = []

    class Spy(BlockBuffers):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(_fold, "BlockBuffers", Spy)
    params = dict(n_clusters=5, batch_size=1000, max_iter=1, max_no_improvement=None,
                  random_state=0, n_init=1, init_size=1000)
    first = MiniBatchKMeans(**params).fit(str(tmp_path / "x.zarr"))
    reads = daskmeans.open_zarr(str(tmp_path / "x.zarr")).numblocks[0]
    made, reused = pools[0]._made, pools[0].reused
    assert made >= 2 and reused == reads - made  # fresh buffers for the first reads only
    pools.clear()
    gc.collect()
    assert len(_buffers._SPARES) == made
    second = MiniBatchKMeans(**params).fit(str(tmp_path / "x.zarr"))
    assert pools[0].reused == reads  # every block on memory used before
    np.testing.assert_array_equal(first.cluster_centers_, second.cluster_centers_)
    assert first.inertia_ == second.inertia_


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork on this platform")
def test_a_forked_child_keeps_no_buffers():
    import multiprocessing

    pool = BlockBuffers()
    block = pool.empty(SHAPE, np.float32)
    del block, pool
    gc.collect()
    assert len(_buffers._SPARES) == 1
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as workers:
        assert workers.apply(_spares_in_process) == 0
    assert len(_buffers._SPARES) == 1


def _spares_in_process() -> int:
    return len(_buffers._SPARES)


def test_nothing_is_kept_when_no_timer_can_start(monkeypatch):
    """At interpreter shutdown no thread starts: the buffers are freed, not kept for ever."""

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(_buffers.threading.Timer, "start", refuse)
    pool = BlockBuffers()
    block = pool.empty(SHAPE, np.float32)
    del block, pool
    gc.collect()
    assert len(_buffers._SPARES) == 0
