"""Sparse input: ``scipy.sparse`` matrices and Dask arrays of sparse blocks.

:func:`check_sparse_input` is what :func:`daskmeans._validation.check_array_input`
calls for such input. It returns a Dask array whose blocks are CSR matrices
(one column block, the working float dtype, canonical indices) that the
kernels (:mod:`daskmeans.kernels._sparse`) process as they are: the matrix is
never densified.

- In memory (CSR, CSC, COO, ... matrices and ``*_array`` types): converted
  to CSR once when not CSR already, then split into row blocks that share
  the matrix's ``data`` and ``indices`` (views; only ``indptr`` is
  re-based per block). Rows per block: about 16 MiB of stored values and
  indices per block, at least 8 blocks when there are enough rows, equal row
  counts (:func:`sparse_row_chunks`).
- Dask arrays whose ``_meta`` is a SciPy sparse matrix (``da.from_array(csr,
  chunks=...)``, ``map_blocks`` of a vectoriser): cast and converted to CSR
  block by block, lazily.

SciPy is imported only when such input is given.
"""

from __future__ import annotations

import math
import uuid

import dask.array as da
import numpy as np
from dask.base import tokenize

from ._errors import InvalidInputError
from .kernels._sparse import is_sparse

__all__ = ["check_sparse_input", "is_sparse_input", "sparse_row_chunks"]

#: Target bytes (stored values + indices) per block of an in-memory sparse matrix.
TARGET_BLOCK_BYTES = 16 * 2**20


def is_sparse_input(X) -> bool:
    """True for a SciPy sparse matrix/array, or a Dask array of sparse blocks."""
    if isinstance(X, da.Array):
        return is_sparse(getattr(X, "_meta", None))
    return is_sparse(X)


def sparse_row_chunks(n_rows: int, nnz: int, itemsize: int, index_itemsize: int) -> int:
    """Rows per block of an in-memory sparse matrix.

    About ``TARGET_BLOCK_BYTES`` of stored values and indices per block, at
    least 8 blocks when there are 4,096 rows or more (threads share the work),
    an even number of blocks and equal row counts; the rule depends only on the
    shape and the number of stored values.
    """
    nbytes = nnz * (itemsize + index_itemsize) + (n_rows + 1) * index_itemsize
    blocks = max(math.ceil(nbytes / TARGET_BLOCK_BYTES), min(8, math.ceil(n_rows / 4096)), 1)
    if blocks > 1:
        blocks += blocks % 2
    return max(1, math.ceil(n_rows / blocks))


def _canonical_csr(block, dtype):
    """A block as CSR of ``dtype`` with summed duplicates and sorted indices."""
    import scipy.sparse as sp

    if not is_sparse(block):  # a dense block inside a sparse Dask array
        block = sp.csr_matrix(np.asarray(block))
    if block.format != "csr":
        block = block.tocsr()
    if block.dtype != dtype:
        block = block.astype(dtype)
    if not block.has_canonical_format:
        block = block.copy()
        block.sum_duplicates()
    return block


def _check_values(block, name: str, allow_nan: bool):
    data = block.data
    if allow_nan:
        if np.isinf(data).any():
            raise InvalidInputError(
                f"Input {name} contains infinity; expected finite values or NaN "
                "(nan_policy='omit')."
            )
    elif not np.isfinite(data).all():
        raise InvalidInputError(f"Input {name} contains NaN or infinity; expected finite values.")


def _row_views(X, rows: int, content_name: bool, name: str):
    """Row blocks of a CSR matrix sharing its ``data`` and ``indices``."""
    import scipy.sparse as sp

    n, d = X.shape
    kind = sp.csr_array if isinstance(X, sp.sparray) else sp.csr_matrix
    token = tokenize(X.data, X.indices, X.indptr, X.shape) if content_name else uuid.uuid4().hex
    key = f"{name}-{token}"
    dsk = {}
    sizes = []
    for i, start in enumerate(range(0, n, rows)):
        stop = min(n, start + rows)
        lo, hi = int(X.indptr[start]), int(X.indptr[stop])
        indptr = X.indptr[start : stop + 1] - lo
        block = kind((X.data[lo:hi], X.indices[lo:hi], indptr), shape=(stop - start, d))
        # SciPy copies views much smaller than their base ("pruning"): share them again
        if block.indices.dtype == X.indices.dtype == block.indptr.dtype:
            block.data, block.indices = X.data[lo:hi], X.indices[lo:hi]
        block.has_canonical_format = True
        dsk[(key, i, 0)] = block
        sizes.append(stop - start)
    meta = kind((0, d), dtype=X.dtype)
    return da.Array(dsk, key, (tuple(sizes), (d,)), meta=meta)


def check_sparse_input(
    X, *, name: str = "X", dtype=None, allow_nan: bool = False, content_name: bool = False,
) -> tuple[da.Array, bool]:
    """Validate sparse data; return it as a Dask array of CSR row blocks.

    Parameters
    ----------
    X : scipy.sparse matrix or array, or dask.array.Array of sparse blocks
    name : str
        Parameter name used in error messages.
    dtype : numpy dtype, optional
        Working dtype (default: float32 for float32/float16 data, else float64).
    allow_nan : bool
        Accept NaN among the stored values; infinity stays an error.
    content_name : bool
        In-memory input: name the Dask array by a hash of the matrix.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
        Blocks are ``scipy.sparse`` CSR matrices (or ``csr_array`` for sparse
        array input) in the working dtype, one column block.
    in_memory : bool
        True for an in-memory matrix (results come back as NumPy).
    """
    from ._arrays import as_float_dtype, check_shape
    from ._errors import InvalidInputTypeError

    check_shape(X, name)  # the wording of dense input (scikit-learn's first)
    if np.dtype(X.dtype).kind not in "biuf":
        raise InvalidInputTypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    work = as_float_dtype(X.dtype) if dtype is None else np.dtype(dtype)
    n, d = X.shape
    if isinstance(X, da.Array):
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        meta = _canonical_csr(X._meta, work)
        return X.map_blocks(_canonical_csr, work, dtype=work, meta=meta), False
    X = _canonical_csr(X, work)
    _check_values(X, name, allow_nan)
    rows = sparse_row_chunks(n, X.nnz, work.itemsize, X.indices.itemsize)
    return _row_views(X, rows, content_name, "sparse"), True
