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

__all__ = ["INLINE_BYTES", "inline_get"]

#: Largest data (bytes of the Dask array) whose passes run inline. Below it a
#: pass's work is at most a few milliseconds, comparable to what the threaded
#: scheduler spends on a pass; ``benchmarks/bench_startup.py --small`` compares.
INLINE_BYTES = 1 << 20

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
