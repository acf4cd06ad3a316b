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
"""

from __future__ import annotations

import contextlib
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "guard", "guard_namespace"]

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


def guard(dispatcher):
    """Lock the cache saves and loads of a numba dispatcher (see the module);
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
    cache_file._daskmeans_guarded = True
    return dispatcher


def guard_namespace(namespace: dict) -> None:
    """:func:`guard` every numba dispatcher among the values of ``namespace``."""
    from numba.core.dispatcher import Dispatcher

    for value in list(namespace.values()):
        if isinstance(value, Dispatcher):
            guard(value)
