"""The lowest layer of a pass: block readers, the combine tree's fan-in and
the shared BLAS limit.

Used by :mod:`daskmeans.engine._graph` (passes as Dask graphs) and by
:mod:`daskmeans.engine._inline` (the same passes run without a graph), so that
neither imports the other for them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from typing import TYPE_CHECKING

import dask
import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import dask.array as da

__all__ = ["DEFAULT_SPLIT_EVERY", "block_readers", "resolve_split_every", "scheduler_of"]


#: Fan-in of the combine tree when neither the caller nor dask's config sets one.
DEFAULT_SPLIT_EVERY = 8


def scheduler_of(collections):
    """``dask.base.get_scheduler(collections=collections)``, without importing
    ``distributed`` when it is not imported yet (no client can exist then, and
    its import costs more than a small pass: dask's own lookup imports it)."""
    if (sys.modules.get("distributed") is None and not dask.config.get("scheduler", None)
            and not dask.config.get("get", None)):
        gets = {c.__dask_scheduler__ for c in collections if c is not None}
        if len(gets) == 1:
            return gets.pop()
    return dask.base.get_scheduler(collections=collections)


def resolve_split_every(split_every: int | None) -> int:
    """Return the tree fan-in: the argument, dask's ``split_every`` config, or 8."""
    if split_every is None:
        split_every = dask.config.get("split_every", None)
        if isinstance(split_every, dict) or split_every is None:
            split_every = DEFAULT_SPLIT_EVERY
    return max(2, int(split_every))


class _Reader:
    """Reads one block of an array when called: the block's own root task.

    A pass whose partial task depends on a block *key* lets the distributed
    scheduler read the block in one task and reduce it in another, possibly
    on another worker, and then the block travels. Holding the read (a task
    of the array's optimised graph that has no dependencies: a Zarr getter,
    fused with its dtype conversion) as plain data of the partial task makes
    reading and reducing one task: only its small result leaves the worker.
    """

    __slots__ = ("node",)

    def __init__(self, node) -> None:
        self.node = node

    def __call__(self):
        return self.node({})


def _read(source):
    """A block: read by a :class:`_Reader`, or already a value."""
    return source() if isinstance(source, _Reader) else source


#: Arrays whose block readers were looked up, by name (a name is a hash of the graph).
_READERS: dict = {}


def _is_root_read(node, Task, DataNode) -> bool:
    """A task that depends on nothing, or a NumPy block held in the graph
    (never a reference to data elsewhere, such as a persisted block)."""
    if type(node) is Task:
        return not node.dependencies
    return type(node) is DataNode and isinstance(node.value, np.ndarray)


def block_readers(arr: da.Array) -> list | None:
    """A :class:`_Reader` per row block of ``arr``, or None when a block is not
    read by a task of its own that depends on nothing (persisted blocks, a
    rechunk, NumPy data stored as one key, ...)."""
    name = arr.name
    hit = _READERS.get(name)
    if hit is not None and hit[0]() is arr.dask:  # persisted arrays keep their names
        return hit[1]
    readers = None
    try:
        from dask._task_spec import DataNode, Task, convert_legacy_graph

        keys = [(name, i, 0) if arr.ndim == 2 else (name, i) for i in range(arr.numblocks[0])]
        if arr.ndim in (1, 2) and (arr.ndim == 1 or arr.numblocks[1] == 1):
            graph = arr.__dask_optimize__(arr.__dask_graph__(), keys)
            graph = convert_legacy_graph(dict(graph))
            nodes = [graph.get(k) for k in keys]
            if all(_is_root_read(n, Task, DataNode) for n in nodes):
                readers = [_Reader(n) for n in nodes]
    except Exception:  # noqa: BLE001 - unknown graph shapes: depend on the block keys
        readers = None
    if len(_READERS) >= 16:
        _READERS.pop(next(iter(_READERS)))
    try:  # a weak reference: the cache must not keep persisted blocks alive
        _READERS[name] = (weakref.ref(arr.dask), readers)
    except TypeError:  # pragma: no cover - a graph type without weak references
        pass
    return readers


_LIMIT_LOCK = threading.Lock()
_LIMIT_STATE: dict = {"depth": 0, "limiter": None, "controller": None, "n_modules": -1}


def _controller():
    """A ``ThreadpoolController``, made again only when modules were imported.

    Finding the loaded BLAS libraries costs a few milliseconds, paid on every
    pass before; a new library can only arrive with a new (extension) module.
    Call with ``_LIMIT_LOCK`` held.
    """
    from threadpoolctl import ThreadpoolController

    n_modules = len(sys.modules)
    if _LIMIT_STATE["controller"] is None or _LIMIT_STATE["n_modules"] != n_modules:
        _LIMIT_STATE["controller"] = ThreadpoolController()
        _LIMIT_STATE["n_modules"] = n_modules
    return _LIMIT_STATE["controller"]


@contextlib.contextmanager
def _shared_blas_limit():
    """Reference-counted BLAS limit: fits running in several threads at once
    share one limit, set by the first to enter and restored by the last to
    leave (nested limits restored out of order would leave BLAS limited)."""
    with _LIMIT_LOCK:
        if _LIMIT_STATE["depth"] == 0:
            _LIMIT_STATE["limiter"] = _controller().limit(limits=1, user_api="blas")
        _LIMIT_STATE["depth"] += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_STATE["depth"] -= 1
            if _LIMIT_STATE["depth"] == 0:
                _LIMIT_STATE["limiter"].restore_original_limits()
                _LIMIT_STATE["limiter"] = None
