"""Labels of every row written to a Zarr array, chunk by chunk."""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np

from ._atomic import _local, _remove_late, atomic_dir, is_local_path
from ._zarr import _stored_array, _zarr_format_of

__all__ = ["store_labels", "write_labels"]


def write_labels(
    model,
    X,
    out_url,
    *,
    storage_options: dict | None = None,
    overwrite: bool = False,
    zarr_format: int | None = None,
) -> str:
    """Write the label of every row of ``X`` to a Zarr array, chunk by chunk.

    Labels are computed lazily, one task per row block of ``X``, and written
    as they are produced: no more than a few blocks are in memory at once,
    on the client or on any worker. The output has the row chunking of ``X``
    (regular chunks, as Zarr needs): for a Zarr input, its stored row chunks
    (read in groups by :func:`open_zarr`, written chunk for chunk), else the
    Dask array's blocks; dtype int64, and the Zarr format of the input when it
    is a Zarr store.

    Local destinations are written under a temporary sibling name and renamed
    into place when complete, so ``out_url`` holds either the complete labels
    or what was there before. Object stores have no rename: remote outputs
    are written in place.

    Parameters
    ----------
    model : KMeans
        A fitted estimator.
    X : array-like, dask.array.Array, zarr.Array, str or os.PathLike
        The data (path or fsspec URL of a Zarr array, or an array).
    out_url : str or os.PathLike
        Path or fsspec URL of the Zarr array to create.
    storage_options : dict, optional
        fsspec options used for both ``X`` and ``out_url`` when they are URLs.
    overwrite : bool, default=False
        Replace an existing array at ``out_url``; otherwise raise
        ``FileExistsError``.
    zarr_format : {2, 3}, optional
        Default: that of ``X`` when it is a Zarr store, else 3.

    Returns
    -------
    str
        ``out_url``.

    Examples
    --------
    >>> km = daskmeans.KMeans(8).fit("data.zarr")  # doctest: +SKIP
    >>> daskmeans.write_labels(km, "data.zarr", "labels.zarr")  # doctest: +SKIP
    """
    labels = model.predict(X, storage_options=storage_options)  # lazy for lazy X
    if hasattr(labels, "to_dask_array"):  # a Dask Series, for a Dask DataFrame
        labels = labels.to_dask_array(lengths=True)
    elif not isinstance(labels, da.Array):  # in-memory X: its labels are computed already
        labels = np.asarray(labels)
        labels = da.from_array(labels, chunks=max(1, min(len(labels), 2**20)))
    rows = labels.chunks[0]
    arr = _stored_array(X, storage_options)  # opened once: its chunks and its format
    stored = None if arr is None else int(arr.chunks[0])
    chunk_rows = None
    if stored is not None and len(rows) > 1 and rows[0] != stored:
        if whole_chunks(rows, stored):  # blocks of whole stored chunks: written in place
            chunk_rows = stored
        else:
            labels = labels.rechunk((stored,))
    elif len(rows) > 1 and (len(set(rows[:-1])) > 1 or rows[-1] > rows[0]):
        labels = labels.rechunk((max(rows),))
    if zarr_format is None:
        zarr_format = _zarr_format_of(arr) or 3
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}.")
    return store_labels(labels, out_url, storage_options=storage_options, overwrite=overwrite,
                        zarr_format=zarr_format, chunk_rows=chunk_rows)


def store_labels(
    labels,
    out_url,
    *,
    storage_options: dict | None = None,
    overwrite: bool = False,
    zarr_format: int = 3,
    attributes: dict | None = None,
    chunk_rows: int | None = None,
) -> str:
    """Write a lazy 1-D array of labels to a new Zarr array, block by block.

    The writing half of :func:`write_labels`, for labels already computed
    lazily (the command line writes ``model.labels_`` after a fit). Each
    block becomes whole chunks of the output: ``labels`` must have regular
    chunks (all blocks equal but a shorter last one). Local destinations are
    written under a temporary sibling name and renamed into place when
    complete; object stores are written in place.

    Parameters
    ----------
    labels : dask.array.Array
        1-D, with regular chunks.
    out_url : str or os.PathLike
        Path or fsspec URL of the Zarr array to create.
    storage_options : dict, optional
        fsspec options for a URL.
    overwrite : bool, default=False
        Replace an existing array at ``out_url``; otherwise raise ``FileExistsError``.
    zarr_format : {2, 3}, default=3
    attributes : dict, optional
        Stored in the array's attributes.
    chunk_rows : int, optional
        Rows per chunk of the output when the blocks of ``labels`` are whole
        numbers of such chunks (all but the last): each block is then written
        by the task that computes it, without a rechunk, so that no label
        block travels to another worker to be written. Default: the blocks
        of ``labels``, which must then be regular.

    Returns
    -------
    str
        ``out_url``.
    """
    store_labels_with(labels, out_url, storage_options=storage_options, overwrite=overwrite,
                      zarr_format=zarr_format, attributes=attributes, chunk_rows=chunk_rows)
    return os.fspath(out_url)


def store_labels_with(labels, out_url, *, also: tuple = (), storage_options: dict | None = None,
                      overwrite: bool = False, zarr_format: int = 3,
                      attributes: dict | None = None, chunk_rows: int | None = None) -> list:
    """:func:`store_labels`, computing the lazy results ``also`` in the same
    compute as the labels (what both read is read once); returns their values.

    For the command line, whose fit leaves its last pass to the labels' (see
    :func:`daskmeans._base.deferred_final_pass`).
    """
    out_url = os.fspath(out_url)
    kwargs = {"zarr_format": zarr_format}
    if is_local_path(out_url):
        path = _local(out_url)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"write_labels: {out_url!r} already exists; pass overwrite=True to replace it."
            )
        where = []
        try:
            with atomic_dir(path) as tmp:
                where.append(tmp)
                results = _write(labels, str(tmp), chunk_rows, kwargs, also=also)
                _set_attributes(str(tmp), attributes)
        except BaseException:
            if where:
                _remove_late(where[0])
            raise
        return results
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(out_url, storage_options=storage_options or {})
    if fs.exists(root) and fs.ls(root):
        if not overwrite:
            raise FileExistsError(
                f"write_labels: {out_url!r} already exists; pass overwrite=True to replace it."
            )
        fs.rm(root, recursive=True)
    results = _write(labels, out_url, chunk_rows, kwargs, storage_options, also=also)
    _set_attributes(out_url, attributes, storage_options)
    return results


def whole_chunks(rows: tuple, chunk_rows: int) -> bool:
    """Whether blocks of ``rows`` rows are whole numbers of ``chunk_rows`` (all but the last)."""
    return chunk_rows > 0 and all(r % chunk_rows == 0 for r in rows[:-1]) and (
        len(rows) > 1 or rows[0] <= chunk_rows)


def _write(labels, url: str, chunk_rows: int | None, kwargs: dict,
           storage_options: dict | None = None, also: tuple = ()) -> list:
    """Create the array and store every block of ``labels`` into it, one task a
    block, computing ``also`` in the same compute; returns their values."""
    if chunk_rows is None or not whole_chunks(labels.chunks[0], chunk_rows):
        if storage_options:
            kwargs = {**kwargs, "storage_options": storage_options}
        stored = labels.to_zarr(url, compute=False, **kwargs)
    else:
        import zarr

        extra = {"storage_options": storage_options} if storage_options else {}
        target = zarr.create(shape=labels.shape, chunks=(chunk_rows,), dtype=labels.dtype,
                             store=url, overwrite=True, **kwargs, **extra)
        # a block covers whole chunks of the target: no two tasks write to one chunk
        stored = labels.store(target, lock=False, compute=False)
    if not also:
        dask.compute(stored)
        return []
    from ..engine._graph import compute_passes

    # with the passes' BLAS limit (also holds the per-block kernels of a pass), and
    # unoptimised: the store's and the pass's graphs share the tasks that read the blocks
    return list(compute_passes(stored, *also, optimize=False)[1:])


def _set_attributes(url: str, attributes: dict | None, storage_options=None) -> None:
    if attributes:
        import zarr

        zarr.open_array(url, mode="r+", storage_options=storage_options).attrs.update(attributes)
