"""Graph building: map a kernel over row blocks and combine by a tree.

This is the only module that writes task graphs by hand. A *pass* is one
:func:`block_reduce` graph computed once: every row block of ``X`` is read by
exactly one ``<name>-partial`` task, whose small result travels up a tree of
``<name>-combine`` tasks with fan-in ``split_every``. No arithmetic on data
happens here; the functions passed in do it.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import dask.local
import dask.threaded
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.system import CPU_COUNT

from ._blocks import (  # noqa: F401 - re-exported
    DEFAULT_SPLIT_EVERY,
    _read,
    _Reader,
    _shared_blas_limit,
    block_readers,
    resolve_split_every,
    scheduler_of,
)

__all__ = [
    "BATCH_BYTES",
    "DEFAULT_SPLIT_EVERY",
    "PassRunner",
    "batch_size",
    "block_readers",
    "block_reduce",
    "blocks_per_task",
    "compute_passes",
    "map_reduce_row_blocks",
    "map_row_blocks",
    "map_selected_blocks",
    "resolve_split_every",
    "tasks_per_thread",
]

def _call_chunk(func, block, weights, index, consts):
    consts = consts.value if isinstance(consts, _Inline) else consts
    return func(_read(block), _read(weights), index, **consts)


class _Inline:
    """Constants carried by a task itself rather than by a key of their own."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _inline_consts(X, n_tasks: int) -> bool:
    """Whether partial tasks carry their constants on a distributed cluster.

    The scheduler spreads a pass's tasks over the workers when there are more
    than twice as many as worker threads ("root-ish" tasks, queued); fewer
    tasks that all depend on one small key are all sent to the worker holding
    it, and wait there to be stolen. Carrying the constants costs one copy
    per task, at most two per thread, about what the workers would fetch.
    """
    if _local_scheduler([X]):
        return False
    threads = _cluster_threads([X])
    return threads is not None and n_tasks <= 2 * threads


def _call_combine(func, parts):
    return func(parts)


def _call_read_chunks(func, combine, levels, blocks, weights, indices, consts):
    """Read and reduce consecutive blocks in one task, one block at a time.

    The results are combined in groups of ``fan_in`` for ``levels`` levels,
    exactly as the combine tree would (the batch starts on a multiple of
    ``fan_in ** levels``), and returned as the list of the nodes the tree
    continues from. Only one block is held at a time.
    """
    fan_in, depth = levels
    consts = consts.value if isinstance(consts, _Inline) else consts
    out = [func(_read(b), _read(w), i, **consts)
           for b, w, i in zip(blocks, weights, indices, strict=True)]
    for _ in range(depth):
        out = [combine(out[j : j + fan_in]) for j in range(0, len(out), fan_in)]
    return out


def _call_combine_flat(func, batches):
    """Combine the results of batched partial tasks, as if they were separate."""
    return func([part for batch in batches for part in batch])


#: Smallest data size in bytes of one partial task under the local threaded
#: scheduler; consecutive blocks are batched into one task up to it.
BATCH_BYTES = 32 << 20


def _local_scheduler(collections) -> bool:
    """Whether these collections will be computed by dask's threads or in sync."""
    try:
        scheduler = scheduler_of(collections)
    except Exception:  # pragma: no cover - be conservative
        return False
    return scheduler in (dask.threaded.get, dask.local.get_sync)


def batch_size(X: da.Array, fan_in: int) -> int:
    """Blocks per partial task: 1, or more for small blocks on local threads.

    Dask's local scheduler spends a few hundred microseconds of the GIL on
    every task, so with blocks of a few MiB it adds 10-30 % to a pass.
    Consecutive blocks are batched up to :data:`BATCH_BYTES` per task, keeping
    at least four tasks per thread, under the threaded (or synchronous)
    scheduler; clusters group blocks by :func:`blocks_per_task`. The batch
    size divides ``fan_in``, so the first
    level of the combine tree receives exactly the results it would receive
    without batching, in the same order: results are bitwise identical.
    """
    n_blocks = X.numblocks[0]
    rows = X.chunks[0]
    if n_blocks < 2 or any(math.isnan(r) for r in rows):
        return 1
    if not _local_scheduler([X]):
        return 1
    block_bytes = max(1, max(rows) * X.shape[1] * X.dtype.itemsize)
    n_threads = dask.config.get("num_workers", None) or CPU_COUNT
    want = min(BATCH_BYTES // block_bytes, n_blocks // (4 * n_threads))
    return max(g for g in range(1, fan_in + 1) if fan_in % g == 0 and g <= max(1, want))


#: Most partial tasks per worker thread that a pass aims at on a distributed
#: cluster (dask config ``daskmeans.tasks-per-thread``: an int, or "auto" for
#: the rule of :func:`tasks_per_thread`); beyond it blocks are grouped into
#: fewer, longer tasks (see :func:`blocks_per_task`).
TASKS_PER_THREAD = 4

#: Share of a pass that the scheduler's own work may take under "auto".
SCHEDULER_SHARE = 0.05

#: The distributed scheduler's CPU time per task of a pass, seconds (its
#: transitions, messages and bookkeeping), as ``benchmarks/bench_scale_out.py
#: --sweep`` measures it; used by "auto".
SCHEDULER_SECONDS_PER_TASK = 1e-3

#: Bytes one worker thread reads and reduces per second in a pass (a fast
#: case: the faster the pass, the fewer tasks it can afford); used by "auto".
THREAD_BYTES_PER_SECOND = 1e9

#: Most bytes of data one grouped partial task reads on a distributed cluster
#: (dask config ``daskmeans.task-bytes``). The blocks of a task are read one
#: at a time, so this bounds a task's duration, not its memory.
TASK_BYTES = 16 << 30


def tasks_per_thread(data_bytes: float, threads: int) -> float:
    """Partial tasks per worker thread that keep the scheduler's share of a pass small.

    A pass over ``data_bytes`` on ``threads`` worker threads lasts about
    ``data_bytes / (threads * THREAD_BYTES_PER_SECOND)`` seconds, and the
    scheduler spends ``SCHEDULER_SECONDS_PER_TASK`` on each of its
    ``tasks_per_thread * threads`` tasks, one after the other. Keeping that
    under :data:`SCHEDULER_SHARE` of the pass gives the number returned,
    between 1 (every thread busy) and :data:`TASKS_PER_THREAD` (some room to
    balance uneven workers). A large cluster on little data gets one task per
    thread: the scheduler's work then bounds the pass, whatever the grouping.
    """
    seconds = data_bytes / (max(1, threads) * THREAD_BYTES_PER_SECOND)
    per = SCHEDULER_SHARE * seconds / (SCHEDULER_SECONDS_PER_TASK * max(1, threads))
    return float(min(TASKS_PER_THREAD, max(1.0, per)))


def _cluster_threads(collections) -> int | None:
    """Worker threads of the distributed client that will compute, or None."""
    try:
        get = scheduler_of(collections)
    except Exception:  # pragma: no cover - be conservative
        return None
    client = getattr(get, "__self__", None)
    if client is None or not hasattr(client, "nthreads"):
        return None
    hit = _THREADS.get(id(client))
    now = time.monotonic()
    if hit is not None and hit[0]() is client and now - hit[1] < 2.0:
        return hit[2]
    try:
        n = max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a closing client: no grouping
        return None
    _THREADS.clear()
    _THREADS[id(client)] = (weakref.ref(client), now, n)
    return n


#: The last client asked for its worker threads: (weak reference, when, threads).
_THREADS: dict = {}


def _groupings(n_blocks: int, fan_in: int):
    """Blocks per task that keep the combine tree's order: ``h * fan_in**depth``
    with ``h`` dividing ``fan_in``, and only levels the tree really has."""
    depth = 0
    while True:
        unit = fan_in**depth
        if depth and n_blocks <= fan_in ** (depth - 1):
            return
        for h in range(1, fan_in + 1):
            if fan_in % h == 0 and (depth == 0 or h < fan_in):
                yield h * unit, depth
        if unit > n_blocks:
            return
        depth += 1


def blocks_per_task(X: da.Array, fan_in: int, *, fused: bool = True) -> tuple[int, int]:
    """``(g, depth)``: blocks read by one partial task, and the combine levels it does.

    Under dask's local threads: :func:`batch_size` (``depth`` 0). On a
    distributed cluster, when partial tasks read their own blocks (``fused``),
    a pass aims at :func:`tasks_per_thread` tasks per worker thread (1 to
    :data:`TASKS_PER_THREAD`): the scheduler's own time per task (about a
    millisecond) is then a small share of the pass however many blocks there
    are, and a task reads at most :data:`TASK_BYTES`. Memory is unchanged: a task holds one block
    at a time. ``g`` is ``h * fan_in**depth`` (``h`` dividing ``fan_in``) and
    the task combines its results ``depth`` levels up, exactly as the tree
    would, so results are bitwise the same for every grouping. The dask
    config ``daskmeans.blocks-per-task`` (an int) overrides the choice under
    any scheduler (rounded down to such a grouping);
    ``daskmeans.tasks-per-thread`` and ``daskmeans.task-bytes`` tune it.
    """
    n_blocks = X.numblocks[0]
    rows = X.chunks[0]
    if n_blocks < 2 or any(math.isnan(r) for r in rows):
        return 1, 0
    forced = dask.config.get("daskmeans.blocks-per-task", None)
    if forced in (None, "auto") and _local_scheduler([X]):
        return batch_size(X, fan_in), 0
    if not fused:
        return 1, 0
    if forced in (None, "auto"):
        threads = _cluster_threads([X])
        if threads is None:
            return 1, 0
        row_bytes = X.shape[1] * X.dtype.itemsize
        per_thread = dask.config.get("daskmeans.tasks-per-thread", "auto")
        if per_thread in (None, "auto"):
            per_thread = tasks_per_thread(X.shape[0] * row_bytes, threads)
        cap_bytes = int(dask.config.get("daskmeans.task-bytes", TASK_BYTES))
        block_bytes = max(1, max(rows) * row_bytes)
        want = min(int(n_blocks // max(1, float(per_thread) * threads)),
                   cap_bytes // block_bytes)
    else:
        want = int(forced)
    best = (1, 0)
    for g, depth in _groupings(n_blocks, fan_in):
        if g <= max(1, want) and g >= best[0]:
            best = (g, depth)
    return best


def block_reduce(
    X: da.Array,
    weights: da.Array | None,
    chunk: Callable[..., Any],
    combine: Callable[[list], Any],
    *,
    name: str,
    split_every: int | None = None,
    consts: dict | None = None,
    finalize: Callable[[Any], Any] | None = None,
) -> Delayed:
    """Build a one-pass tree reduction over the row blocks of ``X``.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Must have a single block along axis 1.
    weights : dask.array.Array of shape (n,) or None
        Chunked like the rows of ``X``.
    chunk : callable
        ``chunk(block, weight_block_or_None, block_index, **consts)`` returns a
        small result for one block.
    combine : callable
        ``combine(list_of_results)`` merges results of ``chunk`` or of itself.
    name : str
        Prefix of the task names, e.g. ``"kmeans"`` gives ``kmeans-partial``,
        ``kmeans-combine`` and ``kmeans-result`` in the dashboard.
    split_every : int, optional
        Fan-in of the combine tree (see :func:`resolve_split_every`).
    consts : dict, optional
        Small keyword arguments for ``chunk`` (centres, flags); stored once in
        the graph and shared by every partial task.
    finalize : callable, optional
        Applied to the root of the tree, in the ``<name>-result`` task.

    Returns
    -------
    dask.delayed.Delayed
        Computing it reads every block of ``X`` exactly once.
    """
    dsk, out, _ = _build(X, weights, chunk, combine, name=name, split_every=split_every,
                         consts=consts, finalize=finalize)
    return _delayed(X, weights, dsk, out)


def map_selected_blocks(X: da.Array, weights, chunk: Callable[..., Any], jobs: list,
                        *, name: str) -> list:
    """Compute ``chunk(block, weight_block, index, **consts)`` for a few blocks.

    ``jobs`` is a list of ``(block_index, consts)``. Every job is one task
    that reads its block itself when it can (see :func:`block_readers`), so
    only what ``chunk`` returns (a few rows) leaves the worker. Returns the
    results in the order of ``jobs`` (one ``compute``).
    """
    reads = block_readers(X)
    wreads = None if weights is None else block_readers(weights)
    fused = reads is not None and (weights is None or wreads is not None)
    token = tokenize(X.name, None if weights is None else weights.name, chunk, jobs, fused)
    key = f"{name}-{token}"
    dsk: dict = {}
    for j, (b, consts) in enumerate(jobs):
        xs = reads[b] if fused else (X.name, b, 0)
        ws = None if weights is None else (wreads[b] if fused else (weights.name, b))
        dsk[(key, j)] = (_call_chunk, chunk, xs, ws, b, consts)
    out = f"{name}-result-{token}"
    dsk[out] = (list, [(key, j) for j in range(len(jobs))])
    (res,) = compute_passes(_delayed(X, weights, dsk, out))
    return res


def _call_row_map(func, block, args, kwargs):
    args = args.value if isinstance(args, _Inline) else args
    return func(_read(block), *args, **kwargs)


def map_row_blocks(X: da.Array, func: Callable[..., np.ndarray], *args, dtype, token: str,
                   **kwargs) -> da.Array:
    """``X.map_blocks(func, *args, drop_axis=1, ...)`` whose tasks read their own blocks.

    A 1-D result with one value per row (labels), one task per row block.
    ``X.map_blocks`` fuses with the read of ``X`` only while nothing else
    follows it in the graph (a rechunk of the labels, as writing them to
    stored chunks does, keeps the read a task of its own, whose block the
    scheduler may ship). Here every task reads its block (see
    :func:`block_readers`); other arrays fall back to ``X.map_blocks``.
    ``args`` (centres) are stored once in the graph, or carried by every
    task when a cluster would otherwise send all tasks to one worker.
    """
    reads = block_readers(X) if X.ndim == 2 and X.numblocks[1] == 1 else None
    if reads is None:
        return X.map_blocks(func, *args, dtype=dtype, drop_axis=1, token=token, **kwargs)
    name = f"{token}-{tokenize(X.name, func, args, kwargs, dtype)}"
    args_key = f"{token}-args-{tokenize(name)}"
    n_blocks = X.numblocks[0]
    aref = _Inline(args) if _inline_consts(X, n_blocks) else args_key
    dsk = {(name, i): (_call_row_map, func, reads[i], aref, kwargs) for i in range(n_blocks)}
    layers, deps = {name: dsk}, {name: set()}
    if not isinstance(aref, _Inline):  # one task per block in the array's own layer
        layers[args_key] = {args_key: _Inline(args)}
        deps = {name: {args_key}, args_key: set()}
    graph = HighLevelGraph(layers, deps)
    from ._inline import note_small

    note_small(X, name)
    return da.Array(graph, name, chunks=(X.chunks[0],), dtype=dtype,
                    meta=np.empty((0,), dtype=dtype))


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


def map_reduce_row_blocks(
    X: da.Array,
    weights: da.Array | None,
    chunk: Callable[..., tuple],
    combine: Callable[[list], Any],
    *,
    name: str,
    dtype,
    split_every: int | None = None,
    consts: dict | None = None,
) -> tuple[da.Array, Delayed]:
    """One value per row and a tree reduction, from one read of every block.

    ``chunk(block, weight_block_or_None, block_index, **consts)`` returns
    ``(per_row, partial)``: a 1-D array with one value per row of the block
    (labels) and a small result that ``combine`` merges as in
    :func:`block_reduce`, with the same tree (fan-in ``split_every``): the
    reduction is bitwise that of :func:`block_reduce` with the same
    ``partial`` results. Computing the array and the reduction together
    (one ``dask.compute``, or the array written by a store computed with the
    reduction) reads every block once; each alone reads them all.

    Returns
    -------
    per_row : dask.array.Array of shape (n,), chunked like the rows of ``X``
    total : dask.delayed.Delayed
        The root of the tree.
    """
    if X.numblocks[1] != 1:
        raise ValueError("internal: X must have one block along the features axis")
    fan_in = resolve_split_every(split_every)
    consts = consts or {}
    reads = block_readers(X)
    wreads = None if weights is None else block_readers(weights)
    fused = reads is not None and (weights is None or wreads is not None)
    token = tokenize(X.name, None if weights is None else weights.name, chunk, combine,
                     consts, fan_in, fused)
    both, rows = f"{name}-partial-{token}", f"{name}-rows-{token}"
    part, comb = f"{name}-part-{token}", f"{name}-combine-{token}"
    n_blocks = X.numblocks[0]
    const_key = f"{name}-consts-{token}"
    cref = _Inline(consts) if fused and _inline_consts(X, n_blocks) else const_key
    dsk: dict = {} if isinstance(cref, _Inline) else {const_key: consts}
    for i in range(n_blocks):
        xs = reads[i] if fused else (X.name, i, 0)
        ws = None if weights is None else (wreads[i] if fused else (weights.name, i))
        dsk[(both, i)] = (_call_chunk, chunk, xs, ws, i, cref)
        dsk[(rows, i)] = (_first, (both, i))
        dsk[(part, i)] = (_second, (both, i))
    root = _combine_tree(dsk, [(part, i) for i in range(n_blocks)], 0, comb, combine, fan_in)
    out = f"{name}-result-{token}"
    dsk[out] = (_identity, root)
    total = _delayed(X, weights, dsk, out)
    # the same tasks as a layer of the array's own name (dask arrays cull by layer)
    per_row = da.Array(_layer(X, weights, dsk, rows), rows, chunks=(X.chunks[0],),
                       dtype=dtype, meta=np.empty((0,), dtype=dtype))
    return per_row, total


def _delayed(X, weights, dsk: dict, out) -> Delayed:
    from ._inline import note_small

    note_small(X, out)  # small data: compute_passes uses the synchronous scheduler
    return Delayed(out, _layer(X, weights, dsk, out))


def _layer(X, weights, dsk: dict, name: str) -> HighLevelGraph:
    """``dsk`` as the layer ``name``, depending on the graphs of ``X`` and the
    weights only when a task refers to their block keys."""
    if not _reads_keys(dsk, X, weights):  # every task reads its own blocks
        return HighLevelGraph.from_collections(name, dsk, dependencies=[])
    deps = [X] if weights is None else [X, weights]
    return HighLevelGraph.from_collections(name, dsk, dependencies=deps)


def _reads_keys(dsk: dict, X, weights) -> bool:
    """Whether some task of ``dsk`` depends on a block key of ``X`` or the weights.

    Tasks that read their own blocks hold :class:`_Reader` objects instead,
    and then the graphs of ``X`` and the weights are not needed at all.
    """
    names = {X.name} if weights is None else {X.name, weights.name}

    def refers(obj) -> bool:
        if isinstance(obj, tuple):
            if obj and obj[0] in names:
                return True
            return any(refers(o) for o in obj)
        if isinstance(obj, list):
            return any(refers(o) for o in obj)
        return False

    return any(refers(v) for v in dsk.values())


def _build(X, weights, chunk, combine, *, name, split_every, consts, finalize):
    """The layer of :func:`block_reduce`: ``(dsk, result key, consts key)``.

    Every partial task reads its own blocks when ``X`` (and the weights) are
    read by tasks of their own that depend on nothing (a Zarr or NumPy
    source, see :class:`_Reader`); otherwise it depends on the block keys.
    """
    if X.numblocks[1] != 1:
        raise ValueError("internal: X must have one block along the features axis")
    fan_in = resolve_split_every(split_every)
    consts = consts or {}
    wname = None if weights is None else weights.name
    reads = block_readers(X)
    wreads = None if weights is None else block_readers(weights)
    fused = reads is not None and (weights is None or wreads is not None)
    g, depth = blocks_per_task(X, fan_in, fused=fused)
    token = tokenize(X.name, wname, chunk, combine, consts, fan_in, finalize, g, depth, fused)
    const_key = f"{name}-consts-{token}"
    part = f"{name}-partial-{token}"
    dsk: dict = {const_key: consts}
    n_blocks = X.numblocks[0]
    # few tasks on a cluster: each carries the constants, or the scheduler would send
    # every task to the one worker that holds them (see _inline_consts)
    cref = _Inline(consts) if fused and _inline_consts(X, -(-n_blocks // g)) else const_key

    def xsrc(i):
        return reads[i] if fused else (X.name, i, 0)

    def wsrc(i):
        if weights is None:
            return None
        return wreads[i] if fused else (weights.name, i)

    comb = f"{name}-combine-{token}"
    level_no = 0
    if g == 1 and depth == 0:
        for i in range(n_blocks):
            dsk[(part, i)] = (_call_chunk, chunk, xsrc(i), wsrc(i), i, cref)
        level = [(part, i) for i in range(n_blocks)]
    else:
        # a task per g consecutive blocks, each returning the nodes of the tree's level
        # `depth` over its blocks (g // fan_in**depth of them, fewer in the last one)
        for b, start in enumerate(range(0, n_blocks, g)):
            idx = list(range(start, min(start + g, n_blocks)))
            dsk[(part, b)] = (_call_read_chunks, chunk, combine, (fan_in, depth),
                              [xsrc(i) for i in idx], [wsrc(i) for i in idx], idx, cref)
        batches = [(part, b) for b in range(-(-n_blocks // g))]
        if -(-n_blocks // fan_in**depth) == 1:  # the tasks made the whole tree
            level = [(_only, batches[0])]
        else:
            per = fan_in // (g // fan_in**depth)
            level = []
            for j in range(0, len(batches), per):
                key = (comb, level_no, j // per)
                dsk[key] = (_call_combine_flat, combine, batches[j : j + per])
                level.append(key)
            level_no = 1
    root = _combine_tree(dsk, level, level_no, comb, combine, fan_in)
    out = f"{name}-result-{token}"
    if isinstance(root, tuple) and root and root[0] is _only:
        dsk[out] = (_only_finalize, finalize or _identity, root[1])
    else:
        dsk[out] = (finalize, root) if finalize is not None else (_identity, root)
    return dsk, out, const_key


def _combine_tree(dsk: dict, level: list, level_no: int, comb: str, combine, fan_in: int):
    """Add the levels of ``<comb>`` tasks above ``level`` (numbered from
    ``level_no``), ``fan_in`` nodes each, to ``dsk``; returns the root's key."""
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), fan_in):
            key = (comb, level_no, j // fan_in)
            dsk[key] = (_call_combine, combine, list(level[j : j + fan_in]))
            nxt.append(key)
        level = nxt
        level_no += 1
    return level[0]


def _only(parts):  # pragma: no cover - a marker, never called
    raise AssertionError


def _only_finalize(finalize, parts):
    (root,) = parts
    return finalize(root)


def _identity(x):
    return x


class PassRunner:
    """The same one-pass reduction computed again and again with new ``consts``.

    Lloyd's iterations differ only in their centres, yet every
    :func:`block_reduce` + :func:`compute_passes` builds, tokenises, optimises
    and converts a new graph: about 3 ms of Python per pass before the first
    block is read (measured on 2,000,000 x 32 float32 rows in 32 blocks: the
    first kernel task started 3.4 to 5.6 ms into a pass of 30 to 40 ms).
    Under dask's local schedulers (threads or sync) the runner builds and
    optimises the graph once, and every call swaps the constants' node and
    hands the graph to the scheduler directly (median pass 33.4 ms instead
    of 36.9 ms, and 27.4 instead of 34.9 at best). On a ``distributed.Client``
    or another scheduler every call builds and computes a fresh graph as
    :func:`compute_passes` does. Small data (see
    :func:`daskmeans.engine._inline.direct_pass`) skips the graph: the block
    function and the combine tree are called directly. Results are the same
    in every case.

    Parameters
    ----------
    X, weights, chunk, combine, name, split_every, finalize
        As for :func:`block_reduce`.
    """

    def __init__(self, X, weights, chunk, combine, *, name: str, split_every=None,
                 finalize=None) -> None:
        self.args = (X, weights, chunk, combine)
        self.kwargs = {"name": name, "split_every": split_every, "finalize": finalize}
        self._prepared = None  # (dsk, result key, consts key, get, limit), or False

    def __call__(self, consts: dict):
        """Compute the pass with ``consts``; returns its (finalized) result."""
        if self._prepared is None:
            # small data: the same block calls and combine tree, without a graph
            self._prepared = self._direct() or self._prepare(consts)
        if callable(self._prepared):  # a DirectPass
            return self._prepared(consts)
        if self._prepared is False:
            (res,) = compute_passes(block_reduce(*self.args, consts=consts, **self.kwargs))
            return res
        dsk, out, const_key, get, limit = self._prepared
        dsk = dict(dsk)
        dsk[const_key] = _DataNode(const_key, consts) if _DataNode else consts
        with limit():
            return get(dsk, out)

    def single_block(self):
        """``(X, weights)`` of the only block, in memory, when the passes so far read
        one block directly (see :func:`daskmeans.engine._inline.direct_pass`) and
        call the block function on it alone (no combine); else None."""
        if self._prepared is None:
            self._prepared = self._direct()
        p = self._prepared
        reads = getattr(p, "reads", None)
        if reads is None or len(reads) != 1 or p.finalize is not None:
            return None
        return reads[0](), None if p.wreads is None else p.wreads[0]()

    def _direct(self):
        """A :class:`daskmeans.engine._inline.DirectPass` for this data, or None."""
        from ._inline import direct_pass

        return direct_pass(*self.args, split_every=self.kwargs["split_every"],
                           finalize=self.kwargs["finalize"])

    def _prepare(self, consts):
        layer, out, const_key = _build(*self.args, consts=consts, **self.kwargs)
        graph = _delayed(self.args[0], self.args[1], layer, out)
        try:
            get = scheduler_of([graph])
        except Exception:  # pragma: no cover - be conservative
            return False
        if get not in (dask.threaded.get, dask.local.get_sync):
            return False
        (opt,) = dask.optimize(graph)
        dsk = dict(opt.__dask_graph__())
        if const_key not in dsk or out not in dsk:  # pragma: no cover - renamed by dask
            return False
        if _convert_legacy_graph is not None:
            dsk = _convert_legacy_graph(dsk)
        limit = _shared_blas_limit if _wants_blas_limit([graph]) else contextlib.nullcontext
        # small in-memory data: the same tasks run inline, without the scheduler's cost
        from ._inline import inline_get

        get = inline_get(self.args[0], dsk, out) or get
        return dsk, out, const_key, get, limit


try:  # dask's task objects: a graph already converted is not converted again per call
    from dask._task_spec import DataNode as _DataNode
    from dask._task_spec import convert_legacy_graph as _convert_legacy_graph
except ImportError:  # pragma: no cover - older or newer dask: plain graphs work too
    _DataNode = _convert_legacy_graph = None


def compute_passes(*passes: Delayed, chain: bool = False, optimize: bool = True) -> tuple:
    """Compute several one-pass reductions together (they share the reads).

    Uses the active ``distributed.Client`` when there is one, dask's
    configured scheduler otherwise (threads by default). Under the local
    threaded scheduler BLAS is limited to one thread for the duration of the
    compute (see :func:`_blas_limit`).

    ``chain=True`` marks a pass whose tasks form a chain beside the reads (the
    fold of :mod:`daskmeans.engine._fold`): under the local threaded scheduler
    with ``num_workers`` threads (one a core by default) and dask's own pool,
    the chain gets a thread beyond them, so that ``num_workers`` reads stay in
    flight while it runs (reads wait on the disk and on the decompressor's
    hand-offs as well as on the cores).

    ``optimize=False`` computes the graphs as built: collections of different
    types (a store of an array and a Delayed) that share tasks then share
    them, where each type's optimisation would fuse its own copy.
    """
    from ._inline import all_small

    opt = {} if optimize else {"optimize_graph": False}
    with _blas_limit(passes):
        get = scheduler_of(list(passes))
        if get is dask.threaded.get:
            # the functions themselves: dask's lookup of a name or of the default
            # imports distributed
            if all_small(passes):
                get = dask.local.get_sync  # the same tasks, one thread
            elif chain and (n := _chain_workers()):
                return dask.compute(*passes, scheduler=get, num_workers=n, **opt)
            return dask.compute(*passes, scheduler=get, **opt)
        return dask.compute(*passes, **opt)


def _chain_workers() -> int | None:
    """Threads for a pass with a chain (see :func:`compute_passes`): the configured
    ``num_workers`` (default one a core) plus one, or None where dask's pool is a
    user's (``pool`` configured) or a single thread was asked for."""
    if dask.config.get("pool", None) is not None:
        return None
    n = dask.config.get("num_workers", None) or CPU_COUNT
    return n + 1 if n >= 2 else None


def _n_partial_tasks(passes) -> int:
    n = 0
    for p in passes:
        layer = p.__dask_graph__().layers.get(p.key) if hasattr(p, "key") else None
        if layer is None:
            return 1 << 30  # unknown: assume many
        n += sum(1 for k in layer if isinstance(k, tuple) and "-partial-" in k[0])
    return n


def _blas_limit(passes):
    """One BLAS thread per task while the local threaded scheduler runs the passes.

    Dask's threads already use every core; letting each task's matrix product
    start its own BLAS threads oversubscribes them. The limit is set once around
    the whole compute, never inside tasks (BLAS pools are process-wide). It is
    skipped for other schedulers (distributed workers set their own limits),
    for a single worker thread and for a pass of a single block, where BLAS
    threads are the only parallelism.
    """
    return _shared_blas_limit() if _wants_blas_limit(passes) else contextlib.nullcontext()


def _wants_blas_limit(passes) -> bool:
    """Whether :func:`_blas_limit` limits BLAS for these passes."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # pragma: no cover - a base dependency, but be tolerant
        return False
    try:
        scheduler = scheduler_of(list(passes))
    except Exception:  # pragma: no cover - be conservative
        return False
    if scheduler is not dask.threaded.get:
        return False
    n_workers = dask.config.get("num_workers", None) or CPU_COUNT
    return n_workers >= 2 and _n_partial_tasks(passes) >= 2
