"""Sharing numba's on-disk cache safely between processes.

numba keeps a function's cache as an index (signature -> data file) and
numbered data files. Saving reads the index, takes the first free number,
writes the index, then the data. Two processes that compile different
signatures of one function at the same moment can both take the same number:
the index then names a file that holds the other signature's machine code,
and the next process to load it crashes (numba issues #4807 and #10128). A
reader between the index and the data write can meet the same mismatch. The
workers of a Dask cluster on one machine, started with an empty cache, are
exactly such processes.

:func:`guard` puts the saves and loads of a dispatcher's cache under an
advisory lock on a file in the cache folder (exclusive for a save, shared
for a load), so that every save sees the index of the one before. POSIX
only (``fcntl.flock``); elsewhere, or when the lock file cannot be opened,
the cache works as numba made it.

numba also judges a cache entry fresh by the stamp (modification time and
size) of the function's own source file only, while the compiled loops
inline code of the other kernel modules: the LLVM IR of :mod:`._llvm`, the
loops of :mod:`._numba_loops` called from :mod:`._bounds` and :mod:`._sparse`.
An edit of one of those would leave machine code built from the old source
in the cache. :func:`guard` therefore adds :func:`sources_stamp`, the stamps
of every module of this package, to the stamp numba checks.
"""

from __future__ import annotations

import contextlib
import functools
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "guard", "guard_namespace", "sources_stamp"]

#: The lock file, one per cache folder.
LOCK_NAME = "daskmeans-numba-cache.lock"


@contextlib.contextmanager
def _locked(path: str, exclusive: bool):
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # a read-only cache folder: nothing can be saved there anyway
            fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


@functools.cache
def sources_stamp(folder: str | None = None) -> tuple:
    """``(name, modification time in ns, size)`` of every Python module in
    ``folder`` (default: this package, :mod:`daskmeans.kernels`), by name.

    Part of the stamp of every guarded cache (see the module): an edit of any
    kernel module makes the entries cached before it stale.
    """
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    out = []
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError:  # pragma: no cover - an unreadable package folder
        return ()
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:  # pragma: no cover - removed meanwhile
            continue
        out.append((name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def guard(dispatcher):
    """Lock the cache saves and loads of a numba dispatcher and add
    :func:`sources_stamp` to the stamp of its entries (see the module);
    returns it. Dispatchers without a cache, or from a numba whose cache
    objects look otherwise, are returned untouched."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    folder = getattr(cache_file, "_cache_path", None)
    if folder is None or getattr(cache_file, "_daskmeans_guarded", False):
        return dispatcher
    if not (callable(getattr(cache_file, "save", None))
            and callable(getattr(cache_file, "load", None))):
        return dispatcher  # pragma: no cover - another numba
    lock = os.path.join(folder, LOCK_NAME)
    save, load = cache_file.save, cache_file.load

    def locked_save(*args, **kwargs):
        with _locked(lock, exclusive=True):
            return save(*args, **kwargs)

    def locked_load(*args, **kwargs):
        with _locked(lock, exclusive=False):
            return load(*args, **kwargs)

    cache_file.save = locked_save
    cache_file.load = locked_load
    if hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, sources_stamp())
    cache_file._daskmeans_guarded = True
    return dispatcher


def guard_namespace(namespace: dict) -> None:
    """:func:`guard` every numba dispatcher among the values of ``namespace``."""
    from numba.core.dispatcher import Dispatcher

    for value in list(namespace.values()):
        if isinstance(value, Dispatcher):
            guard(value)
