"""Recycled memory for the row blocks a reader decodes while a fold holds several.

The mini-batch fold (:mod:`daskmeans.engine._fold`) keeps a few blocks in
memory at once: the ones read ahead of its chain of steps, and the leading
blocks of the initial sample. Every block read by
:class:`daskmeans.io._direct.DirectArray` is a fresh allocation of a whole
block, and with several alive glibc's allocator hands many of them back to
the kernel and takes new pages, which the kernel zero-fills on first touch
(on a virtual machine a few of those allocations cost tens of milliseconds;
see ``benchmarks/RESULTS.md``). A :class:`BlockBuffers` pool, made active
in the reading thread for the duration of a read (:meth:`BlockBuffers.active`),
gives the decoded block memory that an earlier block of the same size no
longer uses instead.

Memory goes back to the pool only once nothing refers to it: every block is
a NumPy array over a small *owner* object that shares the pooled buffer's
memory, and NumPy keeps that owner alive through every view, slice and
buffer export of the block (a copy does not refer to it). A weak-reference
finalizer on the owner returns the buffer when the last of them is gone, so
a block handed to user code, or one still referenced by a failed task, is
never overwritten. Outside an active pool, or past its bound on buffers,
blocks are plain ``numpy.empty`` arrays.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import threading
import weakref

import numpy as np

__all__ = ["BlockBuffers", "empty_block"]

_ACTIVE = threading.local()


class BlockBuffers:
    """A pool of block-sized buffers, reused once every view of a block is gone.

    Parameters
    ----------
    max_buffers : int
        Most buffers made by the pool (free or in use); past it, blocks are
        plain ``numpy.empty`` arrays. The pool never holds more memory than
        the most blocks alive at one time, and frees it when it is dropped.

    Notes
    -----
    A pool is local to a process: pickled (a task sent to a distributed
    worker), it arrives empty.
    """

    def __init__(self, max_buffers: int = 16) -> None:
        self.max_buffers = int(max_buffers)
        self._free: dict[int, list[np.ndarray]] = {}
        self._made = 0
        # re-entrant: a collection of garbage cycles while the lock is held may finalize
        # a block, whose finalizer gives its buffer back under the same lock
        self._lock = threading.RLock()
        #: Blocks given memory that an earlier block had used.
        self.reused = 0

    def __reduce__(self):
        return (BlockBuffers, (self.max_buffers,))

    def __repr__(self) -> str:
        return (f"BlockBuffers(made={self._made}, free={sum(map(len, self._free.values()))}, "
                f"reused={self.reused})")

    @contextlib.contextmanager
    def active(self):
        """Within it, blocks decoded in this thread (:func:`empty_block`) come from the pool."""
        previous = getattr(_ACTIVE, "pool", None)
        _ACTIVE.pool = self
        try:
            yield self
        finally:
            _ACTIVE.pool = previous

    def empty(self, shape: tuple, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` (writeable)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        with self._lock:
            free = self._free.get(nbytes)
            buf = free.pop() if free else None
            if buf is not None:
                self.reused += 1
            elif self._made < self.max_buffers and nbytes > 0:
                self._made += 1
            else:
                return np.empty(shape, dtype=dtype)
        if buf is None:
            buf = np.empty(nbytes, dtype=np.uint8)
        owner = _owner_type(nbytes).from_buffer(buf)
        weakref.finalize(owner, self._give_back, buf).atexit = False
        return np.frombuffer(owner, dtype=dtype).reshape(shape)

    def _give_back(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.setdefault(buf.nbytes, []).append(buf)


@functools.lru_cache(maxsize=16)
def _owner_type(nbytes: int) -> type:
    """A ctypes array type of ``nbytes`` bytes that takes weak references."""
    return type("BlockOwner", (ctypes.c_char * nbytes,), {})


def empty_block(shape: tuple, dtype) -> np.ndarray:
    """``numpy.empty(shape, dtype)``, from the pool active in this thread if any."""
    pool = getattr(_ACTIVE, "pool", None)
    if pool is None:
        return np.empty(shape, dtype=dtype)
    return pool.empty(shape, dtype)
