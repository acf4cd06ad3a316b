"""k-means on xarray objects: data cubes in, label maps and named centres out.

A :class:`xarray.DataArray` holds its features along one dimension
(``feature_dim``, e.g. ``"band"``); a :class:`xarray.Dataset` holds one
feature per data variable. Every other dimension is a sample dimension: a
(time, y, x, band) cube is time * y * x samples of ``band`` features.

Samples are stacked block by block: every Dask block of the input becomes one
row block of the 2-D array the estimator sees, so the chunking of the input
is kept (no rechunk along the sample dimensions, no large slices, no extra
pass), and labels are put back block by block into a lazy DataArray with the
input's sample dimensions, chunks and coordinates. With
``KMeans(nan_policy="omit")``, samples holding NaN (masks) get label -1.

Requires the optional extra ``daskmeans[xarray]``.

Examples
--------
>>> import daskmeans.xarray as dkx  # doctest: +SKIP
>>> km = KMeans(n_clusters=6, nan_policy="omit", random_state=0)  # doctest: +SKIP
>>> labels = dkx.fit_predict(km, cube, feature_dim="band")  # doctest: +SKIP
>>> labels.to_dataset().to_zarr("labels.zarr")  # doctest: +SKIP
>>> dkx.centers(km, cube, feature_dim="band")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

try:
    import xarray as xr
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "daskmeans.xarray needs xarray; install it with: pip install 'daskmeans[xarray]'"
    ) from exc

__all__ = ["centers", "fit_predict", "predict", "stack_samples"]

#: Feature dimension of the centres of a Dataset (one feature per data variable).
VARIABLE_DIM = "variable"
#: Target bytes per block when an in-memory (NumPy-backed) object is chunked here.
_TARGET_BLOCK_BYTES = 16 * 2**20


# --------------------------------------------------------------------------- #
# From xarray objects to a (samples, features) Dask array and back
# --------------------------------------------------------------------------- #
def _as_feature_array(obj, feature_dim: Hashable | None) -> tuple[xr.DataArray, Hashable]:
    """The input as a DataArray with the feature dimension last."""
    if isinstance(obj, xr.Dataset):
        if feature_dim is not None:
            raise ValueError(
                f"feature_dim must be None for a Dataset (its data variables are the "
                f"features), got {feature_dim!r}."
            )
        names = list(obj.data_vars)
        if not names:
            raise ValueError("obj: the Dataset has no data variables to use as features.")
        first = obj[names[0]].dims
        for v in names:
            if obj[v].dtype.kind not in "biuf":
                raise TypeError(
                    f"obj: data variable {v!r} must be numeric, got dtype {obj[v].dtype}."
                )
            if set(obj[v].dims) != set(first):
                raise ValueError(
                    f"obj: every data variable must have the same dimensions; {names[0]!r} has "
                    f"{first}, {v!r} has {obj[v].dims}."
                )
        if VARIABLE_DIM in first:
            raise ValueError(f"obj: a sample dimension is named {VARIABLE_DIM!r}; rename it.")
        obj = obj.transpose(*first)
        arr = obj.to_dataarray(dim=VARIABLE_DIM)
        feature_dim = VARIABLE_DIM
    elif isinstance(obj, xr.DataArray):
        if feature_dim is None:
            raise ValueError(
                f"feature_dim is required for a DataArray: name the dimension that holds the "
                f"features, one of {tuple(obj.dims)}."
            )
        if feature_dim not in obj.dims:
            raise ValueError(
                f"feature_dim {feature_dim!r} is not a dimension of the DataArray; its "
                f"dimensions are {tuple(obj.dims)}."
            )
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"obj must hold real numbers, got dtype {obj.dtype}.")
        arr = obj
    else:
        raise TypeError(
            f"obj must be an xarray DataArray or Dataset, got {type(obj).__name__}."
        )
    if arr.ndim < 2:
        raise ValueError(
            f"obj needs at least one sample dimension besides {feature_dim!r}, got dims "
            f"{tuple(arr.dims)}."
        )
    sample_dims = [d for d in arr.dims if d != feature_dim]
    arr = arr.transpose(*sample_dims, feature_dim)
    if not isinstance(arr.data, da.Array):
        # in memory: chunk along the first sample dimension only (about 16 MiB blocks)
        per_index = arr.dtype.itemsize * math.prod(arr.shape[1:])
        rows = max(1, _TARGET_BLOCK_BYTES // max(1, per_index))
        arr = arr.chunk({sample_dims[0]: rows})
    if arr.data.numblocks[-1] != 1:
        # features in one block; the sample dimensions keep their chunks
        arr = arr.chunk({feature_dim: -1})
    return arr, feature_dim


def _flatten_block(block: np.ndarray) -> np.ndarray:
    return block.reshape(-1, block.shape[-1])


def _unflatten_block(block: np.ndarray, shape: tuple) -> np.ndarray:
    return block.reshape(shape)


def stack_samples(data: da.Array) -> da.Array:
    """Stack the leading dimensions of ``data`` into rows, block by block.

    Parameters
    ----------
    data : dask.array.Array of shape (*sample_shape, d)
        One block along the last axis.

    Returns
    -------
    dask.array.Array of shape (prod(sample_shape), d)
        Row block ``b`` is input block ``b`` (C order over the block grid),
        reshaped; rows are in block order, not in C order of the whole array.
        Every task reads exactly one input block.
    """
    if data.numblocks[-1] != 1:
        raise ValueError("internal: the feature axis must be one block")
    d = data.shape[-1]
    name = "kmeans-stack-" + tokenize(data.name)
    dsk = {}
    rows = []
    for flat, idx in enumerate(np.ndindex(*data.numblocks[:-1])):
        dsk[(name, flat, 0)] = (_flatten_block, (data.name, *idx, 0))
        rows.append(math.prod(data.chunks[a][i] for a, i in enumerate(idx)))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    return da.Array(graph, name, chunks=(tuple(rows), (d,)), dtype=data.dtype,
                    meta=np.empty((0, 0), dtype=data.dtype))


def unstack_samples(values: da.Array, sample_chunks: tuple) -> da.Array:
    """Inverse of :func:`stack_samples` for per-row values (labels), block by block.

    Parameters
    ----------
    values : dask.array.Array of shape (n,)
        One block per block of the stacked array.
    sample_chunks : tuple of tuples
        The chunks of the sample dimensions of the input.
    """
    grid = tuple(len(c) for c in sample_chunks)
    if values.numblocks[0] != math.prod(grid):
        raise ValueError("internal: values are not blocked like the stacked samples")
    name = "kmeans-unstack-" + tokenize(values.name, sample_chunks)
    dsk = {}
    for flat, idx in enumerate(np.ndindex(*grid)):
        shape = tuple(sample_chunks[a][i] for a, i in enumerate(idx))
        dsk[(name, *idx)] = (_unflatten_block, (values.name, flat), shape)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[values])
    return da.Array(graph, name, chunks=sample_chunks, dtype=values.dtype,
                    meta=np.empty((0,) * len(grid), dtype=values.dtype))


def _sample_coords(arr: xr.DataArray, feature_dim: Hashable) -> dict:
    return {
        name: coord for name, coord in arr.coords.items() if feature_dim not in coord.dims
    }


def _labels_array(labels: da.Array, arr: xr.DataArray, feature_dim: Hashable) -> xr.DataArray:
    sample_dims = arr.dims[:-1]
    data = unstack_samples(labels, arr.data.chunks[:-1])
    return xr.DataArray(
        data,
        dims=sample_dims,
        coords=_sample_coords(arr, feature_dim),
        name="label",
        attrs={
            "long_name": "k-means cluster label",
            "description": "index of the nearest cluster centre; -1 for masked (NaN) samples",
        },
    )


def _prepare(obj, feature_dim):
    arr, feature_dim = _as_feature_array(obj, feature_dim)
    return arr, feature_dim, stack_samples(arr.data)


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #
def fit_predict(model, obj, *, feature_dim: Hashable | None = None) -> xr.DataArray:
    """Fit ``model`` on the samples of ``obj`` and return their labels as a DataArray.

    Parameters
    ----------
    model : daskmeans.KMeans
        An estimator (fitted in place). Use ``nan_policy="omit"`` for masked data.
    obj : xarray.DataArray or xarray.Dataset
        Dask- or NumPy-backed.
    feature_dim : hashable, optional
        For a DataArray, the dimension holding the features (required). Must be
        None for a Dataset, whose data variables are the features.

    Returns
    -------
    labels : xarray.DataArray of int64, lazy
        Dimensions, chunks and coordinates of the sample dimensions of ``obj``;
        -1 where the sample was omitted (held NaN). Write it chunk by chunk with
        ``labels.to_dataset().to_zarr(...)``.

    Examples
    --------
    >>> labels = fit_predict(KMeans(4, nan_policy="omit"), cube,
    ...                      feature_dim="band")  # doctest: +SKIP
    """
    arr, feature_dim, X = _prepare(obj, feature_dim)
    model.fit(X)
    return _labels_array(model.labels_, arr, feature_dim)


def predict(model, obj, *, feature_dim: Hashable | None = None) -> xr.DataArray:
    """Labels of the samples of ``obj`` from a fitted ``model``, as a lazy DataArray.

    Parameters are as in :func:`fit_predict`; ``model`` must be fitted with
    the same number of features.
    """
    arr, feature_dim, X = _prepare(obj, feature_dim)
    return _labels_array(model.predict(X), arr, feature_dim)


def centers(model, obj, *, feature_dim: Hashable | None = None) -> xr.DataArray:
    """The fitted centres as a DataArray with dims ("cluster", feature).

    Parameters
    ----------
    model : daskmeans.KMeans
        Fitted.
    obj : xarray.DataArray or xarray.Dataset
        The data (or data like it) the model was fitted on; only its feature
        coordinates are used (band names, variable names), nothing is read.
    feature_dim : hashable, optional
        As in :func:`fit_predict`.

    Returns
    -------
    xarray.DataArray of shape (n_clusters, n_features)
        With a "cluster" coordinate 0..k-1 and the feature coordinates of ``obj``
        (for a Dataset, the dimension is "variable" with the variable names).
    """
    if not hasattr(model, "cluster_centers_"):
        raise ValueError("model is not fitted yet; call fit (or fit_predict) first.")
    arr, feature_dim = _as_feature_array(obj, feature_dim)
    C = np.asarray(model.cluster_centers_)
    if C.shape[1] != arr.sizes[feature_dim]:
        raise ValueError(
            f"obj has {arr.sizes[feature_dim]} features along {feature_dim!r}, but the model "
            f"was fitted with {C.shape[1]}."
        )
    coords = {"cluster": np.arange(C.shape[0])}
    for name, coord in arr.coords.items():
        if coord.dims == (feature_dim,):
            coords[name] = coord.variable
    return xr.DataArray(C, dims=("cluster", feature_dim), coords=coords, name="centers")
