"""Tables as k-means input: Dask DataFrames and Parquet, without computing lengths.

A Dask DataFrame becomes a Dask array with one block per partition and
unknown (NaN) row counts; the core works on such arrays without asking for
the partition lengths (they would cost a pass over the data). Labels for a
DataFrame come back as a Dask Series with the DataFrame's index, partition
by partition.

Everything here is lazy: no function computes anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_columns",
    "frame_labels",
    "frame_to_array",
    "is_dask_frame",
    "read_parquet_table",
]


def is_dask_frame(obj) -> bool:
    """True for a Dask DataFrame (not a Series)."""
    mod = type(obj).__module__ or ""
    return mod.startswith("dask.dataframe") and hasattr(obj, "columns")


def _is_numeric(dtype) -> bool:
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        # pandas extension dtypes (nullable Int64, Float64, string, category)
        kind = getattr(getattr(dtype, "numpy_dtype", None), "kind", "O")
        if getattr(dtype, "name", "") in ("category", "string", "object"):
            kind = "O"
    return kind in "iuf"


def check_columns(columns_available, dtypes, columns: Sequence[str] | None, *,
                  name: str = "X") -> list[str]:
    """Resolve and check the feature columns of a table.

    Parameters
    ----------
    columns_available : sequence of str
        Columns of the table, in order.
    dtypes : mapping column -> dtype
    columns : sequence of str or None
        Requested columns; None means every column (all must be numeric).
    name : str
        Name used in error messages.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        A requested column does not exist, or a column is not numeric.
    """
    available = [str(c) for c in columns_available]
    if columns is None:
        columns = available
    columns = [str(c) for c in columns]
    if not columns:
        raise ValueError(f"{name}: no feature columns given.")
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(
            f"{name}: unknown column(s) {missing}; available: {available}."
        )
    bad = [f"{c} ({dtypes[c]})" for c in columns if not _is_numeric(dtypes[c])]
    if bad:
        raise ValueError(
            f"{name}: column(s) must be numeric (integer or floating point), got "
            f"{', '.join(bad)}."
        )
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise ValueError(f"{name}: column(s) {dup} given more than once.")
    return columns


def _partition_to_numpy(part, columns, dtype):
    # pandas nullable dtypes: missing values (pd.NA) become NaN
    return part[columns].to_numpy(dtype=dtype, na_value=np.nan)


def work_dtype(dtypes) -> np.dtype:
    """float32 when every feature column is float32 (or float16), else float64."""
    kinds = [np.dtype(getattr(t, "numpy_dtype", t)) for t in dtypes]
    small = all(k in (np.float16, np.float32) for k in kinds)
    return np.dtype(np.float32) if small else np.dtype(np.float64)


def frame_partitions(df) -> list:
    """The partitions of ``df`` as Delayed objects, after dask's optimisation.

    Calling this twice on the same DataFrame gives the same task keys, so arrays
    and label Series built from it share their reads (one read per partition
    and pass), and their blocks match one to one: dask may fuse or split
    partitions when it optimises a projection, so ``df.index`` and
    ``df.to_dask_array()`` do not always have the same number of blocks.
    """
    return list(df.to_delayed(optimize_graph=True))


def frame_to_array(df, *, name: str = "X", columns: Sequence[str] | None = None):
    """A Dask DataFrame as a 2-D float Dask array, one block per partition.

    Row counts stay unknown (NaN chunk sizes): nothing is computed.

    Parameters
    ----------
    df : dask.dataframe.DataFrame
    name : str
        Name used in error messages.
    columns : sequence of str, optional
        Feature columns (default: all; every one must be numeric). Other
        columns of ``df`` (an id) are read with the partition but not used.

    Returns
    -------
    dask.array.Array of shape (nan, n_features), float32 or float64
        Block ``i`` is partition ``i`` of :func:`frame_partitions` (df).
    """
    import dask.array as da
    from dask import delayed

    cols = check_columns(list(df.columns), dict(df.dtypes.items()), columns, name=name)
    work = work_dtype([df.dtypes[c] for c in cols])
    parts = [
        da.from_delayed(delayed(_partition_to_numpy, pure=True)(p, cols, work),
                        shape=(np.nan, len(cols)), dtype=work)
        for p in frame_partitions(df)
    ]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _label_series(part, labels):
    import pandas as pd

    return pd.Series(np.asarray(labels, dtype=np.int64), index=part.index, name="label")


def frame_labels(df, labels):
    """Labels (a Dask array blocked like :func:`frame_to_array` (df)) as a Dask Series.

    Parameters
    ----------
    df : dask.dataframe.DataFrame
        The table the labels were computed from.
    labels : dask.array.Array of shape (n,), int64
        One block per partition of ``frame_partitions(df)``.

    Returns
    -------
    dask.dataframe.Series
        Named ``"label"``, on the index of ``df``, partition by partition.
    """
    import dask.dataframe as dd
    import pandas as pd
    from dask import delayed

    parts = frame_partitions(df)
    blocks = labels.to_delayed().ravel()
    if len(blocks) != len(parts):
        raise ValueError(
            f"internal: {len(blocks)} label blocks for {len(parts)} partitions"
        )
    meta = pd.Series([], dtype=np.int64, name="label", index=df._meta.index[:0])
    pieces = [delayed(_label_series, pure=True)(p, b) for p, b in zip(parts, blocks, strict=True)]
    return dd.from_delayed(pieces, meta=meta, verify_meta=False)


def read_parquet_table(path, *, columns: Sequence[str] | None, id_column: str | None = None,
                       storage_options: dict | None = None):
    """Open a Parquet file or directory lazily and check the requested columns.

    Returns
    -------
    df : dask.dataframe.DataFrame
        The feature columns (and the id column when given).
    columns : list of str
    """
    import dask.dataframe as dd

    try:
        df = dd.read_parquet(path, storage_options=storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise ValueError(f"INPUT: cannot read Parquet at {str(path)!r}: {exc}") from exc
    cols = list(df.columns)
    if id_column is not None and id_column not in cols:
        raise ValueError(f"--id-column: unknown column {id_column!r}; available: {cols}.")
    feature_candidates = None if columns is None else list(columns)
    if feature_candidates is None:
        feature_candidates = [
            c for c in cols if c != id_column and _is_numeric(df.dtypes[c])
        ]
    features = check_columns(cols, dict(df.dtypes.items()), feature_candidates, name="--columns")
    keep = features + ([id_column] if id_column is not None and id_column not in features else [])
    return df[keep], features
