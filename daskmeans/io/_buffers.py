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

When a pool is dropped (its fit is over, or a task that carried it on a
distributed worker is done), its buffers are kept a few seconds for the
next pool of the process (:data:`RETAIN_SECONDS`; at most :data:`SPARE_BUFFERS`
of them and :data:`SPARE_BYTES` in all): a fit that follows another, as in a
search over k or a loop of fits, starts on memory already in use instead of
fresh pages, and so does every read task of a fold on a distributed worker,
whose pool arrives empty. A timer frees them when no pool took them in that
time; a forked child process starts without them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
import weakref

import numpy as np

__all__ = ["RETAIN_SECONDS", "SPARE_BUFFERS", "SPARE_BYTES", "BlockBuffers", "empty_block"]

_ACTIVE = threading.local()

#: Seconds the buffers of a dropped pool are kept for the next pool of the process.
RETAIN_SECONDS = 5.0
#: Most buffers kept between pools, and most bytes in them.
SPARE_BUFFERS = 16
SPARE_BYTES = 256 * 2**20


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
        #: Blocks given memory that an earlier block had used (of this pool or a dropped one).
        self.reused = 0
        # the free buffers outlive the pool for a while (see the module docstring)
        weakref.finalize(self, _SPARES.keep, self._free).atexit = False

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
            if buf is None:
                if self._made >= self.max_buffers or nbytes <= 0:
                    return np.empty(shape, dtype=dtype)
                self._made += 1
                buf = _SPARES.take(nbytes)
            if buf is not None:
                self.reused += 1
        if buf is None:
            buf = np.empty(nbytes, dtype=np.uint8)
        owner = _owner_type(nbytes).from_buffer(buf)
        weakref.finalize(owner, self._give_back, buf).atexit = False
        return np.frombuffer(owner, dtype=dtype).reshape(shape)

    def _give_back(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.setdefault(buf.nbytes, []).append(buf)


class _Spares:
    """Buffers of dropped pools, kept :data:`RETAIN_SECONDS` for the next pool."""

    def __init__(self) -> None:
        # re-entrant: a collection while the lock is held may drop another pool
        self._lock = threading.RLock()
        self._bufs: list[np.ndarray] = []
        self._timer: threading.Timer | None = None

    def __len__(self) -> int:
        return len(self._bufs)

    def keep(self, free: dict) -> None:
        """Take the free buffers of a pool that is being dropped (its finalizer)."""
        bufs = [b for group in list(free.values()) for b in group]
        free.clear()
        if not bufs or RETAIN_SECONDS <= 0:
            return
        with self._lock:
            kept, total = [], 0
            for buf in bufs + self._bufs:
                if len(kept) < SPARE_BUFFERS and total + buf.nbytes <= SPARE_BYTES:
                    kept.append(buf)
                    total += buf.nbytes
            self._bufs = kept
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(RETAIN_SECONDS, self.clear)
            self._timer.daemon = True
            try:
                self._timer.start()
            except RuntimeError:  # no new threads (interpreter shutdown): keep nothing
                self._bufs, self._timer = [], None

    def take(self, nbytes: int) -> np.ndarray | None:
        """A kept buffer of ``nbytes`` bytes, or None."""
        with self._lock:
            for i, buf in enumerate(self._bufs):
                if buf.nbytes == nbytes:
                    return self._bufs.pop(i)
        return None

    def clear(self) -> None:
        """Free every kept buffer."""
        with self._lock:
            self._bufs = []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _forget(self) -> None:
        """In a forked child: no timer runs there, so nothing is kept."""
        self._lock = threading.RLock()
        self._bufs = []
        self._timer = None


_SPARES = _Spares()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SPARES._forget)


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
