"""Opening Zarr arrays (local paths or fsspec URLs) and writing outputs atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import dask.array as da

__all__ = [
    "atomic_dir",
    "atomic_write_text",
    "is_path_like",
    "open_zarr",
    "open_zarr_array",
    "write_json",
]


def is_path_like(obj) -> bool:
    """True for a ``str`` or ``os.PathLike`` (a store path or URL)."""
    return isinstance(obj, str | os.PathLike)


def open_zarr_array(url, component: str | None = None, storage_options: dict | None = None):
    """Open a Zarr array read-only, with errors that name the problem.

    Parameters
    ----------
    url : str or os.PathLike
        Local path or fsspec URL (``s3://bucket/x.zarr``, ``file://...``) of a
        Zarr array, or of a group when ``component`` names the array in it.
    component : str, optional
        Path of the array inside the group at ``url``.
    storage_options : dict, optional
        Passed to fsspec for remote stores (credentials, endpoint_url, ...).

    Returns
    -------
    zarr.Array
    """
    import zarr

    url = os.fspath(url)
    kwargs = {}
    if storage_options:
        kwargs["storage_options"] = storage_options
    try:
        node = zarr.open(store=url, mode="r", path=component or "", **kwargs)
    except FileNotFoundError as exc:
        where = url if not component else f"{url} (component {component!r})"
        raise ValueError(
            f"X: no Zarr array found at {where!r}; expected the path or URL of an existing "
            "Zarr array."
        ) from exc
    if not hasattr(node, "shape") or not hasattr(node, "dtype"):
        members = []
        with contextlib.suppress(Exception):
            members = sorted(node.array_keys())
        hint = f" Arrays in it: {members}." if members else ""
        raise ValueError(
            f"X: {url!r} is a Zarr group, not an array; pass component=<array name> or the "
            f"array's own path.{hint}"
        )
    return node


def open_zarr(
    url,
    component: str | None = None,
    storage_options: dict | None = None,
    chunks=None,
) -> da.Array:
    """Open a Zarr array as a lazy Dask array, chunked along rows only.

    Nothing is read until the array is computed; every pass over the data
    streams it block by block.

    Parameters
    ----------
    url : str, os.PathLike or zarr.Array
        Local path, fsspec URL, or an already opened ``zarr.Array``.
    component : str, optional
        Array path inside a group.
    storage_options : dict, optional
        fsspec options for remote stores.
    chunks : int, tuple or str, optional
        Rows per block (int) or a full Dask chunks spec. Default: the stored
        row chunking, all columns in one block.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> X = daskmeans.open_zarr("data.zarr")  # doctest: +SKIP
    >>> X = daskmeans.open_zarr("s3://bucket/emb.zarr",
    ...                         storage_options={"anon": True})  # doctest: +SKIP
    """
    arr = url if hasattr(url, "shape") and not is_path_like(url) else open_zarr_array(
        url, component, storage_options
    )
    if chunks is None:
        if len(arr.shape) == 2:
            chunks = (arr.chunks[0], arr.shape[1])
        else:
            chunks = arr.chunks
    elif isinstance(chunks, int) and len(arr.shape) == 2:
        chunks = (chunks, arr.shape[1])
    return da.from_array(arr, chunks=chunks, name=f"zarr-{_token(arr)}", asarray=True, lock=False,
                         inline_array=True)


def _token(arr) -> str:
    from dask.base import tokenize

    store = getattr(arr, "store", None)
    path = getattr(arr, "path", "")
    return tokenize(str(store), path, arr.shape, str(arr.dtype), arr.chunks)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary sibling directory that is renamed to ``path`` on success.

    On error the temporary directory is removed and ``path`` is untouched. An
    existing ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
