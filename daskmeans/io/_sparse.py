"""CSR matrices stored in Zarr groups (the layout AnnData writes), read by row blocks.

A group with the attribute ``encoding-type: csr_matrix``, its ``shape``
attribute and the arrays ``data``, ``indices`` and ``indptr`` holds a CSR
matrix. :func:`open_sparse_group` turns it into a Dask array whose blocks are
``scipy.sparse.csr_matrix`` row blocks: the task of a block reads the slice
``indptr[start : stop + 1]`` and then only the stored values and column
indices of its rows, ``data[lo:hi]`` and ``indices[lo:hi]``. Nothing reads
the whole matrix, nor the whole ``indptr``.
"""

from __future__ import annotations

import contextlib
import os

import dask.array as da
import numpy as np
from dask.base import tokenize

__all__ = ["open_sparse_group", "sparse_group"]

_ENCODING = "encoding-type"


def _is_group(node) -> bool:
    return hasattr(node, "attrs") and hasattr(node, "array_keys") and not hasattr(node, "dtype")


def sparse_group(url, component: str | None = None, storage_options: dict | None = None):
    """The Zarr group at ``url`` if it holds a sparse matrix, else None.

    ``url`` may be a path, an fsspec URL or an open ``zarr.Group``. Anything
    that is not such a group (a plain array, a missing path) gives None, so
    that the caller's own opening reports it.
    """
    node = url
    if not _is_group(node):
        if not isinstance(url, str | os.PathLike):
            return None
        import zarr

        kwargs = {"storage_options": storage_options} if storage_options else {}
        try:
            node = zarr.open(store=os.fspath(url), mode="r", path=component or "", **kwargs)
        except Exception:  # the dense path gives the error that names the problem
            return None
    elif component:
        node = node[component]
    if not _is_group(node) or _ENCODING not in node.attrs:
        return None
    return node


def _read_rows(arrays, start: int, stop: int, n_features: int, dtype):
    """Rows ``[start, stop)`` as a CSR block, reading only their stored values."""
    import scipy.sparse as sp

    data, indices, indptr = arrays
    ptr = np.asarray(indptr[start : stop + 1], dtype=np.int64)
    lo, hi = int(ptr[0]), int(ptr[-1])
    vals = np.asarray(data[lo:hi]).astype(dtype, copy=False)
    cols = np.asarray(indices[lo:hi])
    block = sp.csr_matrix((vals, cols, ptr - lo), shape=(stop - start, n_features))
    if not block.has_canonical_format:
        block.sum_duplicates()
    return block


def open_sparse_group(group, chunks=None) -> da.Array:
    """A CSR matrix stored in a Zarr group as a Dask array of CSR row blocks.

    Parameters
    ----------
    group : zarr.Group
        With ``encoding-type: csr_matrix``, ``shape`` and the arrays ``data``,
        ``indices``, ``indptr``.
    chunks : int or "stored", optional
        Rows per block. Default: about 16 MiB of stored values and indices per
        block, at least 8 blocks when there are 4,096 rows or more, judged from
        the mean number of stored values per row
        (:func:`daskmeans._sparse.sparse_row_chunks`); ``"stored"``: the stored
        chunk length of ``indptr``.

    Returns
    -------
    dask.array.Array
        Shape ``group.attrs["shape"]``, the dtype of ``data`` (integer values
        are read as float64), blocks ``scipy.sparse.csr_matrix``.
    """
    from .._sparse import sparse_row_chunks

    encoding = group.attrs.get(_ENCODING)
    if encoding != "csr_matrix":
        raise ValueError(
            f"X: the Zarr group holds {_ENCODING}={encoding!r}; daskmeans reads "
            "'csr_matrix' groups (rows by blocks). Store the matrix as CSR "
            "(e.g. AnnData with X as a scipy.sparse.csr_matrix)."
        )
    missing = [name for name in ("data", "indices", "indptr") if name not in group]
    if missing or "shape" not in group.attrs:
        raise ValueError(
            f"X: the csr_matrix Zarr group lacks {missing or ['the shape attribute']}; "
            "expected arrays data, indices, indptr and the attribute shape."
        )
    n, d = (int(s) for s in group.attrs["shape"])
    data, indices, indptr = group["data"], group["indices"], group["indptr"]
    if indptr.shape[0] != n + 1 or data.shape[0] != indices.shape[0]:
        raise ValueError(
            f"X: inconsistent csr_matrix group: shape {[n, d]}, indptr of length "
            f"{indptr.shape[0]} (expected {n + 1}), data {data.shape[0]} and indices "
            f"{indices.shape[0]} values."
        )
    dtype = np.dtype(data.dtype)
    work = dtype if dtype.kind == "f" else np.dtype(np.float64)
    if isinstance(chunks, str) and chunks == "stored":
        rows = int(indptr.chunks[0])
    elif chunks is not None:
        rows = int(chunks if np.isscalar(chunks) else chunks[0])
    else:
        rows = sparse_row_chunks(n, int(data.shape[0]), work.itemsize,
                                 np.dtype(indices.dtype).itemsize)
    rows = max(1, min(rows, n))
    token = tokenize(str(group.store), group.path, n, d, rows, str(work))
    with contextlib.suppress(Exception):  # stores that name their location
        token = tokenize(token, group.store.root)
    name = f"zarr-csr-{token}"
    arrays = (data, indices, indptr)
    dsk = {}
    sizes = []
    for i, start in enumerate(range(0, n, rows)):
        stop = min(n, start + rows)
        dsk[(name, i, 0)] = (_read_rows, arrays, start, stop, d, work)
        sizes.append(stop - start)
    import scipy.sparse as sp

    meta = sp.csr_matrix((0, d), dtype=work)
    return da.Array(dsk, name, (tuple(sizes), (d,)), meta=meta)
