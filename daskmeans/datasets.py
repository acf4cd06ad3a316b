"""Synthetic data sets, generated lazily block by block.

:func:`make_blobs` returns lazy Dask arrays whose blocks are generated on the
workers, each from its own :class:`numpy.random.SeedSequence` keyed by the block
index, so the data do not depend on the scheduler, the number of workers or the
order in which blocks are computed. :func:`write_blobs` streams such a data set
into a Zarr array, one block at a time, and only gives it its final name once
every block has been written.

The clusters follow the classic "init_board_gauss" teaching example: centres
uniform in ``[-1, 1]^d`` and a different, random spread for every cluster.
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from daskmeans._rng import as_seed_sequence, block_rng
from daskmeans.io._atomic import atomic_dir

__all__ = ["make_blobs", "write_blobs"]

#: Target size in bytes of one generated row block when ``chunk_rows`` is not given.
_DEFAULT_BLOCK_BYTES = 64 * 2**20

# spawn_key prefixes: one stream for the cluster layout, one per row block.
_KEY_LAYOUT = 0
_KEY_BLOCK = 1


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def default_chunk_rows(n_samples: int, n_features: int, dtype: Any) -> int:
    """Rows per block so that one block holds about 64 MiB.

    Parameters
    ----------
    n_samples, n_features : int
        Shape of the data set.
    dtype : dtype-like
        Element type.

    Returns
    -------
    int
        Between 1 and ``n_samples``.
    """
    per_row = max(1, n_features * np.dtype(dtype).itemsize)
    return max(1, min(n_samples, _DEFAULT_BLOCK_BYTES // per_row))


def _layout(
    seq: np.random.SeedSequence,
    centers: int | np.ndarray,
    n_features: int | None,
    cluster_std: float | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster centres (k, d) and per-cluster standard deviations (k,), float64."""
    rng = block_rng(seq, _KEY_LAYOUT)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        k = _check_positive_int("centers", centers)
        if n_features is None:
            raise ValueError("n_features is required when centers is an integer")
        d = _check_positive_int("n_features", n_features)
        means = rng.uniform(-1.0, 1.0, size=(k, d))
    else:
        means = np.asarray(centers, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"centers must be an int or a 2-D array, got shape {means.shape}")
        if n_features is not None and means.shape[1] != n_features:
            raise ValueError(
                f"centers has {means.shape[1]} columns but n_features is {n_features}"
            )
        k = means.shape[0]
    if np.ndim(cluster_std) == 0:
        top = float(cluster_std)  # type: ignore[arg-type]
        if not np.isfinite(top) or top < 0:
            raise ValueError(f"cluster_std must be a finite number >= 0, got {cluster_std!r}")
        stds = rng.uniform(top / 10.0, top, size=k) if top > 0 else np.zeros(k)
    else:
        stds = np.asarray(cluster_std, dtype=np.float64)
        if stds.shape != (k,) or not np.all(np.isfinite(stds)) or np.any(stds < 0):
            raise ValueError(f"cluster_std must hold {k} finite values >= 0")
    return means, stds


def _blob_block(
    entropy: int,
    spawn_key: tuple[int, ...],
    n_rows: int,
    means: np.ndarray,
    stds: np.ndarray,
    dtype: np.dtype,
    uniform: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one row block: ``X`` (n_rows, d) of ``dtype``, ``y`` (n_rows,) int64."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=spawn_key))
    k, d = means.shape
    if uniform:
        X = rng.uniform(-1.0, 1.0, size=(n_rows, d))
        y = np.full(n_rows, -1, dtype=np.int64)
    else:
        y = rng.integers(0, k, size=n_rows, dtype=np.int64)
        X = rng.standard_normal((n_rows, d))
        X *= stds[y, None]
        X += means[y]
    return X.astype(dtype, copy=False), y


def make_blobs(
    n_samples: int,
    n_features: int | None = 2,
    centers: int | np.ndarray = 8,
    *,
    cluster_std: float | Sequence[float] = 0.5,
    chunk_rows: int | None = None,
    random_state: Any = None,
    uniform: bool = False,
    dtype: Any = np.float64,
    return_centers: bool = False,
) -> tuple[da.Array, ...]:
    """Lazy Gaussian blobs with a random spread per cluster.

    Every row picks a cluster uniformly at random and is drawn from a Gaussian
    around that cluster's centre. Blocks are generated when computed, each
    from its own random stream keyed by the block index, so the values are the
    same whatever the scheduler, the number of workers or the chunking of
    later computations.

    Parameters
    ----------
    n_samples : int
        Number of rows.
    n_features : int or None, default=2
        Number of columns; may be ``None`` when ``centers`` is an array.
    centers : int or array-like of shape (k, n_features), default=8
        Number of clusters, whose centres are drawn uniformly in
        ``[-1, 1]^n_features``, or the centres themselves.
    cluster_std : float or sequence of float, default=0.5
        A float gives every cluster its own standard deviation drawn uniformly
        in ``[cluster_std / 10, cluster_std]``; a sequence of k values sets them.
    chunk_rows : int, optional
        Rows per block; by default blocks of about 64 MiB.
    random_state : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Seed. ``None`` draws fresh entropy once, when the arrays are built.
    uniform : bool, default=False
        Draw points uniformly in ``[-1, 1]^n_features`` instead; ``y`` is then
        ``-1`` everywhere (no cluster).
    dtype : dtype-like, default=float64
        Floating point type of ``X``.
    return_centers : bool, default=False
        Also return the centres (NumPy, float64).

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
        Chunked ``(chunk_rows, n_features)``.
    y : dask.array.Array of shape (n_samples,), int64
        Cluster of every row, chunked like the rows of ``X``.
    centers : numpy.ndarray of shape (k, n_features)
        Only when ``return_centers`` is true.

    Examples
    --------
    >>> from daskmeans.datasets import make_blobs
    >>> X, y = make_blobs(1000, 2, 3, chunk_rows=250, random_state=0)
    >>> X.shape, X.numblocks, y.dtype.name
    ((1000, 2), (4, 1), 'int64')
    """
    n_samples = _check_positive_int("n_samples", n_samples)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    seq = as_seed_sequence(random_state)
    means, stds = _layout(seq, centers, n_features, cluster_std)
    d = means.shape[1]
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(n_samples, d, dtype)
    chunk_rows = min(_check_positive_int("chunk_rows", chunk_rows), n_samples)
    rows = da.core.normalize_chunks((chunk_rows,), (n_samples,))[0]

    token = tokenize(seq.entropy, seq.spawn_key, means, stds, rows, dtype.str, uniform)
    gen, xname, yname = (f"blobs-{token}", f"blobs-X-{token}", f"blobs-y-{token}")
    base_key = tuple(seq.spawn_key) + (_KEY_BLOCK,)
    gen_dsk, x_dsk, y_dsk = {}, {}, {}
    for i, n in enumerate(rows):
        gen_dsk[(gen, i)] = (
            _blob_block, seq.entropy, base_key + (i,), n, means, stds, dtype, uniform
        )
        x_dsk[(xname, i, 0)] = (operator.getitem, (gen, i), 0)
        y_dsk[(yname, i)] = (operator.getitem, (gen, i), 1)

    def graph(name: str, layer: dict) -> HighLevelGraph:
        return HighLevelGraph({gen: gen_dsk, name: layer}, {gen: set(), name: {gen}})

    X = da.Array(graph(xname, x_dsk), xname, chunks=(rows, (d,)), dtype=dtype)
    y = da.Array(graph(yname, y_dsk), yname, chunks=(rows,), dtype=np.int64)
    if return_centers:
        return X, y, means
    return X, y


def _create_zarr(arr: da.Array, path: Path, attributes: dict | None = None):
    """Create an empty Zarr array at ``path`` shaped and chunked like ``arr``."""
    import zarr

    return zarr.create_array(
        store=str(path),
        shape=arr.shape,
        chunks=tuple(c[0] for c in arr.chunks),
        dtype=arr.dtype,
        attributes=attributes or {},
    )


def write_blobs(
    out: str | os.PathLike,
    n_samples: int,
    n_features: int | None = 2,
    centers: int | np.ndarray = 8,
    *,
    labels_out: str | os.PathLike | None = None,
    cluster_std: float | Sequence[float] = 0.5,
    chunk_rows: int | None = None,
    random_state: Any = None,
    uniform: bool = False,
    dtype: Any = np.float64,
    overwrite: bool = False,
) -> dict:
    """Generate blobs with :func:`make_blobs` and stream them into Zarr.

    The data are written block by block (never whole in memory) under a
    temporary name in the destination directory, then renamed to ``out``: a
    crash leaves either the complete array or no array at ``out``.

    Parameters
    ----------
    out : str or path-like
        Local path of the Zarr array to create for ``X``.
    n_samples, n_features, centers, cluster_std, chunk_rows, random_state, uniform, dtype
        As in :func:`make_blobs`.
    labels_out : str or path-like, optional
        Also write the true cluster of every row (int64) there.
    overwrite : bool, default=False
        Replace existing arrays; otherwise an existing ``out`` raises
        :class:`FileExistsError`.

    Returns
    -------
    dict
        What was written: paths, shape, dtype, chunks and the seed entropy.

    Examples
    --------
    >>> from daskmeans.datasets import write_blobs
    >>> info = write_blobs("blobs.zarr", 10_000, 4, 5, random_state=0)  # doctest: +SKIP
    """
    seq = as_seed_sequence(random_state)
    X, y, means = make_blobs(
        n_samples,
        n_features,
        centers,
        cluster_std=cluster_std,
        chunk_rows=chunk_rows,
        random_state=seq,
        uniform=uniform,
        dtype=dtype,
        return_centers=True,
    )
    targets = [Path(out)] + ([Path(labels_out)] if labels_out is not None else [])
    for path in targets:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists (use overwrite to replace it)")
    attrs = {
        "generator": "daskmeans.datasets.make_blobs",
        "seed_entropy": str(seq.entropy),
        "n_clusters": int(means.shape[0]),
        "uniform": bool(uniform),
    }
    with contextlib.ExitStack() as stack:
        x_tmp = stack.enter_context(atomic_dir(out))
        arrays, stores = [X], [_create_zarr(X, x_tmp, attrs)]
        if labels_out is not None:
            y_tmp = stack.enter_context(atomic_dir(labels_out))
            arrays.append(y)
            stores.append(_create_zarr(y, y_tmp, attrs))
        # One computation: every block is generated once and written to both arrays.
        da.store(arrays, stores, lock=False, compute=True)
    return {
        "out": str(out),
        "labels_out": None if labels_out is None else str(labels_out),
        "shape": list(X.shape),
        "dtype": X.dtype.name,
        "chunks": [int(X.chunks[0][0]), int(X.shape[1])],
        "n_clusters": int(means.shape[0]),
        "seed_entropy": str(seq.entropy),
    }
