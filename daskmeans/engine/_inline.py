"""Passes over small in-memory data, run in the calling thread without a scheduler.

On a few MiB of data a Lloyd pass reads its blocks in well under a millisecond
per block, while dask's local schedulers spend about as much or more on every
pass: ordering the graph, handing tasks to the thread pool and waiting for
them. :func:`inline_get` gives :class:`daskmeans.engine._graph.PassRunner` a
``get(dsk, key)`` that evaluates the pass's graph directly, in a topological
order computed once: the same tasks (the same per-block functions, seeds and
combine tree) called with the same arguments, so results are bitwise those of
the threaded and synchronous schedulers; only the threads are not used.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

__all__ = ["DIRECT_BYTES", "INLINE_BYTES", "DirectPass", "direct_map", "direct_pass",
           "inline_get"]

#: Largest data (bytes of the Dask array) whose passes run inline. Below it a
#: pass's work is at most a few milliseconds, comparable to what the threaded
#: scheduler spends on a pass; ``benchmarks/bench_startup.py --small`` compares.
INLINE_BYTES = 1 << 20

#: Largest data (bytes of the Dask array) whose passes under dask's local
#: schedulers skip the scheduler: a :class:`DirectPass` calls the block
#: function on every block (in a small thread pool above :data:`INLINE_BYTES`)
#: and combines the results in the order of the graph's tree. Dask's threaded
#: scheduler spends one to two milliseconds on every pass (ordering the graph,
#: handing tasks to its pool), a sizeable share of a pass over a few MiB.
DIRECT_BYTES = 32 << 20

try:
    from dask._task_spec import GraphNode as _GraphNode
except ImportError:  # pragma: no cover - older dask: no task objects, no inline passes
    _GraphNode = None


def inline_get(X, dsk: dict, out):
    """A ``get(dsk, out)`` that runs the graph inline, or None when it should not.

    Parameters
    ----------
    X : dask.array.Array
        The pass's data: inline only when its size is known and at most
        :data:`INLINE_BYTES`.
    dsk : dict
        The prepared (optimised, converted) graph; every value must be one of
        dask's task objects.
    out : key
        The result's key.
    """
    nbytes = getattr(X, "nbytes", math.nan)
    if _GraphNode is None or not (nbytes <= INLINE_BYTES):
        return None
    if not all(isinstance(v, _GraphNode) for v in dsk.values()):
        return None
    return _InlineGet(_topological(dsk, out), out)


def _topological(dsk: dict, out) -> tuple:
    """Keys ``out`` depends on (and ``out``), every key after its dependencies."""
    order: list = []
    done: set = set()
    stack = [(out, False)]
    while stack:
        key, expanded = stack.pop()
        if key in done:
            continue
        if expanded:
            done.add(key)
            order.append(key)
            continue
        stack.append((key, True))
        stack.extend((dep, False) for dep in dsk[key].dependencies if dep not in done)
    return tuple(order)


class _InlineGet:
    """``get(dsk, out)`` over a fixed order of keys (the graph's values may change)."""

    def __init__(self, order: tuple, out) -> None:
        self.order = order
        self.out = out

    def __call__(self, dsk: dict, out):
        if out != self.out:  # pragma: no cover - PassRunner always asks for its result
            raise KeyError(out)
        values: dict = {}
        for key in self.order:
            values[key] = dsk[key](values)
        return values[out]


# --------------------------------------------------------------------------- #
# One-off passes (compute_passes): dask's synchronous scheduler on small data
# --------------------------------------------------------------------------- #
#: Keys of graphs (pass results, label arrays) built over data of at most
#: :data:`INLINE_BYTES`; the most recent ones only.
_SMALL_KEYS: dict = {}
_MAX_KEYS = 256
_KEYS_LOCK = threading.Lock()  # fits may run in several threads at once


def note_small(X, key) -> None:
    """Remember that the graph computing ``key`` reads ``X``, and ``X`` itself, if
    ``X`` is small."""
    if getattr(X, "nbytes", math.nan) <= INLINE_BYTES:
        with _KEYS_LOCK:
            _SMALL_KEYS[key] = None
            _SMALL_KEYS[getattr(X, "name", key)] = None
            while len(_SMALL_KEYS) > _MAX_KEYS:
                _SMALL_KEYS.pop(next(iter(_SMALL_KEYS)))


def all_small(collections) -> bool:
    """Whether every collection (Delayed or Dask array) was noted by :func:`note_small`,
    or is a Dask array computed from noted arrays only (``X.map_blocks`` of one).

    Such passes run on dask's synchronous scheduler instead of its threads:
    the same tasks in one thread, so the same results, without handing a few
    sub-millisecond tasks to the thread pool.
    """
    from dask.array import Array
    from dask.delayed import Delayed

    for c in collections:
        if isinstance(c, Array):
            key = c.name
            if key not in _SMALL_KEYS and not _from_small_roots(c):
                return False
            continue
        elif isinstance(c, Delayed):  # (its attributes are lazy: ask for nothing else)
            key = c.key
        else:
            return False
        if key not in _SMALL_KEYS:
            return False
    return bool(collections)


def _from_small_roots(arr) -> bool:
    """Whether every layer of ``arr``'s graph that depends on no other is a noted array."""
    deps = getattr(arr.__dask_graph__(), "dependencies", None)
    if not deps:
        return False
    roots = [name for name, on in deps.items() if not on]
    return bool(roots) and all(name in _SMALL_KEYS for name in roots)


# --------------------------------------------------------------------------- #
# Direct passes: the block function and the combine tree without a graph
# --------------------------------------------------------------------------- #
_POOLS: dict = {}  # threads -> ThreadPoolExecutor
_POOL_LOCK = threading.Lock()


def _pool(n_threads: int):
    """The process-wide pool of ``n_threads`` threads (made on first use, kept: a
    fit in another thread may be using it)."""
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        pool = _POOLS.get(n_threads)
        if pool is None:
            pool = _POOLS[n_threads] = ThreadPoolExecutor(
                n_threads, thread_name_prefix="daskmeans-pass")
        return pool


def _direct_mode(X, weights) -> tuple | None:
    """``(x readers, weight readers, n_threads, blas_limit)`` for a direct pass over
    ``X``, or None when the pass must go through dask's scheduler.

    Direct passes apply to data of known size up to :data:`DIRECT_BYTES` whose
    every row block is read by a task of its own (see
    :func:`daskmeans.engine._graph.block_readers`; NumPy input always is),
    computed by dask's threaded or synchronous scheduler. Threads are used
    above :data:`INLINE_BYTES`, as many as dask's threaded scheduler would use;
    BLAS is limited to one thread per task exactly when the graph's pass
    would limit it.
    """
    import dask
    import dask.local
    import dask.threaded
    from dask.system import CPU_COUNT

    from ._blocks import block_readers, scheduler_of

    nbytes = getattr(X, "nbytes", math.nan)
    if not (nbytes <= DIRECT_BYTES) or X.ndim != 2 or X.numblocks[1] != 1:
        return None
    if any(math.isnan(c) for c in X.chunks[0]):
        return None
    try:
        get = scheduler_of([X])
    except Exception:  # noqa: BLE001 - be conservative
        return None
    if get not in (dask.threaded.get, dask.local.get_sync):
        return None
    reads = block_readers(X)
    wreads = None if weights is None else block_readers(weights)
    if reads is None or (weights is not None and wreads is None):
        return None
    n_workers = dask.config.get("num_workers", None) or CPU_COUNT
    threaded = get is dask.threaded.get
    n_threads = 1
    if threaded and nbytes > INLINE_BYTES and len(reads) > 1:
        n_threads = min(n_workers, len(reads))
    blas_limit = threaded and n_workers >= 2 and len(reads) >= 2
    return reads, wreads, n_threads, blas_limit


class DirectPass:
    """One pass as :func:`daskmeans.engine._graph.block_reduce` computes it, without
    a graph: ``chunk`` on every row block, then ``combine`` over groups of
    ``fan_in`` consecutive results, level by level, exactly as the graph's tree
    (whose grouping of blocks into tasks never changes its results): the same
    calls with the same arguments, so the result is bitwise the graph's.

    Call it with the pass's constants; see :func:`direct_pass`.
    """

    def __init__(self, reads, wreads, chunk: Callable, combine: Callable, fan_in: int,
                 finalize: Callable | None, n_threads: int, blas_limit: bool) -> None:
        self.reads = reads
        self.wreads = wreads
        self.chunk = chunk
        self.combine = combine
        self.fan_in = fan_in
        self.finalize = finalize
        self.n_threads = n_threads
        self.blas_limit = blas_limit

    def _leaf(self, i: int, consts: dict):
        w = None if self.wreads is None else self.wreads[i]()
        return self.chunk(self.reads[i](), w, i, **consts)

    def __call__(self, consts: dict):
        import contextlib

        from ._blocks import _shared_blas_limit

        n = len(self.reads)
        with _shared_blas_limit() if self.blas_limit else contextlib.nullcontext():
            if self.n_threads > 1 and _threads_pay(consts.get("plan"), consts):
                pool = _pool(self.n_threads)
                level = list(pool.map(self._leaf, range(n), [consts] * n))
            else:
                level = [self._leaf(i, consts) for i in range(n)]
        fan_in = self.fan_in
        while len(level) > 1:
            level = [self.combine(level[j : j + fan_in]) for j in range(0, len(level), fan_in)]
        return level[0] if self.finalize is None else self.finalize(level[0])


def _threads_pay(plan, consts: dict | None = None) -> bool:
    """Whether a pass with this kernel plan (and these constants) gains from threads.

    The NumPy kernels are many short vector operations, each taking and
    releasing the GIL: on two threads a pass over 100,000 x 8 float64 rows
    took 12.6 ms against 11.5 ms in one, 2.2 against 1.5 ms on 10,000 rows;
    the compiled kernels run without the GIL (5.6 against 8.5 ms on 100,000
    x 32 rows), as do passes whose plan is not known, and so does a NumPy
    plan's Lloyd pass whose centres the C kernels take (one call a group,
    see :mod:`daskmeans.kernels._native`).
    """
    if plan is None or bool(getattr(plan, "compiled", True)):
        return True
    centers = None if consts is None else consts.get("centers")
    bounds = None if consts is None else consts.get("bounds")
    if centers is None or bounds is None or getattr(plan, "native_max_k", 0) <= 0:
        return False
    from ..kernels import _native

    widest = max((int(b) - int(a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)), default=0)
    return _native.applies(centers, widest, plan.native_max_k)


def direct_pass(X, weights, chunk: Callable, combine: Callable, *, split_every=None,
                finalize: Callable | None = None) -> DirectPass | None:
    """A :class:`DirectPass` over ``X`` (see :func:`_direct_mode`), or None."""
    mode = _direct_mode(X, weights)
    if mode is None:
        return None
    from ._blocks import resolve_split_every

    reads, wreads, n_threads, blas_limit = mode
    return DirectPass(reads, wreads, chunk, combine, resolve_split_every(split_every),
                      finalize, n_threads, blas_limit)


def direct_map(X, func: Callable, *args, plan=None):
    """``np.concatenate([func(block, *args) for block in blocks])`` for data a
    direct pass would read (the same calls as ``X.map_blocks(func, *args)``
    computed), or None for other data. ``plan``: the kernel plan ``func``
    runs, which decides whether threads pay (see :func:`_threads_pay`)."""
    mode = _direct_mode(X, None)
    if mode is None:
        return None
    import contextlib

    import numpy as np

    from ._blocks import _shared_blas_limit

    reads, _, n_threads, blas_limit = mode
    with _shared_blas_limit() if blas_limit else contextlib.nullcontext():
        if n_threads > 1 and _threads_pay(plan):
            parts = list(_pool(n_threads).map(lambda r: func(r(), *args), reads))
        else:
            parts = [func(r(), *args) for r in reads]
    return np.concatenate(parts, axis=0)
