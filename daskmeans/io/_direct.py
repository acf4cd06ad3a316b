"""Reading row blocks of whole stored Zarr chunks straight into the block.

Zarr decodes a chunk into a buffer of its own and then copies it into the
array it returns. For the blocks :func:`daskmeans.open_zarr` makes (whole
stored row chunks, all columns) that is one more 16 MiB buffer per chunk,
freshly allocated, so the kernel zero-fills every one of its pages, plus a
copy, on Zarr's event-loop thread: a large share of a read pass's CPU (see
``benchmarks/RESULTS.md``).

:class:`DirectArray` wraps a ``zarr.Array`` for ``dask.array.from_array``.
A block that is a run of whole row chunks spanning all columns is read by
fetching the chunks' bytes through the array's own store (any store Zarr
opens: local, fsspec) and decompressing each one into its rows of the
block. Only plain layouts qualify (:func:`direct_plan`): zarr-python 3, two
dimensions, one chunk across the columns, native little-endian numbers, no
sharding, no filters or array-to-array codecs, and zstd, blosc or no
compression. Anything else, and any chunk whose decoded size is not the
chunk's, is read by Zarr itself, so the result is always what ``arr[...]``
gives.

Chunks in a local directory (Zarr's ``LocalStore``) are read from their files
by the reading thread itself (:func:`_read_file`), one after another, each
decoded before the next is read (uncompressed ones straight into their rows
of the block, :func:`_read_file_into`): Zarr's store would hand every read to its
event-loop thread and from there to a thread pool, and those hand-offs leave
the cores idle while several threads read (see ``benchmarks/RESULTS.md``).
A compressed chunk file is memory-mapped and decoded from the mapping, which
saves copying its bytes out of the page cache first (a tenth of a chunk's
read time; ``benchmarks/RESULTS.md``). Dask's configuration
``daskmeans.memory-map`` (default True) set to False reads the file into a
buffer instead: a mapped file that another program truncates while it is
being decoded stops the process with SIGBUS, where a read would raise. Zarr
itself (version 2, and 3 from 3.1.3) replaces chunk files by renaming
complete ones into place, which leaves a mapping intact.
Any other store (object storage, memory, wrappers) is fetched through Zarr,
the chunks of a block concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import mmap
import os
import sys
from dataclasses import dataclass

import numpy as np

from ._buffers import empty_block

__all__ = ["DirectArray", "direct_plan", "wrap"]

_ZSTD_MAGIC = 0xFD2FB528


@dataclass(frozen=True)
class DirectPlan:
    """What :class:`DirectArray` needs to read whole chunks itself."""

    kind: str  # "zstd", "blosc" or "raw"
    chunk_rows: int
    fill_value: object


def direct_plan(arr) -> DirectPlan | None:
    """How whole row chunks of ``arr`` can be decoded into a block, or None.

    None means the layout is not one this module reads (see the module
    docstring): every read then goes through Zarr.
    """
    try:
        return _plan(arr)
    except Exception:  # noqa: BLE001 - an unknown Zarr version or layout: let Zarr read it
        return None


def _plan(arr) -> DirectPlan | None:
    import zarr

    if int(zarr.__version__.split(".")[0]) < 3 or sys.byteorder != "little":
        return None
    meta = arr.metadata
    dtype = np.dtype(arr.dtype)
    if (len(arr.shape) != 2 or arr.shape[0] == 0 or int(arr.chunks[1]) != int(arr.shape[1])
            or dtype.kind not in "biuf" or not dtype.isnative or arr.fill_value is None):
        return None
    if meta.zarr_format == 3:
        from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

        if getattr(arr, "shards", None) or getattr(meta, "storage_transformers", ()):
            return None
        codecs = list(meta.codecs)
        head, rest = codecs[0], codecs[1:]
        endian = getattr(head, "endian", None)
        if type(head) is not BytesCodec or (endian is not None and endian.value != "little"):
            return None
        kinds = {ZstdCodec: "zstd", BloscCodec: "blosc"}
        if len(rest) > 1 or (rest and type(rest[0]) not in kinds):
            return None
        kind = kinds[type(rest[0])] if rest else "raw"
    elif meta.zarr_format == 2:
        from numcodecs import Blosc, Zstd

        if meta.filters or meta.order != "C":
            return None
        comp = meta.compressor
        kinds = {Zstd: "zstd", Blosc: "blosc"}
        if comp is not None and type(comp) not in kinds:
            return None
        kind = kinds[type(comp)] if comp is not None else "raw"
    else:
        return None
    # the pieces used to fetch chunks must be there (private in zarr-python 3)
    arr._async_array.store_path  # noqa: B018
    from zarr.core.buffer import default_buffer_prototype  # noqa: F401
    from zarr.core.sync import sync  # noqa: F401

    return DirectPlan(kind, int(arr.chunks[0]), arr.fill_value)


def wrap(arr):
    """``arr`` as a :class:`DirectArray` when its layout qualifies, else ``arr`` itself."""
    plan = direct_plan(arr)
    return arr if plan is None else DirectArray(arr, plan)


class DirectArray:
    """A ``zarr.Array`` whose whole-chunk row blocks are decoded straight into the block.

    Made by :func:`wrap`; pass it to ``dask.array.from_array``. Indexing with
    ``(slice(r0, r1), slice(None))`` where ``r0`` and ``r1`` fall on stored
    chunk boundaries (or ``r1`` is the last row) takes the direct path; any
    other index is handed to the Zarr array.

    Parameters
    ----------
    arr : zarr.Array
    plan : DirectPlan
        From :func:`direct_plan`.
    """

    def __init__(self, arr, plan: DirectPlan) -> None:
        self.arr = arr
        self.plan = plan
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(arr.chunks)

    def __repr__(self) -> str:
        return f"DirectArray({self.arr!r}, {self.plan.kind})"

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        rows = self._whole_chunks(index)
        if rows is None:
            return self.arr[index]
        try:
            out = self._read(*rows)
        except (AttributeError, ImportError):  # zarr's private pieces changed: let Zarr read
            out = None
        return self.arr[index] if out is None else out

    def _whole_chunks(self, index) -> tuple[int, int] | None:
        """``(r0, r1)`` when ``index`` selects whole row chunks and every column."""
        if not isinstance(index, tuple) or len(index) != 2:
            return None
        rows, cols = index
        if not isinstance(rows, slice) or not isinstance(cols, slice):
            return None
        n, d = self.shape
        r0, r1, rstep = rows.indices(n)
        c0, c1, cstep = cols.indices(d)
        size = self.plan.chunk_rows
        if rstep != 1 or cstep != 1 or (c0, c1) != (0, d) or r1 <= r0:
            return None
        if r0 % size or (r1 % size and r1 != n):
            return None
        return r0, r1

    def _read(self, r0: int, r1: int) -> np.ndarray | None:
        """Rows ``r0:r1`` (whole chunks), or None when a chunk must be left to Zarr."""
        size, d = self.plan.chunk_rows, self.shape[1]
        first, stop = r0 // size, -(-r1 // size)
        meta = self.arr.metadata
        keys = [meta.encode_chunk_key((i, 0)) for i in range(first, stop)]
        store_path = self.arr._async_array.store_path
        folder = _local_folder(store_path)
        if folder is not None and self.plan.kind == "raw":
            return self._read_raw_files(folder, keys, first, r0, r1)
        if folder is None:
            raw = (None if buf is None else buf.as_numpy_array()
                   for buf in _fetch(store_path, keys))
        else:  # one chunk at a time, each decoded before the next is read
            mapped = _memory_map()
            raw = (_read_file(os.path.join(folder, key), mapped) for key in keys)
        out = empty_block((r1 - r0, d), self.dtype)  # a fold's pool, if active
        for i, src in zip(range(first, stop), raw, strict=True):
            a = i * size - r0
            b = min(a + size, r1 - r0)
            if src is None:  # never written: the fill value, as Zarr reads it
                out[a:b] = self.plan.fill_value
                continue
            whole = b - a == size
            # the array's last chunk is stored whole, rows past the end included
            dest = out[a:b] if whole else np.empty((size, d), dtype=self.dtype)
            flat = dest.reshape(-1).view(np.uint8)
            if not _decode_into(self.plan.kind, src, flat):
                return None
            if not whole:
                out[a:b] = dest[: b - a]
        return out

    def _read_raw_files(self, folder: str, keys: list, first: int, r0: int, r1: int):
        """:meth:`_read` of uncompressed chunks in local files: each file is read
        straight into its rows of the block (no buffer of its own, no copy)."""
        size, d = self.plan.chunk_rows, self.shape[1]
        out = empty_block((r1 - r0, d), self.dtype)  # a fold's pool, if active
        chunk_bytes = size * d * self.dtype.itemsize
        for i, key in enumerate(keys, start=first):
            a = i * size - r0
            b = min(a + size, r1 - r0)
            # the array's last chunk is stored whole, rows past the end included
            got = _read_file_into(os.path.join(folder, key), out[a:b].reshape(-1).view(np.uint8),
                                  chunk_bytes)
            if got is None:  # never written: the fill value, as Zarr reads it
                out[a:b] = self.plan.fill_value
            elif not got:
                return None
        return out


def _read_file_into(path: str, dest: np.ndarray, size: int) -> bool | None:
    """Fill ``dest`` (uint8) with the first bytes of the file ``path`` when the file
    holds ``size`` bytes: True; False when it holds another number; None when
    there is no such file (as Zarr's ``LocalStore``)."""
    f = _open_chunk(path)
    if f is None:
        return None
    with f:
        return os.fstat(f.fileno()).st_size == size and _fill(f, dest) == dest.nbytes


def _open_chunk(path: str):
    """The chunk file ``path`` opened unbuffered for reading, or None when there is none."""
    try:
        return open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _fill(f, dest: np.ndarray) -> int:
    """Read the open file ``f`` into ``dest`` (uint8) until it is full or the file
    ends; returns the bytes read."""
    got = 0
    while got < dest.nbytes:  # readinto may return fewer bytes than asked
        n = f.readinto(dest[got:])
        if not n:
            break
        got += n
    return got


def _fetch(store_path, keys: list) -> list:
    """The stored bytes of ``keys`` (None for a missing chunk), fetched concurrently."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    proto = default_buffer_prototype()

    async def get_all():
        return await asyncio.gather(*((store_path / key).get(prototype=proto) for key in keys))

    return list(sync(get_all()))


def _local_folder(store_path) -> str | None:
    """The directory holding the array's chunk files when its store is Zarr's own
    ``LocalStore`` (not a subclass or a wrapper, which may read differently), else None."""
    from zarr.storage import LocalStore

    store = store_path.store
    if type(store) is not LocalStore:
        return None
    return os.path.join(os.fspath(store.root), store_path.path)


def _memory_map() -> bool:
    """Dask's configuration ``daskmeans.memory-map`` (default True): whether
    :func:`_read_file` maps chunk files rather than reading them."""
    import dask

    return bool(dask.config.get("daskmeans.memory-map", True))


def _read_file(path: str, mapped: bool = False) -> np.ndarray | None:
    """The bytes of the file ``path`` (None when there is none, as Zarr's ``LocalStore``).

    With ``mapped``, a read-only view of the file memory-mapped (an empty file
    is read, as it cannot be mapped): the mapping is released when the last
    view of the array is gone.
    """
    f = _open_chunk(path)
    if f is None:
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        if mapped and size:
            return np.frombuffer(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ), np.uint8)
        buf = np.empty(size, dtype=np.uint8)
        return buf[: _fill(f, buf)]


def _decode_into(kind: str, src: np.ndarray, dest: np.ndarray) -> bool:
    """Decode one chunk's bytes into ``dest`` (uint8); False when its size is not ``dest``'s."""
    if kind == "raw":
        if src.nbytes != dest.nbytes:
            return False
        dest[:] = src
        return True
    if kind == "zstd":
        if zstd_content_size(src) != dest.nbytes:
            return False  # unknown in the frame, several frames, or another size
        _zstd().decode(src, out=dest)
        return True
    from numcodecs import blosc

    # a Blosc (1.x) header: version, versionlz, flags, typesize, then nbytes (uint32 LE)
    if src.nbytes < 16 or int.from_bytes(bytes(src[4:8]), "little") != dest.nbytes:
        return False
    blosc.decompress(src, dest)
    return True


def zstd_content_size(src: np.ndarray) -> int | None:
    """Decompressed size written in a zstd frame's header, or None when absent.

    Follows the frame header layout of RFC 8878, section 3.1.1.1.
    """
    if src.nbytes < 6 or int.from_bytes(bytes(src[:4]), "little") != _ZSTD_MAGIC:
        return None
    fhd = int(src[4])
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0 or src.nbytes < pos + width:
        return None
    value = int.from_bytes(bytes(src[pos : pos + width]), "little")
    return value + 256 if width == 2 else value


@functools.cache
def _zstd():
    """A numcodecs Zstd codec (decoding needs none of the settings it was written with)."""
    from numcodecs import Zstd

    return Zstd()
